"""Errors stay one line: an MTBenchError raised in a data-loading worker reads as it was raised."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mtbench.errors import ConfigError, DataError, MTBenchError, RunStopped


class _BadFile(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 2:
            raise DataError("/data/train/depth/2.npy: holds NaN or infinite values")
        return torch.zeros(1)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_data_error_from_a_loader_worker_is_the_one_line_it_was_raised_as(workers):
    with pytest.raises(DataError) as caught:
        list(DataLoader(_BadFile(), batch_size=1, num_workers=workers))
    assert str(caught.value) == "/data/train/depth/2.npy: holds NaN or infinite values"


@pytest.mark.parametrize("kind", [ConfigError, DataError, RunStopped])
def test_the_workers_wrapping_is_undone_for_every_kind_and_nothing_else_changes(kind):
    wrapped = (f"Caught {kind.__name__} in DataLoader worker process 3.\nOriginal Traceback (most recent call "
               f"last):\n  File \"x.py\", line 1, in f\n    raise {kind.__name__}('a: b')\n"
               f"mtbench.errors.{kind.__name__}: a: b\n")
    assert str(kind(wrapped)) == "a: b"
    assert str(kind("Caught nothing.\nsecond line")) == "Caught nothing.\nsecond line"
    assert str(MTBenchError("plain")) == "plain"
