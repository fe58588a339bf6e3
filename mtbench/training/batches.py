"""The data streams of a run: endless training batches per task, and evaluation batches per split."""

from __future__ import annotations

import hashlib
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ..config import RunConfig
from ..data import SampleSeeds, SeededDataset, collate_skip_corrupt
from ..distributed import Dist
from ..errors import DataError


def seed_for(*parts: int) -> int:
    """A 63-bit seed derived from integers: one independent stream per (seed, epoch, task, pass)."""
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Batches:
    """Loaders over one run's data sets, this rank's share of each.

    The corrupt images a batch lost are added to ``counters["corrupt_images"]`` (the run's
    counters, saved in its checkpoints); more than ``config.max_corrupt_images`` end the run with a
    DataError.
    """

    def __init__(self, config: RunConfig, dist: Dist, device: torch.device, counters: dict[str, Any]):
        self.config, self.dist, self.device = config, dist, device
        self.counters = counters

    def _count_corrupt(self, n: int) -> None:
        self.counters["corrupt_images"] += n
        if self.counters["corrupt_images"] > self.config.max_corrupt_images:
            raise DataError(
                f"{self.counters['corrupt_images']} corrupt images skipped, more than the limit of "
                f"{self.config.max_corrupt_images}; check the data set (the warnings name the files)"
            )

    def _loader(self, dataset: Dataset, sampler, seed: int, batch_size: int, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.config.workers,
            collate_fn=collate_skip_corrupt,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        )

    def _kept(self, loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, targets, n_corrupt in loader:
            if n_corrupt:
                self._count_corrupt(n_corrupt)
            if len(images):
                yield images, targets

    def train(self, task: int, dataset: Dataset, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches of one task (its index in the workload; 0 for a shared batch); each pass over
        the data has its own order.

        The order depends on (seed, epoch, task, pass) and each sample's augmentation on that and
        its index alone (see data/seeding.py), whatever the optimizer or the number of workers.
        """
        sampler = DistributedSampler(
            dataset, num_replicas=self.dist.world, rank=self.dist.rank, shuffle=True, drop_last=True,
            seed=seed_for(self.config.seed, task) % 2**31,
        )
        seeded = SeededDataset(dataset)
        pass_ = 0
        while True:
            sampler.set_epoch(epoch * 1000 + pass_)
            seed = seed_for(self.config.seed, epoch, task, pass_)
            keys = SampleSeeds(sampler, dataset, seed)
            yield from self._kept(self._loader(seeded, keys, seed, self.config.batch_size, drop_last=True))
            pass_ += 1

    def evaluation(self, dataset: Dataset) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over this rank's shard of an evaluation split, in order."""
        shard = Subset(dataset, range(self.dist.rank, len(dataset), self.dist.world))
        return self._kept(self._loader(shard, None, 0, self.config.batch_size * 2, drop_last=False))
