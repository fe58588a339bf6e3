"""Parsing a comparison's lists as the command line gives them: seeds, optimizers, methods, the task-weight
sweep (whose points need the workload's task count, so plan_rows expands it). Each error is one ConfigError
line naming the bad value and what was expected."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..config import LIMITS
from ..errors import ConfigError
from ..plugins import Registry

__all__ = [
    "SWEEP_MAX_POINTS", "TaskWeightSweep", "parse_methods", "parse_optimizers", "parse_seeds", "parse_sweep",
]


def parse_seeds(text: str, first: int = 0) -> tuple[int, ...]:
    """``"3"`` -> seeds first, first+1, first+2; ``"0,5,7"`` (any comma) -> exactly those seeds."""
    text = text.strip()
    items = [t.strip() for t in text.split(",")]
    try:
        values = [int(t) for t in items if t]
    except ValueError:
        values = []
    if not values or (len(items) > 1 and "" in items[:-1]):
        raise ConfigError(f"{text!r} does not parse: expected a count like 3 or a list like 0,5,7")
    most, top = LIMITS["seeds"].high, LIMITS["seed"].high
    if "," not in text:
        if not 1 <= values[0] <= most:
            raise ConfigError(f"{text!r}: a seed count must be at least 1 and at most {most} (a list is written 0,5,7)")
        return tuple(range(first, first + values[0]))
    if len(values) > most:
        raise ConfigError(f"{text[:20]!r}... lists {len(values)} seeds: expected at most {most}")
    if any(not 0 <= v <= top for v in values):
        raise ConfigError(f"{text!r}: seeds must be >= 0 and <= {top}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{text!r} repeats a seed")
    return tuple(values)


def _names(text: str, example: str) -> list[str]:
    """The names of a comma list, each once; ConfigError for an empty list or a repeated name."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{text!r} is empty: expected a comma list such as {example} (mtbench list shows all)")
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is not None:
        raise ConfigError(f"{repeated!r} is listed twice")
    return names


# NOTE [default rows]: without --optimizers a comparison or a tune takes the guide's presets and every
# other plugin's, not the zoo's (torch.optim's and pytorch-optimizer's, twenty more rows); `all` takes
# every discovered preset. Whichever are chosen are treated alike: same seeds, data and budget.
ZOO_ORIGINS = ("torch", "pytorch-optimizer")


def parse_optimizers(text: str | None, registry: Registry) -> list[str]:
    """The names in a comma list, each checked against the registry; None: the default rows (NOTE
    [default rows]), ``all``: every discovered preset."""
    if text is None or text.strip() == "all":
        names = [name for name, preset in registry.presets.items()
                 if text is not None or preset.listed_origin not in ZOO_ORIGINS]
        if not names:
            raise ConfigError("no optimizer presets were found (mtbench plugins shows why)")
        return names
    names = _names(text, "adam,sgd")
    for name in names:
        registry.get(name)  # ConfigError with a did-you-mean for an unknown name
    return names


def parse_methods(text: str, registry: Registry) -> list[str]:
    """The multi-task methods of a comma list (``sum`` is the plain weighted loss), each checked."""
    names = _names(text, "sum,pcgrad")
    for name in names:
        registry.get_method(name)  # ConfigError with a did-you-mean for an unknown name
    return names


# The most points a task-weight sweep may plan: each is a row trained once per seed per swept optimizer.
SWEEP_MAX_POINTS = 64
SWEEP_EXAMPLES = "0.1,0.3,0.7,0.9 (two tasks), simplex:5 or 0.6:0.2:0.2,0.2:0.6:0.2"
_TOLERANCE = 1e-9  # how far from 1 the weights of a listed point may sum


@dataclass(frozen=True)
class TaskWeightSweep:
    """``--task-weights-sweep`` as given: its points, or the spacing of a simplex lattice, expanded once the
    workload's tasks are known (``points_for``), since the command line is parsed before the workload is.

    ``points``: each listed item's task weights, a plain number w standing for (w, 1 - w); ``spacing``: N of
    ``simplex:N`` (the lattice of mtbench.tuning.simplex, NOTE [simplex lattice]); ``text``: as given.
    """

    text: str
    points: tuple[tuple[float, ...], ...] = ()
    spacing: int | None = None
    shares: bool = False  # every item a plain w: the two-task form

    def points_for(self, tasks: Sequence[str]) -> tuple[tuple[float, ...], ...]:
        """The task weights of every point for a workload of ``tasks``; ConfigError naming the value and
        what it expected when they do not fit (a point of another task count, a lattice with no or too
        many points)."""
        # NOTE [deferred import]: mtbench.tuning's package imports its planner, which imports this package's
        # plan_rows; the lattice is read from tuning.simplex (its one home) once both packages are loaded.
        from ..tuning.simplex import lattice, lattice_size

        t, named = len(tasks), ", ".join(tasks)
        if t < 2:
            raise ConfigError(f"--task-weights-sweep {self.text}: a sweep weighs 2 or more tasks; this workload "
                              f"has {t} ({named})")
        if self.spacing is not None:
            size = lattice_size(t, self.spacing)
            if size == 0:
                raise ConfigError(f"{self.text!r} has no interior point for {t} tasks ({named}): expected "
                                  f"simplex:N with N >= {t}")
            if size > SWEEP_MAX_POINTS:
                raise ConfigError(f"{self.text!r} gives {size} points for {t} tasks: expected at most "
                                  f"{SWEEP_MAX_POINTS} (a smaller N)")
            return tuple(lattice(t, self.spacing))
        if self.shares and t != 2:
            raise ConfigError(f"--task-weights-sweep weighs two tasks (w, 1-w); this workload has {t} ({named}): "
                              f"give simplex:N or points of {t} weights separated by ':' summing to 1")
        wrong = next((p for p in self.points if len(p) != t), None)
        if wrong is not None:
            raise ConfigError(f"{_item(wrong)!r} weighs {len(wrong)} tasks: this workload has {t} ({named}); "
                              f"expected {t} weights separated by ':'")
        return self.points


def _item(point: Sequence[float]) -> str:
    return ":".join(f"{w:g}" for w in point)


def parse_sweep(text: str) -> TaskWeightSweep:
    """``--task-weights-sweep``: ``simplex:N`` (the lattice's interior points, spacing 1/N), or a comma list of
    points, each T weights > 0 summing to 1 separated by ``:`` (``0.6:0.2:0.2``), or for two tasks each a
    share w in (0, 1), the tasks getting (w, 1-w). Checks what needs no workload; ``points_for`` the rest."""
    stripped = text.strip()
    if stripped.lower().startswith("simplex:"):
        value = stripped.partition(":")[2].strip()
        spacing = int(value) if value.isdigit() else 0
        if not 2 <= spacing <= 1000:
            raise ConfigError(f"{stripped!r}: expected simplex:N with N an integer from 2 to 1000 (the lattice "
                              "spacing 1/N; simplex:5 gives 4 points for 2 tasks, 6 for 3)")
        return TaskWeightSweep(stripped, spacing=spacing)
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise ConfigError(f"{text!r} is empty: expected weights such as {SWEEP_EXAMPLES}")
    points: list[tuple[float, ...]] = []
    for item in items:
        point = _sweep_point(item)
        if len(point) != len(points[0] if points else point):
            raise ConfigError(f"{item!r} weighs {len(point)} tasks, {items[0]!r} {len(points[0])}: expected every "
                              "point to weigh the workload's tasks")
        if any(all(abs(a - b) <= _TOLERANCE for a, b in zip(point, p)) for p in points):
            raise ConfigError(f"{item} is listed twice")
        points.append(point)
    if len(points) > SWEEP_MAX_POINTS:
        raise ConfigError(f"{text[:20]!r}... lists {len(points)} points: expected at most {SWEEP_MAX_POINTS}")
    return TaskWeightSweep(text, tuple(points), shares=all(":" not in item for item in items))


def _sweep_point(item: str) -> tuple[float, ...]:
    """One item of the list: a share w (two tasks: (w, 1-w)) or weights w1:w2:... > 0 summing to 1."""
    parts = [p.strip() for p in item.split(":")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        what = "a number" if len(parts) == 1 else "a point of numbers"
        raise ConfigError(f"{item!r} is not {what}: expected weights such as {SWEEP_EXAMPLES}") from None
    if len(values) == 1:
        w = values[0]
        if not 0 < w < 1:  # also refuses nan
            raise ConfigError(f"{item} is out of range: expected each weight w in (0, 1), the tasks "
                              "getting w and 1-w")
        return (w, round(1 - w, 12))
    if not all(0 < v < math.inf for v in values):  # also refuses nan
        raise ConfigError(f"{item}: expected every weight > 0 (a task at 0 is a single-task baseline: "
                          "--single-task)")
    total = math.fsum(values)
    if abs(total - 1) > _TOLERANCE:
        raise ConfigError(f"{item} sums to {total:g}: expected weights summing to 1")
    return tuple(values)
