"""The compiled operators: sq_norms parity, opcheck, caller errors, and the fallback without the build."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils._pytree import tree_map

from mtbench import ops

needs_ops = pytest.mark.skipif(not ops.available(), reason="compiled ops not built (pip install -e .)")

ODD_TENSORS = {
    "empty": lambda dtype: torch.randn(0, dtype=dtype),
    "empty_2d": lambda dtype: torch.randn(0, 5, dtype=dtype),
    "scalar": lambda dtype: torch.tensor(-3.0, dtype=dtype),
    "transposed": lambda dtype: torch.randn(7, 5, dtype=dtype).t(),
    "strided": lambda dtype: torch.randn(40, 9, dtype=dtype)[::3, 1::2],
    "vector_and_tail": lambda dtype: torch.randn(37, dtype=dtype),
    "several_chunks": lambda dtype: torch.randn(100_003, dtype=dtype),
}


def expected_sq_norms(tensors):
    return torch.stack([t.to(torch.float64).square().sum() for t in tensors]).to(ops.state_dtype(tensors[0].dtype))


@pytest.mark.parametrize("dtype, expected", [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                             (torch.bfloat16, torch.float32), (torch.float16, torch.float32)], ids=str)
def test_state_dtype_is_opmath(dtype, expected):
    assert ops.state_dtype(dtype) is expected


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda(ops=True))])
@pytest.mark.parametrize("dtype, rtol", [(torch.float32, 1e-6), (torch.float64, 1e-13), (torch.bfloat16, 1e-6),
                                         (torch.float16, 1e-6)], ids=str)
def test_sq_norms_matches_pytorch_on_odd_shapes(device, dtype, rtol):
    torch.manual_seed(0)
    tensors = [make(dtype).to(device) for make in ODD_TENSORS.values()]
    result = ops.sq_norms(tensors)
    assert result.dtype == ops.state_dtype(dtype)
    assert result.device == tensors[0].device
    torch.testing.assert_close(result, expected_sq_norms(tensors).to(device), rtol=rtol, atol=0)


def test_sq_norms_fallback_matches(monkeypatch):
    tensors = [make(torch.float32) for make in ODD_TENSORS.values()]
    monkeypatch.setattr(ops, "supports", lambda device: False)
    torch.testing.assert_close(ops.sq_norms(tensors), expected_sq_norms(tensors), rtol=1e-5, atol=0)
    assert ops.sq_norms([]).shape == (0,)


def mtadamv2_args(num_tasks=2, dtype=torch.float32, device="cpu", shapes=((3, 4), (), (0,), (17,))):
    """Arguments of torch.ops.mtbench.mtadamv2_ for a first step; task 1 skips the second tensor."""
    state_dtype = ops.state_dtype(dtype)
    params = [torch.randn(s, dtype=dtype, device=device) for s in shapes]
    grads = [None if (t == 1 and i == 1) else torch.randn(s, dtype=dtype, device=device)
             for t in range(num_tasks) for i, s in enumerate(shapes)]
    exp_avgs = [torch.zeros((num_tasks, *s), dtype=state_dtype, device=device) for s in shapes]
    exp_avg_sqs = [torch.zeros((num_tasks, *s), dtype=state_dtype, device=device) for s in shapes]
    norm_avgs = [torch.full((num_tasks,), -1.0, dtype=state_dtype, device=device) for _ in shapes]
    steps = [1] * len(shapes)
    hyper = (1e-3, 0.9, 0.999, 0.9, 1e-8, 0.01, [0.5] * num_tasks)
    return [params, grads, exp_avgs, exp_avg_sqs, norm_avgs, steps, *hyper]


@needs_ops
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda(ops=True))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_opcheck(device, dtype):
    torch.library.opcheck(torch.ops.mtbench.sq_norms.default,
                          ([torch.randn(3, 4, dtype=dtype, device=device), torch.randn((), dtype=dtype, device=device)],))
    torch.library.opcheck(torch.ops.mtbench.mtadamv2_.default, tuple(mtadamv2_args(dtype=dtype, device=device)))


def with_change(index, change):
    """mtadamv2_args() with argument `index` replaced by change(old value)."""
    def make():
        args = mtadamv2_args()
        args[index] = change(args[index])
        return args
    return make


def set_item(position, value):
    def change(items):
        items = list(items)
        items[position] = value(items[position])
        return items
    return change


# C++ spells dtypes Float/Double, Python torch.float32/64.
F32, F64 = r"(Float|torch\.float32)", r"(Double|torch\.float64)"

OP_ERRORS = [
    ("sq_norms", lambda: [[torch.ones(2), torch.ones(2, dtype=torch.float64)]],
     rf"tensors\[1\] has dtype {F64}, expected {F32} \(the dtype of tensors\[0\]\)"),
    ("sq_norms", lambda: [[torch.ones(2, dtype=torch.long)]], r"tensors\[0\] must be float32, float64, bfloat16 or"),
    ("mtadamv2_", with_change(1, lambda grads: grads[:-1]), r"grads must hold 8 entries \(task-major"),
    ("mtadamv2_", with_change(1, set_item(0, lambda g: g.t())), r"grads\[0\] has shape \[4, 3\], expected \[3, 4\]"),
    ("mtadamv2_", with_change(1, set_item(3, lambda g: torch.randn(34)[::2])), r"grads\[3\] must be contiguous"),
    ("mtadamv2_", with_change(1, set_item(0, lambda g: g.double())), rf"grads\[0\] has dtype {F64}, expected {F32}"),
    ("mtadamv2_", with_change(2, set_item(0, lambda m: m[:1])), r"exp_avgs\[0\] has shape \[1, 3, 4\], expected "
                                                                r"\[2, 3, 4\]"),
    ("mtadamv2_", with_change(4, set_item(1, lambda n: n.double())),
     rf"norm_avgs\[1\] has dtype {F64}, expected {F32}"),
    ("mtadamv2_", with_change(3, lambda sqs: sqs[:2]), r"exp_avg_sqs must hold 4 tensors \(one per param\), got 2"),
    ("mtadamv2_", with_change(5, lambda steps: [0, 1, 1, 1]), r"steps\[0\] must be >= 1"),
    ("mtadamv2_", with_change(6, lambda lr: -1.0), r"lr must be in \[0, inf\), got -1"),
    ("mtadamv2_", with_change(8, lambda beta2: 1.0), r"beta2 must be in \[0, 1\), got 1"),
    ("mtadamv2_", with_change(12, lambda weights: [0.5] * (ops.MAX_TASKS + 1)),
     rf"task_weights must hold 1 to {ops.MAX_TASKS} weights \(one per task\), got {ops.MAX_TASKS + 1}"),
    ("mtadamv2_", with_change(12, lambda weights: [0.5, float("inf")]), r"task_weights\[1\] must be finite"),
]


def on_meta(args):
    """args with every tensor replaced by a meta tensor of the same shape, strides and dtype."""
    return tree_map(lambda x: torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
                    if isinstance(x, torch.Tensor) else x, args)


@needs_ops
@pytest.mark.parametrize("path", ["kernel", "fake"])
@pytest.mark.parametrize("op, make_args, message", OP_ERRORS, ids=lambda x: x if isinstance(x, str) else "")
def test_op_errors(op, make_args, message, path):
    # The fake checks what the kernel checks: the same inputs on the meta device fail alike.
    args = make_args()
    before = [p.clone() for p in args[0]] if op == "mtadamv2_" else None
    with pytest.raises(RuntimeError, match=message):
        getattr(torch.ops.mtbench, op)(*(args if path == "kernel" else on_meta(args)))
    if before is not None:  # a rejected call changes nothing
        assert all(torch.equal(a, b) for a, b in zip(args[0], before))


def test_mtadamv2_wrapper_has_no_fallback(monkeypatch):
    # Choosing the reference where no kernel fits is the optimizer's business, not the binding's.
    monkeypatch.setattr(ops, "supports", lambda device: False)
    args = mtadamv2_args()
    before = [p.clone() for p in args[0]]
    hyper = dict(zip(["lr", "beta1", "beta2", "norm_beta", "eps", "weight_decay", "task_weights"], args[6:]))
    with pytest.raises(RuntimeError, match=r"no compiled mtadamv2_ kernel for cpu tensors \(compiled ops: "):
        ops.mtadamv2_(*args[:6], **hyper)
    assert all(torch.equal(a, b) for a, b in zip(args[0], before))


@needs_ops
def test_describe_names_backends_and_library():
    assert ops.describe().startswith("compiled ops: cpu")
    assert "_C" in ops.describe() and ops.supports("cpu") and not ops.supports("meta")
    assert ops.cuda_available() == ("cpu+cuda" in ops.describe())


def test_without_the_build_one_warning_and_pure_pytorch():
    # A fresh interpreter in which mtbench._C cannot be imported, as in a checkout that was never built.
    script = textwrap.dedent("""
        import sys, warnings
        sys.modules["mtbench._C"] = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import torch
            from mtbench import ops
            from mtbench.optim import MTAdamV2
        mine = [str(w.message) for w in caught if "mtbench" in str(w.message)]
        print(len(mine), mine[0])
        print(ops.available(), ops.describe())
        p = torch.nn.Parameter(torch.ones(3))
        MTAdamV2([p]).step([[torch.ones(3)], [torch.ones(3)]])
        print(bool((p < 1).all()))
        try:
            MTAdamV2([p], impl="fused")
        except ValueError as exc:
            print("ValueError", exc)
    """)
    env = dict(os.environ, PYTHONWARNINGS="default")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("1 mtbench compiled ops not built; using pure PyTorch")
    assert lines[1] == "False compiled ops: unavailable (not built); using pure PyTorch"
    assert lines[2] == "True"
    assert lines[3].startswith("ValueError impl='fused' needs the compiled ops for cpu tensors")
