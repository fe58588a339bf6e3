"""Datasets of both tasks: real ImageNet + COCO folders or the embedded synthetic set.

The public names load on first use (with torch), so light modules of this package, such as
``sizes``, can be imported by the configuration without importing torch.
"""

from __future__ import annotations

from ..lazy import lazy_names

# public name -> module that defines it
_LAZY = {
    "CorruptImageWarning": "mtbench.data.common",
    "DataBundle": "mtbench.data.bundle",
    "SampleSeeds": "mtbench.data.seeding",
    "SeededDataset": "mtbench.data.seeding",
    "build_datasets": "mtbench.data.bundle",
    "collate_skip_corrupt": "mtbench.data.common",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_names(globals(), _LAZY)
