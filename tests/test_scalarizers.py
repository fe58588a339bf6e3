"""The losses-only methods: torchjd's scalarizers (UW, DWA, FAMO, STCH, IMTL-L, GLS, PBI, RLW), Kendall's
classification form of UW and GradNorm, through the protocol the trainer uses (scalarize, after_step,
bind, state_dict): parity with torchjd called directly, exact resume, the papers' schedules and a
GradNorm step worked by hand."""

import io
import math

import pytest
import torch
from torchjd import scalarization as jds

from mtbench.errors import ConfigError
from mtbench_plugins import loss_methods

PRESETS = {p.name: p for p in loss_methods.mtbench_methods()}
LR = 0.05


def build(name, num_tasks=2, **settings):
    preset = PRESETS[name]
    return preset.build(num_tasks, **preset.resolve(settings))


def initial_params():
    """A tiny two-task model: a shared layer W and one head per task."""
    gen = torch.Generator().manual_seed(0)
    shapes = ((4, 3), (3,), (3,))
    return [torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True) for shape in shapes]


def losses_at(params, k):
    """The two task losses of step k's batch (a batch per step, the same for every path)."""
    w, h0, h1 = params
    gen = torch.Generator().manual_seed(100 + k)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64).to(w.device)
    y = torch.randn(6, 2, generator=gen, dtype=torch.float64).to(w.device)
    z = torch.tanh(x @ w)
    return torch.stack([(z @ h0 - y[:, 0]).square().mean() + 0.05, ((z @ h1).sin() - y[:, 1]).square().mean() + 0.05])


def train(objective, own, steps, params, after=None, start=0):
    """What the trainer does with a losses-only step: one backward pass of the scalar, an SGD step on
    the model and on the method's own parameters, then ``after(recompute)``. Returns per step the
    scalar, the model's gradients and the own parameters' gradients."""
    record = []
    for k in range(start, start + steps):
        for p in params + own:
            p.grad = None
        scalar = objective(losses_at(params, k), k + 1)
        scalar.backward()
        record.append((scalar.detach().clone(), [p.grad.clone() for p in params],
                       [p.grad.clone() for p in own if p.grad is not None]))
        with torch.no_grad():
            for p in params + own:
                if p.grad is not None:
                    p -= LR * p.grad
        if after is not None:
            after(lambda: losses_at(params, k))
    return record


def run_method(method, steps, params=None, start=0):
    params = params if params is not None else initial_params()
    if hasattr(method, "bind"):
        method.bind(params[:1])
    return train(method.scalarize, method.parameters(), steps, params, getattr(method, "after_step", None), start)


def assert_same_records(got, want, tol=1e-12):
    assert len(got) == len(want)
    for k, ((s1, g1, o1), (s2, g2, o2)) in enumerate(zip(got, want)):
        torch.testing.assert_close(s1, s2, rtol=tol, atol=tol, check_dtype=False, msg=f"scalar at step {k + 1}")
        for a, b in zip(g1 + o1, g2 + o2):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol, check_dtype=False, msg=f"gradient at step {k + 1}")
        assert len(o1) == len(o2)


class DirectSTCH:
    """STCH as the paper's multi-task code runs it, with torchjd's STCH after the warm-up."""

    def __init__(self, mu, warmup, window, num_tasks=2):
        self.stch = jds.STCH(mu, weights=torch.ones(num_tasks))
        self.warmup, self.window, self.num_tasks = warmup, window, num_tasks
        self.seen, self.average = [], None

    def __call__(self, losses):
        if len(self.seen) < self.warmup + self.window:
            self.seen.append(losses.detach())
            return torch.log(losses + 1e-20).sum()
        if self.average is None:
            self.average = torch.stack(self.seen[self.warmup:]).mean(0)
        return self.num_tasks * self.stch(torch.log(losses / self.average + 1e-20))


# name -> (settings, the torchjd scalarizer called directly, how it is called each step, after the step)
def direct(name, settings):
    if name == "uw":
        s = jds.UW(2)
        return s, lambda losses, k: s(losses), None
    if name == "uncertainty":
        s = jds.UW(2)
        return s, lambda losses, k: s(2 * losses), None  # NOTE [uncertainty vs uw]
    if name == "imtl_l":
        s = jds.IMTLL(2)
        return s, lambda losses, k: s(losses), None
    if name == "dwa":
        s = jds.DWA(settings["temperature"])

        def call(losses, k):
            out = s(losses)
            if k % settings["window"] == 0:
                s.step()  # torchjd's end of epoch, every window of steps
            return out
        return s, call, None
    if name == "famo":
        s = jds.FAMO(2, lr=settings["lr"], weight_decay=settings["weight_decay"])
        return None, lambda losses, k: s(losses), lambda recompute: s.update(recompute().detach())
    if name == "stch":
        s = DirectSTCH(settings["mu"], settings["warmup"], settings["window"])
        return None, lambda losses, k: s(losses), None
    if name == "geometric_mean":
        s = jds.GeometricMean()
        return None, lambda losses, k: s(losses), None
    if name == "pbi":
        s = jds.PBI(settings["theta"], torch.tensor(settings["pref_vector"], dtype=torch.float64))
        return None, lambda losses, k: s(losses), None
    if name == "rlw":
        torch.manual_seed(settings["seed"])  # torchjd's Random draws from the global RNG
        s = jds.Random()
        return None, lambda losses, k: s(losses), None
    raise KeyError(name)


CASES = {
    "uw": {},
    "uncertainty": {},
    "imtl_l": {},
    "dwa": {"temperature": 2.0, "window": 2},
    "famo": {"lr": 0.025, "weight_decay": 1e-3},
    "stch": {"mu": 0.5, "warmup": 2, "window": 2},
    "geometric_mean": {},
    "pbi": {"theta": 5.0, "pref_vector": (1.0, 3.0)},
    "rlw": {"seed": 11},
}


@pytest.mark.parametrize("name", CASES)
def test_every_scalarizer_method_steps_as_torchjd_called_directly(name):
    """Same model, same batches, same SGD: the method and torchjd give the same scalar and gradients
    at every step (the model's and the learnable loss weights'), over steps where their state matters."""
    settings = CASES[name]
    steps = 8
    got = run_method(build(name, **settings), steps)
    module, call, after = direct(name, settings)
    own = list(module.parameters()) if module is not None else []
    want = train(call, own, steps, initial_params(), after)
    assert_same_records(got, want)
    assert not torch.equal(got[-1][1][0], got[0][1][0])


@pytest.mark.parametrize("name", [*CASES, "gradnorm"])
def test_a_state_dict_round_trip_mid_sequence_continues_identically(name):
    settings = {k: v for k, v in CASES.get(name, {}).items()}
    params = initial_params()
    original = build(name, **settings)
    run_method(original, 4, params)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)  # as a checkpoint holds it, loaded with weights_only
    buffer.seek(0)
    resumed = build(name, **settings)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    copy = [p.detach().clone().requires_grad_() for p in params]
    want = run_method(original, 5, params, start=4)
    got = run_method(resumed, 5, copy, start=4)
    assert_same_records(got, want, tol=0)
    fresh = run_method(build(name, **settings), 5, [p.detach().clone().requires_grad_() for p in copy], start=9)
    again = run_method(resumed, 5, copy, start=9)
    if name not in ("geometric_mean", "pbi"):  # stateless: nothing to lose
        assert not all(torch.equal(a[0], b[0]) for a, b in zip(fresh, again)), "the state changed nothing"


def test_the_round_trip_test_fails_without_the_saved_state():
    params = initial_params()
    original = build("famo", **CASES["famo"])
    run_method(original, 4, params)
    copy = [p.detach().clone().requires_grad_() for p in params]
    want = run_method(original, 2, params, start=4)
    got = run_method(build("famo", **CASES["famo"]), 2, copy, start=4)
    assert not torch.allclose(got[0][0], want[0][0])


def test_the_weights_are_the_derivatives_of_the_scalar_by_the_losses():
    losses = torch.tensor([0.8, 2.0], dtype=torch.float64, requires_grad=True)
    for name in ("uw", "uncertainty", "geometric_mean", "famo"):
        method = build(name, **{k: v for k, v in CASES[name].items()})
        scalar = method.scalarize(losses * 1, 1)
        (expected,) = torch.autograd.grad(scalar, losses)
        torch.testing.assert_close(method.last_weights, expected, check_dtype=False)
    method = build("geometric_mean")
    method.scalarize(losses * 1, 1)
    g = math.sqrt(0.8 * 2.0)
    torch.testing.assert_close(method.last_weights, torch.tensor([g / 2 / 0.8, g / 2 / 2.0], dtype=torch.float64))


def test_uncertainty_is_kendalls_classification_form_and_uw_torchjds_regression_form():
    """NOTE [uncertainty vs uw]: the same log-variances s; eq. (10) weighs exp(-s), torchjd's UW exp(-s)/2."""
    losses = torch.tensor([0.8, 2.0], dtype=torch.float64, requires_grad=True)
    s = torch.tensor([0.3, -0.4])
    kendall, uw = build("uncertainty"), build("uw")
    kendall.load_state_dict({"log_vars": s})  # the key of the runs made before
    uw.load_state_dict({"log_var": s})
    value = kendall.scalarize(losses * 1, 1)
    torch.testing.assert_close(value, (torch.exp(-s) * losses + s / 2).sum(), check_dtype=False)  # eq. (10)
    torch.testing.assert_close(uw.scalarize(losses * 1, 1), (torch.exp(-s) * losses / 2 + s / 2).sum(),
                               check_dtype=False)
    torch.testing.assert_close(kendall.last_weights, 2 * uw.last_weights)
    fresh = [build(name) for name in ("uncertainty", "uw")]
    for method in fresh:
        method.scalarize(losses * 1, 1)
    assert fresh[0].last_weights.tolist() == [1.0, 1.0] and fresh[1].last_weights.tolist() == [0.5, 0.5]
    # Both settle where d/ds = 0: weights 1 / (2 L) for either form.
    for name, key, at in (("uncertainty", "log_vars", torch.log(2 * losses.detach())),
                          ("uw", "log_var", torch.log(losses.detach()))):
        method = build(name)
        (own,) = method.parameters()
        method.load_state_dict({key: at})
        method.scalarize(losses * 1, 1).backward()
        torch.testing.assert_close(own.grad, torch.zeros(2), atol=1e-6, rtol=0, check_dtype=False)
        torch.testing.assert_close(method.last_weights, 1 / (2 * losses.detach()), check_dtype=False)


def test_dwa_weights_follow_the_window_averages_and_an_older_runs_state_loads():
    method = build("dwa", window=2, temperature=2.0)
    pairs = [(1.0, 2.0), (3.0, 2.0), (1.0, 1.0), (1.0, 3.0), (5.0, 5.0)]
    weights = []
    for k, pair in enumerate(pairs):
        method.scalarize(torch.tensor(pair, dtype=torch.float64, requires_grad=True) * 1, k + 1)
        weights.append(method.last_weights)
    for k in range(4):  # windows (steps 1-2) and (3-4) complete only after step 4
        torch.testing.assert_close(weights[k], torch.ones(2, dtype=torch.float64))
    ratios = torch.tensor([1.0 / 2.0, 2.0 / 2.0], dtype=torch.float64)  # window means (1, 2) after (2, 2)
    torch.testing.assert_close(weights[4], 2 * torch.softmax(ratios / 2.0, 0))
    old = {"window_sum": torch.tensor([5.0, 5.0], dtype=torch.float64), "window_steps": 1,  # the hand-written DWA's
           "averages": torch.tensor([[2.0, 2.0], [1.0, 2.0]], dtype=torch.float64)}
    resumed = build("dwa", window=2, temperature=2.0)
    resumed.load_state_dict(old)
    for k, pair in enumerate([(4.0, 1.0), (3.0, 1.0)]):
        want = method.scalarize(torch.tensor(pair, dtype=torch.float64, requires_grad=True) * 1, 6 + k)
        got = resumed.scalarize(torch.tensor(pair, dtype=torch.float64, requires_grad=True) * 1, 6 + k)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(resumed.last_weights, method.last_weights)


def test_famo_updates_its_logits_from_the_same_batch_after_the_step():
    method = build("famo", **CASES["famo"])
    before = torch.tensor([1.0, 2.0], requires_grad=True)
    method.scalarize(before * 1, 1)
    calls = []
    after = torch.tensor([0.5, 1.9])
    method.after_step(lambda: calls.append(1) or after)
    assert calls == [1]
    # One Adam step (lr 0.025) on d = grad of softmax(w) . delta, delta = log before - log after:
    # Adam's first step moves each logit by lr * sign(d).
    delta = torch.log(before.detach() + 1e-8) - torch.log(after + 1e-8)
    z = torch.softmax(torch.zeros(2), 0)
    d = z * (delta - (z * delta).sum())
    logits = method.state_dict()["logits"]
    torch.testing.assert_close(logits, -0.025 * torch.sign(d), atol=1e-6, rtol=0)
    assert method.state_dict()["adam"]["state"][0]["step"] == 1


def test_stch_warms_up_on_the_log_losses_then_measures_from_the_nadir_point():
    method = build("stch", mu=0.5, warmup=1, window=2)
    seen = [(2.0, 4.0), (1.0, 3.0), (3.0, 5.0)]
    for k, pair in enumerate(seen):
        losses = torch.tensor(pair, dtype=torch.float64, requires_grad=True)
        torch.testing.assert_close(method.scalarize(losses * 1, k + 1), torch.log(losses.detach()).sum())
        torch.testing.assert_close(method.last_weights, 1 / losses.detach())  # d/dL sum log L
    nadir = torch.tensor([2.0, 4.0], dtype=torch.float64)  # the mean of the last window: steps 2 and 3
    assert method.state_dict()["nadir"] is None and method.state_dict()["count"] == 2
    losses = torch.tensor([1.0, 5.0], dtype=torch.float64, requires_grad=True)
    value = method.scalarize(losses * 1, 4)
    torch.testing.assert_close(method.state_dict()["nadir"], nadir)
    # The paper's objective: T mu logsumexp(log(L / z) / mu).
    v = torch.log(losses / nadir)
    paper = 2 * 0.5 * torch.logsumexp(v / 0.5, 0)
    torch.testing.assert_close(value, paper)
    (expected,) = torch.autograd.grad(paper, losses)
    torch.testing.assert_close(method.last_weights, expected)


def test_gradnorm_on_a_case_worked_by_hand():
    """Chen et al. 2018 on two tasks sharing a linear layer W (1 x 2), heads a = (1, 2), input x = (1, 2):
    h = W x, L1 = (a1 h)^2, L2 = (a2 h - 1)^2, gradients on W: dL1/dW = 2 a1^2 h x, dL2/dW = 2 a2 (a2 h - 1) x."""
    w_layer = torch.tensor([[1.0, 0.5]], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    method = build("gradnorm", alpha=1.5)
    method.bind([w_layer])
    (weights,) = method.parameters()
    opt = torch.optim.SGD([weights], lr=0.01)

    def losses():
        h = (w_layer @ x)[0]
        return torch.stack([(1.0 * h) ** 2, (2.0 * h - 1.0) ** 2])

    # Step 1: h = 1 + 1 = 2, L = (4, 9). dL1/dW = 2 * 2 x = 4 x, dL2/dW = 2 * 2 * 3 x = 12 x, ||x|| = sqrt5:
    # norms 4 sqrt5 and 12 sqrt5.
    # The weights are (1, 1): G = (4 sqrt5, 12 sqrt5), mean 8 sqrt5. The loss ratios L / L(0) are 1, so r = (1, 1)
    # and the target is 8 sqrt5 for both. GradNorm loss |4 - 8| sqrt5 + |12 - 8| sqrt5 = 8 sqrt5;
    # d/dw_t = sign(G_t - target_t) ||dL_t/dW|| = (-4 sqrt5, +12 sqrt5).
    s5 = math.sqrt(5.0)
    opt.zero_grad()
    w_layer.grad = None
    scalar = method.scalarize(losses(), 1)
    torch.testing.assert_close(scalar.detach(), torch.tensor(13.0, dtype=torch.float64))  # 1 * 4 + 1 * 9
    scalar.backward()
    torch.testing.assert_close(method.last_gradnorm_loss, torch.tensor(8 * s5), check_dtype=False)
    torch.testing.assert_close(weights.grad, torch.tensor([-4 * s5, 12 * s5]), check_dtype=False)
    # The step is on 1 * L1 + 1 * L2: W gets dL1/dW + dL2/dW = 4 x + 12 x = (16, 32).
    torch.testing.assert_close(w_layer.grad, torch.tensor([[16.0, 32.0]], dtype=torch.float64))
    opt.step()  # w = (1 + 0.04 sqrt5, 1 - 0.12 sqrt5)
    w_after = (1 + 0.04 * s5, 1 - 0.12 * s5)

    # Step 2, the model moved: W = (0.5, 0.5), h = 1.5, L = (2.25, 4). First the weights are renormalised
    # to sum to T = 2: w = 2 (w_after) / sum(w_after).
    with torch.no_grad():
        w_layer.copy_(torch.tensor([[0.5, 0.5]]))
    total = w_after[0] + w_after[1]
    w = (2 * w_after[0] / total, 2 * w_after[1] / total)
    # Norms: dL1/dW = 2 * 1.5 x -> 3 sqrt5; dL2/dW = 2 * 2 * (3 - 1) x -> 8 sqrt5. G = (3 sqrt5 w1, 8 sqrt5 w2).
    n = (3 * s5, 8 * s5)
    G = (w[0] * n[0], w[1] * n[1])
    # Inverse training rates L / L(0) = (2.25 / 4, 4 / 9); relative to their mean: r.
    rates = (2.25 / 4, 4 / 9)
    r = (rates[0] / (sum(rates) / 2), rates[1] / (sum(rates) / 2))
    target = ((G[0] + G[1]) / 2 * r[0] ** 1.5, (G[0] + G[1]) / 2 * r[1] ** 1.5)
    grad = tuple(math.copysign(n[t], G[t] - target[t]) for t in range(2))
    opt.zero_grad()
    scalar = method.scalarize(losses(), 2)
    torch.testing.assert_close(method.last_weights, torch.tensor(w, dtype=torch.float32))
    torch.testing.assert_close(scalar.detach(), torch.tensor(w[0] * 2.25 + w[1] * 4.0, dtype=torch.float64))
    gradnorm_loss = abs(G[0] - target[0]) + abs(G[1] - target[1])
    torch.testing.assert_close(method.last_gradnorm_loss, torch.tensor(gradnorm_loss), check_dtype=False)
    scalar.backward()
    torch.testing.assert_close(weights.grad, torch.tensor(grad, dtype=torch.float32))
    opt.step()
    torch.testing.assert_close(weights.detach(), torch.tensor([w[0] - 0.01 * grad[0], w[1] - 0.01 * grad[1]]))


def test_gradnorm_reads_only_the_bound_layer():
    params = initial_params()
    method = build("gradnorm")
    with pytest.raises(ValueError, match=r"bind\(shared\) was not called"):
        method.scalarize(losses_at(params, 0), 1)
    method.bind(params[1:2])  # the first head: the second task does not reach it
    method.scalarize(losses_at(params, 0), 1).backward()
    (weights,) = method.parameters()
    # Task 2's norm on that layer is 0: its weight's gradient is 0, task 1's is -/+ its norm.
    assert weights.grad[1] == 0 and weights.grad[0] != 0


@pytest.mark.parametrize("name, settings, message", [
    ("stch", {"window": 0}, r"window=0 is out of range"),
    ("stch", {"mu": 0.0}, r"mu=0\.0 is out of range"),
    ("stch", {"pref_vector": (1.0, 2.0, 3.0)}, r"pref_vector=1,2,3 has 3 values: expected 2, one per task"),
    ("famo", {"lr": -1.0}, r"lr=-1\.0 is out of range"),
    ("pbi", {"pref_vector": (0.0, 0.0)}, r"pref_vector=0,0 has no positive value"),
    ("pbi", {"theta": -1.0}, r"theta=-1\.0 is out of range"),
    ("dwa", {"window": 0}, r"window=0 is out of range"),
    ("rlw", {"seed": -1}, r"seed=-1 is out of range"),
    ("uw", {"init": 1.0}, r"unknown setting 'init' for method 'uw'"),
])
def test_bad_settings_fail_with_one_line(name, settings, message):
    preset = PRESETS[name]
    with pytest.raises(ConfigError, match=message) as info:
        preset.build(2, **preset.resolve(settings))
    assert "\n" not in str(info.value)


def test_losses_of_the_wrong_shape_or_off_the_graph_are_refused():
    with pytest.raises(ValueError, match=r"^losses has shape \(3,\): expected \(2,\), one loss per task$"):
        build("uw").scalarize(torch.ones(3, requires_grad=True) * 1, 1)
    with pytest.raises(ValueError, match=r"losses do not require grad"):
        build("famo", **CASES["famo"]).scalarize(torch.ones(2), 1)


def test_every_losses_only_method_says_what_a_step_costs():
    for preset in PRESETS.values():
        assert preset.reads == "loss" and not preset.needs_grads, preset.name
    assert PRESETS["gradnorm"].cost() == "one backward (weighted loss) + T backwards to the last shared layer"
    assert PRESETS["famo"].cost() == "one backward (weighted loss) + one forward without gradient"
    assert PRESETS["uw"].cost() == "one backward (weighted loss)"
