"""Augmentation seeded per sample, so the batches do not depend on the number of DataLoader workers.

torchvision's v2 transforms draw from torch's default CPU generator. Seeded once per process
(DataLoader's per-worker seeding), the draws a sample gets depend on which worker loads it and
on what that worker loaded before, so ``--workers`` would change the results. Instead the
sampler hands every index its own seed (``SampleSeeds``) and the dataset loads that index with
the generator set to that seed (``SeededDataset``): a sample's augmentation depends only on the
pass seed and its index, whatever process loads it, with any number of workers or ranks.
"""

from __future__ import annotations

from typing import Iterator, Sized

import torch
from torch.utils.data import Dataset, Sampler

_SEED_BOUND = 2**62


class SampleSeeds(Sampler):
    """Yields ``(index, seed)`` for each index of ``sampler``; the seed of an index is fixed by ``seed``.

    The seeds of one pass are a table over the whole dataset drawn from ``seed``, looked up by
    dataset index: a sample gets the same seed whatever its position, its rank's shard (e.g. a
    DistributedSampler) or the batch size. Use a new ``seed`` for each pass over the data.
    """

    def __init__(self, sampler: Sampler[int], dataset: Sized, seed: int):
        self.sampler = sampler
        self.num_samples = len(dataset)
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed)
        seeds = torch.randint(_SEED_BOUND, (self.num_samples,), generator=generator)
        for index in self.sampler:
            yield index, int(seeds[index])

    def __len__(self) -> int:
        return len(self.sampler)


class SeededDataset(Dataset):
    """Loads ``dataset[index]`` for an ``(index, seed)`` key with torch's CPU generator seeded to ``seed``.

    The generator's state is restored afterwards, so loading in the main process (no workers)
    leaves the draws of the training step where they were.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            # Only the CPU generator: torch.manual_seed would also reseed every CUDA generator.
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]
