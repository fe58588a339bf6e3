"""MTAdamV2 against torch.optim's contract: the generic checks that PyTorch runs on its own optimizers
(copy, pickle, state_dict, hooks, step(closure), old checkpoints, parameter groups, error inputs),
driven by an OptimizerInfo from torch.testing._internal.common_optimizers."""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch
import torch.backends
from torch.nn import Parameter
from torch.optim.lr_scheduler import ReduceLROnPlateau, StepLR
from torch.testing._internal.common_optimizers import (
    ErrorOptimizerInput,
    OptimizerErrorEnum,
    OptimizerInfo,
    OptimizerInput,
    get_error_inputs_for_all_optims,
)

from mtbench import ops
from mtbench.optim import MTAdamV2

# Importing PyTorch's test helpers calls torch.backends.disable_global_flags() for the whole process,
# as PyTorch's own suite wants; undone here so that the rest of this suite (the trainer's tests
# included) may set backend flags as a user would.
torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True


def optim_inputs_func_mtadamv2(device, dtype=None):
    """Constructor keyword sets that every generic test below runs with."""
    fused = [
        OptimizerInput(params=None, kwargs={"impl": "fused"}, desc="fused"),
        OptimizerInput(params=None, kwargs={"impl": "fused", "task_weights": (0.2, 0.3, 0.5), "weight_decay": 0.1},
                       desc="fused, three tasks, weight_decay"),
    ]
    return [
        OptimizerInput(params=None, kwargs={}, desc="default"),
        OptimizerInput(params=None, kwargs={"lr": 0.01}, desc="non-default lr"),
        OptimizerInput(params=None, kwargs={"lr": torch.tensor(0.01)}, desc="Tensor lr"),
        OptimizerInput(params=None, kwargs={"lr": np.float32(0.01), "betas": (np.float64(0.8), 0.99),
                                            "eps": np.float32(1e-6), "task_weights": (np.float32(0.5), 1)},
                       desc="numpy hyperparameters"),
        OptimizerInput(params=None, kwargs={"weight_decay": 0.1}, desc="nonzero weight_decay"),
        OptimizerInput(params=None, kwargs={"betas": (0.8, 0.99), "norm_beta": 0.5}, desc="betas and norm_beta"),
        OptimizerInput(params=None, kwargs={"task_weights": (1.0,)}, desc="one task"),
        OptimizerInput(params=None, kwargs={"task_weights": (0.2, 0.3, 0.5)}, desc="three tasks"),
        OptimizerInput(params=None, kwargs={"task_weights": (0.1,) * (ops.MAX_TASKS + 1)},
                       desc="more tasks than one fused call takes"),
        OptimizerInput(params=None, kwargs={"impl": "reference"}, desc="reference"),
    ] + (fused if ops.supports(device) else [])


def optim_error_inputs_func_mtadamv2(device, dtype):
    """PyTorch's error inputs for every optimizer plus MTAdamV2's own, each with its type and message."""
    error_inputs = get_error_inputs_for_all_optims(device, dtype)
    if torch.device(device).type != "cpu":
        return error_inputs

    def bad(kwargs, error_type, regex, params=None, desc=None):
        return ErrorOptimizerInput(OptimizerInput(params=params, kwargs=kwargs, desc=desc or str(kwargs)),
                                   error_type=error_type, error_regex=regex)

    sparse = Parameter(torch.ones(3, device=device, dtype=dtype))
    sparse.grad = torch.ones(3, device=device, dtype=dtype).to_sparse()
    too_many = (0.1,) * (ops.MAX_TASKS + 1)
    return error_inputs + [
        bad(dict(lr=-1.0), ValueError, r"^lr must be >= 0.0, got -1.0$"),
        bad(dict(lr=np.float32(-1.0)), ValueError, r"^lr must be >= 0.0, got -1.0$"),
        bad(dict(lr="fast"), TypeError, r"^lr must be a real number or a 1-element tensor, got 'fast'$"),
        bad(dict(lr=True), TypeError, r"^lr must be a real number or a 1-element tensor, got True$"),
        bad(dict(lr=torch.tensor(-1.0)), ValueError, r"^lr must be >= 0.0, got -1.0$"),
        bad(dict(betas=(1.0, 0.9)), ValueError, r"^betas\[0\] must be in \[0.0, 1.0\), got 1.0$"),
        bad(dict(betas=(0.9, np.float64(1.0))), ValueError, r"^betas\[1\] must be in \[0.0, 1.0\), got 1.0$"),
        bad(dict(betas=(0.9,)), ValueError, r"^betas must be a pair \(beta1, beta2\), got \(0.9,\)$"),
        bad(dict(betas=(torch.tensor([0.9, 0.9]), 0.99)), ValueError, r"^Tensor betas\[0\] must be 1-element, got "
                                                                      r"shape \(2,\)$"),
        bad(dict(norm_beta=1.5), ValueError, r"^norm_beta must be in \[0.0, 1.0\), got 1.5$"),
        bad(dict(eps=-1e-8), ValueError, r"^eps must be >= 0.0, got -1e-08$"),
        bad(dict(weight_decay=float("nan")), ValueError, r"^weight_decay must be >= 0.0, got nan$"),
        bad(dict(weight_decay=-1), ValueError, r"^weight_decay must be >= 0.0, got -1$"),
        bad(dict(task_weights=()), ValueError, r"^task_weights must be a non-empty sequence of weights"),
        bad(dict(task_weights="ab"), ValueError, r"^task_weights must be a non-empty sequence of weights"),
        bad(dict(task_weights=(0.5, -1)), ValueError, r"^task_weights\[1\] must be >= 0.0, got -1$"),
        bad(dict(task_weights=(0.5, float("inf"))), ValueError, r"^task_weights\[1\] must be >= 0.0, got inf$"),
        bad(dict(impl="fast"), ValueError, r"^impl must be one of auto, fused, reference, got 'fast'$"),
        bad(dict(impl="fused", task_weights=too_many), ValueError,
            rf"^impl='fused' takes at most {ops.MAX_TASKS} tasks \(one compiled call\), got {ops.MAX_TASKS + 1}"),
        bad({}, ValueError, r"^task_weights of a parameter group must hold 2 weights",
            params=[{"params": [Parameter(torch.ones(2))], "task_weights": (1.0,)}], desc="group of other task count"),
        bad({}, TypeError, r"^MTAdamV2 optimizes floating-point parameters, got one of dtype torch.int64$",
            params=[torch.ones(2, dtype=torch.long)], desc="integer parameter"),
        bad({}, TypeError, r"^MTAdamV2 optimizes floating-point parameters, got one of dtype torch.complex64$",
            params=[torch.ones(2, dtype=torch.complex64)], desc="complex parameter"),
        ErrorOptimizerInput(OptimizerInput(params=[sparse], kwargs={}, desc="sparse .grad"),
                            error_on=OptimizerErrorEnum.STEP_ERROR, error_type=RuntimeError,
                            error_regex=r"^MTAdamV2 does not support sparse gradients \(the \.grad of parameter 0\)"),
    ]


MTADAMV2_INFO = OptimizerInfo(
    MTAdamV2,
    optim_inputs_func=optim_inputs_func_mtadamv2,
    optim_error_inputs_func=optim_error_inputs_func_mtadamv2,
    scheduler_inputs=([lambda opt: StepLR(opt, gamma=0.9, step_size=10)], [lambda opt: ReduceLROnPlateau(opt)]),
    supported_impls=(),  # none of foreach / fused / differentiable: `impl` is MTAdamV2's own switch
    not_og_supported_flags=(),
    supports_complex=False,
)


def cases():
    """(device, desc) of every optimizer input; the CUDA ones skip with a reason without a GPU."""
    return [pytest.param(device, i.desc, id=f"{device}-{i.desc}", marks=[pytest.mark.cuda] if device == "cuda" else [])
            for device in ("cpu", "cuda") for i in MTADAMV2_INFO.optim_inputs_func(device=device)]


CASES = cases()


def kwargs_for(device: str, desc: str) -> dict:
    """A fresh copy of the input's kwargs (tensor hyperparameters are mutated by schedulers)."""
    (found,) = [i for i in MTADAMV2_INFO.optim_inputs_func(device=device) if i.desc == desc]
    return found.kwargs


class Problem:
    """A linear layer fitted to one target per task; the tasks' losses differ in scale by 10x each."""

    def __init__(self, device: str, num_tasks: int, seed: int = 0, contiguous: bool = True):
        g = torch.Generator().manual_seed(seed)
        weight = torch.randn(10, 5, 2, generator=g) if not contiguous else torch.randn(10, 5, generator=g)
        bias = torch.randn(10, 2, generator=g) if not contiguous else torch.randn(10, generator=g)
        if not contiguous:
            weight, bias = weight[..., 0], bias[..., 0]
        self.weight = Parameter(weight.to(device))
        self.bias = Parameter(bias.to(device))
        self.inputs = [torch.randn(5, generator=g).to(device) for _ in range(num_tasks)]
        self.targets = [torch.randn(10, generator=g).to(device) for _ in range(num_tasks)]

    @property
    def params(self) -> list[Parameter]:
        return [self.weight, self.bias]

    def losses(self) -> list[torch.Tensor]:
        return [10.0**t * (self.weight.mv(x) + self.bias - y).pow(2).mean()
                for t, (x, y) in enumerate(zip(self.inputs, self.targets))]

    def closure(self, opt):
        def closure():
            opt.zero_grad()
            loss = sum(self.losses())
            loss.backward()
            return loss
        return closure

    def task_grads(self) -> list[list[torch.Tensor]]:
        return [list(torch.autograd.grad(loss, self.params)) for loss in self.losses()]


def random_task_grads(params, num_tasks: int, step: int) -> list[list[torch.Tensor | None]]:
    """Reproducible per-task gradients; the last task skips the last parameter on odd steps."""
    g = torch.Generator().manual_seed(100 + step)
    grads = [[torch.randn(p.shape, generator=g).to(p.device, p.dtype) for p in params] for _ in range(num_tasks)]
    if num_tasks > 1 and step % 2:
        grads[-1][-1] = None
    return grads


def clone_params(params) -> list[Parameter]:
    return [Parameter(p.detach().clone()) for p in params]


def assert_same_optimizer(a: MTAdamV2, b: MTAdamV2) -> None:
    """Same parameters and the same state, bit for bit."""
    params_a = [p for group in a.param_groups for p in group["params"]]
    params_b = [p for group in b.param_groups for p in group["params"]]
    assert len(params_a) == len(params_b)
    for i, (pa, pb) in enumerate(zip(params_a, params_b)):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=lambda m: f"param {i}: {m}")
        assert a.state[pa].keys() == b.state[pb].keys()
        for key, value in a.state[pa].items():
            torch.testing.assert_close(value, b.state[pb][key], rtol=0, atol=0,
                                       msg=lambda m: f"state {key!r} of param {i}: {m}")


def primed(device: str, desc: str, steps: int = 3) -> MTAdamV2:
    """An optimizer of this input that has taken `steps` per-task-gradient steps."""
    problem = Problem(device, 1)
    opt = MTAdamV2(problem.params, **kwargs_for(device, desc))
    for step in range(steps):
        opt.step(random_task_grads(problem.params, opt.num_tasks, step))
    return opt


def step_both(a: MTAdamV2, b: MTAdamV2, steps: range) -> None:
    for step in steps:
        for opt in (a, b):
            params = [p for group in opt.param_groups for p in group["params"]]
            opt.step(random_task_grads(params, opt.num_tasks, step))
        assert_same_optimizer(a, b)


def save_and_load(obj, weights_only: bool):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=weights_only)


def test_backend_flags_stay_settable():
    assert not torch.backends.flags_frozen()


def test_optimizer_inputs_name_no_global_cliquey_flag():
    for optim_input in MTADAMV2_INFO.optim_inputs_func(device="cpu"):
        assert not {"foreach", "fused", "differentiable"} & set(optim_input.kwargs)


ERROR_INPUTS = MTADAMV2_INFO.optim_error_inputs_func(device="cpu", dtype=torch.float32)


@pytest.mark.parametrize("error_input", ERROR_INPUTS, ids=lambda e: e.optimizer_error_input.desc)
def test_errors(error_input):
    optim_input = error_input.optimizer_error_input
    params, kwargs = optim_input.params, optim_input.kwargs
    if issubclass(error_input.error_type, Warning):
        expect = pytest.warns(error_input.error_type, match=error_input.error_regex)
    else:
        expect = pytest.raises(error_input.error_type, match=error_input.error_regex)
    if error_input.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR:
        with expect:
            MTADAMV2_INFO.optim_cls(params, **kwargs)
    else:
        opt = MTADAMV2_INFO.optim_cls(params, **kwargs)
        before = [p.detach().clone() for p in params]
        with expect:
            opt.step()
        assert not opt.state and all(torch.equal(p, b) for p, b in zip(params, before))


@pytest.mark.parametrize("device, desc", CASES)
@pytest.mark.parametrize("contiguous", [True, False], ids=["contiguous", "non_contiguous"])
@pytest.mark.parametrize("schedulers", [None, *MTADAMV2_INFO.scheduler_inputs],
                         ids=["no_scheduler", "step_lr", "plateau"])
def test_step_closure_goes_right_direction(device, desc, contiguous, schedulers):
    problem = Problem(device, 1, contiguous=contiguous)
    opt = MTAdamV2(problem.params, **kwargs_for(device, desc))
    running = [make(opt) for make in schedulers or []]
    closure = problem.closure(opt)
    initial = closure().item()
    for _ in range(20):
        loss = opt.step(closure)
        for scheduler in running:
            scheduler.step(loss.detach()) if isinstance(scheduler, ReduceLROnPlateau) else scheduler.step()
    assert closure().item() < initial


@pytest.mark.parametrize("device, desc", CASES)
def test_per_task_steps_lower_every_task(device, desc):
    kwargs = kwargs_for(device, desc)
    kwargs["lr"] = 0.05
    problem = Problem(device, len(kwargs.get("task_weights", (0.5, 0.5))))
    opt = MTAdamV2(problem.params, **kwargs)
    initial = [loss.item() for loss in problem.losses()]
    for _ in range(30):
        opt.step(problem.task_grads())
    assert all(loss.item() < before for loss, before in zip(problem.losses(), initial))


@pytest.mark.parametrize("device, desc", CASES)
def test_step_returns_the_closure_loss(device, desc):
    problem = Problem(device, 1)
    opt = MTAdamV2(problem.params, **kwargs_for(device, desc))
    twin = copy.deepcopy(opt)
    calls = []

    def closure():
        calls.append(1)
        return torch.tensor(3.0)

    grads = random_task_grads(problem.params, opt.num_tasks, 0)
    # A closure with task_grads: it runs first and its loss comes back; the step uses task_grads.
    assert opt.step(grads, closure=closure).item() == 3.0 and len(calls) == 1
    twin.step(grads)
    assert_same_optimizer(opt, twin)
    assert opt.step(closure=closure).item() == 3.0 and len(calls) == 2  # no .grad: nothing moves
    assert opt.step(closure).item() == 3.0 and len(calls) == 3
    assert_same_optimizer(opt, twin)
    with pytest.raises(TypeError, match=r"^step\(\) takes one closure"):
        opt.step(closure, closure=closure)


@pytest.mark.parametrize("device, desc", CASES)
@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch.save"])
def test_copied_optimizer_steps_identically(device, desc, how):
    opt = primed(device, desc)
    if how == "deepcopy":
        copied = copy.deepcopy(opt)
    elif how == "pickle":
        copied = pickle.loads(pickle.dumps(opt))
    else:  # a whole optimizer object is not weights: it loads with weights_only=False
        copied = save_and_load(opt, weights_only=False)
    assert {k for k in vars(opt) if not k.startswith("_")} == {k for k in vars(copied) if not k.startswith("_")}
    assert copied.impl == opt.impl and copied.num_tasks == opt.num_tasks
    assert_same_optimizer(opt, copied)
    step_both(opt, copied, range(3, 6))


@pytest.mark.parametrize("device, desc", CASES)
@pytest.mark.parametrize("weights_only", [True, False], ids=["weights_only", "full_load"])
def test_state_dict_round_trip_continues_identically(device, desc, weights_only):
    opt = primed(device, desc)
    state_dict = opt.state_dict()
    loaded = save_and_load(state_dict, weights_only=weights_only)
    torch.testing.assert_close(loaded, state_dict, rtol=0, atol=0)
    kept = copy.deepcopy(loaded)

    params = clone_params(p for group in opt.param_groups for p in group["params"])
    resumed = MTAdamV2(params, **kwargs_for(device, desc))
    resumed.load_state_dict(loaded)
    torch.testing.assert_close(resumed.state_dict(), opt.state_dict(), rtol=0, atol=0)
    step_both(opt, resumed, range(3, 6))
    # Stepping the loaded optimizer leaves the dictionary it was loaded from as it was.
    torch.testing.assert_close(loaded, kept, rtol=0, atol=0)


@pytest.mark.parametrize("device, desc", CASES)
def test_older_state_dict_with_number_step_loads(device, desc):
    opt = primed(device, desc)
    old = copy.deepcopy(opt.state_dict())
    for param_state in old["state"].values():
        param_state["step"] = param_state["step"].item()
    params = clone_params(p for group in opt.param_groups for p in group["params"])
    resumed = MTAdamV2(params, **kwargs_for(device, desc))
    resumed.load_state_dict(old)
    for state in resumed.state.values():
        assert state["step"].dtype == torch.float32 and state["step"].device.type == "cpu"
    step_both(opt, resumed, range(3, 6))


@pytest.mark.parametrize("device, desc", CASES)
def test_state_dict_of_another_task_count_is_refused(device, desc):
    kwargs = kwargs_for(device, desc)
    opt = primed(device, desc)
    other_count = opt.num_tasks + 1 if opt.num_tasks <= ops.MAX_TASKS else 2
    other_kwargs = {**kwargs, "task_weights": (0.5,) * other_count}
    other_kwargs.pop("impl", None)
    other = MTAdamV2(clone_params(Problem(device, 1).params), **other_kwargs)
    before = copy.deepcopy(other.state_dict())
    message = rf"holds {opt.num_tasks} tasks; this optimizer has {other_count} \(len\(task_weights\)\)"
    with pytest.raises(ValueError, match=message):
        other.load_state_dict(opt.state_dict())
    torch.testing.assert_close(other.state_dict(), before, rtol=0, atol=0)
    # Without any state yet, the parameter groups' task weights tell the count.
    fresh = MTAdamV2(clone_params(Problem(device, 1).params), **kwargs)
    with pytest.raises(ValueError, match=message):
        other.load_state_dict(fresh.state_dict())


@pytest.mark.parametrize("device, desc", CASES)
def test_load_state_dict_hooks_are_honoured(device, desc):
    opt = primed(device, desc)
    saved = copy.deepcopy(opt.state_dict())

    def set_lr(optimizer, state_dict):
        state_dict["param_groups"][0]["lr"] = 0.002

    def replace_moments(optimizer, state_dict):
        replaced = copy.deepcopy(state_dict)
        replaced["param_groups"][0]["lr"] = 0.003
        for param_state in replaced["state"].values():
            param_state["exp_avg"] = torch.full_like(param_state["exp_avg"], 0.25)
        return replaced

    def mark_loaded(optimizer):
        for state in optimizer.state.values():
            state["exp_avg_sq"].fill_(0.5)
        optimizer.state["ran_post_hook_after_pre_hook2"] = optimizer.param_groups[0]["lr"] == 0.003

    opt.register_load_state_dict_pre_hook(set_lr)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["lr"] == 0.002
    opt.register_load_state_dict_pre_hook(replace_moments, prepend=True)  # set_lr still has the last word
    opt.register_load_state_dict_post_hook(mark_loaded)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["lr"] == 0.002
    assert opt.state.pop("ran_post_hook_after_pre_hook2") is False
    for state in opt.state.values():
        assert (state["exp_avg"] == 0.25).all() and (state["exp_avg_sq"] == 0.5).all()

    fresh = primed(device, desc)
    fresh.register_load_state_dict_pre_hook(replace_moments)
    fresh.register_load_state_dict_post_hook(mark_loaded)
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["lr"] == 0.003 and fresh.state.pop("ran_post_hook_after_pre_hook2") is True


@pytest.mark.parametrize("device, desc", CASES)
def test_state_dict_hooks_are_honoured(device, desc):
    opt = primed(device, desc)
    opt.register_state_dict_pre_hook(lambda optimizer: optimizer.state.__setitem__("extra", 1))

    def post_hook(optimizer, state_dict):
        state_dict["state"].pop("extra")
        state_dict["post_hook_saw_extra"] = True

    opt.register_state_dict_post_hook(post_hook)
    state_dict = opt.state_dict()
    assert state_dict["post_hook_saw_extra"] and "extra" not in state_dict["state"]


@pytest.mark.parametrize("device, desc", CASES)
def test_step_hooks_are_honoured(device, desc):
    problem = Problem(device, 1)
    opt = MTAdamV2(problem.params, **kwargs_for(device, desc))
    calls = []
    grads = random_task_grads(problem.params, opt.num_tasks, 0)
    zeros = [[None if g is None else torch.zeros_like(g) for g in task] for task in grads]

    def pre_hook(optimizer, args, kwargs):
        calls.append(("pre", len(args), sorted(kwargs)))
        return (optimizer, zeros), kwargs  # the step takes what a pre-hook hands on

    def post_hook(optimizer, args, kwargs):
        calls.append(("post", len(args), sorted(kwargs)))

    before = [p.detach().clone() for p in problem.params]
    pre, post = opt.register_step_pre_hook(pre_hook), opt.register_step_post_hook(post_hook)
    opt.step(grads)
    assert calls == [("pre", 2, []), ("post", 2, [])]
    if not opt.defaults["weight_decay"]:  # zero gradients move nothing but weight decay
        assert all(torch.equal(p, b) for p, b in zip(problem.params, before))
    pre.remove()
    post.remove()
    opt.step(grads)
    assert len(calls) == 2
    assert not all(torch.equal(p, b) for p, b in zip(problem.params, before))


@pytest.mark.parametrize("device, desc", CASES)
def test_param_group_lr_is_honoured(device, desc):
    kwargs = kwargs_for(device, desc)
    if kwargs.get("lr", 0) == 0:
        kwargs["lr"] = 1e-3
    problem = Problem(device, 1)
    irrelevant = Parameter(torch.randn(2, device=device))
    irrelevant_before = irrelevant.detach().clone()
    outer = {k: v for k, v in kwargs.items() if k in ("impl", "task_weights")}
    opt = MTAdamV2([{"params": problem.params, **kwargs}, {"params": [irrelevant]}], **outer, lr=1e-28)
    closure = problem.closure(opt)
    initial = closure().item()
    for _ in range(20):
        closure()
        irrelevant.grad = torch.rand_like(irrelevant)
        opt.step()
    assert closure().item() < initial
    torch.testing.assert_close(irrelevant, irrelevant_before, rtol=0, atol=0)


@pytest.mark.parametrize("device, desc", CASES)
def test_parameter_without_gradient_is_untouched(device, desc):
    params = [Parameter(torch.randn(2, 3, device=device)) for _ in range(2)]
    before = [p.detach().clone() for p in params]
    opt = MTAdamV2(params, **kwargs_for(device, desc))
    assert opt.step(lambda: torch.tensor([1.0])).item() == 1.0
    assert not opt.state and all(torch.equal(p, b) for p, b in zip(params, before))
    params[0].grad = torch.ones_like(params[0])
    opt.step()
    assert params[1] not in opt.state and torch.equal(params[1], before[1])


@pytest.mark.parametrize("device, desc", CASES)
def test_zero_gradient_step_is_a_no_op(device, desc):
    kwargs = kwargs_for(device, desc)
    if kwargs.get("weight_decay", 0):
        pytest.skip("weight decay moves a parameter whatever its gradient")
    param = Parameter(torch.randn(5, 1, device=device))
    before = param.detach().clone()
    opt = MTAdamV2([param], **kwargs)
    param.grad = torch.zeros_like(param)
    opt.step(lambda: torch.tensor([1.0]))
    assert torch.equal(param, before) and len(opt.state[param]) > 0


@pytest.mark.parametrize("device, desc", CASES)
def test_tensor_and_numpy_hyperparameters_match_floats(device, desc):
    kwargs = kwargs_for(device, desc)
    as_float = {k: (tuple(float(x) for x in v) if isinstance(v, tuple) else v if isinstance(v, str) else float(v))
                for k, v in kwargs.items()}
    problem = Problem(device, 1)
    twin = clone_params(problem.params)
    opt, reference = MTAdamV2(problem.params, **kwargs), MTAdamV2(twin, **as_float)
    step_both(opt, reference, range(5))
    # What the state dict holds loads with weights_only: plain numbers and tensors, nothing of numpy.
    loaded = save_and_load(opt.state_dict(), weights_only=True)
    assert not any(type(v).__module__ == "numpy" for group in loaded["param_groups"] for v in group.values())


@pytest.mark.parametrize("device, desc", CASES)
def test_optimizer_prints_and_holds_state_after_a_step(device, desc):
    model = torch.nn.Linear(5, 5).to(device)
    opt = MTAdamV2(model.parameters(), **kwargs_for(device, desc))
    assert repr(opt).startswith("MTAdamV2 (")
    model(torch.rand(2, 5, device=device)).sum().backward()
    opt.step()
    assert len(opt.state) == 2 and all(len(state) == 4 for state in opt.state.values())
