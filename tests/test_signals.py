"""Ctrl-C and SIGTERM that arrive while a file is written: the write ends cleanly, then the run stops
as interrupted (never as failed), and a comparison stops with it.

The signals are real: the process sends them to itself from inside a write, and for a
checkpoint from inside torch.save's C++ zip writer, where an exception raised by a signal
handler would come out as ``RuntimeError: ... unexpected pos``.
"""

import json
import os
import signal

import pytest
import torch
from click.testing import CliRunner

from mtbench.cli import main
from mtbench.interrupts import Terminated, deferred, sigterm_as_interrupt
from mtbench.rundir import RunDir, atomic_writer

TINY = ["--image-size", "32", "--limit-train", "16", "--limit-val", "8", "--batch-size", "8", "--device", "cpu",
        "--quiet"]


@pytest.fixture(autouse=True)
def stop_handlers():
    """Ctrl-C raises KeyboardInterrupt during the test (Python's default); the handlers are put back after it."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def signal_self(signum):
    os.kill(os.getpid(), signum)


@pytest.fixture
def signal_during_save(monkeypatch):
    """``arm(signum)``: the first torch.save sends ``signum`` to this process from its second write."""
    def arm(signum):
        real_save = torch.save
        armed = [True]

        class SignallingFile:
            def __init__(self, f):
                self.f, self.writes = f, 0

            def write(self, data):
                self.writes += 1
                if self.writes == 2:
                    signal_self(signum)
                return self.f.write(data)

            def flush(self):
                return self.f.flush()

        def save(obj, f, *args, **kwargs):
            first, armed[0] = armed[0], False
            return real_save(obj, SignallingFile(f) if first else f, *args, **kwargs)

        monkeypatch.setattr(torch, "save", save)

    return arm


# -- the atomic write --------------------------------------------------------------------------

def test_ctrl_c_during_an_atomic_write_lets_the_write_finish_then_interrupts(tmp_path):
    path = tmp_path / "summary.json"
    with pytest.raises(KeyboardInterrupt):
        with atomic_writer(path) as f:
            f.write("first half, ")
            signal_self(signal.SIGINT)
            f.write("second half")
    assert path.read_text() == "first half, second half"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_write_that_fails_still_gets_its_interruption(tmp_path):
    path = tmp_path / "summary.json"
    with pytest.raises(KeyboardInterrupt) as info:
        with atomic_writer(path) as f:
            f.write("cut")
            signal_self(signal.SIGINT)
            raise ValueError("the writer failed")
    assert isinstance(info.value.__context__, ValueError)  # what was under way is kept as the context
    assert list(tmp_path.iterdir()) == []


def test_an_ignored_signal_stays_ignored(tmp_path):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with atomic_writer(tmp_path / "a.txt") as f:
        signal_self(signal.SIGTERM)
        f.write("x")
    assert (tmp_path / "a.txt").read_text() == "x"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_nested_deferrals_raise_once_after_the_outer_block():
    order = []
    with pytest.raises(KeyboardInterrupt):
        with deferred():
            with deferred():
                signal_self(signal.SIGINT)
                order.append("inner done")
            order.append("outer done")
    assert order == ["inner done", "outer done"]


def test_sigterm_inside_torch_save_leaves_a_whole_checkpoint_and_raises_terminated(tmp_path, signal_during_save):
    run = RunDir(tmp_path / "run")
    run.create()
    state = {"weights": torch.arange(10_000, dtype=torch.float32), "step": 3}
    signal_during_save(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_as_interrupt():
        run.save_checkpoint(state)
    loaded = run.load_checkpoint()
    assert loaded["step"] == 3 and torch.equal(loaded["weights"], state["weights"])


# -- a run and a comparison --------------------------------------------------------------------

def invoke(args):
    return CliRunner().invoke(main, args, env={"MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": ""})


@pytest.mark.parametrize("signum, why", [(signal.SIGTERM, "terminated (SIGTERM)"),
                                         (signal.SIGINT, "interrupted by the user")])
def test_a_signal_during_the_checkpoint_stops_the_run_as_interrupted_and_it_resumes(tmp_path, signal_during_save,
                                                                                    signum, why):
    signal_during_save(signum)
    result = invoke(["run", "--optimizer", "adam", "--out", str(tmp_path), "--epochs", "2", *TINY])
    assert result.exit_code == 130, result.output
    (run_dir,) = tmp_path.iterdir()
    assert f"interrupted; resume with: mtbench run --resume {run_dir}" in result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs"] == 1
    assert summary["error"].startswith(f"{why} after 1 of 2 epochs")

    resumed = invoke(["run", "--resume", str(run_dir), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 2


def test_a_signal_during_a_checkpoint_stops_the_comparison(tmp_path, signal_during_save):
    out = tmp_path / "cmp"
    signal_during_save(signal.SIGTERM)
    result = invoke(["compare", "--optimizers", "sgd,adam", "--epochs", "1", *TINY, "--out", str(out)])
    assert result.exit_code == 130, result.output
    assert f"interrupted; run the same command again to resume the comparison in {out}" in result.output
    assert "failed" not in result.output
    assert [p.name for p in (out / "runs").iterdir()] == ["sgd-seed0"]  # adam was not started
    assert json.loads((out / "runs/sgd-seed0/summary.json").read_text())["status"] == "interrupted"


def test_a_run_launched_apart_that_reports_an_interruption_stops_the_comparison(tmp_path):
    from mtbench.compare import PlannedRun, run_plan
    from mtbench.config import build_config
    from mtbench.plugins import load_registry
    from mtbench.report.rows import RowSpec

    adam = load_registry(environ={}).get("adam")
    plan = [PlannedRun(RowSpec.of("adam", "sum"), seed, adam, None,
                       build_config(adam, tmp_path / f"adam-seed{seed}", seed=seed)) for seed in (0, 1)]
    calls = []

    def torchrun_like(config, preset, **kwargs):  # as torchrun_train: the summary of a run stopped by SIGTERM
        calls.append(config.seed)
        return {"status": "interrupted", "error": "terminated (SIGTERM) after 0 of 1 epochs"}

    with pytest.raises(KeyboardInterrupt, match="terminated"):
        run_plan(plan, torchrun_like, progress=False, echo=lambda line: None)
    assert calls == [0]
