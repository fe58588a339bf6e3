"""A workload that only ``--plugin`` brings reaches every process that trains it, as the optimizer presets do:
tune's --jobs workers and its final runs, compare's runs under torchrun, and report (NOTE [one registry] in
mtbench.config). $MTBENCH_PLUGINS is empty, so a process that loaded a registry of its own would not know it."""

import json
import os
import subprocess
import sys
from pathlib import Path

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
    return [tiny_workload(2, True, "only-plugin")]
"""
NO_ENV_PLUGINS = {"MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": ""}


def plugin_file(tmp_path: Path) -> str:
    path = tmp_path / "only_plugin.py"
    path.write_text(PLUGIN)
    return str(path)


def summaries(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("summary.json"))]


def test_tune_workers_and_final_runs_train_a_workload_of_the_plugin_option(tmp_path):
    out = tmp_path / "tune"
    result = CliRunner().invoke(main, ["--plugin", plugin_file(tmp_path), "tune", "--workload", "only-plugin",
                                       "--optimizers", "adam", "--trials", "1", "--jobs", "2", "--final-seeds", "1",
                                       "--device", "cpu", "-q", "--out", str(out)], env=NO_ENV_PLUGINS)
    assert result.exit_code == 0, result.output
    assert "2 workers" in result.output  # the trials ran in the worker processes
    assert json.loads((out / "tune.json").read_text())["workload"] == "only-plugin"
    trials, finals = summaries(out / "trials"), summaries(out / "final")
    assert len(trials) == 2 and len(finals) == 2  # the preset's and the search's trials; the tuned and preset runs
    for summary in trials + finals:
        assert summary["status"] == "completed" and summary["workload"] == "only-plugin"
        assert summary["tasks"] == ["t0", "t1"]


def test_compare_under_torchrun_and_report_read_a_workload_of_the_plugin_option(tmp_path):
    path, out = plugin_file(tmp_path), tmp_path / "cmp"
    cmd = [sys.executable, "-m", "mtbench", "--plugin", path, "compare", "--workload", "only-plugin", "--optimizers",
           "adam", "--nproc-per-node", "2", "--batch-size", "2", "--device", "cpu", "--quiet", "--out", str(out)]
    env = {**os.environ, **NO_ENV_PLUGINS, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (summary,) = summaries(out / "runs")
    assert summary["status"] == "completed" and summary["workload"] == "only-plugin"

    report = CliRunner().invoke(main, ["--plugin", path, "report", str(out), "--out", str(tmp_path / "report")],
                                env=NO_ENV_PLUGINS)
    assert report.exit_code == 0, report.output
    record = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [row["label"] for row in record["rows"]] == ["adam"]
