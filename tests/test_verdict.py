"""The verdict of a comparison on planted effects: paired statistics, ties, selection on the holdout
split, Δm, the scalarization front, performance profiles, and what report.json and the CLI carry."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from fakeruns import write_comparison, write_run
from mtbench.cli import main
from mtbench.errors import ConfigError
from mtbench.report import Run, build_report, find_runs, load_run, select, split_workloads
from mtbench.report.files import json_record, markdown, terminal_table
from mtbench.report.verdict import paired_verdict, verdict_sentences

SEEDS = 5


def planted(effects: dict[str, float], seeds: int = SEEDS, noise: float = 0.004, seed: int = 0) -> dict:
    """Two-epoch curves per row and seed: a seed effect every row shares (what pairing removes), the
    row's planted effect, and a little noise of its own."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 0.03, size=seeds)
    curves = {}
    for name, effect in effects.items():
        own = rng.normal(0, noise, size=(seeds, 2))
        curves[name] = [[(0.3, 0.2), (0.6 + effect + shared[k] + own[k, 0], 0.3 + effect + shared[k] + own[k, 1])]
                        for k in range(seeds)]
    return curves


def rows_by_label(report):
    return {row.label: row for row in report.rows}


# -- rows against the best -----------------------------------------------------------------------

def test_one_row_clearly_better_leaves_the_others_not_tied(tmp_path):
    out = write_comparison(tmp_path / "cmp", planted({"sgd": 0.0, "adam": 0.05, "adamw": 0.0}))
    report = build_report(find_runs([out]))
    by = rows_by_label(report)
    assert by["adam"].verdict["is_best"] and by["adam"].tied_with_best and by["adam"].rank == 1
    for name in ("sgd", "adamw"):
        vs = by[name].vs_best
        assert by[name].tied_with_best is False and by[name].rank in (2, 3)
        assert vs["metric"] == "joint" and vs["diff_ci_high"] < 0 and vs["p_holm"] < 0.05
        assert vs["diff_mean"] == pytest.approx(-0.05, abs=0.01)
    assert "sgd is worse: -0.05" in " ".join(report.verdict) and "No row is tied with it." in report.verdict


def test_rows_with_identical_distributions_are_tied(tmp_path):
    out = write_comparison(tmp_path / "cmp", planted({"adam": 0.0, "adamw": 0.0}))  # each row its own noise
    report = build_report(find_runs([out]))
    assert [row.tied_with_best for row in report.rows] == [True, True]
    assert [row.rank for row in report.rows] == [1, 1]
    assert report.verdict[1].startswith("Tied with it (paired difference not significant at 0.05 after Holm's "
                                        "correction over 1 row)")


def test_a_row_equal_to_the_best_on_every_seed_is_tied_with_p_one(tmp_path):
    curves = planted({"adam": 0.05, "sgd": 0.0})
    out = write_comparison(tmp_path / "cmp", {**curves, "adam-copy": curves["adam"]})
    by = rows_by_label(build_report(find_runs([out])))
    assert by["adam"].verdict["is_best"]  # equal means: the first row given
    assert by["adam-copy"].tied_with_best is True and by["adam-copy"].vs_best["p_value"] == 1.0
    assert (by["adam-copy"].rank, by["sgd"].rank, by["sgd"].tied_with_best) == (1, 3, False)


def test_a_comparison_with_one_seed_says_nothing_is_significant(tmp_path):
    out = write_comparison(tmp_path / "cmp", planted({"adam": 0.05, "sgd": 0.0}, seeds=1))
    report = build_report(find_runs([out]))
    text = " ".join(report.verdict)
    assert "With 1 seed per row no difference can be called significant" in text
    assert "cannot be estimated without a spread: run at least 2 seeds" in text
    assert [row.tied_with_best for row in report.rows] == [None, None]
    assert [row.rank for row in report.rows] == [1, 2]  # ranked by the observed means all the same
    assert rows_by_label(report)["sgd"].vs_best["p_value"] is None
    data = json_record(report)
    assert [row["tied_with_best"] for row in data["rows"]] == [None, None]
    assert data["rows"][0]["metrics"]["top1"]["ci_low"] is None
    assert markdown(report).startswith("# Optimizer comparison\n\nBest observed joint score: adam")


def test_seeds_needed_uses_the_rows_own_spread_when_the_best_has_one_seed():
    values = {"a": {0: 0.60}, "b": {0: 0.55}}
    verdict = paired_verdict(values, "joint", spreads={"a": 0.02, "b": 0.02})
    # difference 0.05, spread sqrt(2) x 0.02: effect 1.77, alpha 0.05 over one row -> 5 seeds
    assert verdict["b"]["vs_best"]["seeds_needed"] == 5 and verdict["b"]["tied_with_best"] is None
    text = " ".join(verdict_sentences(verdict, {"a": 0.6, "b": 0.55}, "joint", {"a": 1, "b": 1}))
    assert "would need about this many seeds per row: b 5" in text


def test_a_tie_says_how_many_seeds_the_observed_difference_would_need(tmp_path):
    out = write_comparison(tmp_path / "cmp", planted({"adam": 0.001, "sgd": 0.0}, seeds=3, noise=0.004))
    report = build_report(find_runs([out]))
    sgd = rows_by_label(report)["sgd"]
    assert sgd.tied_with_best is True
    needed = sgd.vs_best["seeds_needed"]
    assert needed is None or needed > 3
    assert "With 3 seeds, a tie means that no difference was found, not that there is none" in " ".join(report.verdict)


@pytest.mark.parametrize("primary, best", [("top1", "adam"), ("miou", "sgd"), ("joint", "adam")])
def test_the_primary_metric_decides_the_best(tmp_path, primary, best):
    # adam leads on top-1 by far, sgd on mIoU by a little: the joint score follows top-1
    adam = [[(0.3, 0.2), (0.70 + 0.01 * k, 0.30 + 0.01 * k)] for k in range(3)]
    sgd = [[(0.3, 0.2), (0.50 + 0.01 * k, 0.32 + 0.01 * k)] for k in range(3)]
    out = write_comparison(tmp_path / "cmp", {"adam": adam, "sgd": sgd})
    report = build_report(find_runs([out]), primary=primary)
    assert rows_by_label(report)[best].verdict["is_best"]
    assert all(row.vs_best["metric"] == primary for row in report.rows)


def test_an_unknown_primary_metric_is_refused(tmp_path):
    run = load_run(write_run(tmp_path / "r"))
    with pytest.raises(ConfigError, match="--primary 'speed' is not a metric to rank by \\(expected one of joint, "):
        build_report([run], primary="speed")


# -- selection ----------------------------------------------------------------------------------

TEST_CURVE = [(0.30, 0.20), (0.50, 0.25), (0.70, 0.40), (0.60, 0.35)]  # best on the test split: epoch 3
HOLDOUT_CURVE = [(0.30, 0.20), (0.65, 0.45), (0.40, 0.30), (0.50, 0.30)]  # best on the holdout: epoch 2


class Watched:
    """An epoch row that records which of its fields are read."""

    def __init__(self, row, reads):
        self._row, self._reads = row, reads

    def __getattr__(self, name):
        self._reads.append((self._row.epoch, name))
        return getattr(self._row, name)


def test_best_holdout_picks_the_epoch_on_the_holdout_and_reports_its_test_figures(tmp_path):
    run = load_run(write_run(tmp_path / "r", curve=TEST_CURVE, holdout_curve=HOLDOUT_CURVE))
    reads = []
    run.epochs = [Watched(row, reads) for row in run.epochs]
    chosen = select(run, "best-holdout")
    assert (chosen.epoch, chosen.step, chosen.top1, chosen.miou, chosen.rule) == (2, 20, 0.50, 0.25, "best holdout")
    # the test split is read only where the choice fell, never to make it
    assert {(epoch, name) for epoch, name in reads if name.startswith("val_")} == {(2, "val_top1"), (2, "val_miou")}
    final = select(run, "final")
    assert (final.epoch, final.top1, final.miou, final.rule) == (4, 0.60, 0.35, "final")


def test_best_holdout_ties_go_to_the_earlier_epoch_and_a_run_without_holdout_keeps_its_final_epoch(tmp_path):
    tied = load_run(write_run(tmp_path / "t", curve=TEST_CURVE, holdout_curve=[(0.5, 0.5)] * 4))
    assert select(tied, "best-holdout").epoch == 1
    plain = load_run(write_run(tmp_path / "p", curve=TEST_CURVE))
    fallback = select(plain, "best-holdout")
    assert (fallback.epoch, fallback.top1, fallback.rule) == (4, 0.60, "final (no holdout figures)")
    assert select(load_run(write_run(tmp_path / "f", curve=TEST_CURVE, status="failed")), "final") is None
    with pytest.raises(ConfigError, match="selection 'best' is not known \\(expected final or best-holdout\\)"):
        select(plain, "best")


def test_best_holdout_selection_in_the_report(tmp_path):
    out = write_comparison(tmp_path / "cmp", {"adam": [TEST_CURVE] * 2, "sgd": [TEST_CURVE] * 2},
                           holdout_curves={"adam": [HOLDOUT_CURVE] * 2})
    report = build_report(find_runs([out]), selection="best-holdout")
    adam, sgd = report.rows
    assert adam.per_seed["top1"] == {0: 0.50, 1: 0.50} and sgd.per_seed["top1"] == {0: 0.60, 1: 0.60}
    text = "\n".join(report.facts)
    assert "the epoch with the best joint score on the held-out split" in text
    assert "2 of 4 runs have no holdout figures" in text
    record = json_record(report)
    assert record["selection"] == "best-holdout"
    assert record["rows"][0]["runs"][0]["selected"] == {"epoch": 2, "step": 20, "top1": 0.5, "miou": 0.25,
                                                         "rule": "best holdout"}


# -- Δm against single-task baselines ---------------------------------------------------------------

BASELINE_ROWS = {"adam[cls]": {"optimizer": "adam", "task_weights": (1.0, 0.0), "tasks": ("cls",), "role": "baseline"},
                 "adam[seg]": {"optimizer": "adam", "task_weights": (0.0, 1.0), "tasks": ("seg",), "role": "baseline"}}


def test_delta_m_against_the_baselines_of_the_same_seed(tmp_path):
    # seed 0: baselines 0.5 / 0.2, seed 1: 0.4 / 0.25. adam is +10 % on both tasks on each seed,
    # sgd -20 % on top-1 and +0 % on mIoU: Δm 10 % and -10 % on every seed, only when paired by seed.
    curves = {"adam": [[(0.55, 0.22)], [(0.44, 0.275)]], "sgd": [[(0.4, 0.2)], [(0.32, 0.25)]],
              "adam[cls]": [[(0.5, 0.01)], [(0.4, 0.01)]], "adam[seg]": [[(0.01, 0.2)], [(0.01, 0.25)]]}
    out = write_comparison(tmp_path / "cmp", curves, rows=BASELINE_ROWS)
    report = build_report(find_runs([out]))
    by = rows_by_label(report)
    assert by["adam"].per_seed["delta_m"] == pytest.approx({0: 10.0, 1: 10.0})
    assert by["sgd"].per_seed["delta_m"] == pytest.approx({0: -10.0, 1: -10.0})
    assert by["adam"].metrics["delta_m"]["mean"] == pytest.approx(10.0)
    assert report.baselines == {"cls": "adam[cls]", "seg": "adam[seg]"}
    # the baselines are not compared rows, and their untrained head's figure is not theirs
    assert by["adam[cls]"].verdict is None and by["adam[cls]"].per_seed["miou"] == {0: None, 1: None}
    assert by["adam[cls]"].metrics["delta_m"] is None
    table = terminal_table(report)
    assert "Δm" in table and "10.0±0.0%" in table and "Single-task baselines:" in table
    ranked = build_report(find_runs([out]), primary="delta_m")
    assert rows_by_label(ranked)["adam"].verdict["is_best"]
    assert rows_by_label(ranked)["sgd"].vs_best["diff_mean"] == pytest.approx(-20.0)


def test_delta_m_as_primary_without_baselines_is_against_the_reference_row(tmp_path):
    # seed 0: adam 0.5 / 0.25, sgd 0.4 / 0.3: sgd's Δm vs adam = (-20 % + 20 %) / 2 = 0; seed 1: sgd -10 % on both
    curves = {"sgd": [[(0.4, 0.3)], [(0.36, 0.18)]], "adam": [[(0.5, 0.25)], [(0.4, 0.2)]]}
    out = write_comparison(tmp_path / "cmp", curves)
    report = build_report(find_runs([out]), primary="delta_m")
    by = rows_by_label(report)
    assert by["sgd"].per_seed["delta_m"] == pytest.approx({0: 0.0, 1: -10.0})
    assert by["adam"].per_seed["delta_m"] == {0: 0.0, 1: 0.0}
    assert report.delta_m_reference == "adam" and report.baselines == {}
    assert report.verdict[0].startswith("Ranked by Δm vs adam: no single-task baselines were run")
    assert report.verdict[1] == "Best Δm vs adam: adam (0.0%, mean over 2 seeds)."
    text = terminal_table(report)
    assert "Δm vs adam" in text and "vs best (Δm vs adam)" in text
    assert "Δm vs adam = mean over the two tasks of 100 x (row - adam) / adam" in text
    assert json_record(report)["delta_m_reference"] == "adam"
    # the default ranking of a workload with a joint score does not change, and names no reference
    joint = build_report(find_runs([out]))
    assert joint.delta_m_reference is None and not joint.has_delta_m and "delta_m_reference" not in json_record(joint)


def test_delta_m_that_cannot_be_computed_says_why_not_that_no_run_completed(tmp_path):
    # the classification baseline learned nothing (top-1 0): Δm is undefined, though every run completed
    curves = {"adam": [[(0.55, 0.22)]], "adam[cls]": [[(0.0, 0.01)]], "adam[seg]": [[(0.01, 0.2)]]}
    out = write_comparison(tmp_path / "cmp", curves, rows=BASELINE_ROWS)
    report = build_report(find_runs([out]), primary="delta_m")
    assert report.verdict == [
        "No compared row has a Δm to rank by (Δm not computed: delta_m: baseline of task 'cls' seed 0 is 0.0 "
        "(expected a finite value > 0 to measure a relative change))."]
    assert rows_by_label(report)["adam"].status == "ok"


def test_delta_m_as_primary_with_a_baseline_that_failed_is_reported_not_refused(tmp_path):
    curves = {"adam": [[(0.55, 0.22)]], "adam[cls]": [[(0.5, 0.01)]], "adam[seg]": [[(0.01, 0.2)]]}
    out = write_comparison(tmp_path / "cmp", curves, rows=BASELINE_ROWS)
    summary = out / "runs/adam[seg]-seed0/summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": "failed", "error": "boom"}))
    report = build_report(find_runs([out]), primary="delta_m")
    assert report.verdict == ["No compared row has a Δm to rank by (Δm not computed: no run of the single-task "
                              "baseline adam[seg] completed)."]
    assert rows_by_label(report)["adam[seg]"].status == "failed: boom"


def test_loose_single_task_runs_are_baselines_by_their_settings(tmp_path):
    runs = [load_run(write_run(tmp_path / "a", curve=[(0.55, 0.22)])),
            load_run(write_run(tmp_path / "c", curve=[(0.5, 0.0)], tasks=("cls",), task_weights=(1.0, 0.0))),
            load_run(write_run(tmp_path / "s", curve=[(0.0, 0.2)], tasks=("seg",), task_weights=(0.0, 1.0)))]
    report = build_report(runs)
    assert [(row.label, row.role) for row in report.rows] == [
        ("adam", "row"), ("adam[cls]", "baseline"), ("adam[seg]", "baseline")]
    assert report.rows[0].per_seed["delta_m"] == pytest.approx({0: 10.0})


# -- the scalarization front ------------------------------------------------------------------------

FRONT_ROWS = {
    "adam@w0.2": {"optimizer": "adam", "task_weights": (0.2, 0.8), "role": "sweep"},
    "adam@w0.8": {"optimizer": "adam", "task_weights": (0.8, 0.2), "role": "sweep"},
    "adam@w0.9": {"optimizer": "adam", "task_weights": (0.9, 0.1), "role": "sweep"},
    "mtadamv2": {"optimizer": "mtadamv2"},
    "adam+pcgrad": {"optimizer": "adam", "method": "pcgrad"},
}
FRONT_POINTS = {"adam": (0.60, 0.40), "adam@w0.2": (0.40, 0.50), "adam@w0.8": (0.70, 0.20),
                "adam@w0.9": (0.65, 0.15),  # dominated by w0.8: not on the front
                "mtadamv2": (0.50, 0.30), "adam+pcgrad": (0.65, 0.45)}


def test_the_front_and_the_rows_it_dominates(tmp_path):
    curves = {name: [[(t + 0.002 * k, m + 0.001 * k)] for k in range(2)] for name, (t, m) in FRONT_POINTS.items()}
    out = write_comparison(tmp_path / "cmp", curves, rows={**FRONT_ROWS, "adam": {"optimizer": "adam"}})
    report = build_report(find_runs([out]))
    by = rows_by_label(report)
    assert {name for name, row in by.items() if row.on_front} == {"adam", "adam@w0.2", "adam@w0.8"}
    assert by["adam@w0.9"].on_front is False
    assert by["mtadamv2"].dominated_by_front is True and by["adam+pcgrad"].dominated_by_front is False
    assert by["adam"].dominated_by_front is None  # the plain row is the sweep's w = 0.5 point
    # the main table holds the compared rows; the sweep has its own
    assert [row.label for row in report.role("row")] == ["adam", "mtadamv2", "adam+pcgrad"]
    assert any("Dominated by it (no better on either task than some weighting of the plain loss): mtadamv2" in line
               for line in report.verdict)
    data = json_record(report)
    entries = {row["label"]: row for row in data["rows"]}
    assert entries["mtadamv2"]["dominated_by_front"] is True and entries["adam@w0.2"]["role"] == "sweep"
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert "pareto.png" in result.output and "Scalarization sweep" in result.output
    image = imread(out / "pareto.png")
    assert image.shape[0] > 300 and image.std() > 0.05


# -- performance profiles over workloads -------------------------------------------------------------

def test_profiles_over_two_comparisons_of_different_workloads(tmp_path):
    fast, slow, never = [(0.6, 0.4), (0.6, 0.4)], [(0.1, 0.1), (0.6, 0.4)], [(0.1, 0.1), (0.2, 0.1)]
    one = write_comparison(tmp_path / "small", {"a": [fast] * 2, "b": [slow] * 2}, image_size=32)
    two = write_comparison(tmp_path / "large", {"a": [fast] * 2, "b": [never] * 2}, image_size=64)
    assert [name for name, _ in split_workloads([one, two])] == ["small", "large"]
    out = tmp_path / "profile"
    result = CliRunner().invoke(main, ["report", str(one), str(two), "--out", str(out),
                                       "--target", "top1=0.5,miou=0.3"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    rows = data["profile"]["rows"]
    # a is fastest on both workloads; b takes 2x on one and never reaches on the other:
    # area (4 - 2) / 2 workloads / 3 = 1/3
    assert rows["a"]["area"] == pytest.approx(1.0) and rows["b"]["area"] == pytest.approx(1 / 3)
    assert rows["b"]["times"] == {"small": 20, "large": "inf"}
    assert rows["b"]["fractions"][0] == 0.0 and rows["b"]["fractions"][-1] == 0.5
    assert [w["name"] for w in data["workloads"]] == ["small", "large"]
    for name in ("small", "large"):
        assert (out / name / "report.md").is_file() and (out / name / "final.png").is_file()
    assert imread(out / "profile.png").std() > 0.05
    assert "Performance profiles over 2 workloads" in result.output and "profile.png" in result.output
    merged = CliRunner().invoke(main, ["report", str(one), str(two)])
    assert merged.exit_code == 2 and "--out is required: the DIRs hold 2 workloads (small, large)" in merged.output


def test_directories_of_one_workload_are_merged(tmp_path):
    one = write_comparison(tmp_path / "first", {"a": [[(0.6, 0.4)]]})
    loose = write_run(tmp_path / "runs/b", optimizer="b", curve=[(0.5, 0.3)])
    (workload,) = split_workloads([one, tmp_path / "runs"])
    assert workload[0] == "first+runs" and len(workload[1]) == 2
    assert isinstance(workload[1][1], Run) and workload[1][1].path == loose


def test_runs_of_another_named_workload_are_another_workload(tmp_path):
    old = write_run(tmp_path / "runs/old", optimizer="a", curve=[(0.5, 0.3)])  # before workloads had names
    for name, workload in (("named", "imagenet-coco"), ("digits", "multidigits")):
        run = write_run(tmp_path / f"runs/{name}", optimizer="b", curve=[(0.5, 0.3)])
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, "workload": workload}))
    found = {name: sorted(r.path.name for r in runs) for name, runs in split_workloads([tmp_path / "runs"])}
    assert sorted(found.values()) == [["digits"], ["named", "old"]]
    assert old.name == "old"


# -- report.json and the CLI -----------------------------------------------------------------------

def test_report_json_carries_the_named_fields(tmp_path):
    out = write_comparison(tmp_path / "cmp", planted({"adam": 0.05, "sgd": 0.0}, seeds=3))
    result = CliRunner().invoke(main, ["report", str(out), "--primary", "top1"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    assert data["primary"] == "top1" and data["selection"] == "final" and data["verdict"]
    for row in data["rows"]:
        assert set(row["metrics"]) == {"top1", "miou", "joint", "delta_m", "steps_to_target"}
        for metric in ("top1", "miou", "joint", "steps_to_target"):
            assert {"mean", "std", "n", "ci_low", "ci_high"} <= set(row["metrics"][metric])
        assert row["metrics"]["delta_m"] is None
        assert {"metric", "diff_mean", "diff_ci_low", "diff_ci_high", "p_value", "p_holm", "test"} <= set(row["vs_best"])
        assert row["tied_with_best"] in (True, False) and isinstance(row["rank"], int)
        assert row["name"] == row["optimizer"] and row["role"] == "row"
    sgd = data["rows"][1]
    assert sgd["vs_best"]["metric"] == "top1" and sgd["tied_with_best"] is False and sgd["rank"] == 2
    assert sgd["vs_best"]["test"] == "paired t" and sgd["vs_best"]["p_holm"] < 0.05
    # the terminal table shows mean ± interval and the marks
    assert "best" in result.output and "worse" in result.output and "±" in result.output


def test_report_json_is_strict_json_with_targets_not_reached(tmp_path):
    out = write_comparison(tmp_path / "cmp", {"a": [[(0.6, 0.4)]] * 2, "b": [[(0.1, 0.1)]] * 2})
    result = CliRunner().invoke(main, ["report", str(out), "--target", "top1=0.5,miou=0.3"])
    assert result.exit_code == 0, result.output
    text = (out / "report.json").read_text()
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in report.json"))
    b = data["rows"][1]
    assert b["metrics"]["steps_to_target"]["mean"] == "inf" and b["metrics"]["steps_to_target"]["reached"] == 0
    assert b["convergence"] == "not reached" and data["target"] == {"kind": "absolute", "top1": 0.5, "miou": 0.3}
    assert "inf (0/2)" in result.output


@pytest.mark.parametrize("args, message", [
    (["--target", "top5=0.5"], "'top5' is not a target metric"),
    (["--primary", "speed"], "'speed' is not one of"),
    (["--select", "best"], "'best' is not one of"),
])
def test_report_options_are_checked(tmp_path, args, message):
    out = write_comparison(tmp_path / "cmp", {"a": [[(0.6, 0.4)]]})
    result = CliRunner().invoke(main, ["report", str(out), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_report_command_delta_m_without_baselines_is_against_the_first_row(tmp_path):
    out = write_comparison(tmp_path / "cmp", {"a": [[(0.6, 0.4)]]})
    result = CliRunner().invoke(main, ["report", str(out), "--primary", "delta_m"])
    assert result.exit_code == 0 and "Best observed Δm vs a: a (0.0%)." in result.output


def test_compare_passes_the_report_options_through(tmp_path, monkeypatch):
    def fake_train(config, preset, **_):
        curve = [(0.6, 0.4), (0.7, 0.45)] if config.optimizer == "adam" else [(0.3, 0.2), (0.5, 0.3)]
        write_run(config.run_dir, optimizer=config.optimizer, seed=config.seed, curve=curve,
                  holdout_curve=[(0.7, 0.5), (0.5, 0.3)], hyperparams=config.hyperparams)
        return json.loads((Path(config.run_dir) / "summary.json").read_text())

    monkeypatch.setattr("mtbench.train.train", fake_train)
    out = tmp_path / "cmp"
    result = CliRunner().invoke(main, ["compare", "--optimizers", "adam,sgd", "--seeds", "2", "--epochs", "2",
                                       "-q", "--out", str(out), "--primary", "miou", "--select", "best-holdout"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    assert (data["primary"], data["selection"]) == ("miou", "best-holdout")
    adam = next(row for row in data["rows"] if row["optimizer"] == "adam")
    assert adam["runs"][0]["selected"]["epoch"] == 1 and adam["metrics"]["miou"]["mean"] == pytest.approx(0.4)
    assert "vs best (mIoU)" in result.output and "best" in result.output


def test_no_row_to_rank_says_so(tmp_path):
    run = load_run(write_run(tmp_path / "r", curve=[(0.5, 0.3)], status="failed", error="boom"))
    report = build_report([run])
    assert report.verdict == ["No compared row has a joint score to rank by (no run of a row of role \"row\" completed)."]
    assert "nan" not in json.dumps(json_record(report)).lower()
