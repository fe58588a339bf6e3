"""MTAdamV2 (DESIGN §3) in plain PyTorch: the executable spec of the fused kernels and their fallback.

The function here takes exactly the arguments of torch.ops.mtbench.mtadamv2_ and keeps its
state in the same layout, so an optimizer can switch between the two at any step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# A running norm at or below this counts as zero: such a task is never the anchor and keeps its
# weight unscaled (DESIGN §3, steps 2 and 3).
NORM_FLOOR = 1e-10


def mtadamv2_(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor | None],
    exp_avgs: Sequence[torch.Tensor],
    exp_avg_sqs: Sequence[torch.Tensor],
    norm_avgs: Sequence[torch.Tensor],
    steps: Sequence[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    norm_beta: float,
    eps: float,
    weight_decay: float,
    task_weights: Sequence[float],
) -> None:
    """One MTAdamV2 step over `params`, in place.

    grads: task-major, ``grads[t * len(params) + i]`` is task t's gradient of ``params[i]`` or None.
    exp_avgs[i], exp_avg_sqs[i]: ``[T, *params[i].shape]``, per-task moments in float32 (float64
    for float64 params); the rows of a task that has not reached params[i] yet are zero.
    norm_avgs[i]: ``[T]`` running gradient norms, negative until task t first reaches params[i].
    steps[i]: the step count of params[i], this step included.
    A parameter without any gradient in this step is left as it is, state included.
    """
    if not params:
        return
    # Like the compiled op, one call takes tensors of one device and dtype.
    weights = torch.tensor(task_weights, dtype=exp_avgs[0].dtype, device=params[0].device)
    num_params = len(params)
    for i, param in enumerate(params):
        param_grads = [grads[t * num_params + i] for t in range(len(task_weights))]
        if all(g is None for g in param_grads):
            continue
        _step_param(param, param_grads, exp_avgs[i], exp_avg_sqs[i], norm_avgs[i], steps[i], lr=lr, beta1=beta1,
                    beta2=beta2, norm_beta=norm_beta, eps=eps, weight_decay=weight_decay, weights=weights)


def _step_param(param, grads, exp_avg, exp_avg_sq, norm_avg, step, *, lr, beta1, beta2, norm_beta, eps,
                weight_decay, weights) -> None:
    opmath = exp_avg.dtype

    # 1. Running norms of the tasks that reach the parameter in this step.
    given = torch.zeros_like(norm_avg, dtype=torch.bool)
    for t, grad in enumerate(grads):
        if grad is not None:
            given[t] = True
            nu = torch.linalg.vector_norm(grad, dtype=opmath)
            first = norm_avg[t] < 0
            norm_avg[t] = torch.where(first, nu, norm_beta * norm_avg[t] + (1 - norm_beta) * nu)

    # 2-3. The anchor is the first task reaching the parameter now with a non-zero running norm;
    # every task with a non-zero norm is scaled to the anchor's norm. Written with tensor ops so
    # that no value travels back to the host.
    nonzero = norm_avg > NORM_FLOOR
    candidates = given & nonzero
    anchor_norm = norm_avg[candidates.int().argmax()]
    scale = torch.where(candidates.any() & nonzero, weights * anchor_norm / norm_avg, weights)

    # 4. Per-task moments of the scaled gradients. A task absent in this step contributes g = 0;
    # a task that never reached the parameter has zero rows, which stay zero, add nothing to the
    # sum and give d_t = eps, which no other d_t undercuts, so it changes nothing.
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = math.sqrt(1 - beta2**step)
    denom = None
    for t, grad in enumerate(grads):
        exp_avg[t].mul_(beta1)
        exp_avg_sq[t].mul_(beta2)
        if grad is not None:
            scaled = grad.to(opmath) * scale[t]
            exp_avg[t].add_(scaled, alpha=1 - beta1)
            exp_avg_sq[t].addcmul_(scaled, scaled, value=1 - beta2)
        d = exp_avg_sq[t].sqrt().div_(bias_correction2_sqrt).add_(eps)
        denom = d if denom is None else torch.maximum(denom, d, out=denom)

    # 5. Decoupled weight decay and the update, in opmath for low-precision parameters.
    step_size = lr / bias_correction1
    update = exp_avg.sum(0).div_(denom).mul_(step_size)
    param.copy_(param.to(opmath).mul(1 - lr * weight_decay).sub_(update))
