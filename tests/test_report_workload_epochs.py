"""Per-epoch figures of a workload other than ImageNet + COCO: --select best-holdout chooses the epoch by the
workload's joint score on the held-out split, and time to target reads the relative target over its primary
metrics, both from the metric columns its epochs.csv names."""

from __future__ import annotations

import csv
import json

import pytest

from fakeruns import write_run
from mtbench.errors import ConfigError
from mtbench.report import build_report, load_run
from mtbench.report.convergence import AbsoluteTarget, OwnTarget
from mtbench.report.files import json_record, markdown

ACC_A = [{"name": "acc_a", "title": "acc a", "higher_is_better": True, "unit": "%", "primary": True}]
ACC_B = [{"name": "acc_b", "title": "acc b", "higher_is_better": True, "unit": "%", "primary": True}]
ERR_B = [{"name": "err_b", "title": "err b", "higher_is_better": False, "unit": "", "primary": True}]
METRICS = {"a": ACC_A, "b": ACC_B}


def epoch_run(path, optimizer, seed, val, held=None, metrics=METRICS, steps_per_epoch=10):
    """A run of workload toy whose epochs.csv holds ``val[e]`` (and ``held[e]``), {metric: value} per epoch,
    under its own columns (val_<metric>, holdout_<metric>), as the trainer writes another workload's."""
    run = write_run(path, optimizer=optimizer, seed=seed, curve=[(0.0, 0.0)] * len(val), tasks=("a", "b"),
                    steps_per_epoch=steps_per_epoch, init_sha=f"init-{seed}")
    names = [m["name"] for task in metrics.values() for m in task]
    with open(run / "epochs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["epoch", "step", "train_loss_a", "train_loss_b", *(f"val_{n}" for n in names),
                                    *(f"holdout_{n}" for n in names), "seconds"])
        writer.writeheader()
        for e, figures in enumerate(val, 1):
            writer.writerow({"epoch": e, "step": e * steps_per_epoch, "train_loss_a": 1, "train_loss_b": 1,
                             **{f"val_{n}": v for n, v in figures.items()},
                             **{f"holdout_{n}": v for n, v in (held[e - 1] if held else {}).items()},
                             "seconds": e * steps_per_epoch * 0.1})
    summary = json.loads((run / "summary.json").read_text())
    summary.update(workload="toy", task_metrics=metrics, final_metrics=val[-1],
                   holdout_metrics=held[-1] if held else None, final_top1=None, final_miou=None)
    (run / "summary.json").write_text(json.dumps(summary))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "workload": "toy", "tasks": ["a", "b"],
                                                 "holdout": 0.1 if held else 0.0}))
    return load_run(run)


def test_best_holdout_picks_the_epoch_of_the_best_holdout_joint_and_reports_its_test_figures(tmp_path):
    val = [{"acc_a": 0.2, "acc_b": 0.3}, {"acc_a": 0.5, "acc_b": 0.6}, {"acc_a": 0.4, "acc_b": 0.4}]
    # holdout joints 0.25, 0.45, 0.5: epoch 3 is chosen although its test figures are worse than epoch 2's
    held = [{"acc_a": 0.2, "acc_b": 0.3}, {"acc_a": 0.4, "acc_b": 0.5}, {"acc_a": 0.6, "acc_b": 0.4}]
    runs = [epoch_run(tmp_path / "r0", "adam", 0, val, held)]
    final = build_report(runs)
    best = build_report(runs, selection="best-holdout")
    assert best.selected[runs[0].path].epoch == 3 and best.selected[runs[0].path].rule == "best holdout"
    assert best.rows[0].metrics["task_metrics"]["acc_a"]["mean"] == pytest.approx(0.4)
    assert best.rows[0].per_seed["joint"] == pytest.approx({0: 0.4})
    assert final.rows[0].per_seed["joint"] == pytest.approx({0: 0.4})  # the last epoch is epoch 3 too
    held[2] = {"acc_a": 0.3, "acc_b": 0.3}  # now epoch 2 is best on the held-out split
    runs = [epoch_run(tmp_path / "r1", "adam", 0, val, held)]
    best = build_report(runs, selection="best-holdout")
    assert best.selected[runs[0].path].epoch == 2
    assert best.rows[0].per_seed["joint"] == pytest.approx({0: 0.55})
    assert json_record(best)["rows"][0]["runs"][0]["selected"]["metrics"] == pytest.approx({"acc_a": 0.5, "acc_b": 0.6})
    assert "ImageNet + COCO's figures only" not in markdown(best)


def test_best_holdout_of_a_workload_without_a_joint_score_reports_the_final_epoch_and_says_why(tmp_path):
    metrics = {"a": ACC_A, "b": ERR_B}
    val = [{"acc_a": 0.2, "err_b": 0.3}, {"acc_a": 0.5, "err_b": 0.2}]
    held = [{"acc_a": 0.9, "err_b": 0.1}, {"acc_a": 0.1, "err_b": 0.9}]
    run = epoch_run(tmp_path / "r", "adam", 0, val, held, metrics=metrics)
    report = build_report([run], selection="best-holdout")
    assert report.selected[run.path].rule == "final (no joint score)"
    assert report.rows[0].metrics["task_metrics"]["err_b"]["mean"] == pytest.approx(0.2)
    assert "every run is reported after its last epoch" in markdown(report)


def test_time_to_target_reads_the_relative_target_over_the_primary_metrics(tmp_path):
    # finals: adam (0.8, 0.6), sgd (0.4, 0.6): references 0.8 and 0.6; best relative joint = adam's 1.0, so the
    # target is 0.9. adam's relative joints per epoch: (0.25+0.5)/2, (0.75+0.8333)/2 = 0.79, (1+1)/2 -> epoch 3;
    # sgd never passes (0.5+1)/2 = 0.75.
    adam = [{"acc_a": 0.2, "acc_b": 0.3}, {"acc_a": 0.6, "acc_b": 0.5}, {"acc_a": 0.8, "acc_b": 0.6}]
    sgd = [{"acc_a": 0.1, "acc_b": 0.2}, {"acc_a": 0.3, "acc_b": 0.5}, {"acc_a": 0.4, "acc_b": 0.6}]
    runs = [epoch_run(tmp_path / "a", "adam", 0, adam), epoch_run(tmp_path / "s", "sgd", 0, sgd)]
    report = build_report(runs)
    assert isinstance(report.target, OwnTarget)
    assert report.target.references == pytest.approx((0.8, 0.6)) and report.target.score == pytest.approx(0.9)
    by = {r.label: r for r in report.rows}
    assert by["adam"].per_seed["steps_to_target"] == {0: 30}
    assert by["sgd"].per_seed["steps_to_target"] == {0: float("inf")}
    assert by["adam"].convergence == "fast" and by["sgd"].convergence == "not reached"
    assert json_record(report)["target"]["references"] == pytest.approx({"acc_a": 0.8, "acc_b": 0.6})
    assert "relative joint = mean of acc_a/0.8 and acc_b/0.6" in markdown(report)


def test_a_lower_is_better_primary_metric_counts_relative_to_the_best_the_other_way(tmp_path):
    metrics = {"a": ACC_A, "b": ERR_B}
    # references: acc 0.8, err 0.2 (the lowest). adam epoch 2: (0.8/0.8 + 0.2/0.25) / 2 = 0.9 -> reached at 20
    adam = [{"acc_a": 0.4, "err_b": 0.5}, {"acc_a": 0.8, "err_b": 0.25}, {"acc_a": 0.8, "err_b": 0.2}]
    runs = [epoch_run(tmp_path / "a", "adam", 0, adam, metrics=metrics)]
    report = build_report(runs)
    assert report.target.references == pytest.approx((0.8, 0.2))
    assert report.rows[0].per_seed["steps_to_target"] == {0: 20}


def test_a_fixed_target_on_another_workload_is_one_line(tmp_path):
    runs = [epoch_run(tmp_path / "a", "adam", 0, [{"acc_a": 0.2, "acc_b": 0.3}])]
    with pytest.raises(ConfigError, match="fixed targets name ImageNet \\+ COCO's top-1 and mIoU; workload toy"):
        build_report(runs, target=AbsoluteTarget(top1=0.5))


def test_the_auto_target_of_another_workload_is_the_relative_one(tmp_path):
    # the configs look like the embedded workload as shipped (no data, resnet18) but name workload toy
    runs = [epoch_run(tmp_path / "a", "adam", 0, [{"acc_a": 0.2, "acc_b": 0.3}])]
    assert isinstance(build_report(runs).target, OwnTarget)
