"""`mtbench run` as a careless or hostile user drives it: bad values, signals, edited configs,
resumes of finished runs, config files, logs off a terminal, and an instant `--help`."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

import mtbench.train as train_module
from mtbench.cli import main
from mtbench.config import build_config
from mtbench.errors import ConfigError
from mtbench.plugins import load_registry
from states import assert_same_state

REGISTRY = load_registry(environ={})
TINY = ["--device", "cpu", "--image-size", "32", "--limit-train", "16", "--limit-val", "8", "--epochs", "1", "--quiet"]
ENV = {"MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": ""}


def invoke(args, **kw):
    return CliRunner().invoke(main, args, env=ENV, **kw)


def only_run_dir(out):
    (run_dir,) = out.iterdir()
    return run_dir


def summary_of(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task-weights", "nan,1"], "--task-weights nan,1 is not allowed: expected a finite weight >= 0 per task"),
        (["--task-weights", "inf,1"], "--task-weights inf,1 is not allowed: expected a finite weight >= 0 per task"),
        (["--loss-scale", "seg=inf"], "--loss-scale seg=inf is not allowed: expected finite positive factors"),
        (["--max-skips", "-1"], "--max-skips -1 is not allowed: expected a whole number in [1, "),
        (["--seed", str(2**64)], f"--seed {2**64} is not allowed: expected a whole number in [0, {2**64 - 1}]"),
        (["--image-size", "32", "--batch-size", "1"],
         "--batch-size 1 with --image-size 32 leaves one value per channel"),
    ],
)
def test_bad_values_are_one_line_errors_before_a_run_directory_exists(tmp_path, args, message):
    result = invoke(["run", "-o", "adam", *TINY, "--out", str(tmp_path / "runs"), *args])
    assert result.exit_code in (1, 2), result.output  # 2: a value out of its option's range
    assert message in result.output and "Traceback" not in result.output
    assert "run directory" not in result.output  # none was created, so none is named
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_run_refused_by_the_trainer_leaves_no_empty_directory(tmp_path):
    result = invoke(["run", "-o", "adam", *TINY, "--batch-size", "64", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 1 and "is larger than the classification training set" in result.output
    assert not any((tmp_path / "runs").iterdir())


def test_the_largest_seed_trains(tmp_path):
    config = build_config(REGISTRY.get("adam"), tmp_path / "r", image_size=32, limit_train=8, limit_val=4,
                          batch_size=4, epochs=1, seed=2**64 - 1)
    assert train_module.train(config, REGISTRY.get("adam"), progress=False, echo=lambda s: None)["status"] == "completed"


def test_a_weights_file_with_non_string_keys_is_refused(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({0: torch.zeros(3)}, path)
    result = invoke(["run", "-o", "adam", *TINY, "--out", str(tmp_path / "runs"), "--weights", str(path)])
    assert result.exit_code == 1 and "expected a state dict of name -> tensor, found key 0" in result.output


def test_a_weights_file_that_fits_few_tensors_loads_with_a_warning(tmp_path):
    from mtbench.model import MultiTaskNet

    state = MultiTaskNet("resnet18", 10, 21).state_dict()
    path = tmp_path / "w.pt"
    torch.save({"backbone.stem.0.weight": state["backbone.stem.0.weight"]}, path)
    result = invoke(["run", "-o", "adam", *TINY, "--out", str(tmp_path / "runs"), "--weights", str(path)])
    assert result.exit_code == 0, result.output
    assert f"warning: --weights {path}: loaded 1 of {len(state)} tensors; kept initial values for backbone" \
        in result.output


def test_resume_refuses_a_config_edited_to_another_optimizer(tmp_path):
    assert invoke(["run", "-o", "adam", *TINY, "--out", str(tmp_path)]).exit_code == 0
    run_dir = only_run_dir(tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    config["optimizer"] = "adamw"
    config["hyperparams"]["weight_decay"] = 0.01
    (run_dir / "config.json").write_text(json.dumps(config))
    result = invoke(["run", "--resume", str(run_dir), "--epochs", "2", "--quiet"])
    assert result.exit_code == 1, result.output
    assert "its checkpoint was trained with other settings" in result.output
    assert "optimizer: 'adam' in the checkpoint, 'adamw' now" in result.output


def test_resuming_a_completed_run_changes_nothing(tmp_path):
    assert invoke(["run", "-o", "adam", *TINY, "--out", str(tmp_path)]).exit_code == 0
    run_dir = only_run_dir(tmp_path)
    before = summary_of(run_dir)
    result = invoke(["run", "--resume", str(run_dir), "--quiet"])
    assert result.exit_code == 0 and "has already completed its 1 epochs; nothing to do" in result.output
    assert summary_of(run_dir) == before
    result = invoke(["run", "--resume", str(run_dir), "--quiet", "--epochs", "2"])
    after = summary_of(run_dir)
    assert result.exit_code == 0 and after["epochs"] == 2
    assert after["peak_memory_mb"] >= before["peak_memory_mb"]  # the peak spans both parts
    result = invoke(["run", "--resume", str(run_dir), "--quiet", "--epochs", "1"])
    assert result.exit_code == 1 and "has already trained 2 epochs; --epochs 1 cannot shorten it" in result.output


def test_ctrl_c_says_how_to_resume(tmp_path, monkeypatch):
    def interrupted(config, *args, **kwargs):
        os.makedirs(config.run_dir, exist_ok=True)
        open(os.path.join(config.run_dir, "config.json"), "w").close()
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", interrupted)
    result = invoke(["run", "-o", "adam", *TINY, "--out", str(tmp_path)])
    assert result.exit_code == 130
    assert f"interrupted; resume with: mtbench run --resume {only_run_dir(tmp_path)}" in result.output


def _start_run(tmp_path, *extra):
    args = [sys.executable, "-c", "from mtbench.cli import main; main()", "run", "-o", "adam", "--device", "cpu",
            "--image-size", "32", "--limit-train", "16", "--limit-val", "8", "--batch-size", "8",
            "--epochs", "50", "--out", str(tmp_path), *extra]
    env = {**os.environ, **ENV, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = list(tmp_path.glob("*/checkpoints/last.pt"))
        if found and summary_of(found[0].parent.parent)["epochs"] >= 1:
            return proc, found[0].parent.parent
        if proc.poll() is not None:
            pytest.fail(f"the run ended early: {proc.stdout.read()}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail("no checkpoint within 120 s")


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(tmp_path):
    proc, run_dir = _start_run(tmp_path)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output
    assert f"resume with: mtbench run --resume {run_dir}" in output and "Traceback" not in output
    summary = summary_of(run_dir)
    assert summary["status"] == "interrupted" and summary["epochs"] >= 1
    assert "terminated (SIGTERM)" in summary["error"] and f"mtbench run --resume {run_dir}" in summary["error"]
    done = summary["epochs"]
    result = invoke(["run", "--resume", str(run_dir), "--quiet", "--epochs", str(done + 1)])
    assert result.exit_code == 0 and summary_of(run_dir)["epochs"] == done + 1


# `mtbench run` in a process that stops for good after its PAUSE_AT_STEP-th step (mid-epoch), having
# written its pid to PAUSED_FILE: the test kills it there, at a point it chose, not at one a timer chose.
PAUSING_RUN = """
import os, time
from pathlib import Path
import mtbench.train as train_module
from mtbench.cli import main

real_step = train_module.Trainer.step

def step(self, *args, **kwargs):
    result = real_step(self, *args, **kwargs)
    if self.state.counters["step"] == int(os.environ["PAUSE_AT_STEP"]):
        Path(os.environ["PAUSED_FILE"]).write_text(str(os.getpid()))
        time.sleep(600)
    return result

train_module.Trainer.step = step
main()
"""


def _mtbench(*args, **env):
    """`mtbench ARGS` in a fresh process, one thread (the same arithmetic in every process)."""
    code = PAUSING_RUN if "PAUSE_AT_STEP" in env else "from mtbench.cli import main; main()"
    env = {**os.environ, **ENV, "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finished(proc):
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, output


def _record(run_dir):
    """What a run ends with, wall-clock figures left out: checkpoint, per-step and per-epoch logs."""
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    steps = [{k: v for k, v in json.loads(line).items() if k != "time"}
             for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    with open(run_dir / "epochs.csv", newline="") as f:
        epochs = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]
    return {"model": ckpt["model"], "optimizer": ckpt["optimizer"], "gradients": ckpt["gradients"],
            "rng_cpu": ckpt["rng_cpu"], "last_val": ckpt["last_val"],
            "counters": {k: ckpt["state"][k] for k in ("epoch", "step", "skipped_steps")},
            "steps": steps, "epochs": epochs}


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "mtadamv2"])
def test_a_run_sigkilled_mid_epoch_resumes_bit_identical_to_an_uninterrupted_one(tmp_path, optimizer):
    # 2 steps an epoch; the kill comes after step 3, in the middle of epoch 2.
    args = ["run", "-o", optimizer, "--device", "cpu", "--image-size", "32", "--limit-train", "16",
            "--limit-val", "8", "--batch-size", "8", "--epochs", "2", "--seed", "5"]
    whole = _mtbench(*args, "--out", str(tmp_path / "whole"))
    paused = tmp_path / "paused"
    killed = _mtbench(*args, "--out", str(tmp_path / "killed"), PAUSE_AT_STEP="3", PAUSED_FILE=str(paused))
    try:
        deadline = time.monotonic() + 300
        while not paused.exists():
            assert killed.poll() is None, killed.communicate()[0].decode()
            assert time.monotonic() < deadline, "the run did not reach step 3 within 300 s"
            time.sleep(0.2)
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=60)
    finally:
        if killed.poll() is None:
            killed.kill()
    assert killed.returncode == -signal.SIGKILL
    _finished(whole)
    run_dir = only_run_dir(tmp_path / "killed")
    summary = summary_of(run_dir)
    assert summary["status"] == "running" and summary["epochs"] == 1 and summary["steps"] == 2
    uninterrupted = _record(only_run_dir(tmp_path / "whole"))
    assert summary["final_top1"] == float(uninterrupted["epochs"][0]["val_top1"])

    _finished(_mtbench("run", "--resume", str(run_dir)))
    assert summary_of(run_dir)["status"] == "completed"
    assert_same_state(_record(run_dir), uninterrupted, "resumed")


@pytest.mark.slow
def test_logs_off_a_terminal_hold_no_progress_bar(tmp_path):
    args = [sys.executable, "-c", "from mtbench.cli import main; main()", "run", "-o", "adam", *TINY[:-1],
            "--epochs", "2", "--out", str(tmp_path)]
    # Bytes, as a log file receives them: text mode would turn a bar's carriage returns into newlines.
    out = subprocess.run(args, env={**os.environ, **ENV, "OMP_NUM_THREADS": "1"}, capture_output=True,
                         stdin=subprocess.DEVNULL, timeout=300)
    assert out.returncode == 0, out.stderr.decode()
    for stream in (out.stdout, out.stderr):  # tqdm draws on stderr: "\repoch 1/2:  50%|##### | 1/2 [...]"
        assert b"\r" not in stream and b"%|" not in stream, stream.decode()
    lines = out.stdout.decode().splitlines()
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/2", "2/2"]


def test_a_toml_config_file_sets_options_and_the_command_line_wins(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('optimizer = "adam"\nimage-size = 32\nlimit-train = 16\nlimit-val = 8\nepochs = 3\n'
                    'task-weights = [0.3, 0.7]\nquiet = true\n[set]\nlr = 0.002\n')
    result = invoke(["run", "--config", str(path), "--epochs", "1", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    config = json.loads((only_run_dir(tmp_path / "runs") / "config.json").read_text())
    assert config["epochs"] == 1 and config["hyperparams"]["lr"] == 0.002 and config["task_weights"] == [0.3, 0.7]


def test_a_run_config_json_replays_the_run(tmp_path):
    first = tmp_path / "first"
    assert invoke(["run", "-o", "adam", *TINY, "--set", "lr=0.00123456789", "--task-weights", "0.25,0.75",
                   "--out", str(first)]).exit_code == 0
    original = only_run_dir(first)
    result = invoke(["run", "--config", str(original / "config.json"), "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    replay = only_run_dir(tmp_path / "again")
    a, b = (json.loads((d / "config.json").read_text()) for d in (original, replay))
    assert {k: v for k, v in a.items() if k != "run_dir"} == {k: v for k, v in b.items() if k != "run_dir"}
    assert summary_of(original)["final_top1"] == summary_of(replay)["final_top1"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("limitt = 3\n", "unknown option 'limitt' for `mtbench run`"),
        ("epochs = \n", "c.toml: "),
        ("epochs = 'many'\n", "--epochs many is not allowed: expected a whole number in [1, "),
    ],
)
def test_a_bad_config_file_is_a_one_line_error(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    result = invoke(["run", "-o", "adam", "--config", str(path), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_tensorboard_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    assert invoke(["run", "-o", "adam", *TINY, "--tensorboard", "--out", str(tmp_path)]).exit_code == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(only_run_dir(tmp_path) / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss_cls", "train/loss_seg", "epoch/val_top1", "epoch/val_miou"} <= set(tags)
    assert len(events.Scalars("train/loss")) == 2  # one per step


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["compare", "--help"], ["list", "--help"]])
def test_help_does_not_import_torch(args):
    code = ("import sys\nfrom mtbench.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)" % (args,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr


def test_config_rejects_a_seed_beyond_64_bits(tmp_path):
    with pytest.raises(ConfigError, match=r"--seed -1 is not allowed"):
        build_config(REGISTRY.get("adam"), tmp_path, seed=-1)


def test_shell_completion_completes_commands_and_options_without_torch():
    code = ("import sys\nfrom mtbench.cli import main\ntry:\n    main(prog_name='mtbench')\nexcept SystemExit:\n"
            "    pass\nprint('torch' in sys.modules)")
    env = {**os.environ, "_MTBENCH_COMPLETE": "bash_complete", "COMP_WORDS": "mtbench run --opt", "COMP_CWORD": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "plain,--optimizer" in out.stdout.splitlines() and out.stdout.splitlines()[-1] == "False", out.stdout


@pytest.mark.slow
def test_a_run_directory_in_use_is_refused_naming_the_holder(tmp_path):
    proc, run_dir = _start_run(tmp_path)
    try:
        result = invoke(["run", "--resume", str(run_dir), "--quiet", "--epochs", "60"])
        assert result.exit_code == 1, result.output
        assert f"{run_dir} is in use by another process" in result.output and f"pid {proc.pid}" in result.output
        assert "Traceback" not in result.output
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert summary_of(run_dir)["status"] == "running"  # the refused process wrote nothing
