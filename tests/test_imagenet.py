"""ImageNet (ImageFolder layout) loader: labels, limits, corrupt files, layout errors, build_datasets."""

import pickle
import warnings

import pytest
import torch
from PIL import Image

from fakedata import corrupt, make_coco, make_imagenet, noise_image, write_image
from mtbench.config import RunConfig
from mtbench.data import CorruptImageWarning, build_datasets, collate_skip_corrupt
from mtbench.data.imagenet import ImageNetClassification, find_classes
from mtbench.data.sizes import MIN_IMAGE_SIZE
from mtbench.data.transforms import classification_transform
from mtbench.errors import ConfigError, DataError

WNIDS = ["n01440764", "n01443537", "n01484850"]


@pytest.fixture
def imagenet(tmp_path):
    return make_imagenet(tmp_path / "imagenet")


def _dataset(root, split="train", train=True, size=8, limit=None):
    return ImageNetClassification(root, split, find_classes(root), classification_transform(size, train), limit)


def test_labels_are_sorted_wnids(tmp_path):
    root = make_imagenet(tmp_path, {"n02000000": (1, 1), "n01000000": (2, 0), "n03000000": (1, 1)})
    assert find_classes(root) == ["n01000000", "n02000000", "n03000000"]
    ds = _dataset(root)
    assert [label for _, label in ds.samples] == [0, 0, 1, 2]
    assert [label for _, label in _dataset(root, "val").samples] == [1, 2]


def test_samples_are_normalised_tensors(imagenet):
    image, label = _dataset(imagenet, "val", train=False, size=12)[0]
    assert image.shape == (3, 12, 12) and image.dtype == torch.float32 and label == 0
    assert -3 < float(image.min()) < 0 < float(image.max()) < 3  # ImageNet mean/std, not 0..1 or 0..255


def test_train_augmentation_follows_torch_seed(imagenet):
    ds = _dataset(imagenet)
    torch.manual_seed(1)
    first = torch.stack([ds[i][0] for i in range(len(ds))])
    torch.manual_seed(1)
    second = torch.stack([ds[i][0] for i in range(len(ds))])
    torch.manual_seed(2)
    third = torch.stack([ds[i][0] for i in range(len(ds))])
    assert torch.equal(first, second) and not torch.equal(first, third)


def test_limit_is_class_balanced_and_stable(imagenet):
    ds = _dataset(imagenet, limit=4)
    names = [path.rsplit("/", 1)[1] for path, _ in ds.samples]
    assert names == ["n01440764_0.JPEG", "n01443537_0.JPEG", "n01484850_0.JPEG", "n01440764_1.JPEG"]
    assert _dataset(imagenet, limit=4).samples == ds.samples
    assert len(_dataset(imagenet, limit=100)) == 6


def test_non_image_files_are_ignored(imagenet):
    (imagenet / "train" / WNIDS[0] / "notes.txt").write_text("not an image")
    write_image(imagenet / "train" / WNIDS[0] / "extra.png", noise_image(0, 8, 8))
    names = [path.rsplit("/", 1)[1] for path, _ in _dataset(imagenet).samples]
    assert "notes.txt" not in names and "extra.png" in names and len(names) == 7


@pytest.mark.parametrize("how", ["empty", "truncated"])
def test_corrupt_image_warns_once_and_is_skipped(imagenet, how):
    corrupt(imagenet / "val" / WNIDS[0] / f"{WNIDS[0]}_1.JPEG", how)
    ds = _dataset(imagenet, "val", train=False)
    with pytest.warns(CorruptImageWarning, match=f"{WNIDS[0]}_1.JPEG"):
        assert ds[1] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ds[1] is None
    images, labels, n_corrupt = collate_skip_corrupt([ds[i] for i in range(len(ds))])
    assert n_corrupt == 1 and images.shape == (3, 3, 8, 8) and labels.tolist() == [0, 1, 2]


def test_collate_of_only_corrupt_samples_is_empty():
    images, targets, n_corrupt = collate_skip_corrupt([None, None])
    assert n_corrupt == 2 and len(images) == 0 and len(targets) == 0


def test_dataset_pickles_for_workers(imagenet):
    ds = _dataset(imagenet)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.samples == ds.samples
    loader = torch.utils.data.DataLoader(ds, batch_size=6, num_workers=2, collate_fn=collate_skip_corrupt)
    (images, labels, n_corrupt), = list(loader)
    assert images.shape == (6, 3, 8, 8) and n_corrupt == 0


def _break(root, what):
    if what == "no folder":
        return root / "nowhere"
    if what == "a file":
        (root / "file").write_text("x")
        return root / "file"
    if what == "no val":
        (root / "val").rename(root / "validation")
    elif what == "no class folders":
        for wnid in WNIDS:
            for f in (root / "train" / wnid).iterdir():
                f.rename(root / "train" / f.name)
            (root / "train" / wnid).rmdir()
    elif what == "flat val":
        for wnid in WNIDS:
            for f in (root / "val" / wnid).iterdir():
                f.rename(root / "val" / f.name)
            (root / "val" / wnid).rmdir()
    elif what == "no images":
        for f in root.glob("val/*/*"):
            f.unlink()
    elif what == "unknown val class":
        write_image(root / "val" / "n09999999" / "a.JPEG", noise_image(0, 8, 8))
    elif what == "too many classes":
        for i in range(1001):
            (root / "train" / f"n{i:08d}").mkdir(exist_ok=True)
    return root


@pytest.mark.parametrize("what, message", [
    ("no folder",
     r"ImageNet folder .*nowhere does not exist; expected DIR/train/<wnid>/\*\.JPEG and DIR/val/<wnid>/\*\.JPEG"),
    ("a file", r"ImageNet folder .*file is not a folder; expected DIR/train/<wnid>/"),
    ("no val", r"ImageNet folder .* has no val/ folder; expected"),
    ("no class folders", r".*train holds no class folders; expected DIR/train/<wnid>/"),
    ("flat val", r".*val holds no class folders; expected DIR/train/<wnid>/"),
    ("no images", r".*val has class folders but no images \(\.jpg, .*\); expected"),
    ("unknown val class", r".*val has class folder 'n09999999' that train/ does not have"),
    ("too many classes", r".*train holds 1004 class folders, more than the 1000 outputs of the head"),
])
def test_layout_errors(imagenet, what, message):
    root = _break(imagenet, what)
    with pytest.raises(DataError, match=message) as info:
        _dataset(root, "train")
        _dataset(root, "val")
    assert "\n" not in str(info.value)


def test_build_datasets_on_real_layouts(tmp_path):
    imagenet = make_imagenet(tmp_path / "imagenet")
    coco, _ = make_coco(tmp_path / "coco")
    bundle = build_datasets(imagenet=imagenet, coco=coco, limit_val=2)
    assert not bundle.synthetic and bundle.image_size == 224
    assert bundle.cls_classes == WNIDS and bundle.num_cls_outputs == 1000 and bundle.num_seg_classes == 21
    assert (len(bundle.cls_train), len(bundle.cls_val), len(bundle.seg_train), len(bundle.seg_val)) == (6, 2, 2, 2)
    assert bundle.cls_train[0][0].shape == (3, 224, 224)
    small = build_datasets(imagenet=str(imagenet), coco=str(coco), image_size=32)
    assert small.seg_val[0][1].shape == (32, 32) and small.imagenet_dir == imagenet
    assert small.cls_holdout is None and small.seg_holdout is None


@pytest.mark.parametrize("kwargs, message", [
    ({"imagenet": "x"}, r"imagenet data given without coco data; give both folders, or neither"),
    ({"coco": "x"}, r"coco data given without imagenet data"),
    ({"limit_train": 0}, r"limit_train must be a positive number of images, got 0"),
    ({"limit_val": 2.5}, r"limit_val must be a positive number of images, got 2\.5"),
    ({"image_size": 16}, r"image size must be an integer of at least 32 pixels, got 16"),
    ({"image_size": 32.0}, r"image size must be an integer of at least 32 pixels, got 32\.0"),
])
def test_build_datasets_rejects_bad_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_datasets(**kwargs)


def test_the_data_and_the_run_config_agree_on_the_smallest_image(tmp_path):
    imagenet, (coco, _) = make_imagenet(tmp_path / "imagenet"), make_coco(tmp_path / "coco")
    assert MIN_IMAGE_SIZE == 32  # ResNet downsamples by 32
    assert build_datasets(imagenet=imagenet, coco=coco, image_size=MIN_IMAGE_SIZE).image_size == MIN_IMAGE_SIZE
    assert RunConfig("sgd", {}, str(tmp_path / "run"), image_size=MIN_IMAGE_SIZE).image_size == MIN_IMAGE_SIZE
    with pytest.raises(ConfigError, match=f"at least {MIN_IMAGE_SIZE} pixels"):
        build_datasets(imagenet=imagenet, coco=coco, image_size=MIN_IMAGE_SIZE - 1)
    with pytest.raises(ConfigError, match=rf"--image-size {MIN_IMAGE_SIZE - 1} .*expected .*\[{MIN_IMAGE_SIZE}, "):
        RunConfig("sgd", {}, str(tmp_path / "run"), image_size=MIN_IMAGE_SIZE - 1)


def test_an_image_too_large_to_decode_counts_as_corrupt(imagenet, monkeypatch):
    ds = _dataset(imagenet, "val", train=False)
    big = imagenet / "val" / WNIDS[0] / "huge.png"
    write_image(big, noise_image(0, 32, 32))
    ds.samples.insert(1, (str(big), 0))
    # PIL refuses images over twice this many pixels (DecompressionBombError): 32x32 is, 16x16 is not.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    with pytest.warns(CorruptImageWarning, match=r"huge\.png: cannot read image: .*exceeds limit"):
        images, labels, n_corrupt = collate_skip_corrupt([ds[0], ds[1]])
    assert n_corrupt == 1 and images.shape == (1, 3, 8, 8)
