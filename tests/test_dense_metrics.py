"""Dense-prediction and digit losses and meters against values worked out by hand on tiny tensors."""

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mtbench.workloads.dense import (DepthMeter, NormalMeter, SegMeter, depth_loss, normal_loss, seg_loss)
from mtbench.workloads.digits import DigitAccuracy, digit_loss


def test_seg_loss_averages_over_labelled_pixels_only():
    # Two pixels labelled (classes 0 and 1), one ignored; logits log(p) so that CE = -log p of the target.
    probs = torch.tensor([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]])  # pixel k's class probabilities
    logits = probs.log().T.reshape(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, -1]]])
    expected = (-math.log(0.5) - math.log(0.8)) / 2
    assert seg_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_seg_loss_of_a_batch_without_labels_is_zero_not_nan():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = seg_loss(logits, torch.full((1, 2, 2), -1))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_seg_meter_counts_the_confusion_of_labelled_pixels():
    meter = SegMeter(3)
    prediction = torch.tensor([[[0, 1, 1, 2, 0]]])
    logits = torch.nn.functional.one_hot(prediction, 3).permute(0, 3, 1, 2).float()
    meter.update(logits, torch.tensor([[[0, 1, 2, -1, 0]]]))
    # class 0: 2 hits, union 2 -> 1; class 1: 1 hit, union 2 (one pixel of 2 predicted 1) -> 0.5;
    # class 2: 0 hits, union 1 -> 0. The ignored pixel (predicted 2) is not counted.
    assert meter.compute() == {"miou": pytest.approx(0.5), "pixel_acc": pytest.approx(3 / 4)}


def test_depth_loss_and_meter_use_valid_pixels_as_libmtl_does():
    output = torch.tensor([[[[1.0, 2.0], [5.0, 7.0]]]])
    target = torch.tensor([[[[2.0, 0.0], [4.0, 7.0]]]])  # one missing pixel
    assert depth_loss(output, target).item() == pytest.approx((1 + 1 + 0) / 3)
    meter = DepthMeter()
    meter.update(output, target)
    meter.update(torch.tensor([[[[3.0]]]]), torch.tensor([[[[1.0]]]]))
    # Pixel means over the whole split: abs (1 + 1 + 0 + 2) / 4, rel (1/2 + 1/4 + 0 + 2/1) / 4.
    assert meter.compute() == {"depth_abs": pytest.approx(1.0), "depth_rel": pytest.approx(2.75 / 4)}


def test_depth_meter_equals_libmtl_batch_means_weighted_by_valid_pixels():
    gen = torch.Generator().manual_seed(0)
    batches = []
    for n in (3, 5):
        target = torch.rand(n, 1, 4, 4, generator=gen) + 0.5
        target[torch.rand(target.shape, generator=gen) < 0.3] = 0
        batches.append((torch.rand(n, 1, 4, 4, generator=gen), target))
    meter = DepthMeter()
    abs_means, rel_means, weights = [], [], []
    for output, target in batches:
        meter.update(output, target)
        valid = target != 0
        err = (output - target).abs()[valid]
        abs_means.append(err.mean().item())
        rel_means.append((err / target[valid]).mean().item())
        weights.append(int(valid.sum()))
    result = meter.compute()
    assert result["depth_abs"] == pytest.approx(np.average(abs_means, weights=weights))
    assert result["depth_rel"] == pytest.approx(np.average(rel_means, weights=weights))


def _normals(*vectors):
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(1, 3, 1, len(vectors))


def test_normal_loss_normalises_the_prediction_and_skips_missing_pixels():
    target = _normals((0, 0, 1), (1, 0, 0), (0, 0, 0))
    output = _normals((0, 0, 5), (1, 1, 0), (3, 1, 2))  # lengths must not matter; the last pixel is missing
    expected = 1 - (1 + 1 / math.sqrt(2)) / 2
    assert normal_loss(output, target).item() == pytest.approx(expected, rel=1e-6)


def test_normal_meter_angles_in_degrees():
    c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
    target = _normals((0, 0, 1), (0, 0, 1), (0, 0, 1), (0, 0, 1), (0, 0, 0))
    output = _normals((0, 0, 2), (s, 0, c), (1, 0, 0), (0, -1, -1), (1, 0, 0))  # 0, 20, 90, 135 degrees; 1 missing
    meter = NormalMeter()
    meter.update(output, target)
    result = meter.compute()
    assert result["normal_mean"] == pytest.approx((0 + 20 + 90 + 135) / 4, abs=1e-6)
    assert result["normal_median"] == pytest.approx(55.0, abs=0.006)  # mean of 20 and 90
    assert result["normal_11"] == 0.25 and result["normal_22"] == 0.5 and result["normal_30"] == 0.5


def test_normal_meter_median_matches_numpy_over_many_batches():
    gen = torch.Generator().manual_seed(1)
    meter, angles = NormalMeter(), []
    for n in (7, 4):
        target = torch.nn.functional.normalize(torch.randn(n, 3, 3, 5, generator=gen), dim=1)
        output = target + 0.6 * torch.randn(n, 3, 3, 5, generator=gen)
        meter.update(output, target)
        cos = (torch.nn.functional.normalize(output.double(), dim=1) * target.double()).sum(1).clamp(-1, 1)
        angles.append(np.degrees(np.arccos(cos.numpy().ravel())))
    angles = np.concatenate(angles)
    result = meter.compute()
    assert result["normal_median"] == pytest.approx(np.median(angles), abs=0.006)
    assert result["normal_mean"] == pytest.approx(angles.mean(), abs=1e-9)
    assert result["normal_22"] == pytest.approx(np.mean(angles < 22.5))


def test_meters_add_up_like_one_pass():
    """What all_reduce sums: two meters' states added equal one meter over both halves."""
    gen = torch.Generator().manual_seed(2)
    output = torch.randn(4, 3, 2, 2, generator=gen)
    target = torch.nn.functional.normalize(torch.randn(4, 3, 2, 2, generator=gen), dim=1)
    whole, first, second = NormalMeter(), NormalMeter(), NormalMeter()
    whole.update(output, target)
    first.update(output[:2], target[:2])
    second.update(output[2:], target[2:])
    for name in ("hist", "within", "total"):
        getattr(first, name).add_(getattr(second, name))
    assert first.compute() == pytest.approx(whole.compute())


def test_digit_loss_and_accuracy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    target = torch.tensor([0, 0, 0])
    assert digit_loss(logits, target).item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item())
    meter = DigitAccuracy("left_acc")
    meter.update(logits, target)
    assert meter.compute() == {"left_acc": pytest.approx(2 / 3)}


def _halves(rank: int):
    """Rank ``rank``'s half of a fixed batch: (outputs, targets) of the three dense tasks."""
    gen = torch.Generator().manual_seed(3)
    seg_out, seg_target = torch.randn(4, 3, 2, 3, generator=gen), torch.randint(-1, 3, (4, 2, 3), generator=gen)
    depth_out, depth_target = torch.rand(4, 1, 2, 3, generator=gen), torch.rand(4, 1, 2, 3, generator=gen).round()
    normal_out = torch.randn(4, 3, 2, 3, generator=gen)
    normal_target = torch.nn.functional.normalize(torch.randn(4, 3, 2, 3, generator=gen), dim=1)
    part = slice(None) if rank is None else slice(2 * rank, 2 * rank + 2)
    return [(seg_out[part], seg_target[part]), (depth_out[part], depth_target[part]),
            (normal_out[part], normal_target[part])]


def _meters():
    return [SegMeter(3), DepthMeter(), NormalMeter()]


def _rank_meters(rank: int, store: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    meters = _meters()
    for meter, (output, target) in zip(meters, _halves(rank)):
        meter.update(output, target)
        meter.all_reduce()
    results.put((rank, [meter.compute() for meter in meters]))
    dist.destroy_process_group()


def test_meters_all_reduce_across_processes_to_the_one_process_result(tmp_path):
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_rank_meters, args=(rank, tmp_path / "store", results)) for rank in (0, 1)]
    for p in procs:
        p.start()
    got = sorted((results.get(timeout=60) for _ in procs), key=lambda item: item[0])
    for p in procs:
        p.join(timeout=60)
    whole = _meters()
    for meter, (output, target) in zip(whole, _halves(None)):
        meter.update(output, target)
    expected = [meter.compute() for meter in whole]
    for _, computed in got:
        assert computed == [pytest.approx(e) for e in expected]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_meters_and_losses_on_a_device_match_the_cpu(device):
    cpu, there = _meters(), [SegMeter(3, device), DepthMeter(device), NormalMeter(device)]
    for task, (output, target) in enumerate(_halves(None)):
        cpu[task].update(output, target)
        there[task].update(output.to(device), target.to(device))
        loss = (seg_loss, depth_loss, normal_loss)[task]
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            low = loss(output.to(device).bfloat16(), target.to(device))
        assert low.dtype == torch.float32
        assert low.item() == pytest.approx(loss(output, target).item(), rel=0.02)
    assert [m.compute() for m in there] == [pytest.approx(m.compute()) for m in cpu]
