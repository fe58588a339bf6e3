"""Gradient-conflict figures from metrics.jsonl: how the task gradients relate over training.

Runs that keep the tasks' gradients apart (a multi-task method, or an optimizer such as MTAdamV2)
log per step, over the shared parameters, the cosine between the first two task gradients
(``grad_cosine``: below 0 the tasks pull the shared weights apart), their norm ratio
(``grad_norm_ratio`` = ||g_cls|| / ||g_seg|| on ImageNet + COCO) and, over three tasks or more, the mean
cosine over every pair of tasks (``grad_cosine_mean``); a method with task weights logs each task's
(``method_weight_<task>``). A run of the plain weighted loss has none of these, so it gets no figure and
no line; a run of one task has no pair of gradients, only its method's weight.

- ``conflict.png``: one line per row, the mean over its seeds (band: min-max over seeds);
- ``conflict-<run>.png``: each run on its own, with the method's weights.

ImageNet + COCO's figures (``tasks`` None) are drawn as they always were: cosine, norm ratio and one panel
of both weights (solid: cls, dashed: seg). Another workload's conflict.png has a panel per task's weight
(NOTE [a weight panel per task]).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from .plotstyle import band, binned, grid_shape, legends, line_colors, or_nan, panel_grid, save, step_bins
from .grouping import RowRuns
from .runs import Run
from ..config import TASKS
from ..rundir import RunFileError, finite_number, read_metrics

__all__ = [
    "FIELDS", "PANELS", "WEIGHTS", "conflict_fields", "conflict_panels", "load_conflict", "plot_comparison_conflict",
    "plot_run_conflict", "weight_keys", "write_conflict_plots",
]

COSINE, RATIO, COSINE_MEAN = "grad_cosine", "grad_norm_ratio", "grad_cosine_mean"
WEIGHTS = ("method_weight_cls", "method_weight_seg")  # ImageNet + COCO's
FIELDS = (COSINE, RATIO, *WEIGHTS)
PANELS = {COSINE: ("Cosine between the task gradients", "cos(g_cls, g_seg)"),
          RATIO: ("Norm ratio of the task gradients", "||g_cls|| / ||g_seg|| (log scale)")}

# NOTE [a weight panel per task]: ImageNet + COCO's two weights share one panel, told apart by the dash. Up to
# eight tasks' weights of several rows in one panel would need eight dashes per colour; a panel per task (as
# loss.png has) keeps each row's colour and reads one task at a time. One run's figure has a single row, so its
# weights share one panel, a colour per task.


def weight_keys(tasks: Sequence[str]) -> tuple[str, ...]:
    """The metrics.jsonl field of each task's method weight."""
    return tuple(f"method_weight_{task}" for task in tasks)


def conflict_fields(tasks: Sequence[str] = TASKS) -> tuple[str, ...]:
    """The fields read for a workload of ``tasks``: the first pair's cosine and norm ratio, the mean cosine over
    the pairs beyond two tasks, and each task's method weight."""
    return (COSINE, RATIO, *((COSINE_MEAN,) if len(tasks) > 2 else ()), *weight_keys(tasks))


def conflict_panels(tasks: Sequence[str] | None) -> dict[str, tuple[str, str]]:
    """Title and y label of the cosine and norm-ratio panels (None: ImageNet + COCO's PANELS). Over two tasks
    the cosine is theirs; over more, the mean over the pairs, and the norm ratio is the first two tasks'. One
    task has neither."""
    if tasks is None:
        return PANELS
    if len(tasks) < 2:
        return {}
    a, b = tasks[0], tasks[1]
    ratio = (RATIO, ("Norm ratio of the task gradients" if len(tasks) == 2 else
                     f"Norm ratio of the first two tasks' gradients ({a}, {b})", f"||g_{a}|| / ||g_{b}|| (log scale)"))
    if len(tasks) == 2:
        return dict([(COSINE, ("Cosine between the task gradients", f"cos(g_{a}, g_{b})")), ratio])
    pairs = len(tasks) * (len(tasks) - 1) // 2
    return dict([(COSINE_MEAN, (f"Mean cosine over the {pairs} pairs of task gradients",
                                "mean of cos(g_i, g_j), i < j")), ratio])


def load_conflict(run_dir: Path, tasks: Sequence[str] = TASKS) -> dict[str, np.ndarray] | None:
    """Step and each conflict field of a workload of ``tasks`` per step (NaN where not logged), or None when the
    run logged none."""
    try:
        records = read_metrics(run_dir)
    except RunFileError:
        return None
    fields = conflict_fields(tasks)
    if not any(finite_number(r.get(key)) is not None for r in records for key in fields):
        return None
    data = {"step": np.array([r["step"] for r in records], dtype=float)}
    for key in fields:
        data[key] = np.array([or_nan(r.get(key)) for r in records], dtype=float)
    return data


def _style(ax, key: str, width: int, panels: dict[str, tuple[str, str]]) -> None:
    title, ylabel = panels[key]
    ax.set_title(title)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel + (f", mean over {width}-step bins" if width > 1 else ""))
    if key != RATIO:
        ax.axhline(0.0, color="grey", linewidth=0.8)  # below: the tasks conflict
        ax.set_ylim(-1.05, 1.05)
    else:
        ax.axhline(1.0, color="grey", linewidth=0.8)  # above: the first task's gradient is the larger
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def _weight_axis(ax, title: str, width: int) -> None:
    ax.set_title(title)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("weight" + (f", mean over {width}-step bins" if width > 1 else ""))
    ax.grid(alpha=0.3)


def _logged(datas: Sequence[dict[str, np.ndarray]], key: str) -> bool:
    return any(np.isfinite(d[key]).any() for d in datas)


def _layout(n: int, own: bool) -> tuple[Figure, list]:
    """n panels: ImageNet + COCO's in one row as always; another workload's in panel_grid's rows, room kept
    below for one legend of the rows where there are more than two panels."""
    if not own:
        fig = Figure(figsize=(6 * n, 4.5), layout="constrained")
        return fig, list(np.atleast_1d(fig.subplots(1, n)))
    rows, cols = grid_shape(n)
    width, height = (6.0, 4.5) if cols < 3 else (5.2, 4.2)
    fig = Figure(figsize=(width * cols, height * rows + (0.6 if n > 2 else 0.0)), layout="constrained")
    return fig, panel_grid(fig, n)


def _row_line(ax, datas: Sequence[dict[str, np.ndarray]], key: str, edges, centers, color, label: str) -> None:
    """One row's ``key`` per step on ``ax``: the mean over its seeds, with the min-max band where there are two
    seeds or more; nothing where no seed logged a finite value (a row may log some fields and not others)."""
    curves = [binned(d["step"], d[key], edges) for d in datas]
    if not np.isfinite(np.vstack(curves)).any():
        return
    mean, lo, hi = band(curves)
    ax.plot(centers, mean, color=color, label=label, linewidth=1.4)
    if len(curves) > 1:
        ax.fill_between(centers, lo, hi, color=color, alpha=0.2, linewidth=0)


def plot_comparison_conflict(groups: Sequence[RowRuns], path: Path, tasks: Sequence[str] | None = None,
                             workload: str | None = None) -> Path | None:
    """conflict.png: cosine and norm ratio per step, one line per row (mean over seeds), and the method's
    weights of each task (``tasks``; None: ImageNet + COCO's); None when no run logged them."""
    own = tasks is not None
    tasks = tuple(tasks) if own else TASKS
    series = {g.label: [d for d in (load_conflict(r.path, tasks) for r in g.runs if r.path.is_dir()) if d is not None]
              for g in groups}
    present = [g for g in groups if series[g.label]]
    if not present:
        return None
    everything = [d for ds in series.values() for d in ds]
    edges, centers, width = step_bins(everything)
    colors = line_colors([g.label for g in groups])
    keys = weight_keys(tasks)
    panels = conflict_panels(tasks if own else None)
    conflicts = [k for k in panels if not own or _logged(everything, k)]
    if own:
        weighted = [g for g in present if any(_logged(series[g.label], k) for k in keys)]
        weight_panels = [(k, t) for k, t in zip(keys, tasks) if weighted and _logged(everything, k)]
    else:
        weighted = [g for g in present if _logged(series[g.label], WEIGHTS[0])]
        weight_panels = [(None, None)] if weighted else []
    fig, axes = _layout(len(conflicts) + len(weight_panels), own)
    for ax, key in zip(axes, conflicts):
        for g in present:
            _row_line(ax, series[g.label], key, edges, centers, colors[g.label], g.label)
        _style(ax, key, width, panels)
        if not own and ax.get_legend_handles_labels()[0]:  # a panel with only its reference lines has no legend
            ax.legend(fontsize="small")
    for ax, (key, task) in zip(axes[len(conflicts):], weight_panels):
        if not own:  # ImageNet + COCO: both weights in one panel, as always
            for g in weighted:
                for k, dash in zip(WEIGHTS, ("-", "--")):
                    mean, _, _ = band([binned(d["step"], d[k], edges) for d in series[g.label]])
                    ax.plot(centers, mean, dash, color=colors[g.label], linewidth=1.4,
                            label=f"{g.label}, {k.rsplit('_', 1)[1]}")
            _weight_axis(ax, "The method's task weights (solid: cls, dashed: seg)", width)
            ax.legend(fontsize="small")
            continue
        for g in weighted:
            _row_line(ax, series[g.label], key, edges, centers, colors[g.label], g.label)
        _weight_axis(ax, f"The method's weight of {task}", width)
    if own:
        legends(fig, axes, len(axes) > 2)
    of = "" if workload is None else f" of {workload}"
    fig.suptitle(f"Gradient conflict{of} over the shared parameters (line: mean over seeds, band: min-max over seeds)")
    return save(fig, path)


def plot_run_conflict(run: Run, label: str, path: Path, tasks: Sequence[str] | None = None) -> Path | None:
    """One run's cosine, norm ratio and method weights per step (``tasks``; None: ImageNet + COCO's); None when
    the run logged none of them."""
    own = tasks is not None
    tasks = tuple(tasks) if own else TASKS
    data = load_conflict(run.path, tasks)
    if data is None:
        return None
    edges, centers, width = step_bins([data])
    keys = weight_keys(tasks)
    panels = conflict_panels(tasks if own else None)
    conflicts = [k for k in panels if not own or _logged([data], k)]
    weighted = any(_logged([data], k) for k in keys)
    fig, axes = _layout(len(conflicts) + weighted, own)
    for ax, key in zip(axes, conflicts):
        keep = np.isfinite(data[key])
        ax.plot(data["step"][keep], data[key][keep], ".", color="C0", alpha=0.25, markersize=3, label="per step")
        ax.plot(centers, binned(data["step"], data[key], edges), color="C0", linewidth=1.4, label="bin mean")
        _style(ax, key, 1, panels)
        ax.legend(fontsize="small")
    if weighted:
        ax = axes[len(conflicts)]
        for i, (key, task) in enumerate(zip(keys, tasks)):
            if own and not _logged([data], key):
                continue
            ax.plot(centers, binned(data["step"], data[key], edges), color=f"C{(i + 1) % 10}", linewidth=1.4,
                    label=task)
        _weight_axis(ax, "The method's task weights", width)
        ax.legend(fontsize="small", **({"ncols": 2} if len(ax.lines) > 4 else {}))
    fig.suptitle(f"{label}: gradient conflict over the shared parameters")
    return save(fig, path)


def write_conflict_plots(groups: Sequence[RowRuns], out: Path, tasks: Sequence[str] | None = None,
                         workload: str | None = None) -> list[Path]:
    """conflict.png and conflict-<run>.png in ``out``, for the runs that logged the conflict fields of a
    workload of ``tasks`` (None: ImageNet + COCO; ``workload`` names another in conflict.png's title)."""
    summary = plot_comparison_conflict(groups, out / "conflict.png", tasks, workload)
    if summary is None:
        return []
    files = [summary]
    used: set[str] = set()
    for group in groups:
        for run in group.runs:
            # runs gathered from several folders may share a folder name: the parent tells them apart
            name = run.path.name if run.path.name not in used else f"{run.path.parent.name}-{run.path.name}"
            written = plot_run_conflict(run, name, out / f"conflict-{name}.png", tasks)
            if written is not None:
                used.add(name)
                files.append(written)
    return files
