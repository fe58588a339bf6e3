"""Trainer overhead: a `mtbench run` step against a minimal hand-written PyTorch loop.

Times, in one process and interleaved round by round (so machine noise hits all alike):
  manual    the shortest correct multi-task step: two forwards, weighted loss, backward, Adam step
  adam      Trainer.step with the adam preset (the same work plus NaN checks and bookkeeping)
  mtadamv2  Trainer.step with the mtadamv2 preset (per-task gradients, MTAdamV2 step)
  method    Trainer.step with the adam preset and --method (default upgrad): per-task gradients
            in the [T, N] buffer, the method's combine, then the Adam step
on the same model, the same fixed batches (embedded data set, default sizes).

    python benchmarks/trainer_overhead.py [--rounds 5] [--steps 10] [--batch-size 8] [--image-size 64]
                                          [--method upgrad]

Targets: adam / manual <= 1.05; mtadamv2 / adam <= 1.15; adam with the method / adam (sum) <= 1.15.
"""

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from mtbench.cli.run import method_preset
from mtbench.config import build_config
from mtbench.plugins import load_registry
from mtbench.train import Trainer, masked_cross_entropy


def batches(trainer, n):
    it = trainer.epoch_batches(1)
    return [tuple(t for pair in next(it) for t in pair) for _ in range(n)]


def manual_step(model, opt, xc, yc, xs, ys):
    out_c, out_s = model(xc, xs)
    loss = 0.5 * F.cross_entropy(out_c, yc) + 0.5 * masked_cross_entropy(out_s, ys)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--method", default="upgrad", help="the multi-task method timed against sum")
    args = parser.parse_args()

    registry = load_registry()
    tmp = tempfile.mkdtemp()
    trainers = {}
    method_row = f"adam+{args.method}"
    for name, optimizer, method in (("adam", "adam", None), ("mtadamv2", "mtadamv2", None),
                                    (method_row, "adam", method_preset(registry, args.method))):
        preset = registry.get(optimizer)
        config = build_config(preset, f"{tmp}/{name}", method, batch_size=args.batch_size, image_size=args.image_size)
        trainers[name] = Trainer(config, preset, config.run_dir, method=method, progress=False, echo=print)
    data = batches(trainers["adam"], args.steps)
    reference = trainers["adam"]
    torch.manual_seed(0)
    from mtbench.model import MultiTaskNet

    model = MultiTaskNet(reference.config.backbone, reference.data.num_cls_outputs, reference.data.num_seg_classes)
    model.train()
    opt = torch.optim.Adam(model.parameters(), **reference.config.hyperparams)

    def time_manual():
        start = time.perf_counter()
        for batch in data:
            manual_step(model, opt, *batch)
        return time.perf_counter() - start

    def time_trainer(trainer):
        start = time.perf_counter()
        for batch in data:
            trainer.step(*batch, epoch=1)
        return time.perf_counter() - start

    runners = {"manual": time_manual, **{name: lambda t=trainer: time_trainer(t) for name, trainer in trainers.items()}}
    for run in runners.values():  # warm-up: allocator, optimizer state
        run()
    times = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            times[name].append(run() / args.steps)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"{torch.get_num_threads()} threads, batch {args.batch_size} per task, "
          f"image size {reference.data.image_size}, {args.rounds} rounds x {args.steps} steps")
    for name, value in med.items():
        print(f"  {name:<14} {value * 1000:8.1f} ms/step")
    print(f"  adam step in the trainer / manual loop: {med['adam'] / med['manual']:.3f}  (target <= 1.05)")
    print(f"  mtadamv2 step / adam step:              {med['mtadamv2'] / med['adam']:.3f}  (target <= 1.15)")
    print(f"  {method_row} step / adam (sum) step:{' ' * max(1, 16 - len(method_row))}"
          f"{med[method_row] / med['adam']:.3f}  (target <= 1.15)")


if __name__ == "__main__":
    main()
