"""Selection: which epoch of a run is reported (the fixed budget, or the best epoch on the held-out split)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .convergence import epoch_metrics, joint_score
from .runs import Run

__all__ = ["DEFAULT_SELECTION", "SELECTIONS", "Selected", "select"]

SELECTIONS = ("final", "best-holdout")
DEFAULT_SELECTION = "final"


@dataclass(frozen=True)
class Selected:
    """The figures reported for one run: the test split's, at the epoch the selection rule chose."""

    epoch: int | None
    step: int | None
    top1: float | None
    miou: float | None
    rule: str  # "final", "best holdout", or "final (no holdout figures)"

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "top1": self.top1, "miou": self.miou, "rule": self.rule}


def select(run: Run, selection: str = DEFAULT_SELECTION) -> Selected | None:
    """The reported figures of a completed run (None for any other).

    "final": the last epoch, the fixed budget. "best-holdout": the epoch with the best joint score on
    the held-out split, reported with that epoch's test figures; the test split chooses nothing. A run
    without holdout figures falls back to its final epoch, and says so.
    """
    if selection not in SELECTIONS:
        raise ConfigError(f"selection {selection!r} is not known (expected {' or '.join(SELECTIONS)})")
    if not run.completed:
        return None
    told = run.summary
    final = Selected(told.epochs, told.steps, told.final_top1, told.final_miou, "final")
    if selection == "final":
        return final
    best, best_score = None, None
    for row in run.epochs:
        score = joint_score(*epoch_metrics(row, "holdout"), run.row.tasks)
        if score is not None and (best_score is None or score > best_score):  # ties: the earlier epoch
            best, best_score = row, score
    if best is None:
        return Selected(final.epoch, final.step, final.top1, final.miou, "final (no holdout figures)")
    return Selected(best.epoch, best.step, best.val_top1, best.val_miou, "best holdout")

