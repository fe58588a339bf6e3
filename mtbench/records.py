"""The typed records of a run directory: EpochRow (a row of epochs.csv) and Summary (summary.json), and
RunFileError, what a reader of a run directory's file raises. mtbench.rundir owns the files and re-exports
these; they are apart so that the directory's layout and its records each fit in a reader's head."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import MTBenchError

__all__ = ["EPOCH_COLUMNS", "SPLITS", "EpochRow", "RunFileError", "Summary"]


@dataclass(frozen=True)
class EpochRow:
    """One row of epochs.csv: the state at the end of one epoch (None where the file has no value)."""

    epoch: int
    step: int | None
    train_loss_cls: float | None
    train_loss_seg: float | None
    val_top1: float | None
    val_top5: float | None
    val_miou: float | None
    val_pixel_acc: float | None
    # the held-out selection split (--holdout); empty without one
    holdout_top1: float | None
    holdout_top5: float | None
    holdout_miou: float | None
    holdout_pixel_acc: float | None
    seconds: float | None
    # Every metric column of the row by its name in the file (val_<metric>, holdout_<metric>): the figures
    # of a workload other than ImageNet + COCO, whose epochs.csv names its own metrics.
    metrics: dict = dataclasses.field(default_factory=dict, compare=False)

    def figure(self, split: str, name: str) -> float | None:
        """The metric ``name`` at the end of this epoch on ``split``: "val" (the test split) or "holdout"."""
        return self.metrics.get(f"{split}_{name}")


EPOCH_COLUMNS = [f.name for f in dataclasses.fields(EpochRow) if f.name != "metrics"]

SPLITS = ("final", "holdout")  # summary.json's figures: the test (validation) split's, the held-out split's


@dataclass(frozen=True)
class Summary:
    """summary.json: how a run ended and its figures. The fields are the file's keys, in its order.

    The run log builds it and writes ``to_json()``; ``from_json`` reads any version's file: a key an
    older run did not write reads as None, a key this version does not know is ignored, a figure reads
    as a float and a non-finite one as None (as every reader took them), so old run directories still
    report. A value of the wrong type is a ValueError naming the key, the value and what was expected.
    """

    optimizer: str | None = None
    title: str | None = None
    method: str | None = None
    status: str | None = None
    error: str | None = None
    seed: int | None = None
    epochs: int | None = None
    steps: int | None = None
    final_top1: float | None = None
    final_top5: float | None = None
    final_miou: float | None = None
    final_pixel_acc: float | None = None
    holdout_top1: float | None = None
    holdout_top5: float | None = None
    holdout_miou: float | None = None
    holdout_pixel_acc: float | None = None
    seconds_per_step: float | None = None
    total_seconds: float | None = None
    peak_memory_mb: float | None = None
    skipped_steps: int | None = None
    corrupt_images: int | None = None
    init_weights_sha256: str | None = None
    task_weights: tuple[float, ...] | None = None
    loss_scale: tuple[float, ...] | None = None
    holdout: float | None = None
    tasks: tuple[str, ...] | None = None
    method_settings: dict | None = None
    device: str | None = None
    # The run's workload, each task's metrics ({task: [{name, title, higher_is_better, unit, primary}]})
    # and every metric's value by name on the test and holdout splits (None for runs before workloads).
    workload: str | None = None
    task_metrics: dict | None = None
    final_metrics: dict | None = None
    holdout_metrics: dict | None = None
    # The network the run trained: its class name, and the ResNet backbone it holds (None where it holds
    # none: a workload whose model is its own backbone ignores --backbone). None for runs before these.
    model: str | None = None
    model_backbone: str | None = None

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def figures(self, split: str) -> tuple[float | None, float | None]:
        """(top-1, mIoU) on one split: "final" (the test split) or "holdout" (the selection split)."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not known (expected {' or '.join(SPLITS)})")
        if split == "final":
            return self.final_top1, self.final_miou
        return self.holdout_top1, self.holdout_miou

    def to_json(self) -> dict:
        """The content of summary.json: every field, in order (sequences as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in
                ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))}

    @classmethod
    def from_json(cls, data: dict) -> Summary:
        """The record of a summary.json's content (see the class for what an old or odd file reads as)."""
        return cls(**{name: _SUMMARY_TYPES[name](name, data[name]) for name in _SUMMARY_TYPES if name in data})


def _checked(what: str, ok: Callable[[Any], bool], convert: Callable[[Any], Any] = lambda v: v):
    """A reader of one summary.json value: None stays None, a value ``ok`` refuses is a ValueError."""
    def read(name: str, value: Any) -> Any:
        if value is None:
            return None
        if not ok(value):
            raise ValueError(f"{name} is {value!r}, expected {what}")
        return convert(value)
    return read


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_list_of(kind: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(kind(x) for x in v)


_SUMMARY_READERS = {
    "str": _checked("a string", lambda v: isinstance(v, str)),
    "int": _checked("a whole number", lambda v: _is_number(v) and float(v).is_integer(), int),
    "float": _checked("a number", _is_number, lambda v: float(v) if math.isfinite(v) else None),
    "tuple[float, ...]": _checked("a list of numbers", _is_list_of(_is_number), tuple),
    "tuple[str, ...]": _checked("a list of strings", _is_list_of(lambda x: isinstance(x, str)), tuple),
    "dict": _checked("an object", lambda v: isinstance(v, dict), dict),
}
_SUMMARY_TYPES = {f.name: _SUMMARY_READERS[f.type.removesuffix(" | None")] for f in dataclasses.fields(Summary)}


class RunFileError(MTBenchError):
    """A file of a run directory that is missing, empty, cut short or unreadable."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem  # "is missing", "is not valid JSON (...)", ...
