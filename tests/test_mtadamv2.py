"""MTAdamV2: fused kernels against the reference, the MTAdam paper's rule, state_dict, argument errors."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import pytest
import torch

from mtbench import ops
from mtbench.optim import MTAdamV2

needs_ops = pytest.mark.skipif(not ops.available(), reason="compiled ops not built (pip install -e .)")

TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13),
              torch.bfloat16: dict(rtol=1e-2, atol=1e-3)}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of the parity problem and which tasks hand it a gradient in which step."""

    name: str
    shape: tuple[int, ...]
    transpose: bool = False  # a non-contiguous view instead of a fresh tensor
    only_last_task: bool = False  # tasks before the last never reach it
    missing: tuple[tuple[int, int], ...] = ()  # (task, step) pairs without a gradient
    zero_task: int | None = None  # this task's gradient is all zeros

    def reaches(self, task: int, step: int, num_tasks: int) -> bool:
        if self.only_last_task and task != num_tasks - 1:
            return False
        return (task, step) not in self.missing


PARAMS = [
    ParamSpec("zero_size", (0, 3)),
    ParamSpec("scalar", ()),
    ParamSpec("non_contiguous", (6, 4), transpose=True),
    ParamSpec("only_last_task", (5,), only_last_task=True),
    ParamSpec("task_missing_in_one_step", (3, 5), missing=((0, 7),)),
    ParamSpec("all_zero_gradient", (9,), zero_task=0),
    ParamSpec("vector_and_tail", (75,)),  # vectorised main loop plus a scalar tail
    ParamSpec("odd_size", (3, 7, 11)),  # 231: not a multiple of any vector width
    ParamSpec("late_task_missing", (19,), missing=((3, 2), (5, 4), (7, 9))),  # tasks of the second group
]


@dataclass(frozen=True)
class Variant:
    name: str
    hyper: dict = field(default_factory=dict)
    two_groups: bool = False


VARIANTS = [
    Variant("plain"),
    Variant("weight_decay", {"weight_decay": 0.1}),
    Variant("two_groups", two_groups=True),
    Variant("equal_task_weights", {"task_weights": "equal"}),
]


def make_params(dtype: torch.dtype, device: str, seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    params = []
    for spec in PARAMS:
        shape = spec.shape[::-1] if spec.transpose else spec.shape
        value = torch.randn(shape, generator=generator, dtype=torch.float64).to(device, dtype)
        params.append(torch.nn.Parameter(value.t() if spec.transpose else value))
    return params


def make_grads(params, num_tasks: int, step: int, seed: int = 1) -> list[list[torch.Tensor | None]]:
    generator = torch.Generator().manual_seed(seed * 1000 + step)
    task_grads = []
    for t in range(num_tasks):
        grads = []
        for spec, p in zip(PARAMS, params):
            g = torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.device, p.dtype)
            if spec.zero_task == t:
                g.zero_()
            grads.append(g if spec.reaches(t, step, num_tasks) else None)
        task_grads.append(grads)
    return task_grads


def make_optimizer(params, variant: Variant, num_tasks: int, impl: str) -> MTAdamV2:
    hyper = dict(variant.hyper)
    if hyper.pop("task_weights", None) == "equal":
        weights = [1.0 / num_tasks] * num_tasks
    else:
        weights = [0.5 + 0.25 * t for t in range(num_tasks)]
    if variant.two_groups:
        groups = [{"params": params[::2]}, {"params": params[1::2], "lr": 3e-3}]
    else:
        groups = params
    return MTAdamV2(groups, lr=1e-2, task_weights=weights, impl=impl, **hyper)


def ordered_params(opt: MTAdamV2) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


def grads_for(opt: MTAdamV2, params, task_grads):
    """task_grads (aligned with `params`) reordered to the optimizer's parameter order."""
    index = {id(p): i for i, p in enumerate(params)}
    return [[grads[index[id(p)]] for p in ordered_params(opt)] for grads in task_grads]


def assert_same_trajectory(opt_a: MTAdamV2, opt_b: MTAdamV2, dtype: torch.dtype) -> None:
    tol = TOLERANCES[dtype]
    for i, (a, b) in enumerate(zip(ordered_params(opt_a), ordered_params(opt_b))):
        torch.testing.assert_close(a, b, **tol, msg=lambda m: f"param {i}: {m}")
        state_a, state_b = opt_a.state[a], opt_b.state[b]
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            torch.testing.assert_close(state_a[key], state_b[key], **tol,
                                       msg=lambda m: f"state {key!r} of param {i}: {m}")


def run_pair(dtype, device, variant, num_tasks, impls=("fused", "reference"), steps=20):
    params_a = make_params(dtype, device)
    params_b = make_params(dtype, device)
    opt_a = make_optimizer(params_a, variant, num_tasks, impls[0])
    opt_b = make_optimizer(params_b, variant, num_tasks, impls[1])
    for step in range(steps):
        task_grads = make_grads(params_a, num_tasks, step)
        opt_a.step(grads_for(opt_a, params_a, task_grads))
        opt_b.step(grads_for(opt_b, params_b, [[None if g is None else g.clone() for g in grads]
                                               for grads in task_grads]))
    return opt_a, opt_b, params_a


@needs_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
@pytest.mark.parametrize("num_tasks", range(1, ops.MAX_TASKS + 1))
def test_fused_matches_reference(dtype, variant, num_tasks):
    opt_fused, opt_reference, params = run_pair(dtype, "cpu", variant, num_tasks)
    assert_same_trajectory(opt_fused, opt_reference, dtype)
    # The tasks that never reach `only_last_task` hold no state for it: never-set norms, zero rows.
    state = opt_fused.state[params[[spec.name for spec in PARAMS].index("only_last_task")]]
    assert (state["norm_avg"][:-1] < 0).all() and not state["exp_avg"][:-1].any()


@needs_ops
@pytest.mark.parametrize("num_tasks", [2, 5, 8])
def test_fused_matches_reference_across_chunks(num_tasks):
    # Large enough for several chunks of the CPU kernel and for its threads to share the work;
    # beyond four tasks the kernel walks each chunk once per group of tasks (NOTE [task groups]).
    shapes = [(70_001,), (3, 40_000)]
    generator = torch.Generator().manual_seed(5)
    params = [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in shapes]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    weights = [1.0 + t for t in range(num_tasks)]
    fused = MTAdamV2(params, impl="fused", task_weights=weights)
    reference = MTAdamV2(twins, impl="reference", task_weights=weights)
    for _ in range(5):
        task_grads = [[torch.randn(s, generator=generator) for s in shapes] for _ in range(num_tasks)]
        fused.step(task_grads)
        reference.step(task_grads)
    assert_same_trajectory(fused, reference, torch.float32)


@pytest.mark.cuda(ops=True)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("num_tasks", [1, 2, 3])
def test_cuda_fused_matches_reference(dtype, num_tasks):
    opt_fused, opt_reference, _ = run_pair(dtype, "cuda", VARIANTS[1], num_tasks)
    assert_same_trajectory(opt_fused, opt_reference, dtype)


@pytest.mark.cuda(ops=True)
def test_cuda_matches_cpu():
    opt_cuda, _, _ = run_pair(torch.float64, "cuda", VARIANTS[0], 2, impls=("fused", "fused"))
    opt_cpu, _, _ = run_pair(torch.float64, "cpu", VARIANTS[0], 2, impls=("fused", "fused"))
    for a, b in zip(ordered_params(opt_cuda), ordered_params(opt_cpu)):
        torch.testing.assert_close(a.cpu(), b, **TOLERANCES[torch.float64])


def mtadam_paper_step(params, task_grads, state, *, lr, betas, norm_beta, eps, weights):
    """The update rule of MTAdam (Malkiel & Wolf, EMNLP 2021, Algorithm 1) for tasks that all
    reach every parameter, written from the paper in float64: per-task gradients are rescaled
    to the running norm of the first task's gradients, each task keeps Adam moments, and the
    step divides the summed first moments by the largest per-task denominator."""
    beta1, beta2 = betas
    state["k"] = k = state.get("k", 0) + 1
    for i, param in enumerate(params):
        norms = state.setdefault(("norms", i), [None] * len(weights))
        moments = state.setdefault(("moments", i), [[torch.zeros_like(param), torch.zeros_like(param)]
                                                    for _ in weights])
        for t, grads in enumerate(task_grads):
            nu = grads[i].norm().item()
            norms[t] = nu if norms[t] is None else norm_beta * norms[t] + (1 - norm_beta) * nu
        numerator = torch.zeros_like(param)
        denominator = None
        for t, grads in enumerate(task_grads):
            g = weights[t] * norms[0] / norms[t] * grads[i]
            m, v = moments[t]
            m.copy_(beta1 * m + (1 - beta1) * g)
            v.copy_(beta2 * v + (1 - beta2) * g * g)
            d = torch.sqrt(v) / math.sqrt(1 - beta2**k) + eps
            denominator = d if denominator is None else torch.maximum(denominator, d)
            numerator += m
        param -= lr / (1 - beta1**k) * numerator / denominator


@pytest.mark.parametrize("impl", ["reference", pytest.param("fused", marks=needs_ops)])
@pytest.mark.parametrize("num_tasks", [2, 3])
def test_follows_mtadam_paper_rule(impl, num_tasks):
    generator = torch.Generator().manual_seed(3)
    shapes = [(4, 3), (5,), (2, 2, 3)]
    params = [torch.randn(s, generator=generator, dtype=torch.float64) for s in shapes]
    mine = [torch.nn.Parameter(p.clone()) for p in params]
    hyper = dict(lr=1e-2, betas=(0.9, 0.99), norm_beta=0.8, eps=1e-8)
    weights = [1.0, 0.5, 2.0][:num_tasks]
    opt = MTAdamV2(mine, task_weights=weights, impl=impl, **hyper)
    paper_state = {}
    for _ in range(25):
        # Tasks of very different gradient scales, which the rescaling is there to balance.
        task_grads = [[torch.randn(s, generator=generator, dtype=torch.float64) * 10.0**t for s in shapes]
                      for t in range(num_tasks)]
        opt.step(task_grads)
        with torch.no_grad():
            mtadam_paper_step(params, task_grads, paper_state, weights=weights, **hyper)
        for a, b in zip(mine, params):
            torch.testing.assert_close(a.detach(), b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", ["reference", pytest.param("fused", marks=needs_ops)])
def test_state_dict_resume_is_bit_identical(impl):
    params = make_params(torch.float32, "cpu")
    opt = make_optimizer(params, VARIANTS[2], 2, impl)
    for step in range(5):
        opt.step(grads_for(opt, params, make_grads(params, 2, step)))
    saved = copy.deepcopy(opt.state_dict())
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = make_optimizer(resumed_params, VARIANTS[2], 2, impl)
    resumed.load_state_dict(saved)
    for step in range(5, 10):
        opt.step(grads_for(opt, params, make_grads(params, 2, step)))
        resumed.step(grads_for(resumed, resumed_params, make_grads(resumed_params, 2, step)))
    for a, b in zip(ordered_params(opt), ordered_params(resumed)):
        assert torch.equal(a, b)
        for key in opt.state[a]:
            assert torch.equal(opt.state[a][key], resumed.state[b][key]), key


@needs_ops
def test_state_saved_by_fused_resumes_with_reference():
    params = make_params(torch.float32, "cpu")
    fused = make_optimizer(params, VARIANTS[0], 2, "fused")
    for step in range(5):
        fused.step(make_grads(params, 2, step))
    other_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    reference = make_optimizer(other_params, VARIANTS[0], 2, "reference")
    reference.load_state_dict(copy.deepcopy(fused.state_dict()))
    for step in range(5, 15):
        fused.step(make_grads(params, 2, step))
        reference.step(make_grads(other_params, 2, step))
    assert_same_trajectory(fused, reference, torch.float32)


def test_bfloat16_state_survives_state_dict():
    param = torch.nn.Parameter(torch.randn(8, dtype=torch.bfloat16))
    opt = MTAdamV2([param])
    opt.step([[torch.randn(8, dtype=torch.bfloat16)], [torch.randn(8, dtype=torch.bfloat16)]])
    fresh = MTAdamV2([torch.nn.Parameter(param.detach().clone())])
    fresh.load_state_dict(opt.state_dict())
    for key, value in opt.state[param].items():
        loaded = next(iter(fresh.state.values()))[key]
        assert loaded.dtype == value.dtype and torch.equal(loaded, value), key


@pytest.mark.parametrize("impl", ["reference", pytest.param("fused", marks=needs_ops)])
def test_plain_step_reads_grad_as_task_zero(impl):
    params = make_params(torch.float32, "cpu")[1:4]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt, twin_opt = MTAdamV2(params, impl=impl), MTAdamV2(twins, impl=impl)
    for step in range(3):
        grads = [torch.full_like(p, float(step + 1)) for p in params]
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        twin_opt.step([grads, [None] * len(grads)])
    for a, b in zip(params, twins):
        assert torch.equal(a, b)


@pytest.mark.parametrize("impl", ["reference", pytest.param("fused", marks=needs_ops)])
def test_parameter_without_gradient_is_untouched(impl):
    moving, still = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = MTAdamV2([moving, still], impl=impl)
    opt.step([[torch.ones(3), None], [torch.ones(3), None]])
    assert not torch.equal(moving, torch.ones(3))
    assert torch.equal(still, torch.ones(2)) and still not in opt.state


@pytest.mark.parametrize("impl", ["reference", pytest.param("fused", marks=needs_ops)])
def test_group_lr_is_honoured(impl):
    frozen, moving = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))
    opt = MTAdamV2([{"params": [frozen], "lr": 0.0}, {"params": [moving]}], impl=impl)
    for _ in range(3):
        opt.step([[torch.ones(4), torch.ones(4)], [torch.ones(4), torch.ones(4)]])
    assert torch.equal(frozen, torch.ones(4)) and opt.state[frozen]["step"].item() == 3
    assert (moving < 1).all()


def test_lowers_a_loss():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(10))
    target = torch.randn(10)
    opt = MTAdamV2([w], lr=0.1)

    def losses():  # two tasks of very different scales that agree on the optimum
        return [((w - target) ** 2).mean(), 1e3 * ((w[:5] - target[:5]) ** 2).mean()]

    before = sum(loss.item() for loss in losses())
    for _ in range(60):
        opt.step([torch.autograd.grad(loss, [w]) for loss in losses()])
    assert sum(loss.item() for loss in losses()) < 0.05 * before


CONSTRUCTOR_ERRORS = [
    (dict(lr=-1.0), ValueError, r"lr must be >= 0.0, got -1.0"),
    (dict(lr="fast"), TypeError, r"lr must be a real number or a 1-element tensor, got 'fast'"),
    (dict(betas=(1.0, 0.9)), ValueError, r"betas\[0\] must be in \[0.0, 1.0\), got 1.0"),
    (dict(betas=(0.9,)), ValueError, r"betas must be a pair"),
    (dict(norm_beta=1.5), ValueError, r"norm_beta must be in \[0.0, 1.0\), got 1.5"),
    (dict(eps=-1e-8), ValueError, r"eps must be >= 0.0"),
    (dict(weight_decay=float("nan")), ValueError, r"weight_decay must be >= 0.0, got nan"),
    (dict(task_weights=()), ValueError, r"task_weights must be a non-empty sequence"),
    (dict(task_weights=(0.5, -1)), ValueError, r"task_weights\[1\] must be >= 0.0, got -1"),
    (dict(impl="fast"), ValueError, r"impl must be one of auto, fused, reference, got 'fast'"),
]


@pytest.mark.parametrize("kwargs, error, message", CONSTRUCTOR_ERRORS, ids=lambda x: str(x)[:30])
def test_constructor_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        MTAdamV2([torch.nn.Parameter(torch.ones(2))], **kwargs)


def test_group_with_other_task_count_is_rejected():
    with pytest.raises(ValueError, match=r"task_weights of a parameter group must hold 2 weights"):
        MTAdamV2([{"params": [torch.nn.Parameter(torch.ones(2))], "task_weights": (1.0,)}])


def test_integer_parameter_is_rejected():
    with pytest.raises(TypeError, match=r"floating-point parameters, got one of dtype torch.int64"):
        MTAdamV2([torch.ones(2, dtype=torch.long)])


STEP_ERRORS = [
    (lambda p: [[p.grad]], ValueError, r"task_grads holds 1 tasks; expected 2 \(len\(task_weights\)\)"),
    (lambda p: [[p.grad], [p.grad, p.grad]], ValueError, r"task_grads\[1\] must hold one gradient or None per "
                                                         r"parameter \(1\), got 2 entries"),
    (lambda p: [[torch.ones(3)], [None]], ValueError, r"task_grads\[0\]\[0\] has shape \(3,\); expected \(2,\)"),
    (lambda p: [[None], [torch.ones(2, dtype=torch.float64)]], TypeError,
     r"task_grads\[1\]\[0\] has dtype torch.float64; expected torch.float32"),
    (lambda p: [[torch.ones(2, device="meta")], [None]], ValueError,
     r"task_grads\[0\]\[0\] is on meta; expected cpu"),
    (lambda p: [["grad"], [None]], TypeError, r"task_grads\[0\]\[0\] must be a tensor or None, got str"),
    (lambda p: [[torch.ones(2).to_sparse()], [None]], RuntimeError,
     r"MTAdamV2 does not support sparse gradients \(task_grads\[0\]\[0\]\)"),
    (lambda p: {"task": [p.grad]}, TypeError, r"task_grads must be a sequence of 2 gradient lists, one per task, "
                                              r"got dict"),
]


@pytest.mark.parametrize("impl", ["reference", pytest.param("fused", marks=needs_ops)])
@pytest.mark.parametrize("make_task_grads, error, message", STEP_ERRORS)
def test_step_errors(impl, make_task_grads, error, message):
    param = torch.nn.Parameter(torch.ones(2))
    param.grad = torch.ones(2)
    opt = MTAdamV2([param], impl=impl)
    with pytest.raises(error, match=message):
        opt.step(make_task_grads(param))
    assert torch.equal(param, torch.ones(2)) and not opt.state


def test_fused_needs_the_compiled_ops_for_the_device():
    if ops.supports("cpu"):
        params = [torch.nn.Parameter(torch.ones(2, device="meta"))]
    else:
        params = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError, match=r"impl='fused' needs the compiled ops for"):
        MTAdamV2(params, impl="fused")


@pytest.mark.parametrize("impl", ["reference", pytest.param("fused", marks=needs_ops)])
@pytest.mark.parametrize("key, value, message", [
    ("lr", -1.0, r"lr must be >= 0.0, got -1.0"),
    ("betas", (0.9, 1.0), r"betas\[1\] must be in \[0.0, 1.0\), got 1.0"),
    ("task_weights", (0.5,), r"task_weights of a parameter group must hold 2 weights"),
])
def test_step_refused_on_a_changed_hyperparameter_changes_nothing(impl, key, value, message):
    params = make_params(torch.float32, "cpu")
    opt = make_optimizer(params, VARIANTS[2], 2, impl)
    opt.step(grads_for(opt, params, make_grads(params, 2, 0)))
    before = copy.deepcopy(opt.state_dict())
    values = [p.detach().clone() for p in params]
    opt.param_groups[1][key] = value  # as a scheduler or a user could, after construction
    with pytest.raises(ValueError, match=message):
        opt.step(grads_for(opt, params, make_grads(params, 2, 1)))
    assert all(torch.equal(p, v) for p, v in zip(params, values))
    torch.testing.assert_close(opt.state_dict()["state"], before["state"], rtol=0, atol=0)


@pytest.mark.parametrize("num_tasks", [ops.MAX_TASKS + 1, ops.MAX_TASKS + 3])
def test_auto_takes_the_reference_beyond_the_fused_task_limit(num_tasks):
    opt_auto, opt_reference, _ = run_pair(torch.float32, "cpu", VARIANTS[0], num_tasks, impls=("auto", "reference"),
                                          steps=4)
    assert_same_trajectory(opt_auto, opt_reference, torch.float32)
    assert all(state["step"].item() == 4 for state in opt_auto.state.values())


def test_fused_refuses_more_tasks_than_one_call_takes():
    with pytest.raises(ValueError, match=rf"impl='fused' takes at most {ops.MAX_TASKS} tasks \(one compiled call\), "
                                         rf"got {ops.MAX_TASKS + 1} task weights; use impl='auto'"):
        MTAdamV2([torch.nn.Parameter(torch.ones(2))], task_weights=[0.1] * (ops.MAX_TASKS + 1), impl="fused")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_low_precision_state_dict_keeps_float32_state_through_hooks(dtype):
    param = torch.nn.Parameter(torch.randn(8, dtype=dtype))
    opt = MTAdamV2([param], impl="reference")
    opt.step([[torch.randn(8, dtype=dtype)], [torch.randn(8, dtype=dtype)]])
    saved = opt.state_dict()
    fresh_param = torch.nn.Parameter(param.detach().clone())
    fresh = MTAdamV2([fresh_param], impl="reference")
    seen = {}

    def post_hook(optimizer):  # sees the state as loaded, and may change it
        seen.update(optimizer.state[fresh_param])
        optimizer.state[fresh_param]["norm_avg"].fill_(2.0)

    fresh.register_load_state_dict_post_hook(post_hook)
    fresh.load_state_dict(saved)
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert seen[key].dtype == torch.float32 and torch.equal(seen[key], opt.state[param][key]), key
    assert (fresh.state[fresh_param]["norm_avg"] == 2.0).all()


def test_state_dict_with_mis_shaped_state_is_refused():
    param = torch.nn.Parameter(torch.ones(3))
    opt = MTAdamV2([param], impl="reference")
    opt.step([[torch.ones(3)], [torch.ones(3)]])
    saved = copy.deepcopy(opt.state_dict())
    saved["state"][0]["exp_avg"] = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"exp_avg of parameter 0 has shape \(2, 4\); expected \(2, 3\)"):
        MTAdamV2([torch.nn.Parameter(torch.ones(3))], impl="reference").load_state_dict(saved)
    del saved["state"][0]["exp_avg"]
    with pytest.raises(ValueError, match=r"state of parameter 0 lacks exp_avg; expected step, exp_avg"):
        MTAdamV2([torch.nn.Parameter(torch.ones(3))], impl="reference").load_state_dict(saved)
