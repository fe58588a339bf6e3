"""Every optimizer of the pytorch-optimizer library by name, without a preset:
``--optimizer pytorch_optimizer:NAME`` runs the class with its own defaults.

The library is imported only when such a name is asked for (or `mtbench list --all` lists them);
the optimizers that need something the plugin contract does not give are refused with the reason,
and those under a non-commercial licence carry a notice.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from ..errors import ConfigError
from ..text import did_you_mean, first_line
from .optimizer import OptimizerPreset
from .params import STANDARD_PARAMS, Param, infer_param
from .search import LR_SPAN, SearchDim

__all__ = ["PREFIX", "REFUSED", "LibraryEntry", "library_entries", "library_preset"]

PREFIX = "pytorch_optimizer:"

# NOTE [refused library optimizers]: what each needs that a run cannot give it. Found by building
# every optimizer of the library over a small convolutional network with its defaults and stepping it
# (tests/test_zoo_library.py keeps the table honest: the refused fail so, the others step).
_HESSIAN = "needs Hessian-vector products (a backward pass with create_graph=True), which the trainer does not take"
_USE_MUON = ("needs parameter groups flagged use_muon (Muon for the hidden matrices); use the preset 'muon', which "
             "splits the parameters by role")
REFUSED: dict[str, str] = {
    "adahessian": _HESSIAN,
    "sophiah": _HESSIAN,
    "lomo": "takes the model and fuses its update into the backward pass, which the trainer runs itself",
    "adalomo": "takes the model and fuses its update into the backward pass, which the trainer runs itself",
    "adammini": "takes the model (its named parameters) instead of parameters",
    "bsam": "needs the training set's size (num_data), which a preset cannot know",
    "ranger21": "needs the run's number of steps (num_iterations) at construction",
    "demo": "needs torch.distributed and the einops package (a distributed-training optimizer)",
    "distributedmuon": "needs torch.distributed and parameter groups flagged use_muon",
    "muon": _USE_MUON, "adamuon": _USE_MUON, "adago": _USE_MUON, "muonclip": _USE_MUON, "normuon": _USE_MUON,
    "spectralsphere": "takes 2-D parameters only, and the model has convolution filters and biases",
}
# step() must be given a closure (the trainer gives one to optimizers that declare the need).
_CLOSURE = {"alig", "lbfgs"}
# The library's own word on a licence that is not its Apache-2.0 (the file's header).
_LICENCES = {"fromage": "CC BY-NC-SA 4.0: non-commercial use only"}


class LibraryEntry:
    """One optimizer of the library: its name, class, and why it is refused (None when it runs)."""

    def __init__(self, key: str, cls: type):
        self.key, self.cls = key, cls
        self.name = PREFIX + key
        self.refused = REFUSED.get(key)
        self.notice = f"licence {_LICENCES[key]}" if key in _LICENCES else ""
        self.needs = ({"closure"} if key in _CLOSURE else set()) | (
            {"train_eval"} if callable(getattr(cls, "eval", None)) and callable(getattr(cls, "train", None)) else set())


def _table() -> dict[str, type]:
    try:
        from pytorch_optimizer.optimizer import OPTIMIZERS
    except ImportError as exc:
        raise ConfigError(f"{PREFIX}NAME needs the pytorch-optimizer package ({first_line(exc)}); "
                          "pip install pytorch-optimizer==4.1.0") from None
    return dict(OPTIMIZERS)


def library_entries() -> list[LibraryEntry]:
    """Every optimizer of the library, by name."""
    return [LibraryEntry(key, cls) for key, cls in sorted(_table().items())]


def _settings(cls: type) -> tuple[dict[str, Any], dict[str, Param]]:
    """The class's keyword defaults that `--set` can hold (numbers, booleans, tuples of numbers), and their Params."""
    defaults, params = {}, {}
    for i, (key, p) in enumerate(inspect.signature(cls.__init__).parameters.items()):
        if i < 2 or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.default is inspect.Parameter.empty:
            continue
        value = p.default
        numbers = isinstance(value, tuple) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if isinstance(value, bool) or numbers or (isinstance(value, (int, float)) and math.isfinite(value)):
            defaults[key] = value
            standard = STANDARD_PARAMS.get(key)
            fits = standard is not None and (standard.kind is tuple) == isinstance(value, tuple) and (
                standard.length in (None, len(value)) if isinstance(value, tuple) else True)
            params[key] = standard if fits else infer_param(value)
    return defaults, params


def library_preset(name: str) -> OptimizerPreset:
    """The preset of ``pytorch_optimizer:NAME``: the class with its defaults; ConfigError for an unknown
    name or one that needs what the contract lacks."""
    key = name[len(PREFIX):].strip().lower() if name.startswith(PREFIX) else name
    table = _table()
    if key not in table:
        raise ConfigError(f"unknown optimizer {name!r}: pytorch-optimizer has no optimizer {key!r}"
                          f"{did_you_mean(key, list(table))} (mtbench list --all shows them)")
    entry = LibraryEntry(key, table[key])
    if entry.refused:
        raise ConfigError(f"{entry.name} cannot run here: it {entry.refused}")
    defaults, params = _settings(entry.cls)
    needs = entry.needs
    if "train_eval" in needs:
        params["bn_batches"] = Param(int, 0, 10_000, what="a number of batches")
    lr = defaults.get("lr")
    space = {"lr": SearchDim(lr / LR_SPAN, lr * LR_SPAN, log=True)} if isinstance(lr, float) and lr > 0 else {}
    doc = inspect.getdoc(entry.cls) or ""
    return OptimizerPreset(
        name=entry.name, title=entry.cls.__name__, factory=entry.cls, defaults={}, params=params,
        description=(doc.split("\n\n")[0].replace("\n", " ") + " (pytorch-optimizer's class defaults.)").strip(),
        origin="pytorch-optimizer", notice=entry.notice, needs=frozenset(needs), order=300, search_space=space,
        source="pytorch-optimizer (by name)",
    )
