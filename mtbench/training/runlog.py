"""What a run tells: per-step records (metrics.jsonl), epoch rows (epochs.csv), the summary, the console."""

from __future__ import annotations

import math
import statistics
from typing import Callable

import torch

from ..board import TENSORBOARD_DIR, Board
from ..config import RunConfig
from ..model import Backbone
from ..rundir import RunDir, RunFileError, Summary
from ..workloads import Workload
from ..workloads.imagenet_coco import WORKLOAD as DEFAULT
from .checkpoint import TrainState
from .gradients import StepResult

_FLUSH_EVERY = 50  # step records buffered between appends to metrics.jsonl


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# summary.json's first figures, named before workloads (the ImageNet + COCO workload's metrics): kept
# for every run, None where the workload has no such metric.
_DEFAULT_METRICS = ("top1", "top5", "miou", "pixel_acc")


def holds_backbone(model: torch.nn.Module) -> bool:
    """Whether ``model`` is built on mtbench's ResNet ``Backbone`` (the one --backbone names).

    NOTE [model in summary]: a workload's ``build_model`` is handed --backbone whether or not it uses it
    (the multidigits network is its own backbone), so the report can only tell what a run's network was
    from what the run recorded: its class name and, where it holds a ``Backbone``, that backbone's name.
    A plugin network built on a ResNet of its own is recorded by its class name alone.
    """
    return any(isinstance(m, Backbone) for m in model.modules())


class RunLog:
    """Writes the run directory's logs and summary (rank 0 only: RunDir ignores writes elsewhere)."""

    def __init__(self, run: RunDir, config: RunConfig, identity: dict, echo: Callable[[str], None],
                 workload: Workload = DEFAULT):
        self.run, self.config, self.echo = run, config, echo
        self.workload = workload  # the run's workload: its tasks name the columns
        self.identity = identity  # optimizer, title, method: the first fields of summary.json
        self.board = Board()
        self.records: list[dict] = []
        self.opened = False  # steps taken outside Trainer.fit (tests, benchmarks) are not logged

    def open(self, state: TrainState) -> None:
        """Start logging; TensorBoard (``--tensorboard``) from the state's step: later events are dropped,
        as the logs are trimmed."""
        self.opened = True
        if self.config.tensorboard and self.run.writable:
            self.board = Board(self.run.file(TENSORBOARD_DIR), purge_step=state.counters["step"] + 1)

    def close(self) -> None:
        self.flush()
        self.board.close()

    def step(self, state: TrainState, epoch: int, result: StepResult) -> None:
        if not self.opened:
            return
        lw = self.config.loss_weights
        losses = result.losses
        record = {
            "step": state.counters["step"], "epoch": epoch,
            # metrics.jsonl is strict JSON: a non-finite loss is null (and the step marked skipped)
            **{f"loss_{task}": _finite_or_none(x) for task, x in zip(self.workload.task_names, losses)},
            "loss": _finite_or_none(sum(f * x for f, x in zip(lw, losses) if x is not None)),
            "time": round(state.counters["train_seconds"], 4), "skipped": not result.taken,
            **{k: _finite_or_none(v) for k, v in result.diagnostics.items()},
            # forward and backward passes over the step's batch (2 and 2 with a closure, ...)
            **{f"{kind}_passes": n for kind, n in result.passes.items()},
        }
        self.records.append(record)
        self.board.step(record)
        if len(self.records) >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if not self.records:
            return
        self.run.append_metrics(self.records)
        self.records = []

    def epoch(self, state: TrainState, epoch: int, mean_losses: list[float]) -> None:
        c, v, h = state.counters, state.last_val, state.last_holdout or {}
        row = {
            "epoch": epoch, "step": c["step"],
            **{f"train_loss_{task}": x for task, x in zip(self.workload.task_names, mean_losses)},
            **{f"val_{k}": x for k, x in v.items()},
            **{f"holdout_{k}": x for k, x in h.items()},
            "seconds": round(c["train_seconds"], 3),
        }
        self.run.append_epoch(row, self.epoch_columns())
        self.board.epoch(row)
        tasks = self.workload.tasks
        held = "  holdout " + " ".join(t.metric(t.primary).show(h.get(t.primary)) for t in tasks) if h else ""
        losses = " ".join(f"{t.name} {_show(x)}" for t, x in zip(tasks, mean_losses))
        figures = "  ".join(" ".join(m.show(v.get(m.name)) for m in t.metrics) for t in tasks)
        self.echo(f"epoch {epoch}/{self.config.epochs}  loss {losses}  {figures}{held}  {c['train_seconds']:.1f}s")

    def epoch_columns(self) -> list[str]:
        """epochs.csv's columns: each task's training loss, each metric on the test and holdout splits."""
        names = [m.name for _, m in self.workload.metrics()]
        return ["epoch", "step", *(f"train_loss_{t}" for t in self.workload.task_names),
                *(f"val_{m}" for m in names), *(f"holdout_{m}" for m in names), "seconds"]

    def summary(self, status: str, state: TrainState, *, init_digest: str, device: str, peak_memory_mb: float,
                error: str | None = None, model: torch.nn.Module | None = None) -> dict:
        """Write summary.json and return its content; the ``final_*`` figures are the test (validation) split's.
        ``model``: the network trained, named in the summary (its class, the backbone it holds)."""
        c, v, h = state.counters, state.last_val or {}, state.last_holdout or {}
        trained = [m for t, m in self.workload.metrics() if t.name in self.config.tasks]
        summary = Summary(
            **self.identity,
            status=status,
            error=error,
            seed=self.config.seed,
            epochs=c["epoch"],
            steps=c["step"],
            **{f"final_{k}": v.get(k) for k in _DEFAULT_METRICS},
            **{f"holdout_{k}": h.get(k) for k in _DEFAULT_METRICS},
            seconds_per_step=statistics.median(state.step_times) if state.step_times else None,
            total_seconds=round(c["train_seconds"], 3),
            peak_memory_mb=round(peak_memory_mb, 1),
            skipped_steps=c["skipped_steps"],
            corrupt_images=c["corrupt_images"],
            init_weights_sha256=init_digest,
            task_weights=tuple(self.config.task_weights),
            loss_scale=tuple(self.config.loss_scale),
            holdout=self.config.holdout,
            tasks=tuple(self.config.tasks),
            method_settings=dict(self.config.method_settings),
            device=device,
            workload=self.workload.name,
            task_metrics={t.name: [{"name": m.name, "title": m.title, "higher_is_better": m.higher_is_better,
                                    "unit": m.unit, "primary": m.name == t.primary} for m in t.metrics]
                          for t in self.workload.tasks},
            # the trained tasks' figures only (NOTE [trained tasks only], mtbench.training.evaluate)
            final_metrics={m.name: v.get(m.name) for m in trained},
            holdout_metrics={m.name: h.get(m.name) for m in trained} if h else None,
            model=type(model).__name__ if model is not None else None,
            model_backbone=self.config.backbone if model is not None and holds_backbone(model) else None,
        )
        self.run.write_summary(summary)
        return summary.to_json()

    def _written(self) -> Summary | None:
        """The summary.json a part of this run wrote before (None when there is none to read)."""
        try:
            return self.run.read_summary()
        except RunFileError:
            return None

    def reported_peak_mb(self) -> float:
        """The peak memory that summary.json reports (0 without one): for a resumed run, that of the parts
        before, up to their last summary (the checkpoint's count was taken before its own save)."""
        written = self._written()
        return (written.peak_memory_mb if written else None) or 0.0

    def finished_summary(self) -> dict | None:
        """The summary of a run that completed, read back (None when there is none to trust)."""
        written = self._written()
        return written.to_json() if written and written.completed else None
