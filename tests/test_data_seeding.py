"""Augmentation seeded per sample: the same batches with any number of workers, in any order or shard."""

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from fakedata import make_coco, make_imagenet
from mtbench.data import SampleSeeds, SeededDataset, collate_skip_corrupt
from mtbench.data.coco import CocoSegmentation
from mtbench.data.imagenet import ImageNetClassification, find_classes
from mtbench.data.transforms import classification_transform, segmentation_transform
from mtbench.train import train
from test_train import REGISTRY, epochs_rows, metric_lines, tiny_config


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    imagenet = make_imagenet(root / "imagenet")
    coco, _ = make_coco(root / "coco", size=16)
    return {
        "cls": ImageNetClassification(imagenet, "train", find_classes(imagenet), classification_transform(8, True)),
        "seg": CocoSegmentation(coco, "val", segmentation_transform(8, True)),
    }


def _batches(dataset, sampler, seed, workers):
    # As the trainer does: the loader's own generator, so that it takes nothing from the global one.
    loader = DataLoader(SeededDataset(dataset), batch_size=2, sampler=SampleSeeds(sampler, dataset, seed),
                        num_workers=workers, collate_fn=collate_skip_corrupt, generator=torch.Generator())
    return [tensor for images, targets, _ in loader for tensor in (images, targets)]


def _shuffled(dataset, rank=0, world=1):
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=5)
    sampler.set_epoch(2)
    return sampler


@pytest.mark.parametrize("task", ["cls", "seg"])
def test_batches_are_bit_identical_with_any_number_of_workers(datasets, task):
    dataset = datasets[task]
    runs = [_batches(dataset, _shuffled(dataset), 11, workers) for workers in (0, 1, 2)]
    assert len(runs[0]) == 2 * 3 - (task == "seg") * 2  # 6 or 3 images in batches of 2
    for other in runs[1:]:
        assert len(other) == len(runs[0]) and all(torch.equal(a, b) for a, b in zip(runs[0], other))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], _batches(dataset, _shuffled(dataset), 12, 0)))


def test_a_sample_is_augmented_alike_in_any_position_and_shard(datasets):
    dataset = datasets["cls"]

    def by_index(sampler):
        keys = list(SampleSeeds(sampler, dataset, 11))
        return {index: SeededDataset(dataset)[(index, seed)][0] for index, seed in keys}

    whole = by_index(SequentialSampler(dataset))
    shards = {**by_index(_shuffled(dataset, 0, 2)), **by_index(_shuffled(dataset, 1, 2))}
    assert sorted(shards) == sorted(whole) and all(torch.equal(whole[i], shards[i]) for i in whole)
    assert not torch.equal(whole[0], whole[1])


def test_loading_leaves_the_global_generator_alone(datasets):
    dataset = datasets["seg"]
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _batches(dataset, _shuffled(dataset), 11, 0)
    assert torch.equal(torch.rand(3), expected)


def test_sample_seeds_pair_each_index_with_its_seed(datasets):
    dataset = datasets["cls"]
    sampler = _shuffled(dataset)
    keys = list(SampleSeeds(sampler, dataset, 11))
    assert [index for index, _ in keys] == list(sampler) and len(SampleSeeds(sampler, dataset, 11)) == len(keys)
    assert len({seed for _, seed in keys}) == len(keys) and keys == list(SampleSeeds(sampler, dataset, 11))


def test_a_run_gives_the_same_metrics_with_and_without_workers(tmp_path):
    for workers in (0, 2):
        run_dir = tmp_path / f"workers{workers}"
        train(tiny_config(run_dir, "sgd", workers=workers), REGISTRY.get("sgd"), progress=False, echo=lambda s: None)
    assert epochs_rows(tmp_path / "workers0") == epochs_rows(tmp_path / "workers2")
    assert metric_lines(tmp_path / "workers0") == metric_lines(tmp_path / "workers2")
