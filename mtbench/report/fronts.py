"""Dominance among rows: the Pareto front of the scalarization sweep (Xin et al. 2022) and, across workloads,
AlgoPerf's performance profiles. Pure functions of numbers, with the conventions of mtbench.report.stats
(None or NaN: a failed run; inf: a target never reached)."""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from .stats import as_number

__all__ = ["PROFILE_TAU_MAX", "dominated_by_front", "pareto_front", "performance_profile", "score_profile"]

# AlgoPerf integrates the performance profile from tau = 1 to tau = 4.
PROFILE_TAU_MAX = 4.0


def _points(points: Iterable[Sequence[float]], where: str) -> np.ndarray:
    rows = []
    for i, point in enumerate(points):
        if len(point) != 2:
            raise DataError(f"{where}[{i}]: {point!r} is not a pair (expected (task 1 value, task 2 value))")
        xs = [as_number(v, f"{where}[{i}]") for v in point]
        rows.append([math.nan if x is None else x for x in xs])
    return np.asarray(rows, dtype=float).reshape(-1, 2)


def _dominates(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """p[i] dominates q[j] (at least as good on both, better on one), maximising, as a [len(p), len(q)] mask."""
    ge = (p[:, None, :] >= q[None, :, :]).all(axis=2)
    gt = (p[:, None, :] > q[None, :, :]).any(axis=2)
    return ge & gt


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices (ascending) of the points no other point dominates, both coordinates maximised.

    Equal points do not dominate each other, so duplicates on the front all stay. A point with a
    failed coordinate (None or NaN) is on no front and dominates nothing.
    """
    p = _points(points, "pareto_front: points")
    ok = ~np.isnan(p).any(axis=1)
    dominated = _dominates(p[ok], p[ok]).any(axis=0)
    return [int(i) for i in np.flatnonzero(ok)[~dominated]]


def dominated_by_front(point: Sequence[float], front_points: Sequence[Sequence[float]]) -> bool:
    """Whether some front point is at least as good on both coordinates and better on one (maximised).

    Dominance by the points themselves: a point below the segment joining two front points but
    above each of them on one coordinate is not dominated.
    """
    p = _points([point], "dominated_by_front: point")
    if np.isnan(p).any():
        raise DataError(f"dominated_by_front: point {tuple(point)!r} has a missing value (expected two numbers)")
    front = _points(front_points, "dominated_by_front: front_points")
    front = front[~np.isnan(front).any(axis=1)]
    return bool(_dominates(front, p).any())


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
