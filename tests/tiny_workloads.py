"""Small workloads of T = 1..8 classification tasks on random images, for trainer tests: either data
shape (a batch per task, or one batch labelled for every task), a tiny convolutional model.

Task t asks which of 2 + t % 3 bands of the image (split along its width) is brightest: learnable,
different per task, computed from the image alone.

As a plugin (``mtbench --plugin tests/tiny_workloads.py ...``) the file brings all sixteen, named
``tiny<T>-split`` and ``tiny<T>-shared``, for the commands that look a workload up by name (compare, tune,
report).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from mtbench import Metric, Task, Workload, WorkloadData, hookimpl
from mtbench.errors import ConfigError

SIDE = 32


def classes(t: int) -> int:
    return 2 + t % 3


def label(image: torch.Tensor, t: int) -> torch.Tensor:
    return torch.stack([band.mean() for band in image.chunk(classes(t), dim=-1)]).argmax()


class Images(Dataset):
    """The images ``images``; an item is ``(image, target of task t)``, or with ``task=None``
    ``(image, (target_0, ..., target_{T-1}))``."""

    def __init__(self, images: torch.Tensor, num_tasks: int, task: int | None):
        self.images, self.num_tasks, self.task = images, num_tasks, task

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i] + 0.05 * torch.randn(3, SIDE, SIDE)  # an augmentation: seeded per sample by the trainer
        if self.task is not None:
            return x, label(self.images[i], self.task)
        return x, tuple(label(self.images[i], t) for t in range(self.num_tasks))


def random_images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))


class Net(nn.Module):
    """A shared two-layer body and one linear head per task; see NOTE [workload contract]. The first convolution
    has no bias, as BatchNorm follows it: its gradient would be rounding noise, which an Adam step makes lr-sized."""

    def __init__(self, num_tasks: int, shared_batch: bool):
        super().__init__()
        self.shared_batch = shared_batch
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.heads = nn.ModuleList(nn.Linear(8, classes(t)) for t in range(num_tasks))

    def forward(self, *inputs):
        if self.shared_batch:
            z = self.body(inputs[0])
            return tuple(head(z) for head in self.heads)
        return tuple(None if x is None else head(self.body(x)) for head, x in zip(self.heads, inputs))

    def last_shared_parameters(self):
        return list(self.body[3].parameters())


class Accuracy:
    def __init__(self, name: str):
        self.name, self.hits, self.total = name, 0, 0

    def update(self, logits, target) -> None:
        self.hits += int((logits.argmax(1) == target).sum())
        self.total += len(target)

    def all_reduce(self) -> None:
        pass

    def compute(self) -> dict[str, float]:
        return {self.name: self.hits / max(self.total, 1)}


def _meter(name, data, device):
    return Accuracy(name)


def _data(num_tasks, shared, root, *, image_size=None, limit_train=None, limit_val=None, holdout=None):
    """32 training and 16 validation images (or the limits) per task, or shared; ``holdout`` keeps the last
    ``round(holdout x n)`` training images apart, the same ones for every seed."""
    n_train, n_val = limit_train or 32, limit_val or 16
    held = round((holdout or 0) * n_train)
    if holdout and not 0 < held < n_train:
        raise ConfigError(f"holdout {holdout} of {n_train} training images leaves {held} for the holdout")
    streams = [(None, 0, 1)] if shared else [(t, 10 + t, 20 + t) for t in range(num_tasks)]  # (task, seeds)
    train, held_out, val = [], [], []
    for task, train_seed, val_seed in streams:
        images = random_images(n_train, train_seed)
        train.append(Images(images[:n_train - held], num_tasks, task))
        held_out.append(Images(images[n_train - held:], num_tasks, task))
        val.append(Images(random_images(n_val, val_seed), num_tasks, task))
    return WorkloadData(train=train, val=val, holdout=held_out if held else None, image_size=SIDE, synthetic=True)


def _model(num_tasks, shared, backbone, data):
    return Net(num_tasks, shared)


def tiny_workload(num_tasks: int, shared: bool, name: str | None = None) -> Workload:
    tasks = tuple(
        Task(name=f"t{t}", title=f"task {t}", metrics=(Metric(f"acc{t}", f"acc {t}", True, "%"),),
             primary=f"acc{t}", loss=lambda out, y: F.cross_entropy(out.float(), y),
             meter=functools.partial(_meter, f"acc{t}"))
        for t in range(num_tasks))
    return Workload(name=name or f"tiny{num_tasks}-{'shared' if shared else 'split'}", title="tiny", tasks=tasks,
                    build_model=functools.partial(_model, num_tasks, shared),
                    build_data=functools.partial(_data, num_tasks, shared),
                    batches="shared" if shared else "per_task", image_size=SIDE, batch_size=4, epochs=1)


@hookimpl
def mtbench_workloads() -> list[Workload]:
    return [tiny_workload(t, shared) for t in range(1, 9) for shared in (False, True)]
