"""Planning a tune: the optimizers, their spaces and run configs, the record that names the tune, its
directory and its studies (one per optimizer, in one Optuna storage).

Layout of a tune directory::

    tune-settings.json       the tune's settings (checked when the same tune is run again)
    study.db                 the Optuna studies, unless --storage puts them elsewhere
    trials/<optimizer>-t<n>/ one run directory per trial (`mtbench report` reads them like runs)
    final/tuned/, final/preset/   comparison directories of the final runs (--final-seeds)
    tune.md/.csv/.json, lr_sensitivity.png   the tune report
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..compare.plan import plan_rows, split_overrides
from ..config import DEFAULT_WORKLOAD, LIMITS, SUM_METHOD, TASKS, RunConfig
from ..errors import ConfigError
from ..locks import LOCK_FILE
from ..presets import OptimizerPreset, Param
from ..report.comparison import default_directory, describe_difference
from ..rundir import RunFileError, atomic_write_text, read_json
from ..workloads import Workload
from .space import SAMPLERS, Space, build_spaces, planned_points, sampler_seed, space_record
from .simplex import weight_spaces
from .storage import STUDY_DB, Guard, default_storage, open_storage
from .study import TuneStudy, Worker, open_study
from .worker import OBJECTIVES, TRIALS_DIR, recorded_settings

__all__ = [
    "DEFAULT_HOLDOUT", "DEFAULT_ROOT", "PRUNE_STARTUP", "SETTINGS_FILE", "TUNE_FORMAT", "TUNE_LIMITS",
    "TunePlan", "open_directory", "open_studies", "plan_tune", "study_record",
]

TUNE_FORMAT = 1
SETTINGS_FILE = "tune-settings.json"
DEFAULT_HOLDOUT = 0.1
DEFAULT_ROOT = Path("tunes")
# --prune: the finished trials of an optimizer (its preset's among them) that run in full before the median
# rule stops any (Optuna's default, 5, would leave a small budget unpruned).
PRUNE_STARTUP = 2
# The range of each count of a tune (a run's are config.LIMITS), for the command's options (cli/bounded.py)
# and plan_tune. Every trial of the budget is planned up front (NOTE [exact budget]), about 10 ms of
# storage each; a heartbeat waits at most an hour.
TUNE_LIMITS: dict[str, Param] = {
    "trials": Param(int, 1, 10_000, what="a whole number"),
    "jobs": Param(int, 1, 256, what="a whole number"),
    "final_seeds": Param(int, 0, LIMITS["seeds"].high, what="a whole number"),
    "heartbeat": Param(float, 1.0, 3600.0, what="a number of seconds"),
}


@dataclass
class TunePlan:
    """Everything a worker needs to open and run a tune, checked before anything is written."""

    presets: dict[str, OptimizerPreset]
    spaces: dict[str, Space]
    overrides: dict[str, list[str]]  # each optimizer's --set items
    options: dict[str, Any]  # the run options for build_config (holdout set, --set left out)
    method: Any
    trials: int
    sampler: str
    objective: str
    prune: bool
    seed: int
    record: dict
    out: Path
    storage: str
    study: str
    notes: list[str] = field(default_factory=list)
    workload: Workload | None = None  # None: ImageNet + COCO; its name is options["workload"]

    def config(self, optimizer: str, items: Sequence[str] = (), run_dir: Path | str = "", **options) -> RunConfig:
        """The run config of ``optimizer`` at the plan's options and workload, its --set items and then
        ``items``; ``options`` over the plan's (a trial's task weights, a final run's seed)."""
        from ..config import build_config

        return build_config(self.presets[optimizer], run_dir, self.method,
                            **{**self.options, **options, "workload": self.workload,
                               "set_values": [*self.overrides[optimizer], *items]})


def plan_tune(presets: Mapping[str, OptimizerPreset], *, trials: int, sampler: str = "qmc", objective: str = "joint",
              prune: bool = False, space_items: Sequence[str] = (), set_items: Sequence[str] = (),
              options: Mapping[str, Any] | None = None, method=None, out: Path | None = None,
              storage: str | None = None, study: str | None = None, search_task_weights: int = 0,
              workload: Workload | None = None) -> TunePlan:
    """Check a tune's settings and name its directory and studies; ConfigError names the first bad one.

    ``options`` are the run options as `mtbench run` names them (``holdout`` defaults to 0.1 here: a
    tune selects on the holdout split alone); ``workload`` is the Workload the trials train (None:
    ImageNet + COCO), from the registry that gave the presets (NOTE [one registry]); ``set_items`` are
    ``--set`` items (``name.key=value`` for one optimizer, ``key=value`` for each that accepts it,
    ``method.key=value`` for the method).
    ``search_task_weights`` (the workload's number of tasks, 0: off) searches the weighted sum's task
    weights instead of the optimizers' settings (tuning.simplex).
    """

    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {sampler!r}: expected one of {', '.join(SAMPLERS)}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
    trials = TUNE_LIMITS["trials"].check_option("--trials", trials)
    options = dict(options or {})
    workload_name = workload.name if workload is not None else DEFAULT_WORKLOAD
    if options.get("workload") not in (None, workload_name):
        raise TypeError(f"options name workload {options['workload']!r}, workload= is {workload_name!r}: give "
                        "plan_tune the Workload itself (NOTE [one registry])")
    options["workload"] = workload_name
    if options.get("holdout") is None:
        options["holdout"] = DEFAULT_HOLDOUT
    if not options["holdout"]:
        raise ConfigError("--holdout 0 leaves nothing to select on: a tune scores its trials on the holdout split "
                          f"alone (the test split chooses nothing); give a fraction such as {DEFAULT_HOLDOUT}")
    tasks = [t.strip() for t in (options.get("tasks") or ",".join(TASKS)).split(",")]
    needed = {"top1": "cls", "miou": "seg"}.get(objective)
    if needed and needed not in tasks:
        raise ConfigError(f"--objective {objective} reads the {needed} task, which --tasks {','.join(tasks)} "
                          "does not train")
    method_name = method.name if method is not None else SUM_METHOD
    _check_method(presets, method_name)
    shared = split_overrides(set_items, presets, {method_name: method})
    method_items = [f"method.{item}" for item in shared.methods.get(method_name, [])]
    overrides = {name: items + method_items for name, items in shared.optimizers.items()}
    fixed = {name: {item.partition("=")[0].strip() for item in items} for name, items in shared.optimizers.items()}
    # --search-task-weights: the weighted sum's T task weights on the simplex, in place of each optimizer's space
    spaces = (weight_spaces(list(presets), search_task_weights, method=method_name, space_items=space_items,
                            task_weights=options.get("task_weights")) if search_task_weights
              else build_spaces(presets, space_items, fixed))
    seed = options.get("seed", 0)
    # The record (and the directory and studies it names) holds each optimizer's run config, which the plan makes.
    plan = TunePlan(dict(presets), spaces, overrides, options, method, trials, sampler, objective, prune, seed,
                    record={}, out=Path(), storage="", study="", notes=list(shared.notes), workload=workload)
    settings = {}
    for name in presets:
        try:
            config = plan.config(name)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        recorded = recorded_settings(config.to_dict())
        settings[name] = {**recorded, "space": space_record(spaces[name]), "sampler": sampler,
                          "objective": objective, "prune": prune,
                          # a grid's points depend on its size; qmc and tpe may be given more trials later
                          **({"trials": trials} if sampler == "grid" else {})}
    plan.record = {"format": TUNE_FORMAT, "optimizers": list(presets), "seeds": [seed], "settings": settings}
    named = default_directory(plan.record, DEFAULT_ROOT)
    plan.out = out or named
    plan.storage, plan.study = storage or default_storage(plan.out), study or f"tune-{named.name}"
    if prune:
        plan.notes.append(f"--prune: the median rule stops a trial once {PRUNE_STARTUP} trials of its optimizer "
                          "have finished (its preset's trial among them, which is never pruned); the ones before run "
                          "in full" + ("; with this budget none can be pruned" if trials + 1 <= PRUNE_STARTUP else ""))
    return plan


def _check_method(presets: Mapping[str, OptimizerPreset], method: str) -> None:
    """ConfigError when ``method`` does not compose with a tuned optimizer, by compare's rule (plan_rows)."""
    try:
        rows, _ = plan_rows(presets, [method])
    except ConfigError:
        rows = []
    unfit = [name for name in presets if name not in {row.optimizer for row in rows}]
    if unfit:
        one = len(unfit) == 1
        raise ConfigError(f"--method {method} does not compose with {', '.join(unfit)}, which "
                          + ("takes the tasks' gradients apart and balances them itself; tune it with --method sum, "
                             "or leave it out of --optimizers" if one else
                             "take the tasks' gradients apart and balance them themselves; tune them with --method "
                             "sum, or leave them out of --optimizers"))


def study_record(plan: TunePlan, name: str) -> dict:
    """The record of one optimizer's study: its slice of the tune's record."""
    return {**plan.record, "optimizers": [name], "settings": {name: plan.record["settings"][name]}}


def open_directory(plan: TunePlan) -> bool:
    """Create the tune directory, or check that it holds this tune; True when it did already."""
    path = plan.out / SETTINGS_FILE
    if path.is_file():
        try:
            old = read_json(path)
        except RunFileError as exc:
            raise ConfigError(f"{exc}; choose another --out") from None
        difference = describe_difference(old, plan.record)
        if difference:
            raise ConfigError(f"{plan.out} holds a tune with other settings ({difference}); choose another --out, "
                              "or repeat that tune's options to continue it")
        return True
    if plan.out.exists() and (not plan.out.is_dir() or not all(_ours(p.name) for p in plan.out.iterdir())):
        raise ConfigError(f"{plan.out} exists and is not a tune directory (no {SETTINGS_FILE}); choose another --out")
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(plan.record, indent=2) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write the tune directory {plan.out}: {exc.strerror or exc}") from None
    return False


def _ours(name: str) -> bool:
    """What a worker of this tune that started at the same moment may have written before the settings file."""
    return name in (TRIALS_DIR, LOCK_FILE) or name.startswith(STUDY_DB) or name.startswith(f".{SETTINGS_FILE}.")


def open_studies(plan: TunePlan, worker_index: int | None = None, me: Worker | None = None) -> dict[str, TuneStudy]:
    """Each optimizer's study in the plan's storage, its missing slots enqueued."""
    import optuna

    storage = open_storage(plan.storage)
    guard = Guard(plan.storage)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP) if plan.prune else optuna.pruners.NopPruner()
    studies = {}
    for name, preset in plan.presets.items():
        points = planned_points(plan.spaces[name], preset, plan.sampler, plan.trials, plan.seed)
        study = open_study(storage, f"{plan.study}.{name}", study_record(plan, name), _sampler(plan, me, worker_index),
                           pruner)
        ts = TuneStudy(name, study, guard, plan.trials, points)
        ts.plan()
        studies[name] = ts
    return studies


def _sampler(plan: TunePlan, me: Worker | None, worker_index: int | None):
    import optuna

    if plan.sampler == "tpe":
        # Each worker its own stream: with one seed, workers starting together would draw the same
        # random start-up points. Reproducible for one host and one --jobs.
        me = me or Worker()
        seed = sampler_seed(plan.seed + zlib.crc32(f"{me.host}/{worker_index or 0}".encode()))
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    # qmc and grid: every trial is enqueued with its point (planned_points), so this sampler never draws;
    # a stateless one spares the per-trial bookkeeping writes of QMCSampler and GridSampler.
    return optuna.samplers.RandomSampler(seed=sampler_seed(plan.seed))
