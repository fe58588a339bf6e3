"""The tuned weighted sum as the baseline of a comparison: does each method row beat it, and does the
scalarization sweep's front dominate it?

Kurin et al. 2022 and Xin et al. 2022: a weighted sum of the task losses, its weights tuned with the
same budget as everything else, matches the specialised multi-task methods. So every compared row is
held against the tuned weighted sum's row, paired by seed on the primary metric (the joint score by
default), with Holm's correction over the rows held against it; and the untuned sweep's front is
checked against the tuned point (a tuned point that the sweep dominates was not tuned well).

Pure functions of numbers keyed by row label and seed, as mtbench.report.build hands them over; the
statistics are mtbench.report.stats' (compare_to_best, holm), the front mtbench.report.verdict's.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

from ..config import SUM_METHOD

from .fronts import front_means
from .stats import ALPHA, compare_to_best, holm
from .verdict import METRIC_NAMES, scalarization_front, show, show_interval

__all__ = [
    "TUNED_SUFFIX", "against_tuned", "baseline_sentences", "front_against_tuned", "tuned_baseline", "tuned_label",
]

# A comparison's row of the tuned weighted sum is named <optimizer>@tuned.
TUNED_SUFFIX = "@tuned"


def tuned_label(labels) -> str | None:
    """The label of the tuned weighted sum's row among ``labels`` (the first one), or None."""
    return next((label for label in labels if str(label).endswith(TUNED_SUFFIX)), None)


def against_tuned(values: Mapping[str, Mapping[Hashable, float | None]], tuned: str,
                  alpha: float = ALPHA) -> dict[str, dict]:
    """Every row of ``values`` but ``tuned`` against the tuned weighted sum, paired by seed.

    ``values`` maps a row label to {seed: value} on one higher-is-better metric (a failed run None or
    NaN). Each row's test is stats.compare_to_best run on that row and the tuned one alone (the same
    pairing, zero-variance rule and t / Wilcoxon p-value as the verdict against the best); the
    p-values are then Holm-corrected over the rows tested, since the family of questions is "does
    any method beat the tuned weighted sum".

    Returns {row: {diff_mean, diff_ci_low, diff_ci_high (row - tuned), p_value, p_holm, test, n_pairs,
    outcome}}; outcome is "beats" or "worse" (significant after correction), "tied" (not), or None
    (fewer than 2 seeds shared with the tuned row: not tested).
    """
    if tuned not in values:
        raise KeyError(f"the tuned weighted sum's row {tuned!r} is not among the rows ({', '.join(values)})")
    out: dict[str, dict] = {}
    for name, by_seed in values.items():
        if name == tuned:
            continue
        # The tuned row first: on equal means it is "the best", so the row's difference is row - tuned.
        pair = compare_to_best({tuned: values[tuned], name: by_seed}, alpha=alpha)
        if pair[tuned]["is_best"]:
            r, sign = pair[name], 1.0
        else:
            r, sign = pair[tuned], -1.0
        lo, hi = r["diff_ci_low"], r["diff_ci_high"]
        out[name] = {
            "diff_mean": None if r["diff_mean"] is None else sign * r["diff_mean"],
            "diff_ci_low": None if lo is None else (lo if sign > 0 else -hi),
            "diff_ci_high": None if hi is None else (hi if sign > 0 else -lo),
            "p_value": r["p_value"], "p_holm": None, "test": r["test"], "n_pairs": r["n_pairs"],
            "outcome": None,
        }
    tested = [name for name, r in out.items() if r["p_value"] is not None]
    for name, p in zip(tested, holm([out[name]["p_value"] for name in tested])):
        r = out[name]
        r["p_holm"] = p
        r["outcome"] = "tied" if p >= alpha else ("beats" if r["diff_mean"] > 0 else "worse")
    return out


def front_against_tuned(sweep: Mapping[str, Sequence[float | None]], tuned_point: Sequence[float | None],
                        higher_is_better: Sequence[bool] | None = None) -> tuple[list[str], bool | None]:
    """The untuned sweep's front and whether it dominates the tuned weighted sum's point (means of each
    task's primary metric, in its direction: ``higher_is_better``, None all higher); None without a sweep
    point or a tuned point with every mean."""
    front, dominated = scalarization_front(sweep, {TUNED_SUFFIX: tuned_point}, higher_is_better)
    return front, dominated[TUNED_SUFFIX] if front else None


def baseline_sentences(result: Mapping[str, dict], tuned: str, metric: str,
                       front: list[str] | None = None, dominated: bool | None = None,
                       alpha: float = ALPHA, name: str | None = None) -> list[str]:
    """The baseline's verdict in plain sentences: which rows beat the tuned weighted sum, tie with it,
    are worse, or could not be tested; then what the sweep's front says of the tuned point. ``name``: how the
    metric is named (default METRIC_NAMES', "Δm vs adam" where Δm's reference is a compared row)."""
    name = name or METRIC_NAMES[metric]
    groups: dict[str | None, list[str]] = {"beats": [], "tied": [], "worse": [], None: []}
    for row, r in result.items():
        groups[r["outcome"]].append(row)
    lines = []
    if result:
        head = (f"Against the tuned weighted sum {tuned} ({name}, paired by seed, Holm's correction over "
                f"{len(result)} row{'s' * (len(result) != 1)} at {alpha:g}):")
        parts = []
        for outcome, words in (("beats", "beat it"), ("worse", "are worse"), ("tied", "are tied with it")):
            if groups[outcome]:
                parts.append(f"{words}: " + ", ".join(
                    f"{row} ({show(metric, result[row]['diff_mean'], difference=True)}, 95 % CI "
                    f"{show_interval(metric, result[row]['diff_ci_low'], result[row]['diff_ci_high'])})"
                    for row in groups[outcome]))
        if groups[None]:
            parts.append("share fewer than 2 seeds with it, not tested: " + ", ".join(groups[None]))
        lines.append(head + " " + "; ".join(parts) + ".")
        if not groups["beats"] and len(groups[None]) < len(result):  # said of the rows tested only
            lines.append(f"No row beats the tuned weighted sum {tuned}.")
    if front:
        if dominated:
            lines.append(f"The untuned sweep's front ({', '.join(front)}) dominates the tuned weighted sum "
                         f"{tuned}: its tuning found a weighting worse than one the sweep ran.")
        elif dominated is False:
            lines.append(f"The untuned sweep's front ({', '.join(front)}) does not dominate the tuned weighted "
                         f"sum {tuned}.")
    return lines


def tuned_baseline(rows: Sequence, metric: str, alpha: float = ALPHA,
                   name: str | None = None) -> tuple[dict | None, list[str]]:
    """The baseline verdict of a report's rows (mtbench.report.build's RowResults): None and no sentence
    when no compared row is a tuned weighted sum's.

    Held against it: every other row of role "row" on ``metric``. Its front: the sweep's points and the
    plain rows of the swept optimizers with the method sum (the sweep's point at the comparison's
    weights), on the means of each task's primary metric (top-1 and mIoU on ImageNet + COCO). Returns
    ({"row", "metric", "rows": against_tuned's result, "front", "front_dominates"}, the sentences).
    """
    compared = [r for r in rows if r.role == "row"]
    tuned = tuned_label(r.label for r in compared)
    if tuned is None:
        return None, []
    values = {r.label: r.per_seed.get(metric, {}) for r in compared}
    result = against_tuned(values, tuned, alpha=alpha)
    mean, directions = front_means(rows)  # each task's primary metric, in its direction
    sweep = [r for r in rows if r.role == "sweep"]
    swept = {r.group.optimizer for r in sweep}
    points = {r.label: mean[r.label] for r in rows if r in sweep or (
        r.role == "row" and r.label != tuned and r.group.optimizer in swept and r.group.spec.method == SUM_METHOD)}
    front, dominated = front_against_tuned(points, mean[tuned], directions) if sweep else ([], None)
    record = {"row": tuned, "metric": metric, "rows": result, "front": front, "front_dominates": dominated}
    return record, baseline_sentences(result, tuned, metric, front, dominated, alpha, name)
