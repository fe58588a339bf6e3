"""Dense prediction (NYUv2, Cityscapes): the tasks' losses and meters, and the multi-head network.

NOTE [dense metrics as LibMTL computes them]: every metric is a mean over all valid pixels of the
whole split, kept as sums so that batches and ranks add up exactly (``all_reduce`` sums them).

- Segmentation: labels -1 are ignored. The loss is cross-entropy averaged over the batch's labelled
  pixels (0, not NaN, for a batch with none); mIoU and pixel accuracy come from one confusion matrix
  (``metrics.ConfusionMatrix``), mIoU over the classes present in the target or the prediction.
- Depth: a pixel is valid where the target is not 0. The loss is the L1 error averaged over the
  batch's valid pixels; ``depth_abs`` is the mean of |d - d*| and ``depth_rel`` the mean of
  |d - d*| / d* over every valid pixel of the split. LibMTL averages per batch and weights each
  batch by its count of valid pixels, which is this same pixel mean.
- Normals: a pixel is valid where the target is not the zero vector (LibMTL tests that the sum of the
  components is not 0, which also drops the rare unit vectors whose components sum to 0). The
  prediction is L2-normalised; the loss is 1 - cos averaged over the batch's valid pixels. The
  angle errors (degrees) give ``normal_mean`` (exact, from their sum), ``normal_11``/``_22``/``_30``
  (exact counts of angles below 11.25, 22.5 and 30 degrees) and ``normal_median``, which needs every
  angle: a histogram of 0.01-degree bins over 0..180 (18,000 int64 counts, 144 kB, summed across
  ranks like the rest) gives it to within half a bin (0.005 degree), where keeping
  the angles themselves would cost 4 bytes per validation pixel and an all-gather.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..metrics import ConfusionMatrix
from ..model import Backbone, SegmentationHead
from .types import WorkloadData

__all__ = ["DenseNet", "DepthMeter", "NormalMeter", "SegMeter", "build_cityscapes_data", "build_dense_model",
           "build_nyuv2_data", "depth_loss", "depth_meter",
           "normal_loss", "normal_meter", "seg_loss", "seg_meter"]

IGNORE = -1
NORMAL_THRESHOLDS = (11.25, 22.5, 30.0)
BIN_DEGREES = 0.01
_BINS = round(180 / BIN_DEGREES)


def _all_reduce(*tensors: torch.Tensor) -> None:
    if dist.is_available() and dist.is_initialized():
        for tensor in tensors:
            dist.all_reduce(tensor)


# ---- losses ---------------------------------------------------------------------------------------------


def seg_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the labelled pixels: logits [N, C, H, W], target [N, H, W] with -1 ignored."""
    total = F.cross_entropy(output.float(), target, ignore_index=IGNORE, reduction="sum")
    return total / (target != IGNORE).sum().clamp(min=1)


def depth_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the pixels with a depth: output and target [N, 1, H, W], target 0 = missing."""
    valid = target != 0
    return ((output.float() - target).abs() * valid).sum() / valid.sum().clamp(min=1)


def _unit(output: torch.Tensor) -> torch.Tensor:
    return F.normalize(output, p=2, dim=1, eps=1e-12)


def normal_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - cos between the L2-normalised prediction and the target over the pixels with a normal ([N, 3, H, W])."""
    valid = target.ne(0).any(dim=1)
    cos = (_unit(output.float()) * target).sum(dim=1)
    return 1 - (cos * valid).sum() / valid.sum().clamp(min=1)


# ---- meters ---------------------------------------------------------------------------------------------


class SegMeter:
    """mIoU and pixel accuracy over the labelled pixels (``miou``, ``pixel_acc``)."""

    def __init__(self, num_classes: int, device: torch.device | str | None = None):
        self.matrix = ConfusionMatrix(num_classes, ignore_index=IGNORE, device=device)

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        self.matrix.update(output.float(), target)

    def all_reduce(self) -> None:
        self.matrix.all_reduce()

    def compute(self) -> dict[str, float]:
        result = self.matrix.compute()
        return {"miou": result["miou"], "pixel_acc": result["pixel_acc"]}


class DepthMeter:
    """Mean absolute and relative error over every valid pixel (``depth_abs``, ``depth_rel``)."""

    def __init__(self, device: torch.device | str | None = None):
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # sum |e|, sum |e| / d*
        self.count = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        valid = target != 0
        pred, truth = output[valid].double(), target[valid].double()
        error = (pred - truth).abs()
        self.sums += torch.stack([error.sum(), (error / truth).sum()])
        self.count += valid.sum()

    def all_reduce(self) -> None:
        _all_reduce(self.sums, self.count)

    def compute(self) -> dict[str, float]:
        n = int(self.count)
        abs_sum, rel_sum = self.sums.tolist()
        return {"depth_abs": abs_sum / n if n else 0.0, "depth_rel": rel_sum / n if n else 0.0}


class NormalMeter:
    """Angle errors in degrees over every valid pixel: mean, median and the fractions within the thresholds."""

    def __init__(self, device: torch.device | str | None = None):
        self.hist = torch.zeros(_BINS, dtype=torch.int64, device=device)
        self.within = torch.zeros(len(NORMAL_THRESHOLDS), dtype=torch.int64, device=device)
        self.total = torch.zeros((), dtype=torch.float64, device=device)

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        valid = target.ne(0).any(dim=1)
        cos = (_unit(output.double()) * target.double()).sum(dim=1)[valid].clamp(-1, 1)
        angles = torch.rad2deg(torch.acos(cos))
        self.total += angles.sum()
        self.within += torch.stack([(angles < t).sum() for t in NORMAL_THRESHOLDS])
        bins = (angles / BIN_DEGREES).long().clamp(max=_BINS - 1)
        self.hist += torch.bincount(bins, minlength=_BINS)

    def all_reduce(self) -> None:
        _all_reduce(self.hist, self.within, self.total)

    def compute(self) -> dict[str, float]:
        n = int(self.hist.sum())
        if n == 0:
            return {"normal_mean": 0.0, "normal_median": 0.0, **{f"normal_{int(t)}": 0.0 for t in NORMAL_THRESHOLDS}}
        return {
            "normal_mean": float(self.total) / n,
            "normal_median": self._median(n),
            **{f"normal_{int(t)}": int(c) / n for t, c in zip(NORMAL_THRESHOLDS, self.within.tolist())},
        }

    def _median(self, n: int) -> float:
        """As np.median: the mean of the angles at ranks (n - 1) // 2 and n // 2, each read as its bin's middle."""
        cumulative = self.hist.cumsum(0)
        ranks = torch.tensor([(n - 1) // 2, n // 2], device=cumulative.device)
        bins = torch.searchsorted(cumulative, ranks, right=True)  # the first bin that holds more than `rank` angles
        return float((bins.double() + 0.5).mean()) * BIN_DEGREES


def seg_meter(data, device) -> SegMeter:
    """The segmentation meter of a run (``data.info["classes"]`` classes)."""
    return SegMeter(data.info["classes"], device)


def depth_meter(data, device) -> DepthMeter:
    return DepthMeter(device)


def normal_meter(data, device) -> NormalMeter:
    return NormalMeter(device)


# ---- the network ----------------------------------------------------------------------------------------


class DenseNet(nn.Module):
    """A shared ResNet backbone and one FCN-style decoder per task (``model.SegmentationHead``, with as
    many output channels as the task needs: C class scores, 1 depth, 3 normal components).

    ``model(x)`` returns one output per task at the input's size, from one pass through the backbone.
    """

    def __init__(self, backbone: str, outputs: tuple[int, ...]):
        super().__init__()
        self.backbone = Backbone(backbone)
        self.heads = nn.ModuleList(SegmentationHead(self.backbone.channels, n) for n in outputs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.backbone(x)
        return tuple(head(features, x.shape[-2:]) for head in self.heads)

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The parameters of the backbone's last block (what GradNorm reads)."""
        return list(self.backbone.layer4[-1].parameters())


def build_dense_model(backbone: str, data) -> DenseNet:
    """The network of a dense workload: ``data.info["outputs"]`` channels per task."""
    return DenseNet(backbone, tuple(data.info["outputs"]))


# ---- the data -------------------------------------------------------------------------------------------


def _build(layout, ensure, outputs: tuple[int, ...], root, image_size, limit_train, limit_val, holdout, cache_dir):
    from ..data.dense import open_dense
    from ..data.sizes import MIN_IMAGE_SIZE

    synthetic = root is None
    folder = ensure(cache_dir) if synthetic else root
    train, val, held, size = open_dense(layout, folder, image_size, limit_train, limit_val, holdout,
                                          MIN_IMAGE_SIZE)
    return WorkloadData(train=[train], val=[val], holdout=None if held is None else [held], image_size=size[0],
                        synthetic=synthetic, info={"classes": layout.classes, "outputs": outputs,
                                                   "size": list(size), "data_dir": str(folder)})


def build_nyuv2_data(root=None, image_size=None, limit_train=None, limit_val=None, holdout=None, cache_dir=None):
    """NYUv2 in MTAN's .npy layout at ``root``, or the embedded stand-in when ``root`` is None (see
    ``data.dense.open_dense`` for the arguments)."""
    from ..data import nyuv2

    return _build(nyuv2.LAYOUT, nyuv2.ensure_nyuv2, (nyuv2.LAYOUT.classes, 1, 3), root, image_size, limit_train,
                  limit_val, holdout, cache_dir)


def build_cityscapes_data(root=None, image_size=None, limit_train=None, limit_val=None, holdout=None,
                          cache_dir=None):
    """Cityscapes in LibMTL's .npy layout at ``root``, or the embedded stand-in when ``root`` is None."""
    from ..data import cityscapes

    return _build(cityscapes.LAYOUT, cityscapes.ensure_cityscapes, (cityscapes.LAYOUT.classes, 1), root, image_size,
                  limit_train, limit_val, holdout, cache_dir)
