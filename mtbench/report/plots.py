"""PNG figures of a comparison, drawn from run directories: losses, validation curves, reported metrics,
the scalarization front and, across workloads, performance profiles.

Figures are built on matplotlib's object API in the shared style of mtbench.report.plotstyle.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from .plots_gradients import write_conflict_plots
from .plotstyle import band, binned, line_colors, or_nan, palette, save, step_bins
from .build import Report
from .grouping import RowRuns
from ..rundir import read_metrics
from .fronts import PROFILE_TAU_MAX, front_axes, front_point, performance_profile, score_profile

__all__ = [
    "load_losses", "plot_final", "plot_front_panels", "plot_losses", "plot_pareto", "plot_profile", "plot_validation",
    "write_plots",
]

def load_losses(run_dir: Path) -> dict[str, np.ndarray]:
    """Step, classification and segmentation loss per step (NaN where not finite), from the run's log."""
    records = read_metrics(run_dir)
    steps = np.array([r["step"] for r in records], dtype=float)
    values = np.array([[or_nan(r.get("loss_cls")), or_nan(r.get("loss_seg"))] for r in records],
                      dtype=float).reshape(-1, 2)
    return {"step": steps, "loss_cls": values[:, 0], "loss_seg": values[:, 1]}


def plot_losses(groups: Sequence[RowRuns], path: Path) -> Path:
    """Training loss per task vs step: bin-mean smoothed, mean over seeds with a min-max band."""
    losses = {g.label: [load_losses(r.path) for r in g.runs if r.path.is_dir()] for g in groups}
    edges, centers, width = step_bins([d for ds in losses.values() for d in ds])
    colors = line_colors([g.label for g in groups])
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    for ax, key, title in zip(fig.subplots(1, 2), ("loss_cls", "loss_seg"),
                              ("Classification loss (ImageNet)", "Segmentation loss (COCO)")):
        for g in groups:
            curves = [binned(d["step"], d[key], edges) for d in losses[g.label] if len(d["step"])]
            if not curves:
                continue
            mean, lo, hi = band(curves)
            ax.plot(centers, mean, color=colors[g.label], label=g.label, linewidth=1.4)
            if len(curves) > 1:
                ax.fill_between(centers, lo, hi, color=colors[g.label], alpha=0.2, linewidth=0)
        ys = np.concatenate([line.get_ydata() for line in ax.lines] + [np.array([])])
        ys = ys[np.isfinite(ys)]
        if ys.size and ys.min() > 0 and ys.max() / ys.min() > 20:  # e.g. a scaled or diverging loss
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss as logged" + (f" (mean over {width}-step bins)" if width > 1 else ""))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    fig.suptitle("Training loss per task (line: mean over seeds, band: min-max over seeds)")
    return save(fig, path)


def plot_validation(groups: Sequence[RowRuns], path: Path) -> Path:
    """Validation top-1 and mIoU after each epoch, mean over seeds with a min-max band."""
    colors = line_colors([g.label for g in groups])
    last = max((len(r.epochs) for g in groups for r in g.runs), default=1)
    epochs = np.arange(1, last + 1)
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    for ax, key, scale, title, ylabel in zip(
            fig.subplots(1, 2), ("val_top1", "val_miou"), (100.0, 1.0),
            ("Validation top-1 accuracy (ImageNet)", "Validation mIoU (COCO, 21 classes)"),
            ("top-1 accuracy (%)", "mIoU (fraction)")):
        for g in groups:
            curves = []
            for run in g.runs:
                curve = np.full(last, np.nan)
                for row in run.epochs:
                    value = getattr(row, key)
                    if value is not None and 1 <= row.epoch <= last:
                        curve[row.epoch - 1] = value * scale
                curves.append(curve)
            if not curves or not np.isfinite(np.vstack(curves)).any():
                continue
            mean, lo, hi = band(curves)
            ax.plot(epochs, mean, marker="o", color=colors[g.label], label=g.label, linewidth=1.4)
            if len(curves) > 1:
                ax.fill_between(epochs, lo, hi, color=colors[g.label], alpha=0.2, linewidth=0)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    fig.suptitle("Validation after each epoch (line: mean over seeds, band: min-max over seeds)")
    return save(fig, path)


def _half_ci(summary: dict | None, scale: float) -> float:
    if not summary or summary.get("ci_low") is None:
        return 0.0
    return (summary["ci_high"] - summary["ci_low"]) / 2 * scale


def plot_final(report: Report, path: Path) -> Path:
    """Bars of the reported top-1 and mIoU per row, error bars the 95 % interval over seeds."""
    rows = report.rows
    colors = line_colors([r.group.label for r in rows])
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(8, 1.3 * len(rows) + 4), 4.8), layout="constrained")
    for ax, key, scale, title, ylabel, fmt in zip(
            fig.subplots(1, 2), ("top1", "miou"), (100.0, 1.0),
            ("Test top-1", "Test mIoU"), ("top-1 accuracy (%)", "mIoU (fraction)"), ("{:.1f}", "{:.3f}")):
        stats = [r.metrics[key] if r.metrics[key] and r.metrics[key]["mean"] is not None else None for r in rows]
        heights = [s["mean"] * scale if s else 0.0 for s in stats]
        errors = [_half_ci(s, scale) for s in stats]
        ax.bar(x, heights, yerr=errors, capsize=4, color=[colors[r.group.label] for r in rows])
        top = max([h + e for h, e in zip(heights, errors)] + [1e-9])
        for xi, s, h, e in zip(x, stats, heights, errors):
            ax.text(xi, h + e + 0.01 * top, fmt.format(h) if s else "failed",
                    ha="center", va="bottom", fontsize="small")
        ax.set_ylim(0, top * 1.15)
        ax.set_xticks(x, [r.group.label for r in rows], rotation=30, ha="right")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Reported metrics, selection {report.selection} "
                 "(bar: mean over seeds, error bar: 95 % t interval over seeds)")
    return save(fig, path)


def plot_pareto(report: Report, path: Path) -> Path:
    """Test top-1 against test mIoU: the sweep's points with their front, every other row against it; on
    another workload, its tasks' primary metrics pair by pair (``plot_front_panels``).

    Each point is a row's mean over seeds with 95 % interval whiskers on both axes.
    """
    if report.own is not None:
        return plot_front_panels(report, path)
    rows = [r for r in report.rows if r.on_front is not None or r.dominated_by_front is not None]
    colors = line_colors([r.group.label for r in rows])
    fig = Figure(figsize=(8, 6.5), layout="constrained")
    ax = fig.subplots()

    def point(row):
        m = row.metrics
        return (m["miou"]["mean"], m["top1"]["mean"] * 100.0, _half_ci(m["miou"], 1.0), _half_ci(m["top1"], 100.0))

    drawn = [r for r in rows if all(r.metrics[k] and r.metrics[k]["mean"] is not None for k in ("top1", "miou"))]
    front = sorted((point(r)[:2] for r in drawn if r.on_front), key=lambda p: p[0])
    if front:
        ax.plot([p[0] for p in front], [p[1] for p in front], color="0.3", linewidth=1.5, zorder=1,
                label="scalarization front")
    for r in drawn:
        x, y, ex, ey = point(r)
        sweep = r.on_front is not None
        ax.errorbar(x, y, xerr=ex, yerr=ey, fmt="o" if sweep else "D", color=colors[r.group.label],
                    capsize=3, markersize=6 if sweep else 8, zorder=2,
                    label=r.label + ("" if sweep else " (dominated)" if r.dominated_by_front else ""))
        weight = r.group.spec.weight
        if sweep and weight is not None:
            ax.annotate(f"w={weight:g}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize="small")
    ax.set_xlabel("test mIoU (fraction)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    if ax.lines or ax.collections:
        ax.legend(fontsize="small")
    fig.suptitle("Scalarization front: task-weight sweep (circles) vs other rows (diamonds); "
                 "whiskers: 95 % t interval over seeds", fontsize="medium")
    return save(fig, path)


def plot_front_panels(report: Report, path: Path) -> Path:
    """The scalarization front of a workload's T tasks, one panel per pair of its primary metrics.

    NOTE [front panels]: the front is non-dominated in all T metrics at once, so in a panel of two of
    them a front point may lie below another: the panels mark front points (filled circles, black edge)
    rather than join them, except over two tasks, where the one panel is the whole front and its points
    are joined as the ImageNet + COCO figure joins them. A ternary plot of the weights would show one
    colour per point and no interval; the panels keep every metric's value and its whiskers.
    """
    axes = front_axes(report.own)
    rows = [r for r in report.rows if r.on_front is not None or r.dominated_by_front is not None]
    points = {r.label: front_point(r.metrics, axes) for r in rows}
    drawn = [r for r in rows if all(v is not None for v in points[r.label])]
    colors = line_colors([r.group.label for r in rows])
    pairs = list(itertools.combinations(range(len(axes)), 2))
    cols = min(3 if len(pairs) <= 9 else 4, len(pairs))  # 28 panels for eight tasks: 7 rows of 4
    grid = (len(pairs) + cols - 1) // cols
    width, height = (5.2, 4.6) if len(pairs) <= 9 else (4.2, 3.8)
    fig = Figure(figsize=(width * cols + 1.5, height * grid), layout="constrained")
    panels = np.atleast_1d(fig.subplots(grid, cols, squeeze=False).ravel())

    def scale(axis) -> float:
        return 100.0 if axis.unit == "%" else 1.0

    def half(r, axis) -> float:
        summary = (r.metrics.get("task_metrics") or {}).get(axis.metric)
        return _half_ci(summary, scale(axis))

    def title(axis) -> str:
        unit = " (%)" if axis.unit == "%" else f" ({axis.unit})" if axis.unit else ""
        return f"test {axis.title}{unit} {'↑' if axis.higher_is_better else '↓'}"

    for ax, (i, j) in zip(panels, pairs):
        ax_x, ax_y = axes[j], axes[i]
        if len(axes) == 2:
            front = sorted((points[r.label][j] * scale(ax_x), points[r.label][i] * scale(ax_y))
                           for r in drawn if r.on_front)
            if front:
                ax.plot(*zip(*front), color="0.3", linewidth=1.5, zorder=1, label="scalarization front")
        for r in drawn:
            x, y = points[r.label][j] * scale(ax_x), points[r.label][i] * scale(ax_y)
            sweep = r.on_front is not None
            label = r.label + (" (front)" if r.on_front else "" if sweep else
                               " (dominated)" if r.dominated_by_front else "")
            ax.errorbar(x, y, xerr=half(r, ax_x), yerr=half(r, ax_y), fmt="o" if sweep else "D",
                        color=colors[r.group.label], capsize=3, markersize=7 if r.on_front else 5 if sweep else 8,
                        markeredgecolor="black" if r.on_front else colors[r.group.label], zorder=2, label=label)
        ax.set_xlabel(title(ax_x))
        ax.set_ylabel(title(ax_y))
        ax.grid(alpha=0.3)
    for ax in panels[len(pairs):]:
        ax.set_visible(False)
    handles, labels = panels[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(handles)), fontsize="small")
    how = "joined" if len(axes) == 2 else "black-edged; a front point may lie below another in one pair of tasks"
    fig.suptitle(f"Scalarization front of {report.own.workload}, {len(axes)} tasks' primary metrics (front points "
                 f"{how})\ncircles: the task-weight sweep, diamonds: other rows; whiskers: 95 % t interval over seeds",
                 fontsize="medium")
    return save(fig, path)


def plot_profile(times: dict[str, dict[str, float | None]], path: Path,
                 scores: dict[str, dict[str, float | None]] | None = None) -> Path:
    """AlgoPerf performance profiles: per row, the fraction of workloads within tau x the best time; with
    ``scores``, beside it the same of the joint score (report.workloads, NOTE [score profile])."""
    taus = np.linspace(1.0, PROFILE_TAU_MAX, 301)
    panels = [("steps to target, median over seeds", "tau (time to target / best time to target on the workload)",
               times, performance_profile(times, taus))]
    if scores is not None:
        panels.insert(0, ("joint score, mean over seeds", "tau (best joint score on the workload / joint score)",
                          scores, score_profile(scores, taus)))
    fig = Figure(figsize=(8 * len(panels), 5), layout="constrained")
    colors = dict(zip(times, palette(len(times))))
    for ax, (title, xlabel, values, profile) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        for name in values:
            ax.step(taus, profile[name]["fractions"], where="post", color=colors.get(name), linewidth=1.6,
                    label=f"{name} (area {profile[name]['area']:.2f})")
        ax.set_xlim(1.0, PROFILE_TAU_MAX)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of workloads")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    fig.suptitle(f"Performance profiles over {len({w for t in times.values() for w in t})} workloads")
    return save(fig, path)


def write_plots(report: Report, out: Path) -> list[Path]:
    """loss.png, validation.png and final.png in ``out``, and pareto.png when the comparison has a sweep."""
    out.mkdir(parents=True, exist_ok=True)
    groups = [r.group for r in report.rows]
    files = [plot_losses(groups, out / "loss.png"), plot_validation(groups, out / "validation.png"),
             plot_final(report, out / "final.png")]
    if any(r.on_front is not None for r in report.rows):
        files.append(plot_pareto(report, out / "pareto.png"))
    return files + write_conflict_plots(groups, out)
