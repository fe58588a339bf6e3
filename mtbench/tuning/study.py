"""The Optuna side of `mtbench tune`: one study per optimizer, its budget as slots, and taking,
recovering and counting trials.

NOTE [exact budget]. Every trial a study will ever run is planned before any runs, as a WAITING
trial: the preset trial and the search slots 0..N-1, each with its qmc or grid point (empty for tpe,
whose sampler draws when the trial starts). Workers take WAITING trials with ``study.ask()``, which
the storages hand out once each (RDB: SELECT ... FOR UPDATE; journal: the order of its log). SQLite
ignores FOR UPDATE, so there a lock file beside the database serialises the take (``Guard``).
Planning is idempotent but not atomic: two workers that start at once may both enqueue a slot, so a
slot belongs to its lowest-numbered trial and a worker that takes a later copy drops it unrun.
``ask()`` on an empty queue makes a fresh trial; having no slot, it is dropped the same way.

A trial whose worker died (on this host: its process is gone; elsewhere: no heartbeat for
STALE_BEATS intervals) is marked FAIL and enqueued again by Optuna's retry callback as the next
attempt: the same point, and the same run directory, so it resumes from its last checkpoint. The
lowest-number rule applies per attempt, so a retry made twice runs once. A slot is done when its
latest attempt is COMPLETE, PRUNED, or FAIL with an error of its own (a setting the optimizer
rejects uses its budget; a kill does not).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import ConfigError
from ..report.comparison import describe_difference
from .storage import Guard, first_contact

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = [
    "ALIVE", "DEFAULT_HEARTBEAT", "DROPPED", "PRESET", "RESULT", "ROLE", "RUN_DIR", "SEARCH", "SLOT",
    "STALE_BEATS", "WORKER", "Slot", "TuneStudy", "Worker", "attempt", "heartbeat", "lost_reason", "open_study",
    "owners", "process_alive", "process_start", "quiet_optuna", "result", "retry_callback", "run_name",
    "slot_key", "slots",
]

DEFAULT_HEARTBEAT = 60.0  # seconds between a running trial's heartbeats
STALE_BEATS = 4  # heartbeats missed before a trial on another host counts as lost

# User attributes of a trial (user attributes: public Optuna API, copied into a retry)
ROLE = "role"  # PRESET or SEARCH
SLOT = "slot"  # a search trial's slot, 0..N-1
WORKER = "worker"  # {host, pid, started, trial, every, at}: who runs it, since when
ALIVE = "alive"  # time.time() of the worker's last heartbeat
DROPPED = "dropped"  # why a trial was let go unrun
RUN_DIR = "run_dir"  # the name of its run directory under trials/ (a retry keeps its first attempt's)
# How the trial went, in one attribute (each write is a storage transaction): settings (the run's
# resolved hyperparameters), seconds (training time), steps, epochs, holdout {top1, miou} (another
# workload: its metrics by name), outcome
# (completed, pruned at epoch k, diverged: ...) and error (why it failed on its own account: it
# still used its slot).
RESULT = "result"
PRESET, SEARCH = "preset", "search"


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines and its experimental-feature warnings off (the QMC sampler and the retry
    callback are marked experimental): mtbench prints its own progress."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


# ---------------------------------------------------------------------------------------------
# Slots


def result(trial: "FrozenTrial") -> dict:
    return trial.user_attrs.get(RESULT) or {}


def run_name(trial: "FrozenTrial", optimizer: str) -> str:
    """The name a trial goes by: its run directory's, ``<optimizer>-t<n>`` with n its first attempt's number
    (unless that directory held another run when the trial started)."""
    return trial.user_attrs.get(RUN_DIR) or f"{optimizer}-t{trial.system_attrs.get('failed_trial', trial.number)}"


def attempt(trial: "FrozenTrial") -> int:
    """0 for a planned trial, k for its k-th retry."""
    return len(trial.system_attrs.get("retry_history", []))


def slot_key(trial: "FrozenTrial") -> tuple[str, int] | None:
    """(role, slot) of a planned trial; None for a trial nobody planned."""
    role = trial.user_attrs.get(ROLE)
    return None if role is None else (role, int(trial.user_attrs.get(SLOT, 0)))


def owners(trials: list["FrozenTrial"]) -> dict[tuple[str, int, int], int]:
    """(role, slot, attempt) -> the number of the trial that owns it (the lowest of its copies)."""
    out: dict[tuple[str, int, int], int] = {}
    for t in sorted(trials, key=lambda t: t.number):
        key = slot_key(t)
        if key is not None:
            out.setdefault((*key, attempt(t)), t.number)
    return out


@dataclass
class Slot:
    """A slot of the budget and the trial of its latest attempt."""

    role: str
    index: int
    trial: "FrozenTrial"

    @property
    def state(self) -> str:
        """done, waiting, running or lost (failed by a kill, not yet enqueued again)."""
        from optuna.trial import TrialState

        state = self.trial.state
        if state in (TrialState.COMPLETE, TrialState.PRUNED):
            return "done"
        if state == TrialState.FAIL:
            return "done" if result(self.trial).get("error") else "lost"
        return "running" if state == TrialState.RUNNING else "waiting"


def slots(trials: list["FrozenTrial"]) -> dict[tuple[str, int], Slot]:
    by_number = {t.number: t for t in trials}
    latest: dict[tuple[str, int], Slot] = {}
    for (role, index, k), number in sorted(owners(trials).items(), key=lambda kv: kv[0][2]):
        latest[(role, index)] = Slot(role, index, by_number[number])
    return latest


# ---------------------------------------------------------------------------------------------
# Workers


@dataclass(frozen=True)
class Worker:
    """This process as a trial's worker record names it."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def record(self, trial_number: int, every: float) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "started": process_start(self.pid), "trial": trial_number,
                "every": every, "at": time.time()}


def process_start(pid: int) -> int | None:
    """When a process started (clock ticks since boot, from /proc), to tell it from a later one with its
    pid; None where /proc is not there."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (command name) "
    return fields[0], int(fields[19])


def process_alive(pid: int, started: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, start = stat
    return state not in ("Z", "X") and (started is None or start == started)  # a zombie has ended


def lost_reason(trial: "FrozenTrial", me: Worker, now: float) -> str | None:
    """Why a RUNNING trial's worker is gone, or None while it may be alive."""
    worker = trial.user_attrs.get(WORKER) or {}
    every = float(worker.get("every") or DEFAULT_HEARTBEAT)
    if worker.get("trial") != trial.number:  # taken, but its worker not yet recorded (a retry holds the old one)
        started = trial.datetime_start
        if started is not None and (datetime.now() - started).total_seconds() > STALE_BEATS * every:
            return f"taken {int((datetime.now() - started).total_seconds())} s ago by a worker that never reported"
        return None
    if worker.get("host") == me.host:
        if process_alive(int(worker["pid"]), worker.get("started")):
            return None
        return f"its worker (pid {worker['pid']}) has ended"
    silent = now - float(trial.user_attrs.get(ALIVE) or worker.get("at") or 0.0)
    if silent > STALE_BEATS * every:
        return f"no heartbeat from its worker on {worker.get('host')} for {int(silent)} s"
    return None


# ---------------------------------------------------------------------------------------------
# One optimizer's study


def retry_callback():
    """Optuna's callback that enqueues a failed trial again (renamed in Optuna 4.9)."""
    import optuna

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # The intermediate values come along: a resumed trial reports only its later epochs to the pruner.
        return cls(max_retry=None, inherit_intermediate_values=True)


@dataclass
class TuneStudy:
    """One optimizer's Optuna study and its budget: the preset trial and ``trials`` search slots."""

    optimizer: str
    study: "optuna.Study"
    guard: Guard
    trials: int
    points: list[dict] | None = None  # the qmc/grid point of each slot (None: tpe draws them)

    def all_trials(self) -> list["FrozenTrial"]:
        return self.study.get_trials(deepcopy=False)

    def plan(self) -> int:
        """Enqueue the slots the study lacks; returns how many were added."""
        have = {slot_key(t) for t in self.all_trials()}
        planned = max((i for role, i in have - {None} if role == SEARCH), default=-1) + 1
        if planned > self.trials:
            raise ConfigError(f"the study {self.study.study_name!r} already has {planned} search trials; "
                              f"--trials {self.trials} cannot take it back (give --trials {planned} or more)")
        added = 0
        if (PRESET, 0) not in have:
            self.study.enqueue_trial({}, user_attrs={ROLE: PRESET})
            added += 1
        for i in range(self.trials):
            if (SEARCH, i) not in have:
                self.study.enqueue_trial(self.points[i] if self.points else {}, user_attrs={ROLE: SEARCH, SLOT: i})
                added += 1
        return added

    def slots(self, trials: list["FrozenTrial"] | None = None) -> dict[tuple[str, int], Slot]:
        return slots(self.all_trials() if trials is None else trials)

    def finished(self, trials: list["FrozenTrial"] | None = None) -> bool:
        table = self.slots(trials)
        return len(table) == self.trials + 1 and all(s.state == "done" for s in table.values())

    def started(self, trials: list["FrozenTrial"] | None = None) -> int:
        """Slots done or running: how far this study has got."""
        return sum(s.state in ("done", "running") for s in self.slots(trials).values())

    def take(self, me: Worker, every: float) -> tuple["optuna.Trial", "FrozenTrial"] | None:
        """A WAITING trial of this study, now RUNNING and recorded as ``me``'s; None when none waits."""
        from optuna.trial import TrialState

        while True:
            with self.guard:
                if not self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                    return None
                trial = self.study.ask()
            try:
                trial.set_user_attr(WORKER, me.record(trial.number, every))
                trials = self.all_trials()
                frozen = next(t for t in trials if t.number == trial.number)
                key = slot_key(frozen)
                owner = owners(trials).get((*key, attempt(frozen))) if key else None
                if owner == trial.number:
                    return trial, frozen
                trial.set_user_attr(DROPPED, f"a copy of trial {owner}, which runs that slot" if owner is not None
                                    else "not a planned trial")
            except KeyboardInterrupt:  # taken, not yet run: lost now (recover() queues it again), not in STALE_BEATS
                self.release(trial.number)
                raise
            self.release(trial.number)

    def release(self, number: int, retry: bool = False) -> bool:
        """Mark a RUNNING trial FAIL, enqueueing it again with ``retry``; False when it had already finished
        (another worker took it over)."""
        import optuna
        from optuna.trial import TrialState

        try:
            with self.guard:
                self.study.tell(number, state=TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            return False
        if retry:
            self.retry(number)
        return True

    def retry(self, number: int) -> None:
        frozen = next(t for t in self.all_trials() if t.number == number)
        retry_callback()(self.study, frozen)

    def recover(self, me: Worker, trials: list["FrozenTrial"] | None = None) -> list[str]:
        """Enqueue again the trials whose worker died (``trials``: the study's, read just before); returns a
        line for each."""
        notes = []
        now = time.time()
        for slot in self.slots(trials).values():
            trial = slot.trial
            if slot.state == "running":
                reason = lost_reason(trial, me, now)
                if reason is None or not self.release(trial.number):
                    continue
            elif slot.state != "lost":
                continue
            else:
                reason = "it was stopped"
            self.retry(trial.number)
            notes.append(f"{run_name(trial, self.optimizer)} is run again: {reason}")
        return notes


def open_study(storage: "optuna.storages.BaseStorage", name: str, record: dict, sampler, pruner) -> "optuna.Study":
    """Create or load the study ``name``; ConfigError when it was made with other settings than ``record``.
    Safe for any number of workers at once (NOTE [first contact] in storage.py)."""
    import optuna

    with first_contact(storage):
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                    pruner=pruner, load_if_exists=True)
        old = study.user_attrs.get("mtbench")
        if old is None:
            study.set_user_attr("mtbench", record)
    if old is not None:
        difference = describe_difference(old, record)
        if difference:
            raise ConfigError(f"the study {name!r} was made with other settings ({difference}); repeat its "
                              "options to continue it, or give another --study or --out")
    return study


@contextlib.contextmanager
def heartbeat(trial: "optuna.Trial", every: float) -> Iterator[None]:
    """Record ``trial``'s heartbeat every ``every`` seconds while the block runs, for workers on other
    hosts to tell a live trial from a lost one."""
    import threading

    import optuna

    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                trial.set_user_attr(ALIVE, time.time())
            except optuna.exceptions.UpdateFinishedTrialError:  # taken over meanwhile: nothing left to keep alive
                return
            except Exception:  # a busy or unreachable storage: the next beat tries again
                continue

    thread = threading.Thread(target=beat, name="mtbench-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
