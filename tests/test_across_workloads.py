"""compare --workloads: the same rows on each workload, a comparison directory (and report) per workload, and
the cross-workload report: the score profile (the joint score's ratio to the best row's per workload, its
area as AlgoPerf's), the time profile, and the rows best on most workloads."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from mtbench.cli import main
from mtbench.report import build_report
from mtbench.report.fronts import PROFILE_TAU_MAX
from mtbench.report.workloads import best_on, profile_record, profile_scores, score_profile
from test_report_workloads import ACC, DEPTH, ERROR, own_run


def test_the_score_profile_and_its_area_hand_computed():
    scores = {"a": {"w1": 0.8, "w2": 0.3}, "b": {"w1": 0.4, "w2": 0.6}, "c": {"w1": 0.8, "w2": 0.0}}
    # ratios best / score: a (1, 2), b (2, 1), c (1, never: a score <= 0 never counts)
    profile = score_profile(scores, [1.0, 1.5, 2.0, 4.0])
    assert profile["a"]["fractions"] == [0.5, 0.5, 1.0, 1.0] and profile["c"]["fractions"] == [0.5] * 4
    # area = sum over workloads of (tau_max - ratio) / W / (tau_max - 1): a (3 + 2) / 2 / 3, c 3 / 2 / 3
    assert PROFILE_TAU_MAX == 4.0
    assert profile["a"]["area"] == pytest.approx(5 / 6) and profile["b"]["area"] == pytest.approx(5 / 6)
    assert profile["c"]["area"] == pytest.approx(0.5)
    # a row not run on a workload never counts there either
    assert score_profile({"a": {"w1": 0.5, "w2": 0.5}, "b": {"w1": 0.5}}, [1.0])["b"]["area"] == pytest.approx(0.5)


def test_scores_best_rows_and_the_relative_joint_of_a_workload_without_a_joint_score(tmp_path):
    accs = {"adam": (0.7, 0.72), "sgd": (0.3, 0.34)}
    one = build_report([own_run(tmp_path / f"x{o}{s}", o, s, {"seg_acc": a, "acc_b": a + 0.1}, ("a", "b"),
                                {"a": DEPTH, "b": ACC}, workload="accs")
                        for o, pair in accs.items() for s, a in enumerate(pair)])
    # on "errs" (abs err is lower-is-better: no joint score) adam has the better accuracy, sgd the lower error
    figures = {"adam": {"seg_acc": 0.6, "abs_err": 0.5, "rel_err": 0.2}, "sgd": {"seg_acc": 0.3, "abs_err": 0.25,
                                                                                 "rel_err": 0.2}}
    two = build_report([own_run(tmp_path / f"y{o}", o, 0, f, ("a", "b"), {"a": DEPTH, "b": ERROR}, workload="errs")
                        for o, f in figures.items()])
    reports = {"accs": one, "errs": two}
    scores = profile_scores(reports)
    # accs: the mean joint over seeds; errs: mean of value/best (acc) and best/value (error) over the primaries
    assert scores["adam"] == pytest.approx({"accs": 0.76, "errs": (1 + 0.5) / 2})
    assert scores["sgd"] == pytest.approx({"accs": 0.37, "errs": (0.5 + 1) / 2})
    assert best_on(reports) == {"adam": ["accs"], "sgd": []}
    record = profile_record(reports)
    assert record["score_profile"]["relative_joint"] == ["errs"]
    # adam: ratios 1 (accs), 1 (errs) -> area 1; sgd: 0.76 / 0.37 and 1 -> ((4 - 2.054) + 3) / 2 / 3
    rows = record["score_profile"]["rows"]
    assert rows["adam"]["area"] == pytest.approx(1.0)
    assert rows["sgd"]["area"] == pytest.approx(((4 - 0.76 / 0.37) + 3) / 2 / 3)
    assert record["best"].startswith("Best on most workloads: adam (1 of 2")


def test_compare_over_two_workloads_writes_each_report_and_the_cross_workload_one(tmp_path):
    out = tmp_path / "across"
    result = CliRunner().invoke(main, [
        "compare", "--workloads", "multidigits,nyuv2", "--optimizers", "adam,sgd", "--epochs", "2",
        "--limit-train", "64", "--limit-val", "16", "--image-size", "32", "--batch-size", "8", "--device", "cpu",
        "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    for name in ("multidigits", "nyuv2"):
        per = json.loads((out / name / "report.json").read_text())
        assert {r["label"] for r in per["rows"]} == {"adam", "sgd"}
        assert (out / name / "comparison.json").is_file() and (out / name / "report.md").is_file()
        header = next(line for line in (out / name / "report.md").read_text().splitlines() if line.startswith("| rank"))
        assert "joint" in header and "top-1" not in header and "guide" not in header  # ImageNet + COCO's columns
        assert {json.loads((out / name / "runs" / f"{o}-seed0" / "summary.json").read_text())["workload"]
                for o in ("adam", "sgd")} == {name}
    record = json.loads((out / "report.json").read_text())
    assert [w["name"] for w in record["workloads"]] == ["multidigits", "nyuv2"]
    assert record["score_profile"]["relative_joint"] == ["nyuv2"]  # depth error and normal angle: no joint
    # the profile's multidigits scores are the per-workload report's joint means
    digits = {r["label"]: r["metrics"]["joint"]["mean"]
              for r in json.loads((out / "multidigits" / "report.json").read_text())["rows"]}
    rows = record["score_profile"]["rows"]
    assert {n: rows[n]["scores"]["multidigits"] for n in rows} == pytest.approx(digits)
    for name, row in rows.items():
        ratios = [max(rows[n]["scores"][w] for n in rows) / row["scores"][w] for w in ("multidigits", "nyuv2")]
        assert row["area"] == pytest.approx(sum(max(0.0, 4 - r) for r in ratios) / 2 / 3)
    assert set(record["best_on"]) == {"adam", "sgd"}
    assert "Best on most workloads" in (out / "report.md").read_text()
    assert imread(out / "profile.png").std() > 0.05
    assert "Performance profiles over 2 workloads" in result.output


@pytest.mark.parametrize("args, message", [
    (["--workloads", "multidigits,nyuv2", "--task-weights", "0.5,0.5"], "--task-weights is one workload's"),
    (["--workloads", "multidigits,nyuv2", "--task-weights-sweep", "0.5"], "compare them per workload"),
    (["--workloads", "multidigits"], "needs two workloads or more, got multidigits"),
    (["--workloads", "multidigits,multidigits"], "workload multidigits is named twice"),
    (["--workloads", "multidigits,nosuch"], "nosuch"),
])
def test_compare_workloads_refusals_are_one_line(tmp_path, args, message):
    result = CliRunner().invoke(main, ["compare", *args, "--optimizers", "adam", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert message in result.output and not (tmp_path / "o").exists()


def test_tune_over_workloads_is_refused_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["tune", "--workloads", "multidigits,nyuv2", "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "tune runs one workload: tune each with --workload" in result.output
    assert not (tmp_path / "t").exists()
