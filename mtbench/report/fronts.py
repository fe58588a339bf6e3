"""Dominance among rows: the Pareto front of the scalarization sweep (Xin et al. 2022) over the tasks'
primary metrics, each in its own direction, for any number of tasks, and, across workloads, AlgoPerf's
performance profiles. Pure functions of numbers, with the conventions of mtbench.report.stats
(None or NaN: a failed run; inf: a target never reached)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from .stats import as_number
from .taskmetrics import workload_metrics

__all__ = [
    "DEFAULT_FRONT_AXES", "PROFILE_TAU_MAX", "FrontAxis", "dominated_by_front", "front_axes", "front_means",
    "front_point", "pareto_front", "performance_profile", "score_profile",
]

# AlgoPerf integrates the performance profile from tau = 1 to tau = 4.
PROFILE_TAU_MAX = 4.0


@dataclass(frozen=True)
class FrontAxis:
    """One coordinate of the scalarization front: a task's primary metric, its direction, and where a
    report row's summary of it is (``own``: among the workload's own metrics, ``task_metrics``)."""

    metric: str
    title: str
    higher_is_better: bool = True
    unit: str = ""  # "%": a fraction shown as a percentage
    own: bool = False


# ImageNet + COCO: test top-1 against test mIoU, as report.build has always summarised them.
DEFAULT_FRONT_AXES = (FrontAxis("top1", "top-1", True, "%"), FrontAxis("miou", "mIoU", True, ""))


def front_axes(own: Any = None) -> tuple[FrontAxis, ...]:
    """The front's coordinates: one per task of the workload, its primary metric in its own direction
    (``own``: report.taskmetrics.WorkloadMetrics, None for the default workload's top-1 and mIoU)."""
    if own is None:
        return DEFAULT_FRONT_AXES
    return tuple(FrontAxis(m.name, m.title, m.higher_is_better, m.unit, own=True) for m in own.primaries(own.tasks))


def front_point(metrics: Mapping[str, Any], axes: Sequence[FrontAxis]) -> tuple[float | None, ...]:
    """A report row's mean of each axis (its ``metrics`` as report.build summarises them), None where missing."""
    def mean(axis: FrontAxis) -> float | None:
        table = (metrics.get("task_metrics") or {}) if axis.own else metrics
        return (table.get(axis.metric) or {}).get("mean")
    return tuple(mean(axis) for axis in axes)


def front_means(rows: Sequence[Any]) -> tuple[dict[str, tuple[float | None, ...]], tuple[bool, ...]]:
    """Every report row's point on the front (report.build's RowResults: label -> mean of each axis) and the
    axes' directions, the workload's metrics as the rows' runs' summary.json name them (rows without runs:
    the default workload's)."""
    axes = front_axes(workload_metrics([run for r in rows for run in getattr(r.group, "runs", ())]))
    return {r.label: front_point(r.metrics, axes) for r in rows}, tuple(a.higher_is_better for a in axes)


def _points(points: Iterable[Sequence[float]], where: str, size: int | None = None) -> np.ndarray:
    """The points as a [n, T] array of floats (NaN where a value is missing), every point of ``size`` values
    (None: as many as the first one, at least 2)."""
    rows = []
    for i, point in enumerate(points):
        size = len(point) if size is None else size
        if len(point) != size or size < 2:
            raise DataError(f"{where}[{i}]: {point!r} has {len(point)} values (expected one per task, "
                            f"{max(size, 2)} or more alike)")
        xs = [as_number(v, f"{where}[{i}]") for v in point]
        rows.append([math.nan if x is None else x for x in xs])
    return np.asarray(rows, dtype=float).reshape(-1, size or 2)


def _oriented(p: np.ndarray, higher_is_better: Sequence[bool] | None, where: str) -> np.ndarray:
    """``p`` with every lower-is-better coordinate negated, so that each is maximised."""
    if higher_is_better is None or not len(p):
        return p
    if len(higher_is_better) != p.shape[1]:
        raise DataError(f"{where}: {len(higher_is_better)} directions for points of {p.shape[1]} values")
    return p * np.where(np.asarray(higher_is_better, dtype=bool), 1.0, -1.0)


def _dominates(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """p[i] dominates q[j] (at least as good on every coordinate, better on one), maximising, as a
    [len(p), len(q)] mask."""
    ge = (p[:, None, :] >= q[None, :, :]).all(axis=2)
    gt = (p[:, None, :] > q[None, :, :]).any(axis=2)
    return ge & gt


def pareto_front(points: Sequence[Sequence[float]], higher_is_better: Sequence[bool] | None = None) -> list[int]:
    """Indices (ascending) of the points no other point dominates, over any number of coordinates (one
    per task), each maximised, or minimised where ``higher_is_better`` says False (None: all maximised).

    Equal points do not dominate each other, so duplicates on the front all stay. A point with a
    failed coordinate (None or NaN) is on no front and dominates nothing.
    """
    p = _oriented(_points(points, "pareto_front: points"), higher_is_better, "pareto_front")
    ok = ~np.isnan(p).any(axis=1)
    dominated = _dominates(p[ok], p[ok]).any(axis=0)
    return [int(i) for i in np.flatnonzero(ok)[~dominated]]


def dominated_by_front(point: Sequence[float], front_points: Sequence[Sequence[float]],
                       higher_is_better: Sequence[bool] | None = None) -> bool:
    """Whether some front point is at least as good on every coordinate and better on one (each in its
    direction, as ``pareto_front``'s).

    Dominance by the points themselves: a point below the segment joining two front points but
    above each of them on one coordinate is not dominated.
    """
    p = _points([point], "dominated_by_front: point")
    if np.isnan(p).any():
        raise DataError(f"dominated_by_front: point {tuple(point)!r} has a missing value (expected "
                        f"{p.shape[1]} numbers)")
    front = _points(front_points, "dominated_by_front: front_points", p.shape[1])
    front = front[~np.isnan(front).any(axis=1)]
    where = "dominated_by_front"
    return bool(_dominates(_oriented(front, higher_is_better, where), _oriented(p, higher_is_better, where)).any())


def performance_profile(times: Mapping[str, Mapping[str, float | None]], taus: Sequence[float],
                        tau_max: float = PROFILE_TAU_MAX) -> dict[str, dict]:
    """AlgoPerf performance profiles: per optimizer, the fraction of workloads within tau x the best time.

    ``times`` maps an optimizer to {workload: time to target}; inf (never reached), None/NaN (failed)
    and a workload the optimizer has no time for all count as never reached. The best time of a
    workload is the smallest over optimizers; a workload nobody reached counts against everyone.
    Returns {optimizer: {"fractions": [rho(tau) for tau in taus], "area": A}}, where A is the exact
    integral of the step function rho over [1, tau_max] divided by tau_max - 1, so 1 means best on
    every workload and 0 means never within tau_max x the best.
    """
    if isinstance(tau_max, bool) or not isinstance(tau_max, numbers.Real) or not 1 < tau_max < math.inf:
        raise ConfigError(f"tau_max must be a finite number > 1, got {tau_max!r}")
    taus = [as_number(t, "performance_profile: taus") for t in taus]
    if not all(t is not None and math.isfinite(t) for t in taus):
        # inf <= inf would count a workload nobody reached as within tau.
        raise ConfigError(f"performance_profile: taus must be finite numbers, got {taus!r}")
    workloads = sorted({w for by_workload in times.values() for w in by_workload})
    table = np.full((len(times), len(workloads)), math.inf)
    for i, (name, by_workload) in enumerate(times.items()):
        for j, workload in enumerate(workloads):
            x = as_number(by_workload.get(workload), f"performance_profile: {name!r} on {workload!r}")
            if x is not None and not x > 0:
                raise DataError(f"performance_profile: {name!r} on {workload!r} took {x!r} (expected a time "
                                f"> 0, inf when the target was not reached)")
            if x is not None:
                table[i, j] = x
    best = table.min(axis=0) if len(times) else np.empty(0)
    with np.errstate(invalid="ignore"):
        ratios = np.where(np.isfinite(table), table / best, math.inf)
    n_workloads = max(len(workloads), 1)
    out = {}
    for i, name in enumerate(times):
        r = ratios[i]
        fractions = [float((r <= tau).sum()) / n_workloads for tau in taus]
        # rho steps up by 1/W at each ratio; a workload with ratio r <= tau_max adds (tau_max - r) / W.
        area = float(np.clip(tau_max - r, 0.0, None).sum()) / n_workloads / (tau_max - 1.0)
        out[name] = {"fractions": fractions, "area": area}
    return out


def score_profile(scores: dict[str, dict[str, float | None]], taus) -> dict[str, dict]:
    """The performance profile of the scores: {row: {"fractions", "area"}}, each workload's ratio the best
    row's score over the row's (NOTE [score profile] in report.workloads)."""
    costs = {row: {w: (1.0 / s if s is not None and math.isfinite(s) and s > 0 else math.inf)
                   for w, s in by_workload.items()} for row, by_workload in scores.items()}
    return performance_profile(costs, taus)
