"""Measured convergence: a target common to every optimizer of a comparison, steps to reach it, labels.

The target is a fraction of the best final joint score, where the joint score puts top-1 and mIoU
on one scale by dividing each by the best final value any optimizer reached. Steps and seconds
are read at the end of the first epoch whose validation reaches the target (epochs.csv has one
row per epoch; no interpolation). The label compares those steps with the fastest optimizer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .rundir import EpochRow

TARGET_FRACTION = 0.9
# Convergence labels from steps-to-target relative to the fastest optimizer: (label, largest ratio).
THRESHOLDS = (("fast", 1.25), ("medium", 2.0), ("slow", 3.0))
SLOWEST_LABEL = "very slow"
NOT_REACHED = "not reached"


@dataclass(frozen=True)
class Target:
    """The convergence target common to every optimizer of a comparison.

    joint(top1, miou) = mean over the two tasks of value / reference, where a task's reference is
    the best final mean (over seeds) that any optimizer reached; the target is ``fraction`` of the
    best final joint score. Normalising puts top-1 and mIoU on one scale, so neither task dominates.
    """

    fraction: float
    top1_ref: float | None
    miou_ref: float | None
    score: float

    def joint(self, top1: float | None, miou: float | None) -> float | None:
        parts = [(v, ref) for v, ref in ((top1, self.top1_ref), (miou, self.miou_ref)) if ref]
        if not parts or any(v is None for v, _ in parts):
            return None
        return sum(v / ref for v, ref in parts) / len(parts)

    def to_dict(self) -> dict:
        return {"fraction": self.fraction, "top1_reference": self.top1_ref,
                "miou_reference": self.miou_ref, "joint_score": self.score}


def convergence_target(finals: Sequence[tuple[float | None, float | None]],
                       fraction: float = TARGET_FRACTION) -> Target | None:
    """The target from each optimizer's final (mean top-1, mean mIoU); None when nothing was learned."""
    top1_ref = max((t for t, _ in finals if t is not None and t > 0), default=None)
    miou_ref = max((m for _, m in finals if m is not None and m > 0), default=None)
    if top1_ref is None and miou_ref is None:
        return None
    probe = Target(fraction, top1_ref, miou_ref, 0.0)
    best = max((j for j in (probe.joint(t, m) for t, m in finals) if j is not None), default=None)
    if best is None:
        return None
    return Target(fraction, top1_ref, miou_ref, fraction * best)


def first_reach(epochs: Sequence[EpochRow], target: Target) -> tuple[float, float] | None:
    """(steps, seconds) at the end of the first epoch whose validation reaches the target, or None.

    Per-epoch granularity, no interpolation between epochs.
    """
    for row in epochs:
        joint = target.joint(row.val_top1, row.val_miou)
        if joint is not None and joint >= target.score - 1e-12:
            return row.step, row.seconds
    return None


def convergence_label(ratio: float | None) -> str:
    """fast / medium / slow / very slow from steps-to-target relative to the fastest optimizer."""
    if ratio is None:
        return NOT_REACHED
    for label, limit in THRESHOLDS:
        if ratio <= limit + 1e-9:
            return label
    return SLOWEST_LABEL


def thresholds_text() -> str:
    parts = [f"<= {limit:g}x {label}" for label, limit in THRESHOLDS]
    return ", ".join(parts) + f", > {THRESHOLDS[-1][1]:g}x {SLOWEST_LABEL}"
