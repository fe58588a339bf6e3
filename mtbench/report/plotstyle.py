"""The style every figure shares: per-step binning, seed bands, row colours, resolution and the PNG writer.

The figure modules (plots, plots_gradients, tuning's LR sensitivity) draw with these, so a loss curve
and a gradient-conflict curve of the same runs are binned alike and a row keeps its colour. Figures
are written with the Agg canvas: nothing needs a display and no global pyplot state is touched.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..rundir import atomic_writer, finite_number

__all__ = [
    "DPI", "LOSS_BINS", "band", "binned", "grid_shape", "legends", "line_colors", "metric_label", "or_nan", "palette", "panel_grid", "save",
    "step_bins", "unit_scale",
]

LOSS_BINS = 200  # points per per-step curve: each the mean of the steps in its bin (smoothing + thinning)
DPI = 110


def or_nan(value) -> float:
    """A logged value as a float, NaN where it is missing or not finite."""
    x = finite_number(value)
    return math.nan if x is None else x


def step_bins(series: Sequence[Mapping[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, int]:
    """Bin edges and centres over the longest of ``series`` (each with a "step" array), and the bin width."""
    last = max((int(d["step"].max()) for d in series if len(d["step"])), default=1)
    bins = min(LOSS_BINS, last)
    edges = np.linspace(0.5, last + 0.5, bins + 1)
    return edges, (edges[:-1] + edges[1:]) / 2, round(last / bins)


def binned(steps: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of the finite values in each bin; NaN for an empty bin."""
    keep = np.isfinite(values)
    idx = np.clip(np.searchsorted(edges, steps[keep], side="right") - 1, 0, len(edges) - 2)
    sums = np.bincount(idx, weights=values[keep], minlength=len(edges) - 1)
    counts = np.bincount(idx, minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def band(curves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over seeds, ignoring seeds without a value at that point."""
    stack = np.vstack(curves)
    present = np.isfinite(stack).any(axis=0)
    out = np.full((3, stack.shape[1]), np.nan)
    if present.any():
        sub = stack[:, present]
        with np.errstate(invalid="ignore"):
            out[0, present] = np.nanmean(sub, axis=0)
            out[1, present] = np.nanmin(sub, axis=0)
            out[2, present] = np.nanmax(sub, axis=0)
    return out[0], out[1], out[2]


def palette(n: int) -> list[tuple]:
    """``n`` distinct line colours, in order (tab10, tab20 beyond ten, repeating beyond twenty)."""
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def line_colors(labels: Sequence[str]) -> dict[str, tuple]:
    """A colour per label, by position: the same rows get the same colours in every figure."""
    return dict(zip(labels, palette(len(labels))))


def unit_scale(unit: str) -> float:
    """The factor a metric's value is drawn at: a fraction whose unit is "%" as a percentage, else as it is."""
    return 100.0 if unit == "%" else 1.0


def metric_label(title: str, unit: str, higher_is_better: bool) -> str:
    """An axis label of a task's metric: its title, its unit in brackets where it has one, and its direction
    (↑ higher is better, ↓ lower), e.g. "abs err (m) ↓"."""
    return f"{title}{f' ({unit})' if unit else ''} {'↑' if higher_is_better else '↓'}"


# Panels per row of a figure of n panels (one per task, up to eight, and a joint one): 2 x 2 for four, rows of
# three up to six, of four up to eight (2 x 4: eight tasks' panels stay wide enough to read a curve in).
_COLUMNS = {1: 1, 2: 2, 3: 3, 4: 2, 5: 3, 6: 3, 7: 4, 8: 4, 9: 3}


def panel_grid(fig: Figure, n: int) -> list:
    """``n`` panels of ``fig`` in rows (see _COLUMNS), row by row; the grid's unused cells are hidden."""
    cols = _COLUMNS.get(n, 4)
    axes = list(np.atleast_1d(fig.subplots((n + cols - 1) // cols, cols, squeeze=False).ravel()))
    for ax in axes[n:]:
        ax.set_visible(False)
    return axes[:n]


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of panel_grid's grid of ``n`` panels, to size a figure by."""
    cols = _COLUMNS.get(n, 4)
    return (n + cols - 1) // cols, cols


def legends(fig: Figure, axes: Sequence, below: bool) -> None:
    """A legend in each panel that has lines, or (``below``: a figure of many panels) one legend below the
    panels of every label drawn in any of them, each once."""
    if not below:
        for ax in axes:
            if ax.lines:
                ax.legend(fontsize="small")
        return
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=min(8, len(seen)),
                   fontsize="small")


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at the shared resolution, atomically."""
    FigureCanvasAgg(fig)
    with atomic_writer(path, binary=True) as f:
        fig.savefig(f, dpi=DPI, format="png")
    return path
