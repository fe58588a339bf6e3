"""A few trainer steps on fixed batches, run by test_distributed.py under torchrun or as one process.

Each rank takes its slice of one fixed global batch, so the two-process run and the one-process
run see the same data. ``--method`` combines the per-task gradients with a multi-task method. BatchNorm runs in eval mode: on CPU there is no SyncBatchNorm, so per-rank
batch statistics would differ from the global batch's by design (see NOTE [BatchNorm across ranks]).
"""

import argparse
import copy
import os
import sys

import torch

import mtbench.workloads.imagenet_coco as gradients_module
from mtbench.config import build_config
from mtbench.errors import NonFiniteLossError
from mtbench.plugins import load_registry
from mtbench.train import Trainer

GLOBAL_BATCH = 8


def fixed_batches(steps, size=32):
    g = torch.Generator().manual_seed(1234)
    for _ in range(steps):
        yield (torch.randn(GLOBAL_BATCH, 3, size, size, generator=g),
               torch.randint(0, 10, (GLOBAL_BATCH,), generator=g),
               torch.randn(GLOBAL_BATCH, 3, size, size, generator=g),
               torch.randint(0, 21, (GLOBAL_BATCH, size, size), generator=g))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--optimizer", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--nan-rank", type=int, default=-1)
    parser.add_argument("--method", default="sum")
    args = parser.parse_args()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = GLOBAL_BATCH // world

    if rank == args.nan_rank:
        real = gradients_module.masked_cross_entropy
        calls = {"n": 0}

        def nan_on_second_call(logits, target):
            calls["n"] += 1
            return real(logits, target) * (float("nan") if calls["n"] == 2 else 1.0)

        gradients_module.masked_cross_entropy = nan_on_second_call

    registry = load_registry(environ={})
    preset, method = registry.get(args.optimizer), registry.method_preset(args.method)
    config = build_config(preset, os.path.join(args.out, "run"), method, image_size=32, limit_train=16, limit_val=8,
                          batch_size=local, device="cpu")
    trainer = Trainer(config, preset, config.run_dir, method=method, progress=False, echo=print)
    trainer.model.eval()
    snapshots = {}
    method_weights = []  # the task weights the method chose at each step (a method that has them)
    counts = {"all_reduce": 0, "all_reduce_elements": 0, "broadcast": 0}
    for name in ("all_reduce", "broadcast"):
        real_collective = getattr(torch.distributed, name)

        def counted(tensor, *a, _name=name, _real=real_collective, **k):
            counts[_name] += 1
            if _name == "all_reduce":
                counts["all_reduce_elements"] += tensor.numel()
            return _real(tensor, *a, **k)

        setattr(torch.distributed, name, counted)
    try:
        for step, (xc, yc, xs, ys) in enumerate(fixed_batches(args.steps), 1):
            part = slice(rank * local, (rank + 1) * local)
            trainer.step(((xc[part], yc[part]), (xs[part], ys[part])), epoch=1)
            weights = getattr(getattr(trainer.strategy, "method", None), "last_weights", None)
            if weights is not None:
                method_weights.append(torch.as_tensor(weights, dtype=torch.float64).clone())
            if step == 1:
                snapshots["after_first_step"] = copy.deepcopy(trainer.optimizer.state_dict())
    except NonFiniteLossError as exc:
        print(f"rank {rank} stopped: {exc}", flush=True)
        trainer.close()
        sys.exit(3)
    per_step = {k: v / args.steps for k, v in counts.items()}
    torch.save({"params": [p.detach() for p in trainer.params], "optimizer": trainer.optimizer.state_dict(),
                "collectives_per_step": per_step, "method_weights": method_weights, **snapshots},
               os.path.join(args.out, f"rank{rank}-of-{world}.pt"))
    trainer.close()


if __name__ == "__main__":
    main()
