"""PNG figures of a comparison, drawn from run directories: losses, validation curves, reported metrics,
the scalarization front and, across workloads, performance profiles.

Figures are built on matplotlib's object API in the shared style of mtbench.report.plotstyle.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from .plots_gradients import write_conflict_plots
from .plotstyle import (band, binned, grid_shape, legends, line_colors, metric_label, or_nan, palette, panel_grid, save,
                        step_bins, unit_scale)
from .build import Report
from .grouping import RowRuns
from .taskmetrics import WorkloadMetrics
from ..config import TASKS
from ..rundir import read_metrics
from .fronts import PROFILE_TAU_MAX, front_axes, front_point, performance_profile, score_profile

__all__ = [
    "DEFAULT_FINAL_PANELS", "DEFAULT_LOSS_PANELS", "DEFAULT_VALIDATION_PANELS", "Panel", "final_panels", "load_losses",
    "loss_panels", "plot_final", "plot_front_panels", "plot_losses", "plot_pareto", "plot_profile", "plot_validation",
    "validation_panels", "write_plots",
]

@dataclass(frozen=True)
class Panel:
    """One panel of a figure over the workload's tasks: what it reads, how it is titled and labelled."""

    key: str  # loss: the metrics.jsonl field; validation and final: the metric's name (final: or joint, delta_m)
    title: str
    ylabel: str = ""
    scale: float = 1.0  # the value is drawn times this (a fraction in % at 100)
    fmt: str = "{:.3g}"  # a final bar's value
    task: str | None = None  # the task it measures; None: a figure of every task (the joint score, Δm)


# ImageNet + COCO's panels, as they have always been drawn.
DEFAULT_LOSS_PANELS = (Panel("loss_cls", "Classification loss (ImageNet)", task="cls"),
                       Panel("loss_seg", "Segmentation loss (COCO)", task="seg"))
DEFAULT_VALIDATION_PANELS = (
    Panel("top1", "Validation top-1 accuracy (ImageNet)", "top-1 accuracy (%)", 100.0, task="cls"),
    Panel("miou", "Validation mIoU (COCO, 21 classes)", "mIoU (fraction)", task="seg"))
DEFAULT_FINAL_PANELS = (Panel("top1", "Test top-1", "top-1 accuracy (%)", 100.0, "{:.1f}", "cls"),
                        Panel("miou", "Test mIoU", "mIoU (fraction)", 1.0, "{:.3f}", "seg"))


def loss_panels(own: WorkloadMetrics | None = None) -> tuple[Panel, ...]:
    """The loss figure's panels: one per task of the workload (``own``; None: ImageNet + COCO's two)."""
    if own is None:
        return DEFAULT_LOSS_PANELS
    return tuple(Panel(f"loss_{task}", f"Training loss of {task}", task=task) for task in own.tasks)


def validation_panels(own: WorkloadMetrics | None = None) -> tuple[Panel, ...]:
    """The validation figure's panels: each task's primary metric in its direction (None: top-1 and mIoU)."""
    if own is None:
        return DEFAULT_VALIDATION_PANELS
    return tuple(Panel(m.name, f"{m.task}: validation {m.title}", metric_label(m.title, m.unit, m.higher_is_better),
                       unit_scale(m.unit), task=m.task) for m in own.primaries(own.tasks))


def final_panels(report: Report) -> tuple[Panel, ...]:
    """The final figure's panels: each task's primary metric, then the joint score where the workload has one,
    else Δm against the reference row where the report has it (ImageNet + COCO: top-1 and mIoU, as always)."""
    own = report.own
    if own is None:
        return DEFAULT_FINAL_PANELS
    primaries = own.primaries(own.tasks)
    panels = [Panel(m.name, f"{m.task}: test {m.title}", metric_label(m.title, m.unit, m.higher_is_better),
                    unit_scale(m.unit), task=m.task) for m in primaries]
    if report.has_joint and primaries:
        unit = "%" if all(m.unit == "%" for m in primaries) else ""
        panels.append(Panel("joint", "Joint score (mean of the primary metrics)",
                            metric_label("joint score", unit, True), unit_scale(unit)))
    elif report.has_delta_m:
        panels.append(Panel("delta_m", f"{report.delta_m_name} (every metric)",
                            metric_label(report.delta_m_name, "%", True), fmt="{:+.2f}"))
    return tuple(panels)


def load_losses(run_dir: Path, tasks: Sequence[str] = TASKS) -> dict[str, np.ndarray]:
    """Step and each task's loss per step (``loss_<task>``, NaN where not logged or not finite), from the run's log."""
    records = read_metrics(run_dir)
    out = {"step": np.array([r["step"] for r in records], dtype=float)}
    for task in tasks:
        out[f"loss_{task}"] = np.array([or_nan(r.get(f"loss_{task}")) for r in records], dtype=float)
    return out


def _figure(panels: Sequence[Panel], own: WorkloadMetrics | None, size: tuple[float, float] = (6.0, 4.5),
            legend: bool = True) -> tuple[Figure, list]:
    """A figure of ``panels``: ImageNet + COCO's two side by side as always; another workload's in panel_grid's
    rows, room kept below for one legend of the rows where there are more than two panels."""
    rows, cols = grid_shape(len(panels))
    below = 0.6 if legend and own is not None and len(panels) > 2 else 0.0
    width, height = size if cols < 3 else (size[0] * 0.87, size[1] * 0.93)
    fig = Figure(figsize=(width * cols, height * rows + below), layout="constrained")
    return fig, panel_grid(fig, len(panels))


def _legends(fig: Figure, axes: Sequence, own: WorkloadMetrics | None) -> None:
    """A legend in each panel (up to two panels), else one below the panels of every row drawn in any panel."""
    legends(fig, axes, own is not None and len(axes) > 2)


def plot_losses(groups: Sequence[RowRuns], path: Path, own: WorkloadMetrics | None = None) -> Path:
    """Training loss per task vs step, one panel per task of the workload (``own``; None: ImageNet + COCO):
    bin-mean smoothed, mean over seeds with a min-max band. A row without a task's loss (a single-task
    baseline of another task) has no line in its panel."""
    panels = loss_panels(own)
    tasks = [p.task for p in panels]
    losses = {g.label: [load_losses(r.path, tasks) for r in g.runs if r.path.is_dir()] for g in groups}
    edges, centers, width = step_bins([d for ds in losses.values() for d in ds])
    colors = line_colors([g.label for g in groups])
    fig, axes = _figure(panels, own)
    for ax, panel in zip(axes, panels):
        for g in groups:
            curves = [c for d in losses[g.label] if len(d["step"])
                      if np.isfinite(c := binned(d["step"], d[panel.key], edges)).any()]
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
        ax.set_title(panel.title)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss as logged" + (f" (mean over {width}-step bins)" if width > 1 else ""))
        ax.grid(alpha=0.3)
    _legends(fig, axes, own)
    of = "" if own is None else f" of {own.workload}"
    fig.suptitle(f"Training loss per task{of} (line: mean over seeds, band: min-max over seeds)")
    return save(fig, path)


def plot_validation(groups: Sequence[RowRuns], path: Path, own: WorkloadMetrics | None = None) -> Path:
    """Each task's primary metric on the test split after each epoch (``own``; None: ImageNet's top-1 and COCO's
    mIoU), mean over seeds with a min-max band; the axis label says the metric's unit and direction."""
    panels = validation_panels(own)
    colors = line_colors([g.label for g in groups])
    last = max((len(r.epochs) for g in groups for r in g.runs), default=1)
    epochs = np.arange(1, last + 1)
    fig, axes = _figure(panels, own)
    for ax, panel in zip(axes, panels):
        for g in groups:
            curves = []
            for run in g.runs:
                curve = np.full(last, np.nan)
                for row in run.epochs:
                    value = row.figure("val", panel.key)
                    if value is not None and 1 <= row.epoch <= last:
                        curve[row.epoch - 1] = value * panel.scale
                curves.append(curve)
            if not curves or not np.isfinite(np.vstack(curves)).any():
                continue
            mean, lo, hi = band(curves)
            ax.plot(epochs, mean, marker="o", color=colors[g.label], label=g.label, linewidth=1.4)
            if len(curves) > 1:
                ax.fill_between(epochs, lo, hi, color=colors[g.label], alpha=0.2, linewidth=0)
        ax.set_title(panel.title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(panel.ylabel)
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    _legends(fig, axes, own)
    of = "" if own is None else f" of {own.workload}, each task's primary metric"
    fig.suptitle(f"Validation after each epoch{of} (line: mean over seeds, band: min-max over seeds)")
    return save(fig, path)


def _half_ci(summary: dict | None, scale: float) -> float:
    if not summary or summary.get("ci_low") is None:
        return 0.0
    return (summary["ci_high"] - summary["ci_low"]) / 2 * scale


def _final_summary(report: Report, row, panel: Panel) -> dict | None:
    """A row's summary over seeds of a panel's figure (None where it has no value)."""
    table = (row.metrics.get("task_metrics") or {}) if report.own is not None and panel.task else row.metrics
    summary = table.get(panel.key)
    return summary if summary and summary.get("mean") is not None else None


def _missing(report: Report, row, panel: Panel) -> str:
    """What a bar without a value says: the task is not one the row trains, no run completed, or the row has no
    such figure (a single-task baseline's joint score or Δm)."""
    if report.own is not None and panel.task is not None and panel.task not in row.group.spec.tasks:
        return "not trained"
    return "failed" if report.own is None or not row.group.done else "n/a"


def plot_final(report: Report, path: Path) -> Path:
    """Bars of each row's reported figures, error bars the 95 % interval over seeds: each task's primary metric
    and the joint score, or Δm where the workload has none (final_panels; ImageNet + COCO: top-1 and mIoU)."""
    rows = report.rows
    panels = final_panels(report)
    colors = line_colors([r.group.label for r in rows])
    x = np.arange(len(rows))
    if report.own is None:
        fig = Figure(figsize=(max(8, 1.3 * len(rows) + 4), 4.8), layout="constrained")
        axes = list(fig.subplots(1, 2))
    else:
        fig, axes = _figure(panels, report.own, (max(4.5, 0.6 * len(rows) + 2.0), 4.8), legend=False)
    for ax, panel in zip(axes, panels):
        stats = [_final_summary(report, r, panel) for r in rows]
        heights = [s["mean"] * panel.scale if s else 0.0 for s in stats]
        errors = [_half_ci(s, panel.scale) for s in stats]
        ax.bar(x, heights, yerr=errors, capsize=4, color=[colors[r.group.label] for r in rows])
        top = max([h + e for h, e in zip(heights, errors)] + [1e-9])
        low = min([h - e for h, e in zip(heights, errors) if h < 0] + [0.0])  # Δm can be below 0
        span = top - low
        pad = 0.01 * span
        for xi, r, s, h, e in zip(x, rows, stats, heights, errors):
            below = h < 0
            ax.text(xi, h - e - pad if below else h + e + pad, panel.fmt.format(h) if s else _missing(report, r, panel),
                    ha="center", va="top" if below else "bottom", fontsize="small")
        ax.set_ylim(low - 0.15 * span if low < 0 else 0.0, top + 0.15 * span)
        if low < 0:
            ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xticks(x, [r.group.label for r in rows], rotation=30, ha="right")
        ax.set_title(panel.title)
        ax.set_ylabel(panel.ylabel)
        ax.grid(axis="y", alpha=0.3)
    of = "" if report.own is None else f" of {report.own.workload}"
    fig.suptitle(f"Reported metrics{of}, selection {report.selection} "
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
        return unit_scale(axis.unit)

    def half(r, axis) -> float:
        summary = (r.metrics.get("task_metrics") or {}).get(axis.metric)
        return _half_ci(summary, scale(axis))

    def title(axis) -> str:
        return "test " + metric_label(axis.title, axis.unit, axis.higher_is_better)

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
    files = [plot_losses(groups, out / "loss.png", report.own),
             plot_validation(groups, out / "validation.png", report.own), plot_final(report, out / "final.png")]
    if any(r.on_front is not None for r in report.rows):
        files.append(plot_pareto(report, out / "pareto.png"))
    own = report.own
    return files + write_conflict_plots(groups, out, None if own is None else own.tasks,
                                        None if own is None else own.workload)
