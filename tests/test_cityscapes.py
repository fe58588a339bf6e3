"""The Cityscapes .npy layout (label_7, no normals) and its rendered stand-in."""

import numpy as np
import pytest
import torch

from densedata import write_dense
from mtbench.data.cityscapes import DISPARITY_SCALE, LAYOUT, CityscapesSpec, ensure_cityscapes
from mtbench.data.dense import open_dense
from mtbench.errors import DataError


def test_items_carry_segmentation_and_depth_only(tmp_path):
    root = write_dense(tmp_path / "city", label_folder="label_7", classes=7, normals=False, size=(8, 16))
    train, val, _, size = open_dense(LAYOUT, root, image_size=4)
    assert size == (4, 8)
    image, targets = train[0]
    assert image.shape == (3, 4, 8) and len(targets) == 2
    label, depth = targets
    assert label.shape == (4, 8) and depth.shape == (1, 4, 8)


def test_nyuv2_labels_are_not_cityscapes_labels(tmp_path):
    root = write_dense(tmp_path / "nyu")  # label/, 13 classes, normal/
    with pytest.raises(DataError, match="has no train/label_7/ folder") as info:
        open_dense(LAYOUT, root)
    assert str(root) in str(info.value) and "{image,label_7,depth}" in str(info.value)


def test_labels_beyond_the_seven_classes_are_refused(tmp_path):
    root = write_dense(tmp_path / "city", label_folder="label_7", classes=7, normals=False)
    np.save(root / "val" / "label_7" / "1.npy", np.full((8, 12), 7, dtype=np.int64))
    _, val, _, _ = open_dense(LAYOUT, root)
    with pytest.raises(DataError, match=r"label_7/1\.npy: label 7, expected whole numbers in 0\.\.6"):
        val[1]


def test_the_stand_in_has_sky_without_depth_and_a_void_bonnet(tmp_path):
    root = ensure_cityscapes(tmp_path, CityscapesSpec(train=4, val=2, height=32, width=64))
    train, val, _, size = open_dense(LAYOUT, root)
    assert size == (32, 64) and (len(train), len(val)) == (4, 2)
    labels = torch.stack([train.with_samples(train.samples, val.transform)[i][1][0] for i in range(4)])
    depths = torch.stack([train.with_samples(train.samples, val.transform)[i][1][1][0] for i in range(4)])
    sky = labels == 4
    assert sky.any() and (depths[sky] == 0).all()
    assert (labels[:, -1] == -1).all() and (depths[:, -1] == 0).all()
    assert {0, 1, 4} <= set(labels.unique().tolist())
    assert (depths[labels == 0] > 0).float().mean() > 0.8


def test_the_stand_in_stores_depth_as_scaled_disparity_like_the_real_set(tmp_path):
    """Inverse depth in the real set's range (0.018 at 100 m up to about 0.5 nearest), larger nearer:
    up the road, away from the camera, the stored value falls; a zero prediction's L1 stays well
    under the segmentation loss of a uniform prediction (ln 7)."""
    spec = CityscapesSpec(train=4, val=1, height=32, width=64)
    root = ensure_cityscapes(tmp_path, spec)
    for i in range(4):
        label = np.load(root / "train" / "label_7" / f"{i}.npy")
        depth = np.load(root / "train" / "depth" / f"{i}.npy")[..., 0]
        valid = depth > 0
        assert DISPARITY_SCALE / 100 - 1e-6 <= depth[valid].min() and depth[valid].max() < 0.6
        road = [depth[r][(label[r] == 0) & valid[r]] for r in range(spec.height)]
        means = [r.mean() for r in road if r.size >= 4]
        assert len(means) >= 4 and all(a < b for a, b in zip(means, means[1:]))
        assert depth[valid].mean() < 0.3 < np.log(7)
