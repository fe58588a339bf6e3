"""The tuned weighted sum: its search space on the simplex (mtbench.tuning.simplex) and the report's
baseline verdict against it (mtbench.report.baseline)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from mtbench.errors import ConfigError
from mtbench.report.baseline import against_tuned, baseline_sentences, front_against_tuned, tuned_label
from mtbench.report.stats import compare_to_best, holm
from mtbench.tuning.simplex import (
    quantiles_of, simplex_keys, simplex_space, split_params, weights_of, weights_text,
)

# ---------------------------------------------------------------------------------------------
# The search space


@pytest.mark.parametrize("t", [2, 3, 5, 8])
def test_stick_breaking_is_uniform_on_the_simplex(t):
    """Uniform quantiles give Dirichlet(1, ..., 1): every weight's marginal is Beta(1, T - 1)."""
    rng = np.random.default_rng(0)
    w = np.array([weights_of(q) for q in rng.random((4000, t - 1))])
    assert np.allclose(w.sum(axis=1), 1.0) and (w >= 0).all()
    for k in range(t):
        assert sps.kstest(w[:, k], sps.beta(1, t - 1).cdf).pvalue > 1e-3, k
    assert np.allclose(w.mean(axis=0), 1 / t, atol=0.02)


def test_two_tasks_sweep_the_first_share_evenly():
    assert weights_of([0.0]) == (0.0, 1.0)
    assert weights_of([0.25]) == (0.25, 0.75)
    assert weights_of([1.0]) == (1.0, 0.0)


@pytest.mark.parametrize("weights", [(0.2, 0.3, 0.5), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (2, 1, 1, 4), (0.5, 0.5)])
def test_quantiles_round_trip(weights):
    q = quantiles_of(weights)
    assert all(0 <= x <= 1 for x in q)
    assert np.allclose(weights_of(q), np.array(weights) / sum(weights))


def test_space_keys_and_errors():
    assert simplex_keys(3) == ["task_weights.q1", "task_weights.q2"]
    assert all((d.low, d.high, d.log) == (0.0, 1.0, False) for d in simplex_space(4).values())
    with pytest.raises(ConfigError, match="2 or more tasks"):
        simplex_keys(1)
    with pytest.raises(ConfigError, match=r"not in \[0, 1\]"):
        weights_of([1.5])


def test_split_params_makes_the_run_task_weights():
    settings, weights = split_params({"lr": 0.01, "task_weights.q2": 1.0, "task_weights.q1": 0.75})
    assert settings == {"lr": 0.01}
    assert weights == pytest.approx((0.5, 0.5, 0.0))
    assert weights_text(weights) == "0.5,0.5,0.0"
    assert split_params({"lr": 0.01}) == ({"lr": 0.01}, None)
    with pytest.raises(ConfigError, match="not task_weights.q1"):
        split_params({"task_weights.q2": 0.3})
    assert weights_text(weights_of([0.7])) == "0.7,0.3"  # not 0.30000000000000004


# ---------------------------------------------------------------------------------------------
# The baseline verdict


SEEDS = range(8)


def _row(offset, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return {s: 0.5 + offset + noise * rng.standard_normal() for s in SEEDS}


def test_rows_that_beat_tie_with_and_lose_to_the_tuned_sum():
    tuned = _row(0.0, 0.01, seed=1)
    values = {"adam@tuned": tuned,
              "adam+pcgrad": {s: v + 0.05 + 0.001 * (s % 3) for s, v in tuned.items()},
              "adam+mgda": {s: v - 0.04 + 0.002 * (s % 2) for s, v in tuned.items()},
              "adam+cagrad": {s: v + (0.001 if s % 2 else -0.001) for s, v in tuned.items()}}
    result = against_tuned(values, "adam@tuned")
    assert set(result) == {"adam+pcgrad", "adam+mgda", "adam+cagrad"}
    assert result["adam+pcgrad"]["outcome"] == "beats"
    assert result["adam+pcgrad"]["diff_mean"] == pytest.approx(0.05 + 0.001 * np.mean([s % 3 for s in SEEDS]))
    assert 0 < result["adam+pcgrad"]["diff_ci_low"] < result["adam+pcgrad"]["diff_ci_high"]
    assert result["adam+mgda"]["outcome"] == "worse"
    assert result["adam+mgda"]["diff_ci_high"] < 0
    assert result["adam+cagrad"]["outcome"] == "tied"
    assert all(r["n_pairs"] == 8 for r in result.values())
    # The p-values are those of the paired test against the tuned row alone, Holm-corrected together.
    ps = [result[n]["p_value"] for n in result]
    assert [result[n]["p_holm"] for n in result] == pytest.approx(holm(ps))
    alone = compare_to_best({"adam@tuned": tuned, "adam+mgda": values["adam+mgda"]})
    assert result["adam+mgda"]["p_value"] == alone["adam+mgda"]["p_value"]


def test_holm_turns_a_lone_significant_difference_into_a_tie():
    """Each row alone would beat the tuned sum at 0.05; corrected over the rows, not all do."""
    tuned = {s: 0.5 for s in SEEDS}
    rng = np.random.default_rng(3)
    values = {"t@tuned": tuned}
    for i in range(4):
        values[f"m{i}"] = {s: 0.5 + 0.01 + 0.02 * rng.standard_normal() for s in SEEDS}
    result = against_tuned(values, "t@tuned")
    raw = [r["p_value"] for r in result.values()]
    corrected = [r["p_holm"] for r in result.values()]
    assert corrected == pytest.approx(holm(raw))
    for r in result.values():
        assert r["outcome"] == ("tied" if r["p_holm"] >= 0.05 else ("beats" if r["diff_mean"] > 0 else "worse"))
    assert any(p < 0.05 <= q for p, q in zip(raw, corrected)) or all(p >= 0.05 for p in raw)


def test_rows_without_enough_shared_seeds_are_not_tested():
    values = {"a@tuned": {0: 0.5, 1: 0.6}, "b": {0: 0.7, 5: 0.8}, "c": {0: None, 1: None}}
    result = against_tuned(values, "a@tuned")
    assert result["b"]["outcome"] is None and result["b"]["n_pairs"] == 1
    assert result["b"]["diff_mean"] == pytest.approx(0.2)
    assert result["c"]["outcome"] is None and result["c"]["n_pairs"] == 0
    with pytest.raises(KeyError):
        against_tuned(values, "z@tuned")


def test_tuned_label_and_the_sweeps_front():
    assert tuned_label(["adam", "adam@w0.3", "adam@tuned", "adam+pcgrad"]) == "adam@tuned"
    assert tuned_label(["adam"]) is None
    sweep = {"adam@w0.2": (0.30, 0.60), "adam": (0.50, 0.50), "adam@w0.8": (0.70, 0.20)}
    front, dominated = front_against_tuned(sweep, (0.45, 0.45))
    assert front == ["adam@w0.2", "adam", "adam@w0.8"] and dominated is True
    assert front_against_tuned(sweep, (0.52, 0.48))[1] is False
    assert front_against_tuned(sweep, (None, 0.48))[1] is None
    assert front_against_tuned({}, (0.5, 0.5)) == ([], None)


def test_sentences_state_the_verdict():
    result = {"adam+pcgrad": {"diff_mean": 0.02, "diff_ci_low": 0.01, "diff_ci_high": 0.03, "outcome": "beats"},
              "adam+mgda": {"diff_mean": -0.001, "diff_ci_low": -0.01, "diff_ci_high": 0.008, "outcome": "tied"}}
    lines = baseline_sentences(result, "adam@tuned", "joint", front=["adam@w0.2"], dominated=False)
    assert "beat it: adam+pcgrad (+0.020" in lines[0] and "tied with it: adam+mgda" in lines[0]
    assert "No row beats" not in " ".join(lines)
    assert "does not dominate the tuned weighted sum adam@tuned" in lines[-1]
    result["adam+pcgrad"]["outcome"] = "tied"
    lines = baseline_sentences(result, "adam@tuned", "joint", front=["adam@w0.2"], dominated=True)
    assert "No row beats the tuned weighted sum adam@tuned." in lines
    assert "dominates the tuned weighted sum" in lines[-1]
    untested = {"adam+uw": {"diff_mean": 0.01, "diff_ci_low": None, "diff_ci_high": None, "outcome": None}}
    lines = baseline_sentences(untested, "adam@tuned", "joint")
    assert lines == ["Against the tuned weighted sum adam@tuned (joint score, paired by seed, Holm's correction "
                     "over 1 row at 0.05): share fewer than 2 seeds with it, not tested: adam+uw."]


# ---------------------------------------------------------------------------------------------
# `mtbench tune --search-task-weights`


TINY_OPTIONS = {"image_size": 32, "limit_train": 16, "limit_val": 8, "epochs": 1, "batch_size": 4}


@pytest.fixture(scope="module")
def registry():
    from mtbench.plugins import load_registry

    return load_registry()


def _fake_train(seen):
    def train(config, preset, *, method, workload, resume, progress, echo, on_epoch):
        seen.append(config)
        w = config.task_weights[0]
        summary = {"status": "running", "epochs": 1, "steps": 3, "tasks": list(config.tasks),
                   "holdout_top1": 0.2 + 0.1 * w, "holdout_miou": 0.3, "final_top1": 0.5, "final_miou": 0.5}
        on_epoch(summary)
        return {**summary, "status": "completed"}

    return train


def test_a_weight_tune_runs_each_point_as_the_runs_task_weights(tmp_path, registry):
    from mtbench.tuning import Tuner, open_directory, open_studies, plan_tune
    from mtbench.tuning.study import quiet_optuna

    seen = []
    with quiet_optuna():
        plan = plan_tune({"adam": registry.get("adam")}, trials=3, sampler="grid", options=TINY_OPTIONS,
                         out=tmp_path / "tune", search_task_weights=2)
        assert plan.spaces == {"adam": simplex_space(2)}
        open_directory(plan)
        studies = open_studies(plan)
        Tuner(plan.out, plan.presets, studies, plan.spaces, plan.options, plan.overrides, "joint",
              _fake_train(seen), echo=lambda line: None).work()
    # The preset's trial at the comparison's weights (equal), then the grid's three points, corners included.
    assert sorted(c.task_weights for c in seen) == [(0.0, 1.0), (0.5, 0.5), (0.5, 0.5), (1.0, 0.0)]
    assert {c.hyperparams["lr"] for c in seen} == {registry.get("adam").defaults["lr"]}
    ts = studies["adam"]
    best = max((t for t in ts.all_trials() if t.value is not None), key=lambda t: t.value)
    assert best.params == {"task_weights.q1": 1.0}
    assert best.user_attrs["result"]["settings"]["task_weights"] == [1.0, 0.0]


@pytest.mark.parametrize("kwargs, message", [
    ({"space_items": ["lr=1e-4:1e-2:log"]}, "searches the task weights alone"),
    ({"options": {**TINY_OPTIONS, "task_weights": "0.3,0.7"}}, "--task-weights 0.3,0.7 fixes the weights"),
    ({"method": "pcgrad"}, "--method pcgrad weighs the tasks itself"),
])
def test_a_weight_tune_refuses_what_does_not_go_with_it(tmp_path, registry, kwargs, message):
    from mtbench.tuning import plan_tune

    if "method" in kwargs:
        kwargs = {"method": registry.method_preset(kwargs["method"])}
    with pytest.raises(ConfigError, match=message):
        plan_tune({"adam": registry.get("adam")}, trials=2, search_task_weights=2, out=tmp_path / "t",
                  **{"options": TINY_OPTIONS, **kwargs})


# ---------------------------------------------------------------------------------------------
# `mtbench compare --tuned-scalarization TUNE_DIR`


def _tune_dir(tmp_path, space, weights=(0.3, 0.7), best=True):
    import json

    out = tmp_path / "tune"
    (out / "trials" / "adam-t2").mkdir(parents=True)
    (out / "trials" / "adam-t2" / "config.json").write_text(json.dumps({"task_weights": list(weights)}))
    record = {"objective": "joint", "optimizers": [{
        "optimizer": "adam", "space": space, "trials_done": 3,
        "best": {"name": "adam-t2", "value": 0.4375} if best else None}]}
    (out / "tune.json").write_text(json.dumps(record))
    return out


def test_the_tuned_row_takes_the_best_trials_weights(tmp_path):
    from mtbench.compare.tuned import tuned_row

    out = _tune_dir(tmp_path, {"task_weights.q1": {"low": 0.0, "high": 1.0, "log": False}})
    row, note = tuned_row(out, ("cls", "seg"), ["sgd", "adam"])
    assert (row.name, row.optimizer, row.method, row.task_weights, row.role) == (
        "adam@tuned", "adam", "sum", (0.3, 0.7), "row")
    assert "task weights 0.3,0.7, the best of 3 trials" in note and "holdout joint 0.4375" in note
    assert row.options()["task_weights"] == "0.3,0.7"


@pytest.mark.parametrize("space, weights, best, message", [
    ({"lr": {"low": 1e-4, "high": 1e-2, "log": True}}, (0.3, 0.7), True, "searched adam's lr, not the task weights"),
    ({"task_weights.q1": {}}, (0.3, 0.7), False, "no trial of adam completed"),
    ({"task_weights.q1": {}, "task_weights.q2": {}}, (0.2, 0.3, 0.5), True, "weighed 3 tasks"),
])
def test_a_tune_dir_that_cannot_make_the_row_is_one_line(tmp_path, space, weights, best, message):
    from mtbench.compare.tuned import tuned_row

    with pytest.raises(ConfigError, match=message):
        tuned_row(_tune_dir(tmp_path, space, weights, best), ("cls", "seg"))
    with pytest.raises(ConfigError, match="no finished tune there"):
        tuned_row(tmp_path, ("cls", "seg"))


TINY = ["--image-size", "32", "--limit-train", "16", "--limit-val", "8", "--epochs", "1", "--batch-size", "4", "-q"]


@pytest.mark.slow
def test_tune_the_weighted_sum_then_compare_against_it(tmp_path):
    """End to end on tiny runs: a weight tune, then a comparison with its tuned weighted sum as a row and
    the report's verdict against it."""
    import json

    from click.testing import CliRunner

    from mtbench.cli import main

    tune_dir, cmp_dir = tmp_path / "tune", tmp_path / "cmp"
    result = CliRunner().invoke(main, ["tune", "--optimizers", "adam", "--search-task-weights", "--trials", "2",
                                       "--sampler", "grid", *TINY, "--out", str(tune_dir)])
    assert result.exit_code == 0, result.output
    trials = sorted(json.loads((p / "config.json").read_text())["task_weights"]
                    for p in (tune_dir / "trials").iterdir())
    assert trials == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]  # the preset's equal weights, the grid's two corners
    tuned = json.loads((tune_dir / "tune.json").read_text())["optimizers"][0]
    best = tuned["best"]
    assert tuned["best_settings"] == {"task_weights": best["settings"]["task_weights"]}  # tune.md's best setting
    result = CliRunner().invoke(main, ["compare", "--optimizers", "adam", "--methods", "sum,uw", "--seeds", "2",
                                       "--tuned-scalarization", str(tune_dir), *TINY, "--out", str(cmp_dir)])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads((cmp_dir / "comparison.json").read_text())["rows"]}
    assert set(rows) == {"adam", "adam+uw", "adam@tuned"}
    assert rows["adam@tuned"]["task_weights"] == best["settings"]["task_weights"]
    assert rows["adam@tuned"]["role"] == "row" and rows["adam@tuned"]["method"] == "sum"
    report = json.loads((cmp_dir / "report.json").read_text())
    baseline = report["tuned_baseline"]
    assert baseline["row"] == "adam@tuned" and baseline["metric"] == "joint"
    assert set(baseline["rows"]) == {"adam", "adam+uw"}
    for r in baseline["rows"].values():
        assert r["n_pairs"] == 2 and r["outcome"] in ("beats", "tied", "worse")
        assert r["p_holm"] >= r["p_value"]
    by_label = {r["label"]: r for r in report["rows"]}
    assert by_label["adam+uw"]["vs_tuned"] == baseline["rows"]["adam+uw"] and by_label["adam@tuned"]["vs_tuned"] is None
    assert any(line.startswith("Against the tuned weighted sum adam@tuned") for line in report["verdict"])
    assert "Against the tuned weighted sum adam@tuned" in (cmp_dir / "report.md").read_text()


def _result_row(label, role, optimizer, method, per_seed):
    from types import SimpleNamespace

    from mtbench.report.stats import summarize

    metrics = {m: summarize(per_seed[m].values()) for m in ("top1", "miou", "joint")}
    group = SimpleNamespace(optimizer=optimizer, spec=SimpleNamespace(method=method))
    return SimpleNamespace(label=label, role=role, group=group, per_seed=per_seed, metrics=metrics)


def _figures(top1, miou):
    return {"top1": dict(enumerate(top1)), "miou": dict(enumerate(miou)),
            "joint": {s: (a + b) / 2 for s, (a, b) in enumerate(zip(top1, miou))}}


def test_a_reports_rows_are_held_against_its_tuned_row():
    from mtbench.report.baseline import tuned_baseline

    rows = [_result_row("adam", "row", "adam", "sum", _figures([0.40, 0.42, 0.41], [0.30, 0.31, 0.30])),
            _result_row("adam+uw", "row", "adam", "uw", _figures([0.50, 0.53, 0.51], [0.40, 0.42, 0.41])),
            _result_row("adam@tuned", "row", "adam", "sum", _figures([0.45, 0.47, 0.46], [0.33, 0.35, 0.34])),
            _result_row("adam@w0.9", "sweep", "adam", "sum", _figures([0.46, 0.48, 0.47], [0.36, 0.36, 0.36]))]
    record, lines = tuned_baseline(rows, "joint")
    assert record["row"] == "adam@tuned" and set(record["rows"]) == {"adam", "adam+uw"}
    assert record["rows"]["adam+uw"]["diff_mean"] == pytest.approx(0.185 / 3)
    # The front is the sweep's points and the plain sum row, never the tuned row itself: w0.9 dominates it.
    assert record["front"] == ["adam@w0.9"] and record["front_dominates"] is True
    assert lines[0].startswith("Against the tuned weighted sum adam@tuned (joint score")
    assert "dominates the tuned weighted sum adam@tuned" in lines[-1]
    # A tuned point the sweep does not dominate is still held against the front, not put on it.
    rows[3] = _result_row("adam@w0.9", "sweep", "adam", "sum", _figures([0.43, 0.43, 0.43], [0.37, 0.37, 0.37]))
    record, lines = tuned_baseline(rows, "joint")
    assert record["front"] == ["adam@w0.9"] and record["front_dominates"] is False
    assert tuned_baseline(rows[:2], "joint") == (None, [])
