"""The plugin registry: finds plugins, isolates the broken ones, indexes their optimizers, methods and workloads."""

from __future__ import annotations

import dataclasses
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
from ..presets import SUM_METHOD, MethodPreset, OptimizerPreset, validate_preset
from ..presets.base import is_dotted_name
from ..text import did_you_mean, failure_reason, first_line
from ..workloads import Workload
from . import hookspecs

__all__ = ["ENV_DISABLE", "ENV_PLUGINS", "HOOKS", "PluginFailure", "PluginInfo", "Registry", "load_registry"]

ENV_PLUGINS = "MTBENCH_PLUGINS"
ENV_DISABLE = "MTBENCH_DISABLE_PLUGINS"

# Each hook and the kind of preset it returns, in the order the registry calls them.
HOOKS: dict[str, type] = {"mtbench_optimizers": OptimizerPreset, "mtbench_methods": MethodPreset,
                          "mtbench_workloads": Workload}


@dataclass(frozen=True)
class PluginInfo:
    """A plugin that loaded: its name, where it came from and the optimizers, methods and workloads it brought."""

    name: str
    source: str
    presets: tuple[str, ...]
    methods: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, and why; the other plugins stay usable.

    ``name`` is empty for a plugin path that names no plugin (then ``source`` says where the path
    was given).
    """

    name: str
    source: str
    reason: str

    def __str__(self) -> str:
        if not self.name:
            return f"{self.source}: {self.reason}"
        return f"plugin {self.name!r} ({self.source}): {self.reason}"


@dataclass
class Registry:
    """The optimizer presets, methods and workloads of all loaded plugins, each table in listing order."""

    presets: dict[str, OptimizerPreset] = field(default_factory=dict)
    methods: dict[str, MethodPreset] = field(default_factory=dict)
    workloads: dict[str, Workload] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    @property
    def sources(self) -> dict[str, str]:
        """Optimizer name -> the plugin that brought it and where from."""
        return {name: preset.source for name, preset in self.presets.items()}

    def get(self, name: str) -> OptimizerPreset:
        """The optimizer preset called ``name``; ConfigError saying why when there is none.
        ``pytorch_optimizer:NAME`` is that library's optimizer with its defaults (mtbench.presets.library)."""
        if name not in self.presets and name.startswith("pytorch_optimizer:"):
            from ..presets.library import library_preset

            return library_preset(name)
        return self._find(self.presets, OptimizerPreset.KIND, name)

    def get_method(self, name: str) -> MethodPreset:
        """The method called ``name``; ConfigError saying why when there is none."""
        return self._find(self.methods, MethodPreset.KIND, name)

    def method_preset(self, name: str) -> MethodPreset | None:
        """The method a run called ``name`` steps with: None for ``sum`` (the plain weighted loss, which
        the trainer computes itself), else ``get_method``."""
        return None if name == SUM_METHOD else self.get_method(name)

    def workload(self, name: str) -> Workload:
        """The workload called ``name``; ConfigError saying why (with a did-you-mean) when there is none."""
        return self._find(self.workloads, Workload.KIND, name)

    def names(self) -> list[str]:
        return list(self.presets)

    def method_names(self) -> list[str]:
        return list(self.methods)

    def _table(self, kind: type) -> dict[str, Any]:
        return {OptimizerPreset: self.presets, MethodPreset: self.methods, Workload: self.workloads}[kind]

    def _find(self, table: Mapping[str, Any], kind: str, name: str) -> Any:
        try:
            return table[name]
        except KeyError:
            pass
        # Built-in plugins are named after their preset, and a disabled plugin never imports, so
        # the plugin name is all there is to tell a disabled preset from a mistyped one.
        if name in self.disabled:
            raise ConfigError(f"{kind} {name!r} is disabled by ${ENV_DISABLE}")
        hint = did_you_mean(name, list(table)) if name else ""
        known = ", ".join(table) or "none"
        raise ConfigError(f"unknown {kind} {name!r}{hint} (available: {known}; mtbench list shows all)")


def load_registry(
    paths: Iterable[str | os.PathLike] = (), environ: Mapping[str, str] | None = None
) -> Registry:
    """Discover plugins: installed entry points (group ``mtbench``), then ``paths`` and ``$MTBENCH_PLUGINS``.

    ``$MTBENCH_DISABLE_PLUGINS`` (comma-separated plugin names) blocks plugins before they import.
    """
    env = os.environ if environ is None else environ
    disabled = {n.strip() for n in env.get(ENV_DISABLE, "").split(",") if n.strip()}
    local = [(Path(p), "--plugin") for p in paths]
    local += [(Path(p.strip()), ENV_PLUGINS) for p in env.get(ENV_PLUGINS, "").split(os.pathsep) if p.strip()]

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
        # A broken plugin must not take the others down; SystemExit included, or a plugin's
        # sys.exit() would end mtbench without a word. KeyboardInterrupt still stops everything.
        try:
            module = load()
            pm.register(module, name=name)
        except (Exception, SystemExit) as exc:
            reason = f"{failure_reason(exc)} while loading" if isinstance(exc, SystemExit) else first_line(exc)
            registry.failures.append(PluginFailure(name, source, reason))
            continue
        loaded[name] = source
        _collect(pm, name, source, registry)
    registry.presets = _ordered(registry.presets)
    registry.methods = _ordered(registry.methods)
    registry.workloads = _ordered(registry.workloads)
    return registry


def _collect(pm: pluggy.PluginManager, name: str, source: str, registry: Registry) -> None:
    """Call the plugin's hooks and index what they return; a plugin with one bad hook brings nothing."""
    found: dict[type, list[Any]] = {}
    for hook, kind in HOOKS.items():
        impls = [i for i in getattr(pm.hook, hook).get_hookimpls() if i.plugin_name == name]
        if not impls:
            continue
        try:
            returned = impls[0].function()
        except (Exception, SystemExit) as exc:
            registry.failures.append(PluginFailure(name, source, f"{hook}() {failure_reason(exc)}"))
            return
        try:
            check = validate_workload if kind is Workload else validate_preset
            found[kind] = [check(p, kind) for p in _as_list(returned, hook, kind)]
        except Exception as exc:  # malformed plugin data (a name that is no str, ...) fails here too
            registry.failures.append(PluginFailure(name, source, first_line(exc)))
            return
    if not found:
        hooks = " or ".join(f"{hook}()" for hook in HOOKS)
        registry.failures.append(PluginFailure(name, source, f"defines no @mtbench.hookimpl {hooks}"))
        return

    plugin = f"{name!r} ({source})"
    kept: dict[type, list[str]] = {kind: [] for kind in HOOKS.values()}
    for kind, presets in found.items():
        table = registry._table(kind)
        for preset in presets:
            if preset.name in table:
                registry.failures.append(
                    PluginFailure(
                        name,
                        source,
                        f"{kind.KIND} {preset.name!r} is already defined by plugin "
                        f"{table[preset.name].source}; this one is ignored",
                    )
                )
                continue
            table[preset.name] = dataclasses.replace(preset, source=plugin)
            kept[kind].append(preset.name)
    registry.plugins.append(PluginInfo(name, source, tuple(kept[OptimizerPreset]), tuple(kept[MethodPreset]),
                                       tuple(kept[Workload])))


def validate_workload(workload: Any, kind: type = Workload) -> Workload:
    """Check what a ``mtbench_workloads`` hook returned; ValueError with the reason when it is not a usable
    Workload (the dataclass checks its tasks, batch shape and names itself when it is made)."""
    if not isinstance(workload, Workload):
        raise ValueError(f"returned {type(workload).__name__}, expected mtbench.Workload")
    name = workload.name
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum() or name != name.lower():
        raise ValueError(f"workload name {name!r} must be lower-case letters, digits, '_' or '-'")
    for what, factory in (("build_model", workload.build_model), ("build_data", workload.build_data),
                          *((f"task {t.name!r} loss", t.loss) for t in workload.tasks),
                          *((f"task {t.name!r} meter", t.meter) for t in workload.tasks)):
        if not (callable(factory) or is_dotted_name(factory)):
            raise ValueError(f"workload {name!r}: {what} {factory!r} is not callable or a dotted name "
                             "'package.module:attr'")
    for task in workload.tasks:
        if not isinstance(task.name, str) or not task.name.replace("_", "").isalnum():
            raise ValueError(f"workload {name!r}: task name {task.name!r} must be letters, digits or '_'")
    return workload


def _as_list(returned: Any, hook: str, kind: type) -> list:
    if isinstance(returned, kind):
        return [returned]
    if not isinstance(returned, (list, tuple)):
        raise ValueError(f"{hook}() returned {type(returned).__name__}, expected a list of {kind.__name__}")
    return list(returned)


def _ordered(table: dict[str, Any]) -> dict[str, Any]:
    """Listing order: each preset's ``order``, ties in discovery order."""
    return dict(sorted(table.items(), key=lambda item: item[1].order))


def _expand(paths: list[tuple[Path, str]], registry: Registry) -> list[Path]:
    """The plugin files that ``paths`` name; each path is given with where it came from, for errors."""
    files = []
    for path, origin in paths:
        if path.is_dir():
            files += sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        elif path.suffix == ".py" and path.is_file():
            files.append(path)
        elif not path.exists():
            registry.failures.append(PluginFailure("", origin, f"{path} does not exist"))
        else:
            registry.failures.append(PluginFailure("", origin, f"{path} is not a .py file or a folder of them"))
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
