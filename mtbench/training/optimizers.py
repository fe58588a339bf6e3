"""The run's optimizer: built from its preset over the model's parameters, and told when evaluation
and checkpoints begin and end.

The trainer calls only ``build_optimizer`` and ``OptimizerLifecycle``; what an optimizer needs beyond
a plain ``step()`` (parameter groups by role, a closure, a train / eval switch) is the preset's to
declare and this module's to honour.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch

from ..presets import OptimizerPreset

__all__ = ["OptimizerLifecycle", "build_optimizer"]


def build_optimizer(preset: OptimizerPreset, model: torch.nn.Module, names: Sequence[str],
                    params: Sequence[torch.Tensor], extra: Sequence[torch.Tensor], hyperparams: dict):
    """The optimizer of a run over the model's trainable ``params`` (named ``names``) and a method's
    learnable ``extra`` tensors (a parameter group of their own)."""
    groups = [{"params": list(params)}, {"params": list(extra)}] if extra else list(params)
    return preset.build(groups, **hyperparams)


class OptimizerLifecycle:
    """Tells the optimizer when the model is evaluated or saved (``evaluation()``), for optimizers
    whose evaluation point differs from their training point."""

    def __init__(self, preset: OptimizerPreset, optimizer, model: torch.nn.Module):
        self.preset, self.optimizer, self.model = preset, optimizer, model

    @contextmanager
    def evaluation(self) -> Iterator[None]:
        """Around an epoch's evaluation and checkpoint."""
        yield
