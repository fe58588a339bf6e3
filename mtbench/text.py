"""Formatting helpers shared by every printer: values as the user types them, one-line errors,
did-you-mean hints and tables. Imports nothing heavy."""

from __future__ import annotations

import difflib
from typing import Any, Mapping, Sequence

__all__ = ["did_you_mean", "failure_reason", "first_line", "format_settings", "format_table", "format_value"]


def format_value(value: Any, exact: bool = False) -> str:
    """A hyperparameter as the user would type it after ``--set key=``: 0.9,0.999 / 1e-08 / true.

    ``exact`` writes floats with all their digits (for a value read back, as in a replayed config).
    """
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(v, exact) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if exact else f"{value:g}"
    return str(value)


def format_settings(settings: Mapping[str, Any]) -> str:
    """Settings as the user would type them: ``lr=0.001 betas=0.9,0.999``."""
    return " ".join(f"{k}={format_value(v)}" for k, v in settings.items())


def first_line(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def failure_reason(exc: BaseException) -> str:
    """What plugin code did, for a message: ``called sys.exit(3)`` or ``raised Type: message``."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({'' if exc.code is None else repr(exc.code)})"
    return f"raised {first_line(exc)}"


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    """`; did you mean 'x'?` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], markdown: bool = False) -> str:
    """Plain-text tables for the terminal, Markdown ones for reports: columns padded to their widest
    cell; ``markdown`` adds pipes and the header rule."""
    cells = [[str(c) for c in headers]] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if markdown:
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
