"""The holdout (selection) split: carved from the training sets by image identity, never by seed."""

import math
import random
import shutil

import pytest
import torch

from mtbench.data import build_datasets
from mtbench.data.synthetic import SyntheticSpec, write_synthetic
from mtbench.errors import ConfigError

SPEC = SyntheticSpec(classes=3, train_per_class=6, val_per_class=2, seg_classes=3, seg_train=14, seg_val=4)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("synthetic"), SPEC)


def _build(data, **kwargs):
    imagenet, coco = data
    return build_datasets(imagenet=imagenet, coco=coco, image_size=32, **kwargs)


def _keys(dataset):
    return [dataset.sample_key(i) for i in range(len(dataset))]


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_holdout_is_a_disjoint_part_of_the_training_set(data, fraction):
    plain, bundle = _build(data), _build(data, holdout=fraction)
    for task in ("cls", "seg"):
        whole = _keys(getattr(plain, f"{task}_train"))
        train, holdout = _keys(getattr(bundle, f"{task}_train")), _keys(getattr(bundle, f"{task}_holdout"))
        assert len(holdout) == math.floor(fraction * len(whole) + 0.5)
        assert sorted(train + holdout) == sorted(whole) and not set(train) & set(holdout)
        assert not set(holdout) & set(_keys(getattr(bundle, f"{task}_val")))
        assert train == [k for k in whole if k in set(train)]  # the training order is kept
    assert len(bundle.cls_train) == 18 - len(bundle.cls_holdout)


def test_holdout_is_the_same_on_every_call_and_wherever_the_data_lies(data, tmp_path):
    first = _build(data, holdout=0.25)
    torch.manual_seed(123)
    again = _build(data, holdout=0.25)
    moved = tmp_path / "moved"
    shutil.copytree(data[0].parent, moved)
    elsewhere = build_datasets(imagenet=moved / "imagenet", coco=moved / "coco", image_size=32, holdout=0.25)
    for task in ("cls", "seg"):
        expected = _keys(getattr(first, f"{task}_holdout"))
        assert _keys(getattr(again, f"{task}_holdout")) == expected
        assert _keys(getattr(elsewhere, f"{task}_holdout")) == expected


def test_a_smaller_holdout_is_part_of_a_larger_one_whatever_the_seed(data):
    def holdouts(fraction, seed):
        torch.manual_seed(seed)
        random.seed(seed)
        bundle = _build(data, holdout=fraction)
        return {task: _keys(getattr(bundle, f"{task}_holdout")) for task in ("cls", "seg")}

    small, large = holdouts(0.25, 0), holdouts(0.5, 0)
    assert holdouts(0.25, 1) == small and holdouts(0.5, 7) == large
    for task in ("cls", "seg"):
        assert 0 < len(small[task]) < len(large[task])
        assert set(small[task]) < set(large[task]), task  # growing the holdout only moves more images into it


def test_holdout_is_read_with_the_validation_transform(data):
    bundle = _build(data, holdout=0.25)
    assert bundle.cls_holdout.transform is bundle.cls_val.transform
    assert bundle.seg_holdout.transform is bundle.seg_val.transform
    torch.manual_seed(0)
    image, mask = bundle.seg_holdout[0]
    torch.manual_seed(1)
    again, mask_again = bundle.seg_holdout[0]
    assert image.shape == (3, 32, 32) and torch.equal(image, again) and torch.equal(mask, mask_again)


@pytest.mark.parametrize("fraction", [None, 0, 0.0])
def test_no_holdout(data, fraction):
    bundle = _build(data, holdout=fraction)
    assert bundle.cls_holdout is None and bundle.seg_holdout is None
    assert (len(bundle.cls_train), len(bundle.seg_train)) == (18, 14)


@pytest.mark.parametrize("fraction, message", [
    (-0.1, r"holdout must be a fraction of the training set in \[0, 1\), got -0\.1$"),
    (1, r"got 1$"),
    (1.5, r"got 1\.5$"),
    (float("nan"), r"got nan$"),
    ("0.2", r"got '0\.2'$"),
    (True, r"got True$"),
    (0.02, r"holdout 0\.02 of the 18 classification training images leaves 0 for the holdout and 18 for training; "
           r"each needs at least one image"),
    (0.98, r"holdout 0\.98 of the 18 classification training images leaves 18 for the holdout and 0 for training"),
])
def test_bad_fractions(data, fraction, message):
    with pytest.raises(ConfigError, match=message):
        _build(data, holdout=fraction)


def test_the_limit_applies_before_the_holdout(data):
    bundle = _build(data, limit_train=8, holdout=0.25)
    assert (len(bundle.cls_train), len(bundle.cls_holdout)) == (6, 2)
    assert (len(bundle.seg_train), len(bundle.seg_holdout)) == (6, 2)
