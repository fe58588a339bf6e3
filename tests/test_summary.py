"""summary.json's typed record: the run log writes it, every reader reads it, old run directories still report."""

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakeruns import write_reference_comparison, write_run
from mtbench.cli import main
from mtbench.config import RunConfig
from mtbench.report import load_run
from mtbench.rundir import SUMMARY_FILE, RunDir, RunFileError, Summary, read_summary
from mtbench.training.checkpoint import TrainState
from mtbench.training.runlog import RunLog

# summary.json's keys in the order the run log has always written them: readers of the file
# (scripts, old versions) see the same file.
KEYS = ["optimizer", "title", "method", "status", "error", "seed", "epochs", "steps", "final_top1", "final_top5",
        "final_miou", "final_pixel_acc", "holdout_top1", "holdout_top5", "holdout_miou", "holdout_pixel_acc",
        "seconds_per_step", "total_seconds", "peak_memory_mb", "skipped_steps", "corrupt_images",
        "init_weights_sha256", "task_weights", "loss_scale", "holdout", "tasks", "method_settings", "device",
        "workload", "task_metrics", "final_metrics", "holdout_metrics", "model", "model_backbone"]
REFERENCE_REPORT = Path(__file__).parent / "data" / "reference_report.json"


def _written_summary(tmp_path) -> Path:
    config = RunConfig(optimizer="adam", hyperparams={"lr": 0.001}, run_dir=str(tmp_path), device="cpu", seed=3,
                       task_weights=(0.3, 0.7), loss_scale=(1.0, 10.0), holdout=0.1,
                       method_settings={"beta": 0.5, "pair": (1, 2)})
    state = TrainState(step_times=[0.25, 0.5, 0.125], last_val={"top1": 0.5, "top5": 0.75, "miou": 0.125,
                                                               "pixel_acc": 0.875},
                       last_holdout={"top1": 0.25, "top5": 0.5, "miou": 0.0625, "pixel_acc": 0.8})
    state.counters.update(epoch=2, step=6, train_seconds=1.23456, skipped_steps=1, corrupt_images=0)
    log = RunLog(RunDir(tmp_path), config, {"optimizer": "adam", "title": "Adam", "method": "sum"}, print)
    returned = log.summary("completed", state, init_digest="ab" * 32, device="cpu", peak_memory_mb=812.34)
    assert list(returned) == KEYS and returned["steps"] == 6  # train() returns what it wrote
    return tmp_path / SUMMARY_FILE


def test_the_run_logs_summary_round_trips_through_the_record_byte_for_byte(tmp_path):
    path = _written_summary(tmp_path)
    text = path.read_text()
    data = json.loads(text)
    assert list(data) == KEYS
    record = read_summary(tmp_path)
    assert json.dumps(record.to_json(), indent=2) + "\n" == text
    assert (record.status, record.seed, record.epochs, record.steps) == ("completed", 3, 2, 6)
    assert record.figures("final") == (0.5, 0.125) and record.figures("holdout") == (0.25, 0.0625)
    assert (record.seconds_per_step, record.total_seconds, record.peak_memory_mb) == (0.25, 1.235, 812.3)
    assert (record.task_weights, record.loss_scale, record.tasks) == ((0.3, 0.7), (1.0, 10.0), ("cls", "seg"))
    assert data["method_settings"] == {"beta": 0.5, "pair": [1, 2]} and data["holdout"] == 0.1


def test_an_old_summary_loads_with_defaults_and_extra_keys_ignored(tmp_path):
    run_dir = write_run(tmp_path / "old", optimizer="sgd", seed=2, curve=[(0.4, 0.2)], holdout_curve=[(0.3, 0.1)])
    path = run_dir / SUMMARY_FILE
    old = json.loads(path.read_text())
    assert "holdout_top5" not in old and "device" not in old  # keys the fake's older format lacks
    path.write_text(json.dumps({**old, "a_key_from_elsewhere": [1, 2]}))
    record = read_summary(run_dir)
    assert (record.optimizer, record.seed, record.status, record.figures("holdout")) == ("sgd", 2, "completed",
                                                                                        (0.3, 0.1))
    assert record.holdout_top5 is None and record.device is None
    assert list(record.to_json()) == KEYS


def test_a_non_finite_figure_reads_as_missing(tmp_path):
    run_dir = write_run(tmp_path / "r")
    path = run_dir / SUMMARY_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "final_miou": math.nan}))
    assert read_summary(run_dir).final_miou is None


@pytest.mark.parametrize("key, value, expected", [
    ("epochs", "two", "epochs is 'two', expected a whole number"),
    ("final_top1", "0.5", "final_top1 is '0.5', expected a number"),
    ("status", 1, "status is 1, expected a string"),
    ("tasks", "cls", "tasks is 'cls', expected a list of strings"),
    ("seed", True, "seed is True, expected a whole number"),
])
def test_a_value_of_the_wrong_type_is_named_and_the_report_says_so(tmp_path, key, value, expected):
    run_dir = write_run(tmp_path / "r")
    path = run_dir / SUMMARY_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
    with pytest.raises(RunFileError) as info:
        read_summary(run_dir)
    assert str(info.value) == f"{path} is not a run summary ({expected})"
    run = load_run(run_dir)
    assert run.status == "bad summary" and run.reason.startswith(f"summary.json is not a run summary ({expected});")


def test_the_report_of_a_fixed_comparison_is_the_one_built_before_summaries_had_a_type(tmp_path):
    out = write_reference_comparison(tmp_path / "cmp")
    result = CliRunner().invoke(main, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.json").read_text() == REFERENCE_REPORT.read_text()


def test_the_record_is_what_the_file_says():
    with pytest.raises(ValueError, match="split 'test' is not known"):
        Summary().figures("test")
    assert Summary().to_json() == dict.fromkeys(KEYS)
