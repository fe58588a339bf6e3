"""The verdict of a comparison: rows against the best, the scalarization front, and the words for both.

Works on numbers keyed by row label and seed, as mtbench.report.build hands them over; the statistics
themselves live in mtbench.report.stats. Every metric a row can be ranked by is higher-is-better.
"""

from __future__ import annotations

import math
from typing import Hashable, Mapping, Sequence

from .fronts import dominated_by_front, pareto_front
from .stats import ALPHA, POWER, compare_to_best, seeds_needed

__all__ = [
    "DEFAULT_PRIMARY", "DELTA_M", "METRIC_NAMES", "PRIMARY_METRICS", "difference_unit", "paired_verdict",
    "scalarization_front", "show", "show_interval", "verdict_sentences",
]

DELTA_M = "delta_m"  # Δm, against single-task baselines or a reference row (taskmetrics' NOTE [reference row])
PRIMARY_METRICS = ("joint", "top1", "miou", DELTA_M)
DEFAULT_PRIMARY = "joint"
# How each metric is shown: (scale, format, unit). Differences of percentages are percentage points.
_SHOWN = {"top1": (100.0, ".1f", "%"), "miou": (1.0, ".3f", ""), "joint": (1.0, ".3f", ""), "delta_m": (1.0, ".1f", "%")}
METRIC_NAMES = {"top1": "top-1", "miou": "mIoU", "joint": "joint score", "delta_m": "Δm"}


def show(metric: str, value: float | None, difference: bool = False) -> str:
    """A metric's value, or (signed, without unit) a difference of two values, as the report prints it."""
    if value is None:
        return "-"
    scale, fmt, unit = _SHOWN[metric]
    if difference:
        return format(value * scale, "+" + fmt)
    return format(value * scale, fmt) + unit


def show_interval(metric: str, low: float | None, high: float | None) -> str:
    """The interval of a difference of two values of ``metric``."""
    if low is None or high is None:
        return "-"
    return f"[{show(metric, low, difference=True)}, {show(metric, high, difference=True)}]"


def difference_unit(metric: str) -> str:
    return " points" if _SHOWN[metric][2] == "%" else ""


# ---------------------------------------------------------------------------------------------
# Rows against the best


def paired_verdict(values: Mapping[str, Mapping[Hashable, float | None]], metric: str,
                   spreads: Mapping[str, float | None] | None = None, alpha: float = ALPHA) -> dict[str, dict]:
    """Every row against the best on ``metric``, paired by seed (see stats.compare_to_best), plus the
    seeds a difference not (yet) significant would need.

    ``spreads`` (row -> std over its seeds) estimates the spread of a difference that has fewer than
    2 pairs, as sqrt(std_row^2 + std_best^2): the unpaired spread, an upper bound of the paired one
    when seeds correlate positively. When the best row has fewer than 2 seeds no row can be called
    tied or not: ``tied_with_best`` is None throughout.

    Returns {row: {vs_best: {metric, diff_mean, diff_ci_low, diff_ci_high, p_value, p_holm, test, n_pairs,
    seeds_needed}, tied_with_best, rank, is_best}}.
    """
    result = compare_to_best(values, alpha=alpha)
    best = next((name for name, r in result.items() if r["is_best"]), None)
    tested = sum(r["p_value"] is not None for r in result.values())
    out = {}
    for name, r in result.items():
        needed = None
        # A row already found worse needs no more seeds; a tied or untested one may.
        if best is not None and not r["is_best"] and r["diff_mean"] is not None and r["tied_with_best"] is not False:
            # Holm's first step divides alpha by the number of rows tested: the strictest level a
            # difference may face, so the count is enough whatever the other rows' p-values.
            level = alpha / max(tested, 1)
            if r["n_pairs"] >= 2:
                diffs = [a - b for a, b in _pairs(values[name], values[best])]
                needed = seeds_needed(diffs, alpha=level)
            else:
                std_row, std_best = (spreads or {}).get(name), (spreads or {}).get(best)
                if std_row is not None and std_best is not None:
                    needed = seeds_needed(diff_mean=r["diff_mean"], diff_std=math.hypot(std_row, std_best),
                                          alpha=level)
        out[name] = {
            "vs_best": None if r["metric"] is None else {
                "metric": metric, "diff_mean": r["diff_mean"], "diff_ci_low": r["diff_ci_low"],
                "diff_ci_high": r["diff_ci_high"], "p_value": r["p_value"], "p_holm": r["p_holm"],
                "test": r["test"], "n_pairs": r["n_pairs"], "seeds_needed": needed},
            "tied_with_best": r["tied_with_best"], "rank": r["rank"], "is_best": r["is_best"],
        }
    if best is not None and result[best]["n_pairs"] < 2:
        for r in out.values():
            r["tied_with_best"] = None
    return out


def _pairs(row: Mapping[Hashable, float | None], best: Mapping[Hashable, float | None]) -> list[tuple[float, float]]:
    def ok(x):
        return x is not None and not math.isnan(x)

    return [(row[s], best[s]) for s in row if s in best and ok(row[s]) and ok(best[s])]


def verdict_sentences(verdict: Mapping[str, dict], means: Mapping[str, float | None], metric: str,
                      seeds: Mapping[str, int], alpha: float = ALPHA, unranked: str | None = None,
                      name: str | None = None) -> list[str]:
    """The verdict in a few plain sentences: the best, the rows tied with it, the rows worse and by
    how much, and what the number of seeds allows one to say.

    ``verdict`` is paired_verdict's result, ``means`` each row's mean on ``metric`` and ``seeds`` the
    number of seeds each row has a value for; ``unranked`` says why no row has a value, where that is
    not that none of their runs completed; ``name`` how the metric is named (default METRIC_NAMES', e.g.
    "Δm vs adam" where Δm's reference is a compared row).
    """
    name = name or METRIC_NAMES[metric]
    ranked = [n for n in verdict if verdict[n]["vs_best"] is not None]
    if not ranked:
        why = unranked or 'no run of a row of role "row" completed'
        return [f"No compared row has a {name} to rank by ({why})."]
    best = next(n for n in ranked if verdict[n]["is_best"])
    others = [n for n in ranked if n != best]
    seeds = seeds[best]
    lines = []
    if verdict[best]["tied_with_best"] is None:
        lines.append(f"Best observed {name}: {best} ({show(metric, means[best])}).")
        lines.append(f"With {_seeds(seeds)} per row no difference can be called significant: there is no "
                     f"seed-to-seed spread to measure a difference against, so these figures rank the rows "
                     f"but do not tell them apart.")
        needs = [(n, verdict[n]["vs_best"]["seeds_needed"]) for n in others]
        known = [f"{n} {needed}" for n, needed in needs if needed is not None]
        if known:
            lines.append("With the spread observed in rows that have more seeds, a paired test would need "
                         "about this many seeds per row: " + ", ".join(known) + ".")
        elif others:
            lines.append("How many seeds a difference would need cannot be estimated without a spread: run "
                         "at least 2 seeds (5 or more for a verdict that survives the correction for "
                         "several rows).")
        return lines
    tied = [n for n in others if verdict[n]["tied_with_best"]]
    worse = [n for n in others if verdict[n]["tied_with_best"] is False]
    untested = [n for n in others if verdict[n]["tied_with_best"] is None]
    lines.append(f"Best {name}: {best} ({show(metric, means[best])}, mean over {_seeds(seeds)}).")
    if tied:
        lines.append(f"Tied with it (paired difference not significant at {alpha:g} after Holm's correction "
                     f"over {len(ranked) - 1} row{'s' * (len(ranked) != 2)}): {', '.join(tied)}.")
    elif others:
        lines.append("No row is tied with it.")
    for n in worse:
        v = verdict[n]["vs_best"]
        lines.append(f"{n} is worse: {show(metric, v['diff_mean'], difference=True)}{difference_unit(metric)} "
                     f"(95 % CI {show_interval(metric, v['diff_ci_low'], v['diff_ci_high'])}), "
                     f"{_p(v['p_value'])}, {_p(v['p_holm'])} after Holm's correction ({v['test']}).")
    for n in untested:
        lines.append(f"{n} shares fewer than 2 seeds with {best}: not tested.")
    if tied:
        needed = {n: verdict[n]["vs_best"]["seeds_needed"] for n in tied}
        known = [f"{n} about {k}" for n, k in needed.items() if k is not None]
        never = [n for n, k in needed.items() if k is None]
        parts = []
        if known:
            parts.append(f"at the observed spread a paired test would find the observed difference ({POWER:.0%} "
                         f"power) with {', '.join(known)} seeds")
        if never:
            parts.append(f"{', '.join(never)} would not be told apart from {best} with any reasonable number of "
                         f"seeds (no difference, or one far below the spread)")
        lines.append(f"With {_seeds(seeds)}, a tie means that no difference was found, not that there is none: "
                     + "; ".join(parts) + ".")
    return lines


def _seeds(n: int) -> str:
    return f"{n} seed{'s' * (n != 1)}"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


# ---------------------------------------------------------------------------------------------
# The scalarization front (Xin et al. 2022)


def scalarization_front(points: Mapping[str, Sequence[float | None]], others: Mapping[str, Sequence[float | None]],
                        higher_is_better: Sequence[bool] | None = None) -> tuple[list[str], dict[str, bool | None]]:
    """The non-dominated sweep points and, per other row, whether that front dominates it.

    ``points`` are the sweep's rows (label -> the mean of each task's primary metric: (top-1, mIoU) on
    ImageNet + COCO, any number of tasks elsewhere); ``others`` the rows to hold against the front;
    ``higher_is_better`` each coordinate's direction (None: all higher-is-better). Means are compared,
    not intervals: the front is the baseline a multi-task row must beat on every task at once. A row
    without every mean gets None.
    """
    labels = [name for name, point in points.items() if all(v is not None for v in point)]
    front = [labels[i] for i in pareto_front([points[name] for name in labels], higher_is_better)]
    front_points = [points[name] for name in front]
    dominated = {}
    for name, point in others.items():
        dominated[name] = (None if any(v is None for v in point) or not front_points
                           else dominated_by_front(point, front_points, higher_is_better))
    return front, dominated
