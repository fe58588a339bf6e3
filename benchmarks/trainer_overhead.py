"""Trainer overhead: a `mtbench run` step against a minimal hand-written PyTorch loop.

Times, in one process and interleaved round by round (so machine noise hits all alike):
  manual    the shortest correct multi-task step: two forwards, weighted loss, backward, Adam step
  adam      Trainer.step with the adam preset (the same work plus NaN checks and bookkeeping)
  mtadamv2  Trainer.step with the mtadamv2 preset (per-task gradients, MTAdamV2 step)
  method    Trainer.step with the adam preset and --method (default upgrad): per-task gradients
            in the [T, N] buffer, the method's combine, then the Adam step
  losses    Trainer.step with the adam preset and --loss-method (default uw), a losses-only method
            (reads="loss"): its scalarize of the weighted losses, one backward pass, the Adam step
on the same model, the same fixed batches (embedded data set, default sizes), and the same device:
the trainers' (--device, auto as in `mtbench run`), named in the first line of the output. Each
step starts from the host batches the data loader gives and moves them as the trainer does; on a
GPU each timing waits for the device (mtbench.bench.median_ms).

    python benchmarks/trainer_overhead.py [--device auto] [--rounds 5] [--steps 10] [--batch-size 8]
                                          [--image-size 64] [--method upgrad]

Targets: adam / manual <= 1.05; mtadamv2 / adam <= 1.15; adam with the method / adam (sum) <= 1.15;
adam with the losses-only method / adam (sum) <= 1.05.
"""

import argparse
import tempfile

import torch
import torch.nn.functional as F

from mtbench.bench import median_ms
from mtbench.config import build_config
from mtbench.errors import ConfigError
from mtbench.model import MultiTaskNet
from mtbench.plugins import load_registry
from mtbench.train import Trainer, masked_cross_entropy


class ManualLoop:
    """The hand-written step on `trainer`'s device: a model of its architecture, Adam with its
    hyperparameters, its task weights."""

    def __init__(self, trainer: Trainer):
        config = trainer.config
        self.device = trainer.device
        torch.manual_seed(config.seed)
        info = trainer.data.info
        self.model = MultiTaskNet(config.backbone, info["num_cls_outputs"], info["num_seg_classes"])
        self.model.to(self.device).train()
        self.opt = torch.optim.Adam(self.model.parameters(), **config.hyperparams)
        self.loss_weights = config.loss_weights

    def step(self, xc, yc, xs, ys) -> float:
        xc, yc, xs, ys = (t.to(self.device, non_blocking=True) for t in (xc, yc, xs, ys))
        out_c, out_s = self.model(xc, xs)
        w_c, w_s = self.loss_weights
        loss = w_c * F.cross_entropy(out_c, yc) + w_s * masked_cross_entropy(out_s, ys)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()


def batches(trainer, n):
    it = trainer.epoch_batches(1)
    return [tuple(t for pair in next(it) for t in pair) for _ in range(n)]


def build_trainers(args, run_root: str) -> dict[str, Trainer]:
    """The timed trainers by row name, each on the device that --device names."""
    registry = load_registry()
    trainers = {}
    for name, optimizer, method in (("adam", "adam", None), ("mtadamv2", "mtadamv2", None),
                                    (f"adam+{args.method}", "adam", registry.method_preset(args.method)),
                                    (f"adam+{args.loss_method}", "adam", registry.method_preset(args.loss_method))):
        preset = registry.get(optimizer)
        config = build_config(preset, f"{run_root}/{name}", method, batch_size=args.batch_size,
                              image_size=args.image_size, limit_train=args.limit_train, device=args.device)
        trainers[name] = Trainer(config, preset, config.run_dir, method=method, progress=False, echo=print)
    return trainers


def time_rows(trainers: dict[str, Trainer], steps: int, rounds: int) -> dict[str, float]:
    """Median ms per step of the manual loop and of each trainer, every row on the trainers' device."""
    reference = trainers["adam"]
    manual = ManualLoop(reference)
    data = batches(reference, steps)

    def run_all(step):
        return lambda: [step(*batch) for batch in data]

    runners = {"manual": run_all(manual.step)}
    for name, trainer in trainers.items():
        runners[name] = run_all(lambda xc, yc, xs, ys, t=trainer: t.step(((xc, yc), (xs, ys)), epoch=1))
    times = median_ms(list(runners.values()), rounds, reference.device)
    return {name: ms / steps for name, ms in zip(runners, times)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (cuda when a GPU is visible, else cpu), cpu or cuda:N")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--limit-train", type=int, default=None, help="training images per task (default: all)")
    parser.add_argument("--method", default="upgrad", help="the multi-task method timed against sum")
    parser.add_argument("--loss-method", default="uw", help="the losses-only method timed against sum")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as run_root:
        try:
            trainers = build_trainers(args, run_root)
        except ConfigError as exc:
            parser.error(str(exc))
        try:
            med = time_rows(trainers, args.steps, args.rounds)
        finally:
            for trainer in trainers.values():
                trainer.close()
    reference = trainers["adam"]
    print(f"every row on {reference.device}: {torch.get_num_threads()} CPU threads, batch {args.batch_size} per "
          f"task, image size {reference.data.image_size}, median of {args.rounds} rounds x {args.steps} steps")
    for name, value in med.items():
        print(f"  {name:<14} {value:8.1f} ms/step")
    method_row = f"adam+{args.method}"
    print(f"  adam step in the trainer / manual loop: {med['adam'] / med['manual']:.3f}  (target <= 1.05)")
    print(f"  mtadamv2 step / adam step:              {med['mtadamv2'] / med['adam']:.3f}  (target <= 1.15)")
    print(f"  {method_row} step / adam (sum) step:{' ' * max(1, 16 - len(method_row))}"
          f"{med[method_row] / med['adam']:.3f}  (target <= 1.15)")
    loss_row = f"adam+{args.loss_method}"
    print(f"  {loss_row} step / adam (sum) step:{' ' * max(1, 16 - len(loss_row))}"
          f"{med[loss_row] / med['adam']:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
