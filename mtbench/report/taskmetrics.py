"""A workload's own metrics in a report: what its runs' summary.json names (each task's metrics, their
direction, the task's primary metric) and the figures read from it, for workloads other than the default
ImageNet + COCO (whose top-1 and mIoU the report has always read from their own summary fields).

Over these: the joint score, the mean of the tasks' primary metrics, defined only where every primary
metric is higher-is-better (a mean of an accuracy and an error says nothing); and Δm as LibMTL defines it,
over every metric of every task, the sign of a lower-is-better metric's change flipped, against the
single-task baseline of the metric's task with the same seed, or where the comparison has none against a
reference row of it (NOTE [reference row]).

NOTE [reference row]
    Δm needs a reference. LibMTL's is the single-task model of each task, and where the comparison ran
    them (--single-task) they stay the reference. Without them, Δm is measured against a compared row,
    seed by seed (mtbench.report.reference): --reference ROW, by default adam, Adam on the weighted sum,
    the linear-scalarization baseline multi-task papers compare against. That is how the field reports
    Δm when single-task models are not run, since they double the cost of a comparison on a workload of
    two tasks (three on NYUv2). Against a fixed reference, Δm is a fixed signed weighting of the metrics
    (each weighted by 1 / the reference's value, the sign flipped where lower is better): the reference
    sets the scale of each metric, not the order it puts rows in beyond that weighting. It is what a
    workload without a joint score (a primary metric lower-is-better: nyuv2, cityscapes) is ranked by
    under --primary joint, and what --primary delta_m means without single-task baselines. Selection on
    such a workload stays "final": a run's reported epoch is chosen from that run's figures alone, and Δm
    against another row would make one run's epoch depend on another run's (the reference's own on
    itself, 0 everywhere); best-holdout needs a score of one run, which the workload does not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

from ..config import DEFAULT_WORKLOAD
from ..rundir import Summary
from .runs import Run
from .stats import delta_m, summarize

__all__ = ["MetricInfo", "WorkloadMetrics", "number", "split_joint", "summary_metrics", "workload_metrics"]


@dataclass(frozen=True)
class MetricInfo:
    """One metric of one task, as summary.json's ``task_metrics`` names it."""

    task: str
    name: str
    title: str
    higher_is_better: bool
    unit: str
    primary: bool

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    def show(self, summary: dict | None) -> str:
        """mean±half-width of the 95 % interval, a fraction in % where the metric says so."""
        if not summary or summary.get("mean") is None:
            return "-"
        scale, unit = (100.0, "%") if self.unit == "%" else (1.0, f" {self.unit}" if self.unit else "")
        text = f"{summary['mean'] * scale:.3g}"
        if summary.get("ci_low") is not None:
            text += f"±{(summary['ci_high'] - summary['ci_low']) / 2 * scale:.2g}"
        return text + unit


@dataclass(frozen=True)
class WorkloadMetrics:
    """The metrics of a report's workload, in its tasks' order."""

    workload: str
    metrics: tuple[MetricInfo, ...]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.task for m in self.metrics))

    def primaries(self, tasks: Sequence[str]) -> list[MetricInfo]:
        return [m for m in self.metrics if m.primary and m.task in tasks]

    @property
    def joint_defined(self) -> bool:
        return all(m.higher_is_better for m in self.primaries(self.tasks))

    def values(self, run: Run, tasks: Sequence[str]) -> dict[str, float | None]:
        """The run's test-split figure of each metric of ``tasks`` (None where it has none)."""
        recorded = (run.summary.final_metrics if run.summary else None) or {}
        return {m.name: number(recorded.get(m.name)) for m in self.metrics if m.task in tasks}

    def joint(self, values: Mapping[str, float | None], tasks: Sequence[str]) -> float | None:
        """The mean of the tasks' primary metrics; None where one is missing or the joint is not defined."""
        primaries = [values.get(m.name) for m in self.primaries(tasks)]
        if not self.joint_defined or not primaries or any(v is None for v in primaries):
            return None
        return sum(primaries) / len(primaries)

    def delta_m(self, row: Mapping[str, Mapping[Hashable, float | None]],
                baselines: Mapping[str, Mapping[str, Mapping[Hashable, float | None]]]) -> dict[Hashable, float]:
        """Δm per seed: ``row`` maps each metric to {seed: value}; ``baselines`` each task to its baseline
        row's {metric: {seed: value}}. DataError (from stats.delta_m) where a baseline is 0 or not a number."""
        return delta_m({m.name: row.get(m.name, {}) for m in self.metrics},
                       {m.name: baselines[m.task].get(m.name, {}) for m in self.metrics},
                       lower_is_better={m.name for m in self.metrics if not m.higher_is_better})

    def summaries(self, values: Mapping[str, Mapping[Hashable, float | None]]) -> dict[str, dict]:
        return {m.name: summarize(values.get(m.name, {}).values()) for m in self.metrics}

    def describe(self, reference: str | None = None) -> str:
        """The line of the report's notes that says what the workload's metrics are. ``reference``: what Δm is
        measured against, "single-task" or a compared row's label (None: no Δm; said as single-task)."""
        shown = "; ".join(f"{task}: " + ", ".join(f"{m.title} {m.arrow}" + (" (primary)" if m.primary else "")
                                                  for m in self.metrics if m.task == task) for task in self.tasks)
        row = reference not in (None, "single-task")
        joint = ("Joint score = mean of the tasks' primary metrics." if self.joint_defined else
                 "Joint score: not defined (a primary metric is lower-is-better); rank by --primary delta_m "
                 "with --single-task." if reference is None else
                 "Joint score: not defined (a primary metric is lower-is-better); --primary joint ranks by Δm.")
        against = (f"against the run of the compared row {reference} (the reference)" if row else
                   "against the single-task baseline of the metric's task")
        return (f"Workload {self.workload}: {shown} (↑ higher is better, ↓ lower). {joint} Δm = mean over every "
                f"metric of 100 x (row - {'reference' if row else 'baseline'}) / {'reference' if row else 'baseline'}"
                f", the sign flipped where lower is better, per seed {against}.")


def workload_metrics(runs: Sequence[Run]) -> WorkloadMetrics | None:
    """The metrics of the runs' workload as their summary.json names them; None for the default workload or
    runs that name none (the report reads top-1 and mIoU as it always has)."""
    return next((own for run in runs if run.summary is not None and (own := summary_metrics(run.summary))), None)


def summary_metrics(told: Summary) -> WorkloadMetrics | None:
    """The metrics one summary.json names, for a workload other than the default one (else None)."""
    if not told.workload or told.workload == DEFAULT_WORKLOAD or not told.task_metrics:
        return None
    metrics = []
    for task, entries in told.task_metrics.items():
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                metrics.append(MetricInfo(task, entry["name"], str(entry.get("title") or entry["name"]),
                                          entry.get("higher_is_better") is not False, str(entry.get("unit") or ""),
                                          bool(entry.get("primary"))))
    return WorkloadMetrics(told.workload, tuple(metrics)) if metrics else None


def split_joint(told: Summary, split: str) -> float | None:
    """The joint score of a summary of another workload on one split ("final" or "holdout"), None where it is
    not defined or not recorded."""
    own = summary_metrics(told)
    recorded = (told.final_metrics if split == "final" else told.holdout_metrics) or {}
    if own is None:
        return None
    tasks = told.tasks or own.tasks
    return own.joint({m.name: number(recorded.get(m.name)) for m in own.metrics}, tasks)


def number(value) -> float | None:
    """A figure read from a file: a finite-or-not number as a float, anything else (None, a string) None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
