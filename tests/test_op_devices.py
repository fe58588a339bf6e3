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


def sq_norms_args():
    return [[torch.randn(3, 4), torch.randn(()), torch.randn(37)]]


def gramian_args():
    return [buffer_views(2, torch.float32, shapes=[(3, 4), (5,)])]


def weighted_sum_args():
    task_grads = buffer_views(2, torch.float32, shapes=[(3, 4), (5,)])
    return [[torch.zeros(g.shape[1:]) for g in task_grads], task_grads, weights_for(2)]


# op: (valid cpu arguments, the reference tensor that every other one is compared with)
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


def with_one_on_meta(args, position, index):
    args = [list(a) if isinstance(a, list) else a for a in args]
    if index is None:
        args[position] = on_meta(args[position])
    else:
        args[position][index] = on_meta(args[position][index])
    return args


CASES = [pytest.param(op, name, position, index, id=f"{op}-{name}")
         for op, (make_args, _) in OPS.items() for name, position, index in tensor_arguments(op, make_args())]


def expected_message(op, name, path):
    """The error of a call with `name` on meta and the rest on cpu, on `path` (kernel or fake)."""
    op, name, reference = re.escape(op), re.escape(name), re.escape(OPS[op][1])  # names hold [ ]
    if name != reference:
        return rf"^{op}: {name} is on meta, expected cpu \(the device of {reference}\)"
    if path == "kernel":
        return rf"^{op}: {reference} is on meta, expected a cpu device \(the CPU kernel runs\)"
    return rf"^{op}: \w+(\[\d+\])? is on cpu, expected meta \(the device of {reference}\)"


def test_every_tensor_argument_is_covered():
    assert {op: len(tensor_arguments(op, OPS[op][0]())) for op in OPS} == {
        "sq_norms": 3, "mtadamv2_": 4 + 7 + 3 * 4, "gramian": 3, "weighted_sum_": 3 + 3 + 1}


@pytest.mark.parametrize("path", ["kernel", "fake"])
@pytest.mark.parametrize("op, name, position, index", CASES)
def test_a_tensor_on_another_device_is_refused(op, name, position, index, path):
    args = with_one_on_meta(OPS[op][0](), position, index)
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
