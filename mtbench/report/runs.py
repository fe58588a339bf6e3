"""Loading run directories: what the trainer wrote, read back (through mtbench.rundir) and nothing else.

A run directory may be one of a comparison (``runs/<row>-seed<k>``, the comparison directory's layout
is mtbench.report.comparison's), a loose run, or a trial of a tune; a planned run that never started is
a Run too, with status "not run". Every reader of results starts here, so a report can be rebuilt long
after the runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Iterable

from ..errors import MTBenchError
from ..rundir import (
    CONFIG_FILE, ENV_FILE, EPOCHS_FILE, SUMMARY_FILE, EpochRow, RunFileError, Summary, read_epochs, read_json,
    read_summary,
)
from .comparison import COMPARISON_FILE, is_comparison_dir, planned_runs, runs_folder
from .rows import RowSpec

__all__ = ["Run", "find_runs", "is_run_dir", "load_run", "unseen"]


@dataclass
class Run:
    """One run directory as written by the trainer (or a planned run that never started)."""

    path: Path
    optimizer: str
    seed: int | None
    config: dict = field(default_factory=dict)
    summary: Summary | None = None
    epochs: list[EpochRow] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    failure: str | None = None  # why a run that left no summary.json failed, when the caller knows
    problems: dict[str, str] = field(default_factory=dict)  # file name -> "is missing", "is not valid JSON"...
    row: RowSpec | None = None

    def __post_init__(self):
        if self.row is None:
            told = self.told

            def setting(key: str, recorded):  # config.json's, else summary.json's
                return self.config[key] if key in self.config else recorded

            self.row = RowSpec.of(self.optimizer, setting("method", told.method),
                                  setting("task_weights", told.task_weights), setting("tasks", told.tasks))

    @property
    def status(self) -> str:
        if self.summary is None:
            if not self.path.exists():
                return "not run"
            return "no summary" if self.problems.get(SUMMARY_FILE, "is missing") == "is missing" else "bad summary"
        return str(self.summary.status or "unknown")

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def reason(self) -> str:
        """Why the run did not complete, in one line: 'failed: <error>', 'interrupted ...', 'not run', or
        what is wrong with summary.json and what epochs.csv shows was done."""
        if self.summary is None:
            if self.failure:
                return f"failed: {self.failure}"
            if not self.path.exists():
                return "not run"
            return f"{SUMMARY_FILE} {self.problems.get(SUMMARY_FILE, 'is missing')}; {self.progress}"
        if self.status in ("running", "interrupted"):  # "running" left behind: the process was killed
            done = self.summary.epochs
            return f"interrupted after epoch {done}" if done else "interrupted before the first epoch ended"
        error = self.summary.error
        return "failed: " + (str(error).splitlines()[0] if error else f"status {self.status}")

    @property
    def progress(self) -> str:
        """What epochs.csv shows was done, for a run whose summary does not say."""
        if not self.epochs:
            return f"{EPOCHS_FILE} shows no finished epoch"
        last, n, planned = self.epochs[-1], len(self.epochs), self.config.get("epochs")
        done = f"{n} of {planned} epochs" if planned else f"{n} epoch{'s' * (n != 1)}"
        step = f", step {last.step}" if last.step is not None else ""
        return f"{EPOCHS_FILE} shows {done} done (last: epoch {last.epoch}{step})"

    @property
    def split(self) -> str:
        """Where targets are read: "holdout" when the run evaluated a held-out split, else "val" (the test split)."""
        return "holdout" if any(e.holdout_top1 is not None or e.holdout_miou is not None
                                or any(v is not None for k, v in e.metrics.items() if k.startswith("holdout_"))
                                for e in self.epochs) else "val"

    @property
    def key(self) -> Hashable:
        """What pairs this run with the other rows' runs: its seed (its folder when it has none)."""
        return self.seed if self.seed is not None else str(self.path)

    @property
    def identities(self) -> set[tuple[str, str]]:
        """What makes two loaded runs one: the directory's real path (a link, a folder given twice), and
        for a run that wrote its config and summary, their content (a copy of the run directory)."""
        found = {("path", os.path.realpath(self.path))}
        if self.config and self.summary is not None:
            found.add(("content", json.dumps([self.config, self.summary.to_json()], sort_keys=True)))
        return found

    @property
    def told(self) -> Summary:
        """The run's summary; an empty one (every field None) for a run that left none to read."""
        return self.summary or Summary()


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() or (path / SUMMARY_FILE).is_file()


def load_run(path: Path, optimizer: str | None = None, seed: int | None = None, row: RowSpec | None = None) -> Run:
    """Read a run directory; a missing or unreadable file leaves its part empty and says why in ``problems``.

    ``optimizer`` and ``seed`` stand in when neither config.json nor summary.json names them; ``row`` is
    the row a comparison planned it as (default: the row its settings make).
    """
    path = Path(path)
    problems: dict[str, str] = {}

    def read(name: str, load=read_json):
        try:
            return load(path / name)
        except RunFileError as exc:
            problems[name] = exc.problem
            return None

    config = read(CONFIG_FILE) or {}
    summary = read(SUMMARY_FILE, lambda file: read_summary(file.parent))
    env = read(ENV_FILE) or {}
    try:
        epochs = read_epochs(path)
    except RunFileError as exc:
        problems[EPOCHS_FILE], epochs = exc.problem, []
    told = summary or Summary()
    optimizer = config.get("optimizer") or told.optimizer or optimizer or path.name
    seed = config.get("seed", seed if told.seed is None else told.seed)
    return Run(path, optimizer, seed, config, summary, epochs, env, problems=problems, row=row)


def unseen(runs: Iterable[Run], seen: set) -> list[Run]:
    """The runs whose identity (Run.identities) is not in ``seen``, each once; ``seen`` gets theirs.

    Directories given together may reach one run twice (two comparisons sharing a run, a comparison
    and its own runs folder, a copy): it counts once, where it was first found.
    """
    out = []
    for run in runs:
        identities = run.identities
        if not identities & seen:
            seen |= identities
            out.append(run)
    return out


def find_runs(paths: Iterable[Path]) -> list[Run]:
    """The runs under ``paths``: comparison directories, run directories, or folders of run directories,
    each run once (see ``unseen``).

    A comparison's planned runs that have no directory yet are included with status "not run".
    """
    runs: list[Run] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise MTBenchError(f"{path} is not a directory")
        if is_comparison_dir(path):
            runs.extend(_comparison_runs(path))
        elif is_run_dir(path):
            runs.append(load_run(path))
        else:
            found = sorted(p for p in path.iterdir() if p.is_dir() and is_run_dir(p))
            if not found:
                raise MTBenchError(
                    f"{path} is neither a run directory (no config.json) nor a comparison "
                    f"directory (no {COMPARISON_FILE}), and holds no run directories"
                )
            runs.extend(load_run(p) for p in found)
    return unseen(runs, set())


def _comparison_runs(path: Path) -> list[Run]:
    """A comparison's planned runs (with status "not run" where no directory exists yet) and any other run
    directory found in its ``runs/`` folder."""
    planned = planned_runs(path)
    runs = [load_run(where, row.optimizer, seed, row if from_rows else None)
            for row, seed, where, from_rows in planned]
    known = {r.path.name for r in runs}
    extra = sorted(p for p in runs_folder(path).glob("*") if p.name not in known and is_run_dir(p))
    return runs + [load_run(p) for p in extra]
