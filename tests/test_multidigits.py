"""multidigits: the on-disk format, its refusals, the embedded pairs and a few steps of learning."""

import numpy as np
import pytest
import torch

from mtbench.data.multidigits import (DigitsSpec, compose, ensure_multidigits, open_multidigits, source_pools,
                                      write_multidigits)
from mtbench.errors import DataError
from mtbench.workloads.digits import DigitsNet, digit_loss


def _write(root, n=(6, 4), size=32, dtype=np.float32):
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "val"), n):
        (root / split).mkdir(parents=True)
        images = rng.uniform(0, 1, (count, size, size))
        np.save(root / split / "images.npy", (images * 255).astype(np.uint8) if dtype == np.uint8 else
                images.astype(dtype))
        np.save(root / split / "labels.npy", rng.integers(0, 10, (count, 2)))
    return root


def test_compose_takes_the_max_of_the_two_placed_digits():
    left, right = np.full((2, 2), 0.5, np.float32), np.full((2, 2), 0.8, np.float32)
    canvas = compose(left, right, 4, (0, 0, 1, 1))
    expected = np.array([[0.5, 0.5, 0, 0], [0.5, 0.8, 0.8, 0], [0, 0.8, 0.8, 0], [0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(canvas, expected)


def test_items_limits_resize_and_holdout(tmp_path):
    root = _write(tmp_path / "md", dtype=np.uint8)
    train, val, held, size = open_multidigits(root, limit_train=5, holdout=0.4)
    assert (len(train), len(val), len(held), size) == (3, 4, 2, 32)
    image, (left, right) = val[1]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    labels = np.load(root / "val" / "labels.npy")
    assert (int(left), int(right)) == tuple(labels[1])
    assert sorted(train.samples + held.samples) == list(range(5))
    small, *_ = open_multidigits(root, image_size=16)
    assert small[0][0].shape == (1, 16, 16)
    np.save(root / "val" / "images.npy", np.load(root / "val" / "images.npy")[:, None])  # N x 1 x H x W
    assert torch.equal(open_multidigits(root)[1][1][0], image)


BAD = {
    "no labels": (lambda r: (r / "val/labels.npy").unlink(), "val/labels.npy", "does not exist"),
    "count": (lambda r: np.save(r / "train/labels.npy", np.zeros((5, 2), np.int64)), "train/labels.npy",
              r"expected 6 x 2"),
    "label range": (lambda r: np.save(r / "train/labels.npy", np.full((6, 2), 10)), "train/labels.npy", "label 10"),
    "label dtype": (lambda r: np.save(r / "train/labels.npy", np.zeros((6, 2), np.float32)), "train/labels.npy",
                    "expected integers"),
    "image shape": (lambda r: np.save(r / "val/images.npy", np.zeros((4, 32), np.float32)), "val/images.npy",
                    "expected N x H x W"),
    "nan": (lambda r: np.save(r / "train/images.npy", np.full((6, 32, 32), np.nan, np.float32)), "train/images.npy",
            "NaN"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_naming_the_file(tmp_path, case):
    root = _write(tmp_path / "md")
    breaker, where, message = BAD[case]
    breaker(root)
    with pytest.raises(DataError, match=message) as info:
        open_multidigits(root)
    assert "\n" not in str(info.value) and str(root / where) in str(info.value)


def test_the_embedded_pairs_share_no_source_image_between_splits(tmp_path):
    spec = DigitsSpec(train=300, val=100)
    out = tmp_path / "set"
    out.mkdir()
    described = write_multidigits(out, spec)
    assert described["sources"] == {"train": 1438, "val": 359}
    images = np.load(out / "train" / "images.npy")
    assert images.shape == (300, 32, 32) and images.dtype == np.float32
    pools = source_pools(1797, spec)
    assert not set(pools["train"]) & set(pools["val"]) and len(pools["train"]) + len(pools["val"]) == 1797
    for split in ("train", "val"):
        labels = np.load(out / split / "labels.npy")
        assert set(labels[:, 0]) == set(range(10)) == set(labels[:, 1])


def test_a_few_steps_of_the_network_learn_both_digits(tmp_path):
    root = ensure_multidigits(tmp_path, DigitsSpec(train=256, val=64))
    train, *_ = open_multidigits(root)
    images = torch.stack([train[i][0] for i in range(256)])
    targets = [torch.stack([train[i][1][k] for i in range(256)]) for k in range(2)]
    torch.manual_seed(0)
    model = DigitsNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def losses():
        return [digit_loss(out, tgt) for out, tgt in zip(model(images), targets)]

    with torch.no_grad():
        first = [v.item() for v in losses()]
    for _ in range(40):
        optimizer.zero_grad()
        sum(losses()).backward()
        optimizer.step()
    with torch.no_grad():
        last = [v.item() for v in losses()]
    assert all(after < 0.6 * before for before, after in zip(first, last)), (first, last)
    assert model.last_shared_parameters()[0] is model.shared[1].weight
