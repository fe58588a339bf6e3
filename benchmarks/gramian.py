"""The Gramian route of multi-task methods against a plain weighted sum of the task gradients.

The T = 2 per-task gradients lie in one [T, N] buffer, each parameter's a view buf[:, a:b] (the
trainer's layout), and the combined gradient goes to per-parameter views of one flat [N] buffer.
Timed in one process, interleaved round by round (mtbench.bench.median_ms), on a torchvision
model's shapes:

  one-pass sum, torch.add per parameter  out_i = g0_i + 1.5 * g1_i: the least a weighted sum moves
                                         (T reads and one write per element); the baseline
  one-pass sum, torch.mv on the buffer   the same as one BLAS call over the whole buffer
  weighted_sum_ (compiled)               the same, one multi-tensor call, weights from a tensor
  gramian + weighted_sum_ (compiled)     the Gramian route: G in one read pass, weights from G, the sum
  Gramian route, torch per parameter     G += J_i @ J_i.T per parameter, then mul + addcmul_
  Gramian route, torch on the buffer     G = buf @ buf.T, then torch.mv into the flat output

The weights a method derives from G are stood in for by 1 / sqrt(diag G) (each task's gradient
scaled to unit norm): T numbers from a T x T matrix, microseconds. Byte floor of the Gramian route
against the one-pass sum: (2T + 1) / (T + 1) = 5/3.

    python benchmarks/gramian.py [--model resnet18] [--device auto] [--repeat 20] [--threads N]

Every row runs on the one device that --device names (auto: cuda when a GPU is visible, else cpu).

Target: gramian + weighted_sum_ <= 2.0x the one-pass sum.
"""

import argparse
import math

import torch

from mtbench import ops
from mtbench.bench import median_ms, parameter_shapes
from mtbench.distributed import resolve_device
from mtbench.errors import ConfigError
from mtbench.text import format_table


TASKS = 2


def unit_norm_weights(gramian: torch.Tensor) -> torch.Tensor:
    return gramian.diagonal().rsqrt()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--device", default="auto", help="auto (cuda when a GPU is visible, else cpu), cpu or cuda:N")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except ConfigError as exc:
        parser.error(str(exc))
    if not ops.supports(device):
        parser.error(f"the compiled ops have no kernels for {device}: {ops.describe()}")

    shapes = parameter_shapes(args.model)
    sizes = [math.prod(s) for s in shapes]
    numel = sum(sizes)
    buf = torch.randn(TASKS, numel, generator=torch.Generator().manual_seed(0)).to(device)
    flat_out = torch.empty(numel, device=device)
    task_grads, outs, start = [], [], 0
    for shape, size in zip(shapes, sizes):
        task_grads.append(buf[:, start:start + size].view(TASKS, *shape))
        outs.append(flat_out[start:start + size].view(shape))
        start += size
    rows = [g.reshape(TASKS, size) for g, size in zip(task_grads, sizes)]
    fixed_weights = torch.tensor([1.0, 1.5], device=device)

    def one_pass_per_parameter():
        for out, g in zip(outs, task_grads):
            torch.add(g[0], g[1], alpha=1.5, out=out)

    def gramian_route_compiled():
        ops.weighted_sum_(outs, task_grads, unit_norm_weights(ops.gramian(task_grads)))

    def gramian_route_per_parameter():
        weights = unit_norm_weights(sum(j @ j.T for j in rows))
        for out, g in zip(outs, task_grads):
            torch.mul(g[0], weights[0], out=out)
            out.addcmul_(g[1], weights[1])

    def gramian_route_on_buffer():
        torch.mv(buf.T, unit_norm_weights(buf @ buf.T), out=flat_out)

    one_pass, route = TASKS + 1, 2 * TASKS + 1  # elements moved per parameter element
    candidates = [
        ("one-pass sum, torch.add per parameter", one_pass_per_parameter, one_pass),
        ("one-pass sum, torch.mv on the buffer", lambda: torch.mv(buf.T, fixed_weights, out=flat_out), one_pass),
        ("weighted_sum_ (compiled)", lambda: ops.weighted_sum_(outs, task_grads, fixed_weights), one_pass),
        ("gramian + weighted_sum_ (compiled)", gramian_route_compiled, route),
        ("Gramian route, torch per parameter", gramian_route_per_parameter, route),
        ("Gramian route, torch on the buffer", gramian_route_on_buffer, route),
    ]
    times = median_ms([step for _, step, _ in candidates], args.repeat, device)
    element_size = buf.element_size()
    table = [[name, f"{ms:.2f}", f"{elements * numel * element_size / (ms * 1e-3) / 1e9:.1f}", f"{ms / times[0]:.2f}x",
              f"{elements / one_pass:.2f}x"] for (name, _, elements), ms in zip(candidates, times)]
    print(f"{args.model} shapes ({numel / 1e6:.2f} M parameters in {len(shapes)} tensors), T={TASKS}, float32 "
          f"on {device} ({torch.get_num_threads()} threads), median of {args.repeat}; {ops.describe()}")
    print()
    print(format_table(["route", "ms", "GB/s", "vs one-pass sum", "floor"], table))
    print()
    print(f"gramian + weighted_sum_ / one-pass sum: {times[3] / times[0]:.2f}  (target <= 2.0)")


if __name__ == "__main__":
    main()
