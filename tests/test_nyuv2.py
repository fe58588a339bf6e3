"""The NYUv2 .npy layout: reading, resizing, flipping, limits, holdout, refusals; the rendered stand-in."""

import shutil

import numpy as np
import pytest
import torch

from densedata import write_dense
from mtbench.data.dense import DenseTransform, open_dense
from mtbench.data.nyuv2 import LAYOUT, NyuSpec, ensure_nyuv2
from mtbench.errors import ConfigError, DataError
from mtbench.workloads.dense import DenseNet, depth_loss, normal_loss, seg_loss


def test_items_are_the_stored_arrays_as_tensors(tmp_path):
    root = write_dense(tmp_path / "nyu")
    train, val, held, size = open_dense(LAYOUT, root)
    assert (len(train), len(val), held, size) == (4, 2, None, (8, 12))
    image, (label, depth, normal) = val[1]
    assert image.shape == (3, 8, 12) and image.dtype == torch.float32
    stored = np.load(root / "val" / "image" / "1.npy")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), (stored - mean) / std, rtol=1e-5, atol=1e-6)
    assert label.dtype == torch.int64 and label[0, 0] == -1
    assert torch.equal(label, torch.from_numpy(np.load(root / "val" / "label" / "1.npy")).long())
    assert depth.shape == (1, 8, 12) and depth[0, -1, -1] == 0
    assert normal.shape == (3, 8, 12) and torch.equal(normal[:, -1, -1], torch.zeros(3))


def test_the_flip_mirrors_every_target_and_negates_the_normals_x(tmp_path):
    root = write_dense(tmp_path / "nyu")
    train, *_ = open_dense(LAYOUT, root)
    plain = DenseTransform(None, flip=False)
    arrays = [np.load(p) for p in train.samples[0]]
    image, (label, depth, normal) = plain(*arrays)
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        f_image, (f_label, f_depth, f_normal) = train[0]
        flipped = not torch.equal(f_label, label)
        seen.add(flipped)
        if flipped:
            assert torch.equal(f_image, image.flip(-1)) and torch.equal(f_depth, depth.flip(-1))
            assert torch.equal(f_normal[0], -normal[0].flip(-1)) and torch.equal(f_normal[1:], normal[1:].flip(-1))
        else:
            assert torch.equal(f_normal, normal)
    assert seen == {True, False}


def test_resize_keeps_the_aspect_ratio_and_averages_only_valid_depth(tmp_path):
    root = write_dense(tmp_path / "nyu", size=(8, 12))
    depth = np.full((8, 12, 1), 3.0, dtype=np.float32)
    depth[:2, :2] = [[[1.0], [0.0]], [[1.0], [1.0]]]  # one 2 x 2 cell: three valid ones and a hole
    depth[2:4, :2] = [[[0.0], [0.0]], [[5.0], [0.0]]]  # mostly missing
    np.save(root / "val" / "depth" / "0.npy", depth)
    train, val, _, size = open_dense(LAYOUT, root, image_size=4)
    assert size == (4, 6)
    image, (label, d, normal) = val[0]
    assert image.shape == (3, 4, 6) and label.shape == (4, 6) and normal.shape == (3, 4, 6)
    assert d[0, 0, 0].item() == pytest.approx(1.0)  # not 0.75: the hole is not a depth of 0
    assert d[0, 1, 0].item() == 0.0
    assert d[0, 3, 5].item() == pytest.approx(3.0)
    lengths = normal.norm(dim=0)
    assert torch.all(((lengths - 1).abs() < 1e-5) | (lengths == 0))
    assert set(label.unique().tolist()) <= set(range(-1, 13))


def test_limit_and_holdout(tmp_path):
    root = write_dense(tmp_path / "a", count=(10, 3))
    train, val, held, _ = open_dense(LAYOUT, root, limit_train=8, limit_val=2, holdout=0.25)
    assert (len(train), len(val), len(held)) == (6, 2, 2)
    kept = {s[0].name for s in train.samples} | {s[0].name for s in held.samples}
    assert kept == {f"{i}.npy" for i in range(8)}
    assert held.transform.flip is False and train.transform.flip is True
    # The same images are held out wherever the set lies.
    moved = write_dense(tmp_path / "b", count=(10, 3))
    _, _, held_b, _ = open_dense(LAYOUT, moved, limit_train=8, holdout=0.25)
    assert [s[0].name for s in held_b.samples] == [s[0].name for s in held.samples]
    with pytest.raises(ConfigError, match="holdout"):
        open_dense(LAYOUT, root, holdout=1.5)


def _save(path, array):
    np.save(path, array)


def _nan_depth(root):
    depth = np.load(root / "train/depth/1.npy")
    depth[2, 3] = np.nan
    _save(root / "train/depth/1.npy", depth)


BAD = {
    "no normal folder": (lambda r: shutil.rmtree(r / "val/normal"), "", "has no val/normal/ folder"),
    "index missing": (lambda r: (r / "train/depth/2.npy").unlink(), "train/depth/2.npy", "is missing"),
    "not an index": (lambda r: _save(r / "train/label/x.npy", np.zeros((8, 12))), "train/label/x.npy", "<index>.npy"),
    "image shape": (lambda r: _save(r / "train/image/1.npy", np.zeros((8, 12, 4), np.float32)), "train/image/1.npy",
                    "expected H x W x 3"),
    "image dtype": (lambda r: _save(r / "train/image/0.npy", np.zeros((8, 12, 3), np.uint8)), "train/image/0.npy",
                    "dtype uint8"),
    "size mismatch": (lambda r: _save(r / "train/depth/3.npy", np.ones((8, 10, 1), np.float32)), "train/depth/3.npy",
                      "one size"),
    "not npy": (lambda r: (r / "train/normal/1.npy").write_text("hello"), "train/normal/1.npy", "not a readable"),
}
BAD_VALUES = {
    "nan depth": (_nan_depth, "train/depth/1.npy", "NaN"),
    "label range": (lambda r: _save(r / "train/label/1.npy", np.full((8, 12), 13.0, np.float32)), "train/label/1.npy",
                    "label 13, expected whole numbers in 0..12"),
    "label fraction": (lambda r: _save(r / "train/label/1.npy", np.full((8, 12), 2.5, np.float32)),
                       "train/label/1.npy", "whole numbers"),
    "long normals": (lambda r: _save(r / "train/normal/1.npy", np.full((8, 12, 3), 0.9, np.float32)),
                     "train/normal/1.npy", "longer than 1"),
    "negative depth": (lambda r: _save(r / "train/depth/1.npy", np.full((8, 12), -1.0, np.float32)),
                       "train/depth/1.npy", "negative depth"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_layouts_are_refused_in_one_line_naming_the_file(tmp_path, case):
    root = write_dense(tmp_path / "nyu")
    breaker, where, message = BAD[case]
    breaker(root)
    with pytest.raises(DataError, match=message) as info:
        open_dense(LAYOUT, root)
    assert "\n" not in str(info.value) and str(root / where) in str(info.value)


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_are_refused_when_read_naming_the_file(tmp_path, case):
    root = write_dense(tmp_path / "nyu")
    breaker, where, message = BAD_VALUES[case]
    breaker(root)
    train, *_ = open_dense(LAYOUT, root)
    train[0]
    with pytest.raises(DataError, match=message) as info:
        train[1]
    assert "\n" not in str(info.value) and str(root / where) in str(info.value)


def test_a_missing_root_is_named(tmp_path):
    with pytest.raises(DataError, match=f"NYUv2 folder {tmp_path / 'nope'} does not exist"):
        open_dense(LAYOUT, tmp_path / "nope")


class TinyDense(torch.nn.Module):
    """A few convolutions with one output per task: enough to show that the image carries the targets."""

    def __init__(self):
        super().__init__()
        self.trunk = torch.nn.Sequential(
            torch.nn.Conv2d(3, 24, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(24, 24, 3, padding=2, dilation=2), torch.nn.ReLU(),
            torch.nn.Conv2d(24, 24, 3, padding=4, dilation=4), torch.nn.ReLU(),
        )
        self.heads = torch.nn.ModuleList(torch.nn.Conv2d(24, n, 1) for n in (13, 1, 3))

    def forward(self, x):
        shared = self.trunk(x)
        return tuple(head(shared) for head in self.heads)


def test_the_stand_in_is_read_like_real_data_and_its_tasks_are_learnable(tmp_path):
    spec = NyuSpec(train=12, val=4, height=36, width=48)
    root = ensure_nyuv2(tmp_path, spec)
    assert ensure_nyuv2(tmp_path, spec) == root  # written once
    train, val, _, size = open_dense(LAYOUT, root)
    assert size == (36, 48)
    plain = train.with_samples(train.samples, val.transform)
    items = [plain[i] for i in range(len(plain))]
    images = torch.stack([image for image, _ in items])
    targets = [torch.stack([t[k] for _, t in items]) for k in range(3)]
    labels, depths, normals = targets
    assert len(labels.unique()) >= 6 and (labels == -1).any()
    assert (depths == 0).any() and (depths > 0).float().mean() > 0.9
    assert torch.equal(depths == 0, normals.norm(dim=1, keepdim=True) == 0)

    torch.manual_seed(0)
    model = TinyDense()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = (seg_loss, depth_loss, normal_loss)

    def task_losses():
        return [loss(out, tgt) for loss, out, tgt in zip(losses, model(images), targets)]

    with torch.no_grad():
        first = [v.item() for v in task_losses()]
    for _ in range(40):
        optimizer.zero_grad()
        sum(task_losses()).backward()
        optimizer.step()
    with torch.no_grad():
        last = [v.item() for v in task_losses()]
    assert all(after < 0.6 * before for before, after in zip(first, last)), (first, last)


def test_the_model_gives_every_task_an_output_at_the_input_size():
    model = DenseNet("resnet18", (13, 1, 3))
    outputs = model(torch.randn(2, 3, 36, 48))
    assert [tuple(o.shape) for o in outputs] == [(2, 13, 36, 48), (2, 1, 36, 48), (2, 3, 36, 48)]
    shared = {id(p) for p in model.backbone.parameters()}
    assert model.last_shared_parameters() and all(id(p) in shared for p in model.last_shared_parameters())


def test_a_torchvision_resnet_checkpoint_loads_onto_the_backbone(tmp_path):
    import torchvision

    from mtbench.model import load_weights

    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, tmp_path / "r18.pth")
    model = DenseNet("resnet18", (13, 1, 3))
    note = load_weights(model, str(tmp_path / "r18.pth"))
    assert note.endswith("kept initial values for heads (36 tensors)")
    assert torch.equal(model.backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
