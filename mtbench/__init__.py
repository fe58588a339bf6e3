"""mtbench: compare PyTorch optimizers on multi-task learning (ImageNet classification + COCO segmentation).

Importing the package is cheap (no torch): the names that need torch load on first use, so
``mtbench --help`` and shell completion stay instant.
"""

from __future__ import annotations

from .lazy import lazy_names
from .methods import build_method
from .plugins.hookspecs import hookimpl
from .presets import Expected, Method, MethodPreset, OptimizerPreset, Param, SearchDim, standard_params
from .workloads import Metric, Task, Workload, WorkloadData

__version__ = "0.1.0"

# public name -> module that defines it; imported (with torch) when the name is first used
_LAZY = {
    "MTAdamV2": "mtbench.optim",
    "AggregationMethod": "mtbench.aggregation",
    "GramianWeightingMethod": "mtbench.aggregation",
    "JacobianMethod": "mtbench.aggregation",
    "LossWeightingMethod": "mtbench.aggregation",
    "MethodRng": "mtbench.method_rng",
    "TaskGradients": "mtbench.aggregation",
    "check_task_vector": "mtbench.aggregation",
}

__all__ = [
    "Expected", "Method", "MethodPreset", "Metric", "OptimizerPreset", "Param", "SearchDim", "Task", "Workload",
    "WorkloadData", "build_method", "hookimpl", "standard_params",
    "__version__", *_LAZY,
]


__getattr__ = lazy_names(globals(), _LAZY)
