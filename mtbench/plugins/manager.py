"""The plugin registry: finds optimizer plugins, isolates the broken ones, indexes their presets."""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Mapping

import pluggy

from ..errors import ConfigError
from ..presets import OptimizerPreset, did_you_mean, validate_preset
from . import hookspecs

ENV_PLUGINS = "MTBENCH_PLUGINS"
ENV_DISABLE = "MTBENCH_DISABLE_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    """A plugin that loaded: its name, where it came from and the presets it brought."""

    name: str
    source: str
    presets: tuple[str, ...]


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, and why; the other plugins stay usable."""

    name: str
    source: str
    reason: str

    def __str__(self) -> str:
        return f"plugin {self.name!r} ({self.source}): {self.reason}"


@dataclass
class Registry:
    """The optimizer presets of all loaded plugins, in discovery order."""

    presets: dict[str, OptimizerPreset] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    def get(self, name: str) -> OptimizerPreset:
        """The preset called ``name``; ConfigError with the closest name when there is none."""
        try:
            return self.presets[name]
        except KeyError:
            pass
        hint = did_you_mean(name, list(self.presets)) if name else ""
        known = ", ".join(self.presets) or "none"
        raise ConfigError(f"unknown optimizer {name!r}{hint} (available: {known}; mtbench list shows all)")

    def names(self) -> list[str]:
        return list(self.presets)


def load_registry(
    paths: Iterable[str | os.PathLike] = (), environ: Mapping[str, str] | None = None
) -> Registry:
    """Discover plugins: installed entry points (group ``mtbench``), then ``paths`` and ``$MTBENCH_PLUGINS``.

    ``$MTBENCH_DISABLE_PLUGINS`` (comma-separated plugin names) blocks plugins before they import.
    """
    env = os.environ if environ is None else environ
    disabled = {n.strip() for n in env.get(ENV_DISABLE, "").split(",") if n.strip()}
    local = [Path(p) for p in paths]
    local += [Path(p) for p in env.get(ENV_PLUGINS, "").split(os.pathsep) if p.strip()]

    registry = Registry()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)

    candidates: list[tuple[str, str, Any]] = []
    for ep in entry_points(group=hookspecs.PROJECT):
        dist = f" from {ep.dist.name} {ep.dist.version}" if ep.dist else ""
        candidates.append((ep.name, f"entry point {ep.value}{dist}", ep.load))
    for path in _expand(local, registry):
        candidates.append((path.stem, f"file {path}", lambda p=path: _import_file(p)))

    loaded: dict[str, str] = {}
    for name, source, load in candidates:
        if name in disabled:
            registry.disabled.append(name)
            continue
        if name in loaded:
            registry.failures.append(
                PluginFailure(name, source, f"a plugin named {name!r} is already loaded ({loaded[name]})")
            )
            continue
        try:
            module = load()
            pm.register(module, name=name)
        except Exception as exc:  # a broken plugin must not take the others down
            registry.failures.append(PluginFailure(name, source, _reason(exc)))
            continue
        loaded[name] = source
        _collect(pm, name, source, registry)
    registry.presets = dict(sorted(registry.presets.items(), key=lambda item: item[1].order))
    return registry


def _collect(pm: pluggy.PluginManager, name: str, source: str, registry: Registry) -> None:
    impls = [i for i in pm.hook.mtbench_optimizers.get_hookimpls() if i.plugin_name == name]
    if not impls:
        registry.failures.append(
            PluginFailure(name, source, "defines no @mtbench.hookimpl mtbench_optimizers()")
        )
        return
    try:
        returned = impls[0].function()
        presets = [validate_preset(p) for p in _as_list(returned)]
    except Exception as exc:
        registry.failures.append(PluginFailure(name, source, _reason(exc)))
        return
    kept = []
    for preset in presets:
        if preset.name in registry.presets:
            registry.failures.append(
                PluginFailure(
                    name,
                    source,
                    f"optimizer {preset.name!r} is already defined by plugin "
                    f"{registry.sources[preset.name]}; this one is ignored",
                )
            )
            continue
        registry.presets[preset.name] = preset
        registry.sources[preset.name] = f"{name!r} ({source})"
        kept.append(preset.name)
    registry.plugins.append(PluginInfo(name, source, tuple(kept)))


def _as_list(returned: Any) -> list:
    if isinstance(returned, OptimizerPreset):
        return [returned]
    if not isinstance(returned, (list, tuple)):
        raise ValueError(
            f"mtbench_optimizers() returned {type(returned).__name__}, expected a list of OptimizerPreset"
        )
    return list(returned)


def _expand(paths: list[Path], registry: Registry) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        elif path.suffix == ".py" and path.is_file():
            files.append(path)
        else:
            registry.failures.append(
                PluginFailure(path.stem or str(path), f"path {path}", "not a .py file or a folder of them")
            )
    return files


def _import_file(path: Path) -> ModuleType:
    module_name = f"mtbench_local_plugins.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
