"""``--config FILE``: option values from a TOML file, or a run's config.json to replay that run.

The file's values become the command's defaults (click's ``default_map``), so an option given on
the command line wins over the file. TOML keys are the long option names (``limit-train = 64``,
``set = ["lr=0.01"]`` or a ``[set]`` table); a run directory's ``config.json`` maps back onto the
options of ``mtbench run``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ..errors import ConfigError
from ..text import format_value

# config.json field -> option of `mtbench run`, where the names differ
_FIELD_OPTIONS = {"max_consecutive_skips": "max-skips", "hyperparams": "set"}
# config.json fields that are not options: where the run was written and what described its preset
_NOT_OPTIONS = ("run_dir", "preset", "extra", "max_corrupt_images")
# ctx.meta key of the file the options came from
_FILE = "mtbench.config_file"


def config_option(func):
    """Add ``--config FILE`` to a command; it is read before every other option."""
    return click.option(
        "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        metavar="FILE", is_eager=True, expose_value=False, callback=_load,
        help="Options from a TOML file (keys are long option names, e.g. limit-train = 64), or a run's "
             "config.json to replay it; options on the command line win.",
    )(func)


def _load(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    if path is None:
        return
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param=param) from None
    try:
        if path.suffix == ".json":
            values = _from_run_config(json.loads(text), path)
        else:
            values = _toml().loads(text)
        ctx.default_map = {**(ctx.default_map or {}), **_to_defaults(ctx.command, values, path)}
        ctx.meta[_FILE] = path
    except (ValueError, ConfigError) as exc:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise click.BadParameter(f"{path}: {exc}", param=param) from None


def config_file(ctx: click.Context | None) -> Path | None:
    """The ``--config`` file this command (or its group) read, if any."""
    return ctx.meta.get(_FILE) if ctx is not None else None


def origin(ctx: click.Context | None, param: click.Parameter | None) -> str:
    """`` (from --config FILE)`` when the value of ``param`` came from the config file, else ``""``:
    for the message of an error in that value."""
    path = config_file(ctx)
    if path is None or param is None or ctx.get_parameter_source(param.name) != ParameterSource.DEFAULT_MAP:
        return ""
    return f" (from --config {path})"


def _toml():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib


def _from_run_config(data: Any, path: Path) -> dict[str, Any]:
    """A run's config.json as the options of `mtbench run` that reproduce it (in a new run directory)."""
    if not isinstance(data, dict) or "optimizer" not in data or "hyperparams" not in data:
        raise ConfigError("not a run's config.json (no optimizer and hyperparams); a TOML file needs the .toml suffix")
    values = {}
    for name, value in data.items():
        if name in _NOT_OPTIONS or value is None:
            continue
        if name == "method_settings":
            continue  # below, with the optimizer's settings
        key = _FIELD_OPTIONS.get(name, name.replace("_", "-"))
        if name == "hyperparams":
            value = [f"{k}={format_value(v, exact=True)}" for k, v in value.items()]
            value += [f"method.{k}={format_value(v, exact=True)}" for k, v in data.get("method_settings", {}).items()]
        values[key] = value
    return values


def _to_defaults(command: click.Command, values: dict[str, Any], path: Path) -> dict[str, Any]:
    """``values`` keyed by option name -> click's default_map keyed by parameter name, typed for click."""
    options = {opt[2:]: p for p in command.params if isinstance(p, click.Option) for opt in p.opts
               if opt.startswith("--") and p.expose_value}
    defaults = {}
    for key, value in values.items():
        param = options.get(key)
        if param is None:
            known = ", ".join(sorted(options))
            raise ConfigError(f"unknown option {key!r} for `mtbench {command.name}` (expected one of: {known})")
        if param.multiple:
            if isinstance(value, dict):
                value = [f"{k}={format_value(v, exact=True)}" for k, v in value.items()]
            elif not isinstance(value, list):
                value = [value]
            value = [v if isinstance(v, str) else format_value(v, exact=True) for v in value]
        elif isinstance(value, list):
            value = format_value(value, exact=True)  # a pair such as task-weights = [0.3, 0.7]
        defaults[param.name] = value
    return defaults
