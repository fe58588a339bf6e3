"""mtbench: compare PyTorch optimizers on multi-task learning (ImageNet classification + COCO segmentation)."""

from . import ops  # registers torch.ops.mtbench.* (or warns once and falls back to pure PyTorch)
from .plugins.hookspecs import hookimpl
from .presets import Expected, OptimizerPreset, Param, standard_params

__version__ = "0.1.0"

__all__ = ["Expected", "OptimizerPreset", "Param", "hookimpl", "standard_params", "__version__"]
