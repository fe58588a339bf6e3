"""The run's optimizer: built from its preset over the model's parameters, and told when evaluation
and checkpoints begin and end.

The trainer calls only ``build_optimizer`` and ``OptimizerLifecycle``; what an optimizer needs beyond
a plain ``step()`` (parameter groups by role, a closure, a train / eval switch) is the preset's to
declare (``OptimizerPreset.groups`` and ``needs``) and this module's to honour.

- ``build_optimizer``: the preset's ``groups`` function splits the model's trainable parameters by
  role (``hidden_matrices`` is the standard split: the hidden weight matrices apart from the rest);
  a method's learnable tensors join the role ``"other"``.
- ``CombinedOptimizer``: several optimizers over disjoint parameters seen as one
  ``torch.optim.Optimizer`` (Muon for the hidden matrices, AdamW for the rest).
- ``OptimizerLifecycle``: ``optimizer.eval()`` around evaluation and checkpoints where the optimizer
  has it (Schedule-Free), with the BatchNorm statistics recomputed at the evaluation point.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import contextmanager
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..presets import OptimizerPreset

__all__ = [
    "BN_BATCHES", "BN_STREAM", "DEFAULT_BN_BATCHES", "LIFECYCLE_KEYS", "CombinedOptimizer", "OptimizerLifecycle",
    "build_optimizer", "hidden_matrices", "is_head", "recompute_batchnorm",
]

# NOTE [bn_batches]: how many training batches the BatchNorm statistics are recomputed over when the
# optimizer evaluates at another point than it trains at (Schedule-Free's average). A setting of the
# preset (`--set bn_batches=N`, 0: keep the statistics of the training point), read here and never
# handed to the optimizer's factory. 8 batches of 8 images estimate the statistics of the embedded
# set's ResNet well enough for its figures to stop moving (the running average of a plain run sees
# the last ~10 batches at momentum 0.1).
BN_BATCHES = "bn_batches"
DEFAULT_BN_BATCHES = 8
LIFECYCLE_KEYS = frozenset({BN_BATCHES})
# The batches the statistics are recomputed over come from the run's own training stream keyed by
# epoch BN_STREAM + e (for epoch e): the same data pipeline and seeding, never a batch of the training
# epochs (which stop far below), so the run's batches are the same with or without a recomputation.
BN_STREAM = 1_000_000

# A name component that marks a task head: "head", "heads", "cls_head", "head_seg", ... (see is_head).
_HEAD = re.compile(r"(^|_)heads?($|_)")


def is_head(name: str) -> bool:
    """Whether the parameter ``name`` (``"seg_head.score8.weight"``) belongs to a task head."""
    return any(_HEAD.search(part) for part in name.split(".")[:-1])


def hidden_matrices(model: nn.Module, named: Sequence[tuple[str, torch.Tensor]]) -> list[dict]:
    """The standard split by role: ``"hidden"``, the weight matrices of the shared trunk's hidden
    layers (every parameter of 2 dimensions or more: linear weights, and convolution filters seen as
    [out, in x kh x kw]); ``"other"``, the rest (biases, norms, the input layer, embeddings, heads).

    NOTE [hidden matrices]: Muon's documentation (torch.optim.Muon) keeps it to the hidden layers:
    the input layer (here the model's first weight of 2+ dimensions, the stem convolution), embeddings
    (nn.Embedding weights) and the output layers go to AdamW. A model's task heads are found by name
    (a module called ``head``, ``heads`` or ``*_head``, see ``is_head``), so a new workload's model
    only has to name its heads so.
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))}
    first = next((id(p) for p in model.parameters() if p.ndim >= 2), None)
    hidden, other = [], []
    for name, p in named:
        matrix = p.ndim >= 2 and id(p) != first and id(p) not in embeddings and not is_head(name)
        (hidden if matrix else other).append(p)
    return [{"role": "hidden", "params": hidden}, {"role": "other", "params": other}]


def _split(preset: OptimizerPreset, model: nn.Module, names: Sequence[str],
           params: Sequence[torch.Tensor]) -> list[dict]:
    """The preset's groups over ``params``, checked: every parameter in exactly one group, each
    group with a role; ConfigError naming the preset otherwise. Empty groups are dropped."""
    split = preset.resolve_groups()
    try:
        groups = split(model, list(zip(names, params)))
    except Exception as exc:
        raise ConfigError(f"{preset.label()} could not split the parameters: {type(exc).__name__}: {exc}") from None
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, Mapping) and "params" in g for g in groups):
        raise ConfigError(f"{preset.label()}: its groups function must return a list of dicts with 'params' "
                          f"and 'role', got {type(groups).__name__}")
    seen: dict[int, str] = {}
    out = []
    for group in groups:
        role = group.get("role")
        if not isinstance(role, str) or not role:
            raise ConfigError(f"{preset.label()}: a parameter group has no role (got {role!r}); expected a name "
                              "such as 'hidden' or 'other'")
        members = list(group["params"])
        for p in members:
            if id(p) in seen:
                raise ConfigError(f"{preset.label()}: a parameter is in two groups ({seen[id(p)]!r} and {role!r})")
            seen[id(p)] = role
        if members:
            out.append({**group, "params": members})
    missing = [n for n, p in zip(names, params) if id(p) not in seen]
    if missing or len(seen) != len(params):
        what = f"{missing[0]} and {len(missing) - 1} more" if missing else "parameters the model does not train"
        raise ConfigError(f"{preset.label()}: its groups must hold every trainable parameter exactly once; "
                          f"they miss or add {what}")
    return out


def build_optimizer(preset: OptimizerPreset, model: nn.Module, names: Sequence[str],
                    params: Sequence[torch.Tensor], extra: Sequence[torch.Tensor], hyperparams: Mapping[str, Any]):
    """The optimizer of a run over the model's trainable ``params`` (named ``names``) and a method's
    learnable ``extra`` tensors.

    Without ``preset.groups`` the parameters are one group and ``extra`` a second; with it, the
    groups come by role (each dict with ``role`` and ``params``, and any settings of its own) and
    ``extra`` joins as a group of role ``"other"``: a method's loss weights are no hidden matrix.
    The settings in LIFECYCLE_KEYS are the lifecycle's, not the factory's.
    """
    settings = {k: v for k, v in hyperparams.items() if k not in LIFECYCLE_KEYS}
    if preset.groups is None:
        groups: list = [{"params": list(params)}, {"params": list(extra)}] if extra else list(params)
    else:
        groups = _split(preset, model, names, params)
        if extra:
            groups.append({"role": "other", "params": list(extra)})
    return preset.build(groups, **settings)


class _States(Mapping):
    """The state of a CombinedOptimizer: each parameter's state in the optimizer that holds it."""

    def __init__(self, owner: CombinedOptimizer):
        self._owner = owner

    def _holder(self, p: torch.Tensor) -> torch.optim.Optimizer:
        for optimizer in self._owner.optimizers:
            if any(p is q for group in optimizer.param_groups for q in group["params"]):
                return optimizer
        raise KeyError(p)

    def __getitem__(self, p: torch.Tensor) -> Any:
        return self._holder(p).state[p]

    def __iter__(self) -> Iterator[torch.Tensor]:
        for optimizer in self._owner.optimizers:
            yield from optimizer.state

    def __len__(self) -> int:
        return sum(len(optimizer.state) for optimizer in self._owner.optimizers)


class CombinedOptimizer(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters, one ``torch.optim.Optimizer`` to the trainer.

    ``param_groups`` is every optimizer's groups in order (the same dicts: an lr scheduler scales
    each), ``step(closure)`` evaluates the closure once and steps each optimizer, ``state_dict()``
    is ``{"optimizers": [each one's state_dict]}`` (a resume continues exactly), and the step and
    state_dict hooks of torch.optim.Optimizer are honoured. ``train()`` / ``eval()`` reach the
    optimizers that have them.
    """

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]):
        optimizers = list(optimizers)
        if not optimizers:
            raise ValueError("CombinedOptimizer needs at least one optimizer")
        seen: set[int] = set()
        for i, optimizer in enumerate(optimizers):
            if not isinstance(optimizer, torch.optim.Optimizer):
                raise TypeError(f"CombinedOptimizer takes torch.optim.Optimizer objects, got "
                                f"{type(optimizer).__name__} at {i}")
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if id(p) in seen:
                        raise ValueError(f"CombinedOptimizer: optimizer {i} ({type(optimizer).__name__}) shares a "
                                         "parameter with an earlier one; their parameters must be disjoint")
                    seen.add(id(p))
        # What torch.optim.Optimizer.__init__ sets, but the groups and state, which are the parts'.
        self.__setstate__({"defaults": {}, "optimizers": optimizers})

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "optimizers": self.optimizers}

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    @property
    def state(self) -> Mapping:
        return _States(self)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        raise NotImplementedError("CombinedOptimizer: add the group to one of its optimizers")

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        for hook in self._optimizer_state_dict_pre_hooks.values():
            hook(self)
        state = {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}
        for hook in self._optimizer_state_dict_post_hooks.values():
            result = hook(self, state)
            state = state if result is None else result
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            state_dict = state_dict if result is None else result
        parts = state_dict.get("optimizers") if isinstance(state_dict, Mapping) else None
        if not isinstance(parts, (list, tuple)) or len(parts) != len(self.optimizers):
            held = len(parts) if isinstance(parts, (list, tuple)) else "no"
            raise ValueError(f"loaded state dict holds {held} optimizers, this CombinedOptimizer "
                             f"{len(self.optimizers)}")
        for optimizer, part in zip(self.optimizers, parts):
            optimizer.load_state_dict(part)
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)

    def train(self) -> None:
        for optimizer in self.optimizers:
            if callable(getattr(optimizer, "train", None)):
                optimizer.train()

    def eval(self) -> None:
        for optimizer in self.optimizers:
            if callable(getattr(optimizer, "eval", None)):
                optimizer.eval()

    def __repr__(self) -> str:
        inner = ",\n".join("  " + repr(optimizer).replace("\n", "\n  ") for optimizer in self.optimizers)
        return f"CombinedOptimizer(\n{inner}\n)"


def recompute_batchnorm(model: nn.Module, batches: Iterable[Any], count: int,
                        forward: Callable[[Any], Any] | None = None) -> int:
    """Recompute the BatchNorm running statistics as the plain average over ``count`` no-grad forward
    passes of the batches ``batches`` gives; returns the passes made.

    ``forward(batch)`` runs one (default: ``model(*batch)``, a batch being the model's arguments).
    The momenta are put back after; the model is left in the mode it was in.
    """
    forward = forward or (lambda args: model(*args))
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or count <= 0:
        return 0
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the passes, not an exponential one
    model.train()
    passes = 0
    try:
        with torch.no_grad():
            for batch in islice(batches, count):
                forward(batch)
                passes += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return passes


class OptimizerLifecycle:
    """Tells the optimizer when the model is evaluated or saved (``evaluation()``), for optimizers
    whose evaluation point differs from their training point.

    NOTE [train/eval and resume]: an optimizer with ``eval()`` / ``train()`` (Schedule-Free) is
    switched to its evaluation point for the evaluation and the checkpoint, and back after; the
    checkpoint therefore holds the weights and the BatchNorm statistics of the evaluation point and
    the optimizer in eval mode. A load_state_dict post-hook puts a restored optimizer back in train
    mode, computing the training point from the saved one exactly as the uninterrupted run did when
    it left ``evaluation()``: the two continue bit for bit. The BatchNorm statistics are recomputed
    at the evaluation point over ``bn_batches`` training batches (NOTE [bn_batches]) that the
    trainer draws from a stream of their own, so the run's data stream is untouched.
    """

    def __init__(self, preset: OptimizerPreset, optimizer, model: nn.Module,
                 hyperparams: Mapping[str, Any] | None = None):
        self.preset, self.optimizer, self.model = preset, optimizer, model
        settings = dict(hyperparams) if hyperparams is not None else preset.resolve()
        self.bn_batches = int(settings.get(BN_BATCHES, DEFAULT_BN_BATCHES))
        self.switches = "train_eval" in preset.needs or (
            callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None)))
        self.bn_passes = 0  # the forward passes of the last recomputation (for tests and reports)
        if self.switches:
            optimizer.register_load_state_dict_post_hook(_back_to_training)

    @property
    def evaluates_elsewhere(self) -> bool:
        """Whether evaluation happens at another point than training (the BatchNorm statistics move)."""
        return self.switches

    @contextmanager
    def evaluation(self, batches: Iterable[Any] | None = None, forward: Callable[[Any], Any] | None = None,
                   sync: Callable[[], None] | None = None) -> Iterator[None]:
        """Around an epoch's evaluation and checkpoint.

        ``batches``: training batches from a stream of their own, for the BatchNorm statistics at the
        evaluation point (drawn only when needed, ``bn_batches`` of them), each run by ``forward(batch)``
        (default ``model(*batch)``); ``sync``: called after they are recomputed (a distributed run
        makes every rank's statistics rank 0's).
        """
        if not self.switches:
            yield
            return
        self.optimizer.eval()
        self.bn_passes = (recompute_batchnorm(self.model, batches, self.bn_batches, forward)
                          if batches is not None else 0)
        if self.bn_passes and sync is not None:
            sync()
        try:
            yield
        finally:
            self.optimizer.train()


def _back_to_training(optimizer) -> None:
    """A checkpoint holds the optimizer in eval mode (see OptimizerLifecycle): resume in train mode."""
    optimizer.train()
