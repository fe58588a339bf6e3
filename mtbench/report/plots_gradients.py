"""Gradient-conflict figures from metrics.jsonl: how the task gradients relate over training.

Runs that keep the tasks' gradients apart (a multi-task method, or an optimizer such as MTAdamV2)
log per step, over the shared parameters, the cosine between the two task gradients
(``grad_cosine``: below 0 the tasks pull the shared weights apart) and their norm ratio
(``grad_norm_ratio`` = ||g_cls|| / ||g_seg||), and a method with task weights logs them
(``method_weight_cls``, ``method_weight_seg``). A run of the plain weighted loss has none of these,
so it gets no figure and no line.

- ``conflict.png``: one line per row, the mean over its seeds (band: min-max over seeds);
- ``conflict-<run>.png``: each run on its own, with the method's weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from .plotstyle import band, binned, line_colors, or_nan, save, step_bins
from .grouping import RowRuns
from .runs import Run
from ..rundir import RunFileError, finite_number, read_metrics

__all__ = [
    "FIELDS", "PANELS", "WEIGHTS", "load_conflict", "plot_comparison_conflict", "plot_run_conflict",
    "write_conflict_plots",
]

COSINE, RATIO = "grad_cosine", "grad_norm_ratio"
WEIGHTS = ("method_weight_cls", "method_weight_seg")
FIELDS = (COSINE, RATIO, *WEIGHTS)
PANELS = {COSINE: ("Cosine between the task gradients", "cos(g_cls, g_seg)"),
          RATIO: ("Norm ratio of the task gradients", "||g_cls|| / ||g_seg|| (log scale)")}


def load_conflict(run_dir: Path) -> dict[str, np.ndarray] | None:
    """Step and each conflict field per step (NaN where not logged), or None when the run logged none."""
    try:
        records = read_metrics(run_dir)
    except RunFileError:
        return None
    if not any(finite_number(r.get(key)) is not None for r in records for key in FIELDS):
        return None
    data = {"step": np.array([r["step"] for r in records], dtype=float)}
    for key in FIELDS:
        data[key] = np.array([or_nan(r.get(key)) for r in records], dtype=float)
    return data


def _style(ax, key: str, width: int) -> None:
    title, ylabel = PANELS[key]
    ax.set_title(title)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel + (f", mean over {width}-step bins" if width > 1 else ""))
    if key == COSINE:
        ax.axhline(0.0, color="grey", linewidth=0.8)  # below: the tasks conflict
        ax.set_ylim(-1.05, 1.05)
    else:
        ax.axhline(1.0, color="grey", linewidth=0.8)  # above: classification's gradient is the larger
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def plot_comparison_conflict(groups: Sequence[RowRuns], path: Path) -> Path | None:
    """conflict.png: cosine and norm ratio per step, one line per row (mean over seeds); None when no
    run logged them."""
    series = {g.label: [d for d in (load_conflict(r.path) for r in g.runs if r.path.is_dir()) if d is not None]
              for g in groups}
    present = [g for g in groups if series[g.label]]
    if not present:
        return None
    edges, centers, width = step_bins([d for ds in series.values() for d in ds])
    colors = line_colors([g.label for g in groups])
    weighted = [g for g in present if any(np.isfinite(d[WEIGHTS[0]]).any() for d in series[g.label])]
    fig = Figure(figsize=(6 * (2 + bool(weighted)), 4.5), layout="constrained")
    axes = fig.subplots(1, 2 + bool(weighted))
    for ax, key in zip(axes, (COSINE, RATIO)):
        for g in present:
            curves = [binned(d["step"], d[key], edges) for d in series[g.label]]
            if not np.isfinite(np.vstack(curves)).any():
                continue
            mean, lo, hi = band(curves)
            ax.plot(centers, mean, color=colors[g.label], label=g.label, linewidth=1.4)
            if len(curves) > 1:
                ax.fill_between(centers, lo, hi, color=colors[g.label], alpha=0.2, linewidth=0)
        _style(ax, key, width)
        if ax.get_legend_handles_labels()[0]:  # a panel with only its reference lines has no legend
            ax.legend(fontsize="small")
    if weighted:
        ax = axes[2]
        for g in weighted:
            for key, dash in zip(WEIGHTS, ("-", "--")):
                mean, _, _ = band([binned(d["step"], d[key], edges) for d in series[g.label]])
                ax.plot(centers, mean, dash, color=colors[g.label], linewidth=1.4,
                        label=f"{g.label}, {key.rsplit('_', 1)[1]}")
        ax.set_title("The method's task weights (solid: cls, dashed: seg)")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("weight" + (f", mean over {width}-step bins" if width > 1 else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Gradient conflict over the shared parameters (line: mean over seeds, band: min-max over seeds)")
    return save(fig, path)


def plot_run_conflict(run: Run, label: str, path: Path) -> Path | None:
    """One run's cosine, norm ratio and method weights per step; None when the run logged none of them."""
    data = load_conflict(run.path)
    if data is None:
        return None
    edges, centers, width = step_bins([data])
    weighted = bool(np.isfinite(data[WEIGHTS[0]]).any() or np.isfinite(data[WEIGHTS[1]]).any())
    fig = Figure(figsize=(6 * (2 + weighted), 4.5), layout="constrained")
    axes = fig.subplots(1, 2 + weighted)
    for ax, key in zip(axes, (COSINE, RATIO)):
        keep = np.isfinite(data[key])
        ax.plot(data["step"][keep], data[key][keep], ".", color="C0", alpha=0.25, markersize=3, label="per step")
        ax.plot(centers, binned(data["step"], data[key], edges), color="C0", linewidth=1.4, label="bin mean")
        _style(ax, key, 1)
        ax.legend(fontsize="small")
    if weighted:
        ax = axes[2]
        for key, color in zip(WEIGHTS, ("C1", "C2")):
            ax.plot(centers, binned(data["step"], data[key], edges), color=color, linewidth=1.4,
                    label=key.rsplit("_", 1)[1])
        ax.set_title("The method's task weights")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("weight" + (f", mean over {width}-step bins" if width > 1 else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{label}: gradient conflict over the shared parameters")
    return save(fig, path)


def write_conflict_plots(groups: Sequence[RowRuns], out: Path) -> list[Path]:
    """conflict.png and conflict-<run>.png in ``out``, for the runs that logged the conflict fields."""
    summary = plot_comparison_conflict(groups, out / "conflict.png")
    if summary is None:
        return []
    files = [summary]
    used: set[str] = set()
    for group in groups:
        for run in group.runs:
            # runs gathered from several folders may share a folder name: the parent tells them apart
            name = run.path.name if run.path.name not in used else f"{run.path.parent.name}-{run.path.name}"
            written = plot_run_conflict(run, name, out / f"conflict-{name}.png")
            if written is not None:
                used.add(name)
                files.append(written)
    return files
