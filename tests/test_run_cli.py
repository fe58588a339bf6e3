"""`mtbench run` through the CLI: the menu, resume, and one-line errors for bad input."""

import json

import pytest
from click.testing import CliRunner

import mtbench.cli.run as run_module
from mtbench.cli import main

TINY = ["--image-size", "32", "--limit-train", "16", "--limit-val", "8", "--epochs", "1", "--quiet"]


def invoke(args, **kw):
    return CliRunner().invoke(main, args, env={"MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": ""}, **kw)


def only_run_dir(out):
    (run_dir,) = out.iterdir()
    return run_dir


def test_run_prints_the_final_metrics_and_writes_a_run_directory(tmp_path):
    result = invoke(["run", "--optimizer", "sgd", "--out", str(tmp_path), *TINY])
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path)
    assert run_dir.name.startswith("sgd-")
    assert "SGD: lr=0.01 momentum=0.9 weight_decay=0.0001" in result.output
    assert "epoch 1/1" in result.output and "final: top-1 " in result.output and "mIoU" in result.output
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_the_menu_takes_a_number(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "_stdin_is_terminal", lambda: True)
    result = invoke(["run", "--out", str(tmp_path), *TINY], input="999\n3\n")
    assert result.exit_code == 0, result.output
    assert "Select an optimizer:" in result.output
    assert "1. SGD" in result.output and "8. MTAdamV2" in result.output and "9. NAdam" in result.output  # the zoo too
    assert "999 is not in the range 1<=x<=" in result.output
    assert only_run_dir(tmp_path).name.startswith("adam-")


def test_without_a_terminal_the_menu_is_refused_with_the_choices(tmp_path):
    result = invoke(["run", "--out", str(tmp_path), *TINY])
    assert result.exit_code == 1
    assert "no --optimizer given and no terminal to ask on; choose one of: sgd, sgd_nesterov, adam" in result.output
    assert "Traceback" not in result.output


def test_resume_extends_a_finished_run_and_refuses_new_settings(tmp_path):
    assert invoke(["run", "-o", "adam", "--out", str(tmp_path), *TINY]).exit_code == 0
    run_dir = only_run_dir(tmp_path)
    refused = invoke(["run", "--resume", str(run_dir), "--set", "lr=0.1"])
    assert refused.exit_code == 1 and "--resume continues the run with its own settings; drop --set" in refused.output
    result = invoke(["run", "--resume", str(run_dir), "--epochs", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output and "epoch 1/2" not in result.output
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 2


def test_resume_reads_checkpoints_without_running_code(tmp_path):
    assert invoke(["run", "-o", "adam", "--out", str(tmp_path), *TINY]).exit_code == 0
    run_dir = only_run_dir(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import torch

    torch.save({"model": Evil()}, run_dir / "checkpoints" / "last.pt")
    result = invoke(["run", "--resume", str(run_dir), "--epochs", "2", "--quiet"])
    assert result.exit_code == 1
    assert "cannot resume from" in result.output and "Traceback" not in result.output
    assert not marker.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--imagenet", "{tmp}/nowhere", "--coco", "{tmp}/nowhere"], "nowhere"),
        (["--imagenet", "{tmp}/empty", "--coco", "{tmp}/empty"], "empty"),
        (["--batch-size", "0"], "--batch-size 0 is not allowed: expected a whole number in [1, 65536]"),
        (["--device", "quantum"], "unknown device 'quantum'"),
        (["--out", "/proc/mtbench-runs"], "cannot write the run directory /proc/mtbench-runs/"),
        (["--resume", "{tmp}/empty"], "not a run directory (no config.json)"),
        (["--amp", "fp8"], "'fp8' is not one of 'off', 'bf16', 'fp16'"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = invoke(["run", "-o", "adam", *TINY, *args])
    assert result.exit_code in (1, 2), result.output
    assert message in result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1


def test_a_garbage_or_foreign_checkpoint_is_named_without_torchs_advice_to_load_it_unsafely(tmp_path):
    assert invoke(["run", "-o", "adam", "--out", str(tmp_path), *TINY]).exit_code == 0
    run_dir = only_run_dir(tmp_path)
    last = run_dir / "checkpoints" / "last.pt"

    import torch

    torch.save({"model": print}, last)  # a Python object: only unpickling code could rebuild it
    foreign = invoke(["run", "--resume", str(run_dir), "--epochs", "2", "--quiet"])
    last.write_bytes(b"not a checkpoint at all " * 10)
    garbage = invoke(["run", "--resume", str(run_dir), "--epochs", "2", "--quiet"])
    for result in (foreign, garbage):
        assert result.exit_code == 1, result.output
        (error,) = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert error.startswith(f"Error: cannot resume from {last}: ")
        assert "weights_only" not in error and "False" not in error and "\x1b" not in error
    assert "it holds Python objects, not only tensors and plain values (Unsupported global" in foreign.output
    assert "it is not a checkpoint (torch cannot read it: " in garbage.output


@pytest.mark.parametrize("args, error", [
    (["-o", "mtadamv2", "--tasks", "seg"],
     "Error: --tasks seg trains one task alone, but 'mtadamv2' takes the tasks' gradients apart; a single-task "
     "run needs a single-gradient optimizer (such as adam) and --method sum"),
    (["-o", "adam", "--method", "pcgrad", "--tasks", "cls"],
     "Error: --tasks cls trains one task alone, but --method pcgrad combines the tasks' gradients; a single-task "
     "run needs a single-gradient optimizer (such as adam) and --method sum"),
    (["-o", "adam", "--loss-scale", "seg=nan"],
     "Error: --loss-scale seg=nan is not allowed: expected finite positive factors, e.g. seg=100"),
    (["-o", "adam", "--task-weights", "cls=0,seg=0"],
     "Error: --task-weights cls=0,seg=0 is not allowed: expected a finite weight >= 0 per task, not all 0, e.g. 0.5,0.5"),
])
def test_an_error_blames_only_what_is_wrong_as_the_user_wrote_it(tmp_path, args, error):
    result = invoke(["run", *args, "--out", str(tmp_path / "runs"), *TINY])
    assert result.exit_code == 1, result.output
    assert [line for line in result.output.splitlines() if line.startswith("Error")] == [error]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_bad_setting_from_a_replayed_config_json_names_the_file(tmp_path):
    assert invoke(["run", "-o", "adam", "--out", str(tmp_path / "first"), *TINY]).exit_code == 0
    config = only_run_dir(tmp_path / "first") / "config.json"
    data = json.loads(config.read_text())
    data["hyperparams"]["lr_typo"] = 0.1
    edited = tmp_path / "config.json"
    edited.write_text(json.dumps(data))
    result = invoke(["run", "--config", str(edited), "--out", str(tmp_path / "again")])
    assert result.exit_code == 1, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert error.startswith("Error: unknown setting 'lr_typo' for optimizer 'adam'")
    assert error.endswith(f"(with options from --config {edited})")


# A run whose set-up (reading the data) receives a real SIGTERM, as a scheduler or `kill` sends it.
SIGTERM_IN_SET_UP = """\
import signal, sys
import mtbench.workloads.imagenet_coco

def reading_the_data(*args, **kwargs):
    signal.raise_signal(signal.SIGTERM)
    raise AssertionError("the SIGTERM did not stop the run")

mtbench.workloads.imagenet_coco.build_data = reading_the_data
from mtbench.cli import main
main(["run", "-o", "adam", "--out", sys.argv[1], "--quiet"], prog_name="mtbench")
"""


def test_a_sigterm_while_the_run_sets_up_stops_it_cleanly_and_leaves_no_empty_directory(tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "runs"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": ""}
    proc = subprocess.run([sys.executable, "-c", SIGTERM_IN_SET_UP, str(out)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert "terminated (SIGTERM) while the run was setting up; nothing was kept" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []
