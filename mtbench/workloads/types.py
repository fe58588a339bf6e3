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

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

from ..errors import ConfigError
from ..presets.base import Factory
from ..text import failure_reason

__all__ = ["BATCH_SHAPES", "Metric", "Task", "Workload", "WorkloadData", "load_callable"]

# How a workload's batches come: a batch of its own images per task, or one batch labelled for every task.
BATCH_SHAPES = ("per_task", "shared")


def load_callable(factory: Factory, what: str) -> Callable[..., Any]:
    """``factory`` as a callable: a dotted name ``package.module:attr`` is imported now; ConfigError
    naming ``what`` (e.g. "workload 'nyuv2': build_model") when that fails."""
    if not isinstance(factory, str):
        if not callable(factory):
            raise ConfigError(f"{what} is {type(factory).__name__}, not callable")
        return factory
    module_name, _, attr = factory.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except (Exception, SystemExit) as exc:  # a plugin's sys.exit() must not end mtbench silently
        raise ConfigError(f"{what}: importing {factory!r} {failure_reason(exc)}") from None
    if not callable(found):
        raise ConfigError(f"{what}: {factory!r} is {type(found).__name__}, not callable")
    return found


@dataclass(frozen=True)
class Metric:
    """One evaluation metric of a task: its key in the run's metrics, its title, its direction."""

    name: str
    title: str
    higher_is_better: bool
    unit: str = ""  # "%" for a fraction shown as a percentage, "deg", "m", or "" (a plain number)

    def show(self, value: float | None) -> str:
        """``top-1 22.0%``, ``mIoU 0.082``: the title and a value as the logs show them."""
        if value is None:
            return f"{self.title} -"
        return f"{self.title} {value:.1%}" if self.unit == "%" else f"{self.title} {value:.3f}"


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

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)


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

    @property
    def shared_batch(self) -> bool:
        """Whether one image set is labelled for every task (one batch per step, T heads)."""
        return self.batches == "shared"

    def metrics(self) -> list[tuple[Task, Metric]]:
        """Every task's metrics, in task order: the keys of the run's metrics."""
        return [(task, metric) for task in self.tasks for metric in task.metrics]

    def label(self) -> str:
        origin = f" from plugin {self.source}" if self.source else ""
        return f"workload {self.name!r}{origin}"


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
