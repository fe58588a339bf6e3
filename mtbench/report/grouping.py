"""Rows over seeds: the loaded runs grouped by the row they belong to and the settings they share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

from ..text import format_value
from .comparison import flatten
from .rows import RowSpec
from .runs import Run

__all__ = ["RowRuns", "group_runs"]

# Settings that do not make two runs different experiments when grouping runs into rows.
_PER_RUN_KEYS = ("run_dir", "seed", "preset")


@dataclass
class RowRuns:
    """The runs of one row with one set of settings, over seeds."""

    label: str
    spec: RowSpec
    runs: list[Run]
    expected: dict | None = None  # the guide's ranges for real data, from config.json["preset"]

    @property
    def optimizer(self) -> str:
        return self.spec.optimizer

    @property
    def role(self) -> str:
        return self.spec.role

    @property
    def done(self) -> list[Run]:
        return [r for r in self.runs if r.completed]


def group_runs(runs: Sequence[Run]) -> list[RowRuns]:
    """Runs grouped by row and settings, in order of first appearance.

    Two runs of one row whose settings differ (other than seed and folder) form two groups, labelled
    with the settings that tell them apart.
    """
    groups: dict[tuple[str, str], RowRuns] = {}
    for run in runs:
        key = (run.row.name, _signature(run.config) if run.config else "")
        if not run.config:
            key = next((k for k in groups if k[0] == run.row.name), key)
        group = groups.setdefault(key, RowRuns(run.row.name, run.row, []))
        group.runs.append(run)
        group.expected = group.expected or (run.config.get("preset") or {}).get("expected")
    by_name: dict[str, list[RowRuns]] = {}
    for group in groups.values():
        by_name.setdefault(group.spec.name, []).append(group)
    for same in by_name.values():
        if len(same) > 1:
            flats = [flatten(_row_settings(g.runs[0].config)) for g in same]
            differ = [k for k in flats[0].keys() | set().union(*flats) if len({repr(f.get(k)) for f in flats}) > 1]
            for group, flat in zip(same, flats):
                group.label = group.spec.name + " (" + ", ".join(
                    f"{k.split('.')[-1]}={format_value(flat.get(k))}" for k in sorted(differ)) + ")"
    return list(groups.values())


def _signature(config: dict) -> str:
    return json.dumps(_row_settings(config), sort_keys=True)


def _row_settings(config: dict) -> dict:
    """A run's settings that its row shares with the row's other runs: not the seed, nor a random
    method's seed that follows it, nor the folder."""
    settings = {k: v for k, v in config.items() if k not in _PER_RUN_KEYS}
    method = settings.get("method_settings")
    if isinstance(method, dict) and "seed" in method and method["seed"] == config.get("seed"):
        settings["method_settings"] = {k: v for k, v in method.items() if k != "seed"}
    return settings
