"""The trainer's step on the built-in workloads: what each gradient route costs against the weighted sum.

For each workload (default: nyuv2, T = 3 tasks on one shared batch, and imagenet-coco, T = 2 tasks on
a batch each), times Trainer.step, the step of `mtbench run`, of four rows:

  adam+sum      one backward pass of the weighted loss, the Adam step (the reference)
  adam+LOSSES   a losses-only method (--loss-method, default famo): its scalarize of the weighted
                losses, one backward pass, the Adam step
  adam+METHOD   a method that reads per-task gradients (--method, default upgrad): T gradients in the
                [T, N] buffer, the method's combination, the Adam step
  mtadamv2      per-task gradients into MTAdamV2's fused step

All rows of all workloads are built first (the same seed: each workload's rows start from the same
weights) and timed in one process, interleaved round by round, on each workload's own fixed batches
of its embedded stand-in, so a change in the machine's load shifts every row alike. Prints each
row's median ms per step on the wall clock and in CPU time (NOTE [two clocks]), its ratios to the
same workload's adam+sum and the forward and backward passes its step made.

    OMP_NUM_THREADS=1 python benchmarks/workload_steps.py --threads 1 --image-size 32 --rounds 20 --steps 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch

from mtbench.config import build_config
from mtbench.errors import MTBenchError
from mtbench.plugins import load_registry
from mtbench.train import Trainer

__all__ = ["main"]


def rows_of(args) -> list[tuple[str, str, str]]:
    """(row name, optimizer preset, method) of each row of one workload, the reference first."""
    return [("adam+sum", "adam", "sum"), (f"adam+{args.loss_method}", "adam", args.loss_method),
            (f"adam+{args.method}", "adam", args.method), ("mtadamv2", "mtadamv2", "sum")]


def build(args, run_root: str) -> tuple[dict[tuple[str, str], Trainer], dict[tuple[str, str], str]]:
    """The trainers by (workload, row) and, for a row that could not be built, why not."""
    registry = load_registry()
    trainers, failed = {}, {}
    for name in args.workloads.split(","):
        workload = registry.workload(name.strip())
        for row, optimizer, method_name in rows_of(args):
            try:
                preset, method = registry.get(optimizer), registry.method_preset(method_name)
                config = build_config(preset, f"{run_root}/{workload.name}-{row}", method, workload=workload,
                                      batch_size=args.batch_size, image_size=args.image_size,
                                      limit_train=args.limit_train, limit_val=8, device=args.device)
                trainers[workload.name, row] = Trainer(config, preset, config.run_dir, method=method,
                                                       workload=workload, progress=False, echo=lambda s: None)
            except MTBenchError as exc:
                failed[workload.name, row] = str(exc)
    return trainers, failed


def time_all(trainers: dict[tuple[str, str], Trainer], steps: int, rounds: int):
    """(workload, row) -> (median wall ms per step, median CPU ms per step, forward passes, backward
    passes per step).

    NOTE [two clocks]: every round times each row once, in turn, after two warm-up rounds (as
    mtbench.bench.median_ms does), on two clocks at once: the wall clock, and the CPU time of this
    thread. With one torch thread and the data already in memory, a CPU step runs entirely on this
    thread, so its CPU time leaves out the time the machine gave to other processes: on a shared
    machine it is the steadier figure, the wall clock the one a run feels.
    """
    batches = {}
    for (workload, _), trainer in trainers.items():
        if workload not in batches:
            it = trainer.epoch_batches(1)
            batches[workload] = [next(it) for _ in range(steps)]
    device = next(iter(trainers.values())).device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    passes, wall, cpu = {}, {key: [] for key in trainers}, {key: [] for key in trainers}
    for round_ in range(rounds + 2):
        for key, trainer in trainers.items():
            sync()
            start_wall, start_cpu = time.perf_counter(), time.thread_time()
            for batch in batches[key[0]]:
                result = trainer.step(batch, epoch=1)
            sync()
            if round_ >= 2:
                wall[key].append(time.perf_counter() - start_wall)
                cpu[key].append(time.thread_time() - start_cpu)
            passes[key] = (result.passes.get("forward", 1), result.passes.get("backward", 1))
    return {key: (1e3 * statistics.median(wall[key]) / steps, 1e3 * statistics.median(cpu[key]) / steps,
                  *passes[key]) for key in trainers}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="nyuv2,imagenet-coco")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: as it is)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=2, help="steps per round (the timed unit)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=32, help="nyuv2: the height (the width keeps 4:3)")
    parser.add_argument("--limit-train", type=int, default=64)
    parser.add_argument("--loss-method", default="famo")
    parser.add_argument("--method", default="upgrad")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as run_root:
        try:
            trainers, failed = build(args, run_root)
        except MTBenchError as exc:
            parser.error(str(exc))
        if not trainers:
            parser.error(next(iter(failed.values())))
        try:
            results = time_all(trainers, args.steps, args.rounds)
        finally:
            for trainer in trainers.values():
                trainer.close()
    print(f"{args.device} ({platform.processor() or platform.machine()}), {torch.get_num_threads()} torch threads "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), batch {args.batch_size}, image size "
          f"{args.image_size}, median of {args.rounds} rounds x {args.steps} steps, all rows interleaved")
    print(f"{'workload':<14} {'T':>2}  {'row':<14} {'wall ms':>8} {'x sum':>6} {'CPU ms':>8} {'x sum':>6}  "
          "passes (fwd, bwd)")
    for (workload, row), (wall_ms, cpu_ms, fwd, bwd) in results.items():
        tasks = len(trainers[workload, row].workload.tasks)
        ref = results.get((workload, "adam+sum"))
        wall_x, cpu_x = (f"{wall_ms / ref[0]:6.2f}", f"{cpu_ms / ref[1]:6.2f}") if ref else ("     -",) * 2
        print(f"{workload:<14} {tasks:>2}  {row:<14} {wall_ms:8.1f} {wall_x} {cpu_ms:8.1f} {cpu_x}  {fwd}, {bwd}")
    for (workload, row), why in failed.items():
        print(f"{workload:<14}     {row:<14} not measured: {why}")


if __name__ == "__main__":
    main()
