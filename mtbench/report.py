"""Comparison reports from run directories: loading, rows over seeds, selection, targets, the verdict.

Everything here reads run directories (through mtbench.rundir) and nothing else, so a report can be
rebuilt long after the runs, from comparison directories or single runs alike. The statistics are
mtbench.stats', the verdict's words mtbench.verdict's; the files a report writes are
mtbench.reportfiles'.

A comparison is a list of rows run for each seed. A row is (optimizer, method, task weights, tasks)
with a role: "row" (compared against the best), "sweep" (a point of the scalarization front, task
weights other than equal) or "baseline" (a single-task run, the reference of Δm).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Iterable, Sequence

from .config import SUM_METHOD, TASKS
from .convergence import (
    TASK_METRICS, UNKNOWN, AbsoluteTarget, Target, convergence_label, convergence_target, default_target,
    epoch_metrics, first_reach, joint_score,
)
from .errors import ConfigError, DataError, MTBenchError
from .text import format_value
from .rundir import (
    CONFIG_FILE, ENV_FILE, EPOCHS_FILE, SUMMARY_FILE, EpochRow, RunFileError, Summary, read_epochs, read_json,
    read_summary,
)
from .rows import ROLES
from .rows import Row as RowSpec
from .stats import delta_m, summarize, summarize_time_to_target
from .verdict import (
    DEFAULT_PRIMARY, DELTA_M, METRIC_NAMES, PRIMARY_METRICS, paired_verdict, scalarization_front,
    verdict_sentences,
)

COMPARISON_FILE = "comparison.json"
RUNS_DIR = "runs"
SELECTIONS = ("final", "best-holdout")
DEFAULT_SELECTION = "final"
# Settings that do not make two runs different experiments when grouping runs into rows.
_PER_RUN_KEYS = ("run_dir", "seed", "preset")
# The metrics a row is summarised by over seeds, in the order report.json lists them.
ROW_METRICS = ("top1", "miou", "joint", "delta_m", "steps_to_target")


def run_name(row: str, seed: int) -> str:
    """The folder of one run inside a comparison's ``runs/`` folder: the row's name and the seed."""
    return f"{row}-seed{seed}"


# ---------------------------------------------------------------------------------------------
# Loading


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


def is_comparison_dir(path: Path) -> bool:
    return (path / COMPARISON_FILE).is_file()


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
    try:
        record = read_json(path / COMPARISON_FILE)
    except RunFileError:
        record = {}  # the plan is unreadable: report the run directories that are there
    where = str(path / COMPARISON_FILE)
    rows = [RowSpec.from_record(r, where) for r in record.get("rows") or []]
    if rows:
        planned = [(row.name, row.optimizer, row, s) for s in record.get("seeds", []) for row in rows]
    else:  # a comparison planned before rows: one row per optimizer, named after it
        planned = [(o, o, None, s) for s in record.get("seeds", []) for o in record.get("optimizers", [])]
    runs = [load_run(path / RUNS_DIR / run_name(name, s), o, s, row) for name, o, row, s in planned]
    known = {r.path.name for r in runs}
    extra = sorted(p for p in (path / RUNS_DIR).glob("*") if p.name not in known and is_run_dir(p))
    return runs + [load_run(p) for p in extra]


# ---------------------------------------------------------------------------------------------
# Rows over seeds


@dataclass
class Group:
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


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs grouped by row and settings, in order of first appearance.

    Two runs of one row whose settings differ (other than seed and folder) form two groups, labelled
    with the settings that tell them apart.
    """
    groups: dict[tuple[str, str], Group] = {}
    for run in runs:
        key = (run.row.name, _signature(run.config) if run.config else "")
        if not run.config:
            key = next((k for k in groups if k[0] == run.row.name), key)
        group = groups.setdefault(key, Group(run.row.name, run.row, []))
        group.runs.append(run)
        group.expected = group.expected or (run.config.get("preset") or {}).get("expected")
    by_name: dict[str, list[Group]] = {}
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


def flatten(settings: dict, prefix: str = "") -> dict:
    """Nested settings as one level, keyed by dotted paths (``hyperparams.lr``); an empty dict is a value."""
    out = {}
    for k, v in settings.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ---------------------------------------------------------------------------------------------
# Selection: which epoch of a run is reported


@dataclass(frozen=True)
class Selected:
    """The figures reported for one run: the test split's, at the epoch the selection rule chose."""

    epoch: int | None
    step: int | None
    top1: float | None
    miou: float | None
    rule: str  # "final", "best holdout", or "final (no holdout figures)"

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "top1": self.top1, "miou": self.miou, "rule": self.rule}


def select(run: Run, selection: str = DEFAULT_SELECTION) -> Selected | None:
    """The reported figures of a completed run (None for any other).

    "final": the last epoch, the fixed budget. "best-holdout": the epoch with the best joint score on
    the held-out split, reported with that epoch's test figures; the test split chooses nothing. A run
    without holdout figures falls back to its final epoch, and says so.
    """
    if selection not in SELECTIONS:
        raise ConfigError(f"selection {selection!r} is not known (expected {' or '.join(SELECTIONS)})")
    if not run.completed:
        return None
    told = run.summary
    final = Selected(told.epochs, told.steps, told.final_top1, told.final_miou, "final")
    if selection == "final":
        return final
    best, best_score = None, None
    for row in run.epochs:
        score = joint_score(*epoch_metrics(row, "holdout"), run.row.tasks)
        if score is not None and (best_score is None or score > best_score):  # ties: the earlier epoch
            best, best_score = row, score
    if best is None:
        return Selected(final.epoch, final.step, final.top1, final.miou, "final (no holdout figures)")
    return Selected(best.epoch, best.step, best.val_top1, best.val_miou, "best holdout")


# ---------------------------------------------------------------------------------------------
# The report


@dataclass
class Row:
    """One row of the comparison over its seeds: summaries, time to target, verdict."""

    group: Group
    per_seed: dict[str, dict]  # metric -> {seed: value}; None for a failed run
    metrics: dict[str, dict | None]  # metric -> stats.summarize (time metrics add median and reached)
    convergence: str
    ratio: float | None
    verdict: dict | None = None  # verdict.paired_verdict's entry, for role "row"
    dominated_by_front: bool | None = None  # for a compared row, when a sweep exists
    on_front: bool | None = None  # for a sweep point

    @property
    def label(self) -> str:
        return self.group.label

    @property
    def role(self) -> str:
        return self.group.role

    @property
    def failures(self) -> list[Run]:
        return [r for r in self.group.runs if not r.completed]

    @property
    def status(self) -> str:
        failed = self.failures
        if not failed:
            return "ok"
        if len(self.group.runs) == 1:
            return failed[0].reason
        reasons = "; ".join(f"seed {r.seed}: {r.reason}" for r in failed)
        if len(failed) == len(self.group.runs):
            return reasons
        return f"{len(self.group.done)}/{len(self.group.runs)} ok; {reasons}"

    @property
    def tied_with_best(self) -> bool | None:
        return self.verdict["tied_with_best"] if self.verdict else None

    @property
    def rank(self) -> int | None:
        return self.verdict["rank"] if self.verdict else None

    @property
    def vs_best(self) -> dict | None:
        return self.verdict["vs_best"] if self.verdict else None


@dataclass
class Report:
    rows: list[Row]
    target: Target | AbsoluteTarget | None
    header: list[str]
    runs: list[Run]
    primary: str = DEFAULT_PRIMARY
    selection: str = DEFAULT_SELECTION
    verdict: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)  # how this report was measured, for the notes
    selected: dict[Path, Selected] = field(default_factory=dict)
    baselines: dict[str, str] = field(default_factory=dict)  # task -> label of the baseline row used for Δm

    @property
    def failed_runs(self) -> list[Run]:
        return [r for r in self.runs if not r.completed]

    def role(self, role: str) -> list[Row]:
        return [r for r in self.rows if r.role == role]

    @property
    def has_delta_m(self) -> bool:
        return any((r.metrics.get("delta_m") or {}).get("n") for r in self.rows)


def build_report(runs: Sequence[Run], target: float | AbsoluteTarget | None = None,
                 expected: dict[str, dict] | None = None, primary: str = DEFAULT_PRIMARY,
                 selection: str = DEFAULT_SELECTION) -> Report:
    """Aggregate runs into rows over seeds, measure time to target and give the verdict.

    ``target`` is a fraction of the best final relative joint score (the relative target), fixed
    per-task targets, or None: the embedded workload's fixed target where every run is of it, else
    the relative one; ``primary`` the metric the rows are ranked and tested on; ``selection`` which
    epoch of each run is reported. ``expected`` (optimizer -> {"top1", "miou", "convergence"}) fills in
    the guide's ranges for runs whose config.json does not carry them.
    """
    if not runs:
        raise MTBenchError("no runs to report")
    if primary not in PRIMARY_METRICS:
        raise ConfigError(f"--primary {primary!r} is not a metric to rank by (expected one of {', '.join(PRIMARY_METRICS)})")
    groups = group_runs(runs)
    for g in groups:
        g.expected = g.expected or (expected or {}).get(g.optimizer)
    selected = {r.path: s for r in runs if (s := select(r, selection)) is not None}
    per_seed = {g.label: _selected_values(g, selected) for g in groups}
    facts = _selection_facts(selection, selected.values())

    baselines, planned = _baselines(groups), _baselines(groups, completed=False)
    if primary == DELTA_M and len(planned) < len(TASKS):
        raise ConfigError(f"--primary {DELTA_M} needs single-task baseline rows for both tasks (such as adam[cls] "
                          "and adam[seg], run with --tasks cls and --tasks seg); this comparison has "
                          + (", ".join(g.label for g in planned.values()) or "none"))
    not_computed: dict[str, str] = {}  # row -> why its Δm could not be computed
    for g in groups:
        if g.role == "baseline" or len(planned) < len(TASKS):
            continue
        if len(baselines) < len(TASKS):
            problem = "no run of the single-task baseline " + ", ".join(
                planned[task].label for task in TASKS if task not in baselines) + " completed"
        else:
            per_seed[g.label]["delta_m"], problem = _delta_m(per_seed[g.label], baselines, per_seed)
        if problem:
            not_computed[g.label] = problem
            facts.append(f"Δm of {g.label}: not computed ({problem}).")

    measured = [g for g in groups if g.role != "baseline"]
    if target is None:
        target = default_target([r.config for r in runs])
    resolved = _resolve_target(target, measured)
    times = {g.label: _times_to_target(g, resolved) for g in measured}
    facts.extend(_split_facts(resolved, measured))

    rows = []
    for g in groups:
        values = per_seed[g.label]
        steps, seconds = times.get(g.label, ({}, {}))
        metrics = {m: summarize(values[m].values()) if m in values else None for m in ("top1", "miou", "joint", "delta_m")}
        metrics["steps_to_target"] = _time_summary(steps) if steps else None
        metrics["seconds_to_target"] = _time_summary(seconds) if seconds else None
        metrics["seconds_per_step"] = summarize(r.summary.seconds_per_step for r in g.done)
        metrics["peak_memory_mb"] = summarize(r.summary.peak_memory_mb for r in g.done)
        rows.append(Row(g, {**values, "steps_to_target": steps, "seconds_to_target": seconds}, metrics, "n/a", None))
    _label_convergence([r for r in rows if r.role != "baseline"], resolved)

    compared = [r for r in rows if r.role == "row"]
    verdict = paired_verdict({r.label: r.per_seed.get(primary, {}) for r in compared}, primary,
                             spreads={r.label: (r.metrics[primary] or {}).get("std") for r in compared})
    for r in compared:
        r.verdict = verdict[r.label]
    means = {r.label: (r.metrics[primary] or {}).get("mean") for r in compared}
    seeds = {r.label: (r.metrics[primary] or {}).get("n", 0) for r in compared}
    sentences = verdict_sentences(verdict, means, primary, seeds,
                                  unranked=_unranked(compared, primary, not_computed))
    sentences.extend(_front(rows))
    return Report(rows, resolved, _header(runs, groups), list(runs), primary, selection, sentences,
                  facts, selected, {task: g.label for task, g in baselines.items()})


def _unranked(compared: Sequence[Row], primary: str, not_computed: dict[str, str]) -> str | None:
    """Why no compared row has a value of ``primary`` although some of their runs completed (None: none did)."""
    if not any(r.group.done for r in compared):
        return None
    if primary == DELTA_M and not_computed:
        return f"Δm not computed: {'; '.join(dict.fromkeys(not_computed.values()))}"
    return f"no completed run recorded a {METRIC_NAMES[primary]}"


def _selected_values(group: Group, selected: dict[Path, Selected]) -> dict[str, dict]:
    """Per metric, {seed: value} over the group's runs (None for a run that did not complete)."""
    out: dict[str, dict] = {"top1": {}, "miou": {}, "joint": {}}
    for run in group.runs:
        if run.key in out["top1"] and out["top1"][run.key] is not None:
            continue  # a seed run twice (merged directories): the first completed run counts
        s = selected.get(run.path)
        # A single-task run's other head was never trained: its figure is not the row's.
        top1 = s.top1 if s and "cls" in group.spec.tasks else None
        miou = s.miou if s and "seg" in group.spec.tasks else None
        out["top1"][run.key], out["miou"][run.key] = top1, miou
        out["joint"][run.key] = joint_score(top1, miou, group.spec.tasks) if s else None
    return out


def _selection_facts(selection: str, selected: Iterable[Selected]) -> list[str]:
    if selection == "final":
        return ["Selection: final — every run is reported after its last epoch (the fixed budget)."]
    rules = [s.rule for s in selected]
    line = ("Selection: best-holdout — per run, the epoch with the best joint score on the held-out split "
            "(carved from the training set), reported with that epoch's test-split figures; the test split "
            "chooses nothing.")
    fallback = sum(r != "best holdout" for r in rules)
    if fallback:
        line += (f" {fallback} of {len(rules)} runs have no holdout figures (trained without --holdout) and are "
                 f"reported after their last epoch instead.")
    return [line]


def _baselines(groups: Sequence[Group], completed: bool = True) -> dict[str, Group]:
    """The single-task baseline row of each task: the first one given with a completed run (with
    ``completed`` False: the first one given). Δm needs one per task."""
    out: dict[str, Group] = {}
    for g in groups:
        if g.role == "baseline" and (g.done or not completed) and len(g.spec.tasks) == 1:
            out.setdefault(g.spec.tasks[0], g)
    return out


def _delta_m(values: dict[str, dict], baselines: dict[str, Group],
             per_seed: dict[str, dict]) -> tuple[dict, str | None]:
    """A row's Δm per seed against the baselines of the same seed: top-1 from the classification
    baseline, mIoU from the segmentation one."""
    metrics = {task: values[TASK_METRICS[task]] for task in TASKS}
    base = {task: per_seed[baselines[task].label][TASK_METRICS[task]] for task in TASKS}
    try:
        return delta_m(metrics, base), None
    except DataError as exc:
        return {}, str(exc)


def _resolve_target(target: float | AbsoluteTarget, groups: Sequence[Group]) -> Target | AbsoluteTarget | None:
    """Fixed targets as given; the relative one from each row's final figures on its runs' split."""
    if isinstance(target, AbsoluteTarget):
        return target
    finals = []
    for g in groups:
        values = [_final_on_split(r) for r in g.done]
        finals.append(tuple(summarize(v[i] for v in values)["mean"] for i in (0, 1)))
    return convergence_target(finals, target)


def _final_on_split(run: Run) -> tuple[float | None, float | None]:
    if run.split == "val":
        return run.told.figures("final")
    last = next((e for e in reversed(run.epochs) if e.holdout_top1 is not None or e.holdout_miou is not None), None)
    return epoch_metrics(last, "holdout")


def _times_to_target(group: Group, target: Target | AbsoluteTarget | None) -> tuple[dict, dict]:
    """{seed: steps} and {seed: seconds} to the target: inf where a completed run never reached it, None
    where the run did not complete or has no per-epoch figures to read (unknown); both empty when the
    row cannot be measured."""
    if target is None or (isinstance(target, AbsoluteTarget) and not target.needs(group.spec.tasks)):
        return {}, {}
    steps, seconds = {}, {}
    for run in group.runs:
        if run.key in steps and steps[run.key] is not None:
            continue
        hit = first_reach(run.epochs, target, run.split) if run.completed else None
        steps[run.key], seconds[run.key] = hit if hit else (None, None)
    return steps, seconds


def _time_summary(values: dict) -> dict:
    return {**summarize(values.values()), **summarize_time_to_target(values.values())}


def _split_facts(target: Target | AbsoluteTarget | None, groups: Sequence[Group]) -> list[str]:
    if target is None:
        return []
    done = [r for g in groups for r in g.done]
    held = sum(r.split == "holdout" for r in done)
    if not done:
        return []
    if held == len(done):
        where = "on the held-out split (every run has one)"
    elif held == 0:
        where = "on the test split (no run has a held-out split; train with --holdout to keep the test split out)"
    else:
        where = (f"on the held-out split for the {held} runs that have one, on the test split for the other "
                 f"{len(done) - held}")
    return [f"Time to target is read {where}."]


def _label_convergence(rows: Sequence[Row], target) -> None:
    medians = {r.label: (r.metrics["steps_to_target"] or {}).get("median") for r in rows}
    finite = [m for m in medians.values() if m is not None and math.isfinite(m)]
    fastest = min(finite, default=None)
    for r in rows:
        steps = r.metrics["steps_to_target"]
        if target is None or not steps:
            continue
        if not steps["n"]:
            if r.group.done:  # completed, but no epoch figures to read: not a miss
                r.convergence = UNKNOWN
            continue
        median = steps["median"]
        r.ratio = median / fastest if fastest and math.isfinite(median) else None
        r.convergence = convergence_label(r.ratio)
        if 0 < steps["reached"] < steps["n"]:
            r.convergence += f" ({steps['reached']}/{steps['n']} seeds)"


def _front(rows: Sequence[Row]) -> list[str]:
    """Mark the scalarization front and the compared rows it dominates; the sentence saying so."""
    sweep = [r for r in rows if r.role == "sweep"]
    if not sweep:
        return []
    swept = {r.group.optimizer for r in sweep}
    # A plain row of a swept optimizer is the sweep's point at the comparison's task weights.
    points = [r for r in rows if r in sweep or (r.role == "row" and r.group.optimizer in swept
                                                 and r.group.spec.method == SUM_METHOD)]
    others = [r for r in rows if r.role == "row" and r not in points]
    mean = {r.label: tuple((r.metrics[m] or {}).get("mean") for m in ("top1", "miou")) for r in rows}
    front, dominated = scalarization_front({r.label: mean[r.label] for r in points},
                                           {r.label: mean[r.label] for r in others})
    for r in points:
        r.on_front = r.label in front
    for r in others:
        r.dominated_by_front = dominated[r.label]
    beaten = [r.label for r in others if r.dominated_by_front]
    free = [r.label for r in others if r.dominated_by_front is False]
    line = f"Scalarization front ({', '.join(sorted(swept))} over task weights): {', '.join(front) or 'none'}."
    if beaten:
        line += f" Dominated by it (no better on either task than some weighting of the plain loss): {', '.join(beaten)}."
    if free:
        line += f" Not dominated: {', '.join(free)}."
    return [line]


def _header(runs: Sequence[Run], groups: Sequence[Group]) -> list[str]:
    """The settings every run shares (or 'varies'), the loss scale and the initial-weights check."""
    configs = [r.config for r in runs if r.config]

    def common(key):
        values = {json.dumps(c.get(key)) for c in configs}
        if not values:
            return None
        return json.loads(values.pop()) if len(values) == 1 else "varies"

    seeds = sorted({r.seed for r in runs if r.seed is not None})
    lines = []
    imagenet, coco = common("imagenet"), common("coco")
    if not configs:
        lines.append("Data: unknown (no run wrote its config.json)")
    elif imagenet is None and coco is None:
        lines.append("Data: the embedded synthetic data set (not real ImageNet + COCO)")
    else:
        embedded = "embedded synthetic"
        lines.append(f"Data: ImageNet {imagenet or embedded}, COCO {coco or embedded}")
    devices = {r.env.get("device") for r in runs if r.env.get("device")}
    settings = [("epochs", common("epochs")), ("batch size", common("batch_size")),
                ("image size", common("image_size")), ("train limit", common("limit_train")),
                ("val limit", common("limit_val")), ("backbone", common("backbone")),
                ("amp", common("amp")), ("device", ", ".join(sorted(devices)) or None)]
    roles = {role: sum(g.role == role for g in groups) for role in ROLES}
    names = {"row": "compared", "sweep": "sweep", "baseline": "baseline"}
    kinds = "" if roles["row"] == len(groups) else (
        "; rows: " + ", ".join(f"{n} {names[role]}" for role, n in roles.items() if n))
    lines.append(f"Runs: {len(runs)} ({len(groups)} row{'s' * (len(groups) != 1)} x {len(seeds)} "
                 f"seed{'s' * (len(seeds) != 1)}: {', '.join(map(str, seeds)) or '-'}{kinds}); "
                 + ", ".join(f"{k} {format_value(v)}" for k, v in settings if v is not None))
    scales = {tuple(loss_scale(r)) for r in runs if loss_scale(r) is not None}
    if scales and scales != {(1.0, 1.0)}:
        shown = "; ".join(f"cls x{s[0]:g}, seg x{s[1]:g}" for s in sorted(scales))
        lines.append(f"Loss scale: {shown} (stress test: that task's loss is multiplied before the update)")
    else:
        lines.append("Loss scale: none (cls x1, seg x1)")
    weights = common("task_weights")
    if weights not in (None, "varies"):
        lines.append(f"Task weights: cls {weights[0]:g}, seg {weights[1]:g}")
    lines.append(_init_check(runs))
    return lines


def loss_scale(run: Run) -> list[float] | None:
    """The run's per-task loss multipliers (a stress test), None when it recorded none."""
    scale = run.told.loss_scale or run.config.get("loss_scale")
    return [float(s) for s in scale] if scale else None


def _init_check(runs: Sequence[Run]) -> str:
    by_seed: dict[int, set] = {}
    for r in runs:
        sha = r.told.init_weights_sha256
        if sha and r.seed is not None:
            by_seed.setdefault(r.seed, set()).add(sha)
    differ = [s for s, shas in sorted(by_seed.items()) if len(shas) > 1]
    if differ:
        return ("Initial weights: DIFFER between optimizers for seed " + ", ".join(map(str, differ))
                + " (settings such as backbone or weights differ)")
    if not by_seed:
        return "Initial weights: not recorded"
    return "Initial weights: identical for every optimizer within each seed (init_weights_sha256)"


# ---------------------------------------------------------------------------------------------
# Workloads

# What makes a workload: the data, the model and the budget. Rows (optimizer, method, task weights,
# tasks) differ within a workload; these settings may not.
WORKLOAD_KEYS = ("imagenet", "coco", "image_size", "limit_train", "limit_val", "backbone", "weights", "epochs",
                 "batch_size", "loss_scale", "holdout")


def _workload_key(config: dict) -> str:
    return json.dumps({k: config.get(k) for k in WORKLOAD_KEYS}, sort_keys=True)


def split_workloads(dirs: Sequence[Path]) -> list[tuple[str, list[Run]]]:
    """The runs under ``dirs`` split by workload, each named after the directories it came from.

    A comparison directory is one workload; a loose run directory joins the workload its settings
    match. One workload makes one comparison table; several make performance profiles, since runs of
    different workloads cannot be paired by seed.
    """
    workloads: dict[str, tuple[list[str], list[Run]]] = {}
    seen: set = set()
    for d in map(Path, dirs):
        runs = unseen(find_runs([d]), seen)
        configs = [r.config for r in runs if r.config]
        fallback = _workload_key(configs[0]) if configs else ""
        for run in runs:
            key = fallback if is_comparison_dir(d) or not run.config else _workload_key(run.config)
            names, members = workloads.setdefault(key, ([], []))
            if d.resolve().name not in names:
                names.append(d.resolve().name)
            members.append(run)
    named: list[tuple[str, list[Run]]] = []
    for names, members in workloads.values():
        name = "+".join(names) or "runs"
        taken = sum(n == name or n.startswith(f"{name}-") for n, _ in named)
        named.append((f"{name}-{taken + 1}" if taken else name, members))
    return named
