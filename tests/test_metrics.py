"""Top-k accuracy and the segmentation confusion matrix against hand-computed values."""

import multiprocessing as mp

import pytest
import torch
import torch.distributed as dist

from mtbench.metrics import ConfusionMatrix, TopKAccuracy


def _logits(rankings: list[list[int]], num_classes: int = 6) -> torch.Tensor:
    """Logits whose classes rank in the given order (best first)."""
    logits = torch.zeros(len(rankings), num_classes)
    for row, ranking in enumerate(rankings):
        for place, cls in enumerate(ranking):
            logits[row, cls] = num_classes - place
    return logits


def test_topk_hand_computed():
    meter = TopKAccuracy((1, 5))
    # target ranks: 1st, 2nd, 5th, 6th
    meter.update(_logits([[3, 0, 1, 2, 4, 5], [0, 3, 1, 2, 4, 5], [0, 1, 2, 4, 3, 5], [0, 1, 2, 4, 5, 3]]),
                 torch.tensor([3, 3, 3, 3]))
    assert meter.state.tolist() == [1, 3, 4]
    assert meter.compute() == {"top1": 0.25, "top5": 0.75}


def test_topk_counts_add_up_over_batches():
    meter = TopKAccuracy((1, 2))
    meter.update(_logits([[1, 0, 2]], 3), torch.tensor([1]))
    meter.update(_logits([[1, 0, 2], [2, 1, 0]], 3), torch.tensor([0, 0]))
    assert meter.state.tolist() == [1, 2, 3]
    assert meter.compute() == pytest.approx({"top1": 1 / 3, "top2": 2 / 3})


def test_topk_with_fewer_classes_than_k_counts_every_sample_at_k():
    meter = TopKAccuracy((1, 5))
    meter.update(_logits([[0, 1, 2], [1, 0, 2]], 3), torch.tensor([2, 1]))
    assert meter.compute() == {"top1": 0.5, "top5": 1.0}


def test_topk_before_any_sample_is_zero():
    assert TopKAccuracy().compute() == {"top1": 0.0, "top5": 0.0}


def test_confusion_matrix_hand_computed():
    target = torch.tensor([[0, 0, 1, 1],
                           [2, 2, 255, 1]])
    pred = torch.tensor([[0, 1, 1, 1],
                         [2, 0, 2, 1]])
    meter = ConfusionMatrix(num_classes=4)
    meter.update(pred[None], target[None])
    expected = torch.zeros(4, 4, dtype=torch.int64)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[2, 2], expected[2, 0] = 1, 1, 3, 1, 1
    assert torch.equal(meter.mat, expected)
    result = meter.compute()
    # class 0: tp 1, fp 1 (a 2 predicted 0), fn 1 -> 1/3; class 1: tp 3, fp 1 -> 3/4; class 2: tp 1, fn 1 -> 1/2
    # class 3 is absent from target and prediction: left out of the mean.
    assert result["iou"][:3] == pytest.approx([1 / 3, 3 / 4, 1 / 2]) and result["iou"][3] is None
    assert result["miou"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert result["pixel_acc"] == pytest.approx(5 / 7)


def test_confusion_matrix_takes_logits():
    target = torch.tensor([[[0, 1], [1, 255]]])
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1] = 1.0  # predicts class 1 everywhere
    meter = ConfusionMatrix(num_classes=3)
    meter.update(logits, target)
    result = meter.compute()
    assert meter.mat[0, 1] == 1 and meter.mat[1, 1] == 2 and int(meter.mat.sum()) == 3
    assert result["iou"][:2] == pytest.approx([0.0, 2 / 3]) and result["iou"][2] is None
    assert result["miou"] == pytest.approx(1 / 3)


def test_class_predicted_but_absent_from_target_counts_as_zero():
    meter = ConfusionMatrix(num_classes=3)
    meter.update(torch.tensor([[0, 2]]), torch.tensor([[0, 0]]))
    result = meter.compute()
    assert result["iou"] == [0.5, None, 0.0]
    assert result["miou"] == pytest.approx(0.25)


def test_empty_or_fully_ignored_matrix_gives_zero_not_nan():
    meter = ConfusionMatrix()
    assert meter.compute() == {"miou": 0.0, "pixel_acc": 0.0, "iou": [None] * 21}
    meter.update(torch.zeros(1, 4, 4, dtype=torch.int64), torch.full((1, 4, 4), 255))
    assert meter.compute()["miou"] == 0.0 and int(meter.mat.sum()) == 0


def test_out_of_range_target_is_an_error():
    with pytest.raises(ValueError, match="target values must be in 0..20 or 255"):
        ConfusionMatrix().update(torch.zeros(1, 2, 2, dtype=torch.int64), torch.full((1, 2, 2), 21))


def _rank_counts(rank: int, store: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    top, conf = TopKAccuracy((1,)), ConfusionMatrix(num_classes=2)
    top.update(_logits([[1, 0]], 2), torch.tensor([rank]))  # right on rank 1 only
    conf.update(torch.tensor([[rank, 1]]), torch.tensor([[0, 0]]))
    top.all_reduce()
    conf.all_reduce()
    results.put((rank, top.state.tolist(), conf.mat.tolist()))
    dist.destroy_process_group()


def test_counts_sum_across_processes(tmp_path):
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_rank_counts, args=(rank, tmp_path / "store", results)) for rank in (0, 1)]
    for p in procs:
        p.start()
    got = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert got == [(0, [1, 2], [[1, 3], [0, 0]]), (1, [1, 2], [[1, 3], [0, 0]])]


def test_all_reduce_outside_distributed_is_a_no_op():
    meter = ConfusionMatrix(num_classes=2)
    meter.update(torch.tensor([[1]]), torch.tensor([[1]]))
    meter.all_reduce()
    assert meter.mat.tolist() == [[0, 0], [0, 1]]
