"""The verdict's statistics, checked against scipy on known samples and against hand-computed values."""

import math
import time

import numpy as np
import pytest
from scipy import stats as sps

from mtbench.errors import ConfigError, DataError
from mtbench.report.fronts import dominated_by_front, pareto_front, performance_profile
from mtbench.report.stats import compare_to_best, delta_m, holm, seeds_needed, summarize, summarize_time_to_target

SAMPLE = [0.61, 0.64, 0.58, 0.66, 0.63]


def rows_from(table, seeds=(0, 1, 2, 3, 4)):
    return {name: dict(zip(seeds, values)) for name, values in table.items()}


def power_at(n, effect, alpha=0.05):
    crit = sps.t.ppf(1 - alpha / 2, n - 1)
    return sps.nct.sf(crit, n - 1, effect * math.sqrt(n)) + sps.nct.cdf(-crit, n - 1, effect * math.sqrt(n))


# ---------------------------------------------------------------------------------------------
# summarize


def test_summarize_matches_scipy():
    s = summarize(SAMPLE)
    x = np.array(SAMPLE)
    low, high = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert s["n"] == 5 and s["dropped"] == 0
    assert s["mean"] == pytest.approx(x.mean())
    assert s["std"] == pytest.approx(x.std(ddof=1))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((low, high))


def test_summarize_hand_checked_interval():
    # mean 3, std sqrt(2.5), t(0.975, 4) = 2.776445: half width 2.776445 * sqrt(2.5 / 5) = 1.963243
    s = summarize([1, 2, 3, 4, 5])
    assert s["std"] == pytest.approx(math.sqrt(2.5))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((1.036757, 4.963243), abs=1e-6)


def test_summarize_interval_follows_the_confidence():
    s = summarize(SAMPLE, confidence=0.9)
    x = np.array(SAMPLE)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx(sps.t.interval(0.9, 4, loc=x.mean(), scale=sps.sem(x)))


@pytest.mark.parametrize("values, n, dropped, mean", [
    ([0.5], 1, 0, 0.5),
    ([None, math.nan, 0.5], 1, 2, 0.5),
    ([], 0, 0, None),
    ([None], 0, 1, None),
])
def test_summarize_without_spread_under_two_values(values, n, dropped, mean):
    s = summarize(values)
    assert (s["n"], s["dropped"], s["mean"]) == (n, dropped, mean)
    assert s["std"] is None and s["ci_low"] is None and s["ci_high"] is None


def test_summarize_drops_failed_runs_before_the_statistics():
    s = summarize(SAMPLE[:3] + [None, math.nan] + SAMPLE[3:])
    assert s["dropped"] == 2
    assert s == {**summarize(SAMPLE), "dropped": 2}


@pytest.mark.parametrize("values, mean", [
    ([1.0, math.inf, 2.0], math.inf),
    ([-math.inf, 1.0], -math.inf),
    ([math.inf, -math.inf], None),
])
def test_summarize_with_infinities_has_no_spread(values, mean):
    s = summarize(values)
    assert s["mean"] == mean and s["n"] == len(values)
    assert s["std"] is None and s["ci_low"] is None


@pytest.mark.parametrize("call, error, message", [
    (lambda: summarize([0.5, "0.6"]), DataError, r"values\[1\]: '0.6' is not a number"),
    (lambda: summarize([0.5, True]), DataError, r"True is not a number"),
    (lambda: summarize([0.5, 0.6], confidence=95), ConfigError, r"confidence .* between 0 and 1, got 95"),
    (lambda: summarize_time_to_target([10, -1]), DataError, r"time -1.0 is negative"),
])
def test_bad_values_are_one_line_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("values, median, reached, n, dropped", [
    ([100, 200, math.inf], 200.0, 2, 3, 0),
    ([100, math.inf], math.inf, 1, 2, 0),  # half missed: the median run did not reach it
    ([math.inf, math.inf], math.inf, 0, 2, 0),
    ([100, 300, None, math.nan], 200.0, 2, 2, 2),
    ([None], None, 0, 0, 1),
])
def test_time_to_target_is_a_median_and_a_count(values, median, reached, n, dropped):
    assert summarize_time_to_target(values) == {"median": median, "reached": reached, "n": n, "dropped": dropped}


# ---------------------------------------------------------------------------------------------
# Holm


def test_holm_hand_computed():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> raised to 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([0.02]) == [0.02]
    assert holm([]) == []


# ---------------------------------------------------------------------------------------------
# compare_to_best


def test_paired_differences_match_scipy():
    table = {"a": [0.60, 0.62, 0.59, 0.65, 0.61],
             "b": [0.63, 0.66, 0.60, 0.67, 0.65],
             "c": [0.58, 0.63, 0.55, 0.66, 0.60]}
    out = compare_to_best(rows_from(table))
    assert out["b"]["is_best"] and out["b"]["tied_with_best"] and out["b"]["rank"] == 1
    assert out["b"]["p_value"] is None and out["b"]["diff_mean"] == 0.0
    best = np.array(table["b"])
    for name in ("a", "c"):
        row = np.array(table[name])
        ref = sps.ttest_rel(row, best)
        ci = ref.confidence_interval(0.95)
        got = out[name]
        assert got["metric"] == pytest.approx(row.mean())
        assert got["diff_mean"] == pytest.approx((row - best).mean())
        assert got["diff_std"] == pytest.approx((row - best).std(ddof=1))
        assert (got["diff_ci_low"], got["diff_ci_high"]) == pytest.approx((ci.low, ci.high))
        assert got["p_t"] == pytest.approx(ref.pvalue) and got["p_value"] == got["p_t"]
        assert got["test"] == "paired t" and got["p_wilcoxon"] is None  # 5 pairs: too few for Wilcoxon
        assert got["n_pairs"] == 5
    assert [out[n]["p_holm"] for n in ("a", "c")] == pytest.approx(holm([out["a"]["p_t"], out["c"]["p_t"]]))


def test_wilcoxon_joins_from_six_pairs_and_the_larger_p_decides():
    rng = np.random.default_rng(3)
    base = rng.normal(0.6, 0.03, 8)
    table = {"best": base + 0.02 + rng.normal(0, 0.005, 8), "other": base + rng.normal(0, 0.005, 8)}
    out = compare_to_best(rows_from(table, seeds=range(8)))["other"]
    d = table["other"] - table["best"]
    assert out["test"] == "paired t + wilcoxon"
    assert out["p_wilcoxon"] == pytest.approx(sps.wilcoxon(d).pvalue)
    assert out["p_t"] == pytest.approx(sps.ttest_rel(table["other"], table["best"]).pvalue)
    assert out["p_value"] == max(out["p_t"], out["p_wilcoxon"])
    # six pairs: an exact Wilcoxon can reach p < 0.05; five cannot, so it is not run there
    six = compare_to_best(rows_from({k: v[:6] for k, v in table.items()}, seeds=range(6)))["other"]
    assert six["test"] == "paired t + wilcoxon"
    assert compare_to_best(rows_from({k: v[:5] for k, v in table.items()}))["other"]["p_wilcoxon"] is None


def test_planted_effect_one_row_clearly_better():
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0.6, 0.05, 5)  # shared by every row of a seed: what pairing removes
    table = {name: seed_effect + shift + rng.normal(0, 0.003, 5)
             for name, shift in (("sgd", 0.0), ("adam", 0.04), ("adamw", 0.01), ("rmsprop", -0.02))}
    out = compare_to_best(rows_from(table))
    assert out["adam"]["is_best"] and out["adam"]["rank"] == 1
    assert all(out[n]["tied_with_best"] is False for n in ("sgd", "adamw", "rmsprop"))
    assert [out[n]["rank"] for n in ("adamw", "sgd", "rmsprop")] == [2, 3, 4]


def test_identical_distributions_are_tied():
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0.6, 0.05, 5)
    table = {"adam": seed_effect + rng.normal(0, 0.01, 5), "adamw": seed_effect + rng.normal(0, 0.01, 5)}
    out = compare_to_best(rows_from(table))
    assert out["adam"]["tied_with_best"] is True and out["adamw"]["tied_with_best"] is True
    assert out["adam"]["rank"] == out["adamw"]["rank"] == 1


def test_zero_variance_differences_have_defined_p_values():
    best = [0.7, 0.6, 0.65, 0.71, 0.68]
    # best + 0.1 is not exactly a constant 0.1 apart in floats; scipy alone would give a spurious p
    table = {"best": [x + 0.1 for x in best], "same": [x + 0.1 for x in best], "lower": best}
    out = compare_to_best(rows_from(table))
    best_name = "best" if out["best"]["is_best"] else "same"
    twin = "same" if best_name == "best" else "best"
    assert out[twin]["p_value"] == 1.0 and out[twin]["tied_with_best"] is True and out[twin]["rank"] == 1
    assert out["lower"]["p_value"] == 0.0 and out["lower"]["tied_with_best"] is False
    assert out["lower"]["diff_mean"] == pytest.approx(-0.1)
    assert out["lower"]["diff_ci_low"] == out["lower"]["diff_ci_high"] == out["lower"]["diff_mean"]
    assert not any(isinstance(v, float) and math.isnan(v) for row in out.values() for v in row.values())


def test_lower_is_better_picks_the_smallest_mean():
    table = {"fast": [10.0, 12.0, 11.0], "slow": [20.0, 25.0, 21.0]}
    out = compare_to_best(rows_from(table, seeds=(1, 2, 3)), higher_is_better=False)
    assert out["fast"]["is_best"]
    assert out["slow"]["diff_mean"] == pytest.approx(11.0)  # row - best, in the metric's own units
    assert out["slow"]["rank"] == 2


def test_fewer_than_two_pairs_are_not_tested_but_ranked():
    out = compare_to_best({"a": {0: 0.6}, "b": {0: 0.7}, "c": {0: 0.5}})
    assert out["b"]["is_best"] and out["b"]["tied_with_best"] is True
    for name, rank in (("a", 2), ("c", 3)):
        assert out[name]["tied_with_best"] is None and out[name]["p_value"] is None
        assert out[name]["p_holm"] is None and out[name]["test"] is None
        assert out[name]["n_pairs"] == 1 and out[name]["rank"] == rank
    assert out["a"]["diff_mean"] == pytest.approx(-0.1)
    assert out["a"]["diff_ci_low"] is None


def test_failed_runs_leave_their_seed_out_of_the_pairs():
    table = {"a": {0: 0.60, 1: 0.62, 2: None, 3: 0.65, 4: 0.61},
             "b": {0: 0.63, 1: 0.66, 2: 0.60, 3: math.nan, 4: 0.65},
             "gone": {0: None, 1: None}}
    out = compare_to_best(table)
    assert out["b"]["is_best"] and out["a"]["n_pairs"] == 3
    # the best is chosen on the seeds both rows have (0, 1, 4), and the pairs are those seeds
    assert out["a"]["metric"] == pytest.approx(np.mean([0.60, 0.62, 0.61]))
    assert out["a"]["p_t"] == pytest.approx(sps.ttest_rel([0.60, 0.62, 0.61], [0.63, 0.66, 0.65]).pvalue)
    assert out["gone"]["metric"] is None and out["gone"]["rank"] is None and out["gone"]["n_pairs"] == 0


def test_ranks_share_rank_one_when_tied_then_compete():
    def row(offset, noise):
        return [0.6 + offset + e for e in noise]
    table = {"best": row(0.10, [0, 0.001, -0.001, 0.002, 0]),
             "noisy": row(0.09, [0.05, -0.06, 0.04, -0.05, 0.03]),   # close on average, very noisy: tied
             "x": row(0.0, [0, 0.001, 0, -0.001, 0.002]),
             "y": row(0.0, [0, 0.001, 0, -0.001, 0.002]),
             "z": row(-0.05, [0.001, 0, 0, 0.001, 0])}
    out = compare_to_best(rows_from(table))
    assert out["noisy"]["tied_with_best"] is True
    assert [out[n]["rank"] for n in ("best", "noisy", "x", "y", "z")] == [1, 1, 3, 3, 5]


@pytest.mark.parametrize("rows, error, message", [
    ({"a": {0: 0.5, 1: math.inf}}, DataError, r"row 'a' seed 1 is inf \(expected a finite value"),
    ({"a": {0: 0.5, 1: "x"}}, DataError, r"row 'a' seed 1: 'x' is not a number"),
])
def test_compare_to_best_rejects_bad_values(rows, error, message):
    with pytest.raises(error, match=message):
        compare_to_best(rows)


def test_compare_to_best_rejects_a_bad_alpha():
    with pytest.raises(ConfigError, match=r"alpha must be .* got 5"):
        compare_to_best({"a": {0: 0.5}}, alpha=5)


def test_compare_to_best_of_nothing_is_empty():
    assert compare_to_best({}) == {}


def test_compare_to_best_is_fast():
    rng = np.random.default_rng(2)
    metrics = [rows_from({f"opt{i}": rng.normal(0.6, 0.05, 5) for i in range(8)}) for _ in range(5)]
    compare_to_best(metrics[0])  # first call pays scipy's lazy set-up
    elapsed = []
    for _ in range(3):  # best of three: the machine is shared
        start = time.perf_counter()
        for rows in metrics:
            compare_to_best(rows)
        elapsed.append(time.perf_counter() - start)
    assert min(elapsed) < 0.1


# ---------------------------------------------------------------------------------------------
# seeds_needed


@pytest.mark.parametrize("effect, n", [(1.0, 10), (0.5, 34)])  # the paired t-test tables' values
def test_seeds_needed_hand_checked(effect, n):
    assert seeds_needed(diff_mean=effect * 0.02, diff_std=0.02) == n


@pytest.mark.parametrize("mean, std, alpha, power", [(0.01, 0.02, 0.05, 0.8), (-0.03, 0.02, 0.05, 0.9),
                                                     (0.005, 0.03, 0.0125, 0.8)])
def test_seeds_needed_is_the_smallest_n_with_the_power(mean, std, alpha, power):
    n = seeds_needed(diff_mean=mean, diff_std=std, alpha=alpha, power=power)
    assert power_at(n, abs(mean) / std, alpha) >= power > power_at(n - 1, abs(mean) / std, alpha)


def test_seeds_needed_from_differences():
    diffs = [-0.01, -0.03, 0.005, -0.02, -0.012]
    d = np.array(diffs)
    assert seeds_needed(diffs) == seeds_needed(diff_mean=d.mean(), diff_std=d.std(ddof=1))
    assert seeds_needed([None] + diffs) == seeds_needed(diffs)


@pytest.mark.parametrize("kwargs, expected", [
    ({"diffs": [0.01]}, None),                              # one pair: spread unknown
    ({"diffs": [0.0, 0.0, 0.0]}, None),                     # no difference to find
    ({"diff_mean": 0.02, "diff_std": 0.0}, 2),              # the same on every seed
    ({"diff_mean": 1e-4, "diff_std": 0.05}, None),          # beyond max_seeds
    ({"diff_mean": 0.01, "diff_std": 0.02, "max_seeds": 20}, None),
])
def test_seeds_needed_edge_cases(kwargs, expected):
    assert seeds_needed(**kwargs) == expected


@pytest.mark.parametrize("kwargs, error, message", [
    ({}, ConfigError, r"either the paired differences or diff_mean and diff_std"),
    ({"diffs": [0.1, 0.2], "diff_mean": 0.1}, ConfigError, r"either the paired differences"),
    ({"diff_mean": 0.1}, DataError, r"finite diff_std >= 0, got 0.1 and None"),
    ({"diff_mean": 0.1, "diff_std": -1}, DataError, r"got 0.1 and -1"),
    ({"diffs": [0.1, 0.2], "power": 1.5}, ConfigError, r"power must be .* got 1.5"),
    ({"diffs": [0.1, 0.2], "max_seeds": 1}, ConfigError, r"max_seeds must be an integer >= 2, got 1"),
])
def test_seeds_needed_rejects_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        seeds_needed(**kwargs)


# ---------------------------------------------------------------------------------------------
# delta_m


def test_delta_m_hand_computed_per_seed():
    # seed 0: top-1 +20 %, mIoU -25 % -> -2.5 %; seed 1: +10 %, +25 % -> +17.5 %
    metrics = {"top1": {0: 0.6, 1: 0.55, 2: None}, "miou": {0: 0.3, 1: 0.5, 2: 0.4}}
    out = delta_m(metrics, {"top1": 0.5, "miou": 0.4})
    assert out == pytest.approx({0: -2.5, 1: 17.5})  # seed 2 failed on one task: left out
    assert summarize(out.values())["mean"] == pytest.approx(7.5)


def test_delta_m_pairs_per_seed_baselines():
    metrics = {"top1": {0: 0.6, 1: 0.6}, "miou": {0: 0.4, 1: 0.4}}
    baseline = {"top1": {0: 0.5, 1: 0.6}, "miou": {0: 0.4, 1: 0.5}}
    assert delta_m(metrics, baseline) == pytest.approx({0: 10.0, 1: -10.0})


@pytest.mark.parametrize("metrics, baseline, message", [
    ({"top1": {0: 0.6}}, {"top1": 0.0}, r"baseline of task 'top1' is 0.0 \(expected a finite value > 0"),
    ({"top1": {0: 0.6}}, {"top1": {0: -0.1}}, r"baseline of task 'top1' seed 0 is -0.1"),
    ({"top1": {0: 0.6}}, {"miou": 0.4}, r"baseline has tasks \['miou'\] but the metrics have \['top1'\]"),
    ({}, {}, r"no tasks"),
])
def test_delta_m_rejects_bad_baselines(metrics, baseline, message):
    with pytest.raises(DataError, match=message):
        delta_m(metrics, baseline)


# ---------------------------------------------------------------------------------------------
# Pareto front


def test_pareto_front_hand_checked():
    points = [(1, 5), (2, 4), (2, 4), (1, 1), (3, 1), (0, 6), (2, 3), (None, 9), (math.nan, 1)]
    assert pareto_front(points) == [0, 1, 2, 4, 5]
    assert pareto_front([]) == []


def test_pareto_front_matches_brute_force():
    points = np.random.default_rng(4).integers(0, 6, size=(40, 2)).tolist()
    expected = [i for i, p in enumerate(points)
                if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)]
    assert pareto_front(points) == expected


@pytest.mark.parametrize("point, dominated", [
    ((1.5, 3.5), True),    # (2, 4) is better on both
    ((2.0, 3.0), True),    # equal on one, worse on the other
    ((1.5, 4.5), False),   # on the segment between two front points: beaten by neither point
    ((2.0, 4.0), False),   # a front point is not dominated by itself
    ((3.0, 0.5), False),
])
def test_dominated_by_front(point, dominated):
    assert dominated_by_front(point, [(1, 5), (2, 4)]) is dominated


def test_pareto_points_must_all_have_one_value_per_task():
    with pytest.raises(DataError, match=r"points\[1\]: \(1, 2, 3\) has 3 values \(expected one per task"):
        pareto_front([(1, 2), (1, 2, 3)])
    with pytest.raises(DataError, match=r"point \(None, 1\) has a missing value"):
        dominated_by_front((None, 1), [(1, 2)])


# ---------------------------------------------------------------------------------------------
# Performance profiles


def test_performance_profile_hand_checked():
    times = {"a": {"w1": 10, "w2": 30, "w3": math.inf},
             "b": {"w1": 20, "w2": 15, "w3": 40},
             "c": {"w1": 10, "w2": None}}  # failed on w2, never ran w3: both count as not reached
    out = performance_profile(times, taus=[1.0, 1.5, 2.0, 4.0])
    # best times 10, 15, 40 -> ratios a: 1, 2, inf; b: 2, 1, 1; c: 1, inf, inf
    assert out["a"]["fractions"] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert out["b"]["fractions"] == pytest.approx([2 / 3, 2 / 3, 1, 1])
    assert out["c"]["fractions"] == pytest.approx([1 / 3] * 4)
    # area: sum over workloads of (4 - ratio) for ratio <= 4, / 3 workloads, / (4 - 1)
    assert out["a"]["area"] == pytest.approx(5 / 9)
    assert out["b"]["area"] == pytest.approx(8 / 9)
    assert out["c"]["area"] == pytest.approx(1 / 3)


def test_performance_profile_area_is_the_integral_of_the_profile():
    rng = np.random.default_rng(5)
    times = {f"opt{i}": {f"w{j}": float(rng.uniform(1, 6)) for j in range(7)} for i in range(4)}
    grid = np.linspace(1, 4, 30001)
    out = performance_profile(times, taus=grid)
    for name, profile in out.items():
        assert profile["area"] == pytest.approx(np.trapezoid(profile["fractions"], grid) / 3, abs=1e-3)


def test_performance_profile_when_nobody_reaches_a_workload():
    out = performance_profile({"a": {"w1": math.inf, "w2": 5}, "b": {"w1": math.inf, "w2": 10}}, taus=[1, 2])
    assert out["a"]["fractions"] == [0.5, 0.5] and out["b"]["fractions"] == [0.0, 0.5]


@pytest.mark.parametrize("times, taus, error, message", [
    ({"a": {"w": 0}}, [1], DataError, r"'a' on 'w' took 0.0 \(expected a time > 0"),
    ({"a": {"w": 1}}, [1, math.inf], ConfigError, r"taus must be finite numbers"),
])
def test_performance_profile_rejects_bad_input(times, taus, error, message):
    with pytest.raises(error, match=message):
        performance_profile(times, taus)
