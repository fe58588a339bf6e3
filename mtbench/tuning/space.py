"""Search spaces of `mtbench tune`: each optimizer's space (its preset's, then ``--space``) and the points
the qmc and grid samplers draw before any trial runs.

A space maps a setting to a ``SearchDim`` (a range, log-uniform or uniform) or a tuple of choices.
Optuna sees a range as a Float/IntDistribution and choices as a CategoricalDistribution of their
``--set`` spellings (``0.9,0.999``, ``true``), since tuples are not categorical values it can store.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ConfigError
from ..presets import OptimizerPreset, Param, SearchDim, check_search_entry
from ..text import did_you_mean, format_value

if TYPE_CHECKING:
    import optuna

__all__ = [
    "DEFAULT_SAMPLER", "SAMPLERS", "Space", "build_spaces", "distributions", "grid_values", "parse_entry",
    "planned_points", "sampler_seed", "scope_items", "setting_items", "space_record", "space_text", "suggest",
]

SAMPLERS = ("qmc", "grid", "tpe")
DEFAULT_SAMPLER = "qmc"
Space = dict[str, "SearchDim | tuple"]
_SPACE_HELP = "expected KEY=LOW:HIGH, KEY=LOW:HIGH:log or KEY=A|B|..., e.g. lr=1e-5:1e-1:log"


def scope_items(items: Sequence[str], presets: Mapping[str, OptimizerPreset]) -> dict[str, list[tuple[str, str, str]]]:
    """Share ``--space`` items out to the tuned optimizers by the rule of ``--set`` (compare.split_overrides).

    ``name.key=...`` goes to optimizer ``name``; ``key=...`` to every optimizer that accepts ``key``
    (an error when none does). Returns (key, range text, the item as typed) per optimizer, the shared
    items before the scoped ones so that the scoped ones win.
    """
    shared: dict[str, list] = {name: [] for name in presets}
    scoped: dict[str, list] = {name: [] for name in presets}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--space {item!r}: {_SPACE_HELP}")
        if "." in key:
            name, _, sub = key.partition(".")
            if name not in presets:
                raise ConfigError(f"--space {item}: {name!r} is not one of the tuned optimizers "
                                  f"({', '.join(presets)}){did_you_mean(name, list(presets))}")
            scoped[name].append((sub, value, item))
            continue
        takers = [name for name, preset in presets.items() if preset.param(key) is not None]
        if not takers:
            raise ConfigError(f"--space {item}: none of the tuned optimizers accepts {key!r} "
                              "(mtbench list -v shows what each accepts)")
        for name in takers:
            shared[name].append((key, value, item))
    return {name: shared[name] + scoped[name] for name in presets}


def parse_entry(key: str, text: str, param: Param | None, item: str) -> SearchDim | tuple:
    """``LOW:HIGH``, ``LOW:HIGH:log`` or ``A|B|...`` as a checked search entry; ``item`` names it in errors."""
    if param is None:
        raise ConfigError(f"--space {item}: the optimizer does not accept {key!r}")
    text = text.strip()
    try:
        if "|" in text:
            return check_search_entry(key, [param.parse(key, choice) for choice in text.split("|")], param)
        parts = [p.strip() for p in text.split(":")]
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise ValueError
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(f"--space {item} does not parse: {_SPACE_HELP}") from None
    except ConfigError as exc:
        raise ConfigError(f"--space {item}: {exc}") from None
    return SearchDim(low, high, log=len(parts) == 3).check(key, param, shown=f"--space {item}")


def build_spaces(presets: Mapping[str, OptimizerPreset], items: Sequence[str],
                 fixed: Mapping[str, Sequence[str]]) -> dict[str, Space]:
    """Each optimizer's search space: its preset's, less the settings ``--set`` fixes, with ``--space`` applied.

    ``fixed`` names, per optimizer, the keys given by ``--set``; searching one of them explicitly is an
    error (the value would be both fixed and searched).
    """
    scoped = scope_items(items, presets)
    spaces = {}
    for name, preset in presets.items():
        space = {k: v for k, v in preset.tuning_space().items() if k not in fixed[name]}
        for key, value, item in scoped[name]:
            if key in fixed[name]:
                raise ConfigError(f"--space {item}: {name}'s {key} is fixed by --set; drop one of them")
            space[key] = parse_entry(key, value, preset.param(key), item)
        if not space:
            raise ConfigError(f"{name}: nothing to search (no lr and no search_space in its preset, or --set "
                              f"fixes all of it); give a range with --space {name}.KEY=LOW:HIGH")
        spaces[name] = space
    return spaces


def space_record(space: Space) -> dict[str, Any]:
    """A space as JSON: ranges as {low, high, log}, choices as their --set spellings."""
    return {key: ({"low": e.low, "high": e.high, "log": e.log} if isinstance(e, SearchDim)
                  else {"choices": [format_value(c, exact=True) for c in e]}) for key, e in space.items()}


def space_text(space: Space) -> str:
    """A space as ``--space`` items: ``lr=0.0001:0.01:log weight_decay=...``."""
    return " ".join(e.text(k) if isinstance(e, SearchDim) else f"{k}={'|'.join(format_value(c) for c in e)}"
                    for k, e in space.items())


# ---------------------------------------------------------------------------------------------
# Optuna's view of a space


def distributions(space: Space, preset: OptimizerPreset) -> dict[str, "optuna.distributions.BaseDistribution"]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for key, entry in space.items():
        if isinstance(entry, SearchDim):
            # a key no preset has (the task weights' quantiles, tuning.simplex) is a float
            if getattr(preset.param(key), "kind", float) is int:
                out[key] = IntDistribution(int(entry.low), int(entry.high), log=entry.log)
            else:
                out[key] = FloatDistribution(entry.low, entry.high, log=entry.log)
        else:
            out[key] = CategoricalDistribution([format_value(c, exact=True) for c in entry])
    return out


def suggest(trial: "optuna.Trial", dists: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's point: Optuna's sampler draws it, or returns the one planned for the trial."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    params = {}
    for key, dist in dists.items():
        if isinstance(dist, CategoricalDistribution):
            params[key] = trial.suggest_categorical(key, dist.choices)
        elif isinstance(dist, IntDistribution):
            params[key] = trial.suggest_int(key, dist.low, dist.high, log=dist.log)
        else:
            params[key] = trial.suggest_float(key, dist.low, dist.high, log=dist.log)
    return params


def setting_items(params: Mapping[str, Any]) -> list[str]:
    """A point as ``--set`` items, floats with all their digits (a choice is already its spelling)."""
    return [f"{key}={value if isinstance(value, str) else format_value(value, exact=True)}"
            for key, value in params.items()]


# ---------------------------------------------------------------------------------------------
# Points planned up front


def sampler_seed(seed: int) -> int:
    """A run's seed (any of [0, 2**64), as `mtbench run` takes it) as the 32-bit seed numpy's generators
    behind Optuna's samplers take; a seed below 2**32 is itself."""
    return seed % 2**32


def planned_points(space: Space, preset: OptimizerPreset, sampler: str, n: int, seed: int) -> list[dict] | None:
    """The ``n`` points qmc or grid visits, in order; None for tpe, whose sampler draws as trials run.

    The points come from Optuna's own samplers run on an in-memory study, so that a shared study
    can hold them as WAITING trials that workers take one each (see NOTE [exact budget] in study.py).
    """
    if sampler == "tpe":
        return None
    import optuna

    from .study import quiet_optuna

    with quiet_optuna():
        return _draw(space, preset, sampler, n, seed)


def _draw(space: Space, preset: OptimizerPreset, sampler: str, n: int, seed: int) -> list[dict]:
    import optuna

    dists = distributions(space, preset)
    if sampler == "qmc":
        planner = optuna.create_study(direction="maximize", sampler=optuna.samplers.QMCSampler(
            qmc_type="halton", scramble=True, seed=sampler_seed(seed)))
        # QMCSampler takes its space from the study's first finished trial; one added at a corner
        # (drawn by nobody) fixes it, so the n trials asked below are Halton points 0..n-1.
        corner = {key: (dist.choices[0] if hasattr(dist, "choices") else dist.low) for key, dist in dists.items()}
        planner.add_trial(optuna.trial.create_trial(params=corner, distributions=dists, value=0.0))
    else:
        planner = optuna.create_study(direction="maximize", sampler=optuna.samplers.GridSampler(
            grid_values(space, preset, n), seed=sampler_seed(seed)))
    # The planner's trials stay RUNNING: GridSampler then counts their points as taken, and telling
    # the last one would make it stop a study that runs no optimize loop.
    return [dict(planner.ask(dists).params) for _ in range(n)]


def grid_values(space: Space, preset: OptimizerPreset, n: int) -> dict[str, list]:
    """Per setting, the values of a grid of exactly ``n`` points: log-spaced over a log range
    (DeepOBS), evenly spaced over a uniform one, every choice of a list.

    The ranges share what the choices leave of ``n`` as evenly as its factors allow, the larger
    counts going to the settings listed first (lr before weight_decay); a range given one value
    holds its midpoint (geometric for a log range).
    """
    choices = {k: len(e) for k, e in space.items() if not isinstance(e, SearchDim)}
    ranges = [k for k, e in space.items() if isinstance(e, SearchDim)]
    fixed = math.prod(choices.values())
    if n % fixed or (not ranges and n != fixed):
        raise ConfigError(f"--sampler grid: --trials {n} cannot be a grid over this space ({space_text(space)}): "
                          f"the choices make {fixed} combinations; give --trials a multiple of {fixed}"
                          + ("" if ranges else f", here exactly {fixed}"))
    counts = _balanced_factors(n // fixed, len(ranges))
    values: dict[str, list] = {}
    for key, entry in space.items():
        if not isinstance(entry, SearchDim):
            values[key] = [format_value(c, exact=True) for c in entry]
            continue
        k = counts[ranges.index(key)]
        if k == 1:
            points = [math.sqrt(entry.low * entry.high) if entry.log else (entry.low + entry.high) / 2]
        else:
            lo, hi = (math.log(entry.low), math.log(entry.high)) if entry.log else (entry.low, entry.high)
            points = [lo + (hi - lo) * i / (k - 1) for i in range(k)]
            # 12 digits: 0.001, not the 0.0010000000000000002 that exp(log(x)) gives back
            points = [float(f"{math.exp(p) if entry.log else p:.12g}") for p in points]
        if getattr(preset.param(key), "kind", float) is int:
            points = sorted({round(p) for p in points})
            if len(points) < k:
                raise ConfigError(f"--sampler grid: {entry.text(key)} holds {len(points)} whole numbers, fewer "
                                  f"than the {k} grid points --trials {n} needs; give fewer --trials")
        values[key] = points
    return values


def _balanced_factors(m: int, parts: int) -> list[int]:
    """``parts`` whole numbers whose product is ``m``, as equal as its prime factors allow, largest first."""
    if parts == 0:
        return []
    factors, p, rest = [], 2, m
    while p * p <= rest:
        while rest % p == 0:
            factors.append(p)
            rest //= p
        p += 1
    if rest > 1:
        factors.append(rest)
    counts = [1] * parts
    for f in sorted(factors, reverse=True):
        counts[counts.index(min(counts))] *= f
    return sorted(counts, reverse=True)
