"""MTAdamV2, the multi-task optimizer of mtbench (fused kernels in torch.ops.mtbench, plain-PyTorch reference)."""

from .mtadamv2 import MTAdamV2

__all__ = ["MTAdamV2"]
