"""The statistics behind a comparison's verdict: intervals over seeds, paired tests against the best,
seeds a difference would need, Δm. Pareto fronts and performance profiles: mtbench.report.fronts.

Pure functions of numbers (no run directories, no torch), so the report can call them and tests can
check them against scipy on known samples. Conventions shared by every function here:

- a run that failed is ``None`` or NaN: it is dropped and counted, never read as a value;
- a run that never reached a target is ``inf``: it is a value (the worst one), kept and handled
  explicitly where a mean would be meaningless;
- seeds pair runs: the same seed means the same initial weights and data order for every row, so
  rows are compared through their per-seed differences.

Protocol after Kurin et al. 2022 and Xin et al. 2022 (paired tests over seeds, "tied" where the
difference is not significant, corrected for the number of rows), LibMTL (Δm) and MLCommons AlgoPerf
(performance profiles).
"""

from __future__ import annotations

import math
import numbers
from typing import Collection, Hashable, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from ..errors import ConfigError, DataError

__all__ = [
    "ALPHA", "CONSTANT_RTOL", "POWER", "SEEDS_NEEDED_MAX", "WILCOXON_MIN_PAIRS", "as_number", "compare_to_best",
    "delta_m", "holm", "seeds_needed", "summarize", "summarize_time_to_target",
]

ALPHA = 0.05
POWER = 0.8
# Below 6 pairs the exact Wilcoxon signed-rank test cannot reach two-sided p < 0.05 even when every
# difference has the same sign (smallest p = 2 / 2**n: 0.0625 for n = 5, 0.03125 for n = 6), so it
# could only ever say "tied" and is not run.
WILCOXON_MIN_PAIRS = 6
# Paired differences whose spread is within this fraction of the values' magnitude are float rounding
# (0.7 - 0.6 is not exactly 0.1), not seed-to-seed variation: the difference is treated as constant.
CONSTANT_RTOL = 1e-12
SEEDS_NEEDED_MAX = 1000


# ---------------------------------------------------------------------------------------------
# Values


def as_number(value, where: str) -> float | None:
    """``value`` as a float; None for a failed run (None or NaN)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DataError(f"{where}: {value!r} is not a number (expected a float, None for a failed run, "
                        f"inf for a target never reached)")
    x = float(value)
    return None if math.isnan(x) else x


def _check_probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ConfigError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def _clean(values: Iterable, where: str) -> tuple[np.ndarray, int]:
    """The kept values (finite and infinite) and the number of failed runs dropped."""
    kept, dropped = [], 0
    for i, value in enumerate(values):
        x = as_number(value, f"{where}[{i}]")
        if x is None:
            dropped += 1
        else:
            kept.append(x)
    return np.asarray(kept, dtype=float), dropped


def _sorted_seeds(seeds: Iterable[Hashable]) -> list:
    """Seeds in their natural order when they compare (ints), else by their text."""
    seeds = list(seeds)
    try:
        return sorted(seeds)
    except TypeError:
        return sorted(seeds, key=repr)


def _t_half_width(std: float, n: int, confidence: float) -> float:
    return float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)


# ---------------------------------------------------------------------------------------------
# One row over seeds


def summarize(values: Iterable[float | None], confidence: float = 1 - ALPHA) -> dict:
    """Mean, sample std (ddof=1) and Student-t interval of one metric over seeds.

    Returns {mean, std, n, ci_low, ci_high, dropped}: ``n`` counts the values kept, ``dropped`` the
    failed runs (None or NaN) left out. With n < 2 there is no spread: std and the interval are None.
    An infinite value (a run that never reached a target) makes the mean that infinity and leaves
    std and the interval None, since no finite spread describes it; times to target are summarised
    with ``summarize_time_to_target`` instead. Infinities of both signs give a mean of None.
    """
    confidence = _check_probability("confidence", confidence)
    xs, dropped = _clean(values, "summarize: values")
    n = len(xs)
    out = {"mean": None, "std": None, "n": n, "ci_low": None, "ci_high": None, "dropped": dropped}
    if n == 0:
        return out
    if not np.isfinite(xs).all():
        signs = set(np.sign(xs[np.isinf(xs)]))
        out["mean"] = math.inf * signs.pop() if len(signs) == 1 else None
        return out
    out["mean"] = float(xs.mean())
    if n >= 2:
        std = float(xs.std(ddof=1))
        half = _t_half_width(std, n, confidence)
        out.update(std=std, ci_low=out["mean"] - half, ci_high=out["mean"] + half)
    return out


def summarize_time_to_target(values: Iterable[float | None]) -> dict:
    """Median and "reached k/n" of a time (steps or seconds) to target over seeds; inf = never reached.

    A mean would be inf as soon as one seed misses, so the median is used: it is finite while more
    than half of the seeds reach the target, inf when half or more miss. Returns {median, reached, n,
    dropped}; the median is None when no run completed.
    """
    xs, dropped = _clean(values, "summarize_time_to_target: values")
    if (xs < 0).any():
        raise DataError(f"summarize_time_to_target: time {float(xs[xs < 0][0])!r} is negative "
                        f"(expected a time >= 0, or inf for a target never reached)")
    # np.median of [.., x, inf] averages x and inf to inf, which is the wanted "half missed" answer.
    median = float(np.median(xs)) if len(xs) else None
    return {"median": median, "reached": int(np.isfinite(xs).sum()), "n": len(xs), "dropped": dropped}


# ---------------------------------------------------------------------------------------------
# Rows against the best


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given.

    The i-th smallest p (i from 0) is multiplied by m - i, then the adjusted values are made
    non-decreasing in that order and capped at 1. Controls the family-wise error rate without
    assuming the tests are independent (the rows share the best row, so they are not).
    """
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _paired_test(row: np.ndarray, best: np.ndarray, confidence: float) -> dict:
    """Paired comparison of row - best over at least 2 seeds.

    Zero variance of the differences is decided here, not by scipy (whose t statistic is then 0/0 or
    x/0): differences that are all 0 are a tie (p = 1); a constant non-zero difference is the same
    on every seed, the strongest evidence a paired design can give (p = 0). Otherwise the p-value is
    the paired t-test's, and with enough pairs the larger of it and the Wilcoxon signed-rank p: the
    difference then has to hold both under normality and without it.
    """
    d = row - best
    mean = float(d.mean())
    scale = float(max(np.abs(row).max(), np.abs(best).max()))
    if float(np.ptp(d)) <= CONSTANT_RTOL * scale:
        p = 1.0 if abs(mean) <= CONSTANT_RTOL * scale else 0.0
        return {"diff_mean": mean, "diff_std": 0.0, "diff_ci_low": mean, "diff_ci_high": mean,
                "p_t": p, "p_wilcoxon": None, "p_value": p, "test": "paired t"}
    result = sps.ttest_rel(row, best)
    ci = result.confidence_interval(confidence_level=confidence)
    out = {"diff_mean": mean, "diff_std": float(d.std(ddof=1)), "diff_ci_low": float(ci.low),
           "diff_ci_high": float(ci.high), "p_t": float(result.pvalue), "p_wilcoxon": None,
           "p_value": float(result.pvalue), "test": "paired t"}
    # scipy drops zero differences (they carry no sign), so the rule counts the non-zero ones.
    if np.count_nonzero(d) >= WILCOXON_MIN_PAIRS:
        p_w = float(sps.wilcoxon(d).pvalue)
        out.update(p_wilcoxon=p_w, p_value=max(out["p_t"], p_w), test="paired t + wilcoxon")
    return out


def _empty_row(metric: float | None) -> dict:
    return {"metric": metric, "diff_mean": None, "diff_std": None, "diff_ci_low": None, "diff_ci_high": None,
            "p_t": None, "p_wilcoxon": None, "p_value": None, "p_holm": None, "test": None,
            "n_pairs": 0, "tied_with_best": None, "rank": None, "is_best": False}


def compare_to_best(rows: Mapping[str, Mapping[Hashable, float | None]], higher_is_better: bool = True,
                    alpha: float = ALPHA) -> dict[str, dict]:
    """Every row against the best row on one metric, paired by seed.

    ``rows`` maps a row name to {seed: value}; a failed run is None or NaN and its seed is left out of
    that row's pairs. Values must be finite (times to target, which may be inf, are summarised with
    ``summarize_time_to_target``).

    The best row has the best mean over the seeds common to every row that has values (over its own
    seeds when no seed is common to all); ties go to the first row given. Every other row gets the
    difference row - best over the seeds it shares with the best: its mean and (1 - alpha) t interval,
    the paired test's p-value (see ``_paired_test``), and Holm's correction of those p-values over
    the rows. ``tied_with_best`` is p_holm >= alpha (True for the best row, None under 2 pairs).
    Rank 1 is shared by the best and every row tied with it; the other rows follow in order of their
    mean, equal means sharing a rank (competition ranking: 1, 1, 3, 4, 4, 6).

    Returns {row: {metric, diff_mean, diff_std, diff_ci_low, diff_ci_high, p_t, p_wilcoxon, p_value,
    p_holm, test, n_pairs, tied_with_best, rank, is_best}}, in the order of ``rows``; ``metric`` is the
    mean the best was chosen by. A row without any value has metric and rank None.
    """
    alpha = _check_probability("alpha", alpha)
    values: dict[str, dict] = {}
    for name, by_seed in rows.items():
        kept = {}
        for seed, value in by_seed.items():
            x = as_number(value, f"compare_to_best: row {name!r} seed {seed!r}")
            if x is not None and not math.isfinite(x):
                raise DataError(f"compare_to_best: row {name!r} seed {seed!r} is {x} (expected a finite "
                                f"value; times to target that may be inf go to summarize_time_to_target)")
            if x is not None:
                kept[seed] = x
        values[name] = kept

    present = [name for name, kept in values.items() if kept]
    common = set.intersection(*(set(values[name]) for name in present)) if present else set()
    means = {name: float(np.mean([values[name][s] for s in (common or values[name])])) for name in present}
    sign = 1.0 if higher_is_better else -1.0
    best = max(present, key=lambda name: sign * means[name]) if present else None

    out = {name: _empty_row(means.get(name)) for name in values}
    tested = []
    for name in present:
        seeds = _sorted_seeds(set(values[name]) & set(values[best]))
        row = out[name]
        row["n_pairs"] = len(seeds)
        if name == best:
            row.update(diff_mean=0.0, diff_std=0.0, diff_ci_low=0.0, diff_ci_high=0.0, tied_with_best=True,
                       is_best=True)
            continue
        a = np.array([values[name][s] for s in seeds])
        b = np.array([values[best][s] for s in seeds])
        if len(seeds) >= 2:
            row.update(_paired_test(a, b, 1 - alpha))
            tested.append(name)
        elif seeds:
            row["diff_mean"] = float(a[0] - b[0])
    for name, p in zip(tested, holm([out[name]["p_value"] for name in tested])):
        out[name].update(p_holm=p, tied_with_best=p >= alpha)

    tied = [name for name in present if out[name]["tied_with_best"]]
    others = [name for name in present if not out[name]["tied_with_best"]]
    for name in tied:
        out[name]["rank"] = 1
    for name in others:
        better = sum(sign * means[o] > sign * means[name] for o in others)
        out[name]["rank"] = 1 + len(tied) + better
    return out


def seeds_needed(diffs: Sequence[float] | None = None, *, diff_mean: float | None = None,
                 diff_std: float | None = None, alpha: float = ALPHA, power: float = POWER,
                 max_seeds: int = SEEDS_NEEDED_MAX) -> int | None:
    """Seeds a two-sided paired t-test would need to find the observed difference significant.

    Give the paired differences, or their mean and sample std (for instance a std estimated from
    the rows' own spreads when fewer than 2 seeds are paired). The answer is the smallest n >= 2
    whose power (from the noncentral t distribution, effect |mean| / std) reaches ``power`` at level
    ``alpha``; pass alpha / (number of rows compared) to allow for Holm's correction. None when the
    spread is unknown (fewer than 2 differences), when the mean difference is 0 (no number of seeds
    tells the rows apart) or when more than ``max_seeds`` would be needed.
    """
    alpha = _check_probability("alpha", alpha)
    power = _check_probability("power", power)
    if isinstance(max_seeds, bool) or not isinstance(max_seeds, numbers.Integral) or max_seeds < 2:
        raise ConfigError(f"max_seeds must be an integer >= 2, got {max_seeds!r}")
    if (diffs is None) == (diff_mean is None and diff_std is None):
        raise ConfigError("seeds_needed takes either the paired differences or diff_mean and diff_std")
    if diffs is not None:
        d, _ = _clean(diffs, "seeds_needed: diffs")
        if len(d) < 2:
            return None
        if not np.isfinite(d).all():
            raise DataError("seeds_needed: the differences must be finite, got an infinite one")
        mean, std = float(d.mean()), float(d.std(ddof=1))
    else:
        mean = as_number(diff_mean, "seeds_needed: diff_mean")
        std = as_number(diff_std, "seeds_needed: diff_std")
        if mean is None or std is None or not math.isfinite(mean) or not math.isfinite(std) or std < 0:
            raise DataError(f"seeds_needed: expected a finite diff_mean and a finite diff_std >= 0, "
                            f"got {diff_mean!r} and {diff_std!r}")
    if mean == 0:
        return None
    if std == 0:
        return 2

    effect = abs(mean) / std

    def reaches(n: int) -> bool:
        df = n - 1
        crit = sps.t.ppf(1 - alpha / 2, df)
        nc = effect * math.sqrt(n)
        return float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc)) >= power

    # Power grows with n: double until it is reached, then bisect.
    low, high = 1, 2
    while not reaches(high):
        if high >= max_seeds:
            return None
        low, high = high, min(2 * high, max_seeds)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high


# ---------------------------------------------------------------------------------------------
# Multi-task and across workloads


def delta_m(task_metrics: Mapping[str, Mapping[Hashable, float | None]],
            baseline_metrics: Mapping[str, float | Mapping[Hashable, float | None]],
            lower_is_better: Collection[str] = ()) -> dict[Hashable, float]:
    """LibMTL's Δm in %, per seed: the mean over metrics of 100 * (-1)^l (M - B) / B.

    ``task_metrics`` maps a task (or a metric) to {seed: value} for the multi-task run;
    ``baseline_metrics`` maps the same keys to the single-task baseline, one number or {seed: value}
    (then paired by seed). ``lower_is_better`` names the keys whose change counts with its sign
    flipped (l = 1: an error that drops is a gain); top-1 and mIoU are higher-is-better. A seed is
    left out when a metric failed on it (None or NaN). Returns {seed: Δm}, ready for ``summarize``.
    """
    if set(task_metrics) != set(baseline_metrics):
        raise DataError(f"delta_m: the baseline has tasks {sorted(baseline_metrics)} but the metrics have "
                        f"{sorted(task_metrics)} (expected the same tasks)")
    if not task_metrics:
        raise DataError("delta_m: no tasks (expected at least one task's metrics)")

    def baseline(task: str, seed) -> float | None:
        base = baseline_metrics[task]
        if isinstance(base, Mapping):
            base = base.get(seed)
            where = f"delta_m: baseline of task {task!r} seed {seed!r}"
        else:
            where = f"delta_m: baseline of task {task!r}"
        x = as_number(base, where)
        if x is not None and not (math.isfinite(x) and x > 0):
            raise DataError(f"{where} is {x!r} (expected a finite value > 0 to measure a relative change)")
        return x

    seeds = set.intersection(*(set(by_seed) for by_seed in task_metrics.values()))
    out = {}
    for seed in _sorted_seeds(seeds):
        changes = []
        for task, by_seed in task_metrics.items():
            m = as_number(by_seed[seed], f"delta_m: task {task!r} seed {seed!r}")
            b = baseline(task, seed)
            if m is None or b is None:
                break
            changes.append((b - m) / b if task in lower_is_better else (m - b) / b)
        else:
            out[seed] = 100.0 * sum(changes) / len(changes)
    return out
