"""Every task's gradient of the shared parameters from ONE forward pass of a shared batch: the ways to
get them, timed side by side in one process (see NOTE [shared-batch gradients] in
mtbench/training/taskgrads.py, which records the choice and these numbers).

- ``sum``: one forward, one backward of the summed losses (the weighted-sum step: the floor);
- ``T backward``: one forward, then one backward per task over the retained graph, each straight into
  its row of the [T, N] buffer (what the trainer does);
- ``batched vjp``: one forward, then ``autograd.grad(losses, params, eye(T), is_grads_batched=True)``
  (torchjd's autojac: a vmap'd vector-Jacobian product) and the copy of its results into the buffer;
- ``T forwards``: each task its own forward of the batch through aliases of the parameters and one
  backward (the per-task-batch route applied to a shared batch: T forwards instead of one).

    OMP_NUM_THREADS=1 python benchmarks/shared_batch_grads.py [--tasks 3] [--batch-size 8] [--image-size 64]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mtbench.model import Backbone


class Net(nn.Module):
    def __init__(self, tasks: int):
        super().__init__()
        self.backbone = Backbone("resnet18")
        self.heads = nn.ModuleList(nn.Linear(self.backbone.channels[-1], 10) for _ in range(tasks))

    def forward(self, x):
        z = torch.flatten(F.adaptive_avg_pool2d(self.backbone(x)[-1], 1), 1)
        return [head(z) for head in self.heads]


def losses(outputs, targets):
    return [F.cross_entropy(o, y) for o, y in zip(outputs, targets)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    T = args.tasks
    torch.manual_seed(0)
    model = Net(T).train()
    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())
    shared = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    ys = [torch.randint(10, (args.batch_size,)) for _ in range(T)]
    buffer = torch.zeros(T, sum(p.numel() for p in shared))
    views = [[buffer[t, o:o + p.numel()].view_as(p) for p, o in zip(shared, _offsets(shared))] for t in range(T)]

    def weighted_sum():
        model.zero_grad(set_to_none=True)
        sum(losses(model(x), ys)).backward()

    def t_backward():
        buffer.zero_()
        ls = losses(model(x), ys)
        for t in range(T):
            for p, v in zip(shared, views[t]):
                p.grad = v
            ls[t].backward(retain_graph=t < T - 1, inputs=shared)

    def batched_vjp():
        ls = torch.stack(losses(model(x), ys))
        grads = torch.autograd.grad(ls, shared, torch.eye(T), is_grads_batched=True)
        for t in range(T):
            torch._foreach_copy_(views[t], [g[t] for g in grads])

    def t_forwards():
        buffer.zero_()
        leaves = [[p.detach().requires_grad_() for p in params] for _ in range(T)]
        total = 0
        for t in range(T):
            for leaf, v in zip(leaves[t][:len(shared)], views[t]):
                leaf.grad = v
            out = functional_call(model, dict(zip(names, leaves[t])), (x,))[t]
            total = total + F.cross_entropy(out, ys[t])
        total.backward()

    rows = {"sum (one backward, the floor)": weighted_sum, "T backward (retain_graph)": t_backward,
            "batched vjp (is_grads_batched)": batched_vjp, "T forwards (aliases)": t_forwards}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vmap's fallback warnings
        for fn in rows.values():
            fn()  # warm-up
        times = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, fn in rows.items():  # interleaved: every row sees the same machine state
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    floor = sorted(times[next(iter(rows))])[args.rounds // 2]
    print(f"ResNet-18, T={T}, batch {args.batch_size}, {args.image_size}x{args.image_size}, "
          f"{torch.get_num_threads()} thread(s), median of {args.rounds}")
    for name, values in times.items():
        med = sorted(values)[args.rounds // 2]
        print(f"  {name:<32} {med * 1000:8.1f} ms  {med / floor:5.2f}x")


def _offsets(params):
    offsets, at = [], 0
    for p in params:
        offsets.append(at)
        at += p.numel()
    return offsets


if __name__ == "__main__":
    main()
