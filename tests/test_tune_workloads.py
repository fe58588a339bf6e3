"""tune --workloads: a tune per workload in OUT/<workload> (the same directory and studies as tune --workload W
--out OUT/W), the budget per workload as NAME=VALUE, the final runs' tuned and preset rows reported per workload
and across workloads, and the same command again trains nothing."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mtbench.cli import main

TESTS = Path(__file__).resolve().parent
PLUGIN = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from mtbench import hookimpl
from tiny_workloads import tiny_workload


@hookimpl
def mtbench_workloads():
    return [tiny_workload(2, True, "tiny-a"), tiny_workload(3, False, "tiny-b")]
"""
BUDGET = ["--optimizers", "adam", "--trials", "1", "--final-seeds", "1", "--device", "cpu", "-q"]
ROWS = {"adam (tuned)", "adam (preset)"}


@pytest.fixture
def plugin(tmp_path):
    """The tiny workloads as a plugin, through $MTBENCH_PLUGINS (tests/test_workload_plugin_option.py: --plugin)."""
    path = tmp_path / "tiny_plugin.py"
    path.write_text(PLUGIN)
    return {"MTBENCH_PLUGINS": str(path)}


def tune(args: list[str], env: dict):
    return CliRunner().invoke(main, ["tune", *args], env=env)


def summaries(folder: Path) -> dict[Path, int]:
    """Every run's summary.json under ``folder`` and when it was last written."""
    return {p: p.stat().st_mtime_ns for p in folder.rglob("summary.json")}


def configs(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("trials/*/config.json"))]


def test_tune_over_workloads_runs_each_tune_as_its_own_and_reports_the_finals_across_them(tmp_path, plugin):
    out = tmp_path / "tunes"
    # the first workload tuned on its own first, as `tune --workload` makes it: --workloads continues it
    single = tune(["--workload", "tiny-a", *BUDGET, "--out", str(out / "tiny-a")], plugin)
    assert single.exit_code == 0, single.output
    first = summaries(out / "tiny-a")
    assert len(first) == 4  # the preset's trial, one search trial, the final runs of the tuned and the preset

    args = ["--workloads", "tiny-a,tiny-b", *BUDGET, "--epochs", "tiny-b=2", "--out", str(out)]
    result = tune(args, plugin)
    assert result.exit_code == 0, result.output
    assert f"tune directory: {out / 'tiny-a'} (resuming: 2 of 2 trials done)" in result.output
    assert summaries(out / "tiny-a") == first  # nothing of tiny-a trained again
    assert [c["epochs"] for c in configs(out / "tiny-a")] == [1, 1]  # tiny-a's own default
    assert [c["epochs"] for c in configs(out / "tiny-b")] == [2, 2]  # tiny-b=2
    assert {c["workload"] for c in configs(out / "tiny-b")} == {"tiny-b"}
    for name in ("tiny-a", "tiny-b"):
        tuned = json.loads((out / name / "tune.json").read_text())
        assert tuned["workload"] == name and tuned["optimizers"][0]["test"]["tuned"]["n"] == 1
        per = json.loads((out / name / "report.json").read_text())
        assert {r["label"] for r in per["rows"]} == ROWS and (out / name / "report.md").is_file()

    record = json.loads((out / "report.json").read_text())
    assert [w["name"] for w in record["workloads"]] == ["tiny-a", "tiny-b"]
    rows = record["score_profile"]["rows"]
    assert set(rows) == ROWS
    for name in ("tiny-a", "tiny-b"):  # the profile scores are each workload's final runs' joint scores
        per = {r["label"]: r["metrics"]["joint"]["mean"]
               for r in json.loads((out / name / "report.json").read_text())["rows"]}
        assert {row: rows[row]["scores"][name] for row in ROWS} == pytest.approx(per)
    assert (out / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Performance profiles over 2 workloads" in result.output

    # the same command again: every trial and final run is found done, nothing trains
    done = summaries(out)
    again = tune(args, plugin)
    assert again.exit_code == 0, again.output
    assert summaries(out) == done
    for name in ("tiny-a", "tiny-b"):
        assert f"tune directory: {out / name} (resuming: 2 of 2 trials done)" in again.output
    assert again.output.count("completed before, skipped") == 4


@pytest.mark.parametrize("args, message", [
    (["--final-seeds", "0"], "give --final-seeds K"),
    (["--search-task-weights"], "tune the weights per workload with --workload"),
    (["--workload", "tiny-a"], "--workload is one workload's; --workloads tiny-a,tiny-b tunes each workload"),
    (["--objective", "top1"], "tiny-a: --objective top1 is a metric of ImageNet + COCO"),
    (["--workloads", "tiny-a"], "--workloads needs two workloads or more, got tiny-a"),
])
def test_tune_over_workloads_refusals_are_one_line(tmp_path, plugin, args, message):
    result = tune(["--workloads", "tiny-a,tiny-b", "--optimizers", "adam", "--final-seeds", "1", *args,
                   "--out", str(tmp_path / "t")], plugin)
    assert result.exit_code in (1, 2), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert not (tmp_path / "t").exists()
