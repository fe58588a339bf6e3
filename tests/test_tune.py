"""`mtbench tune`: search spaces, the equal budget, the holdout-only objective, pruning, resume after a
kill, several workers on one storage, the final runs and the report.

Most tests swap the trainer for a stand-in that reports chosen figures; the ones about processes
(kill and rerun, two workers, --jobs) and the final runs train for real on tiny data.
"""

import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from mtbench import OptimizerPreset, SearchDim
from mtbench.cli import main
from mtbench.cli.tune import tune
from mtbench.cli.workerargs import option_args
from mtbench.tuning.spawn import threads_per_job, worker_env
from mtbench.errors import ConfigError, NonFiniteLossError
from mtbench.plugins import load_registry
from mtbench.presets import LR_SPAN, WEIGHT_DECAY_RANGE, validate_preset
from mtbench.rundir import read_epochs, read_json
from mtbench.tuning import Tuner, open_directory, open_studies, plan_tune
from mtbench.tuning.results import collect
from mtbench.tuning.space import build_spaces, grid_values, planned_points
from mtbench.tuning.study import (
    PRESET, RESULT, ROLE, SEARCH, SLOT, WORKER, Guard, TuneStudy, Worker, lost_reason, owners, quiet_optuna, slots,
)

TINY_OPTIONS = {"image_size": 32, "limit_train": 16, "limit_val": 8, "epochs": 1, "batch_size": 4}
TINY = ["--image-size", "32", "--limit-train", "16", "--limit-val", "8", "--epochs", "1", "--batch-size", "4", "-q"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def presets_of(registry, *names):
    return {name: registry.get(name) for name in names}


def fake_train(holdout=(0.25, 0.5), final=(0.8125, 0.6875), seen=None, per_epoch=None):
    """A trainer stand-in: its holdout and test figures differ, so a score tells which split it came from.

    ``per_epoch(config, epoch)`` gives the holdout (top-1, mIoU) of each epoch instead of ``holdout``.
    """
    def train(config, preset, *, method, workload, resume, progress, echo, on_epoch):
        if seen is not None:
            seen.append(config)
        summary = {}
        for epoch in range(1, config.epochs + 1):
            top1, miou = per_epoch(config, epoch) if per_epoch else holdout
            summary = {"status": "running", "epochs": epoch, "steps": 3 * epoch, "tasks": list(config.tasks),
                       "holdout_top1": top1, "holdout_miou": miou, "final_top1": final[0], "final_miou": final[1]}
            on_epoch(summary)
        return {**summary, "status": "completed"}

    return train


def tune_here(tmp_path, presets, train, *, trials=2, sampler="qmc", objective="joint", prune=False, space=(),
              sets=(), options=None, storage=None):
    """Plan, open and run a tune in this process with ``train``; returns the plan and the studies."""
    with quiet_optuna():
        plan = plan_tune(presets, trials=trials, sampler=sampler, objective=objective, prune=prune,
                         space_items=space, set_items=sets, options={**TINY_OPTIONS, **(options or {})},
                         out=tmp_path / "tune", storage=storage)
        open_directory(plan)
        studies = open_studies(plan)
        Tuner(plan.out, plan.presets, studies, plan.spaces, plan.options, plan.overrides, objective, train,
              prune=prune, echo=lambda line: None).work()
    return plan, studies


def by_role(ts, role):
    return [t for t in ts.all_trials() if t.user_attrs.get(ROLE) == role]


# -- search spaces -----------------------------------------------------------------------------

def test_default_space_is_lr_around_the_preset_and_weight_decay_where_it_has_one(registry):
    sgd, adam = registry.get("sgd"), registry.get("adam")
    assert sgd.tuning_space() == {"lr": SearchDim(0.01 / LR_SPAN, 0.01 * LR_SPAN, log=True),
                                  "weight_decay": SearchDim(*WEIGHT_DECAY_RANGE, log=True)}
    assert adam.tuning_space() == {"lr": SearchDim(0.001 / LR_SPAN, 0.001 * LR_SPAN, log=True)}


def _preset(**kw):
    return OptimizerPreset(name="mysgd", title="My SGD", factory=lambda params, **hp: None,
                           defaults={"lr": 0.1, "momentum": 0.9}, **kw)


def test_a_plugin_declares_its_own_search_space():
    preset = _preset(search_space={"lr": SearchDim(1e-3, 1, log=True), "momentum": [0.8, 0.9, 0.99]})
    assert validate_preset(preset).tuning_space() == {"lr": SearchDim(1e-3, 1.0, log=True),
                                                      "momentum": (0.8, 0.9, 0.99)}


@pytest.mark.parametrize("space, message", [
    ({"lr": SearchDim(0, 1, log=True)}, r"lr=0:1:log is not allowed: a log range needs LOW > 0"),
    ({"momentum": SearchDim(0.5, 1.5)}, r"momentum=0.5:1.5 is out of range: momentum takes a number in \[0, 1\)"),
    ({"nesterov": [True, False]}, r"'nesterov' cannot be searched"),
    ({"momentum": [0.9]}, r"momentum=\[0.9\] is not a search range: expected a mtbench.SearchDim or a list of"),
])
def test_a_bad_plugin_search_space_is_refused_with_the_reason(space, message):
    with pytest.raises(ValueError, match="bad search space: " + message):
        validate_preset(_preset(search_space=space))


def test_space_items_scope_like_set_and_set_fixes_a_setting(registry):
    presets = presets_of(registry, "sgd", "adam")
    fixed = {"sgd": {"weight_decay"}, "adam": set()}
    spaces = build_spaces(presets, ["lr=1e-4:1e-1:log", "adam.lr=1e-5:1e-3:log", "sgd.momentum=0.8:0.99"], fixed)
    assert spaces["sgd"] == {"lr": SearchDim(1e-4, 0.1, log=True), "momentum": SearchDim(0.8, 0.99)}
    assert spaces["adam"] == {"lr": SearchDim(1e-5, 1e-3, log=True)}  # the scoped item wins
    with pytest.raises(ConfigError, match=r"--space sgd.weight_decay=0:1: sgd's weight_decay is fixed by --set"):
        build_spaces(presets, ["sgd.weight_decay=0:1"], fixed)


@pytest.mark.parametrize("item, message", [
    ("adam.lr=0:1e-1:log", r"--space adam.lr=0:1e-1:log is not allowed: a log range needs LOW > 0"),
    ("lr=1e-1:1e-3:log", r"--space lr=1e-1:1e-3:log is not allowed: expected LOW < HIGH"),
    ("lr=-1:1", r"--space lr=-1:1 is out of range: lr takes a number in \(0, inf\)"),
    ("lr=1e-5", r"--space lr=1e-5 does not parse: expected KEY=LOW:HIGH, KEY=LOW:HIGH:log or KEY=A\|B"),
    ("lr=1e-5:1e-1:ln", r"--space lr=1e-5:1e-1:ln does not parse"),
    ("sgd.momentum=0.5:1.5", r"--space sgd.momentum=0.5:1.5 is out of range: momentum takes a number in \[0, 1\)"),
    ("adamx.lr=1e-4:1e-2", r"--space adamx.lr=1e-4:1e-2: 'adamx' is not one of the tuned .*did you mean 'adam'"),
    ("foo=1:2", r"--space foo=1:2: none of the tuned optimizers accepts 'foo'"),
    ("adam.betas=0.9|0.99", r"--space adam.betas=0.9\|0.99: betas=0.9 has 1 values"),
    ("sgd.nesterov=true|maybe", r"--space sgd.nesterov=true\|maybe: nesterov='maybe' is not allowed: expected true"),
])
def test_bad_space_text_is_a_one_line_error(tmp_path, item, message):
    result = CliRunner().invoke(main, ["tune", "--optimizers", "sgd,adam", "--space", item, *TINY,
                                       "--out", str(tmp_path / "t")])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "t").exists()  # refused before anything was written


def test_grid_points_are_log_spaced_and_exactly_the_budget(registry):
    sgd = registry.get("sgd")
    space = sgd.tuning_space()
    values = grid_values(space, sgd, 6)
    assert values == {"lr": [0.001, 0.01, 0.1], "weight_decay": [1e-6, 0.1]}
    points = planned_points(space, sgd, "grid", 6, seed=0)
    assert len(points) == 6 and len({tuple(p.values()) for p in points}) == 6
    with pytest.raises(ConfigError, match=r"--trials 5 cannot be a grid .* a multiple of 2"):
        grid_values({**space, "nesterov": (True, False)}, sgd, 5)


def test_qmc_points_are_seeded_halton_points_inside_the_space(registry):
    adam = registry.get("adam")
    space = {"lr": SearchDim(1e-4, 1e-2, log=True)}
    first = planned_points(space, adam, "qmc", 8, seed=3)
    assert first == planned_points(space, adam, "qmc", 8, seed=3)
    assert first != planned_points(space, adam, "qmc", 8, seed=4)
    lrs = sorted(p["lr"] for p in first)
    assert 1e-4 <= lrs[0] and lrs[-1] <= 1e-2 and len(set(lrs)) == 8
    # low-discrepancy: each of the 8 equal log-width bins of the range holds one point
    assert sorted(int((math.log10(x) + 4) / 2 * 8) for x in lrs) == list(range(8))


# -- the budget and the objective --------------------------------------------------------------

@pytest.mark.parametrize("sampler", ["qmc", "grid", "tpe"])
def test_every_optimizer_gets_the_same_budget_and_a_labelled_preset_trial(tmp_path, registry, sampler):
    presets = presets_of(registry, "sgd", "adam", "mtadamv2")
    plan, studies = tune_here(tmp_path, presets, fake_train(), trials=4, sampler=sampler)
    for name, ts in studies.items():
        search, preset = by_role(ts, SEARCH), by_role(ts, PRESET)
        assert len(ts.all_trials()) == 5
        assert sorted(t.user_attrs[SLOT] for t in search) == [0, 1, 2, 3]
        assert all(t.state == TrialState.COMPLETE for t in ts.all_trials())
        assert len(preset) == 1 and preset[0].params == {}  # the preset is a reference, not a sample
        assert preset[0].user_attrs[RESULT]["settings"] == json.loads(json.dumps(plan.presets[name].resolve()))
        assert len({tuple(sorted(t.params.items())) for t in search}) == 4  # four different points
    results = collect(studies, {}, plan.spaces)
    assert [(r.optimizer, r.done, r.budget) for r in results] == [("sgd", 4, 4), ("adam", 4, 4), ("mtadamv2", 4, 4)]


def test_a_journal_storage_holds_the_studies_and_a_rerun_runs_nothing(tmp_path, registry):
    seen = []
    journal = f"journal:{tmp_path / 'shared' / 'tune.log'}"
    presets = presets_of(registry, "sgd", "adam")
    plan, studies = tune_here(tmp_path, presets, fake_train(seen=seen), trials=2, storage=journal, sets=["sgd.lr=0.05"])
    assert (tmp_path / "shared" / "tune.log").is_file() and not (plan.out / "study.db").exists()
    assert len(seen) == 6 and all(ts.finished() for ts in studies.values())
    assert plan.spaces["sgd"] == {"weight_decay": SearchDim(*WEIGHT_DECAY_RANGE, log=True)}  # lr fixed by --set
    assert all(c.hyperparams["lr"] == 0.05 for c in seen if c.optimizer == "sgd")
    tune_here(tmp_path, presets, fake_train(seen=seen), trials=2, storage=journal, sets=["sgd.lr=0.05"])
    assert len(seen) == 6


def test_a_searched_setting_that_the_preset_leaves_unset(tmp_path, registry):
    plan, studies = tune_here(tmp_path, presets_of(registry, "adam"), fake_train(), trials=2,
                              space=["weight_decay=1e-5:1e-2:log"])
    preset, *search = studies["adam"].all_trials()
    assert "weight_decay" not in preset.user_attrs[RESULT]["settings"]  # the preset runs as the guide has it
    assert all(1e-5 <= t.user_attrs[RESULT]["settings"]["weight_decay"] <= 1e-2 for t in search)
    assert studies["adam"].finished()


def test_the_objective_reads_the_holdout_split_only(tmp_path, registry, monkeypatch):
    told = []
    after_trial = optuna.samplers.TPESampler.after_trial

    def spy(self, study, trial, state, values):
        told.append(values)
        return after_trial(self, study, trial, state, values)

    monkeypatch.setattr(optuna.samplers.TPESampler, "after_trial", spy)
    seen = []
    plan, studies = tune_here(tmp_path, presets_of(registry, "adam"), fake_train(seen=seen), trials=3,
                              sampler="tpe", options={"epochs": 2})
    assert told == [[0.375]] * 4  # joint = mean of holdout top-1 0.25 and mIoU 0.5; the test split's is 0.75
    trials = studies["adam"].all_trials()
    assert all(t.intermediate_values == {1: 0.375, 2: 0.375} for t in trials)
    kept = json.dumps([t.user_attrs for t in trials])
    assert "0.8125" not in kept and "0.6875" not in kept  # nothing of the test split is kept
    assert all(config.holdout == 0.1 for config in seen)

    plan, studies = tune_here(tmp_path / "top1", presets_of(registry, "adam"), fake_train(), trials=1,
                              objective="top1")
    assert [t.value for t in studies["adam"].all_trials()] == [0.25, 0.25]


def test_a_tune_without_a_holdout_split_is_refused(registry):
    with pytest.raises(ConfigError, match=r"--holdout 0 leaves nothing to select on"):
        plan_tune(presets_of(registry, "adam"), trials=2, options={"holdout": 0.0})
    with pytest.raises(ConfigError, match=r"--objective miou reads the seg task, which --tasks cls does not train"):
        plan_tune(presets_of(registry, "adam"), trials=2, objective="miou", options={"tasks": "cls"})


def test_a_diverged_trial_scores_lowest_and_a_failed_one_uses_its_slot(tmp_path, registry):
    calls = []

    def train(config, preset, *, method, workload, resume, progress, echo, on_epoch):
        calls.append(config.hyperparams["lr"])
        if len(calls) == 2:
            raise NonFiniteLossError("non-finite loss at step 3 in classification")
        if len(calls) == 3:
            raise ConfigError("the optimizer refused lr")
        return fake_train()(config, preset, method=method, workload=workload, resume=resume, progress=progress,
                            echo=echo, on_epoch=on_epoch)

    plan, studies = tune_here(tmp_path, presets_of(registry, "adam"), train, trials=3)
    trials = studies["adam"].all_trials()
    assert len(calls) == 4 and len(trials) == 4  # nothing run twice, nothing left out
    assert trials[1].state == TrialState.COMPLETE and trials[1].value == 0.0
    assert trials[1].user_attrs[RESULT]["outcome"].startswith("diverged: NonFiniteLossError: non-finite loss")
    assert trials[2].state == TrialState.FAIL and trials[2].user_attrs[RESULT]["error"] == "the optimizer refused lr"
    assert studies["adam"].finished()
    result = collect(studies, {}, plan.spaces)[0]
    assert (result.done, result.count("FAIL"), result.best.number) == (3, 1, 3)


# -- pruning -----------------------------------------------------------------------------------

def test_pruning_stops_trials_below_the_median(tmp_path, registry):
    # the holdout score grows with lr, so the low-lr points fall below the median of the trials before them
    per_epoch = lambda config, epoch: (0.0, config.hyperparams["lr"] * 10 * epoch)  # noqa: E731
    plan, studies = tune_here(tmp_path, presets_of(registry, "adam"), fake_train(per_epoch=per_epoch), trials=10,
                              prune=True, options={"epochs": 3})
    trials = by_role(studies["adam"], SEARCH)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.user_attrs[RESULT]["epochs"] < 3 for t in pruned)
    assert all(t.user_attrs[RESULT]["outcome"].startswith("pruned at epoch") for t in pruned)
    result = collect(studies, {}, plan.spaces)[0]
    assert result.done == 10 and result.steps < result.full_steps == 10 * 9


def test_a_pruned_trial_run_says_pruned(tmp_path, registry):
    from mtbench.train import train

    presets = presets_of(registry, "adam")
    with quiet_optuna():
        plan = plan_tune(presets, trials=1, prune=True, options={**TINY_OPTIONS, "epochs": 2}, out=tmp_path / "t")
        open_directory(plan)
        studies = open_studies(plan)
        studies["adam"].study.pruner = optuna.pruners.ThresholdPruner(lower=2.0)  # every score is below 2
        Tuner(plan.out, presets, studies, plan.spaces, plan.options, plan.overrides, "joint", train, prune=True,
              echo=lambda line: None).work()
    preset, search = studies["adam"].all_trials()
    assert preset.state == TrialState.COMPLETE  # the preset trial is never pruned
    assert search.state == TrialState.PRUNED
    summary = read_json(plan.out / "trials" / f"adam-t{search.number}" / "summary.json")
    assert summary["status"] == "pruned" and summary["epochs"] == 1
    assert search.user_attrs[RESULT]["steps"] == summary["steps"] < read_json(
        plan.out / "trials" / "adam-t0" / "summary.json")["steps"]


# -- slots, copies and lost workers ------------------------------------------------------------

def _memory_study(trials=2):
    study = optuna.create_study(direction="maximize")
    ts = TuneStudy("adam", study, Guard("memory"), trials)
    ts.plan()
    return ts


def test_a_slot_enqueued_twice_runs_once():
    ts = _memory_study()
    ts.study.enqueue_trial({}, user_attrs={ROLE: SEARCH, SLOT: 0})  # a second worker planned at the same moment
    assert ts.plan() == 0
    taken = []
    while (claim := ts.take(Worker(), 60)) is not None:
        taken.append(claim[0].number)
        ts.study.tell(claim[0], 1.0)
    assert taken == [0, 1, 2]
    copy = ts.all_trials()[3]
    assert copy.state == TrialState.FAIL and copy.user_attrs["dropped"] == "a copy of trial 1, which runs that slot"
    assert ts.finished() and len(slots(ts.all_trials())) == 3


def test_a_trial_whose_worker_is_gone_is_enqueued_again_once():
    ts = _memory_study(trials=1)
    trial, _ = ts.take(Worker(), 60)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial.set_user_attr(WORKER, {**Worker().record(trial.number, 60), "pid": dead.pid, "started": None})
    notes = ts.recover(Worker())
    assert notes == [f"adam-t0 is run again: its worker (pid {dead.pid}) has ended"]
    assert ts.recover(Worker()) == []
    retry = ts.all_trials()[-1]
    assert retry.state == TrialState.WAITING and retry.system_attrs["failed_trial"] == 0
    assert owners(ts.all_trials())[(PRESET, 0, 1)] == retry.number


def test_a_trial_on_another_host_is_lost_after_missed_heartbeats():
    ts = _memory_study(trials=1)
    trial, _ = ts.take(Worker(), 60)
    trial.set_user_attr(WORKER, {**Worker().record(trial.number, 10), "host": "elsewhere"})
    frozen = ts.all_trials()[0]
    me, now = Worker(), time.time()
    assert lost_reason(frozen, me, now + 30) is None
    assert lost_reason(frozen, me, now + 50).startswith("no heartbeat from its worker on elsewhere for 5")
    assert lost_reason(frozen, me, now) is None and lost_reason(ts.all_trials()[0], me, now + 10) is None


# -- processes: kill and rerun, two workers, --jobs --------------------------------------------

def _study_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("select number, state from trials order by number").fetchall()


def _check_exact_budget(out: Path, names, trials, epochs):
    """Every slot done once: its run directory trained each epoch once; no run directory beside them."""
    record = read_json(out / "tune-settings.json")
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    dirs = set()
    for name in names:
        study = next(optuna.load_study(study_name=s.study_name, storage=storage)
                     for s in optuna.get_all_study_summaries(storage) if s.study_name.endswith(f".{name}"))
        ts = TuneStudy(name, study, Guard("memory"), trials)
        assert ts.finished(), [(t.number, t.state, t.user_attrs) for t in ts.all_trials()]
        table = slots(ts.all_trials())
        assert sorted(table) == [(PRESET, 0)] + [(SEARCH, i) for i in range(trials)]
        for slot in table.values():
            first = slot.trial.system_attrs.get("failed_trial", slot.trial.number)
            run_dir = out / "trials" / f"{name}-t{first}"
            assert [row.epoch for row in read_epochs(run_dir)] == list(range(1, epochs + 1))
            steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            assert steps == sorted(set(steps))  # no step trained twice
            dirs.add(run_dir.name)
    assert {p.name for p in (out / "trials").iterdir()} == dirs
    assert record["optimizers"] == list(names)


def _tune_cmd(out, *args):
    return [sys.executable, "-m", "mtbench", "tune", *args, "--out", str(out)]


def test_a_worker_killed_mid_trial_is_rerun_and_the_budget_is_exact(tmp_path):
    out = tmp_path / "t"
    args = ["--optimizers", "adam", "--trials", "2", "--image-size", "32", "--limit-train", "40", "--limit-val", "8",
            "--batch-size", "4", "--epochs", "2", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = subprocess.Popen(_tune_cmd(out, *args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim = out / "trials" / "adam-t1"  # the first search trial (t0 is the preset's)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            pytest.fail(f"the worker ended before it could be killed: {worker.stderr.read().decode()[-2000:]}")
        try:  # the summary is rewritten after each epoch's checkpoint: epoch 1 saved, epoch 2 under way
            summary = read_json(victim / "summary.json")
            mid_trial = summary["status"] == "running" and summary["epochs"] == 1
        except Exception:
            mid_trial = False
        if mid_trial:
            break
        time.sleep(0.02)
    worker.kill()
    worker.wait()
    assert dict(_study_rows(out / "study.db"))[1] == "RUNNING"

    result = CliRunner().invoke(main, ["tune", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "adam-t1 is run again: its worker" in result.output
    assert "(resuming from its last checkpoint)" in result.output
    _check_exact_budget(out, ["adam"], trials=2, epochs=2)
    rows = _study_rows(out / "study.db")
    assert [state for _, state in rows] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]  # t1 killed, t3 its rerun
    assert "(resuming: 1 of 3 trials done)" in result.output
    again = CliRunner().invoke(main, ["tune", *args, "--out", str(out)])
    assert again.exit_code == 0 and _study_rows(out / "study.db") == rows  # finished trials are never rerun


def test_two_workers_started_at_once_finish_exactly_the_budget(tmp_path):
    out = tmp_path / "t"
    args = ["--optimizers", "sgd,adam", "--trials", "3", *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(_tune_cmd(out, *args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for _ in range(2)]
    errors = [w.communicate(timeout=300)[1].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], errors
    _check_exact_budget(out, ["sgd", "adam"], trials=3, epochs=1)
    with sqlite3.connect(out / "study.db") as con:
        attrs = [json.loads(v) for (v,) in con.execute("select value_json from trial_user_attributes where key = ?",
                                                       (WORKER,))]
    assert len({a["pid"] for a in attrs}) == 2  # both took trials


_RACING_WORKER = """
import sys, time
from pathlib import Path
from mtbench.plugins import load_registry
from mtbench.tuning import Tuner, open_directory, open_studies, plan_tune
from mtbench.tuning.study import quiet_optuna

out, index = Path(sys.argv[1]), int(sys.argv[2])

def train(config, preset, *, method, workload, resume, progress, echo, on_epoch):
    with open(out.parent / f"runs-{index}.txt", "a") as log:
        log.write(config.run_dir + "\\n")
    time.sleep(0.02)
    summary = {"status": "completed", "epochs": 1, "steps": 1, "holdout_top1": 0.5, "holdout_miou": 0.5}
    on_epoch(summary)
    return summary

registry = load_registry()
presets = {name: registry.get(name) for name in ("sgd", "adam")}
with quiet_optuna():
    plan = plan_tune(presets, trials=25, options={"image_size": 32}, out=out)
    open_directory(plan)
    studies = open_studies(plan, index)
    Tuner(out, presets, studies, plan.spaces, plan.options, plan.overrides, "joint", train, echo=print).work()
"""


def test_racing_workers_never_run_a_trial_twice(tmp_path):
    # Short trials make the workers take trials from the study at the same moments, where SQLite alone
    # hands one WAITING trial to both now and then (it ignores SELECT ... FOR UPDATE).
    script = tmp_path / "worker.py"
    script.write_text(_RACING_WORKER)
    n = 2
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "t"), str(i)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(n)]
    outputs = [w.communicate(timeout=300)[0].decode() for w in workers]
    assert [w.returncode for w in workers] == [0] * n, outputs
    logs = [tmp_path / f"runs-{i}.txt" for i in range(n)]
    runs = [line for log in logs if log.exists() for line in log.read_text().split()]
    assert len(runs) == len(set(runs)) == 2 * 26, sorted(runs)


def test_jobs_runs_the_trials_in_worker_processes_with_the_threads_split(tmp_path):
    out = tmp_path / "t"
    result = CliRunner().invoke(main, ["tune", "--optimizers", "adam", "--trials", "3", "--jobs", "2", *TINY,
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"2 workers, {threads_per_job(2)} CPU thread(s) each" in result.output
    _check_exact_budget(out, ["adam"], trials=3, epochs=1)
    with sqlite3.connect(out / "study.db") as con:
        pids = {json.loads(v)["pid"] for (v,) in con.execute(
            "select value_json from trial_user_attributes where key = ?", (WORKER,))}
    assert os.getpid() not in pids and len(pids) >= 1


def test_worker_environment_and_arguments():
    cores = threads_per_job(1)
    assert worker_env(1, 2, [])["OMP_NUM_THREADS"] == str(max(1, cores // 2))
    assert [worker_env(i, 4, ["0", "1"])["CUDA_VISIBLE_DEVICES"] for i in range(4)] == ["0", "1", "0", "1"]
    assert [worker_env(i, 2, ["0", "1", "2", "3"], 2)["CUDA_VISIBLE_DEVICES"] for i in range(2)] == ["0,1", "2,3"]
    assert worker_env(0, 2, []).get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")  # no GPUs
    values = {"optimizers": "sgd,adam", "trials": 7, "sampler": "tpe", "space_items": ("lr=1e-4:1e-2:log",),
              "prune": True, "out": Path("x"), "set_values": ("lr=0.1", "adam.eps=1e-6"), "epochs": None,
              "holdout": 0.2, "amp": "bf16", "quiet": False, "jobs": 2}
    args = option_args(tune, values)
    assert "--epochs" not in args and "--quiet" not in args  # defaults are left out
    parsed = tune.make_context("tune", args).params
    assert {k: parsed[k] for k in values if k not in ("epochs", "quiet")} == \
        {k: v for k, v in values.items() if k not in ("epochs", "quiet")}


# -- the report and the final runs -------------------------------------------------------------

def test_final_runs_report_the_tuned_setting_and_the_preset_on_the_test_split(tmp_path):
    out = tmp_path / "t"
    result = CliRunner().invoke(main, ["tune", "--optimizers", "adam", "--trials", "2", "--final-seeds", "2",
                                       "--seed", "5", *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = read_json(out / "tune.json")
    (adam,) = report["optimizers"]
    assert adam["trials_done"] == 2 and adam["preset"]["settings"]["lr"] == 0.001
    best_lr = adam["best_settings"]["lr"]
    (tuned_dir,) = (out / "final" / "tuned" / "adam").iterdir()  # one comparison per optimizer and setting
    (preset_dir,) = (out / "final" / "preset" / "adam").iterdir()
    tuned = read_json(tuned_dir / "comparison.json")
    assert tuned["seeds"] == [6, 7] and tuned["settings"]["adam"]["hyperparams"]["lr"] == best_lr
    assert read_json(preset_dir / "comparison.json")["settings"]["adam"]["hyperparams"]["lr"] == 0.001
    for key in ("tuned", "preset"):
        assert adam["test"][key]["n"] == 2 and adam["test"][key]["ci_low"] is not None
    gap = adam["test"]["gap"]
    assert gap["pairs"] == 2 and gap["mean"] == pytest.approx(adam["test"]["preset"]["mean"]
                                                              - adam["test"]["tuned"]["mean"])
    assert gap["ci_low"] <= gap["mean"] <= gap["ci_high"] or gap["ci_low"] == gap["ci_high"] == gap["mean"]
    markdown = (out / "tune.md").read_text()
    assert "preset - tuned (test)" in markdown and "Tuning overhead" in markdown
    assert (out / "lr_sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["overhead"]["trials"] == 3 and 0 <= report["overhead"]["fraction"] < 1


def test_tune_help_does_not_import_torch_or_optuna():
    code = ("import sys\nfrom mtbench.cli import main\ntry:\n    main(['tune', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint('torch' in sys.modules, 'optuna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "False False", out.stdout + out.stderr


def test_a_tune_directory_with_other_settings_is_refused(tmp_path, registry):
    tune_here(tmp_path, presets_of(registry, "adam"), fake_train(), trials=1)
    with pytest.raises(ConfigError, match=r"holds a tune with other settings \(epochs: 2 now, 1 there\)"):
        open_directory(plan_tune(presets_of(registry, "adam"), trials=1, options={**TINY_OPTIONS, "epochs": 2},
                                 out=tmp_path / "tune"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"other exists and is not a tune directory"):
        open_directory(plan_tune(presets_of(registry, "adam"), trials=1, out=tmp_path / "other"))
