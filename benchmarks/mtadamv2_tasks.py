"""MTAdamV2's fused step against its memory floor for T = 1..8 tasks.

For each T, the compiled MTAdamV2 step and torch.optim.Adam (fused) step the same parameters of a
torchvision model, timed side by side in one process and interleaved step by step
(mtbench.bench.median_ms); the whole sweep is repeated --rounds times and each figure is the
median over the rounds. The floor is the byte model's (mtbench.bench): (2 + 6T) / 7 for float32
against fused Adam's 7 floats per parameter.

    OMP_NUM_THREADS=1 python benchmarks/mtadamv2_tasks.py --model resnet50 --tasks 2-8 --threads 1 [--clock cpu]

--clock cpu times with this thread's CPU time instead of the wall clock: on a machine whose cores
other processes share, the time the benchmark waits descheduled then counts for no row.

Target: ratio <= 1.10 x floor for every T.
"""

import argparse
import gc
import statistics
import time

import torch

from mtbench import ops
from mtbench.bench import median_ms, parameter_shapes
from mtbench.optim import MTAdamV2
from mtbench.text import format_table

TARGET = 1.10  # the most a ratio may exceed its floor by


def task_counts(text: str) -> list[int]:
    """'2-8' or '2,4,8' as a list of task counts in 1..ops.MAX_TASKS."""
    if "-" in text:
        low, high = (int(part) for part in text.split("-", 1))
        counts = list(range(low, high + 1))
    else:
        counts = [int(part) for part in text.split(",")]
    if not counts or any(not 1 <= t <= ops.MAX_TASKS for t in counts):
        raise ValueError(f"tasks must be in 1..{ops.MAX_TASKS}, got {text!r}")
    return counts


def time_one(shapes, tasks: int, repeat: int, clock: str) -> tuple[float, float]:
    """(MTAdamV2 fused ms, Adam fused ms) for one step on `shapes` with `tasks` tasks."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=generator) for s in shapes]
    task_grads = [[torch.randn(s, generator=generator) for s in shapes] for _ in range(tasks)]
    for p, g in zip(params, task_grads[0]):
        p.grad = g
    mtadam = MTAdamV2(params, task_weights=[1.0 / tasks] * tasks, impl="fused")
    adam = torch.optim.Adam(params, fused=True)
    steps = [lambda: mtadam.step(task_grads), adam.step]
    timer = time.thread_time if clock == "cpu" else time.perf_counter
    return tuple(median_ms(steps, repeat, torch.device("cpu"), clock=timer))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--tasks", default="2-8", help="task counts: a range 2-8 or a list 2,4,8")
    parser.add_argument("--rounds", type=int, default=3, help="sweeps over the task counts (median over them)")
    parser.add_argument("--repeat", type=int, default=10, help="timed steps per row and round (median)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or this thread's CPU time (with --threads 1, on a shared machine)")
    args = parser.parse_args()
    try:
        counts = task_counts(args.tasks)
    except ValueError as exc:
        parser.error(str(exc))
    if args.rounds < 1 or args.repeat < 1:
        parser.error(f"rounds and repeat must be >= 1, got {args.rounds} and {args.repeat}")
    if not ops.supports("cpu"):
        parser.error(f"the compiled ops are not available: {ops.describe()}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    shapes = parameter_shapes(args.model)
    numel = sum(s.numel() for s in shapes)
    times: dict[int, list[tuple[float, float]]] = {t: [] for t in counts}
    for _ in range(args.rounds):
        for tasks in counts:
            times[tasks].append(time_one(shapes, tasks, args.repeat, args.clock))
            gc.collect()

    rows = []
    for tasks in counts:
        floor = (2 + 6 * tasks) / 7
        ratio = statistics.median(mt / adam for mt, adam in times[tasks])
        mt_ms = statistics.median(mt for mt, _ in times[tasks])
        adam_ms = statistics.median(adam for _, adam in times[tasks])
        gb_per_s = numel * 4 * (2 + 6 * tasks) / (mt_ms * 1e-3) / 1e9
        adam_gb_per_s = numel * 4 * 7 / (adam_ms * 1e-3) / 1e9
        verdict = "met" if ratio <= TARGET * floor else "missed"
        rows.append([str(tasks), f"{mt_ms:.1f}", f"{adam_ms:.1f}", f"{ratio:.2f}x", f"{floor:.2f}x",
                     f"{ratio / floor:.2f}", f"{gb_per_s:.1f}", f"{adam_gb_per_s:.1f}", verdict])
    print(f"MTAdamV2 (fused) against Adam (fused), {args.model} shapes ({numel / 1e6:.2f} M parameters), float32, "
          f"{torch.get_num_threads()} thread(s), {args.clock} clock, median of {args.rounds} rounds x {args.repeat} steps; "
          f"{ops.describe()}")
    print()
    print(format_table(["T", "MTAdamV2 ms", "Adam ms", "ratio", "floor", "ratio/floor", "GB/s", "Adam GB/s",
                        f"<= {TARGET:.2f} x floor"], rows))


if __name__ == "__main__":
    main()
