"""Measured convergence: the common target, steps to reach it, and the labels, on hand-made curves."""

import pytest

from fakeruns import write_run
from mtbench.convergence import NOT_REACHED, Target, convergence_label, convergence_target, first_reach
from mtbench.report import build_report, load_run, notes
from mtbench.rundir import EpochRow


def rows(*points, steps_per_epoch=10, seconds_per_step=0.5):
    return [EpochRow(epoch=e, step=e * steps_per_epoch, train_loss_cls=None, train_loss_seg=None,
                     val_top1=t, val_top5=None, val_miou=m, val_pixel_acc=None,
                     seconds=e * steps_per_epoch * seconds_per_step) for e, (t, m) in enumerate(points, 1)]


def test_target_is_a_fraction_of_the_best_final_joint_score():
    target = convergence_target([(0.8, 0.4), (0.6, 0.2)], fraction=0.9)
    assert (target.top1_ref, target.miou_ref) == (0.8, 0.4)
    assert target.score == pytest.approx(0.9)
    # each task counts relative to its best final value, so neither dominates
    assert target.joint(0.6, 0.2) == pytest.approx((0.6 / 0.8 + 0.2 / 0.4) / 2)


def test_target_when_different_optimizers_lead_each_task():
    target = convergence_target([(0.8, 0.2), (0.4, 0.4)], fraction=0.9)
    assert target.score == pytest.approx(0.9 * 0.75)  # the best joint score is 0.75, not 1


def test_target_ignores_a_task_nobody_learned():
    target = convergence_target([(0.5, 0.0), (0.25, 0.0)], fraction=0.8)
    assert target.miou_ref is None
    assert target.joint(0.5, 0.0) == pytest.approx(1.0)
    assert target.score == pytest.approx(0.8)


@pytest.mark.parametrize("finals", [[], [(None, None)], [(0.0, 0.0), (None, 0.0)]])
def test_no_target_when_nothing_was_learned(finals):
    assert convergence_target(finals) is None


def test_first_reach_is_the_end_of_the_first_epoch_at_or_above_the_target():
    target = Target(0.9, 0.8, 0.4, 0.9)
    epochs = rows((0.4, 0.2), (0.72, 0.36), (0.8, 0.4))  # epoch 2 is exactly at the target
    assert first_reach(epochs, target) == (20, 10.0)


def test_first_reach_skips_epochs_without_metrics_and_reports_never():
    target = Target(0.9, 0.8, 0.4, 0.9)
    epochs = rows((None, None), (0.8, 0.4))
    assert first_reach(epochs, target) == (20, 10.0)
    assert first_reach(rows((0.1, 0.1), (0.5, 0.3)), target) is None


@pytest.mark.parametrize("ratio, label", [
    (1.0, "fast"), (1.25, "fast"), (1.26, "medium"), (2.0, "medium"), (2.5, "slow"), (3.0, "slow"),
    (3.01, "very slow"), (10.0, "very slow"), (None, NOT_REACHED),
])
def test_labels_from_the_ratio_to_the_fastest(ratio, label):
    assert convergence_label(ratio) == label


CURVES = {  # final (0.8, 0.4) of "a" is the best in both tasks, so the target is a joint score of 0.9
    "a": [(0.76, 0.38), (0.78, 0.39), (0.8, 0.4), (0.8, 0.4)],       # reaches at epoch 1
    "b": [(0.4, 0.2), (0.72, 0.36), (0.75, 0.38), (0.76, 0.38)],     # epoch 2: 2x
    "c": [(0.3, 0.1), (0.5, 0.2), (0.72, 0.37), (0.76, 0.38)],       # epoch 3: 3x
    "d": [(0.1, 0.1), (0.2, 0.1), (0.5, 0.2), (0.74, 0.37)],         # epoch 4: 4x
    "e": [(0.1, 0.1), (0.2, 0.1), (0.3, 0.15), (0.4, 0.2)],          # never
}


def test_report_measures_steps_seconds_and_labels(tmp_path):
    runs = [load_run(write_run(tmp_path / name, optimizer=name, curve=curve, seconds_per_step=0.25))
            for name, curve in CURVES.items()]
    report = build_report(runs)
    by_name = {row.group.optimizer: row for row in report.rows}
    assert report.target.score == pytest.approx(0.9)
    assert {n: r.steps.mean if r.steps else None for n, r in by_name.items()} == {
        "a": 10, "b": 20, "c": 30, "d": 40, "e": None}
    assert by_name["c"].seconds.mean == pytest.approx(7.5)
    assert {n: r.convergence for n, r in by_name.items()} == {
        "a": "fast", "b": "medium", "c": "slow", "d": "very slow", "e": NOT_REACHED}
    assert by_name["d"].ratio == pytest.approx(4.0)
    text = "\n".join(notes(report))
    assert "0.9 x the best final joint score" in text and "<= 1.25x fast" in text
    assert "no interpolation" in text


def test_seeds_that_do_not_reach_are_counted_in_the_label(tmp_path):
    runs = [load_run(write_run(tmp_path / "a0", optimizer="a", seed=0, curve=CURVES["a"])),
            load_run(write_run(tmp_path / "a1", optimizer="a", seed=1, curve=CURVES["a"])),
            load_run(write_run(tmp_path / "b0", optimizer="b", seed=0, curve=CURVES["b"])),
            load_run(write_run(tmp_path / "b1", optimizer="b", seed=1, curve=CURVES["e"]))]
    report = build_report(runs)
    b = report.rows[1]
    assert b.reached == 1 and b.steps.mean == 20
    assert b.convergence.startswith("medium") and b.convergence.endswith("(1/2 seeds)")


def test_failed_runs_get_no_convergence(tmp_path):
    runs = [load_run(write_run(tmp_path / "a", optimizer="a", curve=CURVES["a"])),
            load_run(write_run(tmp_path / "b", optimizer="b", curve=[(0.1, 0.1)], status="failed",
                               error="non-finite loss at step 3"))]
    report = build_report(runs)
    assert report.rows[1].convergence == "n/a"
    assert report.rows[1].status == "failed: non-finite loss at step 3"
    # the failed run's partial curve does not set the target
    assert report.target.top1_ref == 0.8
