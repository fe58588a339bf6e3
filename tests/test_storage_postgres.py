"""`mtbench tune --storage postgresql://...` against a real PostgreSQL server (tests/pgserver.py): workers
that make their first contact with a fresh database at the same instant, and a tune spread over workers.

Skips, saying why, only where no PostgreSQL server binary is installed.
"""

import multiprocessing
import os
import traceback

import optuna
import pytest
from click.testing import CliRunner

from mtbench.cli import main
from mtbench.errors import ConfigError
from mtbench.plugins import load_registry
from mtbench.tuning import open_directory, open_studies, plan_tune
from mtbench.tuning.study import PRESET, SEARCH, quiet_optuna, slots
from pgserver import postgres_server, server_bin

pytestmark = pytest.mark.skipif(server_bin() is None, reason="no PostgreSQL server binaries (initdb, pg_ctl): "
                                "`apt-get install postgresql` installs them")

TINY = ["--image-size", "32", "--limit-train", "16", "--limit-val", "8", "--epochs", "1", "--batch-size", "4", "-q"]
WORKERS = 6


@pytest.fixture
def database(tmp_path):
    with postgres_server(tmp_path / "pg") as url:
        yield url


def _plan(tmp_path, url, epsilons):
    """One worker's tune plan per value of Adam's eps, each with its own directory, all on ``url``."""
    registry = load_registry()
    presets = {name: registry.get(name) for name in ("sgd", "adam")}
    return [plan_tune(presets, trials=3, options={"image_size": 32}, set_items=[f"adam.eps={eps}"],
                      out=tmp_path / f"w{i}", storage=url, study="shared") for i, eps in enumerate(epsilons)]


def _first_contact(barrier, plan):
    """One worker's first contact: open the storage and the studies, all workers at once; what went wrong
    is left in the worker's directory."""
    report = plan.out / "error.txt"
    try:
        with quiet_optuna():
            open_directory(plan)
            barrier.wait(timeout=60)
            open_studies(plan)
    except ConfigError as exc:
        report.write_text(f"ConfigError: {exc}")
        os._exit(2)
    except BaseException:
        report.write_text(traceback.format_exc())
        os._exit(1)
    os._exit(0)


def _start_together(tmp_path, url, epsilons):
    """Start one worker per value of Adam's eps, meeting at a barrier before their first contact; returns
    their exit codes and what they reported."""
    plans = _plan(tmp_path, url, epsilons)
    context = multiprocessing.get_context("fork")  # a barrier, and the workers ready to go at once
    barrier = context.Barrier(len(plans))
    workers = [context.Process(target=_first_contact, args=(barrier, plan)) for plan in plans]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    for w in workers:
        if w.is_alive():  # hung: its exit code stays None and fails the test
            w.kill()
            w.join()
    codes = [w.exitcode for w in workers]
    return codes, [(plan.out / "error.txt").read_text() for plan, code in zip(plans, codes) if code]


def _studies(url):
    storage = optuna.storages.RDBStorage(url)
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=storage)
            for s in optuna.get_all_study_summaries(storage)}


def test_workers_making_first_contact_at_once_make_one_set_of_studies(tmp_path, database):
    codes, reports = _start_together(tmp_path, database, [1e-8] * WORKERS)
    assert codes == [0] * WORKERS, "\n".join(reports)
    studies = _studies(database)
    assert sorted(studies) == ["shared.adam", "shared.sgd"]
    for study in studies.values():
        table = slots(study.get_trials(deepcopy=False))
        assert sorted(table) == [(PRESET, 0)] + [(SEARCH, i) for i in range(3)]
        assert all(s.state == "waiting" for s in table.values())


def test_workers_started_at_once_with_other_settings_are_turned_away(tmp_path, database):
    # Optuna drops a study attribute that another worker wrote first without a word; mtbench checks its
    # record under the storage's lock, so the settings that came second are refused, never mixed in.
    epsilons = [1e-8, 1e-7] * (WORKERS // 2)
    codes, reports = _start_together(tmp_path, database, epsilons)
    assert sorted(codes) == [0] * (WORKERS // 2) + [2] * (WORKERS // 2), "\n".join(reports)
    assert all("'shared.adam' was made with other settings" in r for r in reports), reports
    kept = _studies(database)["shared.adam"].user_attrs["mtbench"]["settings"]["adam"]["hyperparams"]["eps"]
    assert {eps for eps, code in zip(epsilons, codes) if code == 0} == {kept}


def test_a_tune_with_two_jobs_on_postgres_finishes_exactly_the_budget(tmp_path, database):
    out = tmp_path / "t"
    result = CliRunner().invoke(main, ["tune", "--optimizers", "adam", "--trials", "2", "--jobs", "2", *TINY,
                                       "--storage", database, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not (out / "study.db").exists()
    study = _studies(database)
    assert list(study) == [next(iter(study))] and next(iter(study)).endswith(".adam")
    trials = next(iter(study.values())).get_trials(deepcopy=False)
    table = slots(trials)
    assert sorted(table) == [(PRESET, 0), (SEARCH, 0), (SEARCH, 1)]
    assert all(s.state == "done" and s.trial.state.name == "COMPLETE" for s in table.values())
    assert sorted(p.name for p in (out / "trials").iterdir()) == sorted(f"adam-t{s.trial.number}"
                                                                        for s in table.values())
