"""Measured convergence: the joint score, targets common to every row of a comparison, steps to reach
them, and the labels.

Two kinds of target, both read at the end of each epoch (epochs.csv has one row per epoch; no
interpolation between epochs):

- absolute (AlgoPerf's fixed targets): ``--target top1=0.5,miou=0.3``, every named task must reach
  its value;
- relative (``--target relative``): a fraction of the best final joint score of the
  comparison, where each task is first divided by the best final value any row reached, so that
  top-1 and mIoU count alike whatever their scales. It moves with the rows compared, so it serves
  within one comparison, not across comparisons.

``--target auto`` (the default) is the embedded workload's fixed target (EMBEDDED_TARGET) when
every run trained on the embedded data set as shipped, and the relative target otherwise.

Of a workload other than ImageNet + COCO (its runs' summary.json name its metrics) the target is the
relative one over the tasks' primary metrics (OwnTarget, by name from epochs.csv), each divided by the best
final value any row reached (a lower-is-better metric: that best divided by the value, so 1 is the best
either way); fixed targets name ImageNet + COCO's metrics and are refused there.

The label compares a row's steps to target with the fastest row's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..config import DEFAULT_WORKLOAD, TASKS
from ..errors import ConfigError
from ..rundir import EpochRow
from .stats import summarize
from .taskmetrics import WorkloadMetrics, number

if TYPE_CHECKING:
    from .grouping import RowRuns
    from .runs import Run

__all__ = [
    "AUTO", "EMBEDDED_TARGET", "NOT_REACHED", "RELATIVE", "SLOWEST_LABEL", "TARGET_FRACTION", "TASK_METRICS",
    "THRESHOLDS", "UNKNOWN", "AbsoluteTarget", "OwnTarget", "Target", "convergence_label", "convergence_target",
    "default_target", "epoch_metrics", "first_reach", "joint_score", "own_target", "parse_target", "resolve_target", "thresholds_text",
]

TARGET_FRACTION = 0.9
RELATIVE = "relative"
AUTO = "auto"
# The per-task metrics a target, a joint score or a selection reads, keyed by the task they measure.
TASK_METRICS = {"cls": "top1", "seg": "miou"}
# Convergence labels from steps-to-target relative to the fastest optimizer: (label, largest ratio).
THRESHOLDS = (("fast", 1.25), ("medium", 2.0), ("slow", 3.0))
SLOWEST_LABEL = "very slow"
NOT_REACHED = "not reached"
UNKNOWN = "unknown"  # a row whose completed runs have no per-epoch figures to read
_EPSILON = 1e-12  # a value equal to its target up to float rounding reaches it


def joint_score(top1: float | None, miou: float | None, tasks: Sequence[str] = TASKS) -> float | None:
    """The one number a run is ranked by: the mean of its trained tasks' metrics (top-1, mIoU).

    Absolute on purpose: a run's score depends on that run alone, so rows can be compared seed by seed
    with a paired test. A run that trains one task alone scores that task's metric. None when a
    trained task has no value.
    """
    values = [v for task, v in zip(TASKS, (top1, miou)) if task in tasks]
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


@dataclass(frozen=True)
class Target:
    """The relative target: ``fraction`` of the best final relative joint score of a comparison.

    Relative joint(top1, miou) = mean over the two tasks of value / reference, where a task's
    reference is the best final mean (over seeds) that any row reached.
    """

    fraction: float
    top1_ref: float | None
    miou_ref: float | None
    score: float

    kind = RELATIVE

    def figures(self, row: EpochRow, split: str) -> tuple[float | None, ...]:
        return epoch_metrics(row, split)

    def joint(self, top1: float | None, miou: float | None) -> float | None:
        parts = [(v, ref) for v, ref in ((top1, self.top1_ref), (miou, self.miou_ref)) if ref]
        if not parts or any(v is None for v, _ in parts):
            return None
        return sum(v / ref for v, ref in parts) / len(parts)

    def reached(self, top1: float | None, miou: float | None) -> bool:
        joint = self.joint(top1, miou)
        return joint is not None and joint >= self.score - _EPSILON

    def describe(self) -> str:
        refs = [f"{name}/{ref:.3f}" for name, ref in (("top-1", self.top1_ref), ("mIoU", self.miou_ref)) if ref]
        return (f"relative: relative joint score >= {self.score:.3f} = {self.fraction:g} x the best final "
                f"relative joint score, relative joint = mean of {' and '.join(refs)} (each task relative "
                f"to the best final mean in this comparison, on the split the times are read on)")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "fraction": self.fraction, "top1_reference": self.top1_ref,
                "miou_reference": self.miou_ref, "joint_score": self.score}


@dataclass(frozen=True)
class AbsoluteTarget:
    """Fixed per-task targets (None: that task has none); a run reaches them when it meets all of them."""

    top1: float | None = None
    miou: float | None = None

    kind = "absolute"

    def figures(self, row: EpochRow, split: str) -> tuple[float | None, ...]:
        return epoch_metrics(row, split)

    def reached(self, top1: float | None, miou: float | None) -> bool:
        return all(value is not None and value >= goal - _EPSILON
                   for value, goal in ((top1, self.top1), (miou, self.miou)) if goal is not None)

    def needs(self, tasks: Sequence[str]) -> bool:
        """Whether a run training ``tasks`` can meet these targets (a task it does not train cannot)."""
        return all(goal is None or task in tasks
                   for task, goal in (("cls", self.top1), ("seg", self.miou)))

    def describe(self) -> str:
        parts = [f"{name} >= {goal:g}" for name, goal in (("top-1", self.top1), ("mIoU", self.miou))
                 if goal is not None]
        return "absolute: " + " and ".join(parts)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "top1": self.top1, "miou": self.miou}


@dataclass(frozen=True)
class OwnTarget:
    """The relative target of another workload: ``fraction`` of the best final relative joint score over
    the tasks' primary metrics (``metrics``: (task, name, higher_is_better) in the workload's order).

    A metric's relative value is value / reference (higher is better) or reference / value (lower is
    better), its reference the best final mean any row reached, so 1 is the best row's either way and a
    lower-is-better primary metric (no joint score) still has a time to target.
    """

    fraction: float
    metrics: tuple[tuple[str, str, bool], ...]
    references: tuple[float, ...]
    score: float

    kind = RELATIVE

    def figures(self, row: EpochRow, split: str) -> tuple[float | None, ...]:
        return tuple(row.figure(split, name) for _, name, _ in self.metrics)

    def joint(self, *values: float | None) -> float | None:
        parts = []
        for (_, _, higher), ref, v in zip(self.metrics, self.references, values):
            if v is None or (not higher and v <= 0):
                return None
            parts.append(v / ref if higher else ref / v)
        return sum(parts) / len(parts) if parts else None

    def reached(self, *values: float | None) -> bool:
        joint = self.joint(*values)
        return joint is not None and joint >= self.score - _EPSILON

    def needs(self, tasks: Sequence[str]) -> bool:
        """Whether a run training ``tasks`` can reach it: it trains every task of the primary metrics."""
        return all(task in tasks for task, _, _ in self.metrics)

    def describe(self) -> str:
        refs = [f"{name}/{ref:.3g}" if higher else f"{ref:.3g}/{name}"
                for (_, name, higher), ref in zip(self.metrics, self.references)]
        return (f"relative: relative joint score >= {self.score:.3f} = {self.fraction:g} x the best final "
                f"relative joint score, relative joint = mean of {' and '.join(refs)} (each primary metric "
                f"relative to the best final mean in this comparison, on the split the times are read on)")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "fraction": self.fraction, "joint_score": self.score,
                "references": {name: ref for (_, name, _), ref in zip(self.metrics, self.references)}}


def own_target(metrics: Sequence[tuple[str, str, bool]], finals: Sequence[Sequence[float | None]],
               fraction: float = TARGET_FRACTION) -> OwnTarget | None:
    """The relative target of another workload from each row's final mean of each primary metric (in the
    order of ``metrics``); None when a metric has no usable final value in any row."""
    references = []
    for i, (_, _, higher) in enumerate(metrics):
        values = [f[i] for f in finals if f[i] is not None and f[i] > 0]
        if not values:
            return None
        references.append(max(values) if higher else min(values))
    probe = OwnTarget(fraction, tuple(metrics), tuple(references), 0.0)
    best = max((j for j in (probe.joint(*f) for f in finals) if j is not None), default=None)
    return None if best is None else OwnTarget(fraction, tuple(metrics), tuple(references), fraction * best)


def parse_target(text: str) -> float | AbsoluteTarget | None:
    """``--target``: ``auto`` (None: chosen from the runs, see ``default_target``), ``relative`` (the
    default fraction), a fraction in (0, 1) of the best final relative joint score, or absolute
    per-task targets ``top1=0.5,miou=0.3`` (values in (0, 1])."""
    text = text.strip()
    if text == AUTO:
        return None
    if text == RELATIVE:
        return TARGET_FRACTION
    expected = (f"expected {AUTO}, {RELATIVE}, a fraction such as 0.8 of the best final joint score, or "
                f"per-task targets such as top1=0.5,miou=0.3")
    if "=" not in text:
        try:
            fraction = float(text)
        except ValueError:
            raise ConfigError(f"--target {text!r} does not parse: {expected}") from None
        if not 0 < fraction < 1:
            raise ConfigError(f"--target {text}: a relative target must be a fraction in (0, 1)")
        return fraction
    goals: dict[str, float] = {}
    for item in text.split(","):
        key, _, value = (part.strip() for part in item.partition("="))
        if key not in TASK_METRICS.values():
            raise ConfigError(f"--target {text!r}: {key!r} is not a target metric "
                              f"(expected {' or '.join(TASK_METRICS.values())}, e.g. top1=0.5,miou=0.3)")
        if key in goals:
            raise ConfigError(f"--target {text!r} names {key} twice")
        try:
            goal = float(value)
        except ValueError:
            raise ConfigError(f"--target {text!r}: {key}={value!r} is not a number: {expected}") from None
        if not (math.isfinite(goal) and 0 < goal <= 1):
            raise ConfigError(f"--target {text!r}: {key}={value} is out of range (expected a value in (0, 1])")
        goals[key] = goal
    return AbsoluteTarget(**goals)


# NOTE [embedded target]: measured once, on the default `mtbench compare --seeds 3` (8 presets x
# seeds 0-2, embedded data, 5 epochs, batch 8, --holdout 0.1): the highest pair, in steps of 0.05,
# that the best row (mtadamv2, by mean joint score) met at the end of one same epoch in every seed,
# on the held-out split (its per-seed bests: top-1 0.55 / 0.50 / 0.45 with mIoU 0.455 / 0.393 /
# 0.405). The presets are the optimizer guide's, not tuned here; `mtbench tune` checks them.
EMBEDDED_TARGET = AbsoluteTarget(top1=0.45, miou=0.35)
# The settings that make a run's workload the embedded one as shipped (their defaults).
_EMBEDDED_WORKLOAD = {"imagenet": None, "coco": None, "image_size": None, "limit_train": None,
                      "limit_val": None, "backbone": "resnet18", "weights": None}


def default_target(configs: Sequence[dict]) -> float | AbsoluteTarget:
    """EMBEDDED_TARGET when every config is of the embedded workload as shipped, else the relative target."""
    embedded = bool(configs) and all(all(c.get(k, v) == v for k, v in _EMBEDDED_WORKLOAD.items())
                                     and c.get("workload", DEFAULT_WORKLOAD) == DEFAULT_WORKLOAD for c in configs)
    return EMBEDDED_TARGET if embedded else TARGET_FRACTION


def convergence_target(finals: Sequence[tuple[float | None, float | None]],
                       fraction: float = TARGET_FRACTION) -> Target | None:
    """The relative target from each row's final (mean top-1, mean mIoU); None when nothing was learned."""
    top1_ref = max((t for t, _ in finals if t is not None and t > 0), default=None)
    miou_ref = max((m for _, m in finals if m is not None and m > 0), default=None)
    if top1_ref is None and miou_ref is None:
        return None
    probe = Target(fraction, top1_ref, miou_ref, 0.0)
    best = max((j for j in (probe.joint(t, m) for t, m in finals) if j is not None), default=None)
    if best is None:
        return None
    return Target(fraction, top1_ref, miou_ref, fraction * best)


def resolve_target(target: float | AbsoluteTarget, groups: Sequence["RowRuns"],
                    own: WorkloadMetrics | None = None) -> Target | AbsoluteTarget | OwnTarget | None:
    """Fixed targets as given; the relative one from each row's final figures on its runs' split (of another
    workload: over its tasks' primary metrics)."""
    if isinstance(target, AbsoluteTarget):
        if own is not None:
            raise ConfigError(f"--target {target.describe().removeprefix('absolute: ')}: fixed targets name "
                              f"ImageNet + COCO's top-1 and mIoU; workload {own.workload} takes --target relative "
                              "or a fraction")
        return target
    if own is not None:
        primaries = [(m.task, m.name, m.higher_is_better) for m in own.primaries(own.tasks)]
        finals = []
        for g in groups:
            values = [_own_final_on_split(r, [name for _, name, _ in primaries]) for r in g.done]
            finals.append(tuple(summarize(v[i] for v in values)["mean"] for i in range(len(primaries))))
        return own_target(primaries, finals, target)
    finals = []
    for g in groups:
        values = [_final_on_split(r) for r in g.done]
        finals.append(tuple(summarize(v[i] for v in values)["mean"] for i in (0, 1)))
    return convergence_target(finals, target)


def _final_on_split(run: "Run") -> tuple[float | None, float | None]:
    if run.split == "val":
        return run.told.figures("final")
    last = next((e for e in reversed(run.epochs) if e.holdout_top1 is not None or e.holdout_miou is not None), None)
    return epoch_metrics(last, "holdout")


def _own_final_on_split(run: "Run", names: Sequence[str]) -> tuple[float | None, ...]:
    """Another workload's run: its final figure of each metric in ``names`` on the split targets are read on."""
    if run.split == "val":
        recorded = run.told.final_metrics or {}
        return tuple(number(recorded.get(name)) for name in names)
    last = next((e for e in reversed(run.epochs) if any(e.figure("holdout", n) is not None for n in names)), None)
    return tuple(last.figure("holdout", name) if last else None for name in names)


def epoch_metrics(row: EpochRow, split: str) -> tuple[float | None, float | None]:
    """(top-1, mIoU) of one epoch on ``split``: "val" (the test split) or "holdout"."""
    return getattr(row, f"{split}_top1"), getattr(row, f"{split}_miou")


def first_reach(epochs: Sequence[EpochRow], target: Target | AbsoluteTarget | OwnTarget,
                split: str = "val") -> tuple[float, float] | None:
    """(steps, seconds) at the end of the first epoch whose ``split`` figures reach the target.

    (inf, inf) when the epochs have figures on ``split`` and none reaches it (not reached); None when
    no epoch has a figure there to read (unknown: an empty epochs.csv is not a miss). Per-epoch
    granularity, no interpolation between epochs.
    """
    measured = False
    for row in epochs:
        figures = target.figures(row, split)
        if target.reached(*figures):
            return row.step, row.seconds
        measured = measured or any(v is not None for v in figures)
    return (math.inf, math.inf) if measured else None


def convergence_label(ratio: float | None) -> str:
    """fast / medium / slow / very slow from steps-to-target relative to the fastest row (None, inf: not reached)."""
    if ratio is None or not math.isfinite(ratio):
        return NOT_REACHED
    for label, limit in THRESHOLDS:
        if ratio <= limit + 1e-9:
            return label
    return SLOWEST_LABEL


def thresholds_text() -> str:
    parts = [f"<= {limit:g}x {label}" for label, limit in THRESHOLDS]
    return ", ".join(parts) + f", > {THRESHOLDS[-1][1]:g}x {SLOWEST_LABEL}"
