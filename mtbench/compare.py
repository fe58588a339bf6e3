"""Running a comparison: every row for every seed, in one resumable comparison directory.

A comparison is a list of rows, each run once per seed. A row is an optimizer with a multi-task
method, task weights and the tasks it trains, and has a role:

    adam            "row"       method sum, the comparison's task weights, both tasks
    adam+pcgrad     "row"       a multi-task method other than sum (--methods)
    adam@w0.3       "sweep"     a point of the scalarization front: task weights (0.3, 0.7)
    adam[cls]       "baseline"  a single-task baseline for Delta-m (--single-task)

Layout of a comparison directory::

    comparison.json          the rows, seeds and resolved settings (checked on resume)
    runs/<row>-seed<k>/      one run directory per row and seed, written by the trainer
    report.md/.csv/.json, *.png   written by `mtbench report` (and at the end of `mtbench compare`)
    .lock                    while a `mtbench compare` works in it: a second one is turned away

The trainer builds the model under the seed before any optimizer or method exists and draws the
data order from the seed, so for each seed every row starts from the same weights and sees the same
batches; summary.json's ``init_weights_sha256`` records it and the report checks it.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .config import LIMITS, SUM_METHOD, TASKS, RunConfig
from .errors import ConfigError, MTBenchError
from .locks import LOCK_FILE, DirLock
from .plugins import Registry
from .presets import MethodPreset, OptimizerPreset
from .report import COMPARISON_FILE, RUNS_DIR, flatten, run_name
from .rows import Row, same_weighting
from .rundir import CONFIG_FILE, SUMMARY_FILE, RunDir, RunFileError, Summary, atomic_write_text, read_json
from .text import format_value

COMPARISON_FORMAT = 1
# Settings left out of comparison.json: they differ between the runs of one comparison by design
# (run_dir, seed), or change only speed, so a comparison may resume with another value (workers).
_NOT_RECORDED = ("run_dir", "seed", "workers")
DEFAULT_HOLDOUT = 0.1  # compare selects on a holdout split by default; a single run holds out nothing


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


def parse_optimizers(text: str | None, registry: Registry) -> list[str]:
    """The names in a comma list (None: every discovered preset), each checked against the registry."""
    if text is None:
        names = list(registry.presets)
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


# ---------------------------------------------------------------------------------------------
# Rows


def plan_rows(optimizers: Mapping[str, OptimizerPreset], methods: Sequence[str], sweep: Sequence[float] = (),
              baseline: OptimizerPreset | None = None,
              task_weights: Sequence[float] | None = None) -> tuple[list[Row], list[str]]:
    """The rows of a comparison, and a note for each optimizer left out of some of them.

    Every optimizer with every method at the comparison's ``task_weights`` (None: equal weights; an
    optimizer that takes the per-task gradients itself composes with ``sum`` only); each
    single-gradient optimizer with ``sum`` at task weights (w, 1-w) for each w of ``sweep`` (the w
    that weighs the tasks as ``task_weights`` do is the plain row itself); with ``baseline``, one
    single-task row per task. ConfigError when no optimizer-method pair is left, or the sweep or the
    baseline cannot be run.
    """
    rows, notes = [], []
    for name, preset in optimizers.items():
        left_out = [m for m in methods if preset.per_task_gradients and m != SUM_METHOD]
        if left_out:
            notes.append(f"{name} with {', '.join(left_out)} left out: {name} takes the tasks' gradients apart and "
                         "balances them itself, so it composes with the method sum only")
        rows += [Row.of(name, m) for m in methods if m not in left_out]
    if not rows:
        raise ConfigError(f"no row left to compare: {', '.join(optimizers)} with {', '.join(methods)} do not "
                          "compose; add sum to --methods or a single-gradient optimizer such as adam to --optimizers")
    if sweep:
        swept = [name for name, preset in optimizers.items() if not preset.per_task_gradients]
        if not swept:
            raise ConfigError(f"--task-weights-sweep weights the loss of a single-gradient optimizer; "
                              f"{', '.join(optimizers)} take per-task gradients (add one such as adam)")
        if len(swept) < len(optimizers):
            notes.append("the task-weight sweep leaves out " + ", ".join(n for n in optimizers if n not in swept)
                         + " (per-task gradients: no weighted loss to sweep)")
        points = [(w, round(1 - w, 12)) for w in sweep]
        rows += [Row.of(name, SUM_METHOD, pair, plain=task_weights) for name in swept for pair in points
                 if not same_weighting(pair, task_weights)]  # that point is the plain row: not trained twice
    if baseline is not None:
        if baseline.per_task_gradients:
            raise ConfigError(f"--baseline {baseline.name} takes per-task gradients: a single-task baseline needs "
                              "a single-gradient optimizer such as adam")
        rows += [Row.of(baseline.name, SUM_METHOD, tuple(1.0 if t == task else 0.0 for t in TASKS), (task,))
                 for task in TASKS]
    seen: set[str] = set()
    for row in rows:
        if row.name in seen:  # a plugin's preset name with + @ or [ in it
            raise ConfigError(f"two rows would both be named {row.name!r}; compare the optimizers in two "
                              "comparisons, or rename one of the presets")
        seen.add(row.name)
    return rows, notes


@dataclass
class Overrides:
    """``--set`` items shared out: ``key=value`` items per optimizer and per method (its settings)."""

    optimizers: dict[str, list[str]]
    methods: dict[str, list[str]]
    notes: list[str]

    def for_row(self, row: Row) -> list[str]:
        """The row's items as build_config takes them (a method's settings as ``method.key=value``)."""
        return self.optimizers[row.optimizer] + [f"method.{item}" for item in self.methods.get(row.method, [])]


def split_overrides(items: Sequence[str], presets: Mapping[str, OptimizerPreset],
                    methods: Mapping[str, MethodPreset | None] | None = None) -> Overrides:
    """Share ``--set`` items out to the compared optimizers and methods (None stands for ``sum``).

    ``name.key=value`` goes to optimizer ``name`` only, or is a setting of method ``name`` in its
    rows; ``method.key=value`` goes to every compared method that accepts ``key``; ``key=value``
    goes to every compared optimizer that accepts ``key``. Either shared form is an error when none
    accepts the key and gets a note when only some do. Scoped items come after the shared ones, so
    they win.
    """
    methods = methods or {}
    settled = {name: m for name, m in methods.items() if m is not None}  # the methods that take settings
    shared: dict[str, list[str]] = {name: [] for name in presets}
    scoped: dict[str, list[str]] = {name: [] for name in presets}
    method_shared: dict[str, list[str]] = {name: [] for name in settled}
    method_scoped: dict[str, list[str]] = {name: [] for name in settled}
    notes = []

    def share(item, key, value, table, out, kind):
        takers = [name for name, preset in table.items() if preset.param(key) is not None]
        if not table:
            raise ConfigError(f"--set {item}: the compared methods ({', '.join(methods) or SUM_METHOD}) take no "
                              "settings; add a method with --methods (mtbench list shows them)")
        if not takers:
            raise ConfigError(f"--set {item}: none of the compared {kind}s accepts {key!r} "
                              "(mtbench list -v shows what each accepts)")
        if len(takers) < len(table):
            notes.append(f"--set {item} applies to {', '.join(takers)} only (the others do not accept {key!r})")
        for name in takers:
            out[name].append(f"{key}={value}")

    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"bad setting {item!r}: expected key=value, optimizer.key=value or "
                              "method.key=value, e.g. adam.lr=0.01")
        if "." not in key:
            share(item, key, value, presets, shared, "optimizer")
            continue
        name, _, sub = key.partition(".")
        if name == "method":
            share(item, sub, value, settled, method_shared, "method")
        elif name in presets and name in methods:
            raise ConfigError(f"--set {item}: {name!r} names both a compared optimizer and a compared method")
        elif name in presets:
            scoped[name].append(f"{sub}={value}")
        elif name in settled:
            method_scoped[name].append(f"{sub}={value}")
        elif name in methods:
            raise ConfigError(f"--set {item}: the method {name} takes no settings")
        else:
            also = f" or methods ({', '.join(settled)})" if settled else ""
            raise ConfigError(f"--set {item}: {name!r} is not one of the compared optimizers "
                              f"({', '.join(presets)}){also}")
    return Overrides({name: shared[name] + scoped[name] for name in presets},
                     {name: method_shared[name] + method_scoped[name] for name in settled}, notes)


# ---------------------------------------------------------------------------------------------
# The plan and the comparison directory


@dataclass
class PlannedRun:
    """One row and seed of a comparison, with its optimizer, its method (None: sum) and its resolved config."""

    row: Row
    seed: int
    preset: OptimizerPreset
    method: MethodPreset | None
    config: RunConfig

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def optimizer(self) -> str:
        return self.row.optimizer

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run_dir)


def plan_comparison(rows: Sequence[Row], presets: Mapping[str, OptimizerPreset],
                    methods: Mapping[str, MethodPreset | None], seeds: Sequence[int],
                    make_config: Callable[[Row, OptimizerPreset, MethodPreset | None, int], RunConfig]
                    ) -> list[PlannedRun]:
    """Every row for every seed, seed by seed (an interrupted comparison has whole seeds done).

    ``make_config(row, preset, method, seed)`` builds and checks each run's config; its ConfigError
    gets the row's name in front.
    """
    plan = []
    for seed in seeds:
        for row in rows:
            preset, method = presets[row.optimizer], methods[row.method]
            try:
                config = make_config(row, preset, method, seed)
            except ConfigError as exc:
                raise ConfigError(f"{row.name}: {exc}") from None
            plan.append(PlannedRun(row, seed, preset, method, config))
    return plan


def comparison_record(plan: Sequence[PlannedRun]) -> dict:
    """What comparison.json holds: the optimizers, the rows, the seeds and each row's resolved settings.

    ``optimizers`` lists the compared optimizers (those of the rows with role "row"); a baseline's
    optimizer appears in its rows only.
    """
    settings: dict[str, dict] = {}
    rows: dict[str, dict] = {}
    seeded: dict[str, bool] = {}  # row -> its method's seed has been each run's seed so far
    for run in plan:
        config = json.loads(json.dumps(run.config.to_dict(), default=str))
        settings.setdefault(run.name, {k: v for k, v in config.items() if k not in _NOT_RECORDED})
        rows.setdefault(run.name, run.row.record(run.config.task_weights))
        seed = config["method_settings"].get("seed")
        seeded[run.name] = seeded.get(run.name, True) and seed is not None and seed == run.seed
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


def locate_runs(plan: Sequence[PlannedRun], out: Path) -> list[PlannedRun]:
    """The plan with each run's directory set to ``out/runs/<row>-seed<k>``."""
    return [dataclasses.replace(run, config=dataclasses.replace(
        run.config, run_dir=str(out / RUNS_DIR / run_name(run.name, run.seed)))) for run in plan]


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
    """Settings flattened; an empty group (no method settings) says no more than its absent keys do."""
    return {k: v for k, v in flatten(settings).items() if v != {}}


def _show(value) -> str:
    return "unset" if value is None else format_value(value)


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class Outcome:
    """What became of one planned run: completed, skipped (completed before) or failed (with the reason)."""

    run: PlannedRun
    status: str
    error: str | None = None


def run_state(run_dir: Path) -> str:
    """'completed', 'resume' (a checkpoint to continue from) or 'new' (the trainer starts it afresh)."""
    run = RunDir(run_dir)
    try:
        status = run.read_summary().status
    except RunFileError:
        status = None  # a summary.json cut short or damaged: the checkpoint decides
    if status == "completed":
        return "completed"
    return "resume" if run.has_checkpoint() else "new"


def run_comparison(plan: Sequence[PlannedRun], train_fn: Callable | None = None, progress: bool = True,
                   echo: Callable[[str], None] | None = None) -> list[Outcome]:
    """Train every planned run in order, skipping completed ones and resuming interrupted ones.

    A run that fails is recorded and the comparison goes on with the next; an interrupted run
    (Ctrl-C, SIGTERM: KeyboardInterrupt, or a summary saying ``interrupted``) stops it with
    KeyboardInterrupt (run the same comparison again to resume).
    """
    if train_fn is None:
        from .train import train as train_fn
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    outcomes = []
    start = time.monotonic()
    for i, run in enumerate(plan, 1):
        head = f"[{i}/{len(plan)}] {run.name} seed {run.seed}"
        state = run_state(run.run_dir)
        if state == "completed":
            echo(f"{head}: completed before, skipped")
            outcomes.append(Outcome(run, "skipped"))
            continue
        echo(f"{head}" + (" (resuming from its last checkpoint)" if state == "resume" else "")
             + f"  [{_clock(time.monotonic() - start)} elapsed]")
        error = None
        try:
            summary = Summary.from_json(train_fn(run.config, run.preset, method=run.method,
                                                 resume=state == "resume", progress=progress, echo=echo))
        except Exception as exc:  # one row's failure must not end the comparison (Ctrl-C still does)
            error = str(exc) if isinstance(exc, MTBenchError) else f"{type(exc).__name__}: {exc}"
        else:
            if summary.status == "interrupted":  # a torchrun child stopped by a signal: so is the comparison
                raise KeyboardInterrupt(summary.error or "interrupted")
            if not summary.completed:
                error = summary.error or f"status {summary.status}"
        if error:
            error = (error.strip().splitlines() or ["unknown error"])[0]
            echo(f"{head}: failed: {error}")
        outcomes.append(Outcome(run, "failed" if error else "completed", error))
        gc.collect()  # a backstop for cycles in plugin code; the trainer leaves none (NOTE [no reference cycles])
    echo(f"{len(plan)} runs done in {_clock(time.monotonic() - start)}")
    return outcomes


def torchrun_train(nproc: int, plugin_paths: Sequence[str] = ()) -> Callable[..., dict]:
    """A ``train`` that runs each run as ``torchrun --nproc-per-node N -m mtbench run --resume DIR``.

    The run's config.json is written first, so the launched processes read exactly this config
    (a run directory without a checkpoint starts from scratch) and find its method by name.
    """
    def train_distributed(config, preset, *, method, resume, progress, echo) -> dict:
        run = RunDir(config.run_dir)
        with run.lock():  # released before torchrun starts: its rank 0 takes the lock in turn
            if not resume:
                run.write_json(CONFIG_FILE, config.to_dict())
        plugins = [arg for path in plugin_paths for arg in ("--plugin", path)]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "mtbench", *plugins, "run", "--resume", str(run.path)] + ([] if progress else ["--quiet"])
        proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
        try:
            return run.read_json(SUMMARY_FILE)
        except RunFileError:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            raise MTBenchError(f"torchrun exited with {proc.returncode}: {lines[-1] if lines else 'no output'}")

    return train_distributed


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
