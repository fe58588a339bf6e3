"""Workloads: the tasks a run trains together, their data and their model (see ``types``)."""

from .types import BATCH_SHAPES, Metric, Task, Workload, WorkloadData, load_callable

__all__ = ["BATCH_SHAPES", "Metric", "Task", "Workload", "WorkloadData", "load_callable"]
