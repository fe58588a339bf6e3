"""The report of a workload other than ImageNet + COCO: its metrics as summary.json names them (with their
direction), the joint score where every primary metric is higher-is-better, Δm over every metric with the
sign of a lower-is-better one flipped, paired by seed against the single-task baseline of the metric's task."""

from __future__ import annotations

import csv
import io
import json

import pytest

from fakeruns import write_run
from mtbench.report import build_report, load_run
from mtbench.report.files import csv_text, json_record, markdown, terminal_table
from mtbench.report.stats import delta_m

DEPTH = [{"name": "seg_acc", "title": "seg acc", "higher_is_better": True, "unit": "%", "primary": True}]
ERROR = [{"name": "abs_err", "title": "abs err", "higher_is_better": False, "unit": "m", "primary": True},
         {"name": "rel_err", "title": "rel err", "higher_is_better": False, "unit": "", "primary": False}]
ACC = [{"name": "acc_b", "title": "acc b", "higher_is_better": True, "unit": "%", "primary": True}]


def own_run(path, optimizer, seed, figures, tasks, metrics, workload="toy"):
    """A run directory of workload ``workload`` whose summary.json names ``metrics`` and holds ``figures``."""
    run = write_run(path, optimizer=optimizer, seed=seed, tasks=tasks, init_sha=f"init-{seed}")
    summary = json.loads((run / "summary.json").read_text())
    summary.update(workload=workload, task_metrics={t: metrics[t] for t in tasks}, final_metrics=figures,
                   final_top1=None, final_miou=None)
    (run / "summary.json").write_text(json.dumps(summary))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "workload": workload, "tasks": list(tasks)}))
    return load_run(run)


def test_a_workload_with_an_error_metric_gets_delta_m_with_its_sign_flipped_and_no_joint_score(tmp_path):
    metrics = {"a": DEPTH, "b": ERROR}
    runs = []
    for seed, (acc, err, rel) in enumerate([(0.60, 0.50, 0.20), (0.66, 0.40, 0.25)]):
        runs.append(own_run(tmp_path / f"m{seed}", "adam", seed, {"seg_acc": acc, "abs_err": err, "rel_err": rel},
                            ("a", "b"), metrics))
        runs.append(own_run(tmp_path / f"ba{seed}", "sgd", seed, {"seg_acc": 0.50}, ("a",), metrics))
        runs.append(own_run(tmp_path / f"bb{seed}", "sgd", seed, {"abs_err": 0.40, "rel_err": 0.20}, ("b",), metrics))
    report = build_report(runs, primary="delta_m")
    row = next(r for r in report.rows if r.label == "adam")
    # seed 0: acc +20 %, abs err 25 % worse, rel err as good: (20 - 25 + 0) / 3; seed 1: (32 + 0 - 25) / 3
    assert row.per_seed["delta_m"] == pytest.approx({0: -5 / 3, 1: 7 / 3})
    assert row.metrics["joint"]["n"] == 0  # a mean of an accuracy and an error is no score
    assert row.metrics["task_metrics"]["abs_err"]["mean"] == pytest.approx(0.45)
    assert [r.label for r in report.rows] == ["adam", "sgd[a]", "sgd[b]"]
    text = terminal_table(report)
    assert "Metrics of workload toy (↑ higher is better, ↓ lower)" in text and "abs err ↓" in text
    assert "Joint score: not defined (a primary metric is lower-is-better)" in text
    assert "Data: workload toy, its embedded stand-in" in text and "Loss scale: none (a x1, b x1)" in text
    assert "Joint score = mean of top-1 and mIoU" not in markdown(report)
    record = json_record(report)
    assert record["task_metrics"]["workload"] == "toy"
    assert [m["name"] for m in record["task_metrics"]["metrics"]] == ["seg_acc", "abs_err", "rel_err"]
    assert set(record["task_metrics"]["rows"]["sgd[a]"]) == {"seg_acc"}  # a baseline has its task's metrics
    assert record["rows"][0]["metrics"]["delta_m"]["mean"] == pytest.approx(1 / 3)


def test_a_workload_of_accuracies_ranks_rows_by_the_mean_of_the_primary_metrics(tmp_path):
    metrics = {"a": DEPTH, "b": ACC}
    runs = [own_run(tmp_path / f"{opt}{seed}", opt, seed, {"seg_acc": acc, "acc_b": acc + 0.1}, ("a", "b"), metrics)
            for opt, accs in (("adam", (0.7, 0.72, 0.71)), ("sgd", (0.3, 0.32, 0.31))) for seed, acc in enumerate(accs)]
    report = build_report(runs)
    by = {r.label: r for r in report.rows}
    assert by["adam"].per_seed["joint"] == pytest.approx({0: 0.75, 1: 0.77, 2: 0.76})
    assert by["adam"].rank == 1 and by["sgd"].rank == 2 and by["sgd"].tied_with_best is False
    assert "Best joint score: adam" in " ".join(report.verdict)


def test_the_default_workload_reads_top1_and_miou_as_always(tmp_path):
    run = load_run(write_run(tmp_path / "r", curve=[(0.5, 0.3)]))
    report = build_report([run])
    assert report.own is None and "task_metrics" not in json_record(report)


def test_delta_m_flips_the_sign_of_a_lower_is_better_metric():
    out = delta_m({"acc": {0: 0.6}, "err": {0: 0.3}}, {"acc": {0: 0.5}, "err": {0: 0.4}}, lower_is_better={"err"})
    assert out == pytest.approx({0: 100 * (0.2 + 0.25) / 2})


def test_a_trial_of_another_workload_scores_the_joint_of_its_holdout_metrics():
    from mtbench.rundir import Summary
    from mtbench.tuning import score

    told = Summary(workload="toy", tasks=("a", "b"), task_metrics={"a": DEPTH, "b": ACC},
                   holdout_metrics={"seg_acc": 0.4, "acc_b": 0.6}, final_metrics={"seg_acc": 0.5, "acc_b": 0.9})
    assert score(told, "joint") == pytest.approx(0.5) and score(told, "joint", "final") == pytest.approx(0.7)
    assert score(Summary(workload="toy", tasks=("a", "b"), task_metrics={"a": DEPTH, "b": ERROR},
                         holdout_metrics={"seg_acc": 0.4, "abs_err": 0.3}), "joint") is None


def test_tune_md_names_the_workloads_joint_objective_and_a_trial_keeps_its_own_holdout_figures():
    from mtbench.cli.tune import joint_text
    from mtbench.plugins import load_registry
    from mtbench.rundir import Summary
    from mtbench.tuning.results import notes
    from mtbench.tuning.worker import _facts

    registry = load_registry()
    assert joint_text(registry.workload("imagenet-coco")) == "joint = mean of top-1 and mIoU"
    digits = registry.workload("multidigits")
    titles = [t.metric(t.primary).title for t in digits.tasks]
    text = joint_text(digits)
    assert text.startswith("joint = mean of ") and all(title in text for title in titles) and "top-1 and mIoU" not in text
    meta = {"objective": "joint", "holdout": 0.1, "trials": 2, "sampler": "qmc", "joint": text}
    assert f"{text})." in notes([], meta)[0]
    told = Summary(workload="toy", tasks=("a", "b"), task_metrics={"a": DEPTH, "b": ACC}, steps=4, epochs=1,
                   holdout_metrics={"seg_acc": 0.4, "acc_b": 0.6})
    assert _facts({}, told, 0.0)["holdout"] == {"seg_acc": 0.4, "acc_b": 0.6}
    assert _facts({}, Summary(holdout_top1=0.3, holdout_miou=0.2), 0.0)["holdout"] == {"top1": 0.3, "miou": 0.2}


def test_another_workloads_rows_carry_none_of_the_guides_imagenet_coco_ranges(tmp_path):
    """The guide's expected results are for real ImageNet + COCO: a run's preset carries them on any workload,
    but another workload's report has them nowhere (report.csv's guide columns, report.json, a column or note)."""
    metrics = {"a": DEPTH, "b": ACC}
    runs = [own_run(tmp_path / f"adam{seed}", "adam", seed, {"seg_acc": 0.7, "acc_b": 0.8}, ("a", "b"), metrics)
            for seed in (0, 1)]
    assert runs[0].config["preset"]["expected"]  # what the run's config.json says
    report = build_report(runs, expected={"adam": {"top1": [0.5, 0.6], "miou": [0.03, 0.04], "convergence": "fast"}})
    assert [r.group.expected for r in report.rows] == [None]
    assert json_record(report)["rows"][0]["guide_real_data"] is None
    row = next(csv.DictReader(io.StringIO(csv_text(report))))
    assert {k: v for k, v in row.items() if k.startswith("guide_")} == dict.fromkeys(
        ["guide_top1_lo", "guide_top1_hi", "guide_miou_lo", "guide_miou_hi", "guide_convergence"], "")
    assert "guide" not in markdown(report) and "guide" not in terminal_table(report)
