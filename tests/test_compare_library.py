"""A comparison as a library call: run_comparison(ComparisonSpec) does what `mtbench compare` does, and the
report it writes is the one `mtbench report` rebuilds from the directory alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakeruns import write_run
from mtbench.cli import main
from mtbench.compare import ComparisonInterrupted, ComparisonSpec, ReportOptions, run_comparison
from mtbench.locks import LOCK_FILE
from mtbench.plugins import load_registry
from mtbench.report.comparison import COMPARISON_FILE, run_dir
from mtbench.report.rows import RowSpec

CURVES = {"sgd": [(0.3, 0.2), (0.6, 0.35)], "adam": [(0.6, 0.3), (0.7, 0.4)]}


@pytest.fixture(scope="module")
def registry():
    return load_registry(environ={})


def fake_train(calls: list):
    def train(config, preset, *, method=None, workload=None, resume=False, progress=True, echo=print):
        calls.append((config.optimizer, config.seed, dict(config.hyperparams)))
        write_run(config.run_dir, optimizer=config.optimizer, seed=config.seed, curve=CURVES[config.optimizer],
                  holdout_curve=CURVES[config.optimizer], init_sha=f"init-{config.seed}",
                  hyperparams=config.hyperparams)
        return json.loads((Path(config.run_dir) / "summary.json").read_text())

    return train


def test_a_comparison_is_one_library_call_and_its_report_is_what_report_rebuilds(tmp_path, registry):
    out, calls, lines = tmp_path / "cmp", [], []
    spec = ComparisonSpec((RowSpec.of("adam"), RowSpec.of("sgd")), (0, 1), {"epochs": 2}, ("adam.lr=0.003",),
                          out=out, progress=False, report=ReportOptions(primary="miou"))
    result = run_comparison(spec, registry, echo=lines.append, train_fn=fake_train(calls))

    assert (result.out, result.resumed, result.failures()) == (out, False, None)
    assert [(o.run.name, o.run.seed, o.status) for o in result.outcomes] == [
        ("adam", 0, "completed"), ("sgd", 0, "completed"), ("adam", 1, "completed"), ("sgd", 1, "completed")]
    assert [(name, seed, hp.get("lr")) for name, seed, hp in calls] == [
        ("adam", 0, 0.003), ("sgd", 0, 0.01), ("adam", 1, 0.003), ("sgd", 1, 0.01)]  # --set adam.lr: adam alone
    assert all(run_dir(out, name, seed).is_dir() for name in ("adam", "sgd") for seed in (0, 1))
    record = json.loads((out / COMPARISON_FILE).read_text())
    assert [r["name"] for r in record["rows"]] == ["adam", "sgd"] and record["seeds"] == [0, 1]
    assert result.report.primary == "miou" and [r.label for r in result.report.rows] == ["adam", "sgd"]
    assert {f.name for f in result.files} >= {"report.md", "report.csv", "report.json", "final.png"}
    assert not (out / LOCK_FILE).exists()  # released once the report is written
    assert lines[0] == f"comparison directory: {out}" and "2 rows x 2 seeds (0, 1) = 4 runs: adam, sgd" in lines

    written = (out / "report.json").read_text()
    rebuilt = CliRunner().invoke(main, ["report", str(out), "--primary", "miou"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (out / "report.json").read_text() == written

    again = run_comparison(spec, registry, echo=lines.append, train_fn=fake_train(calls))
    assert again.resumed and {o.status for o in again.outcomes} == {"skipped"} and len(calls) == 4


def test_an_interrupted_comparison_names_the_directory_that_resumes_it(tmp_path, registry, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def interrupted(config, preset, **kwargs):
        raise KeyboardInterrupt

    spec = ComparisonSpec((RowSpec.of("adam"),), (0,), {"epochs": 1}, progress=False)
    with pytest.raises(ComparisonInterrupted) as stop:
        run_comparison(spec, registry, echo=lambda line: None, train_fn=interrupted)
    assert stop.value.out.parent == Path("comparisons") and (stop.value.out / COMPARISON_FILE).is_file()
    assert not (stop.value.out / LOCK_FILE).exists()


def test_a_spec_without_rows_or_seeds_is_refused(registry):
    from mtbench.errors import ConfigError

    with pytest.raises(ConfigError, match="at least one row and one seed"):
        run_comparison(ComparisonSpec((), (0,), {}), registry)


def test_rows_train_the_workloads_own_tasks(registry):
    from mtbench.compare import plan_rows
    from mtbench.errors import ConfigError

    adam = {"adam": registry.get("adam")}
    tasks = registry.workload("multidigits").task_names
    rows, _ = plan_rows(adam, ["sum"], (0.3,), registry.get("sgd"), None, tasks)
    assert [(r.name, r.tasks, r.role) for r in rows] == [
        ("adam", ("left", "right"), "row"), ("adam@w0.3", ("left", "right"), "sweep"),
        ("sgd[left]", ("left",), "baseline"), ("sgd[right]", ("right",), "baseline")]
    with pytest.raises(ConfigError, match=r"weighs two tasks \(w, 1-w\); this workload has 3 \(seg, depth, normal\)"):
        plan_rows(adam, ["sum"], (0.3,), None, None, registry.workload("nyuv2").task_names)


def test_a_comparison_runs_on_the_workload_its_spec_names(tmp_path, registry):
    seen = []

    def train(config, preset, *, workload=None, **kwargs):
        seen.append((config.workload, config.tasks, config.task_weights, workload.name))
        raise KeyboardInterrupt  # the plan is what this test reads

    rows = (RowSpec.of("adam", all_tasks=("left", "right")), RowSpec.of("sgd", None, (1.0, 0.0), ("left",)))
    spec = ComparisonSpec(rows, (0,), {"epochs": 1}, workload="multidigits", out=tmp_path / "cmp", progress=False)
    with pytest.raises(ComparisonInterrupted):
        run_comparison(spec, registry, echo=lambda line: None, train_fn=train)
    assert seen == [("multidigits", ("left", "right"), (0.5, 0.5), "multidigits")]
    record = json.loads((tmp_path / "cmp" / COMPARISON_FILE).read_text())
    assert {name: s["workload"] for name, s in record["settings"].items()} == {"adam": "multidigits",
                                                                              "sgd[left]": "multidigits"}
    assert record["settings"]["sgd[left]"]["tasks"] == ["left"]
    with pytest.raises(Exception, match="unknown workload 'multidigit'; did you mean 'multidigits'"):
        run_comparison(ComparisonSpec(rows, (0,), {}, workload="multidigit"), registry)
