"""Δm against a reference row of the comparison where no single-task baselines were run (report.reference,
taskmetrics' NOTE [reference row]): a workload whose primary metrics point different ways (an accuracy up,
an error down) is ranked by it under the default --primary joint; the reference row is 0 on every seed;
--reference picks another row; the single-task baselines, where run, stay the reference; a workload with a
joint score keeps its report."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakeruns import write_comparison, write_run
from mtbench.cli import main
from mtbench.errors import ConfigError
from mtbench.report import build_report, load_run
from mtbench.report.files import (
    CSV_FIELDS, csv_text, json_record, markdown, sweep_headers, sweep_rows, table_rows, terminal_table,
)
from mtbench.report.files import table_headers as table_headers_of
from mtbench.report.reference import choose_reference
from mtbench.report.rows import RowSpec
from mtbench.tuning.across import row_name
from mtbench.report.workloads import best_on, profile_record, profile_scores

ACC = [{"name": "seg_acc", "title": "seg acc", "higher_is_better": True, "unit": "%", "primary": True}]
ERRORS = [{"name": "abs_err", "title": "abs err", "higher_is_better": False, "unit": "m", "primary": True},
          {"name": "rel_err", "title": "rel err", "higher_is_better": False, "unit": "", "primary": False}]
ACC_B = [{"name": "acc_b", "title": "acc b", "higher_is_better": True, "unit": "%", "primary": True}]
MIXED = {"a": ACC, "b": ERRORS}

# (seg acc up, abs err down, rel err down) per row and seed
FIGURES = {"adam": [(0.60, 0.50, 0.20), (0.50, 0.40, 0.10)],
           "sgd": [(0.66, 0.40, 0.25), (0.55, 0.30, 0.12)]}


def own_run(path: Path, optimizer: str, seed: int, figures: dict, tasks=("a", "b"), metrics=MIXED,
            workload: str = "toy", status: str = "completed"):
    """A run directory of workload ``workload`` whose summary.json names ``metrics`` and holds ``figures``."""
    run = write_run(path, optimizer=optimizer, seed=seed, tasks=tasks, init_sha=f"init-{seed}", status=status,
                    error="boom" if status == "failed" else None)
    summary = json.loads((run / "summary.json").read_text())
    summary.update(workload=workload, task_metrics={t: metrics[t] for t in tasks}, final_top1=None,
                   final_miou=None, final_metrics=figures if status == "completed" else None)
    (run / "summary.json").write_text(json.dumps(summary))
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "workload": workload, "tasks": list(tasks)}))
    return load_run(run)


def mixed_runs(tmp_path, figures=FIGURES, **kwargs):
    return [own_run(tmp_path / f"{opt}{seed}", opt, seed, dict(zip(("seg_acc", "abs_err", "rel_err"), values)),
                    **kwargs)
            for opt, seeds in figures.items() for seed, values in enumerate(seeds)]


def by_label(report):
    return {row.label: row for row in report.rows}


def test_delta_m_against_the_reference_row_is_the_hand_computed_one_and_ranks_the_rows(tmp_path):
    report = build_report(mixed_runs(tmp_path))  # --primary joint, the default
    rows = by_label(report)
    # sgd against adam, seed by seed: acc +10 %, abs err 20 % lower (a gain), rel err 25 % higher (a loss);
    # seed 1: +10 %, 25 % lower, 20 % higher
    assert rows["sgd"].per_seed["delta_m"] == pytest.approx({0: (10 + 20 - 25) / 3, 1: (10 + 25 - 20) / 3})
    assert rows["adam"].per_seed["delta_m"] == {0: 0.0, 1: 0.0}  # the reference against itself
    assert report.primary == "delta_m" and report.delta_m_reference == "adam" and report.baselines == {}
    assert rows["sgd"].rank == 1 and rows["sgd"].verdict["is_best"]
    assert rows["adam"].vs_best["diff_mean"] == pytest.approx(-(5 / 3 + 5) / 2)
    assert report.verdict[0] == (
        "Ranked by Δm vs adam: the workload has no joint score (a primary metric is lower-is-better) and no "
        "single-task baselines were run, so each row's Δm is measured against the run of adam (Adam on the "
        "weighted sum, the baseline multi-task methods are held against) with the same seed.")
    assert report.verdict[1] == "Best Δm vs adam: sgd (3.3%, mean over 2 seeds)."
    text = terminal_table(report)
    assert "Δm vs adam" in table_headers(text) and "vs best (Δm vs adam)" in text
    assert "--primary joint ranks by Δm." in text and "against the run of the compared row adam (the reference)" in text
    assert "Selection: final" in text  # a workload without a joint score is reported at its last epoch
    record = json_record(report)
    assert record["delta_m_reference"] == "adam" and record["primary"] == "delta_m"
    assert record["rows"][1]["metrics"]["delta_m"]["mean"] == pytest.approx(10 / 3)
    assert "Ranked by Δm vs adam" in markdown(report)


def table_headers(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("rank"))


def test_reference_picks_another_row_and_an_unknown_one_is_one_line(tmp_path):
    runs = mixed_runs(tmp_path)
    report = build_report(runs, reference="sgd")
    rows = by_label(report)
    assert rows["sgd"].per_seed["delta_m"] == {0: 0.0, 1: 0.0}
    # adam against sgd: seed 0 acc (0.60 - 0.66) / 0.66, abs err (0.40 - 0.50) / 0.40, rel err (0.25 - 0.20) / 0.25
    assert rows["adam"].per_seed["delta_m"] == pytest.approx({
        0: 100 * ((0.60 - 0.66) / 0.66 + (0.40 - 0.50) / 0.40 + (0.25 - 0.20) / 0.25) / 3,
        1: 100 * ((0.50 - 0.55) / 0.55 + (0.30 - 0.40) / 0.30 + (0.12 - 0.10) / 0.12) / 3})
    assert report.delta_m_reference == "sgd" and json_record(report)["delta_m_reference"] == "sgd"
    assert report.verdict[0].startswith("Ranked by Δm vs sgd:") and "(named by --reference)" in report.verdict[0]
    assert rows["sgd"].rank == 1  # the order does not change with the reference here
    with pytest.raises(ConfigError) as info:
        build_report(runs, reference="adamw")
    assert str(info.value) == ("--reference 'adamw' is not a compared row of this comparison (expected one of "
                               "adam, sgd)")


def test_without_adam_the_first_compared_row_is_the_reference(tmp_path):
    figures = {"sgd": FIGURES["sgd"], "lion": FIGURES["adam"]}
    report = build_report(mixed_runs(tmp_path, figures))
    assert report.delta_m_reference == "sgd" and by_label(report)["sgd"].per_seed["delta_m"] == {0: 0.0, 1: 0.0}
    assert "(the first compared row, no row of adam on the weighted sum being compared)" in report.verdict[0]


def test_a_seed_whose_reference_failed_or_is_zero_is_left_out_with_a_note(tmp_path):
    figures = {"adam": [*FIGURES["adam"], (0.6, 0.0, 0.2), (0.6, 0.5, 0.2)], "sgd": [*FIGURES["sgd"], *FIGURES["sgd"]]}
    runs = mixed_runs(tmp_path, figures)
    runs[3] = own_run(tmp_path / "adam3-failed", "adam", 3, {}, status="failed")
    report = build_report(runs)
    rows = by_label(report)
    assert set(rows["sgd"].per_seed["delta_m"]) == {0, 1} and set(rows["adam"].per_seed["delta_m"]) == {0, 1}
    note = next(line for line in report.facts if line.startswith("Δm vs adam leaves out"))
    assert "seed 2 (adam's abs_err is 0.0: not a value > 0 to measure against)" in note
    assert "seed 3 (the run of adam did not complete)" in note
    assert rows["sgd"].metrics["delta_m"]["n"] == 2 and rows["sgd"].rank == 1


def test_a_reference_without_a_completed_run_ranks_nothing_and_says_why(tmp_path):
    runs = [own_run(tmp_path / "a", "adam", 0, {}, status="failed"),
            own_run(tmp_path / "s", "sgd", 0, {"seg_acc": 0.5, "abs_err": 0.3, "rel_err": 0.1})]
    report = build_report(runs)
    assert report.verdict[-1] == ("No compared row has a Δm vs adam to rank by (Δm not computed: no seed of the "
                                  "reference row adam to measure against).")


def test_single_task_baselines_stay_the_reference(tmp_path):
    runs = mixed_runs(tmp_path, {"sgd": FIGURES["sgd"]})
    for seed in (0, 1):
        runs.append(own_run(tmp_path / f"ba{seed}", "adam", seed, {"seg_acc": 0.5}, tasks=("a",)))
        runs.append(own_run(tmp_path / f"bb{seed}", "adam", seed, {"abs_err": 0.4, "rel_err": 0.2}, tasks=("b",)))
    report = build_report(runs)
    # seed 0: acc +32 %, abs err as good, rel err 25 % worse; seed 1: +10 %, 25 % better, 40 % better
    assert by_label(report)["sgd"].per_seed["delta_m"] == pytest.approx({0: (32 + 0 - 25) / 3, 1: (10 + 25 + 40) / 3})
    assert report.delta_m_reference == "single-task" and report.baselines == {"a": "adam[a]", "b": "adam[b]"}
    assert json_record(report)["delta_m_reference"] == "single-task"
    assert report.verdict[0] == ("Ranked by Δm against the single-task baselines (adam[a], adam[b]): the workload "
                                 "has no joint score (a primary metric is lower-is-better).")
    assert report.primary == "delta_m" and by_label(report)["sgd"].rank == 1
    assert "Δm" in table_headers(terminal_table(report))
    assert "Δm vs" not in terminal_table(report)
    with pytest.raises(ConfigError, match=r"^--reference sgd: this comparison has single-task baselines "
                                          r"\(adam\[a\], adam\[b\]\), the reference of Δm; drop --reference$"):
        build_report(runs, reference="sgd")


def test_a_workload_with_a_joint_score_is_ranked_by_it_as_before(tmp_path):
    metrics = {"a": ACC, "b": ACC_B}
    runs = [own_run(tmp_path / f"{opt}{seed}", opt, seed, {"seg_acc": acc, "acc_b": acc + 0.1}, metrics=metrics)
            for opt, accs in (("adam", (0.7, 0.72)), ("sgd", (0.3, 0.32))) for seed, acc in enumerate(accs)]
    report = build_report(runs)
    assert report.primary == "joint" and report.delta_m_reference is None and not report.has_delta_m
    assert report.verdict[0].startswith("Best joint score: adam")
    assert "delta_m_reference" not in json_record(report) and "Δm vs" not in terminal_table(report)
    # asked for, Δm against the reference row ranks it there too
    ranked = build_report(runs, primary="delta_m")
    assert ranked.delta_m_reference == "adam" and by_label(ranked)["adam"].rank == 1
    assert by_label(ranked)["sgd"].per_seed["delta_m"] == pytest.approx(
        {0: 50 * (-0.4 / 0.7 - 0.4 / 0.8), 1: 50 * (-0.4 / 0.72 - 0.4 / 0.82)})


def test_the_cross_workload_profile_keeps_the_relative_joint_and_counts_the_new_ranks(tmp_path):
    mixed = build_report(mixed_runs(tmp_path / "m"))
    joint = build_report([own_run(tmp_path / f"j{opt}", opt, 0, {"seg_acc": acc, "acc_b": acc},
                                  metrics={"a": ACC, "b": ACC_B}, workload="acc")
                          for opt, acc in (("adam", 0.7), ("sgd", 0.3))])
    reports = {"toy": mixed, "acc": joint}
    scores = profile_scores(reports)
    # the relative joint of the primary metrics' means: sgd best on both (acc 0.605 against 0.55, abs err 0.35
    # against 0.45)
    assert scores["sgd"]["toy"] == pytest.approx(1.0)
    assert scores["adam"]["toy"] == pytest.approx((0.55 / 0.605 + 0.35 / 0.45) / 2)
    assert "toy" in best_on(reports)["sgd"]  # ranked by Δm vs adam there, where nothing was ranked before
    record = profile_record(reports)
    assert [w["primary"] for w in record["workloads"]] == ["delta_m", "joint"]
    assert record["score_profile"]["relative_joint"] == ["toy"]


def test_report_command_takes_reference(tmp_path):
    curves = {"sgd": [[(0.4, 0.3)], [(0.36, 0.18)]], "adam": [[(0.5, 0.25)], [(0.4, 0.2)]]}
    out = write_comparison(tmp_path / "cmp", curves)
    result = CliRunner().invoke(main, ["report", str(out), "--primary", "delta_m", "--reference", "sgd"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    assert data["delta_m_reference"] == "sgd" and "vs best (Δm vs sgd)" in result.output
    sgd = next(row for row in data["rows"] if row["label"] == "sgd")
    assert sgd["metrics"]["delta_m"]["mean"] == 0.0
    refused = CliRunner().invoke(main, ["report", str(out), "--reference", "adamw"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output and refused.output.count("\n") == 1
    assert "--reference 'adamw' is not a compared row of this comparison (expected one of sgd, adam)" in refused.output


def fake_train(config, preset, **_):
    curve = [(0.6, 0.4), (0.7, 0.45)] if config.optimizer == "adam" else [(0.3, 0.2), (0.5, 0.3)]
    write_run(config.run_dir, optimizer=config.optimizer, seed=config.seed, curve=curve,
              hyperparams=config.hyperparams)
    return json.loads((Path(config.run_dir) / "summary.json").read_text())


def test_compare_passes_reference_through_and_checks_it_before_training(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("mtbench.train.train", lambda config, preset, **kw: calls.append(1) or fake_train(
        config, preset, **kw))
    args = ["compare", "--optimizers", "adam,sgd", "--seeds", "2", "--epochs", "2", "-q"]
    for bad, message in ((["--reference", "lion"], "Error: Invalid value for --reference: --reference 'lion' is not "
                                                   "a compared row of this comparison (expected one of adam, sgd)"),
                         (["--single-task", "--reference", "sgd"], "Error: Invalid value for --reference: --reference "
                                                                   "sgd: --single-task runs the single-task baselines")):
        refused = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "no"), *bad])
        errors = [line for line in refused.output.splitlines() if line.startswith("Error")]
        assert refused.exit_code == 2 and len(errors) == 1 and errors[0].startswith(message), refused.output
    assert calls == []
    out = tmp_path / "cmp"
    result = CliRunner().invoke(main, [*args, "--out", str(out), "--primary", "delta_m", "--reference", "sgd"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    assert (data["primary"], data["delta_m_reference"]) == ("delta_m", "sgd")
    assert data["verdict"][1].startswith("Best Δm vs sgd: adam")


def tune_runs(tmp_path, figures):
    """Runs named as `tune` names its final runs: ``<optimizer> (tuned)`` / ``<optimizer> (preset)``."""
    runs = []
    for name, seeds in figures.items():
        optimizer, role = name.split(" ")
        for seed, values in enumerate(seeds):
            run = own_run(tmp_path / f"{optimizer}-{role}{seed}", optimizer, seed,
                          dict(zip(("seg_acc", "abs_err", "rel_err"), values)))
            run.row = dataclasses.replace(run.row, name=row_name(optimizer, role.strip("()")))
            runs.append(run)
    return runs


def test_the_default_reference_is_adam_on_the_weighted_sum_whatever_tune_calls_it(tmp_path):
    # the rows of a tune report: no row is literally "adam", and adam's are not first
    figures = {"sgd (preset)": FIGURES["sgd"], "adam (tuned)": FIGURES["sgd"], "adam (preset)": FIGURES["adam"]}
    report = build_report(tune_runs(tmp_path / "both", figures))
    assert report.delta_m_reference == "adam (preset)"
    assert by_label(report)["adam (preset)"].per_seed["delta_m"] == {0: 0.0, 1: 0.0}
    assert "(Adam on the weighted sum, the baseline multi-task methods are held against)" in report.verdict[0]
    # without a preset row, the tuned one
    tuned = build_report(tune_runs(tmp_path / "tuned", {"sgd (preset)": FIGURES["sgd"],
                                                        "adam (tuned)": FIGURES["adam"]}))
    assert tuned.delta_m_reference == "adam (tuned)"
    # a plain adam row comes before either; Adam with another method is not Adam on the weighted sum
    assert choose_reference(["adam (tuned)", "adam (preset)", "adam"], None,
                            adam=["adam (tuned)", "adam (preset)", "adam"]) == "adam"
    assert choose_reference(["sgd", "adam+pcgrad"], None, adam=[]) == "sgd"
    assert choose_reference(["adam (preset)"], None) == "adam (preset)"  # labels alone: the first row


def test_a_workload_without_a_joint_score_has_no_joint_column(tmp_path):
    report = build_report(mixed_runs(tmp_path))
    terminal = re.split(r"\s{2,}", table_headers(terminal_table(report)))
    md = [cell.strip() for cell in markdown_headers(markdown(report)).split("|")]
    for head in (terminal, md):
        assert "joint" not in head and "seeds" in head and "Δm vs adam" in head
    assert all(len(cells) == len(table_headers_of(report)) for cells in table_rows(report))
    # report.csv keeps its columns on every workload (NOTE [joint column]): empty here
    rows = list(csv.DictReader(io.StringIO(csv_text(report))))
    assert list(rows[0]) == CSV_FIELDS and {row["joint_mean"] for row in rows} == {""}
    # a workload with one keeps it
    joint = build_report([own_run(tmp_path / f"j{opt}", opt, 0, {"seg_acc": acc, "acc_b": acc},
                                  metrics={"a": ACC, "b": ACC_B}, workload="acc")
                          for opt, acc in (("adam", 0.7), ("sgd", 0.3))])
    assert "joint" in table_headers_of(joint) and "joint" in re.split(r"\s{2,}", table_headers(terminal_table(joint)))


def test_the_sweep_table_of_a_workload_without_a_joint_score_has_no_joint_column(tmp_path):
    runs = mixed_runs(tmp_path)
    for seed, values in enumerate(FIGURES["sgd"]):
        run = own_run(tmp_path / f"sweep{seed}", "adam", seed, dict(zip(("seg_acc", "abs_err", "rel_err"), values)))
        run.row = RowSpec.of("adam", task_weights=(0.3, 0.7), all_tasks=("a", "b"))
        runs.append(run)
    report = build_report(runs)
    assert report.role("sweep") and "joint" not in sweep_headers(report)
    assert all(len(cells) == len(sweep_headers(report)) for cells in sweep_rows(report))
    assert "on front" in sweep_headers(report)


def markdown_headers(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("| rank"))
