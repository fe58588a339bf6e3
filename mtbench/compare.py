"""Running a comparison: every optimizer for every seed, in one resumable comparison directory.

Layout of a comparison directory::

    comparison.json          the optimizers, seeds and resolved settings (checked on resume)
    runs/<optimizer>-seed<k>/ one run directory per optimizer and seed, written by the trainer
    report.md/.csv/.json, *.png   written by `mtbench report` (and at the end of `mtbench compare`)
    .lock                    while a `mtbench compare` works in it: a second one is turned away

The trainer builds the model under the seed before any optimizer exists and draws the data order
from the seed, so for each seed every optimizer starts from the same weights and sees the same
batches; summary.json's ``init_weights_sha256`` records it and the report checks it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .config import RunConfig
from .errors import ConfigError, MTBenchError
from .locks import LOCK_FILE, DirLock
from .plugins import Registry
from .presets import OptimizerPreset, format_value
from .report import COMPARISON_FILE, RUNS_DIR, flatten, run_name
from .rundir import CONFIG_FILE, SUMMARY_FILE, RunDir, RunFileError, atomic_write_text, read_json

COMPARISON_FORMAT = 1
# Settings left out of comparison.json: they differ between the runs of one comparison by design
# (run_dir, seed), or change only speed, so a comparison may resume with another value (workers).
_NOT_RECORDED = ("run_dir", "seed", "workers")


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
    if "," not in text:
        if values[0] < 1:
            raise ConfigError(f"{text!r}: a seed count must be at least 1 (a list is written 0,5,7)")
        return tuple(range(first, first + values[0]))
    if any(v < 0 for v in values):
        raise ConfigError(f"{text!r}: seeds must be >= 0")
    if len(set(values)) != len(values):
        raise ConfigError(f"{text!r} repeats a seed")
    return tuple(values)


def parse_optimizers(text: str | None, registry: Registry) -> list[str]:
    """The names in a comma list (None: every discovered preset), each checked against the registry."""
    if text is None:
        names = list(registry.presets)
        if not names:
            raise ConfigError("no optimizer presets were found (mtbench plugins shows why)")
        return names
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{text!r} is empty: expected a comma list such as adam,sgd "
                          "(mtbench list shows all)")
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{name!r} is listed twice")
        seen.add(name)
        registry.get(name)  # ConfigError with a did-you-mean for an unknown name
    return names


def split_overrides(items: Sequence[str],
                    presets: Mapping[str, OptimizerPreset]) -> tuple[dict[str, list[str]], list[str]]:
    """Share ``--set`` items out to the compared optimizers.

    ``name.key=value`` goes to optimizer ``name`` only; ``key=value`` goes to every compared
    optimizer that accepts ``key`` and is an error when none does. Per-optimizer items come after
    the shared ones, so they win. Returns the items per optimizer and a note for each shared item
    that only some optimizers take.
    """
    shared: dict[str, list[str]] = {name: [] for name in presets}
    scoped: dict[str, list[str]] = {name: [] for name in presets}
    notes = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"bad setting {item!r}: expected key=value or optimizer.key=value, "
                              "e.g. adam.lr=0.01")
        if "." in key:
            name, _, sub = key.partition(".")
            if name not in presets:
                raise ConfigError(f"--set {item}: {name!r} is not one of the compared optimizers "
                                  f"({', '.join(presets)})")
            scoped[name].append(f"{sub}={value}")
            continue
        takers = [name for name, preset in presets.items() if preset.param(key) is not None]
        if not takers:
            raise ConfigError(f"--set {item}: none of the compared optimizers accepts {key!r} "
                              f"(mtbench list -v shows what each accepts)")
        if len(takers) < len(presets):
            notes.append(f"--set {item} applies to {', '.join(takers)} only "
                         f"(the others do not accept {key!r})")
        for name in takers:
            shared[name].append(f"{key}={value}")
    return {name: shared[name] + scoped[name] for name in presets}, notes


# ---------------------------------------------------------------------------------------------
# The plan and the comparison directory


@dataclass
class PlannedRun:
    """One optimizer and seed of a comparison, with its resolved config."""

    optimizer: str
    seed: int
    preset: OptimizerPreset
    config: RunConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run_dir)


def plan_comparison(presets: Mapping[str, OptimizerPreset], seeds: Sequence[int],
                    make_config: Callable[[OptimizerPreset, int], RunConfig]) -> list[PlannedRun]:
    """Every optimizer for every seed, seed by seed (an interrupted comparison has whole seeds done).

    ``make_config(preset, seed)`` builds and checks each run's config; its ConfigError gets the
    optimizer's name in front.
    """
    plan = []
    for seed in seeds:
        for name, preset in presets.items():
            try:
                config = make_config(preset, seed)
            except ConfigError as exc:
                raise ConfigError(f"{name}: {exc}") from None
            plan.append(PlannedRun(name, seed, preset, config))
    return plan


def comparison_record(plan: Sequence[PlannedRun]) -> dict:
    """What comparison.json holds: the optimizers, the seeds and each optimizer's resolved settings."""
    settings = {}
    for run in plan:
        config = json.loads(json.dumps(run.config.to_dict(), default=str))
        settings.setdefault(run.optimizer, {k: v for k, v in config.items() if k not in _NOT_RECORDED})
    return {"format": COMPARISON_FORMAT,
            "optimizers": list(dict.fromkeys(r.optimizer for r in plan)),
            "seeds": list(dict.fromkeys(r.seed for r in plan)),
            "settings": settings}


def default_directory(record: dict, root: Path = Path("comparisons")) -> Path:
    """``comparisons/<hash of the settings>``: the same command finds its directory again to resume."""
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    return root / digest[:10]


def locate_runs(plan: Sequence[PlannedRun], out: Path) -> list[PlannedRun]:
    """The plan with each run's directory set to ``out/runs/<optimizer>-seed<k>``."""
    return [dataclasses.replace(run, config=dataclasses.replace(
        run.config, run_dir=str(out / RUNS_DIR / run_name(run.optimizer, run.seed)))) for run in plan]


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
    for key in ("optimizers", "seeds"):
        if old.get(key) != new.get(key):
            return f"{key}: {_show(new.get(key))} now, {_show(old.get(key))} there"
    old_s, new_s = old.get("settings") or {}, new.get("settings") or {}
    per_key: dict[str, list[str]] = {}
    for name in new_s:
        a, b = flatten(old_s.get(name, {})), flatten(new_s[name])
        for key in sorted(a.keys() | b.keys()):
            if a.get(key) != b.get(key):
                per_key.setdefault(key, []).append(name)
    diffs = []
    for key, names in per_key.items():
        first = names[0]
        a, b = flatten(old_s.get(first, {})).get(key), flatten(new_s[first]).get(key)
        where = key if len(names) == len(new_s) else f"{', '.join(names)} {key}"
        diffs.append(f"{where}: {_show(b)} now, {_show(a)} there")
    if not diffs:
        return None
    return "; ".join(diffs[:limit]) + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "")


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
        status = run.read_json(SUMMARY_FILE).get("status")
    except RunFileError:
        status = None  # a summary.json cut short: the checkpoint decides
    if status == "completed":
        return "completed"
    return "resume" if run.has_checkpoint() else "new"


def run_comparison(plan: Sequence[PlannedRun], train_fn: Callable | None = None, progress: bool = True,
                   echo: Callable[[str], None] | None = None) -> list[Outcome]:
    """Train every planned run in order, skipping completed ones and resuming interrupted ones.

    A run that fails is recorded and the comparison goes on with the next; KeyboardInterrupt stops
    it (run the same comparison again to resume).
    """
    if train_fn is None:
        from .train import train as train_fn
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    outcomes = []
    start = time.monotonic()
    for i, run in enumerate(plan, 1):
        head = f"[{i}/{len(plan)}] {run.optimizer} seed {run.seed}"
        state = run_state(run.run_dir)
        if state == "completed":
            echo(f"{head}: completed before, skipped")
            outcomes.append(Outcome(run, "skipped"))
            continue
        echo(f"{head}" + (" (resuming from its last checkpoint)" if state == "resume" else "")
             + f"  [{_clock(time.monotonic() - start)} elapsed]")
        error = None
        try:
            summary = train_fn(run.config, run.preset, resume=state == "resume", progress=progress, echo=echo)
        except Exception as exc:  # one optimizer's failure must not end the comparison (Ctrl-C still does)
            error = str(exc) if isinstance(exc, MTBenchError) else f"{type(exc).__name__}: {exc}"
        else:
            if summary.get("status") != "completed":
                error = summary.get("error") or f"status {summary.get('status')}"
        if error:
            error = (error.strip().splitlines() or ["unknown error"])[0]
            echo(f"{head}: failed: {error}")
        outcomes.append(Outcome(run, "failed" if error else "completed", error))
    echo(f"{len(plan)} runs done in {_clock(time.monotonic() - start)}")
    return outcomes


def torchrun_train(nproc: int, plugin_paths: Sequence[str] = ()) -> Callable[..., dict]:
    """A ``train`` that runs each run as ``torchrun --nproc-per-node N -m mtbench run --resume DIR``.

    The run's config.json is written first, so the launched processes read exactly this config
    (a run directory without a checkpoint starts from scratch).
    """
    def train_distributed(config, preset, *, resume, progress, echo) -> dict:
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
