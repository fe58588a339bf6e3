"""Train and validation transforms of the torchvision classification and segmentation references.

All random draws come from torch's default CPU generator (through torchvision.transforms.v2);
the trainer seeds it per sample (``seeding.py``), so augmentation does not depend on which
DataLoader worker loads a sample.
Segmentation transforms take the image and a ``tv_tensors.Mask`` together, so both see the same
resize, crop and flip; masks are resized with nearest interpolation and padded with 255 (ignored).
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from .coco import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The classification reference evaluates a 224 crop of an image resized to 256.
_VAL_RESIZE_RATIO = 256 / 224


def _to_normalised_tensors() -> list[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        v2.ToPureTensor(),
    ]


def classification_transform(size: int, train: bool) -> v2.Compose:
    """Image (``tv_tensors.Image``, uint8) -> float32 [3, size, size], normalised with ImageNet statistics.

    Train: random resized crop (scale 0.08-1) + horizontal flip; val: resize to size*256/224 + centre crop.
    """
    if train:
        geometry = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        geometry = [v2.Resize(round(size * _VAL_RESIZE_RATIO), antialias=True), v2.CenterCrop(size)]
    return v2.Compose(geometry + _to_normalised_tensors())


def segmentation_transform(size: int, train: bool) -> v2.Compose:
    """(Image, Mask) -> (float32 [3, size, size], int64 [size, size]), transformed jointly.

    Train, as the segmentation reference: the shorter side resized to a random length in
    [size/2, 2*size), a random size x size crop (padded where the image is smaller: image 0,
    mask 255) and a horizontal flip. Val: shorter side resized to size + centre crop (the
    reference evaluates whole images; a fixed size lets validation batch).
    """
    if train:
        geometry = [
            v2.RandomResize(size // 2, 2 * size, antialias=True),
            v2.RandomCrop(size, pad_if_needed=True, fill={tv_tensors.Mask: IGNORE_INDEX, "others": 0}),
            v2.RandomHorizontalFlip(),
        ]
    else:
        geometry = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    return v2.Compose(geometry + _to_normalised_tensors())
