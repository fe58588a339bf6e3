"""Plugin discovery: entry points, local paths, the disable list."""

from .hookspecs import PROJECT, hookimpl, hookspec
from .manager import PluginFailure, Registry, load_registry

__all__ = ["PROJECT", "hookimpl", "hookspec", "PluginFailure", "Registry", "load_registry"]
