"""How one figure of a report row is written in a cell of its tables (report.md and the terminal): a mean with
the half-width of its 95 % interval, a median time to target, the seeds, the difference to the best row, the
verdict and the optimizer guide's ranges. mtbench.report.files lays the cells out in tables."""

from __future__ import annotations

import math

from .build import RowResult
from .verdict import show, show_interval

__all__ = ["guide_cells", "mean_cell", "seeds_cell", "time_cell", "verdict_cell", "vs_best_cell"]


def mean_cell(summary: dict | None, fmt: str, scale: float = 1.0, unit: str = "") -> str:
    """mean±half-width of the 95 % interval (mean alone without one)."""
    if not summary or summary.get("mean") is None:
        return "-"
    mean = summary["mean"]
    if not math.isfinite(mean):
        return "inf"
    text = format(mean * scale, fmt)
    if summary.get("ci_low") is not None:
        text += "±" + format((summary["ci_high"] - summary["ci_low"]) / 2 * scale, fmt)
    return text + unit


def time_cell(summary: dict | None, fmt: str, unit: str = "") -> str:
    """Median over seeds, "(k/n)" when only k of the n seeds reached the target."""
    if not summary or not summary.get("n"):
        return "-"
    median = summary["median"]
    text = "inf" if not math.isfinite(median) else format(median, fmt) + unit
    if summary["reached"] < summary["n"]:
        text += f" ({summary['reached']}/{summary['n']})"
    return text


def seeds_cell(row: RowResult) -> str:
    """The row's seeds: their count, completed/planned when some failed."""
    g = row.group
    return f"{len(g.done)}/{len(g.runs)}" if len(g.done) != len(g.runs) else str(len(g.runs))


def _p(p: float | None) -> str:
    if p is None:
        return ""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def vs_best_cell(row: RowResult, metric: str) -> str:
    """The paired difference to the best row on ``metric``: mean, 95 % interval and the Holm-corrected p."""
    if not row.verdict or row.vs_best is None:
        return "-"
    if row.verdict["is_best"]:
        return "best"
    v = row.vs_best
    parts = [show(metric, v["diff_mean"], difference=True),
             show_interval(metric, v["diff_ci_low"], v["diff_ci_high"])
             if v["diff_ci_low"] is not None else "", _p(v["p_holm"])]
    return " ".join(p for p in parts if p)


def verdict_cell(row: RowResult) -> str:
    """best, tied (with the best) or worse; "-" for a row without a verdict."""
    if not row.verdict or row.vs_best is None:
        return "-"
    if row.verdict["is_best"]:
        return "best"
    return {True: "tied", False: "worse", None: "-"}[row.tied_with_best]


def guide_cells(expected: dict | None) -> list[str]:
    """The optimizer guide's expected top-1 and mIoU ranges and convergence (the three guide columns)."""
    if not expected:
        return ["-", "-", "-"]
    t, m = expected.get("top1"), expected.get("miou")
    return [f"{t[0] * 100:.0f}-{t[1] * 100:.0f}%" if t else "-",
            f"{m[0]:.2f}-{m[1]:.2f}" if m else "-", expected.get("convergence") or "-"]
