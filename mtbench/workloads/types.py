"""What a workload is, as data: its tasks, their metrics, how their batches come, and what builds the
model and the data. Nothing here imports torch (``mtbench list`` shows workloads without it).

NOTE [workload contract]:
- ``Workload.build_data(root, image_size=..., limit_train=..., limit_val=..., holdout=...)`` returns a
  ``WorkloadData``. With ``batches="per_task"`` each task has its own data sets (``train[t]``,
  ``val[t]``, ``holdout[t]``), each item ``(image, target)``; with ``batches="shared"`` one image set
  is labelled for every task (``train[0]``, ``val[0]``, ``holdout[0]`` only), each item
  ``(image, (target_0, ..., target_{T-1}))``.
- ``Workload.build_model(backbone, data)`` returns a ``torch.nn.Module``. Per-task batches:
  ``model(x_0, ..., x_{T-1})`` with None for a task the step does not run, returning a tuple of T
  outputs (None where its input was None). Shared batch: ``model(x)`` returning a tuple of T outputs.
  Either way every task's output comes from one call (DistributedDataParallel sees one forward per
  backward), and ``model.last_shared_parameters()`` lists the parameters of its last shared layer
  (what GradNorm reads).
- ``Task.loss(output, target)`` is the task's scalar training loss of one batch;
  ``Task.meter(data, device)`` makes an accumulator with ``update(output, target)``, ``all_reduce()``
  and ``compute() -> {metric name: value}`` holding every one of ``Task.metrics``.
- Metric names are unique within a workload: they are the keys of the run's metrics
  (metrics.jsonl, summary.json, reports).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

from ..presets.base import Factory

__all__ = ["BATCH_SHAPES", "Metric", "Task", "Workload", "WorkloadData"]

# How a workload's batches come: a batch of its own images per task, or one batch labelled for every task.
BATCH_SHAPES = ("per_task", "shared")


@dataclass(frozen=True)
class Metric:
    """One evaluation metric of a task: its key in the run's metrics, its title, its direction."""

    name: str
    title: str
    higher_is_better: bool
    unit: str = ""  # "%" for a fraction shown as a percentage, "deg", "m", or "" (a plain number)


@dataclass(frozen=True)
class Task:
    """One task of a workload.

    ``loss`` and ``meter`` are callables or dotted names (``package.module:attr``) imported when a
    run needs them; ``primary`` names the metric that stands for the task in a joint score.
    """

    name: str  # short, as --tasks and the logs say it: "cls", "seg", "depth", "normal", "left"
    title: str  # "classification"
    metrics: tuple[Metric, ...]
    primary: str
    loss: Factory
    meter: Factory

    def __post_init__(self) -> None:
        names = [m.name for m in self.metrics]
        if self.primary not in names:
            raise ValueError(f"task {self.name!r}: primary={self.primary!r} is not one of its metrics "
                             f"({', '.join(names)})")

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)


@dataclass(frozen=True)
class Workload:
    """A multi-task workload, as a plugin declares it (the ``mtbench_workloads`` hook).

    ``build_model`` and ``build_data`` are callables or dotted names (see NOTE [workload contract]).
    ``source`` is filled in by the registry: the plugin that brought it.
    """

    KIND: ClassVar[str] = "workload"
    MAX_TASKS: ClassVar[int] = 8

    name: str
    title: str
    tasks: tuple[Task, ...]
    build_model: Factory
    build_data: Factory
    batches: str = "per_task"
    image_size: int = 64
    batch_size: int = 8
    epochs: int = 5
    description: str = ""
    order: int = 100
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.tasks) <= self.MAX_TASKS:
            raise ValueError(f"workload {self.name!r}: {len(self.tasks)} tasks, expected 1 to {self.MAX_TASKS}")
        if self.batches not in BATCH_SHAPES:
            raise ValueError(f"workload {self.name!r}: batches={self.batches!r}, expected one of "
                             f"{', '.join(BATCH_SHAPES)}")
        for kind, names in (("task", [t.name for t in self.tasks]),
                            ("metric", [m.name for t in self.tasks for m in t.metrics])):
            dup = next((n for n in names if names.count(n) > 1), None)
            if dup is not None:
                raise ValueError(f"workload {self.name!r}: {kind} name {dup!r} is used twice")

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def task(self, name: str) -> Task:
        return next(t for t in self.tasks if t.name == name)


@dataclass
class WorkloadData:
    """The data sets of one run of a workload (see NOTE [workload contract]): one entry per task, or
    one for all tasks when the batch is shared. ``info`` holds what the model builder needs (class
    counts, ...) and what the run records of its data (``synthetic``, its folders)."""

    train: Sequence[Any]
    val: Sequence[Any]
    holdout: Sequence[Any] | None = None
    image_size: int = 64
    synthetic: bool = False
    info: dict[str, Any] = field(default_factory=dict)
