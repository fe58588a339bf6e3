"""The random stream of a multi-task gradient method: seeded from the method's ``seed`` setting and saved with
its state.

Methods that draw (PCGrad and GradVac shuffle the tasks, RLW draws its weights, GradDrop its masks) must not draw
from torch's global RNG: their draws would then depend on everything else the run draws, differ between
distributed ranks and change on resume. ``MethodRng`` gives such a method generators of its own and lends them to
torch for the duration of a draw; mtbench.aggregation's methods take one as ``rng``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["MethodRng"]


class MethodRng:
    """The random stream of one method: torch.Generators seeded from ``seed``, one per device type.

    torchjd's random aggregators draw from torch's global RNG. ``drawing(device)`` lends them these
    generators instead (CPU and ``device``), so the draws depend only on the seed and on earlier
    draws of this method: every distributed rank draws the same, the training's own RNG is left
    alone, and a resumed run draws what the uninterrupted one would have.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._generators: dict[str, torch.Generator] = {}
        self._pending: dict[str, Tensor] = {}

    def generator(self, device_type: str) -> torch.Generator:
        gen = self._generators.get(device_type)
        if gen is None:
            gen = torch.Generator(device=device_type)
            gen.manual_seed(self.seed)
            if device_type in self._pending:
                gen.set_state(self._pending.pop(device_type))
            self._generators[device_type] = gen
        return gen

    @contextlib.contextmanager
    def drawing(self, device: torch.device | str) -> Iterator[None]:
        """Within the block, torch's global RNG (CPU and ``device``) draws from this stream."""
        device = torch.device(device)
        cpu = self.generator("cpu")
        if device.type == "cpu":
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(cpu.get_state())
                yield
                cpu.set_state(torch.get_rng_state())
            return
        module = torch.get_device_module(device.type)
        index = module.current_device() if device.index is None else device.index
        accel = self.generator(device.type)
        with torch.random.fork_rng(devices=[index], device_type=device.type):
            torch.set_rng_state(cpu.get_state())
            module.set_rng_state(accel.get_state(), index)
            yield
            cpu.set_state(torch.get_rng_state())
            accel.set_state(module.get_rng_state(index))

    def state_dict(self) -> dict[str, Any]:
        states = {kind: gen.get_state() for kind, gen in self._generators.items()}
        return {"seed": self.seed, "states": {**self._pending, **states}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.seed = int(state["seed"])
        self._generators.clear()
        # A generator for a device this process lacks stays pending, so its state survives a save.
        self._pending = {kind: s.cpu() for kind, s in state["states"].items()}
