"""Every compiled op checks the device of every tensor argument before it touches memory (NOTE
[device checks] in csrc/checks.h), in its CPU kernel and in its fake. On a CPU machine, meta
tensors stand in for a second device: mixed with cpu ones they reach the fake; a redispatch hands
them to the CPU kernel, as a dispatcher that picked CPU for a later CUDA list element would."""

from __future__ import annotations

import re

import pytest
import torch
from test_gramian_ops import buffer_views, weights_for
from test_ops import mtadamv2_args, on_meta

from mtbench import ops

pytestmark = pytest.mark.skipif(not ops.available(), reason="compiled ops not built (pip install -e .)")

CPU_KERNEL = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)


def sq_norms_args(device="cpu"):
    return [[torch.randn(3, 4, device=device), torch.randn((), device=device), torch.randn(37, device=device)]]


def gramian_args(device="cpu"):
    return [buffer_views(2, torch.float32, device, shapes=[(3, 4), (5,)])]


def weighted_sum_args(device="cpu"):
    task_grads = buffer_views(2, torch.float32, device, shapes=[(3, 4), (5,)])
    return [[torch.zeros(g.shape[1:], device=device) for g in task_grads], task_grads, weights_for(2, device=device)]


# op: (valid arguments on a device, the reference tensor that every other one is compared with)
OPS = {
    "sq_norms": (sq_norms_args, "tensors[0]"),
    "mtadamv2_": (mtadamv2_args, "params[0]"),
    "gramian": (gramian_args, "task_grads[0]"),
    "weighted_sum_": (weighted_sum_args, "weights"),
}


def tensor_arguments(op, args):
    """(name as the messages spell it, position in args, index in its list or None) of every tensor
    argument, named after the op's schema."""
    schema = getattr(torch.ops.mtbench, op).default._schema
    found = []
    for position, (argument, value) in enumerate(zip(schema.arguments, args)):
        if isinstance(value, torch.Tensor):
            found.append((argument.name, position, None))
        elif isinstance(value, list):
            found += [(f"{argument.name}[{i}]", position, i) for i, v in enumerate(value)
                      if isinstance(v, torch.Tensor)]
    return found


def with_one_moved(args, position, index, move=on_meta):
    args = [list(a) if isinstance(a, list) else a for a in args]
    if index is None:
        args[position] = move(args[position])
    else:
        args[position][index] = move(args[position][index])
    return args


CASES = [pytest.param(op, name, position, index, id=f"{op}-{name}")
         for op, (make_args, _) in OPS.items() if ops.available()  # the schemas come with the build
         for name, position, index in tensor_arguments(op, make_args())]


def expected_message(op, name, path, moved="meta", rest="cpu"):
    """The error of a call with `name` on `moved` and the rest on `rest`, on `path`: the kernel of
    `rest`'s device type or the fake."""
    op, name, reference = re.escape(op), re.escape(name), re.escape(OPS[op][1])  # names hold [ ]
    if name != reference:
        return rf"^{op}: {name} is on {moved}, expected {rest} \(the device of {reference}\)"
    if path == "kernel":
        kind = torch.device(rest).type
        return rf"^{op}: {reference} is on {moved}, expected a {kind} device \(the {kind.upper()} kernel runs\)"
    return rf"^{op}: \w+(\[\d+\])? is on {rest}, expected {moved} \(the device of {reference}\)"


def test_every_tensor_argument_is_covered():
    assert {op: len(tensor_arguments(op, OPS[op][0]())) for op in OPS} == {
        "sq_norms": 3, "mtadamv2_": 4 + 7 + 3 * 4, "gramian": 3, "weighted_sum_": 3 + 3 + 1}


@pytest.mark.parametrize("path", ["kernel", "fake"])
@pytest.mark.parametrize("op, name, position, index", CASES)
def test_a_tensor_on_another_device_is_refused(op, name, position, index, path):
    args = with_one_moved(OPS[op][0](), position, index)
    before = [t.clone() for t in args[0] if t.device.type == "cpu"]
    with pytest.raises(RuntimeError, match=expected_message(op, name, path)):
        if path == "kernel":  # the CPU kernel itself, whatever the devices
            getattr(torch.ops.mtbench, op).default.redispatch(CPU_KERNEL, *args)
        else:  # the dispatcher sees a meta tensor and runs the fake
            getattr(torch.ops.mtbench, op)(*args)
    assert all(torch.equal(a, b) for a, b in zip([t for t in args[0] if t.device.type == "cpu"], before))


@pytest.mark.parametrize("op", OPS)
def test_the_cpu_kernel_refuses_tensors_of_another_device(op):
    make_args, reference = OPS[op]
    args = on_meta(make_args())
    with pytest.raises(RuntimeError, match=expected_message(op, reference, "kernel")):
        getattr(torch.ops.mtbench, op).default.redispatch(CPU_KERNEL, *args)


@pytest.mark.cuda(ops=True)
@pytest.mark.parametrize("op, name, position, index", CASES)
def test_on_cuda_a_tensor_on_the_cpu_is_refused(op, name, position, index):
    # The dispatcher runs the CUDA kernel, which must not read a host pointer as a device one.
    args = with_one_moved(OPS[op][0](device="cuda"), position, index, lambda t: t.cpu())
    before = [t.clone() for t in args[0] if t.is_cuda]
    with pytest.raises(RuntimeError, match=expected_message(op, name, "kernel", moved="cpu", rest="cuda:0")):
        getattr(torch.ops.mtbench, op)(*args)
    assert all(torch.equal(a, b) for a, b in zip([t for t in args[0] if t.is_cuda], before))
