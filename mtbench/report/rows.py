"""The rows of a comparison: what each trains, and the names `compare` gives them and `report` reads.

A row is an optimizer with a multi-task method, task weights and tasks, run once per seed:
``adam`` (method sum, the comparison's task weights, both tasks), ``adam+pcgrad`` (another method),
``adam@w0.3`` (a point of the scalarization sweep: task weights (0.3, 0.7)), ``adam@w0.6_0.2_0.2`` (a
point of a sweep over three or more tasks: task weights (0.6, 0.2, 0.2)) and ``adam[cls]`` / ``adam[seg]``
(single-task baselines). Its role says what the report does with it.

NOTE [sweep labels]
    A row's label is also its run directories' name (``runs/<row>-seed<k>``), so it stays a valid file
    name on every system: no ``/``, no ``:`` (Windows, and macOS's Finder), no ``,`` (a --optimizers or
    shell list). Over two tasks the label keeps the first task's share alone, ``@w0.3``, as it always
    has; over more, every weight, normalised, in the workload's task order, joined by ``_``:
    ``@w0.6_0.2_0.2``. Weights are printed with 6 significant digits, so lattice points (k / N) stay
    apart; two rows that would share a name are refused by the planner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..config import SUM_METHOD, TASKS
from ..errors import DataError

__all__ = [
    "ROLES", "RowSpec", "normalised_weights", "same_weighting", "sweep_weight", "weights_label",
]

# row: an ordinary compared row; sweep: a point of the scalarization front; baseline: single-task, for Δm
ROLES = ("row", "sweep", "baseline")


def sweep_weight(task_weights: Sequence[float] | None) -> float | None:
    """The first task's share w of a pair of task weights, (w, 1 - w) once normalised (ImageNet + COCO: cls's)."""
    if not task_weights or len(task_weights) != 2 or not sum(task_weights) > 0:
        return None
    return task_weights[0] / (task_weights[0] + task_weights[1])


def normalised_weights(task_weights: Sequence[float] | None) -> tuple[float, ...] | None:
    """Task weights scaled to sum to 1; None for None or weights that do not sum to more than 0."""
    if not task_weights:
        return None
    total = float(sum(task_weights))
    if not total > 0:
        return None
    return tuple(float(w) / total for w in task_weights)


def same_weighting(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Whether two sets of task weights weigh the tasks alike: (1, 1) as (0.5, 0.5); None is equal weights.

    The one identity of a row's weighting: the plain row's (the comparison's ``--task-weights``) and a
    sweep point's are compared by it, so a point that is the plain row is neither named nor trained twice.
    Weights of different task counts never weigh alike.
    """
    if a is None and b is None:
        return True
    n = len(a if a is not None else b)
    wa, wb = (normalised_weights((1.0,) * n if w is None else w) for w in (a, b))
    if wa is None or wb is None or len(wa) != len(wb):
        return wa == wb
    return all(abs(x - y) <= 1e-9 for x, y in zip(wa, wb))


def weights_label(task_weights: Sequence[float] | None) -> str | None:
    """How a sweep point's weighting is written in its row's label (NOTE [sweep labels]): ``0.3`` for
    two tasks (the first task's share), ``0.6_0.2_0.2`` for more; None for weights summing to 0."""
    if task_weights is not None and len(task_weights) == 2:
        w = sweep_weight(task_weights)
        return None if w is None else f"{w:g}"
    weights = normalised_weights(task_weights)
    return None if weights is None else "_".join(f"{w:g}" for w in weights)


@dataclass(frozen=True)
class RowSpec:
    """One line of a comparison; its runs differ only by seed.

    ``task_weights`` None: the comparison's own ``--task-weights`` (a plain row). ``tasks``: those it
    trains, in its workload's order (the default workload's, ImageNet + COCO, unless named).
    """

    name: str
    optimizer: str
    method: str = SUM_METHOD
    task_weights: tuple[float, ...] | None = None
    tasks: tuple[str, ...] = TASKS
    role: str = "row"

    @classmethod
    def of(cls, optimizer: str, method: str | None = None, task_weights: Sequence[float] | None = None,
           tasks: Sequence[str] | None = None, plain: Sequence[float] | None = None,
           all_tasks: Sequence[str] = TASKS) -> RowSpec:
        """The row these settings make, named and given a role by the one rule (see the module).

        ``plain``: the task weights of the comparison's plain rows (None: equal weights); other
        weights make a point of the sweep, named after its weight. ``tasks`` (in the workload's order)
        default to ``all_tasks``, the workload's.
        """
        method = method or SUM_METHOD
        tasks = tuple(dict.fromkeys(tasks)) if tasks else tuple(all_tasks)
        weights = tuple(float(w) for w in task_weights) if task_weights else None
        name, role = optimizer + ("" if method == SUM_METHOD else f"+{method}"), "row"
        label = weights_label(weights) if weights is not None and len(weights) >= 2 else None
        if len(tasks) == 1 and len(weights or all_tasks) > 1:  # one task of several (a 1-task workload's rows are rows)
            name, role = f"{name}[{tasks[0]}]", "baseline"
        elif label is not None and not same_weighting(weights, plain):
            name += f"@w{label}"
            role = "sweep" if method == SUM_METHOD else "row"
        return cls(name, optimizer, method, weights, tasks, role)

    @classmethod
    def from_record(cls, record: Any, where: str) -> RowSpec:
        """A row of comparison.json's ``rows``; DataError naming what is wrong with it."""
        if not isinstance(record, dict) or not record.get("name") or not record.get("optimizer"):
            raise DataError(f"{where}: row {record!r} is not a row (expected an object with name, optimizer, "
                            f"method, task_weights, tasks and role)")
        role = record.get("role", "row")
        if role not in ROLES:
            raise DataError(f"{where}: row {record['name']!r} has role {role!r} (expected one of {', '.join(ROLES)})")
        derived = cls.of(record["optimizer"], record.get("method"), record.get("task_weights"), record.get("tasks"))
        return cls(str(record["name"]), derived.optimizer, derived.method, derived.task_weights, derived.tasks, role)

    @property
    def weight(self) -> float | None:
        """The first task's share of two tasks' weights (None for more tasks: see ``weights_text``)."""
        return sweep_weight(self.task_weights)

    @property
    def weights_text(self) -> str | None:
        """The row's weighting as a table or a figure shows it: ``0.3`` (the first of two tasks' share, as
        ``weight``), ``0.6:0.2:0.2`` for more tasks (normalised); None without task weights."""
        if self.task_weights is None or len(self.task_weights) < 2:
            return None
        if len(self.task_weights) == 2:
            w = self.weight
            return None if w is None else f"{w:g}"
        weights = normalised_weights(self.task_weights)
        return None if weights is None else ":".join(f"{w:g}" for w in weights)

    def options(self) -> dict[str, str]:
        """The run options (as `mtbench run` names them) this row sets over the comparison's."""
        options = {"tasks": ",".join(self.tasks)}
        if self.task_weights is not None:
            options["task_weights"] = ",".join(repr(w) for w in self.task_weights)
        return options

    def record(self, task_weights: Sequence[float] | None = None) -> dict:
        """The row as comparison.json lists it; ``task_weights``: those its runs use, where known."""
        weights = task_weights if task_weights is not None else self.task_weights
        return {"name": self.name, "optimizer": self.optimizer, "method": self.method,
                "task_weights": list(weights) if weights is not None else None,
                "tasks": list(self.tasks), "role": self.role}
