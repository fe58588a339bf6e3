"""Every optimizer preset against torch.optim's contract, the checks tests/test_optim_generic.py runs on
MTAdamV2 made generic: each preset is built as a run builds it (build_optimizer, its parameter groups
by role) over a small network with a stem, hidden layers, BatchNorm and a head, then copied, saved
and loaded, hooked, scheduled and stepped with and without a closure. CPU, a few steps each."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import StepLR

from mtbench.plugins import load_registry
from mtbench.training.optimizers import build_optimizer

REGISTRY = load_registry(environ={})
# Every single-gradient preset (MTAdamV2's per-task step has its own suite, test_optim_generic.py).
PRESETS = [name for name, p in REGISTRY.presets.items() if not p.per_task_gradients]


class Net(nn.Module):
    """A stem convolution, two hidden layers (a convolution and a linear map), BatchNorm and a head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.hidden = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(4)
        self.mix = nn.Linear(4, 6)
        self.cls_head = nn.Linear(6, 3)

    def forward(self, x):
        x = torch.relu(self.norm(self.hidden(torch.relu(self.stem(x)))))
        return self.cls_head(torch.relu(self.mix(x.mean((2, 3)))))


class Problem:
    """A fixed batch and a network from a fixed seed: the same problem for every copy."""

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.net = Net()
        self.x = torch.randn(8, 3, 6, 6, generator=g)
        self.y = torch.randint(0, 3, (8,), generator=g)

    def loss(self):
        return nn.functional.cross_entropy(self.net(self.x), self.y)

    def closure(self, opt):
        def closure():
            opt.zero_grad()
            loss = self.loss()
            loss.backward()
            return loss
        return closure


def build(name: str, problem: Problem, **overrides):
    preset = REGISTRY.get(name)
    named = list(problem.net.named_parameters())
    return build_optimizer(preset, problem.net, [n for n, _ in named], [p for _, p in named], [],
                           preset.resolve(overrides))


def take_step(name: str, problem: Problem, opt) -> torch.Tensor:
    """One step as the trainer takes it: the gradient first, then step() or, where the preset needs
    one, step(closure)."""
    closure = problem.closure(opt)
    loss = closure()
    if "closure" in REGISTRY.get(name).needs:
        opt.step(closure)
    else:
        opt.step()
    return loss.detach()


def assert_same(a: Problem, b: Problem) -> None:
    for (name, pa), pb in zip(a.net.named_parameters(), b.net.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=lambda m: f"{name}: {m}")


def params_of(opt) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


@pytest.mark.parametrize("name", PRESETS)
def test_steps_lower_the_loss(name):
    problem = Problem()
    opt = build(name, problem)
    losses = [take_step(name, problem, opt).item() for _ in range(6)]
    assert min(losses[1:]) < losses[0], losses


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("weights_only", [True, False], ids=["weights_only", "full_load"])
def test_state_dict_round_trip_continues_identically(name, weights_only):
    a, b = Problem(), Problem()
    opt_a, opt_b = build(name, a), build(name, b)
    for _ in range(3):
        take_step(name, a, opt_a)
        take_step(name, b, opt_b)
    buffer = io.BytesIO()
    torch.save(opt_a.state_dict(), buffer)
    buffer.seek(0)
    fresh = Problem()
    fresh.net.load_state_dict(a.net.state_dict())
    opt_c = build(name, fresh)
    opt_c.load_state_dict(torch.load(buffer, weights_only=weights_only))
    for _ in range(3):
        take_step(name, b, opt_b)
        take_step(name, fresh, opt_c)
    assert_same(b, fresh)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copied_optimizer_steps_identically(name, how):
    problem = Problem()
    opt = build(name, problem)
    take_step(name, problem, opt)
    if how == "deepcopy":
        twin_net, twin_opt = copy.deepcopy((problem.net, opt))
    else:
        twin_net, twin_opt = pickle.loads(pickle.dumps((problem.net, opt)))
    twin = Problem()
    twin.net = twin_net
    assert all(any(p is q for q in twin_net.parameters()) for p in params_of(twin_opt))
    for _ in range(2):
        take_step(name, problem, opt)
        take_step(name, twin, twin_opt)
    assert_same(problem, twin)


@pytest.mark.parametrize("name", PRESETS)
def test_step_hooks_are_honoured(name):
    problem = Problem()
    opt = build(name, problem)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    take_step(name, problem, opt)
    assert calls[0] == "pre" and calls[-1] == "post" and calls.count("pre") == calls.count("post") >= 1


@pytest.mark.parametrize("name", PRESETS)
def test_state_dict_hooks_are_honoured(name):
    problem = Problem()
    opt = build(name, problem)
    take_step(name, problem, opt)
    seen = []
    opt.register_state_dict_pre_hook(lambda o: seen.append("pre"))
    opt.register_state_dict_post_hook(lambda o, sd: {**sd, "extra": 1})
    opt.register_load_state_dict_pre_hook(lambda o, sd: seen.append("load-pre"))
    opt.register_load_state_dict_post_hook(lambda o: seen.append("load-post"))
    state = opt.state_dict()
    assert state["extra"] == 1 and seen == ["pre"]
    opt.load_state_dict({k: v for k, v in state.items() if k != "extra"})
    assert seen == ["pre", "load-pre", "load-post"]


@pytest.mark.parametrize("name", PRESETS)
def test_a_scheduler_sets_every_group_lr(name):
    problem = Problem()
    opt = build(name, problem)
    before = [group["lr"] for group in opt.param_groups]
    scheduler = StepLR(opt, step_size=1, gamma=0.5)
    take_step(name, problem, opt)
    scheduler.step()
    assert [group["lr"] for group in opt.param_groups] == pytest.approx([lr * 0.5 for lr in before])


@pytest.mark.parametrize("name", PRESETS)
def test_zero_grad_clears_every_parameter_and_a_missing_gradient_is_skipped(name):
    problem = Problem()
    opt = build(name, problem)
    take_step(name, problem, opt)
    opt.zero_grad()
    assert all(p.grad is None for p in params_of(opt))
    frozen = problem.net.cls_head.weight.detach().clone()
    problem.closure(opt)()
    problem.net.cls_head.weight.grad = None  # a parameter no task reached this step
    if "closure" in REGISTRY.get(name).needs:
        opt.step(lambda: problem.loss())  # the second pass leaves that parameter without a gradient too
    else:
        opt.step()
    assert torch.equal(problem.net.cls_head.weight, frozen)


@pytest.mark.parametrize("name", PRESETS)
def test_the_optimizer_holds_every_trainable_parameter_once(name):
    problem = Problem()
    opt = build(name, problem)
    held = params_of(opt)
    assert len(held) == len({id(p) for p in held}) == len(list(problem.net.parameters()))
    assert isinstance(opt, torch.optim.Optimizer)


@pytest.mark.parametrize("name", PRESETS)
def test_a_zero_learning_rate_in_every_group_freezes_the_weights(name):
    problem = Problem()
    opt = build(name, problem)
    for group in opt.param_groups:  # what a scheduler sets, group by group
        group["lr"] = 0.0
    before = [p.detach().clone() for p in problem.net.parameters()]
    for _ in range(2):
        take_step(name, problem, opt)
    for (param_name, p), b in zip(problem.net.named_parameters(), before):
        assert torch.equal(p, b), param_name
