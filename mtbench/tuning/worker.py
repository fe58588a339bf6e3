"""Running the trials of `mtbench tune`: each an ordinary run directory, scored on the holdout split alone.

A worker takes trials from the studies until every slot of the budget is done, the study that has
got least far first, so that an interrupted tune leaves every optimizer with as many trials as the
others. When no trial waits but other workers still run some, it waits with them: a trial whose
worker dies is run again by a worker that is still there.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..compare.launch import run_state
from ..config import TASKS, RunConfig, build_config
from ..errors import ConfigError, MTBenchError, NonFiniteLossError, RunStopped
from ..locks import LockedError
from ..presets import OptimizerPreset
from ..report.comparison import describe_difference
from ..report.convergence import joint_score
from ..report.taskmetrics import split_joint, summary_metrics
from ..rundir import CHECKPOINT_DIR, CONFIG_FILE, LAST_CHECKPOINT, RunDir, RunFileError, Summary
from ..text import first_line, format_settings
from .space import Space, distributions, setting_items, suggest
from .simplex import is_simplex_key, split_params, weights_text
from .study import PRESET, RESULT, ROLE, RUN_DIR, SEARCH, TuneStudy, Worker, heartbeat, run_name

if TYPE_CHECKING:
    import optuna

__all__ = [
    "DEFAULT_OBJECTIVE", "DIVERGED_SCORE", "OBJECTIVES", "POLL_SECONDS", "TRIALS_DIR", "UNRECORDED_SETTINGS",
    "Tuner", "claim_run_dir", "drop_checkpoint", "other_run", "recorded_settings", "score",
]

TRIALS_DIR = "trials"
OBJECTIVES = ("joint", "top1", "miou")
DEFAULT_OBJECTIVE = "joint"
# What a diverged trial scores: the lowest top-1, mIoU or joint score there is, so the sampler learns
# that the setting is bad (a failed trial would teach it nothing).
DIVERGED_SCORE = 0.0
POLL_SECONDS = 2.0  # how often a worker with nothing to take looks again


# Config fields that do not make a run another run: where it is written, and what only changes speed, so
# that workers on other machines (another device, more loader workers) join the same tune.
UNRECORDED_SETTINGS = ("run_dir", "device", "workers", "tensorboard")


def recorded_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run config (a RunConfig's ``to_dict()`` or a config.json) as JSON, less what does not make it another run."""
    data = json.loads(json.dumps(dict(config), default=str))
    return {k: v for k, v in data.items() if k not in UNRECORDED_SETTINGS and k != "preset"}


def other_run(path: Path, config: RunConfig) -> str | None:
    """How the run in ``path`` differs from ``config``; None when it is this run or no run is there yet."""
    try:
        there = RunDir(path).read_json(CONFIG_FILE)
    except RunFileError:  # nothing there, or a run killed before its config was written: the trainer starts it
        return None
    return describe_difference({"settings": {"run": recorded_settings(there)}},
                               {"settings": {"run": recorded_settings(config.to_dict())}})


def claim_run_dir(out: Path, name: str, config: RunConfig) -> tuple[Path, str | None]:
    """The run directory of a trial named ``name``: ``trials/<name>``, unless it holds a run of other settings
    (left by a study that is gone), then the first of ``trials/<name>.2``, ``.3``, ... that is free or holds
    this run; with what was passed over, or None."""
    passed = None
    for k in itertools.count(1):
        path = out / TRIALS_DIR / (name if k == 1 else f"{name}.{k}")
        difference = other_run(path, config)
        if difference is None:
            return path, passed
        passed = passed or f"{path} holds a run of other settings ({difference})"


def drop_checkpoint(run_dir: Path) -> None:
    """Delete a finished trial's resume checkpoint (the size of the model and optimizer state: a large tune
    would fill the disk); its run directory keeps what a report reads."""
    (run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT).unlink(missing_ok=True)


def score(summary: Summary, objective: str, split: str = "holdout") -> float | None:
    """The objective on one split of a run's summary: ``holdout`` selects, ``final`` (the test split) only
    reports. joint is the absolute joint score of the report, the mean of the trained tasks' metrics (of
    another workload: of their primary metrics, where all are higher-is-better)."""
    if summary_metrics(summary) is not None:
        return split_joint(summary, split) if objective == "joint" else None
    top1, miou = summary.figures(split)
    if objective == "top1":
        return top1
    if objective == "miou":
        return miou
    return joint_score(top1, miou, summary.tasks or TASKS)


class _Reporter:
    """``on_epoch`` of a trial's run: reports the holdout score per epoch and stops a trial the pruner prunes."""

    def __init__(self, trial: "optuna.Trial", objective: str, prune: bool):
        self.trial, self.objective, self.prune = trial, objective, prune
        self.last: Summary | None = None

    def __call__(self, summary: dict) -> None:
        self.last = Summary.from_json(summary)
        value = score(self.last, self.objective)
        if value is None:
            return
        epoch = int(self.last.epochs)
        self.trial.report(value, epoch)
        if self.prune and self.trial.should_prune():
            raise RunStopped(f"pruned at epoch {epoch}: holdout {self.objective} {value:.4f} is below the median "
                             "of the earlier trials at that epoch", status="pruned")


@dataclass
class Tuner:
    """What the trials of one tune share, and the worker loop that runs them.

    ``train_fn(config, preset, *, method, workload, resume, progress, echo, on_epoch)`` trains one run (the
    trainer's ``train``, or a stand-in in tests); ``overrides`` holds each optimizer's ``--set`` items;
    ``workload`` is the Workload of ``options["workload"]`` (None: ImageNet + COCO), passed to build_config
    and ``train_fn`` as the presets are (NOTE [one registry] in mtbench.config).
    """

    out: Path
    presets: Mapping[str, OptimizerPreset]
    studies: Mapping[str, TuneStudy]
    spaces: Mapping[str, Space]
    options: Mapping[str, Any]
    overrides: Mapping[str, list[str]]
    objective: str
    train_fn: Callable[..., dict]
    method: Any = None
    workload: Any = None
    prune: bool = False
    heartbeat: float = 60.0
    echo: Callable[[str], None] = print
    progress: bool = False
    keep_checkpoints: bool = False
    worker: Worker = field(default_factory=Worker)

    def __post_init__(self) -> None:
        self.dists = {name: distributions(space, self.presets[name]) for name, space in self.spaces.items()}

    def config(self, optimizer: str, params: Mapping[str, Any], run_dir: Path | str = "") -> RunConfig:
        """The run config of a trial at ``params`` (the fixed ``--set`` items first, the point after)."""
        params, weights = split_params(params)  # a point of the task weights' simplex is the run's --task-weights
        items = list(self.overrides[optimizer]) + setting_items(params)
        options = {**self.options, "set_values": items, "workload": self.workload,
                   **({"task_weights": weights_text(weights)} if weights else {})}
        return build_config(self.presets[optimizer], run_dir, self.method, **options)

    def work(self) -> None:
        """Take and run trials until every study's budget is done."""
        waiting = False
        while True:
            trials = {name: ts.all_trials() for name, ts in self.studies.items()}
            for name, ts in self.studies.items():
                for line in ts.recover(self.worker, trials[name]):
                    self.echo(line)
            for ts in sorted(self.studies.values(), key=lambda ts: ts.started(trials[ts.optimizer])):
                taken = ts.take(self.worker, self.heartbeat)
                if taken is not None:
                    try:
                        self.run_trial(ts, *taken)
                    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the next tune runs it again (from its checkpoint)
                        ts.release(taken[0].number, retry=True)  # a no-op once the study was told how it ended
                        raise
                    waiting = False
                    break
            else:
                if all(ts.finished() for ts in self.studies.values()):
                    return
                if not waiting:
                    self.echo("waiting for the trials other workers are running (one whose worker stops is run "
                              "again here)")
                waiting = True
                time.sleep(POLL_SECONDS)

    def run_trial(self, ts: TuneStudy, trial: "optuna.Trial", frozen) -> None:
        """Run one taken trial in its run directory and tell the study how it went."""
        name, preset = ts.optimizer, self.presets[ts.optimizer]
        role = frozen.user_attrs[ROLE]
        label = run_name(frozen, name)
        head = f"[{label}{' = preset' if role == PRESET else ''}]"
        params = suggest(trial, self.dists[name]) if role == SEARCH else {}
        try:
            config = self.config(name, params)
        except ConfigError as exc:  # a point the optimizer's own checks refuse: that is the point's result
            return self._tell(ts, trial, head, state="fail", facts={"error": str(exc)})
        if RUN_DIR in frozen.user_attrs:  # a retry: its first attempt chose the directory
            run_dir = self.out / TRIALS_DIR / label
        else:
            run_dir, passed = claim_run_dir(self.out, label, config)
            if passed:
                self.echo(f"{head} {passed}: a trial of a study that is gone (was its storage lost?); "
                          f"this trial runs in {run_dir.name}")
                head = f"[{run_dir.name}{' = preset' if role == PRESET else ''}]"
            trial.set_user_attr(RUN_DIR, run_dir.name)
        config.run_dir = str(run_dir)
        settings = dict(config.hyperparams)
        weighted = any(is_simplex_key(k) for k in params)  # --search-task-weights: the weights are the setting
        if weighted:
            settings["task_weights"] = list(config.task_weights)
        state = _run_state(run_dir)
        shown = {k: settings[k] for k in self.spaces[name] if k in settings}  # the preset may leave one unset
        if weighted:
            shown["task_weights"] = settings["task_weights"]
        self.echo(f"{head} {format_settings(shown)}"
                  + {"resume": " (resuming from its last checkpoint)", "completed": " (trained before)"}.get(state, ""))
        reporter = _Reporter(trial, self.objective, self.prune and role == SEARCH)
        start = time.perf_counter()
        try:
            with heartbeat(trial, self.heartbeat):
                if state == "completed":
                    summary = RunDir(run_dir).read_summary()
                else:
                    summary = Summary.from_json(self.train_fn(
                        config, preset, method=self.method, workload=self.workload, resume=state == "resume",
                        progress=self.progress, echo=self.echo, on_epoch=reporter))
        except RunStopped as exc:
            return self._tell(ts, trial, head, state="pruned", facts=_facts(settings, reporter.last, start, str(exc)),
                              run_dir=run_dir)
        except NonFiniteLossError as exc:
            return self._tell(ts, trial, head, value=DIVERGED_SCORE, run_dir=run_dir,
                              facts=_facts(settings, reporter.last, start, f"diverged: {first_line(exc)}"))
        except LockedError as exc:  # its run directory is busy: the worker we took it over from still runs
            self.echo(f"{head} {exc}; left for later")
            ts.release(trial.number, retry=True)
            time.sleep(POLL_SECONDS)
            return
        except Exception as exc:  # the setting's own failure (or the code's): it uses its slot all the same
            message = str(exc) if isinstance(exc, MTBenchError) else first_line(exc)
            return self._tell(ts, trial, head, state="fail", run_dir=run_dir,
                              facts={**_facts(settings, reporter.last, start), "error": message})
        status = summary.status
        if status == "interrupted":  # a launched run (torchrun) stopped from outside: as a Ctrl-C here
            self.echo(f"{head} interrupted: {summary.error or 'its processes were stopped'}")
            raise KeyboardInterrupt
        value = score(summary, self.objective)
        if status != "completed" or value is None:
            why = summary.error or (f"status {status}" if status != "completed"
                                    else f"no holdout {self.objective} in its summary")
            return self._tell(ts, trial, head, state="fail", run_dir=run_dir,
                              facts={**_facts(settings, summary, start), "error": why})
        self._tell(ts, trial, head, value=value, facts=_facts(settings, summary, start, "completed"), run_dir=run_dir)

    def _tell(self, ts: TuneStudy, trial: "optuna.Trial", head: str, *, value: float | None = None,
              state: str = "complete", facts: Mapping[str, Any], run_dir: Path | None = None) -> None:
        """Tell the study how a trial ended (it used its slot); its checkpoint goes unless --keep-checkpoints."""
        import optuna
        from optuna.trial import TrialState

        try:
            trial.set_user_attr(RESULT, dict(facts))
            if state == "complete":
                ts.study.tell(trial, value)
            else:
                ts.study.tell(trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            self.echo(f"{head} was given up as lost by another worker meanwhile; its result is dropped "
                      "(the retry reads the finished run directory)")
            return
        if run_dir is not None and not self.keep_checkpoints:
            drop_checkpoint(run_dir)
        what = facts.get("error") or facts.get("outcome", "")
        shown = f"holdout {self.objective} {value:.4f}" if state == "complete" else state
        seconds = facts.get("seconds")
        self.echo(f"{head} {shown}" + (f" ({what})" if what and what != "completed" else "")
                  + (f" in {seconds:.1f} s" if seconds is not None else ""))


def _facts(settings: dict, summary: Summary | None, start: float, outcome: str | None = None) -> dict[str, Any]:
    """What the study keeps of a trial's run: its settings, length, time and holdout figures (never the
    test split's)."""
    facts: dict[str, Any] = {"settings": settings, "seconds": time.perf_counter() - start}
    if summary is not None:
        top1, miou = summary.figures("holdout")
        # another workload's trial keeps its own metrics by name, ImageNet + COCO's its top-1 and mIoU
        held = dict(summary.holdout_metrics) if summary_metrics(summary) is not None and summary.holdout_metrics \
            else {"top1": top1, "miou": miou}
        facts.update(steps=summary.steps, epochs=summary.epochs, holdout=held)
    if outcome is not None:
        facts["outcome"] = outcome
    return facts


def _run_state(run_dir: Path) -> str:
    """'completed', 'resume' or 'new', as compare decides it for its runs."""
    try:
        return run_state(run_dir)
    except RunFileError:
        return "new"
