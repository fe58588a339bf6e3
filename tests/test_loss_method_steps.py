"""The losses-only methods as the trainer steps them: combine is the same step as scalarize, a step
evaluated twice (an optimizer's closure) advances the state once, runs resume bit for bit, GradNorm
pays for the bound layer only, and on CUDA a state loaded on the CPU continues identically."""

import io

import pytest
import torch

from test_scalarizers import CASES, assert_same_records, build, initial_params, losses_at, run_method


@pytest.mark.parametrize("name", [*CASES, "gradnorm"])
def test_combine_on_the_tasks_gradients_is_the_same_step(name):
    """The chain rule: combine (the method benchmark's route) gives what one backward pass of scalarize gives."""
    settings = CASES.get(name, {})
    params = initial_params()
    one, other = build(name, **settings), build(name, **settings)
    if name == "gradnorm":
        # Through the stacked losses every task reaches every parameter (with zeros), so combine reads
        # the norms over all of them: bound to all of them, scalarize reads the same.
        one.bind(params)
    losses = losses_at(params, 0)
    task_grads = [list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)) for loss in losses]
    one.scalarize(losses, 1).backward()
    combined = other.combine(task_grads, losses.detach(), 1)
    for got, param in zip(combined, params):
        torch.testing.assert_close(got, param.grad)
    for a, b in zip(one.parameters(), other.parameters()):
        torch.testing.assert_close(b.grad, a.grad)


@pytest.mark.parametrize("name, settings", [
    ("famo", ()), ("stch", ("method.warmup=1", "method.window=2")), ("dwa", ("method.window=1",)), ("uw", ()),
    ("gradnorm", ()),
])
def test_a_run_with_a_losses_only_method_resumes_exactly(tmp_path, monkeypatch, name, settings):
    """Through the trainer: interrupted after three steps and resumed, a run ends bit for bit where the
    uninterrupted one does (model, optimizer with the method's own parameters, the method's state)."""
    from states import assert_same_state

    from mtbench.config import build_config
    from mtbench.plugins import load_registry
    from mtbench.train import Trainer, train

    registry = load_registry(environ={})
    preset, method = registry.get("adam"), registry.get_method(name)

    def run(where, resume=False):
        config = build_config(preset, where, method, image_size=32, limit_train=16, limit_val=8, batch_size=8,
                              epochs=3, device="cpu", set_values=list(settings))
        return train(config, preset, method=method, resume=resume, progress=False, echo=lambda s: None)

    run(tmp_path / "whole")
    real, calls = Trainer.step, {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "part")
    monkeypatch.setattr(Trainer, "step", real)
    run(tmp_path / "part", resume=True)
    whole = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    again = torch.load(tmp_path / "part" / "checkpoints" / "last.pt", weights_only=True)
    for part in ("model", "optimizer", "gradients"):
        assert_same_state(again[part], whole[part], part)
    if name == "stch":  # the run went past the warm-up: the nadir point is in the checkpoint
        assert whole["gradients"]["method"]["nadir"] is not None


@pytest.mark.parametrize("name", [*CASES, "gradnorm"])
def test_a_step_evaluated_twice_advances_the_state_once(name):
    """An optimizer with a closure (SAM) evaluates a step twice: the second evaluation, at the same
    losses, gives the first one's scalar and weights, and the run continues as if it had not happened."""
    settings = CASES.get(name, {})
    once, twice = build(name, **settings), build(name, **settings)
    params = initial_params()
    for method in (once, twice):
        if hasattr(method, "bind"):
            method.bind(params[:1])
    for k in range(6):
        losses = losses_at(params, k)
        want = once.scalarize(losses, k + 1)
        first = twice.scalarize(losses, k + 1)
        again = twice.scalarize(losses, k + 1)
        torch.testing.assert_close(first, want, rtol=0, atol=0)
        torch.testing.assert_close(again, want, rtol=0, atol=0)
        torch.testing.assert_close(twice.last_weights, once.last_weights, rtol=0, atol=0)
        for method in (once, twice):
            if hasattr(method, "after_step"):
                method.after_step(lambda: losses.detach() * 0.9)


@pytest.mark.cuda
@pytest.mark.parametrize("name", [*CASES, "gradnorm"])
def test_on_cuda_a_state_loaded_on_the_cpu_continues_identically(name):
    """The trainer moves a method's parameters to the GPU and a checkpoint loads on the CPU: the method
    follows the losses to the GPU (FAMO's Adam state, DWA's history, STCH's nadir, RLW's generator)."""
    settings = CASES.get(name, {})

    def on_gpu(method):
        for p in method.parameters():
            p.data = p.data.cuda()
        return method

    params = [p.detach().cuda().requires_grad_() for p in initial_params()]
    original = on_gpu(build(name, **settings))
    run_method(original, 5, params)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    resumed = on_gpu(build(name, **settings))
    resumed.load_state_dict(torch.load(buffer, map_location="cpu", weights_only=True))
    copy = [p.detach().clone().requires_grad_() for p in params]
    want = run_method(original, 4, params, start=5)
    got = run_method(resumed, 4, copy, start=5)
    assert_same_records(got, want, tol=0)
    assert all(g.is_cuda for _, grads, _ in got for g in grads)


def test_rlw_draws_the_weights_random_draws_from_the_same_seed():
    """``random`` pays for the tasks' gradients, ``rlw`` does not: the same weights, step by step."""
    from mtbench import build_method

    gramian_route, losses_only = build_method("random", 2, seed=3), build("rlw", seed=3)
    task_grads = [[torch.randn(3)], [torch.randn(3)]]
    for k in range(3):
        gramian_route.combine(task_grads, torch.tensor([1.0, 2.0]), k + 1)
        losses_only.scalarize(torch.tensor([1.0, 2.0], requires_grad=True) * 1, k + 1)
        torch.testing.assert_close(losses_only.last_weights, gramian_route.last_weights, rtol=0, atol=0)


def test_gradnorm_backpropagates_to_the_bound_layer_only():
    """Its norms cost the heads and the last shared layer: nothing below that layer is backpropagated
    until the step's one backward pass."""
    gen = torch.Generator().manual_seed(1)
    first, last = (torch.randn(4, 4, generator=gen, requires_grad=True) for _ in range(2))
    heads = [torch.randn(4, generator=gen, requires_grad=True) for _ in range(2)]
    reached = []
    x = torch.randn(5, 4, generator=gen)
    below = torch.tanh(x @ first)
    below.register_hook(lambda grad: reached.append(grad))
    z = torch.tanh(below @ last)
    losses = torch.stack([(z @ heads[0]).square().mean(), (z @ heads[1] - 1).square().mean()])
    method = build("gradnorm")
    method.bind([last])
    scalar = method.scalarize(losses, 1)
    assert reached == []  # the two norms were read at `last` without going further down
    scalar.backward()
    assert len(reached) == 1 and first.grad is not None
