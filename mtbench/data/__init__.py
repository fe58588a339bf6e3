"""Datasets of both tasks: real ImageNet + COCO folders or the embedded synthetic set."""

from .bundle import DataBundle, build_datasets
from .common import CorruptImageWarning, collate_skip_corrupt

__all__ = ["CorruptImageWarning", "DataBundle", "build_datasets", "collate_skip_corrupt"]
