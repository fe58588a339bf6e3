"""Validation metrics as counts: top-k accuracy and a segmentation confusion matrix.

Both meters keep integer counts in one tensor (``TopKAccuracy.state``, ``ConfusionMatrix.mat``),
so batches add up exactly and ``all_reduce`` sums them across processes before ``compute``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _all_reduce(tensor: torch.Tensor) -> None:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)


class TopKAccuracy:
    """Top-k accuracy counts; ``state`` is [correct@k for each k..., total] (int64)."""

    def __init__(self, ks: tuple[int, ...] = (1, 5), device: torch.device | str | None = None):
        self.ks = tuple(ks)
        self.state = torch.zeros(len(self.ks) + 1, dtype=torch.int64, device=device)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch: logits [N, C], target [N] class indices. With k > C every sample is correct at k."""
        k_max = min(max(self.ks), logits.shape[1])
        top = logits.topk(k_max, dim=1).indices
        hits = (top == target[:, None]).cumsum(dim=1) > 0  # hits[:, j]: target within the top j+1
        counts = [hits[:, min(k, k_max) - 1].sum() for k in self.ks]
        self.state += torch.stack(counts + [torch.tensor(len(target), device=top.device)]).to(self.state)

    def all_reduce(self) -> None:
        """Sum the counts of all processes (no-op outside torch.distributed)."""
        _all_reduce(self.state)

    def compute(self) -> dict[str, float]:
        """{'top1': fraction, 'top5': fraction, ...}; 0.0 before any sample."""
        total = int(self.state[-1])
        return {f"top{k}": (int(c) / total if total else 0.0) for k, c in zip(self.ks, self.state[:-1].tolist())}


class ConfusionMatrix:
    """Segmentation confusion counts; ``mat[t, p]`` counts pixels of target class t predicted as p (int64)."""

    def __init__(self, num_classes: int = 21, ignore_index: int = 255, device: torch.device | str | None = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch: prediction as logits [N, C, H, W] or class indices [N, H, W]; target [N, H, W].

        Pixels whose target is ``ignore_index`` are not counted.
        """
        if prediction.dim() == target.dim() + 1:
            prediction = prediction.argmax(dim=1)
        keep = target != self.ignore_index
        t, p = target[keep].long(), prediction[keep].long()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_classes):
            raise ValueError(f"target values must be in 0..{self.num_classes - 1} or {self.ignore_index}")
        n = self.num_classes
        self.mat += torch.bincount(t * n + p, minlength=n * n).reshape(n, n).to(self.mat)

    def all_reduce(self) -> None:
        """Sum the counts of all processes (no-op outside torch.distributed)."""
        _all_reduce(self.mat)

    def compute(self) -> dict:
        """{'miou', 'pixel_acc', 'iou'}.

        ``iou[c]`` is None for a class absent from both target and prediction; mIoU is the mean
        over the other classes, and 0.0 when no pixel was counted (so never NaN). Pixel accuracy
        is the fraction of counted pixels predicted right (0.0 when none).
        """
        mat = self.mat.double()
        hits = mat.diag()
        union = mat.sum(0) + mat.sum(1) - hits
        iou = [float(h / u) if u > 0 else None for h, u in zip(hits, union)]
        present = [v for v in iou if v is not None]
        total = mat.sum()
        return {
            "miou": sum(present) / len(present) if present else 0.0,
            "pixel_acc": float(hits.sum() / total) if total > 0 else 0.0,
            "iou": iou,
        }
