"""The built-in multi-task methods: parity with torchjd, exact resume, the loss-weighting math, bad settings."""

import inspect
import io

import pytest
import torch
from torchjd import aggregation as jd
from torchjd.linalg import QuadprogProjector

from mtbench import build_method
from mtbench.aggregation import MethodRng, TaskGradients, gramian, weighted_sum
from mtbench.errors import ConfigError
from mtbench_plugins import jd_methods, loss_methods

PRESETS = {p.name: p for p in jd_methods.mtbench_methods() + loss_methods.mtbench_methods()}

# name -> (settings, the torchjd aggregator the method must equal on the concatenated Jacobian)
AGGREGATORS = {
    "upgrad": ({}, lambda T: jd.UPGrad()),
    "upgrad_pref": ({"pref_vector": (2.0, 1.0, 0.5)}, lambda T: jd.UPGrad(torch.tensor([2.0, 1.0, 0.5][:T]))),
    "mgda": ({}, lambda T: jd.MGDA()),
    "pcgrad": ({"seed": 7}, lambda T: jd.PCGrad()),
    "cagrad": ({}, lambda T: jd.CAGrad(c=0.5)),
    "nash_mtl": ({}, lambda T: jd.NashMTL(T)),
    "aligned_mtl": ({}, lambda T: jd.AlignedMTL()),
    "imtl_g": ({}, lambda T: jd.IMTLG()),
    "dualproj": ({"reg_eps": 1e-3}, lambda T: jd.DualProj(projector=QuadprogProjector(reg_eps=1e-3))),
    "gradvac": ({"seed": 3}, lambda T: jd.GradVac()),
    "graddrop": ({"seed": 5}, lambda T: jd.GradDrop()),
    "graddrop_leak": (
        {"seed": 5, "leak": (0.2, 0.5, 0.9)},
        lambda T: jd.GradDrop(leak=torch.tensor([0.2, 0.5, 0.9][:T])),
    ),
    "config": ({}, lambda T: jd.ConFIG()),
    "fairgrad": ({"alpha": 2.0}, lambda T: jd.FairGrad(alpha=2.0)),
    "random": ({"seed": 11}, lambda T: jd.Random()),
    "excess_mtl": ({}, lambda T: jd.ExcessMTL()),
    "excess_mtl_warmup": ({"warmup": 2, "robust_step_size": 0.5}, lambda T: jd.ExcessMTL(0.5, n_warmup_steps=2)),
    "cr_mogm": ({"alpha": 0.6}, lambda T: jd.GramianWeightedAggregator(jd.CRMOGMWeighting(jd.MGDAWeighting(), 0.6))),
}
# Methods that keep state between steps or draw random numbers: compared over several steps.
STEPS = {"nash_mtl": 3, "gradvac": 3, "random": 3, "pcgrad": 3, "graddrop": 3, "graddrop_leak": 3, "excess_mtl": 3,
         "excess_mtl_warmup": 4, "cr_mogm": 3}
# Solver-based weightings: a Gramian summed per parameter differs from J @ J.T in the last bits,
# which the solvers' tolerances may amplify.
SOLVER_TOL = {"cagrad": 1e-6, "nash_mtl": 1e-6, "fairgrad": 1e-6}

# (number of tasks, [(shape, tasks that reach the parameter)])
LAYOUTS = {
    "all_shared": (2, [((4, 3), (0, 1)), ((5,), (0, 1)), ((), (0, 1))]),
    "mixed": (
        3,
        [
            ((3, 4), (0, 1, 2)),
            ((6,), (0, 2)),  # shared by two of three tasks: zeros in task 1's row
            ((2, 2), (1,)),  # task-specific
            ((3,), ()),  # no task reaches it
            ((0,), (0, 1, 2)),  # empty
            ((2,), (0,)),
            ((1, 5), (0, 1)),
        ],
    ),
    "heads": (2, [((7,), (0, 1)), ((3, 2), (0,)), ((4,), (1,)), ((2,), ())]),
}


def preset_name(key):
    return key.split("_pref")[0].split("_leak")[0].split("_warmup")[0]


def build(key, num_tasks, **extra):
    settings, _ = AGGREGATORS[key] if key in AGGREGATORS else ({}, None)
    preset = PRESETS[preset_name(key)]
    settings = {k: v[:num_tasks] if isinstance(v, tuple) else v for k, v in {**settings, **extra}.items()}
    return preset.build(num_tasks, **preset.resolve(settings))


def make_grads(layout, seed, dtype=torch.float64):
    num_tasks, params = LAYOUTS[layout]
    gen = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(shape, generator=gen, dtype=dtype) if t in tasks else None for shape, tasks in params]
        for t in range(num_tasks)
    ]


def drifting_steps(layout, count):
    """Task gradients that start aligned and drift apart over the steps, so that what a stateful
    method remembers (GradVac's cosine targets, say) changes what it does later."""
    base = make_grads(layout, 100)
    shared = [next((row[i] for row in base if row[i] is not None), None) for i in range(len(base[0]))]
    return [
        [[None if g is None else shared[i] + 0.4 * k * g for i, g in enumerate(row)] for row in make_grads(layout, k)]
        for k in range(count)
    ]


def reference(aggregator, task_grads):
    """torchjd's aggregator on the concatenated Jacobian of the shared parameters, scattered back;
    task-specific parameters keep their task's gradient."""
    num_tasks, num_params = len(task_grads), len(task_grads[0])
    reach = [[t for t in range(num_tasks) if task_grads[t][i] is not None] for i in range(num_params)]
    shared = [i for i in range(num_params) if len(reach[i]) >= 2]
    blocks = []
    for i in shared:
        like = task_grads[reach[i][0]][i]
        rows = [(g[i] if g[i] is not None else torch.zeros_like(like)).reshape(-1) for g in task_grads]
        blocks.append(torch.stack(rows))
    vector = aggregator(torch.cat(blocks, dim=1))
    out = [None] * num_params
    offset = 0
    for i in shared:
        like = task_grads[reach[i][0]][i]
        out[i] = vector[offset : offset + like.numel()].reshape(like.shape)
        offset += like.numel()
    for i in range(num_params):
        if len(reach[i]) == 1:
            out[i] = task_grads[reach[i][0]][i]
    return out


def assert_grads_equal(actual, expected, tol=1e-9):
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        if e is None:
            assert a is None, f"parameter {i}: expected None"
        else:
            assert a is not None and a.shape == e.shape, f"parameter {i}"
            torch.testing.assert_close(a, e, rtol=tol, atol=tol, msg=f"parameter {i}")


LOSSES = torch.tensor([0.9, 1.7, 1.2], dtype=torch.float64)


@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem that is not DPP")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("key", AGGREGATORS)
def test_combined_gradient_equals_torchjd_on_the_concatenated_jacobian(key, layout):
    num_tasks = LAYOUTS[layout][0]
    steps = [make_grads(layout, seed) for seed in range(STEPS.get(key, 1))]
    settings, make = AGGREGATORS[key]
    torch.manual_seed(settings.get("seed", 0))  # the random aggregators of torchjd draw from the global RNG
    aggregator = make(num_tasks)
    expected = [reference(aggregator, grads) for grads in steps]
    method = build(key, num_tasks)
    for grads, want in zip(steps, expected):
        losses = LOSSES[:num_tasks]
        assert_grads_equal(method.combine(grads, losses, 1), want, SOLVER_TOL.get(key, 1e-9))


@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem that is not DPP")
@pytest.mark.parametrize("name", PRESETS)
def test_every_builtin_method_is_discovered_builds_and_combines(name):
    method = build_method(name, 2)
    grads = make_grads("heads", 0)
    combined = method.combine(grads, LOSSES[:2], 1)
    assert [g is None for g in combined] == [False, False, False, True]
    assert all(torch.isfinite(g).all() for g in combined[:3])
    assert method.last_weights is None or method.last_weights.shape == (2,)


def test_gramian_route_reports_the_weights_of_torchjds_weighting():
    grads = make_grads("mixed", 0)
    method = build("upgrad", 3)
    method.combine(grads, LOSSES, 1)
    matrix = TaskGradients(grads, 3).jacobian()
    torch.testing.assert_close(method.last_weights, jd.UPGradWeighting()(matrix @ matrix.T))


def test_random_methods_leave_the_global_rng_alone_and_repeat_with_their_seed():
    grads = make_grads("mixed", 1)
    for key in ("pcgrad", "gradvac", "graddrop", "random"):
        torch.manual_seed(123)
        before = torch.get_rng_state()
        first = build(key, 3, seed=4).combine(grads, LOSSES, 1)
        assert torch.equal(torch.get_rng_state(), before), key
        again = build(key, 3, seed=4).combine(grads, LOSSES, 1)
        assert_grads_equal(again, first, tol=0)
    one = build("random", 3, seed=1)
    one.combine(grads, LOSSES, 1)
    other = build("random", 3, seed=2)
    other.combine(grads, LOSSES, 1)
    assert not torch.equal(one.last_weights, other.last_weights)


def roundtrip(state):
    """Through torch.save / torch.load(weights_only=True), as a run's checkpoint stores it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def sgd_on_method_parameters(method, lr=0.1):
    """What the run's optimizer does with the learnable weights between two steps."""
    with torch.no_grad():
        for p in getattr(method, "parameters", lambda: [])():
            p -= lr * p.grad


@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem that is not DPP")
@pytest.mark.parametrize(
    "name, settings",
    [
        ("gradvac", {"seed": 2}),
        ("nash_mtl", {"update_weights_every": 2}),
        ("random", {"seed": 2}),
        ("pcgrad", {"seed": 2}),
        ("graddrop", {"seed": 2}),
        ("excess_mtl", {"warmup": 2}),
        ("cr_mogm", {}),
        ("uncertainty", {}),
        ("dwa", {"window": 2}),
        ("gradnorm", {}),
    ],
)
def test_state_dict_round_trip_continues_identically(name, settings):
    steps = drifting_steps("mixed", 7)
    losses = [LOSSES * (1.0 - 0.1 * k) + 0.05 * (k % 2) for k in range(7)]
    preset = PRESETS[name]
    original = preset.build(3, **preset.resolve(settings))
    for k in range(3):
        original.combine(steps[k], losses[k], k + 1)
        sgd_on_method_parameters(original)
    resumed = preset.build(3, **preset.resolve(settings))
    resumed.load_state_dict(roundtrip(original.state_dict()))
    for k in range(3, 7):
        want = original.combine(steps[k], losses[k], k + 1)
        got = resumed.combine(steps[k], losses[k], k + 1)
        assert_grads_equal(got, want, tol=0)
        if original.last_weights is not None:
            torch.testing.assert_close(resumed.last_weights, original.last_weights, rtol=0, atol=0)
        sgd_on_method_parameters(original)
        sgd_on_method_parameters(resumed)


def test_a_fresh_method_differs_from_a_resumed_one():
    """The round trip test above can fail: without the saved state the stateful methods diverge."""
    steps = drifting_steps("mixed", 4)
    losses = [torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) / (1 + k * torch.arange(1.0, 4.0)) for k in range(4)]
    for name, settings in (("gradvac", {"seed": 2}), ("dwa", {"window": 1}), ("random", {"seed": 2}),
                           ("excess_mtl", {}), ("cr_mogm", {"alpha": 0.9})):
        preset = PRESETS[name]
        original = preset.build(3, **preset.resolve(settings))
        for k in range(3):
            original.combine(steps[k], losses[k], k + 1)
        fresh = preset.build(3, **preset.resolve(settings))
        want = original.combine(steps[3], losses[3], 4)
        got = fresh.combine(steps[3], losses[3], 4)
        assert not torch.allclose(got[0], want[0]), name


def shared_model():
    """Task losses of a tiny two-head model, as functions of a shared tensor and one head each."""
    gen = torch.Generator().manual_seed(0)
    shared = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    heads = [torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    losses = [((x @ shared) @ heads[0]).square().mean(), ((x @ shared) @ heads[1]).sin().square().mean() + 0.3]
    params = [shared, *heads]
    # allow_unused: a head the task does not reach gets None, as the trainer hands it in
    task_grads = [list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)) for loss in losses]
    return params, torch.stack(losses), task_grads


def test_uncertainty_weighting_gradients_equal_autograd_on_kendalls_loss():
    params, losses, task_grads = shared_model()
    assert task_grads[0][2] is None and task_grads[1][1] is None
    method = build("uncertainty", 2)
    method.load_state_dict({"log_vars": torch.tensor([0.4, -0.7])})  # as a checkpoint of any version holds it
    combined = method.combine(task_grads, losses.detach(), 1)

    s = torch.tensor([0.4, -0.7], dtype=torch.float64, requires_grad=True)
    kendall = (torch.exp(-s) * losses + s / 2).sum()  # eq. (10) of Kendall et al. 2018, s = log sigma^2
    *expected, expected_s = torch.autograd.grad(kendall, [*params, s])
    for got, want in zip(combined, expected):  # shared parameter and both heads
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    (log_vars,) = method.parameters()
    torch.testing.assert_close(log_vars.grad, expected_s.float())
    torch.testing.assert_close(method.last_weights, torch.exp(-s.detach()))


def test_gradnorm_gradient_equals_autograd_on_the_gradnorm_loss_and_weights_sum_to_T():
    params, _, task_grads = shared_model()
    method = build("gradnorm", 2, alpha=1.5)
    first = torch.tensor([1.0, 2.0], dtype=torch.float64)
    method.combine(task_grads, first, 1)
    with torch.no_grad():
        method.weights.copy_(torch.tensor([0.5, 3.5]))  # as if the optimizer had stepped: sum 4, not T = 2
    losses = torch.tensor([0.6, 1.8], dtype=torch.float64)
    combined = method.combine(task_grads, losses, 2)

    w = torch.tensor([0.25, 1.75], requires_grad=True)  # renormalised to sum to T
    torch.testing.assert_close(method.last_weights, w.detach())
    norms = torch.stack([task_grads[t][0].norm() for t in range(2)]).float()  # over the shared parameter
    G = w * norms
    rates = (losses / first).float()
    target = (G.mean() * (rates / rates.mean()) ** 1.5).detach()  # a constant, as in the paper
    (expected,) = torch.autograd.grad((G - target).abs().sum(), [w])
    torch.testing.assert_close(method.weights.grad, expected)
    torch.testing.assert_close(combined[0], 0.25 * task_grads[0][0] + 1.75 * task_grads[1][0])
    torch.testing.assert_close(combined[1], 0.25 * task_grads[0][1])  # the whole loss is weighted
    torch.testing.assert_close(combined[2], 1.75 * task_grads[1][2])


def test_dwa_weights_follow_the_ratio_of_the_last_two_window_averages():
    method = build("dwa", 2, window=2, temperature=2.0)
    grads = make_grads("heads", 0)
    losses = [(1.0, 2.0), (3.0, 2.0), (1.0, 1.0), (1.0, 3.0), (5.0, 5.0)]
    weights = []
    for k, pair in enumerate(losses):
        method.combine(grads, torch.tensor(pair, dtype=torch.float64), k + 1)
        weights.append(method.last_weights)
    for k in range(4):  # windows (steps 1-2) and (3-4) complete only after step 4
        torch.testing.assert_close(weights[k], torch.ones(2, dtype=torch.float64))
    ratios = torch.tensor([1.0 / 2.0, 2.0 / 2.0], dtype=torch.float64)  # window means (1, 2) after (2, 2)
    torch.testing.assert_close(weights[4], 2 * torch.softmax(ratios / 2.0, 0))


def test_gramian_and_weighted_sum_skip_what_a_task_does_not_reach():
    grads = make_grads("mixed", 3)
    split = TaskGradients(grads, 3)
    matrix = split.jacobian()
    torch.testing.assert_close(gramian(split.rows), matrix @ matrix.T)
    torch.testing.assert_close(split.sq_norms(), (matrix @ matrix.T).diagonal())
    weights = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    summed = torch.cat([g.reshape(-1) for g in weighted_sum(split.rows, weights)])
    torch.testing.assert_close(summed, weights @ matrix)
    assert weighted_sum([[None], [None]], weights[:2]) == [None]


def test_gramian_accumulates_low_precision_gradients_in_float32():
    rows = [[torch.full((1000,), 0.01, dtype=torch.bfloat16)], [torch.full((1000,), 0.02, dtype=torch.bfloat16)]]
    result = gramian(rows)
    assert result.dtype == torch.float32
    exact = torch.tensor([0.01, 0.02], dtype=torch.bfloat16).float()
    torch.testing.assert_close(result, 1000 * torch.outer(exact, exact))


def test_method_rng_state_survives_a_device_this_process_lacks():
    rng = MethodRng(5)
    state = rng.state_dict()
    state["states"]["cuda"] = torch.arange(16, dtype=torch.uint8)  # saved on a GPU machine
    rng.load_state_dict(state)
    assert torch.equal(rng.state_dict()["states"]["cuda"], torch.arange(16, dtype=torch.uint8))


def test_bad_task_gradients_fail_with_one_line():
    method = build("upgrad", 2)
    with pytest.raises(ValueError, match=r"^task_grads holds 3 tasks: expected 2"):
        method.combine(make_grads("mixed", 0), LOSSES, 1)
    grads = make_grads("all_shared", 0)
    grads[1][0] = torch.zeros(2)
    with pytest.raises(ValueError, match=r"parameter 0: task gradients have shapes"):
        method.combine(grads, LOSSES[:2], 1)
    with pytest.raises(ValueError, match=r"losses has shape \(3,\): expected \(2,\)"):
        build("uncertainty", 2).combine(make_grads("heads", 0), LOSSES, 1)


@pytest.mark.parametrize(
    "name, settings, message",
    [
        ("mgda", {"epsilon": 0.0}, r"epsilon=0\.0 is out of range: expected a number in \(0, inf\)"),
        ("mgda", {"max_iters": "ten"}, r"max_iters='ten' is not allowed: expected an integer"),
        ("upgrad", {"pref_vector": (1.0, 2.0, 3.0)}, r"pref_vector=1,2,3 has 3 values: expected 2, one per task"),
        ("upgrad", {"pref_vector": "1,-2"}, r"pref_vector=1,-2 is out of range"),
        ("config", {"pref_vector": (1.0,)}, r"pref_vector=1 has 1 values: expected 2"),
        ("graddrop", {"leak": (0.5, 1.5)}, r"leak=0\.5,1\.5 is out of range: expected .*\[0, 1\]"),
        ("gradvac", {"beta": 1.5}, r"beta=1\.5 is out of range"),
        ("nash_mtl", {"optim_niter": 0}, r"optim_niter=0 is out of range"),
        ("cagrad", {"c": -1.0}, r"c=-1\.0 is out of range"),
        ("random", {"seed": -1}, r"seed=-1 is out of range"),
        ("dwa", {"window": 0}, r"window=0 is out of range"),
        ("dwa", {"temperature": "0"}, r"temperature=0\.0 is out of range"),
        ("gradnorm", {"alpha": -0.5}, r"alpha=-0\.5 is out of range"),
        ("imtl_g", {"c": 1.0}, r"unknown setting 'c' for method 'imtl_g'"),
    ],
)
def test_bad_settings_fail_with_a_one_line_config_error(name, settings, message):
    preset = PRESETS[name]
    with pytest.raises(ConfigError, match=message) as info:
        preset.build(2, **preset.resolve(settings))
    assert "\n" not in str(info.value)


def buffer_rows(task_grads):
    """The same gradients as rows of one [T, N] buffer, the layout a trainer can backward into."""
    num_tasks = len(task_grads)
    like = [next((row[i] for row in task_grads if row[i] is not None), None) for i in range(len(task_grads[0]))]
    buffer = torch.zeros(num_tasks, sum(g.numel() for g in like if g is not None), dtype=torch.float64)
    rows = [[None] * len(like) for _ in range(num_tasks)]
    offset = 0
    for i, g in enumerate(like):
        if g is None:
            continue
        for t in range(num_tasks):
            if task_grads[t][i] is not None:
                rows[t][i] = buffer[t, offset : offset + g.numel()].view(g.shape)
                rows[t][i].copy_(task_grads[t][i])
        offset += g.numel()
    return rows


@pytest.mark.parametrize("layout", ["all_shared", "mixed"])
def test_rows_of_one_buffer_take_the_compiled_route_with_the_same_result(layout, monkeypatch):
    from mtbench import aggregation

    calls = []
    for name in ("gramian", "weighted_sum_"):
        real = getattr(aggregation.ops, name)
        monkeypatch.setattr(aggregation.ops, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    num_tasks = LAYOUTS[layout][0]
    separate = make_grads(layout, 4)
    expected = build("upgrad", num_tasks).combine(separate, LOSSES[:num_tasks], 1)
    assert calls == []
    got = build("upgrad", num_tasks).combine(buffer_rows(separate), LOSSES[:num_tasks], 1)
    assert calls == ["gramian", "weighted_sum_"]
    assert_grads_equal(got, expected, tol=1e-12)


@pytest.mark.cuda
def test_on_cuda_random_methods_draw_from_their_own_generators():
    grads = [[g.cuda() if g is not None else None for g in row] for row in make_grads("mixed", 2)]
    torch.cuda.manual_seed(9)
    torch.manual_seed(9)
    expected = reference(jd.GradDrop(), grads)  # torch.rand on the gradients' device
    before = torch.cuda.get_rng_state()
    method = build("graddrop", 3, seed=9)
    got = method.combine(grads, LOSSES.cuda(), 1)
    assert torch.equal(torch.cuda.get_rng_state(), before)
    assert_grads_equal(got, expected)
    resumed = build("graddrop", 3, seed=0)
    resumed.load_state_dict(roundtrip(method.state_dict()))
    assert_grads_equal(resumed.combine(grads, LOSSES.cuda(), 2), method.combine(grads, LOSSES.cuda(), 2), tol=0)


def test_each_default_of_a_builtin_method_is_said_once():
    # A default lives in the preset's defaults=; the factory's signature must not say it again.
    for preset in PRESETS.values():
        signature = inspect.signature(preset.resolve_factory())
        twice = [key for key in preset.defaults if signature.parameters[key].default is not inspect.Parameter.empty]
        assert not twice, f"{preset.name}: {twice} have a default in the preset and in the factory"


def test_excess_mtl_state_loaded_in_another_dtype_is_moved_not_dropped():
    """A checkpoint loads on the CPU; the state follows the Jacobian (its device, here its dtype) where
    torchjd would start afresh."""
    steps = drifting_steps("mixed", 5)
    original = build("excess_mtl", 3)
    for k in range(3):
        original.combine(steps[k], LOSSES, k + 1)
    state = {k: v.float() if isinstance(v, torch.Tensor) else v for k, v in original.state_dict().items()}
    resumed = build("excess_mtl", 3)
    resumed.load_state_dict(roundtrip(state))
    fresh = build("excess_mtl", 3)
    for k in (3, 4):
        want = original.combine(steps[k], LOSSES, k + 1)
        assert_grads_equal(resumed.combine(steps[k], LOSSES, k + 1), want, tol=1e-5)
        assert resumed.weighting._n_steps == original.weighting._n_steps
        fresh.combine(steps[k], LOSSES, k + 1)
    assert not torch.allclose(fresh.last_weights, original.last_weights, atol=1e-3)
