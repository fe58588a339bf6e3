"""The ImageNet + COCO workload (mtbench.workloads.imagenet_coco), the default of every run."""

from mtbench import hookimpl

__all__ = ["mtbench_workloads"]


@hookimpl
def mtbench_workloads():
    from mtbench.workloads.imagenet_coco import WORKLOAD

    return [WORKLOAD]
