"""Selection: which epoch of a run is reported (the fixed budget, or the best epoch on the held-out split).

Of the default workload (ImageNet + COCO) the figures are top-1 and mIoU; of another workload they are its
own metrics by name (``metrics``), the best epoch chosen by the workload's joint score (the mean of the
tasks' primary metrics, report.taskmetrics) on the held-out split. A workload without one (a primary metric
lower-is-better) is reported at its last epoch: it is ranked by Δm against a reference row, and a run's
epoch is chosen from its own figures, not another run's (taskmetrics' NOTE [reference row]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..errors import ConfigError
from .convergence import epoch_metrics, joint_score
from .runs import Run
from .taskmetrics import WorkloadMetrics, number

__all__ = ["DEFAULT_SELECTION", "SELECTIONS", "Selected", "select", "selection_facts"]

SELECTIONS = ("final", "best-holdout")
DEFAULT_SELECTION = "final"


@dataclass(frozen=True)
class Selected:
    """The figures reported for one run: the test split's, at the epoch the selection rule chose."""

    epoch: int | None
    step: int | None
    top1: float | None
    miou: float | None
    rule: str  # "final", "best holdout", "final (no holdout figures)" or "final (no joint score)"
    # another workload's test-split figures by metric name at that epoch (None: the default workload)
    metrics: dict | None = None

    def to_dict(self) -> dict:
        out = {"epoch": self.epoch, "step": self.step, "top1": self.top1, "miou": self.miou, "rule": self.rule}
        return out if self.metrics is None else {**out, "metrics": self.metrics}


def select(run: Run, selection: str = DEFAULT_SELECTION, own: WorkloadMetrics | None = None) -> Selected | None:
    """The reported figures of a completed run (None for any other).

    "final": the last epoch, the fixed budget. "best-holdout": the epoch with the best joint score on
    the held-out split, reported with that epoch's test figures; the test split chooses nothing. A run
    without holdout figures falls back to its final epoch, and says so. ``own``: the metrics of a workload
    other than ImageNet + COCO, whose figures are read by name and whose joint score chooses (a workload
    without a joint score, a lower-is-better primary metric, is reported at its final epoch, and says so).
    """
    if selection not in SELECTIONS:
        raise ConfigError(f"selection {selection!r} is not known (expected {' or '.join(SELECTIONS)})")
    if not run.completed:
        return None
    told = run.summary
    metrics = None
    if own is not None:
        metrics = {m.name: number((told.final_metrics or {}).get(m.name)) for m in own.metrics}
    final = Selected(told.epochs, told.steps, told.final_top1, told.final_miou, "final", metrics)
    if selection == "final":
        return final
    if own is not None and not own.joint_defined:
        return Selected(final.epoch, final.step, final.top1, final.miou, "final (no joint score)", metrics)
    best, best_score = None, None
    for row in run.epochs:
        if own is None:
            score = joint_score(*epoch_metrics(row, "holdout"), run.row.tasks)
        else:
            score = own.joint({m.name: row.figure("holdout", m.name) for m in own.metrics}, run.row.tasks)
        if score is not None and (best_score is None or score > best_score):  # ties: the earlier epoch
            best, best_score = row, score
    if best is None:
        return Selected(final.epoch, final.step, final.top1, final.miou, "final (no holdout figures)", metrics)
    chosen = None if own is None else {m.name: best.figure("val", m.name) for m in own.metrics}
    return Selected(best.epoch, best.step, best.val_top1, best.val_miou, "best holdout", chosen)


def selection_facts(selection: str, selected: Iterable[Selected]) -> list[str]:
    """The report's note on how each run's epoch was chosen."""
    if selection == "final":
        return ["Selection: final — every run is reported after its last epoch (the fixed budget)."]
    rules = [s.rule for s in selected]
    line = ("Selection: best-holdout — per run, the epoch with the best joint score on the held-out split "
            "(carved from the training set), reported with that epoch's test-split figures; the test split "
            "chooses nothing.")
    if any(r == "final (no joint score)" for r in rules):
        return [line.replace("chooses nothing.", "chooses nothing. The workload has no joint score (a primary "
                             "metric is lower-is-better), so every run is reported after its last epoch.")]
    fallback = sum(r != "best holdout" for r in rules)
    if fallback:
        line += (f" {fallback} of {len(rules)} runs have no holdout figures (trained without --holdout) and are "
                 f"reported after their last epoch instead.")
    return [line]
