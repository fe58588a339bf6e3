"""`mtbench tune` under stress: signals and interrupted trials, bounds on every count, disk use of finished
trials, lost studies, failed trials, final runs of a best setting that changed, and what the report says.

Most tests swap the trainer for a stand-in (test_tune's ``fake_train``); the one about processes runs a real
`mtbench tune --jobs 2` on tiny data and signals it.
"""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from mtbench.cli import main
from mtbench.errors import ConfigError
from mtbench.plugins import load_registry
from mtbench.text import format_settings
from mtbench.rundir import CONFIG_FILE, SUMMARY_FILE, RunDir, read_json
from mtbench.tuning import Tuner, open_directory, open_studies, plan_tune
from mtbench.tuning.plan import PRUNE_STARTUP
from mtbench.tuning.results import collect, markdown, measure_overhead
from mtbench.tuning.space import planned_points
from mtbench.tuning.study import RESULT, RUN_DIR, SEARCH, WORKER, Worker, quiet_optuna
from test_tune import TINY, TINY_OPTIONS, _check_exact_budget, fake_train, presets_of, tune_here


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def one_line_error(result, exit_code=1):
    assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: "), result.output
    return lines[-1]


# -- signals and interrupted trials (13, 14) ----------------------------------------------------

def _children(pid: int) -> set[int]:
    try:
        return {int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()}
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc (Linux)")
def test_sigterm_to_tune_jobs_ends_its_workers_and_a_rerun_finishes_exactly_the_budget(tmp_path):
    out = tmp_path / "t"
    args = ["tune", "--optimizers", "adam", "--trials", "2", "--jobs", "2", "--image-size", "32", "--limit-train",
            "40", "--limit-val", "8", "--batch-size", "4", "--epochs", "2", "-q", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, "-m", "mtbench", *args], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    workers: set[int] = set()
    while time.monotonic() < deadline:  # until both workers train a trial
        if parent.poll() is not None:
            pytest.fail(f"the tune ended before it was signalled: {parent.stderr.read().decode()[-2000:]}")
        workers |= _children(parent.pid)
        try:
            with sqlite3.connect(out / "study.db") as con:
                running = {json.loads(v)["pid"] for (v,) in con.execute(
                    "select a.value_json from trial_user_attributes a join trials t on a.trial_id = t.trial_id "
                    "where a.key = ? and t.state = 'RUNNING'", (WORKER,))}
        except sqlite3.Error:
            running = set()
        if len(running) == 2 and running <= workers:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the two workers never ran trials at the same time")
    parent.send_signal(signal.SIGTERM)
    err = parent.communicate(timeout=120)[1].decode()
    assert parent.returncode == 130, err[-2000:]
    assert "interrupted; run the same command again" in err
    assert not [pid for pid in workers if _alive(pid)]  # the parent waited for them: none runs on
    with sqlite3.connect(out / "study.db") as con:
        states = [s for (s,) in con.execute("select state from trials")]
    assert "RUNNING" not in states, err  # each worker gave its trial back

    result = CliRunner().invoke(main, args[:args.index("--jobs")] + args[args.index("--jobs") + 2:])
    assert result.exit_code == 0, result.output
    _check_exact_budget(out, ["adam"], trials=2, epochs=2)


def _interrupting(train, when):
    """``train``, but the ``when``-th call ends as a launched run that was stopped from outside does."""
    calls = []

    def wrapped(config, preset, **kw):
        calls.append(config.run_dir)
        if len(calls) == when:
            return {"status": "interrupted", "error": "terminated (SIGTERM) after 0 of 1 epochs"}
        return train(config, preset, **kw)

    return wrapped, calls


def test_an_interrupted_trial_stops_the_tune_and_is_run_again_under_its_own_name(tmp_path, registry):
    lines = []
    with quiet_optuna():
        plan = plan_tune(presets_of(registry, "adam"), trials=3, options=TINY_OPTIONS, out=tmp_path / "t")
        open_directory(plan)

        def tuner(train):
            studies = open_studies(plan)
            return studies, Tuner(plan.out, plan.presets, studies, plan.spaces, plan.options, plan.overrides,
                                  "joint", train, echo=lines.append)

        train, calls = _interrupting(fake_train(), when=2)
        studies, first = tuner(train)
        with pytest.raises(KeyboardInterrupt):
            first.work()
        assert len(calls) == 2  # the tune stopped with the trial: nothing after it started
        stopped = studies["adam"].slots()[(SEARCH, 0)]
        assert stopped.state == "waiting" and stopped.trial.number > 3  # queued again, not failed for good

        studies, second = tuner(fake_train())
        second.work()
    assert studies["adam"].finished()
    rows = {row.slot: row for row in collect(studies, {}, plan.spaces)[0].search}
    assert rows[0].name == "adam-t1" and rows[0].attempt == 1 and rows[0].state == "COMPLETE"
    assert any(line.startswith("[adam-t1] ") for line in lines[lines.index("[adam-t1] interrupted: terminated "
                                                                           "(SIGTERM) after 0 of 1 epochs") + 1:])
    assert not any(line.startswith(f"[adam t{rows[0].number}") for line in lines)


# -- bounds (15) --------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, expected", [
    ("--trials", "99999999999999999999", "a whole number in [1, 10000]"),
    ("--trials", "0", "a whole number in [1, 10000]"),
    ("--jobs", "100000", "a whole number in [1, 256]"),
    ("--final-seeds", "1000000000", "a whole number in [0, 10000]"),
    ("--nproc-per-node", "100000", "a whole number in [1, 1024]"),
    ("--heartbeat", "1e308", "a number of seconds in [1, 3600]"),
])
def test_every_count_of_tune_has_a_bound(tmp_path, option, value, expected):
    result = CliRunner().invoke(main, ["tune", "--optimizers", "adam", option, value, *TINY,
                                       "--out", str(tmp_path / "t")])
    assert one_line_error(result, exit_code=2) == f"Error: {option} {value} is not allowed: expected {expected}"
    assert not (tmp_path / "t").exists()


def test_a_seed_past_32_bits_tunes_like_any_other(tmp_path, registry):
    adam = registry.get("adam")
    space = adam.tuning_space()
    assert planned_points(space, adam, "qmc", 3, seed=2**32 + 7) == planned_points(space, adam, "qmc", 3, seed=7)
    for sampler in ("qmc", "grid", "tpe"):
        seen = []
        plan, studies = tune_here(tmp_path / sampler, presets_of(registry, "adam"), fake_train(seen=seen), trials=2,
                                  sampler=sampler, options={"seed": 2**64 - 1})
        assert studies["adam"].finished() and {c.seed for c in seen} == {2**64 - 1}


def test_final_seeds_past_the_largest_seed_are_refused_up_front(tmp_path):
    result = CliRunner().invoke(main, ["tune", "--optimizers", "adam", "--seed", str(2**64 - 2), "--final-seeds", "2",
                                       *TINY, "--out", str(tmp_path / "t")])
    line = one_line_error(result)
    assert f"--final-seeds 2 runs the seeds {2**64 - 1} to {2**64}" in line and "--seed" in line, line
    assert not (tmp_path / "t").exists()


# -- checkpoints of finished trials (16) ----------------------------------------------------------

def _checkpointing(train):
    """``train`` that leaves a resume checkpoint in its run directory, as the trainer does after each epoch."""
    def wrapped(config, preset, **kw):
        run = RunDir(config.run_dir)
        run.create()
        (run.checkpoints / "last.pt").write_bytes(b"\0" * 1024)
        return train(config, preset, **kw)

    return wrapped


@pytest.mark.parametrize("keep", [False, True])
def test_a_finished_trial_keeps_no_checkpoint_unless_asked(tmp_path, registry, keep):
    with quiet_optuna():
        plan = plan_tune(presets_of(registry, "adam"), trials=2, options=TINY_OPTIONS, out=tmp_path / "t")
        open_directory(plan)
        studies = open_studies(plan)
        interrupted, _ = _interrupting(fake_train(), when=3)
        train = _checkpointing(interrupted)
        tuner = Tuner(plan.out, plan.presets, studies, plan.spaces, plan.options, plan.overrides, "joint", train,
                      echo=lambda line: None, keep_checkpoints=keep)
        with pytest.raises(KeyboardInterrupt):
            tuner.work()
    checkpoints = {p.parent.parent.name for p in (plan.out / "trials").glob("*/checkpoints/last.pt")}
    assert checkpoints == ({"adam-t0", "adam-t1", "adam-t2"} if keep else {"adam-t2"})  # t2 was interrupted


# -- a lost study, failed trials, the method (18) -----------------------------------------------

def _writing_train(score_of_lr, calls=None):
    """A trainer stand-in that writes config.json and summary.json like the trainer, scoring by lr."""
    def train(config, preset, *, method, workload, resume, progress, echo, on_epoch):
        if calls is not None:
            calls.append(config.hyperparams["lr"])
        run = RunDir(config.run_dir)
        run.create()
        run.write_json(CONFIG_FILE, config.to_dict())
        value = score_of_lr(config.hyperparams["lr"])
        summary = {"status": "completed", "epochs": 1, "steps": 3, "tasks": list(config.tasks),
                   "holdout_top1": value, "holdout_miou": value}
        on_epoch(summary)
        run.write_json(SUMMARY_FILE, summary)
        return summary

    return train


def test_a_trial_directory_of_other_settings_is_not_taken_for_the_trial(tmp_path, registry):
    score_of_lr = lambda lr: round(-math.log10(lr) / 10, 6)  # noqa: E731
    presets = presets_of(registry, "adam")
    plan, studies = tune_here(tmp_path, presets, _writing_train(score_of_lr), trials=1)
    trials = plan.out / "trials"
    (trials / "adam-t0").rename(trials / "swap")  # the two run directories trade names, and the study is lost
    (trials / "adam-t1").rename(trials / "adam-t0")
    (trials / "swap").rename(trials / "adam-t1")
    (plan.out / "study.db").unlink()

    calls = []
    plan, studies = tune_here(tmp_path, presets, _writing_train(score_of_lr, calls), trials=1)
    assert len(calls) == 2  # neither swapped directory was read as the trial's
    for t in studies["adam"].all_trials():
        run_dir = trials / t.user_attrs[RUN_DIR]
        lr = t.user_attrs[RESULT]["settings"]["lr"]
        assert read_json(run_dir / CONFIG_FILE)["hyperparams"]["lr"] == lr
        assert t.value == pytest.approx(score_of_lr(lr))
    assert {t.user_attrs[RUN_DIR] for t in studies["adam"].all_trials()} == {"adam-t0.2", "adam-t1.2"}


def test_a_tune_whose_every_trial_failed_exits_1_and_says_why(tmp_path, monkeypatch):
    def broken(config, preset, **kw):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("mtbench.train.train", broken)
    result = CliRunner().invoke(main, ["tune", "--optimizers", "adam", "--trials", "1", *TINY,
                                       "--out", str(tmp_path / "t")])
    line = one_line_error(result)
    assert "every trial of adam failed (adam-t0: RuntimeError: boom)" in line, line
    markdown_text = (tmp_path / "t" / "tune.md").read_text()  # the report is written all the same
    assert "adam-t0 (lr=0.001) failed: RuntimeError: boom" in markdown_text
    assert "adam-t1 (lr=" in markdown_text and "second line" not in markdown_text


def test_a_failed_trial_says_why_in_the_report(tmp_path, registry):
    calls = []

    def train(config, preset, **kw):
        calls.append(config)
        if len(calls) == 2:
            raise ConfigError("the optimizer refused lr")
        return fake_train()(config, preset, **kw)

    plan, studies = tune_here(tmp_path, presets_of(registry, "adam"), train, trials=2)
    text = markdown(collect(studies, {}, plan.spaces), {"objective": "joint", "trials": 2, "sampler": "qmc"})
    shown = format_settings({"lr": calls[1].hyperparams["lr"]})
    assert f"- adam-t1 ({shown}) failed: the optimizer refused lr\n" in text, text


def test_a_method_that_does_not_compose_is_refused_up_front(tmp_path):
    result = CliRunner().invoke(main, ["tune", "--optimizers", "mtadamv2", "--method", "pcgrad", *TINY,
                                       "--out", str(tmp_path / "t")])
    line = one_line_error(result)
    assert "--method pcgrad does not compose with mtadamv2, which takes the tasks' gradients apart" in line, line
    assert not (tmp_path / "t").exists()


def test_the_overhead_counts_only_this_invocations_trials(tmp_path, registry):
    since = datetime.now()
    with quiet_optuna():
        plan = plan_tune(presets_of(registry, "adam"), trials=2, options=TINY_OPTIONS, out=tmp_path / "t")
        open_directory(plan)
        studies = open_studies(plan)
        ts = studies["adam"]

        def tuner(worker):
            return Tuner(plan.out, plan.presets, studies, plan.spaces, plan.options, plan.overrides, "joint",
                         fake_train(), echo=lambda line: None, worker=worker)

        other = tuner(Worker(pid=1))  # another tune sharing the study: two trials are its
        for _ in range(2):
            other.run_trial(ts, *ts.take(other.worker, 60))
        tuner(Worker()).work()
    ours = [t.user_attrs[RESULT]["seconds"] for t in ts.all_trials() if t.user_attrs[WORKER]["pid"] == os.getpid()]
    assert len(ours) == 1
    overhead = measure_overhead(studies, since, wall=ours[0] + 0.25, setup=0.0, pids=[os.getpid()])
    assert overhead["trials"] == 1 and overhead["seconds"] == pytest.approx(0.25)


def test_pruning_starts_after_two_finished_trials_and_says_so(tmp_path, registry):
    calls = []
    per_epoch = lambda config, epoch: (0.5, 0.5) if len(calls) <= 2 else (0.1, 0.1)  # noqa: E731

    def train(config, preset, **kw):
        calls.append(config)
        return fake_train(per_epoch=per_epoch)(config, preset, **kw)

    plan, studies = tune_here(tmp_path, presets_of(registry, "adam"), train, trials=3, prune=True,
                              options={"epochs": 2})
    states = [t.state for t in studies["adam"].all_trials()]
    assert PRUNE_STARTUP == 2 and states == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED] * 2
    assert any(note.startswith("--prune: the median rule stops a trial once 2 trials of its optimizer have "
                               "finished") for note in plan.notes)
    with quiet_optuna():
        assert "none can be pruned" in plan_tune(presets_of(registry, "adam"), trials=1, prune=True).notes[-1]


# -- final runs of a best setting that changed (18) ---------------------------------------------

def test_final_runs_follow_the_best_setting_and_stay_in_the_report(tmp_path, registry, monkeypatch):
    from mtbench import train as trainer

    adam = registry.get("adam")
    points = planned_points(adam.tuning_space(), adam, "qmc", 3, seed=0)
    target = points[2]["lr"]  # the third search point scores best: a longer tune finds a new best
    real_train = trainer.train

    def train(config, preset, **kw):
        if "/final/" in config.run_dir:
            return real_train(config, preset, **kw)
        value = 1.0 - abs(math.log10(config.hyperparams["lr"] / target)) / 4
        return fake_train(holdout=(value, value))(config, preset, **kw)

    monkeypatch.setattr(trainer, "train", train)
    out = tmp_path / "t"
    base = ["tune", "--optimizers", "adam", *TINY, "--out", str(out)]

    def tuned():
        result = CliRunner().invoke(main, base + ["--trials", str(trials), *extra])
        assert result.exit_code == 0 and "warning" not in result.output, result.output
        (row,) = read_json(out / "tune.json")["optimizers"]
        return row

    trials, extra = 1, ["--final-seeds", "1"]
    first = tuned()
    trials = 3
    second = tuned()
    assert second["best_settings"]["lr"] == target != first["best_settings"]["lr"]
    finals = sorted((out / "final" / "tuned" / "adam").glob("*/runs/*/config.json"))
    assert sorted(read_json(p)["hyperparams"]["lr"] for p in finals) == sorted([first["best_settings"]["lr"], target])
    assert second["test"]["tuned"]["n"] == 1 and second["test"]["tuned"]["mean"] != first["test"]["tuned"]["mean"]
    assert second["test"]["preset"] == first["test"]["preset"]  # the preset's finals ran once, and are read again

    extra = []  # a re-run without --final-seeds reports the finals of the same settings
    third = tuned()
    assert third["test"] == second["test"]
    assert "preset - tuned (test)" in (out / "tune.md").read_text()
