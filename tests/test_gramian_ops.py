"""The Gramian route ops (gramian, weighted_sum_): parity with float64 math on odd shapes, opcheck,
caller errors on every path (kernel, fake, fallback), reproducibility."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._pytree import tree_leaves, tree_map

from mtbench import ops

needs_ops = pytest.mark.skipif(not ops.available(), reason="compiled ops not built (pip install -e .)")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda(ops=True))]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]

# Parameter shapes laid side by side in one [T, N] buffer, as the trainer lays out gradients: a
# matrix, a scalar, two zero-size tensors, a tail shorter than a vector, and one that spans several
# chunks of the CPU (32768) and CUDA (16384) kernels.
SHAPES = [(3, 4), (), (0,), (37,), (0, 5), (2, 3, 5), (70_001,)]


def buffer_views(num_tasks, dtype, device="cpu", shapes=SHAPES, seed=0):
    """Per-parameter [T, *shape] views of one [T, N] buffer (rows N elements apart), plus one tensor
    whose rows are not dense (a transposed [5, T, 7]) to take the copying path."""
    generator = torch.Generator().manual_seed(seed)
    sizes = [math.prod(s) for s in shapes]
    buf = torch.randn(num_tasks, sum(sizes), generator=generator).to(device, dtype)
    views, start = [], 0
    for shape, size in zip(shapes, sizes):
        views.append(buf[:, start:start + size].view(num_tasks, *shape))
        start += size
    views.append(torch.randn(5, num_tasks, 7, generator=generator).to(device, dtype).transpose(0, 1))
    return views


def expected_gramian(task_grads):
    num_tasks = task_grads[0].shape[0]
    rows = torch.cat([g.to(torch.float64).reshape(num_tasks, math.prod(g.shape[1:])) for g in task_grads], dim=1)
    return rows @ rows.T


def expected_weighted_sum(task_grads, weights):
    return [torch.tensordot(weights.to(torch.float64), g.to(torch.float64), dims=1) for g in task_grads]


def weights_for(num_tasks, dtype=torch.float32, device="cpu"):
    return torch.tensor([0.7, -1.3, 2.1, 0.25, -0.5, 1.0, 3.0, -2.0][:num_tasks], dtype=dtype, device=device)


def padded_outputs(task_grads, fill=float("nan")):
    """Contiguous outputs as slices of one flat buffer with a guard element after each, all `fill`."""
    sizes = [math.prod(g.shape[1:]) for g in task_grads]
    flat = torch.full((sum(sizes) + len(sizes),), fill, dtype=task_grads[0].dtype, device=task_grads[0].device)
    outs, start = [], 0
    for g, size in zip(task_grads, sizes):
        outs.append(flat[start:start + size].view(g.shape[1:]))
        start += size + 1
    guards = torch.tensor([sum(sizes[:k + 1]) + k for k in range(len(sizes))], device=flat.device)
    return flat, outs, guards


def gramian_tolerance(expected, dtype):
    # Relative to the largest diagonal entry: off-diagonal entries may cancel to near zero.
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    return {"rtol": rtol, "atol": rtol * expected.diagonal().max().item()}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("num_tasks", [1, 2, 3, 8])
def test_gramian_matches_float64_math(device, dtype, num_tasks):
    task_grads = buffer_views(num_tasks, dtype, device)
    result = ops.gramian(task_grads)
    assert result.dtype == ops.state_dtype(dtype) and result.device == task_grads[0].device
    expected = expected_gramian(task_grads)
    torch.testing.assert_close(result.to(torch.float64), expected, **gramian_tolerance(expected, dtype))
    assert torch.equal(result, result.T)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("num_tasks", [1, 2, 3, 8])
def test_weighted_sum_matches_float64_math(device, dtype, num_tasks):
    task_grads = buffer_views(num_tasks, dtype, device)
    before = [g.clone() for g in task_grads]
    weights = weights_for(num_tasks, device=device)
    flat, outs, guards = padded_outputs(task_grads)
    ops.weighted_sum_(outs, task_grads, weights)
    for out, expected in zip(outs, expected_weighted_sum(task_grads, weights)):
        assert out.dtype == dtype
        # The kernel rounds the opmath sum once; so does expected.to(dtype), up to one ulp.
        torch.testing.assert_close(out, expected.to(dtype))
    assert flat[guards].isnan().all(), "an element past the end of an output was written"
    assert all(torch.equal(a, b) for a, b in zip(task_grads, before))


@pytest.mark.parametrize("weights_dtype", [torch.float64, torch.bfloat16], ids=str)
def test_weighted_sum_takes_weights_of_any_float_dtype(weights_dtype):
    task_grads = buffer_views(2, torch.float32)
    weights = weights_for(2, dtype=weights_dtype)
    _, outs, _ = padded_outputs(task_grads)
    ops.weighted_sum_(outs, task_grads, weights)
    for out, expected in zip(outs, expected_weighted_sum(task_grads, weights)):
        torch.testing.assert_close(out, expected.to(torch.float32))


def test_weighted_sum_of_no_parameters_is_a_no_op():
    ops.weighted_sum_([], [], weights_for(2))


@needs_ops
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fallback_matches_kernel(monkeypatch, dtype):
    task_grads = buffer_views(3, dtype)
    weights = weights_for(3)
    _, kernel_outs, _ = padded_outputs(task_grads)
    kernel_gramian = ops.gramian(task_grads)
    ops.weighted_sum_(kernel_outs, task_grads, weights)
    monkeypatch.setattr(ops, "supports", lambda device: False)
    _, fallback_outs, _ = padded_outputs(task_grads)
    fallback_gramian = ops.gramian(task_grads)
    ops.weighted_sum_(fallback_outs, task_grads, weights)
    expected = expected_gramian(task_grads)
    torch.testing.assert_close(fallback_gramian, kernel_gramian, **gramian_tolerance(expected, dtype))
    for a, b in zip(fallback_outs, kernel_outs):
        torch.testing.assert_close(a, b)


@needs_ops
def test_cpu_results_do_not_depend_on_thread_count():
    task_grads = buffer_views(3, torch.float32, shapes=[(200_003,), (3, 4), (65_536,)])
    weights = weights_for(3)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            _, outs, _ = padded_outputs(task_grads)
            ops.weighted_sum_(outs, task_grads, weights)
            results.append((ops.gramian(task_grads), outs))
    finally:
        torch.set_num_threads(previous)
    (g1, outs1), (g2, outs2) = results
    assert torch.equal(g1, g2)
    assert all(torch.equal(a, b) for a, b in zip(outs1, outs2))


def opcheck_samples(device):
    """(task_grads, weights) pairs: odd shapes, every dtype, strided views, T from 1 to 3."""
    samples = []
    for num_tasks, dtype in [(1, torch.float32), (2, torch.float64), (3, torch.bfloat16), (2, torch.float16)]:
        samples.append((buffer_views(num_tasks, dtype, device, shapes=[(3, 4), (), (0,), (37,)]),
                        weights_for(num_tasks, device=device)))
    samples.append(([torch.randn(2, 0, 3, device=device)], weights_for(2, dtype=torch.float64, device=device)))
    return samples


@needs_ops
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for task_grads, weights in opcheck_samples(device):
        torch.library.opcheck(torch.ops.mtbench.gramian.default, (task_grads,))
        outs = [torch.zeros(g.shape[1:], dtype=g.dtype, device=g.device) for g in task_grads]
        torch.library.opcheck(torch.ops.mtbench.weighted_sum_.default, (outs, task_grads, weights))


# Error inputs as data: (op, arguments, message). C++ spells dtypes Float/Double, Python torch.float32/64.
F32, F64 = r"(Float|torch\.float32)", r"(Double|torch\.float64)"


def grads(*shapes, dtype=torch.float32):
    return [torch.randn(s, dtype=dtype) for s in shapes]


def ws_args(out=None, task_grads=None, weights=None):
    """weighted_sum_ arguments for 2 tasks and parameters [3, 4] and [5], with one part replaced."""
    task_grads = task_grads if task_grads is not None else grads((2, 3, 4), (2, 5))
    out = out if out is not None else [torch.zeros(3, 4), torch.zeros(5)]
    return out, task_grads, weights if weights is not None else weights_for(2)


ERRORS = [
    ("gramian", lambda: ([],), r"gramian: task_grads must hold at least one tensor .*got an empty list"),
    ("gramian", lambda: (grads(()),), r"task_grads\[0\] must have shape \[T, \*shape\] with 1 to 8 tasks T, "
                                      r"got shape \[\]"),
    ("gramian", lambda: (grads((9, 3)),), r"with 1 to 8 tasks T, got shape \[9, 3\]"),
    ("gramian", lambda: (grads((0, 3)),), r"with 1 to 8 tasks T, got shape \[0, 3\]"),
    ("gramian", lambda: ([torch.ones(2, 3, dtype=torch.long)],), r"task_grads\[0\] must be float32, float64, "
                                                                  r"bfloat16 or float16, got"),
    ("gramian", lambda: (grads((2, 3), (3, 3)),), r"gramian: task_grads\[1\] has shape \[3, 3\], expected 2 tasks in "
                                                  r"its first dimension \(\[T, \*shape\], T from task_grads\[0\]\)"),
    ("gramian", lambda: (grads((2, 3), ()),), r"task_grads\[1\] has shape \[\], expected 2 tasks"),
    ("gramian", lambda: (grads((2, 3)) + grads((2, 1), dtype=torch.float64),),
     rf"task_grads\[1\] has dtype {F64}, expected {F32} \(the dtype of task_grads\[0\]\)"),
    ("weighted_sum_", lambda: ws_args(weights=torch.ones(2, 1)), r"weights must be a 1-D tensor of 1 to 8 task "
                                                                 r"weights, got shape \[2, 1\]"),
    ("weighted_sum_", lambda: ws_args(weights=torch.ones(9)), r"1 to 8 task weights, got shape \[9\]"),
    ("weighted_sum_", lambda: ws_args(weights=torch.ones(0)), r"1 to 8 task weights, got shape \[0\]"),
    ("weighted_sum_", lambda: ws_args(weights=torch.ones(2, dtype=torch.long)), r"weights must be float32, float64, "
                                                                                r"bfloat16 or float16, got"),
    ("weighted_sum_", lambda: ws_args(weights=weights_for(3)), r"task_grads\[0\] has shape \[2, 3, 4\], expected 3 "
                                                               r"tasks in its first dimension \(\[T, \*shape\], T "
                                                               r"from weights\)"),
    ("weighted_sum_", lambda: ws_args(out=[torch.zeros(3, 4)]), r"out must hold 2 tensors \(one per entry of "
                                                                r"task_grads\), got 1"),
    ("weighted_sum_", lambda: ws_args(task_grads=grads((2, 3, 4)) + grads((2, 5), dtype=torch.float64)),
     rf"task_grads\[1\] has dtype {F64}, expected {F32} \(the dtype of weights\)"),
    ("weighted_sum_", lambda: ws_args(task_grads=[torch.ones(2, 3, 4, dtype=torch.long), torch.ones(2, 5)]),
     r"task_grads\[0\] must be float32, float64, bfloat16 or float16, got"),
    ("weighted_sum_", lambda: ws_args(out=[torch.zeros(4, 3), torch.zeros(5)]),
     r"out\[0\] has shape \[4, 3\], expected \[3, 4\] \(task_grads\[0\] without its task dimension\)"),
    ("weighted_sum_", lambda: ws_args(out=[torch.zeros(3, 4), torch.zeros(5, dtype=torch.float64)]),
     rf"out\[1\] has dtype {F64}, expected {F32} \(the dtype of task_grads\)"),
    ("weighted_sum_", lambda: ws_args(out=[torch.zeros(4, 3).t(), torch.zeros(5)]), r"out\[0\] must be contiguous"),
]


def call(path, op, args, monkeypatch):
    """The op through the wrapper in mtbench.ops (kernel or fallback), or its fake on meta tensors."""
    if path == "fake":
        if not tree_leaves(args):
            pytest.skip("the dispatcher needs a tensor to choose a kernel; the wrapper checks an empty list")
        return getattr(torch.ops.mtbench, op)(*tree_map(lambda x: x.to("meta"), args))
    if path == "fallback":
        monkeypatch.setattr(ops, "supports", lambda device: False)
    return getattr(ops, op)(*args)


@pytest.mark.parametrize("path", [pytest.param("kernel", marks=needs_ops), pytest.param("fake", marks=needs_ops),
                                  "fallback"])
@pytest.mark.parametrize("op, make_args, message", ERRORS, ids=lambda x: x if isinstance(x, str) else "")
def test_errors(path, op, make_args, message, monkeypatch):
    args = make_args()
    outs_before = [o.clone() for o in args[0]] if op == "weighted_sum_" else []
    with pytest.raises(RuntimeError, match=message):
        call(path, op, args, monkeypatch)
    # A rejected call writes nothing.
    assert all(torch.equal(a, b) for a, b in zip(args[0], outs_before) if a.dtype.is_floating_point)


@pytest.mark.parametrize("path", [pytest.param("fake", marks=needs_ops), "fallback"])
def test_device_mismatch_is_an_error(path, monkeypatch):
    mixed = [torch.randn(2, 3), torch.randn(2, 3, device="meta")]
    cases = [("gramian", (mixed,),
              r"gramian: task_grads\[1\] is on meta, expected cpu \(the device of task_grads\[0\]\)"),
             ("weighted_sum_", ([torch.zeros(3, device="meta")], mixed[:1], weights_for(2, device="meta")),
              r"weighted_sum_: task_grads\[0\] is on cpu, expected meta \(the device of weights\)")]
    if path == "fallback":
        monkeypatch.setattr(ops, "supports", lambda device: False)
    for op, args, message in cases:
        with pytest.raises(RuntimeError, match=message):  # a meta tensor among the arguments: the fake runs
            getattr(ops if path == "fallback" else torch.ops.mtbench, op)(*args)


@pytest.mark.cuda(ops=True)
def test_cuda_device_mismatch_is_an_error():
    with pytest.raises(RuntimeError,
                       match=r"task_grads\[1\] is on cpu, expected cuda:0 \(the device of task_grads\[0\]\)"):
        ops.gramian([torch.randn(2, 3, device="cuda"), torch.randn(2, 3)])
    with pytest.raises(RuntimeError, match=r"out\[0\] is on cpu, expected cuda:0 \(the device of weights\)"):
        ops.weighted_sum_([torch.zeros(3)], [torch.randn(2, 3, device="cuda")], weights_for(2, device="cuda"))


@pytest.mark.cuda(ops=True)
def test_cuda_no_host_sync_and_reproducible():
    task_grads = buffer_views(3, torch.float32, "cuda", shapes=[(300_001,), (3, 4), ()])
    weights = weights_for(3, device="cuda")
    _, outs, _ = padded_outputs(task_grads)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        first = ops.gramian(task_grads)
        second = ops.gramian(task_grads)
        ops.weighted_sum_(outs, task_grads, weights)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(first, second)
