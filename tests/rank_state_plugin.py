"""Test plugin: every process of a run saves its final model and optimizer state when it exits.

Only rank 0 writes a run's checkpoint, so a test that compares the ranks of a ``torchrun mtbench run``
loads this plugin (``MTBENCH_PLUGINS``) and sets ``MTBENCH_TEST_RANK_STATE`` to a folder: each process
then writes ``rank<RANK>.pt`` there at exit, holding ``model`` (parameters and buffers) and ``optimizer``
(the state dicts). It brings no preset: it watches the run through PyTorch's global hooks (a module
forward pre-hook finds the model, an optimizer step post-hook the optimizer), so the run uses the
built-in optimizers and methods unchanged.
"""

import atexit
import os
from pathlib import Path

import torch
from torch.nn.modules.module import register_module_forward_pre_hook
from torch.optim.optimizer import register_optimizer_step_post_hook

from mtbench import hookimpl
from mtbench.model import MultiTaskNet

OUT_ENV = "MTBENCH_TEST_RANK_STATE"
_seen = {}


def _remember_model(module, args):
    if isinstance(module, MultiTaskNet):
        _seen["model"] = module


def _remember_optimizer(optimizer, args, kwargs):
    _seen["optimizer"] = optimizer


def _save():
    if _seen:
        state = {"model": _seen["model"].state_dict(), "optimizer": _seen["optimizer"].state_dict()}
        torch.save(state, Path(os.environ[OUT_ENV]) / f"rank{os.environ.get('RANK', '0')}.pt")


if os.environ.get(OUT_ENV):
    register_module_forward_pre_hook(_remember_model)
    register_optimizer_step_post_hook(_remember_optimizer)
    atexit.register(_save)


@hookimpl
def mtbench_optimizers():
    return []
