"""The hooks a plugin may implement (project name ``mtbench``)."""

from __future__ import annotations

import pluggy

from ..presets import OptimizerPreset

PROJECT = "mtbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mtbench_optimizers() -> list[OptimizerPreset]:
    """Return the optimizer presets this plugin brings.

    Called once per plugin when the registry loads (at the first command that needs optimizers).
    Each preset's ``name`` must be unique across all plugins; a duplicate is reported as an error
    naming both plugins and the later one is dropped.
    """
