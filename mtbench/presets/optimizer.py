"""``OptimizerPreset``: one optimizer with its tuned settings, as a plugin declares it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

from ..errors import ConfigError
from ..text import failure_reason
from .base import Factory, Preset, is_dotted_name
from .params import STANDARD_PARAMS, Param
from .search import LR_SPAN, WEIGHT_DECAY_RANGE, SearchDim, SearchEntry, check_search_entry

__all__ = ["NEEDS", "ORIGINS", "Expected", "OptimizerPreset"]

# What an optimizer may need of the trainer beyond a plain ``step()``, by name (``OptimizerPreset.needs``):
# "closure": ``step(closure)`` with a closure that recomputes the same batch's loss and gradients
# (SAM and its family); "train_eval": ``optimizer.train()`` / ``.eval()`` around evaluation and
# checkpoints, with the BatchNorm statistics recomputed at the evaluation point (Schedule-Free).
NEEDS = {
    "closure": "step(closure): the same batch's loss and gradients recomputed",
    "train_eval": "optimizer.eval() at evaluation and checkpoints, BatchNorm statistics recomputed",
}

# Where a preset's optimizer comes from, in listing order (`mtbench list` groups by it): the
# project's optimizer guide, torch.optim, the pytorch-optimizer library; "" is any other plugin.
ORIGINS = {"guide": "the optimizer guide", "torch": "torch.optim", "pytorch-optimizer": "pytorch-optimizer",
           "": "other plugins"}


@dataclass(frozen=True)
class Expected:
    """The optimizer guide's expected results on real ImageNet + COCO (5 epochs, batch size 8)."""

    top1: tuple[float, float]
    miou: tuple[float, float]
    convergence: str

    def to_dict(self) -> dict:
        return {"top1": list(self.top1), "miou": list(self.miou), "convergence": self.convergence}



@dataclass(frozen=True)
class OptimizerPreset(Preset):
    """One optimizer with its tuned settings, as a plugin declares it.

    ``factory(params, **hyperparams)`` builds the optimizer (a callable, or its dotted name
    ``package.module:attr``, imported when a run builds it); ``defaults`` holds the tuned
    hyperparameters under the optimizer's own keyword names; ``params`` adds or narrows what
    ``--set`` accepts beyond ``defaults`` (kinds from STANDARD_PARAMS otherwise).
    ``per_task_gradients`` says that ``step(task_grads)`` takes each task's gradients apart.
    ``order`` places the preset in listings and the run menu (ties keep discovery order).
    ``search_space`` maps a setting to the SearchDim or list of choices `mtbench tune` searches
    (empty: the default space, see ``tuning_space``).
    ``needs`` names what the optimizer needs of the trainer beyond ``step()`` (keys of NEEDS).
    ``groups`` (a callable or dotted name) splits the parameters by role:
    ``groups(model, named_params) -> [{"role": "hidden", "params": [...], **settings}, ...]``; the
    factory then gets those groups (each keeps its ``role`` key) and may give each its own settings
    or its own optimizer (``mtbench.training.optimizers.CombinedOptimizer`` joins several into one).
    ``origin`` says where the optimizer comes from (a key of ORIGINS), ``notice`` anything a user
    must know before using it (a licence), shown by `mtbench list`.
    ``source`` is filled in by the registry: the plugin that brought the preset and where from.
    """

    KIND: ClassVar[str] = "optimizer"
    STANDARD: ClassVar[Mapping[str, Param]] = STANDARD_PARAMS

    name: str
    title: str
    factory: Factory
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    per_task_gradients: bool = False
    params: Mapping[str, Param] = field(default_factory=dict)
    expected: Expected | None = None
    order: int = 100
    search_space: Mapping[str, SearchEntry] = field(default_factory=dict)
    needs: frozenset[str] = frozenset()
    groups: Factory | None = None
    origin: str = ""
    notice: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # A plugin may write needs={"closure"} or ("closure",): kept as a frozenset (hashable, like
        # the rest of a frozen preset); anything else is left for check_capabilities to name.
        if isinstance(self.needs, (set, tuple, list)):
            object.__setattr__(self, "needs", frozenset(self.needs))

    def check_capabilities(self) -> None:
        """Raise ValueError naming the field when ``needs``, ``groups`` or ``origin`` is not usable."""
        if self.groups is not None and not (callable(self.groups) or is_dotted_name(self.groups)):
            raise ValueError(f"{self.KIND} {self.name!r}: groups {self.groups!r} is not callable or a dotted name "
                             "'package.module:attr'")
        if not isinstance(self.origin, str) or not isinstance(self.notice, str):
            raise ValueError(f"{self.KIND} {self.name!r}: origin and notice must be text")
        needs = self.needs
        if isinstance(needs, str) or not isinstance(needs, (frozenset, set, tuple, list)) \
                or not all(isinstance(n, str) for n in needs):
            raise ValueError(f"{self.KIND} {self.name!r}: needs={needs!r} must be a frozenset of names from: "
                             f"{', '.join(sorted(NEEDS))}")
        unknown = sorted(set(needs) - set(NEEDS))
        if unknown:
            raise ValueError(f"{self.KIND} {self.name!r}: unknown need {unknown[0]!r}; known: "
                             f"{', '.join(sorted(NEEDS))}")

    @property
    def listed_origin(self) -> str:
        """Where `mtbench list` shows the preset: its ``origin``; a preset without one that carries the
        optimizer guide's expected results is the guide's."""
        return self.origin or ("guide" if self.expected is not None else "")

    def capabilities(self) -> list[str]:
        """What this optimizer asks of the trainer, in words for `mtbench list`: per-task gradients,
        parameter groups by role, a closure, a train / eval switch, no learning rate to tune."""
        caps = ["per-task"] if self.per_task_gradients else []
        caps += ["groups"] if self.groups is not None else []
        caps += sorted(self.needs)
        if "lr" not in self.tuning_space():
            caps.append("lr-free")
        return caps

    def resolve_groups(self) -> Callable[..., Any]:
        """The ``groups`` function as a callable (a dotted name is imported now); ConfigError when that fails."""
        if not isinstance(self.groups, str):
            return self.groups
        module_name, _, attr = self.groups.partition(":")
        try:
            found: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                found = getattr(found, part)
        except (Exception, SystemExit) as exc:
            raise ConfigError(f"{self.label()} could not be built: importing its groups {self.groups!r} "
                              f"{failure_reason(exc)}") from None
        if not callable(found):
            raise ConfigError(f"{self.label()} could not be built: its groups {self.groups!r} is not callable")
        return found

    def tuning_space(self) -> dict[str, SearchDim | tuple]:
        """What `mtbench tune` searches, checked: ``search_space``, or when it is empty the default
        (lr log-uniform within LR_SPAN of the preset's, weight_decay over WEIGHT_DECAY_RANGE where the
        preset has one)."""
        space = dict(self.search_space)
        if not space:
            lr = self.defaults.get("lr")
            if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0:
                space["lr"] = SearchDim(lr / LR_SPAN, lr * LR_SPAN, log=True)
            if "weight_decay" in self.defaults:
                space["weight_decay"] = SearchDim(*WEIGHT_DECAY_RANGE, log=True)
        return {key: check_search_entry(key, entry, self.param(key)) for key, entry in space.items()}

    def build(self, params: Any, **hyperparams: Any) -> Any:
        """The optimizer over ``params`` (tensors or param groups); ConfigError when the plugin fails."""
        import torch

        optimizer = self._call_factory(params, **hyperparams)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise self._returned(optimizer, "a torch.optim.Optimizer")
        return optimizer
