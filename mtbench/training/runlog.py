"""What a run tells: per-step records (metrics.jsonl), epoch rows (epochs.csv), the summary, the console."""

from __future__ import annotations

import math
import statistics
from typing import Callable

from ..board import TENSORBOARD_DIR, Board
from ..config import RunConfig
from ..rundir import RunDir, RunFileError, Summary
from .checkpoint import TrainState
from .gradients import StepResult

_FLUSH_EVERY = 50  # step records buffered between appends to metrics.jsonl


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


class RunLog:
    """Writes the run directory's logs and summary (rank 0 only: RunDir ignores writes elsewhere)."""

    def __init__(self, run: RunDir, config: RunConfig, identity: dict, echo: Callable[[str], None]):
        self.run, self.config, self.echo = run, config, echo
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
            "loss_cls": _finite_or_none(losses[0]), "loss_seg": _finite_or_none(losses[1]),
            "loss": _finite_or_none(sum(f * x for f, x in zip(lw, losses) if x is not None)),
            "time": round(state.counters["train_seconds"], 4), "skipped": not result.taken,
            **{k: _finite_or_none(v) for k, v in result.diagnostics.items()},
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
            "train_loss_cls": mean_losses[0], "train_loss_seg": mean_losses[1],
            **{f"val_{k}": x for k, x in v.items()},
            **{f"holdout_{k}": x for k, x in h.items()},
            "seconds": round(c["train_seconds"], 3),
        }
        self.run.append_epoch(row)
        self.board.epoch(row)
        held = f"  holdout top-1 {h['top1']:.1%} mIoU {h['miou']:.3f}" if h else ""
        self.echo(
            f"epoch {epoch}/{self.config.epochs}  loss cls {_show(mean_losses[0])} seg {_show(mean_losses[1])}  "
            f"top-1 {v['top1']:.1%} top-5 {v['top5']:.1%}  mIoU {v['miou']:.3f} "
            f"pixel acc {v['pixel_acc']:.1%}{held}  {c['train_seconds']:.1f}s"
        )

    def summary(self, status: str, state: TrainState, *, init_digest: str, device: str, peak_memory_mb: float,
                error: str | None = None) -> dict:
        """Write summary.json and return its content; the ``final_*`` figures are the test (validation) split's."""
        c, v, h = state.counters, state.last_val or {}, state.last_holdout or {}
        summary = Summary(
            **self.identity,
            status=status,
            error=error,
            seed=self.config.seed,
            epochs=c["epoch"],
            steps=c["step"],
            **{f"final_{k}": v.get(k) for k in ("top1", "top5", "miou", "pixel_acc")},
            **{f"holdout_{k}": h.get(k) for k in ("top1", "top5", "miou", "pixel_acc")},
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
