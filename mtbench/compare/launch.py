"""Launching runs: the one launcher of `mtbench compare` and `mtbench tune` (the trainer in this process, or
each run under torchrun), and the loop that trains a comparison's planned runs in order, resuming what
was interrupted."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import MTBenchError
from ..rundir import CONFIG_FILE, SUMMARY_FILE, RunDir, RunFileError, Summary
from .plan import PlannedRun

__all__ = ["Outcome", "TrainFn", "launcher", "plugin_args", "run_plan", "run_state", "torchrun_train"]

# train(config, preset, *, method, resume, progress, echo[, on_epoch]) -> the summary as a dict
TrainFn = Callable[..., dict]


@dataclass
class Outcome:
    """What became of one planned run: completed, skipped (completed before) or failed (with the reason)."""

    run: PlannedRun
    status: str
    error: str | None = None


def run_state(run_dir: Path) -> str:
    """'completed', 'resume' (a checkpoint to continue from) or 'new' (the trainer starts it afresh)."""
    run = RunDir(run_dir)
    try:
        status = run.read_summary().status
    except RunFileError:
        status = None  # a summary.json cut short or damaged: the checkpoint decides
    if status == "completed":
        return "completed"
    return "resume" if run.has_checkpoint() else "new"


def run_plan(plan: Sequence[PlannedRun], train_fn: TrainFn | None = None, progress: bool = True,
             echo: Callable[[str], None] | None = None) -> list[Outcome]:
    """Train every planned run in order, skipping completed ones and resuming interrupted ones.

    A run that fails is recorded and the comparison goes on with the next; an interrupted run
    (Ctrl-C, SIGTERM: KeyboardInterrupt, or a summary saying ``interrupted``) stops it with
    KeyboardInterrupt (run the same comparison again to resume).
    """
    if train_fn is None:
        from .train import train as train_fn
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    outcomes = []
    start = time.monotonic()
    for i, run in enumerate(plan, 1):
        head = f"[{i}/{len(plan)}] {run.name} seed {run.seed}"
        state = run_state(run.run_dir)
        if state == "completed":
            echo(f"{head}: completed before, skipped")
            outcomes.append(Outcome(run, "skipped"))
            continue
        echo(f"{head}" + (" (resuming from its last checkpoint)" if state == "resume" else "")
             + f"  [{_clock(time.monotonic() - start)} elapsed]")
        error = None
        try:
            summary = Summary.from_json(train_fn(run.config, run.preset, method=run.method, workload=run.workload,
                                                 resume=state == "resume", progress=progress, echo=echo))
        except Exception as exc:  # one row's failure must not end the comparison (Ctrl-C still does)
            error = str(exc) if isinstance(exc, MTBenchError) else f"{type(exc).__name__}: {exc}"
        else:
            if summary.status == "interrupted":  # a torchrun child stopped by a signal: so is the comparison
                raise KeyboardInterrupt(summary.error or "interrupted")
            if not summary.completed:
                error = summary.error or f"status {summary.status}"
        if error:
            error = (error.strip().splitlines() or ["unknown error"])[0]
            echo(f"{head}: failed: {error}")
        outcomes.append(Outcome(run, "failed" if error else "completed", error))
        gc.collect()  # a backstop for cycles in plugin code; the trainer leaves none (NOTE [no reference cycles])
    echo(f"{len(plan)} runs done in {_clock(time.monotonic() - start)}")
    return outcomes


def launcher(nproc: int = 1, plugin_paths: Sequence[str] = ()) -> TrainFn:
    """How compare and tune train a run: the trainer in this process (``nproc`` 1), else each run under
    torchrun with ``nproc`` processes (see ``torchrun_train``)."""
    if nproc > 1:
        return torchrun_train(nproc, plugin_paths)
    from ..train import train

    return train


def plugin_args(plugin_paths: Sequence[str]) -> list[str]:
    """``--plugin PATH`` for each path: what a child process of a command (a torchrun rank, a tune worker) is
    given to load the command's plugins, so that it resolves optimizers, methods and workloads as the command
    does (NOTE [one registry] in mtbench.config)."""
    return [arg for path in plugin_paths for arg in ("--plugin", str(path))]


def torchrun_train(nproc: int, plugin_paths: Sequence[str] = ()) -> TrainFn:
    """A ``train`` that runs each run as ``torchrun --nproc-per-node N -m mtbench run --resume DIR``.

    The run's config.json is written first, so the launched processes read exactly this config
    (a run directory without a checkpoint starts from scratch) and find its method by name.
    """
    def train_distributed(config, preset, *, method, resume, progress, echo, workload=None, on_epoch=None) -> dict:
        # The children find the method and the workload by the names in config.json (with the plugins); on_epoch
        # (a tune's pruning) cannot reach into them: tune refuses --prune with torchrun.
        run = RunDir(config.run_dir)
        with run.lock():  # released before torchrun starts: its rank 0 takes the lock in turn
            if not resume:
                run.write_json(CONFIG_FILE, config.to_dict())
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "mtbench", *plugin_args(plugin_paths), "run", "--resume", str(run.path),
               *([] if progress else ["--quiet"])]
        proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
        try:
            return run.read_json(SUMMARY_FILE)
        except RunFileError:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            raise MTBenchError(f"torchrun exited with {proc.returncode}: {lines[-1] if lines else 'no output'}")

    return train_distributed


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
