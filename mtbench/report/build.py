"""The verdict assembly: loaded runs -> rows over seeds -> the figures reported per run -> summaries, time
to target, Δm, the paired verdict against the best row and the scalarization front.

A comparison is a list of rows run for each seed. A row is (optimizer, method, task weights, tasks)
with a role: "row" (compared against the best), "sweep" (a point of the scalarization front, task
weights other than equal) or "baseline" (a single-task run, the reference of Δm). The statistics are
mtbench.report.stats', Δm per seed mtbench.report.deltam's, the verdict's words mtbench.report.verdict's; the
files a report writes are mtbench.report.files'.

"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..config import SUM_METHOD, TASKS
from ..errors import ConfigError, MTBenchError
from .baseline import TUNED_SUFFIX, tuned_baseline
from .convergence import (
    UNKNOWN, AbsoluteTarget, OwnTarget, Target, convergence_label, default_target, first_reach, joint_score,
    resolve_target,
)
from .deltam import delta_m_vs_baselines, delta_m_vs_reference, own_delta_m_vs_baselines, single_task_baselines
from .fronts import front_means
from .grouping import RowRuns, group_runs
from .header import header_lines
from .runs import Run
from .reference import (
    SINGLE_TASK, adam_rows, baselines_sentence, choose_reference, dropped_fact, reference_sentence,
)
from .selection import DEFAULT_SELECTION, Selected, select, selection_facts
from .stats import summarize, summarize_time_to_target
from .taskmetrics import WorkloadMetrics, workload_metrics
from .verdict import (
    DEFAULT_PRIMARY, DELTA_M, METRIC_NAMES, PRIMARY_METRICS, paired_verdict, scalarization_front,
    verdict_sentences,
)

__all__ = ["ROW_METRICS", "Report", "RowResult", "build_report"]

# The metrics a row is summarised by over seeds, in the order report.json lists them.
ROW_METRICS = ("top1", "miou", "joint", "delta_m", "steps_to_target")


@dataclass
class RowResult:
    """One row of the comparison over its seeds: summaries, time to target, verdict."""

    group: RowRuns
    per_seed: dict[str, dict]  # metric -> {seed: value}; None for a failed run
    metrics: dict[str, dict | None]  # metric -> stats.summarize (time metrics add median and reached)
    convergence: str
    ratio: float | None
    verdict: dict | None = None  # verdict.paired_verdict's entry, for role "row"
    dominated_by_front: bool | None = None  # for a compared row, when a sweep exists
    on_front: bool | None = None  # for a sweep point

    @property
    def label(self) -> str:
        return self.group.label

    @property
    def role(self) -> str:
        return self.group.role

    @property
    def failures(self) -> list[Run]:
        return [r for r in self.group.runs if not r.completed]

    @property
    def status(self) -> str:
        failed = self.failures
        if not failed:
            return "ok"
        if len(self.group.runs) == 1:
            return failed[0].reason
        reasons = "; ".join(f"seed {r.seed}: {r.reason}" for r in failed)
        if len(failed) == len(self.group.runs):
            return reasons
        return f"{len(self.group.done)}/{len(self.group.runs)} ok; {reasons}"

    @property
    def tied_with_best(self) -> bool | None:
        return self.verdict["tied_with_best"] if self.verdict else None

    @property
    def rank(self) -> int | None:
        return self.verdict["rank"] if self.verdict else None

    @property
    def vs_best(self) -> dict | None:
        return self.verdict["vs_best"] if self.verdict else None


@dataclass
class Report:
    rows: list[RowResult]
    target: Target | AbsoluteTarget | OwnTarget | None
    header: list[str]
    runs: list[Run]
    primary: str = DEFAULT_PRIMARY
    selection: str = DEFAULT_SELECTION
    verdict: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)  # how this report was measured, for the notes
    selected: dict[Path, Selected] = field(default_factory=dict)
    baselines: dict[str, str] = field(default_factory=dict)  # task -> label of the baseline row used for Δm
    # the metrics of a workload other than the default one, as its runs' summary.json names them
    own: WorkloadMetrics | None = None
    tuned_baseline: dict | None = None  # every compared row against the tuned weighted sum (report.baseline)
    # what Δm is measured against: "single-task" (the baselines), a compared row's label, or None (no Δm)
    delta_m_reference: str | None = None

    @property
    def delta_m_name(self) -> str:
        """Δm as the report names it: with its reference where that is a compared row."""
        ref = self.delta_m_reference
        return "Δm" if ref in (None, SINGLE_TASK) else f"Δm vs {ref}"

    def metric_name(self, metric: str) -> str:
        return self.delta_m_name if metric == DELTA_M else METRIC_NAMES[metric]

    @property
    def failed_runs(self) -> list[Run]:
        return [r for r in self.runs if not r.completed]

    def role(self, role: str) -> list[RowResult]:
        return [r for r in self.rows if r.role == role]

    @property
    def has_joint(self) -> bool:
        """Whether the workload has a joint score: the default one always does, another only where every primary
        metric is higher-is-better (taskmetrics.WorkloadMetrics.joint_defined)."""
        return self.own is None or self.own.joint_defined

    @property
    def has_delta_m(self) -> bool:
        return any((r.metrics.get("delta_m") or {}).get("n") for r in self.rows)


def build_report(runs: Sequence[Run], target: float | AbsoluteTarget | None = None,
                 expected: dict[str, dict] | None = None, primary: str = DEFAULT_PRIMARY,
                 selection: str = DEFAULT_SELECTION, reference: str | None = None) -> Report:
    """Aggregate runs into rows over seeds, measure time to target and give the verdict.

    ``target`` is a fraction of the best final relative joint score (the relative target), fixed
    per-task targets, or None: the embedded workload's fixed target where every run is of it, else
    the relative one; ``primary`` the metric the rows are ranked and tested on; ``selection`` which
    epoch of each run is reported; ``reference`` the compared row Δm is measured against where the
    comparison has no single-task baselines (None: adam, else the first compared row; taskmetrics'
    NOTE [reference row]). ``expected`` (optimizer -> {"top1", "miou", "convergence"}) fills in the
    guide's ranges for runs whose config.json does not carry them.
    """
    if not runs:
        raise MTBenchError("no runs to report")
    if primary not in PRIMARY_METRICS:
        raise ConfigError(f"--primary {primary!r} is not a metric to rank by (expected one of {', '.join(PRIMARY_METRICS)})")
    groups = group_runs(runs)
    own = workload_metrics(runs)  # None: the default workload, read as always (top-1 and mIoU)
    for g in groups:  # the guide's ranges are for real ImageNet + COCO: no other workload's row carries them
        g.expected = None if own is not None else g.expected or (expected or {}).get(g.optimizer)
    if own is not None and primary in ("top1", "miou"):  # else a report that ranks nothing replaces the good one
        raise ConfigError(f"--primary {primary} is a metric of ImageNet + COCO; workload {own.workload} is ranked by "
                          "joint or delta_m")
    selected = {r.path: s for r in runs if (s := select(r, selection, own)) is not None}
    per_seed = {g.label: _selected_values(g, selected) for g in groups}
    facts = selection_facts(selection, selected.values())
    tasks = own.tasks if own is not None else TASKS
    baselines, planned = single_task_baselines(groups), single_task_baselines(groups, completed=False)
    single_task = len(planned) == len(tasks)
    no_joint = own is not None and not own.joint_defined
    ranked_by = DELTA_M if primary == DEFAULT_PRIMARY and no_joint else primary  # taskmetrics' NOTE [reference row]
    if reference is not None and single_task:
        raise ConfigError(f"--reference {reference}: this comparison has single-task baselines ("
                          + ", ".join(g.label for g in planned.values()) + "), the reference of Δm; drop --reference")
    compared_labels = [g.label for g in groups if g.role == "row"]
    adam = adam_rows(groups, tasks)
    ref = (choose_reference(compared_labels, reference, adam)
           if not single_task and (ranked_by == DELTA_M or reference is not None) else None)
    if own is not None:
        for g in groups:
            per_seed[g.label].update(_own_values(g, own, selected))
        facts.append(own.describe(SINGLE_TASK if single_task else ref))

    not_computed: dict[str, str] = {}  # row -> why its Δm could not be computed
    if ref is not None:
        per_row, dropped, not_computed = delta_m_vs_reference(groups, ref, own, per_seed)
        for label, values in per_row.items():
            per_seed[label]["delta_m"] = values
        facts.extend(line for line in [dropped_fact(ref, dropped)] if line)
    for g in groups:
        if g.role == "baseline" or not single_task:
            continue
        if len(baselines) < len(tasks):
            problem = "no run of the single-task baseline " + ", ".join(
                planned[task].label for task in tasks if task not in baselines) + " completed"
        elif own is not None:
            per_seed[g.label]["delta_m"], problem = own_delta_m_vs_baselines(own, g.label, baselines, per_seed)
        else:
            per_seed[g.label]["delta_m"], problem = delta_m_vs_baselines(per_seed[g.label], baselines, per_seed)
        if problem:
            not_computed[g.label] = problem
    facts.extend(f"Δm of {label}: not computed ({problem})." for label, problem in not_computed.items())

    measured = [g for g in groups if g.role != "baseline"]
    if target is None:
        target = default_target([r.config for r in runs])
    resolved = resolve_target(target, measured, own)
    times = {g.label: _times_to_target(g, resolved) for g in measured}
    facts.extend(_split_facts(resolved, measured))

    rows = []
    for g in groups:
        values = per_seed[g.label]
        steps, seconds = times.get(g.label, ({}, {}))
        metrics = {m: summarize(values[m].values()) if m in values else None for m in ("top1", "miou", "joint", "delta_m")}
        if own is not None:
            metrics["task_metrics"] = own.summaries(values["metrics"])
        metrics["steps_to_target"] = _time_summary(steps) if steps else None
        metrics["seconds_to_target"] = _time_summary(seconds) if seconds else None
        metrics["seconds_per_step"] = summarize(r.summary.seconds_per_step for r in g.done)
        metrics["peak_memory_mb"] = summarize(r.summary.peak_memory_mb for r in g.done)
        per_seed_times = {"steps_to_target": steps, "seconds_to_target": seconds}
        rows.append(RowResult(g, {**values, **per_seed_times}, metrics, "n/a", None))
    _label_convergence([r for r in rows if r.role != "baseline"], resolved)

    compared = [r for r in rows if r.role == "row"]
    verdict = paired_verdict({r.label: r.per_seed.get(ranked_by, {}) for r in compared}, ranked_by,
                             spreads={r.label: (r.metrics[ranked_by] or {}).get("std") for r in compared})
    for r in compared:
        r.verdict = verdict[r.label]
    means = {r.label: (r.metrics[ranked_by] or {}).get("mean") for r in compared}
    seeds = {r.label: (r.metrics[ranked_by] or {}).get("n", 0) for r in compared}
    report = Report(rows, resolved, header_lines(runs, groups, own and own.workload, tasks), list(runs), ranked_by,
                    selection, [], facts, selected, {task: g.label for task, g in baselines.items()}, own,
                    delta_m_reference=SINGLE_TASK if single_task else ref)
    name = report.metric_name(ranked_by)
    if ref is not None:
        report.verdict.append(reference_sentence(ref, reference is not None, ranked_by == DELTA_M, no_joint,
                                                 adam=ref in adam))
    elif ranked_by != primary:  # no joint score, ranked by Δm against the single-task baselines
        report.verdict.append(baselines_sentence([g.label for g in planned.values()]))
    report.verdict.extend(verdict_sentences(verdict, means, ranked_by, seeds, name=name,
                                            unranked=_unranked(compared, ranked_by, not_computed)))
    report.verdict.extend(_front(rows))
    report.tuned_baseline, lines = tuned_baseline(rows, ranked_by, name=name)
    report.verdict.extend(lines)
    return report


def _unranked(compared: Sequence[RowResult], primary: str, not_computed: dict[str, str]) -> str | None:
    """Why no compared row has a value of ``primary`` although some of their runs completed (None: none did)."""
    if not any(r.group.done for r in compared):
        return None
    if primary == DELTA_M and not_computed:
        return f"Δm not computed: {'; '.join(dict.fromkeys(not_computed.values()))}"
    return f"no completed run recorded a {METRIC_NAMES[primary]}"


def _selected_values(group: RowRuns, selected: dict[Path, Selected]) -> dict[str, dict]:
    """Per metric, {seed: value} over the group's runs (None for a run that did not complete)."""
    out: dict[str, dict] = {"top1": {}, "miou": {}, "joint": {}}
    for run in group.runs:
        if run.key in out["top1"] and out["top1"][run.key] is not None:
            continue  # a seed run twice (merged directories): the first completed run counts
        s = selected.get(run.path)
        # A single-task run's other head was never trained: its figure is not the row's.
        top1 = s.top1 if s and "cls" in group.spec.tasks else None
        miou = s.miou if s and "seg" in group.spec.tasks else None
        out["top1"][run.key], out["miou"][run.key] = top1, miou
        out["joint"][run.key] = joint_score(top1, miou, group.spec.tasks) if s else None
    return out


def _own_values(group: RowRuns, own: WorkloadMetrics, selected: dict[Path, Selected]) -> dict[str, dict]:
    """A row of another workload: {metric: {seed: value}} of its tasks' metrics (under "metrics") and its joint
    score per seed, from the runs' summary.json (None for a run that did not complete)."""
    metrics: dict[str, dict] = {m.name: {} for m in own.metrics if m.task in group.spec.tasks}
    joint: dict = {}
    for run in group.runs:
        if run.key in joint and joint[run.key] is not None:
            continue  # a seed run twice (merged directories): the first completed run counts
        chosen = selected.get(run.path)
        values = {m.name: (chosen.metrics or {}).get(m.name) for m in own.metrics
                  if m.task in group.spec.tasks} if chosen else {}
        for name in metrics:
            metrics[name][run.key] = values.get(name)
        joint[run.key] = own.joint(values, group.spec.tasks) if values else None
    return {"metrics": metrics, "joint": joint}


def _times_to_target(group: RowRuns, target: Target | AbsoluteTarget | OwnTarget | None) -> tuple[dict, dict]:
    """{seed: steps} and {seed: seconds} to the target: inf where a completed run never reached it, None
    where the run did not complete or has no per-epoch figures to read (unknown); both empty when the
    row cannot be measured."""
    if target is None or (hasattr(target, "needs") and not target.needs(group.spec.tasks)):
        return {}, {}
    steps, seconds = {}, {}
    for run in group.runs:
        if run.key in steps and steps[run.key] is not None:
            continue
        hit = first_reach(run.epochs, target, run.split) if run.completed else None
        steps[run.key], seconds[run.key] = hit if hit else (None, None)
    return steps, seconds


def _time_summary(values: dict) -> dict:
    return {**summarize(values.values()), **summarize_time_to_target(values.values())}


def _split_facts(target: Target | AbsoluteTarget | OwnTarget | None, groups: Sequence[RowRuns]) -> list[str]:
    if target is None:
        return []
    done = [r for g in groups for r in g.done]
    held = sum(r.split == "holdout" for r in done)
    if not done:
        return []
    if held == len(done):
        where = "on the held-out split (every run has one)"
    elif held == 0:
        where = "on the test split (no run has a held-out split; train with --holdout to keep the test split out)"
    else:
        where = (f"on the held-out split for the {held} runs that have one, on the test split for the other "
                 f"{len(done) - held}")
    return [f"Time to target is read {where}."]


def _label_convergence(rows: Sequence[RowResult], target) -> None:
    medians = {r.label: (r.metrics["steps_to_target"] or {}).get("median") for r in rows}
    finite = [m for m in medians.values() if m is not None and math.isfinite(m)]
    fastest = min(finite, default=None)
    for r in rows:
        steps = r.metrics["steps_to_target"]
        if target is None or not steps:
            continue
        if not steps["n"]:
            if r.group.done:  # completed, but no epoch figures to read: not a miss
                r.convergence = UNKNOWN
            continue
        median = steps["median"]
        r.ratio = median / fastest if fastest and math.isfinite(median) else None
        r.convergence = convergence_label(r.ratio)
        if 0 < steps["reached"] < steps["n"]:
            r.convergence += f" ({steps['reached']}/{steps['n']} seeds)"


def _front(rows: Sequence[RowResult]) -> list[str]:
    """Mark the scalarization front and the compared rows it dominates; the sentence saying so."""
    sweep = [r for r in rows if r.role == "sweep"]
    if not sweep:
        return []
    swept = {r.group.optimizer for r in sweep}
    # A plain row of a swept optimizer is the sweep's point at the comparison's task weights.
    points = [r for r in rows if r in sweep or (r.role == "row" and r.group.optimizer in swept
                                                 and r.group.spec.method == SUM_METHOD
                                                 and not r.label.endswith(TUNED_SUFFIX))]  # held against it instead
    others = [r for r in rows if r.role == "row" and r not in points]
    mean, directions = front_means(rows)  # each task's primary metric, in its direction
    front, dominated = scalarization_front({r.label: mean[r.label] for r in points},
                                           {r.label: mean[r.label] for r in others}, directions)
    for r in points:
        r.on_front = r.label in front
    for r in others:
        r.dominated_by_front = dominated[r.label]
    beaten = [r.label for r in others if r.dominated_by_front]
    free = [r.label for r in others if r.dominated_by_front is False]
    line = f"Scalarization front ({', '.join(sorted(swept))} over task weights): {', '.join(front) or 'none'}."
    if beaten:
        task = "either task" if len(directions) == 2 else "any task"
        line += f" Dominated by it (no better on {task} than some weighting of the plain loss): {', '.join(beaten)}."
    if free:
        line += f" Not dominated: {', '.join(free)}."
    return [line]
