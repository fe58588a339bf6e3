"""`mtbench run --workload NAME` of the built-in nyuv2, cityscapes and multidigits workloads, end to end on
their embedded stand-ins (rendered or composed into the session's cache on first use)."""

import json
import math

import pytest
from click.testing import CliRunner

from mtbench.cli import main

METRICS = {
    "nyuv2": ["miou", "pixel_acc", "depth_abs", "depth_rel", "normal_mean", "normal_median", "normal_11",
              "normal_22", "normal_30"],
    "cityscapes": ["miou", "pixel_acc", "depth_abs", "depth_rel"],
    "multidigits": ["left_acc", "right_acc"],
}


def invoke(args):
    return CliRunner().invoke(main, args, env={"MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": ""})


@pytest.mark.slow
@pytest.mark.parametrize("workload", list(METRICS))
def test_a_built_in_workload_runs_out_of_the_box(tmp_path, workload):
    result = invoke(["run", "--workload", workload, "-o", "adam", "--out", str(tmp_path), "--epochs", "1",
                     "--limit-train", "32", "--limit-val", "16", "--batch-size", "8", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["workload"] == workload and summary["steps"] == 4
    assert list(summary["final_metrics"]) == METRICS[workload]
    assert all(math.isfinite(v) for v in summary["final_metrics"].values())


def test_a_bad_data_folder_is_one_line_naming_what_is_missing(tmp_path):
    (tmp_path / "nyu" / "train" / "image").mkdir(parents=True)
    result = invoke(["run", "--workload", "nyuv2", "-o", "adam", "--data", str(tmp_path / "nyu"), "--out",
                     str(tmp_path / "runs"), "--device", "cpu", "--quiet"])
    assert result.exit_code != 0
    assert f"NYUv2 folder {tmp_path / 'nyu'} has no train/label/ folder" in result.output
    assert len([line for line in result.output.splitlines() if line.lower().startswith("error")]) == 1
