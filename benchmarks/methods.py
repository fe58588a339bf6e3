"""Gramian route cost: UPGrad's full combine against the one-pass weighted sum of the task gradients.

Times, in one process and interleaved round by round (so machine noise hits all alike), on the
parameter shapes of torchvision's ResNet-18 (11.7 M parameters, every one shared by T tasks),
with the task gradients as separate tensors and as rows of one [T, N] buffer:
  weighted_sum  sum_t w_t g_t for every parameter: what any method must at least write
  gramian       the T x T Gramian of the shared Jacobian, accumulated parameter by parameter
  upgrad        the upgrad method's combine: split, Gramian, UPGrad weighting, weighted sum

    python benchmarks/methods.py [--rounds 7] [--tasks 2] [--dtype float32] [--device cpu]

Target: upgrad / weighted_sum <= 2.0 (the Gramian reads the T gradients once more; the sum reads
them and writes the result).
"""

import argparse
import statistics
import time

import torch
import torchvision

from mtbench import build_method
from mtbench.aggregation import gramian, weighted_sum

# separate: one tensor per task and parameter (autograd's own .grad tensors), the plain PyTorch
# route; buffer: rows of one [T, N] buffer, which the compiled kernels read in place.
LAYOUTS = ("separate", "buffer")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def resnet18_shapes() -> list[torch.Size]:
    with torch.device("meta"):  # shapes only: no weights are allocated or initialised
        return [p.shape for p in torchvision.models.resnet18().parameters()]


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3


def task_gradients(shapes, tasks, dtype, device, layout) -> list[list[torch.Tensor]]:
    """Random task gradients: one tensor each (``separate``) or rows of one [T, N] buffer (``buffer``)."""
    gen = torch.Generator(device=device).manual_seed(0)
    total = sum(s.numel() for s in shapes)
    buffer = torch.randn(tasks, total, generator=gen, device=device, dtype=dtype)
    rows, offset = [[] for _ in range(tasks)], 0
    for shape in shapes:
        for t in range(tasks):
            piece = buffer[t, offset : offset + shape.numel()].view(shape)
            rows[t].append(piece if layout == "buffer" else piece.clone())
        offset += shape.numel()
    return rows


def run(rounds: int = 7, tasks: int = 2, dtype: str = "float32", device: str = "cpu") -> dict[str, float]:
    """Median milliseconds of each contender per layout, and the ratios upgrad / weighted_sum."""
    dev = torch.device(device)
    shapes = resnet18_shapes()
    weights = torch.softmax(torch.arange(tasks, dtype=torch.float32, device=dev), 0)
    losses = torch.ones(tasks, device=dev)
    method = build_method("upgrad", tasks)
    contenders = {}
    for layout in LAYOUTS:
        rows = task_gradients(shapes, tasks, DTYPES[dtype], dev, layout)
        contenders[f"{layout}/weighted_sum"] = lambda rows=rows: weighted_sum(rows, weights)
        contenders[f"{layout}/gramian"] = lambda rows=rows: gramian(rows)
        contenders[f"{layout}/upgrad"] = lambda rows=rows: method.combine(rows, losses, 1)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up: allocator, solver import, kernels
        fn()
    for _ in range(rounds):
        for name, fn in contenders.items():
            times[name].append(timed(fn, dev))
    result = {name: statistics.median(values) for name, values in times.items()}
    for layout in LAYOUTS:
        result[f"{layout}/ratio"] = result[f"{layout}/upgrad"] / result[f"{layout}/weighted_sum"]
    result["num_params"] = sum(s.numel() for s in shapes)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    result = run(args.rounds, args.tasks, args.dtype, args.device)
    print(
        f"ResNet-18 shapes: {result['num_params'] / 1e6:.1f} M parameters, T={args.tasks}, {args.dtype}, "
        f"{args.device}, torch threads {torch.get_num_threads()}, median of {args.rounds} rounds"
    )
    for layout in LAYOUTS:
        for name in ("weighted_sum", "gramian", "upgrad"):
            print(f"  {layout + '/' + name:<22} {result[f'{layout}/{name}']:8.2f} ms")
        print(f"  {layout + ' upgrad / weighted_sum':<22} {result[f'{layout}/ratio']:8.2f}  (target <= 2.0)")


if __name__ == "__main__":
    main()
