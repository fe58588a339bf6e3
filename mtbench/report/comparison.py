"""The comparison directory: the one owner of its layout, of comparison.json, and of opening, checking and
diffing it.

Layout of a comparison directory::

    comparison.json          the rows, seeds and resolved settings (checked on resume)
    runs/<row>-seed<k>/      one run directory per row and seed, written by the trainer
    report.md/.csv/.json, *.png   written by `mtbench report` (and at the end of `mtbench compare`)
    .lock                    while a `mtbench compare` works in it: a second one is turned away

comparison.json says what was planned, so a report lists a planned run that never started ("not run")
and a resumed comparison is checked against the one it continues (``describe_difference`` names the
first settings that differ; `mtbench tune` uses it for its own records too).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from ..config import ADDED_SETTINGS
from ..errors import ConfigError
from ..locks import LOCK_FILE, DirLock
from ..rundir import RunFileError, atomic_write_text, read_json
from ..text import format_value
from .rows import RowSpec

__all__ = [
    "COMPARISON_FILE", "COMPARISON_FORMAT", "RUNS_DIR", "PlannedEntry", "comparison_record", "default_directory",
    "describe_difference", "flatten", "is_comparison_dir", "open_directory", "planned_runs", "row_names",
    "run_dir", "run_name", "runs_folder",
]

COMPARISON_FILE = "comparison.json"
RUNS_DIR = "runs"
COMPARISON_FORMAT = 1
# Settings left out of comparison.json: they differ between the runs of one comparison by design
# (run_dir, seed), or change only speed, so a comparison may resume with another value (workers).
_NOT_RECORDED = ("run_dir", "seed", "workers")


class PlannedEntry(Protocol):
    """What comparison.json records of one planned run: its row, its seed and its resolved config."""

    row: RowSpec
    seed: int

    @property
    def config(self) -> Any: ...  # a RunConfig: to_dict(), task_weights


def run_name(row: str, seed: int) -> str:
    """The folder of one run inside a comparison's ``runs/`` folder: the row's name and the seed."""
    return f"{row}-seed{seed}"


def runs_folder(out: Path) -> Path:
    return Path(out) / RUNS_DIR


def run_dir(out: Path, row: str, seed: int) -> Path:
    """Where the run of ``row`` and ``seed`` lives in the comparison directory ``out``."""
    return runs_folder(out) / run_name(row, seed)


def is_comparison_dir(path: Path) -> bool:
    return (Path(path) / COMPARISON_FILE).is_file()


def planned_runs(out: Path) -> list[tuple[RowSpec, int, Path, bool]]:
    """The runs comparison.json plans, seed by seed: (row, seed, run directory, whether the record named the
    row). A record written before rows existed has one row per optimizer, named after it (its runs' own
    settings then say what row they are); an unreadable record plans nothing."""
    path = Path(out) / COMPARISON_FILE
    try:
        record = read_json(path)
    except RunFileError:
        return []  # the plan is unreadable: the report shows the run directories that are there
    rows = [RowSpec.from_record(r, str(path)) for r in record.get("rows") or []]
    seeds = record.get("seeds", [])
    if rows:
        return [(row, s, run_dir(out, row.name, s), True) for s in seeds for row in rows]
    return [(RowSpec.of(o), s, run_dir(out, o, s), False) for s in seeds for o in record.get("optimizers", [])]


def comparison_record(plan: Sequence[PlannedEntry]) -> dict:
    """What comparison.json holds: the optimizers, the rows, the seeds and each row's resolved settings.

    ``optimizers`` lists the compared optimizers (those of the rows with role "row"); a baseline's
    optimizer appears in its rows only.
    """
    settings: dict[str, dict] = {}
    rows: dict[str, dict] = {}
    seeded: dict[str, bool] = {}  # row -> its method's seed has been each run's seed so far
    for run in plan:
        config = json.loads(json.dumps(run.config.to_dict(), default=str))
        settings.setdefault(run.row.name, {k: v for k, v in config.items() if k not in _NOT_RECORDED})
        rows.setdefault(run.row.name, run.row.record(run.config.task_weights))
        seed = config["method_settings"].get("seed")
        seeded[run.row.name] = seeded.get(run.row.name, True) and seed is not None and seed == run.seed
    for name, follows in seeded.items():
        if follows:
            # The method draws from each run's own seed, which the record leaves out like the seed itself
            # (one seed set explicitly to that same value makes the same runs, and the same record).
            del settings[name]["method_settings"]["seed"]
    return {"format": COMPARISON_FORMAT,
            "optimizers": list(dict.fromkeys(r.optimizer for r in plan if r.row.role == "row")),
            "rows": list(rows.values()),
            "seeds": list(dict.fromkeys(r.seed for r in plan)),
            "settings": settings}


def row_names(record: dict) -> list[str]:
    """The row names of a comparison record; a record written before rows existed has one per optimizer."""
    rows = record.get("rows")
    if rows is None:
        return list(record.get("optimizers") or [])
    return [row.get("name") for row in rows if isinstance(row, dict)]


def default_directory(record: dict, root: Path = Path("comparisons")) -> Path:
    """``comparisons/<hash of the settings>``: the same command finds its directory again to resume."""
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    return root / digest[:10]


def open_directory(out: Path, record: dict, wait: bool = False,
                   on_wait: Callable[[str], None] | None = None) -> tuple[DirLock, bool]:
    """Create the comparison directory, or check that it holds this same comparison, and lock it.

    Returns the held lock (release it when the comparison is done) and True when resuming an
    existing comparison. Raises ConfigError naming the first differing settings when ``out`` holds
    another comparison, or something that is not a comparison; LockedError (naming the holder) when
    another process works in it, unless ``wait`` (then ``on_wait(holder)`` is called and it blocks).
    """
    _check_directory(out, record)  # before creating anything in a folder that is not ours
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the comparison directory {out}: {exc.strerror or exc}") from None
    lock = DirLock(out, hint="two comparisons cannot share one directory; wait for the other to finish, "
                              "use --wait to wait for it, or choose another --out").acquire(wait, on_wait=on_wait)
    try:
        resumed = _check_directory(out, record)  # again: the holder we waited for may have written it
        if not resumed:
            atomic_write_text(out / COMPARISON_FILE, json.dumps(record, indent=2) + "\n")
    except BaseException:
        lock.release()
        raise
    return lock, resumed


def _check_directory(out: Path, record: dict) -> bool:
    """True when ``out`` holds this comparison, False when it is absent or empty; else ConfigError."""
    path = out / COMPARISON_FILE
    if path.is_file():
        try:
            old = read_json(path)
        except RunFileError as exc:
            raise ConfigError(f"{exc}; choose another --out") from None
        difference = describe_difference(old, record)
        if difference:
            raise ConfigError(f"{out} holds a comparison with other settings ({difference}); "
                              "choose another --out, or repeat that comparison's options to resume it")
        return True
    if out.exists() and (not out.is_dir() or any(p.name != LOCK_FILE for p in out.iterdir())):
        raise ConfigError(f"{out} exists and is not a comparison directory (no {COMPARISON_FILE}); "
                          "choose another --out")
    return False


def describe_difference(old: dict, new: dict, limit: int = 3) -> str | None:
    """The settings in which two comparison records differ, as 'key: now X, there Y' (None: same)."""
    if old.get("format") != new.get("format"):
        return f"format {old.get('format')!r} there, {new.get('format')!r} now"
    for key, there, now in (("optimizers", old.get("optimizers"), new.get("optimizers")),
                            ("rows", row_names(old), row_names(new)), ("seeds", old.get("seeds"), new.get("seeds"))):
        if there != now:
            return f"{key}: {_show(now)} now, {_show(there)} there"
    old_s, new_s = old.get("settings") or {}, new.get("settings") or {}
    per_key: dict[str, list[str]] = {}
    for name in new_s:
        a, b = _flat(old_s.get(name, {})), _flat(new_s[name])
        for key in sorted(a.keys() | b.keys()):
            if a.get(key) != b.get(key):
                per_key.setdefault(key, []).append(name)
    diffs = []
    for key, names in per_key.items():
        first = names[0]
        a, b = _flat(old_s.get(first, {})).get(key), _flat(new_s[first]).get(key)
        where = key if len(names) == len(new_s) else f"{', '.join(names)} {key}"
        diffs.append(f"{where}: {_show(b)} now, {_show(a)} there")
    if not diffs:
        return None
    return "; ".join(diffs[:limit]) + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "")


def _flat(settings: dict) -> dict:
    """Settings flattened; an empty group (no method settings) says no more than its absent keys do, and a
    setting added since (the workload) reads as the value the record's runs had."""
    return {k: v for k, v in flatten({**ADDED_SETTINGS, **settings}).items() if v != {}}


def _show(value) -> str:
    return "unset" if value is None else format_value(value)


def flatten(settings: dict, prefix: str = "") -> dict:
    """Nested settings as one level, keyed by dotted paths (``hyperparams.lr``); an empty dict is a value."""
    out = {}
    for k, v in settings.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
