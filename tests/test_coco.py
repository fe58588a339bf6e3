"""COCO segmentation loader: label maps from every annotation kind, joint transforms, errors, limits."""

import json
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fakedata import CAR, DOG, PERSON, VOC, box_polygon, coco_split, corrupt, make_coco, mixed_image_annotations
from mtbench.data import CorruptImageWarning, collate_skip_corrupt
from mtbench.data.coco import VOC_CATEGORY_IDS, CocoSegmentation, check_layout, label_map, voc_annotation
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
    data["images"][0]["height"] = 30
    ann.write_text(json.dumps(data))
    ds = CocoSegmentation(root, "val", segmentation_transform(32, train=False))
    with pytest.warns(CorruptImageWarning, match="the annotations say 32x30"):
        assert ds[2] is None


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
