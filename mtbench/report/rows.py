"""The rows of a comparison: what each trains, and the names `compare` gives them and `report` reads.

A row is an optimizer with a multi-task method, task weights and tasks, run once per seed:
``adam`` (method sum, the comparison's task weights, both tasks), ``adam+pcgrad`` (another method),
``adam@w0.3`` (a point of the scalarization sweep: task weights (0.3, 0.7)) and ``adam[cls]`` /
``adam[seg]`` (single-task baselines). Its role says what the report does with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..config import SUM_METHOD, TASKS
from ..errors import DataError

__all__ = [
    "ROLES", "RowSpec", "same_weighting", "sweep_weight",
]

# row: an ordinary compared row; sweep: a point of the scalarization front; baseline: single-task, for Δm
ROLES = ("row", "sweep", "baseline")


def sweep_weight(task_weights: Sequence[float] | None) -> float | None:
    """The first task's share w of a pair of task weights, (w, 1 - w) once normalised (ImageNet + COCO: cls's)."""
    if not task_weights or len(task_weights) != 2 or not sum(task_weights) > 0:
        return None
    return task_weights[0] / (task_weights[0] + task_weights[1])


def same_weighting(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Whether two pairs of task weights weigh the tasks alike: (1, 1) as (0.5, 0.5); None is equal weights.

    The one identity of a row's weighting: the plain row's (the comparison's ``--task-weights``) and a
    sweep point's are compared by it, so a point that is the plain row is neither named nor trained twice.
    """
    wa, wb = (0.5 if w is None else sweep_weight(w) for w in (a, b))
    if wa is None or wb is None:
        return wa == wb
    return abs(wa - wb) <= 1e-9


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
        w = sweep_weight(weights)
        if len(tasks) == 1:
            name, role = f"{name}[{tasks[0]}]", "baseline"
        elif w is not None and not same_weighting(weights, plain):
            name += f"@w{w:g}"
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
        return sweep_weight(self.task_weights)

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
