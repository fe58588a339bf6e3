"""compare --workloads: the same rows on each workload, a comparison directory (and report) per workload, and
the cross-workload report: the score profile (the joint score's ratio to the best row's per workload, its
area as AlgoPerf's), the time profile, and the rows best on most workloads."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from mtbench.cli import main
from mtbench.compare.across import workload_settings
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
    # errs is ranked by Δm vs adam (no joint score): sgd's is (-50 % + 50 % + 0) / 3 = 0, adam's own, first
    assert best_on(reports) == {"adam": ["accs", "errs"], "sgd": []}
    record = profile_record(reports)
    assert record["score_profile"]["relative_joint"] == ["errs"]
    # adam: ratios 1 (accs), 1 (errs) -> area 1; sgd: 0.76 / 0.37 and 1 -> ((4 - 2.054) + 3) / 2 / 3
    rows = record["score_profile"]["rows"]
    assert rows["adam"]["area"] == pytest.approx(1.0)
    assert rows["sgd"]["area"] == pytest.approx(((4 - 0.76 / 0.37) + 3) / 2 / 3)
    assert record["best"].startswith("Best on most workloads: adam (2 of 2")


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
        assert "top-1" not in header and "guide" not in header  # ImageNet + COCO's columns
        assert ("joint" in header) == (name == "multidigits")  # nyuv2 has no joint score: no column of "-"
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


# -- per-workload data and budgets ------------------------------------------------------------------

def test_per_workload_settings_plain_named_and_default(tmp_path):
    names, known = ["multidigits", "nyuv2"], ["multidigits", "nyuv2", "cityscapes"]
    settings = {"epochs": ("3", "multidigits=10"), "batch_size": ("nyuv2=4",), "image_size": None,
                "limit_train": (64,), "data": (f"multidigits={tmp_path}",), "seed": 7,
                "imagenet": None, "coco": None}
    per = workload_settings(settings, names, known)
    assert per["multidigits"] == {**settings, "epochs": 10, "batch_size": None, "image_size": None,
                                  "limit_train": 64, "data": str(tmp_path)}
    assert per["nyuv2"] == {**settings, "epochs": 3, "batch_size": 4, "image_size": None, "limit_train": 64,
                            "data": None}
    # comma-separated items are the same as the option repeated
    assert workload_settings({"epochs": "multidigits=2,nyuv2=1"}, names, known)["nyuv2"]["epochs"] == 1
    # --imagenet/--coco reach imagenet-coco's runs alone
    both = workload_settings({"imagenet": "/i", "coco": "/c"}, ["imagenet-coco", "nyuv2"], known + ["imagenet-coco"])
    assert (both["imagenet-coco"]["imagenet"], both["nyuv2"]["imagenet"], both["nyuv2"]["coco"]) == ("/i", None, None)


def test_per_workload_data_and_budgets_reach_their_workloads_runs(tmp_path):
    digits = tmp_path / "digits"
    made = CliRunner().invoke(main, ["data", "synth", str(digits), "--workload", "multidigits"])
    assert made.exit_code == 0, made.output
    out = tmp_path / "across"
    result = CliRunner().invoke(main, [
        "compare", "--workloads", "multidigits,nyuv2", "--optimizers", "adam", "--data", f"multidigits={digits}",
        "--epochs", "1", "--epochs", "multidigits=2", "--batch-size", "nyuv2=4", "--limit-train", "80,nyuv2=16",
        "--limit-val", "16", "--image-size", "nyuv2=32", "--device", "cpu", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    config = {name: json.loads((out / name / "runs" / "adam-seed0" / "config.json").read_text())
              for name in ("multidigits", "nyuv2")}
    assert config["multidigits"]["data"] == str(digits) and config["nyuv2"]["data"] is None
    assert (config["multidigits"]["epochs"], config["nyuv2"]["epochs"]) == (2, 1)
    assert (config["multidigits"]["batch_size"], config["nyuv2"]["batch_size"]) == (64, 4)  # multidigits' own: 64
    assert (config["multidigits"]["limit_train"], config["nyuv2"]["limit_train"]) == (80, 16)
    assert (config["multidigits"]["image_size"], config["nyuv2"]["image_size"]) == (None, 32)
    summaries = {name: json.loads((out / name / "runs" / "adam-seed0" / "summary.json").read_text())
                 for name in ("multidigits", "nyuv2")}
    assert summaries["multidigits"]["epochs"] == 2 and summaries["nyuv2"]["epochs"] == 1
    assert json.loads((out / "report.json").read_text())["workloads"][0]["name"] == "multidigits"


BAD_ITEMS = [
    (["--epochs", "nosuch=2"], "Error: --epochs nosuch=2: 'nosuch' is no workload: expected one of --workloads "
                               "multidigits,nyuv2"),
    (["--data", "cityscapes={dir}"], "Error: --data cityscapes={dir}: 'cityscapes' is not one of --workloads "
                                     "multidigits,nyuv2"),
    (["--data", "nyuv2={dir}/missing"], "Error: --data nyuv2={dir}/missing: {dir}/missing is not a folder (expected "
                                        "the workload's data root)"),
    (["--data", "{dir}"], "Error: --data {dir}: with --workloads give each workload's data folder as NAME=DIR (e.g. "
                          "multidigits={dir}); a workload not named reads its embedded stand-in"),
    (["--epochs", "nyuv2=0"], "Error: --epochs nyuv2=0 is not allowed: expected a whole number in [1, 100000]"),
    (["--batch-size", "multidigits=two"], "Error: --batch-size multidigits=two is not allowed: expected a whole "
                                          "number in [1, 65536]"),
    (["--limit-train", "nyuv2=8,nyuv2=9"], "Error: --limit-train nyuv2=9: nyuv2 is given twice"),
    (["--image-size", "32", "--image-size", "48"], "Error: --image-size 48: a value for every workload is given "
                                                   "twice (32 and this); name a workload with NAME=VALUE"),
    (["--imagenet", "{dir}"], "Error: --imagenet is the imagenet-coco workload's data, and --workloads "
                              "multidigits,nyuv2 does not run it; give another workload's data as --data NAME=DIR"),
]


@pytest.mark.parametrize("command", ["compare", "tune"])
@pytest.mark.parametrize("args, message", BAD_ITEMS, ids=[" ".join(a) for a, _ in BAD_ITEMS])
def test_a_bad_per_workload_item_is_one_line_naming_it(tmp_path, command, args, message):
    args = [a.format(dir=tmp_path) for a in args]
    extra = ["--final-seeds", "1"] if command == "tune" else []
    result = CliRunner().invoke(main, [command, "--workloads", "multidigits,nyuv2", "--optimizers", "adam", *args,
                                       *extra, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert [line for line in result.output.splitlines() if line.startswith("Error")] == [message.format(dir=tmp_path)]
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["compare", "tune"])
def test_without_workloads_an_item_naming_a_workload_is_refused_and_a_plain_value_is_as_before(tmp_path, command):
    result = CliRunner().invoke(main, [command, "--optimizers", "adam", "--epochs", "nyuv2=2", "--out",
                                       str(tmp_path / "o")])
    assert result.exit_code == 2 and "Error: --epochs nyuv2=2: NAME=VALUE items give a workload of --workloads its " \
        "own value; for one workload give --epochs N" in result.output.splitlines(), result.output
    result = CliRunner().invoke(main, [command, "--optimizers", "adam", "--epochs", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Error: --epochs 0 is not allowed: expected a whole number in [1, " \
        in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_a_bad_setting_of_a_later_workload_stops_before_the_first_trains(tmp_path):
    # nyuv2 at batch size 1 and image size 32 leaves one value per channel in BatchNorm: refused by its config
    result = CliRunner().invoke(main, [
        "compare", "--workloads", "multidigits,nyuv2", "--optimizers", "adam", "--batch-size", "nyuv2=1",
        "--image-size", "nyuv2=32", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 2 and "nyuv2: adam: --batch-size 1 with --image-size 32 leaves one value" \
        in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_a_config_files_table_gives_per_workload_items(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('workloads = "multidigits,nyuv2"\noptimizers = "adam"\nepochs = 2\n[batch-size]\nnyuv2 = 0\n')
    result = CliRunner().invoke(main, ["compare", "--config", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    # worded as the option's plain value from the file is (--batch-size = 0: '... (from --config FILE)')
    assert f"Error: --batch-size nyuv2=0 is not allowed: expected a whole number in [1, 65536] (from --config " \
           f"{path})" in result.output.splitlines()
    assert not (tmp_path / "o").exists()
    path.write_text('workloads = "multidigits,nyuv2"\noptimizers = "adam"\n')  # the item on the command line
    result = CliRunner().invoke(main, ["compare", "--config", str(path), "--batch-size", "nyuv2=0", "--out",
                                       str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "Error: --batch-size nyuv2=0 is not allowed: expected a whole number in [1, 65536]" in \
        result.output.splitlines(), result.output
