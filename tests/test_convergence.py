"""Measured convergence: the joint score, the targets, steps to reach them, and the labels, on hand-made curves."""

import math

import pytest

from fakeruns import write_run
from mtbench.report.convergence import (
    NOT_REACHED, TARGET_FRACTION, UNKNOWN, AbsoluteTarget, Target, convergence_label, convergence_target, first_reach,
    joint_score, parse_target,
)
from mtbench.errors import ConfigError
from mtbench.report import build_report, load_run
from mtbench.report.files import notes
from mtbench.rundir import EPOCH_COLUMNS, EPOCHS_FILE, EpochRow


def rows(*points, holdout=None, steps_per_epoch=10, seconds_per_step=0.5):
    held = holdout or [(None, None)] * len(points)
    return [EpochRow(epoch=e, step=e * steps_per_epoch, train_loss_cls=None, train_loss_seg=None,
                     val_top1=t, val_top5=None, val_miou=m, val_pixel_acc=None, holdout_top1=ht,
                     holdout_top5=None, holdout_miou=hm, holdout_pixel_acc=None,
                     seconds=e * steps_per_epoch * seconds_per_step)
            for e, ((t, m), (ht, hm)) in enumerate(zip(points, held), 1)]


def test_joint_score_is_the_mean_of_the_trained_tasks():
    assert joint_score(0.6, 0.2) == pytest.approx(0.4)
    assert joint_score(0.6, None, ("cls",)) == pytest.approx(0.6)
    assert joint_score(0.6, 0.9, ("seg",)) == pytest.approx(0.9)
    assert joint_score(0.6, None) is None


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


def test_first_reach_skips_epochs_without_metrics_and_reports_never_apart_from_unknown():
    target = Target(0.9, 0.8, 0.4, 0.9)
    epochs = rows((None, None), (0.8, 0.4))
    assert first_reach(epochs, target) == (20, 10.0)
    assert first_reach(rows((0.1, 0.1), (0.5, 0.3)), target) == (math.inf, math.inf)  # never reached
    # no figures to read on the split: whether the target was reached is unknown
    assert first_reach([], target) is None and first_reach(rows((None, None)), target) is None
    assert first_reach(rows((0.8, 0.4)), target, "holdout") is None


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
    assert {n: r.metrics["steps_to_target"]["median"] for n, r in by_name.items()} == {
        "a": 10, "b": 20, "c": 30, "d": 40, "e": math.inf}
    assert by_name["c"].metrics["seconds_to_target"]["median"] == pytest.approx(7.5)
    assert by_name["e"].metrics["steps_to_target"]["reached"] == 0
    assert {n: r.convergence for n, r in by_name.items()} == {
        "a": "fast", "b": "medium", "c": "slow", "d": "very slow", "e": NOT_REACHED}
    assert by_name["d"].ratio == pytest.approx(4.0)
    text = "\n".join(notes(report))
    assert "0.9 x the best final relative joint score" in text and "<= 1.25x fast" in text
    assert "no interpolation" in text and "on the test split" in text


def test_a_seed_that_never_reaches_counts_as_infinite(tmp_path):
    runs = [load_run(write_run(tmp_path / f"{name}{seed}", optimizer=name, seed=seed, curve=CURVES[curve]))
            for name, seed, curve in (("a", 0, "a"), ("a", 1, "a"), ("b", 0, "b"), ("b", 1, "e"),
                                      ("c", 0, "b"), ("c", 1, "b"), ("c", 2, "e"))]
    report = build_report(runs)
    a, b, c = report.rows
    # half of b's seeds miss: its median is inf, whatever the seed that reached
    assert b.per_seed["steps_to_target"] == {0: 20, 1: math.inf}
    assert (b.metrics["steps_to_target"]["median"], b.metrics["steps_to_target"]["reached"]) == (math.inf, 1)
    assert b.convergence == f"{NOT_REACHED} (1/2 seeds)"
    # one miss in three: the median is still the seeds' that reached, and the label says how many did
    assert (c.metrics["steps_to_target"]["median"], c.metrics["steps_to_target"]["reached"]) == (20, 2)
    assert c.convergence == "medium (2/3 seeds)" and c.ratio == pytest.approx(2.0)
    assert c.metrics["steps_to_target"]["mean"] == math.inf and c.metrics["steps_to_target"]["ci_low"] is None


def test_failed_runs_get_no_convergence(tmp_path):
    runs = [load_run(write_run(tmp_path / "a", optimizer="a", curve=CURVES["a"])),
            load_run(write_run(tmp_path / "b", optimizer="b", curve=[(0.1, 0.1)], status="failed",
                               error="non-finite loss at step 3"))]
    report = build_report(runs)
    assert report.rows[1].convergence == "n/a"
    assert report.rows[1].status == "failed: non-finite loss at step 3"
    # the failed run's partial curve does not set the target
    assert report.target.top1_ref == 0.8


@pytest.mark.parametrize("epochs_csv", ["", "header"])
def test_a_completed_run_without_epoch_figures_has_an_unknown_time_not_a_miss(tmp_path, epochs_csv):
    paths = [write_run(tmp_path / name, optimizer=name, curve=CURVES[name]) for name in ("a", "b")]
    (paths[1] / EPOCHS_FILE).write_text(",".join(EPOCH_COLUMNS) + "\n" if epochs_csv else "")
    report = build_report([load_run(path) for path in paths], target=AbsoluteTarget(top1=0.5))
    a, b = report.rows
    assert a.convergence == "fast" and a.per_seed["steps_to_target"] == {0: 10}
    assert b.status == "ok" and b.per_seed["steps_to_target"] == {0: None}
    assert b.convergence == UNKNOWN != NOT_REACHED and b.metrics["steps_to_target"]["n"] == 0
    assert f"{UNKNOWN}: no completed run of the row has" in "\n".join(notes(report))


# -- fixed targets -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, parsed", [
    ("relative", TARGET_FRACTION),
    ("0.8", 0.8),
    ("top1=0.5,miou=0.3", AbsoluteTarget(top1=0.5, miou=0.3)),
    (" miou = 0.25 ", AbsoluteTarget(miou=0.25)),
])
def test_parse_target(text, parsed):
    assert parse_target(text) == parsed


@pytest.mark.parametrize("text, message", [
    ("fast", "'fast' does not parse: expected auto, relative"),
    ("1.5", "a relative target must be a fraction in \\(0, 1\\)"),
    ("top5=0.5", "'top5' is not a target metric \\(expected top1 or miou"),
    ("top1=0.5,top1=0.6", "names top1 twice"),
    ("top1=high", "top1='high' is not a number"),
    ("miou=0", "miou=0 is out of range \\(expected a value in \\(0, 1\\]\\)"),
    ("top1=nan", "top1=nan is out of range"),
])
def test_bad_targets_are_one_line_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_target(text)


def test_absolute_targets_must_all_be_met():
    target = AbsoluteTarget(top1=0.5, miou=0.3)
    epochs = rows((0.6, 0.2), (0.45, 0.35), (0.5, 0.3))  # top-1 alone, mIoU alone, then both (exactly)
    assert first_reach(epochs, target) == (30, 15.0)
    assert first_reach(epochs, AbsoluteTarget(top1=0.5)) == (10, 5.0)
    assert first_reach(rows((0.6, 0.2), (0.7, 0.29)), target) == (math.inf, math.inf)
    assert target.needs(("cls", "seg")) and not target.needs(("cls",)) and AbsoluteTarget(top1=0.5).needs(("cls",))


def test_targets_are_read_on_the_split_asked_for():
    epochs = rows((0.9, 0.9), (0.9, 0.9), holdout=[(0.1, 0.1), (0.6, 0.4)])
    target = AbsoluteTarget(top1=0.5, miou=0.3)
    assert first_reach(epochs, target, "val") == (10, 5.0)
    assert first_reach(epochs, target, "holdout") == (20, 10.0)


def test_absolute_targets_in_a_report_are_read_on_the_holdout_split(tmp_path):
    # the test split reaches the target at epoch 1; the held-out split, which decides, only at epoch 3
    test, held = [(0.9, 0.9)] * 3, [(0.1, 0.1), (0.4, 0.2), (0.6, 0.4)]
    runs = [load_run(write_run(tmp_path / "a", optimizer="a", curve=test, holdout_curve=held)),
            load_run(write_run(tmp_path / "b", optimizer="b", curve=test, holdout_curve=[(0.1, 0.1)] * 3)),
            load_run(write_run(tmp_path / "c", optimizer="c", curve=[(0.1, 0.1), (0.6, 0.4), (0.6, 0.4)]))]
    report = build_report(runs, target=AbsoluteTarget(top1=0.5, miou=0.3))
    a, b, c = report.rows
    assert a.per_seed["steps_to_target"] == {0: 30} and b.per_seed["steps_to_target"] == {0: math.inf}
    assert c.per_seed["steps_to_target"] == {0: 20}  # no holdout: the test split
    assert (a.convergence, b.convergence, c.convergence) == ("medium", NOT_REACHED, "fast")
    text = "\n".join(notes(report))
    assert "absolute: top-1 >= 0.5 and mIoU >= 0.3" in text
    assert "on the held-out split for the 2 runs that have one, on the test split for the other 1" in text


def test_a_single_task_baseline_is_not_timed_against_a_target_it_cannot_meet(tmp_path):
    runs = [load_run(write_run(tmp_path / "a", optimizer="adam", curve=CURVES["a"])),
            load_run(write_run(tmp_path / "b", optimizer="adam", curve=CURVES["a"], tasks=("cls",),
                               task_weights=(1.0, 0.0)))]
    report = build_report(runs, target=AbsoluteTarget(top1=0.5, miou=0.3))
    row, baseline = report.rows
    assert baseline.label == "adam[cls]" and baseline.role == "baseline"
    assert baseline.metrics["steps_to_target"] is None and baseline.convergence == "n/a"
    assert row.per_seed["steps_to_target"] == {0: 10}


def test_auto_is_the_embedded_target_on_the_embedded_workload_and_relative_elsewhere():
    from mtbench.report.convergence import EMBEDDED_TARGET, TARGET_FRACTION, default_target, parse_target

    embedded = {"imagenet": None, "coco": None, "image_size": None, "limit_train": None, "limit_val": None,
                "backbone": "resnet18", "weights": None, "epochs": 7}
    assert parse_target("auto") is None
    assert default_target([embedded, embedded]) == EMBEDDED_TARGET
    assert default_target([embedded, {**embedded, "limit_train": 64}]) == TARGET_FRACTION
    assert default_target([{**embedded, "imagenet": "/data/imagenet"}]) == TARGET_FRACTION
    assert default_target([]) == TARGET_FRACTION
