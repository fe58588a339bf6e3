"""COCO segmentation loader: label maps from every annotation kind, joint transforms, errors, limits."""

import json
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fakedata import (CAR, DOG, PERSON, VOC, box_polygon, coco_split, compressed_rle, corrupt, make_coco,
                      mixed_image_annotations, region, uncompressed_rle)
from mtbench.data import CorruptImageWarning, collate_skip_corrupt
from mtbench.data.coco import (VOC_CATEGORY_IDS, CocoSegmentation, check_layout, compressed_counts, label_map,
                               voc_annotation)
from mtbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, segmentation_transform
from mtbench.errors import DataError


@pytest.fixture
def coco(tmp_path):
    return make_coco(tmp_path / "coco")


def test_voc_list_is_the_reference_one():
    assert VOC_CATEGORY_IDS == [0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72]
    assert VOC == {c: VOC_CATEGORY_IDS.index(c) for c in VOC}


def test_label_map_of_every_annotation_kind():
    annotations, expected = mixed_image_annotations(32)
    anns = [ann for ann in map(voc_annotation, annotations) if ann is not None]
    np.testing.assert_array_equal(label_map(anns, 32, 32), expected)


def test_label_map_does_not_depend_on_annotation_order():
    annotations, expected = mixed_image_annotations(32)
    anns = [ann for ann in map(voc_annotation, annotations) if ann is not None]
    np.testing.assert_array_equal(label_map(anns[::-1], 32, 32), expected)


def test_val_samples_at_native_size_give_the_exact_masks(coco):
    root, expected = coco
    ds = CocoSegmentation(root, "val", segmentation_transform(32, train=False))
    assert [p.rsplit("/", 1)[1] for p, *_ in ds.samples] == ["000000000003.jpg", "000000000005.jpg", "000000000007.jpg"]
    for (path, *_), (image, mask) in zip(ds.samples, (ds[i] for i in range(len(ds)))):
        image_id = int(path.rsplit("/", 1)[1].split(".")[0])
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert mask.dtype == torch.int64
        np.testing.assert_array_equal(mask.numpy(), expected[image_id])


def test_image_without_annotations_is_background(coco):
    root, _ = coco
    ds = CocoSegmentation(root, "val", segmentation_transform(32, train=False))
    assert ds.samples[1][3] == [] and int(ds[1][1].max()) == 0


def _aligned_coco(root, size=64):
    """A PNG whose pixels spell its mask: a red person box and a blue car box on grey."""
    pixels = np.full((size, size, 3), 100, dtype=np.uint8)
    pixels[8:40, 4:20] = (255, 0, 0)
    pixels[30:60, 36:60] = (0, 0, 255)
    image = {"id": 1, "file_name": "000000000001.png", "pixels": pixels, "annotations": [
        {"category_id": PERSON, "segmentation": box_polygon(4, 8, 20, 40)},
        {"category_id": CAR, "segmentation": box_polygon(36, 30, 60, 60)},
    ]}
    coco_split(root, "train", [image])
    coco_split(root, "val", [image])
    return root


def test_train_transform_moves_image_and_mask_together(tmp_path):
    ds = CocoSegmentation(_aligned_coco(tmp_path), "train", segmentation_transform(48, train=True))
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    torch.manual_seed(0)
    layouts, padded_draws = set(), 0
    for _ in range(30):
        image, mask = ds[0]
        assert image.shape == (3, 48, 48) and mask.shape == (48, 48)
        r, g, b = image * std + mean
        red, blue, black = (r > 0.7) & (b < 0.3), (b > 0.7) & (r < 0.3), (r < 0.01) & (g < 0.01) & (b < 0.01)
        # Only pixels on a blurred edge may disagree; a flip, crop or resize applied to one of the two would not.
        assert ((mask == VOC[PERSON]) != red).float().mean() < 0.05
        assert ((mask == VOC[CAR]) != blue).float().mean() < 0.05
        assert ((mask == 255) != black).float().mean() < 0.05  # padding: image 0, mask 255
        assert set(mask.unique().tolist()) <= {0, VOC[PERSON], VOC[CAR], 255}
        padded_draws += bool((mask == 255).any())
        if red.any() and blue.any():
            cols = torch.arange(48.0)
            layouts.add(bool(cols[red.any(0)].mean() > cols[blue.any(0)].mean()))
    assert layouts == {True, False}  # the original and the mirrored layout both came up
    assert padded_draws > 0  # the shorter side was drawn below 48 at least once


def test_val_transform_keeps_image_and_mask_aligned(tmp_path):
    ds = CocoSegmentation(_aligned_coco(tmp_path), "val", segmentation_transform(40, train=False))
    image, mask = ds[0]
    red = image[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0] > 0.7
    assert ((mask == VOC[PERSON]) != red).float().mean() < 0.03
    assert int((mask == VOC[PERSON]).sum()) == pytest.approx(16 * 32 * (40 / 64) ** 2, rel=0.15)


def test_train_augmentation_follows_torch_seed(coco):
    root, _ = coco
    ds = CocoSegmentation(root, "train", segmentation_transform(24, train=True))
    torch.manual_seed(3)
    first = [ds[i] for i in range(2)]
    torch.manual_seed(3)
    second = [ds[i] for i in range(2)]
    for (a_img, a_mask), (b_img, b_mask) in zip(first, second):
        assert torch.equal(a_img, b_img) and torch.equal(a_mask, b_mask)


@pytest.mark.parametrize("how", ["empty", "truncated"])
def test_corrupt_image_warns_once_and_is_skipped(coco, how):
    root, _ = coco
    corrupt(root / "val2017" / "000000000005.jpg", how)
    ds = CocoSegmentation(root, "val", segmentation_transform(32, train=False))
    with pytest.warns(CorruptImageWarning, match="000000000005.jpg"):
        assert ds[1] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ds[1] is None  # no second warning for the same file
    images, masks, n_corrupt = collate_skip_corrupt([ds[0], ds[1], ds[2]])
    assert n_corrupt == 1 and images.shape == (2, 3, 32, 32) and masks.shape == (2, 32, 32)


def test_image_size_disagreeing_with_annotations_is_skipped(coco):
    root, _ = coco
    ann = root / "annotations" / "instances_val2017.json"
    data = json.loads(ann.read_text())
    data["images"][1]["height"] = 30  # image 3: polygons only, which fit any size
    ann.write_text(json.dumps(data))
    ds = CocoSegmentation(root, "val", segmentation_transform(32, train=False))
    with pytest.warns(CorruptImageWarning, match="000000000003.jpg: image is 32x32, the annotations say 32x30"):
        assert ds[0] is None


def test_dataloader_with_workers(coco):
    root, _ = coco
    corrupt(root / "val2017" / "000000000003.jpg", "empty")
    ds = CocoSegmentation(root, "val", segmentation_transform(32, train=False))
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_skip_corrupt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptImageWarning)
        (images, masks, n_corrupt), = list(loader)
    assert n_corrupt == 1 and images.shape == (2, 3, 32, 32) and masks.shape == (2, 32, 32)


def test_limit_takes_the_first_images_by_id(coco):
    root, _ = coco
    ds = CocoSegmentation(root, "val", segmentation_transform(32, train=False), limit=2)
    assert [p.rsplit("/", 1)[1] for p, *_ in ds.samples] == ["000000000003.jpg", "000000000005.jpg"]


def _break(root, what):
    ann = root / "annotations" / "instances_val2017.json"
    if what == "no folder":
        return root / "nowhere"
    if what == "a file":
        (root / "file").write_text("x")
        return root / "file"
    if what == "no train2017":
        (root / "train2017").rename(root / "train")
    elif what == "no annotations":
        ann.unlink()
    elif what == "invalid json":
        ann.write_text('{"images": [')
    elif what == "not instances":
        ann.write_text('[1, 2]')
    elif what == "no images":
        ann.write_text('{"images": [], "annotations": []}')
    elif what == "missing image":
        (root / "val2017" / "000000000005.jpg").unlink()
    elif what == "malformed annotation":
        data = json.loads(ann.read_text())
        del data["annotations"][0]["category_id"]
        ann.write_text(json.dumps(data))
    return root


@pytest.mark.parametrize("what, message", [
    ("no folder", r"COCO folder .*nowhere does not exist; "
                  r"expected DIR/train2017/, DIR/val2017/ and DIR/annotations/instances_\{train,val\}2017\.json"),
    ("a file", r"COCO folder .*file is not a folder; expected DIR/train2017/"),
    ("no train2017", r"has no train2017/ folder; expected DIR/train2017/"),
    ("no annotations", r"has no annotations/instances_val2017\.json; expected"),
    ("invalid json", r"annotation file .*instances_val2017\.json is not valid JSON: "),
    ("not instances", r"instances_val2017\.json is not a COCO instances file"),
    ("no images", r"instances_val2017\.json lists no images"),
    ("missing image",
     r"1 of the 3 images listed in .*instances_val2017\.json are not in .*val2017 \(first: 000000000005\.jpg\)"),
    ("malformed annotation",
     r"instances_val2017\.json has a malformed image or annotation entry \(KeyError\('category_id'\)\)"),
])
def test_layout_errors(coco, what, message):
    root = _break(coco[0], what)
    with pytest.raises(DataError, match=message) as info:
        check_layout(root)
        CocoSegmentation(root, "val", segmentation_transform(32, train=False))
    assert "\n" not in str(info.value)


def test_non_voc_category_only_gives_background(tmp_path):
    image = {"id": 1, "file_name": "a.jpg", "pixels": np.zeros((8, 8, 3), np.uint8),
             "annotations": [{"category_id": 90, "segmentation": box_polygon(0, 0, 8, 8)}]}
    coco_split(tmp_path, "train", [image])
    coco_split(tmp_path, "val", [image])
    ds = CocoSegmentation(tmp_path, "val", segmentation_transform(8, train=False))
    assert ds.samples[0][3] == [] and int(ds[0][1].max()) == 0


def test_dog_mask_scales_with_nearest_interpolation(coco):
    root, _ = coco
    ds = CocoSegmentation(root, "train", segmentation_transform(64, train=False))
    _, mask = ds[0]  # a dog box on a 32x32 image, resized to 64x64: values stay class ids
    assert set(mask.unique().tolist()) == {0, VOC[DOG]}


def _edit_val(root, edit):
    """Rewrite the val instances file after ``edit(data)``; image 7's annotations have ids 1-7 (see fakedata)."""
    ann = root / "annotations" / "instances_val2017.json"
    data = json.loads(ann.read_text())
    edit(data)
    ann.write_text(json.dumps(data))


def _set_segmentation(ann_id, segm):
    def edit(data):
        next(a for a in data["annotations"] if a["id"] == ann_id)["segmentation"] = segm
    return edit


def _set_image(image_id, **fields):
    def edit(data):
        next(i for i in data["images"] if i["id"] == image_id).update(fields)
    return edit


def _set_rle(ann_id, **fields):
    def edit(data):
        next(a for a in data["annotations"] if a["id"] == ann_id)["segmentation"].update(fields)
    return edit


NAN, INF = float("nan"), float("inf")
BIG_COUNTS = {"counts": [0, 64 * 64]}  # a full 64x64 mask on a 32x32 image


@pytest.mark.parametrize("edit, message", [
    (_set_segmentation(1, [[0, 0, NAN, 0, 12, 12, 0, 12]]),
     r"annotation 1 \(image 7\): polygon 0 has the non-finite x coordinate nan$"),
    (_set_segmentation(1, [[0, 0, 12, 0, 12, 12], [0, 0, 12, -INF, 12, 12]]),
     r"annotation 1 \(image 7\): polygon 1 has the non-finite y coordinate -inf$"),
    (_set_segmentation(1, [[0, 0, 1e9, 0, 12, 12]]),
     r"polygon 0 has the x coordinate 1000000000\.0, far outside the 32x32 image \(expected -32\.\.64\)$"),
    (_set_segmentation(2, [[0, 0, 12, 0, 12, 12, 0]]),
     r"annotation 2 \(image 7\): polygon 0 has an odd number of coordinates \(7\); expected x,y pairs$"),
    (_set_segmentation(1, [[0, 0, "12", 0, 12, 12]]),
     r"polygon 0 has the coordinate '12' \(a str\); expected numbers$"),
    (_set_segmentation(1, [[0, 0, None, 0, 12, 12]]), r"polygon 0 has the coordinate None \(a NoneType\)"),
    (_set_segmentation(1, [[0, 0, 12, 10**400, 12, 12]]), r"polygon 0 has the coordinate 1000.*0, far outside"),
    (_set_segmentation(1, [5]), r"polygon 0 is 5 \(a int\); expected a list of x,y coordinates$"),
    (_set_segmentation(1, 5),
     r"annotation 1 \(image 7\): segmentation is 5 \(a int\); expected a list of polygons or an RLE dict"),
    (_set_segmentation(1, None), r"annotation 1 \(image 7\): segmentation is None \(a NoneType\)"),
    (_set_rle(3, size=[64, 64]),
     r"annotation 3 \(image 7\): RLE size \[64, 64\] does not match the image's \[height, width\] \[32, 32\]$"),
    (_set_rle(3, size="big"), r"RLE size is 'big' \(a str\); expected \[height, width\]$"),
    (_set_rle(4, **BIG_COUNTS), r"annotation 4 \(image 7\): RLE run lengths cover 4096 pixels; "
                                r"the 32x32 image has 1024$"),
    (_set_rle(4, counts=[0, 5]), r"RLE run lengths cover 5 pixels; the 32x32 image has 1024$"),
    (_set_rle(4, counts=[0, -5, 1029]), r"RLE counts hold -5 \(a int\); expected run lengths"),
    (_set_rle(4, counts=[0, 1024.0]), r"RLE counts hold 1024\.0 \(a float\); expected run lengths"),
    (_set_rle(4, counts=7), r"RLE counts is 7 \(a int\); expected a list of run lengths or a compressed string$"),
    (_set_rle(3, counts="\x7f\x7f~~"), r"annotation 3 \(image 7\): RLE counts .* is not a COCO compressed RLE"),
    (_set_rle(3, counts="P"), r"RLE counts 'P' is not a COCO compressed RLE string$"),  # a count left unfinished
    (_set_rle(3, counts=compressed_rle(np.ones((64, 64), bool))["counts"]),
     r"RLE run lengths cover 4096 pixels; the 32x32 image has 1024$"),
    (_set_image(3, id=7), r"lists image id 7 twice; image ids must be unique$"),
    (_set_image(5, file_name="000000000007.jpg"),
     r"lists the file 000000000007\.jpg for images (7 and 5|5 and 7); each image entry needs a file of its own$"),
    (_set_image(5, height=0), r"image 5 \(000000000005\.jpg\) has height 0 and width 32; expected whole numbers > 0$"),
    (_set_image(5, width=-32), r"image 5 \(000000000005\.jpg\) has height 32 and width -32"),
    (_set_image(5, height="32"), r"image 5 \(000000000005\.jpg\) has height '32' and width 32"),
    (_set_image(5, height=32.5), r"image 5 \(000000000005\.jpg\) has height 32\.5 and width 32"),
    (_set_image(5, height=10**6, width=10**6),
     r"image 5 \(000000000005\.jpg\) is listed as 1000000x1000000 pixels, more than the \d+ that PIL decodes$"),
])
def test_unsafe_annotations_are_refused_when_the_file_is_read(coco, edit, message):
    root, _ = coco
    _edit_val(root, edit)
    with pytest.raises(DataError, match=r"instances_val2017\.json.*" + message) as info:
        CocoSegmentation(root, "val", segmentation_transform(32, train=False))
    assert "\n" not in str(info.value)


def test_an_annotation_without_id_is_named_by_its_position(coco):
    root, _ = coco

    def edit(data):
        del data["annotations"][0]["id"]
        data["annotations"][0]["segmentation"] = {"size": [32, 32]}
    _edit_val(root, edit)
    with pytest.raises(DataError, match=r"annotation #0 \(image 7\): RLE counts is None"):
        CocoSegmentation(root, "val", segmentation_transform(32, train=False))


def test_broken_geometry_outside_the_voc_classes_is_never_read(coco):
    root, expected = coco
    _edit_val(root, _set_segmentation(6, [[0, 0, NAN, 0, 1e12, 12, 0]]))  # the toothbrush
    ds = CocoSegmentation(root, "val", segmentation_transform(32, train=False))
    np.testing.assert_array_equal(ds[2][1].numpy(), expected[7])


def test_polygons_may_stray_a_little_outside_the_image(coco):
    root, _ = coco
    _edit_val(root, _set_segmentation(9, [[-32, -32, 64, -32, 64, 64, -32, 64]]))  # a person on image 3
    ds = CocoSegmentation(root, "val", segmentation_transform(32, train=False))
    assert bool((ds[0][1] == VOC[PERSON]).all())


def test_compressed_counts_read_what_pycocotools_writes():
    rng = np.random.default_rng(0)
    masks = [np.zeros((7, 9), bool), np.ones((40, 50), bool), rng.random((40, 50)) < 0.5,
             region(300, 200, slice(3, 290), slice(100, 101))]
    blobs = np.zeros((60, 70), bool)
    for _ in range(6):
        y, x, h, w = rng.integers(0, 50, 4)
        blobs[y:y + h, x:x + w] ^= True
    for mask in masks + [blobs]:
        assert compressed_counts(compressed_rle(mask)["counts"]) == uncompressed_rle(mask)["counts"]


@pytest.mark.parametrize("second, message", [
    ({"id": 1, "file_name": "b.png"}, r"instances_train2017\.json lists image id 1 twice"),
    # two entries of one file: one image's masks would be painted on the other's pixels
    ({"id": 2, "file_name": "a.png"}, r"instances_train2017\.json lists the file a\.png for images 1 and 2; "),
], ids=["same-id", "same-file"])
def test_image_entries_that_would_share_masks_are_refused(tmp_path, second, message):
    pixels = np.zeros((16, 16, 3), np.uint8)
    images = [{"id": 1, "file_name": "a.png", "pixels": pixels,
               "annotations": [{"category_id": DOG, "segmentation": box_polygon(0, 0, 16, 16)}]},
              {**second, "pixels": pixels}]
    coco_split(tmp_path, "train", images)
    with pytest.raises(DataError, match=message):
        CocoSegmentation(tmp_path, "train", segmentation_transform(16, train=False))
