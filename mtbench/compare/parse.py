"""Parsing a comparison's lists as the command line gives them: seeds, optimizers, methods, the task-weight
sweep. Each error is one ConfigError line naming the bad value and what was expected."""

from __future__ import annotations

from ..config import LIMITS
from ..errors import ConfigError
from ..plugins import Registry

__all__ = ["parse_methods", "parse_optimizers", "parse_seeds", "parse_sweep"]


def parse_seeds(text: str, first: int = 0) -> tuple[int, ...]:
    """``"3"`` -> seeds first, first+1, first+2; ``"0,5,7"`` (any comma) -> exactly those seeds."""
    text = text.strip()
    items = [t.strip() for t in text.split(",")]
    try:
        values = [int(t) for t in items if t]
    except ValueError:
        values = []
    if not values or (len(items) > 1 and "" in items[:-1]):
        raise ConfigError(f"{text!r} does not parse: expected a count like 3 or a list like 0,5,7")
    most, top = LIMITS["seeds"].high, LIMITS["seed"].high
    if "," not in text:
        if not 1 <= values[0] <= most:
            raise ConfigError(f"{text!r}: a seed count must be at least 1 and at most {most} (a list is written 0,5,7)")
        return tuple(range(first, first + values[0]))
    if len(values) > most:
        raise ConfigError(f"{text[:20]!r}... lists {len(values)} seeds: expected at most {most}")
    if any(not 0 <= v <= top for v in values):
        raise ConfigError(f"{text!r}: seeds must be >= 0 and <= {top}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{text!r} repeats a seed")
    return tuple(values)


def _names(text: str, example: str) -> list[str]:
    """The names of a comma list, each once; ConfigError for an empty list or a repeated name."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{text!r} is empty: expected a comma list such as {example} (mtbench list shows all)")
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is not None:
        raise ConfigError(f"{repeated!r} is listed twice")
    return names


# NOTE [default rows]: without --optimizers a comparison or a tune takes the guide's presets and every
# other plugin's, not the zoo's (torch.optim's and pytorch-optimizer's, twenty more rows); `all` takes
# every discovered preset. Whichever are chosen are treated alike: same seeds, data and budget.
ZOO_ORIGINS = ("torch", "pytorch-optimizer")


def parse_optimizers(text: str | None, registry: Registry) -> list[str]:
    """The names in a comma list, each checked against the registry; None: the default rows (NOTE
    [default rows]), ``all``: every discovered preset."""
    if text is None or text.strip() == "all":
        names = [name for name, preset in registry.presets.items()
                 if text is not None or preset.listed_origin not in ZOO_ORIGINS]
        if not names:
            raise ConfigError("no optimizer presets were found (mtbench plugins shows why)")
        return names
    names = _names(text, "adam,sgd")
    for name in names:
        registry.get(name)  # ConfigError with a did-you-mean for an unknown name
    return names


def parse_methods(text: str, registry: Registry) -> list[str]:
    """The multi-task methods of a comma list (``sum`` is the plain weighted loss), each checked."""
    names = _names(text, "sum,pcgrad")
    for name in names:
        registry.get_method(name)  # ConfigError with a did-you-mean for an unknown name
    return names


def parse_sweep(text: str) -> tuple[float, ...]:
    """The weights w of ``--task-weights-sweep 0.1,0.3``: each a number in (0, 1), the tasks getting (w, 1-w)."""
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise ConfigError(f"{text!r} is empty: expected weights in (0, 1) such as 0.1,0.3,0.5,0.7,0.9")
    weights: list[float] = []
    for item in items:
        try:
            w = float(item)
        except ValueError:
            raise ConfigError(f"{item!r} is not a number: expected weights in (0, 1) such as "
                              "0.1,0.3,0.5,0.7,0.9") from None
        if not 0 < w < 1:  # also refuses nan
            raise ConfigError(f"{item} is out of range: expected each weight w in (0, 1), the tasks "
                              "getting w and 1-w")
        if w in weights:
            raise ConfigError(f"{item} is listed twice")
        weights.append(w)
    return tuple(weights)
