"""A run's parts from its workload: the data sets, the model, each task's loss and meter, checked
against NOTE [workload contract] where they enter the trainer."""

from __future__ import annotations

from typing import Any, Callable

from ..errors import ConfigError
from .types import Workload, WorkloadData, load_callable

__all__ = ["build_data", "build_model", "task_losses", "task_meters"]

DEFAULT = "imagenet-coco"  # the workload that also takes --imagenet and --coco


def build_data(workload: Workload, config: Any) -> WorkloadData:
    """The workload's data sets for a RunConfig (``--data``, image size, limits, holdout); ConfigError
    when the options do not fit the workload or what its builder returns breaks the contract."""
    extra = {k: v for k, v in (("imagenet", config.imagenet), ("coco", config.coco)) if v is not None}
    if extra and workload.name != DEFAULT:
        raise ConfigError(f"--{next(iter(extra))} is for the {DEFAULT} workload; workload {workload.name!r} "
                          "takes its data with --data DIR")
    build = load_callable(workload.build_data, f"{workload.label()}: build_data")
    data = build(config.data, image_size=config.image_size, limit_train=config.limit_train,
                 limit_val=config.limit_val, holdout=config.holdout, **extra)
    if not isinstance(data, WorkloadData):
        raise ConfigError(f"{workload.label()}: build_data returned {type(data).__name__}, expected mtbench.WorkloadData")
    expected = 1 if workload.shared_batch else len(workload.tasks)
    for split, sets in (("training", data.train), ("validation", data.val), ("holdout", data.holdout or [None] * expected)):
        if len(sets) != expected:
            raise ConfigError(f"{workload.label()}: build_data returned {len(sets)} {split} sets, expected {expected} "
                              f"({'one shared set' if workload.shared_batch else 'one per task'}; see NOTE "
                              "[workload contract])")
    return data


def build_model(workload: Workload, backbone: str, data: WorkloadData):
    return load_callable(workload.build_model, f"{workload.label()}: build_model")(backbone, data)


def task_losses(workload: Workload) -> list[Callable]:
    return [load_callable(t.loss, f"{workload.label()}: task {t.name!r} loss") for t in workload.tasks]


def task_meters(workload: Workload, data: WorkloadData, device) -> list:
    """A fresh meter per task (one evaluation split's counts)."""
    return [load_callable(t.meter, f"{workload.label()}: task {t.name!r} meter")(data, device)
            for t in workload.tasks]
