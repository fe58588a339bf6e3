"""TensorBoard scalars of a run (``--tensorboard``); metrics.jsonl and epochs.csv stay the record."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

TENSORBOARD_DIR = "tensorboard"  # inside the run directory
STEP_SCALAR = "loss"  # each step's weighted loss, and each task's as loss_<task> (the workload's names)


class Board:
    """Writes event files under ``log_dir``; with ``log_dir=None`` every method does nothing."""

    def __init__(self, log_dir: Path | None = None, purge_step: int | None = None):
        self.writer = None
        if log_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        # purge_step: a resumed run drops the events written after its checkpoint, as it trims its logs.
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def step(self, record: dict) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if (key == STEP_SCALAR or key.startswith(f"{STEP_SCALAR}_")) and value is not None:
                self.writer.add_scalar(f"train/{key}", value, record["step"])

    def epoch(self, row: dict) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key.startswith(("val_", "holdout_", "train_loss")) and value is not None:
                self.writer.add_scalar(f"epoch/{key}", value, row["step"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
