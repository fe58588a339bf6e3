"""Δm per seed of a comparison's rows: against each task's single-task baseline of the same seed, or, where the
comparison has no baselines, against the compared row of the same seed that --reference names (taskmetrics' NOTE
[reference row]).

mtbench.report.build picks which applies and hands over {row label: {metric: {seed: value}}}; the formula is
stats.delta_m's on ImageNet + COCO (top-1 and mIoU) and taskmetrics.WorkloadMetrics.delta_m's on another workload
(every metric, each in its direction). A row whose Δm cannot be computed gets none, and the reason in words.
"""

from __future__ import annotations

from typing import Sequence

from ..config import TASKS
from ..errors import DataError
from .convergence import TASK_METRICS
from .grouping import RowRuns
from .reference import reference_delta_m
from .stats import delta_m
from .taskmetrics import WorkloadMetrics

__all__ = ["delta_m_vs_baselines", "delta_m_vs_reference", "own_delta_m_vs_baselines", "single_task_baselines"]


def single_task_baselines(groups: Sequence[RowRuns], completed: bool = True) -> dict[str, RowRuns]:
    """The single-task baseline row of each task: the first one given with a completed run (with
    ``completed`` False: the first one given). Δm needs one per task."""
    out: dict[str, RowRuns] = {}
    for g in groups:
        if g.role == "baseline" and (g.done or not completed) and len(g.spec.tasks) == 1:
            out.setdefault(g.spec.tasks[0], g)
    return out


def delta_m_vs_reference(groups: Sequence[RowRuns], ref: str, own: WorkloadMetrics | None,
                         per_seed: dict[str, dict]) -> tuple[dict[str, dict], dict, dict[str, str]]:
    """Every row's Δm per seed against the compared row ``ref`` of the same seed (taskmetrics' NOTE [reference
    row]): over the workload's metrics, or top-1 and mIoU on the default one; a single-task row gets none."""
    if own is not None:
        figures = {g.label: per_seed[g.label]["metrics"] for g in groups if g.role != "baseline"}
        return reference_delta_m(figures, ref, lambda row, base: own.delta_m(row, {t: base for t in own.tasks}))
    figures = {g.label: {m: per_seed[g.label][m] for m in ("top1", "miou")} for g in groups if g.role != "baseline"}
    return reference_delta_m(figures, ref, delta_m)


def own_delta_m_vs_baselines(own: WorkloadMetrics, label: str, baselines: dict[str, RowRuns],
                             per_seed: dict[str, dict]) -> tuple[dict, str | None]:
    """A row's Δm per seed over every metric of the workload, against each task's baseline of the same seed."""
    base = {task: per_seed[baselines[task].label]["metrics"] for task in own.tasks}
    try:
        return own.delta_m(per_seed[label]["metrics"], base), None
    except DataError as exc:
        return {}, str(exc)


def delta_m_vs_baselines(values: dict[str, dict], baselines: dict[str, RowRuns],
                         per_seed: dict[str, dict]) -> tuple[dict, str | None]:
    """A row's Δm per seed against the baselines of the same seed: top-1 from the classification
    baseline, mIoU from the segmentation one."""
    metrics = {task: values[TASK_METRICS[task]] for task in TASKS}
    base = {task: per_seed[baselines[task].label][TASK_METRICS[task]] for task in TASKS}
    try:
        return delta_m(metrics, base), None
    except DataError as exc:
        return {}, str(exc)
