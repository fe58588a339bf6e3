"""The optimizer zoo's step time against Adam's: every single-gradient preset's `mtbench run` step.

Times Trainer.step of each preset in one process, interleaved round by round (mtbench.bench.median_ms,
so machine noise hits all alike), on the same model, the same fixed batches of the embedded data set
and the same device; prints each preset's median ms per step, its ratio to Adam's and its forward and
backward passes per step (SAM's closure makes two of each). The presets are timed in groups of
--group (memory: one ResNet and its optimizer state per preset), Adam in every group as the reference.

    python benchmarks/zoo_step_time.py [--device cpu] [--rounds 3] [--steps 3] [--image-size 64]
                                       [--presets a,b,...] [--group 8]
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from mtbench.bench import median_ms
from mtbench.config import build_config
from mtbench.plugins import load_registry
from mtbench.train import Trainer

__all__ = ["main"]


def fixed_batches(trainer: Trainer, n: int) -> list:
    it = trainer.epoch_batches(1)
    return [next(it) for _ in range(n)]


def time_group(names: list[str], args, run_root: str) -> dict[str, tuple[float, int, int]]:
    """name -> (median ms per step, forward passes, backward passes per step), Adam's row included."""
    registry = load_registry()
    trainers = {}
    try:
        for name in ["adam", *[n for n in names if n != "adam"]]:
            preset = registry.get(name)
            config = build_config(preset, f"{run_root}/{name}", None, batch_size=args.batch_size,
                                  image_size=args.image_size, limit_train=args.limit_train, device=args.device)
            trainers[name] = Trainer(config, preset, config.run_dir, progress=False, echo=lambda s: None)
        data = fixed_batches(trainers["adam"], args.steps)
        passes = {}

        def runner(name, trainer):
            def run():
                for batch in data:
                    result = trainer.step(batch, epoch=1)
                    passes[name] = (result.passes.get("forward", 1), result.passes.get("backward", 1))
            return run

        times = median_ms([runner(n, t) for n, t in trainers.items()], args.rounds, trainers["adam"].device)
        return {name: (ms / args.steps, *passes[name]) for name, ms in zip(trainers, times)}
    finally:
        for trainer in trainers.values():
            trainer.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--limit-train", type=int, default=64)
    parser.add_argument("--group", type=int, default=8, help="presets timed side by side at once, Adam among them")
    parser.add_argument("--presets", default="", help="comma-separated names (default: every single-gradient preset)")
    args = parser.parse_args(argv)
    registry = load_registry()
    names = [n.strip() for n in args.presets.split(",") if n.strip()] or [
        n for n, p in registry.presets.items() if not p.per_task_gradients and n != "adam"]
    print(f"{args.device}, {torch.get_num_threads()} threads, batch {args.batch_size} per task, image size "
          f"{args.image_size}, median of {args.rounds} rounds x {args.steps} steps; ratio to Adam in the same group")
    print(f"{'preset':<20} {'ms/step':>9} {'x Adam':>7}  passes (fwd, bwd)")
    with tempfile.TemporaryDirectory() as run_root:
        for start in range(0, len(names), args.group - 1):
            rows = time_group(names[start:start + args.group - 1], args, run_root)
            adam_ms = rows["adam"][0]
            for name, (ms, fwd, bwd) in rows.items():
                if name != "adam" or start == 0:
                    print(f"{name:<20} {ms:9.1f} {ms / adam_ms:7.2f}  {fwd}, {bwd}", flush=True)


if __name__ == "__main__":
    main()
