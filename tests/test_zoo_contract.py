"""The optimizer contract's new parts, one at a time: parameter groups by role, CombinedOptimizer,
Muon over convolution filters, the train / eval lifecycle with BatchNorm statistics recomputed,
capabilities as checked data, and pytorch-optimizer's optimizers by name."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from mtbench.errors import ConfigError
from mtbench.model import MultiTaskNet
from mtbench.plugins import load_registry
from mtbench.presets import OptimizerPreset, validate_preset
from mtbench.presets.library import REFUSED, library_entries, library_preset
from mtbench.training.optimizers import (
    CombinedOptimizer, OptimizerLifecycle, build_optimizer, hidden_matrices, is_head, recompute_batchnorm)
from mtbench_plugins.zoo_factories import MatrixMuon

REGISTRY = load_registry(environ={})


def named_trainable(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def test_hidden_matrices_are_the_trunks_weights_but_the_stem_and_the_heads():
    model = MultiTaskNet("resnet18", 10, 21)
    named = named_trainable(model)
    hidden, other = hidden_matrices(model, named)
    assert hidden["role"] == "hidden" and other["role"] == "other"
    want = [p for n, p in named if p.ndim >= 2 and n.startswith("backbone.") and n != "backbone.stem.0.weight"]
    assert [id(p) for p in hidden["params"]] == [id(p) for p in want]
    assert len(want) == 19  # ResNet-18: 20 convolutions, the stem's is the input layer
    assert {id(p) for p in other["params"]} == {id(p) for _, p in named} - {id(p) for p in want}
    assert is_head("seg_head.context.0.weight") and is_head("heads.cls.weight") and not is_head("backbone.head")


def test_embeddings_are_not_hidden_matrices():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.Linear(4, 4))
    hidden, _ = hidden_matrices(model, named_trainable(model))
    assert [id(p) for p in hidden["params"]] == [id(model[1].weight), id(model[2].weight)]


def test_muon_preset_gives_muon_the_hidden_matrices_and_adamw_the_rest_with_a_methods_tensors():
    model = MultiTaskNet("resnet18", 10, 21)
    names, params = zip(*named_trainable(model))
    extra = [torch.zeros(2, requires_grad=True)]
    opt = build_optimizer(REGISTRY.get("muon"), model, names, params, extra, REGISTRY.get("muon").resolve())
    muon, adamw = opt.optimizers
    assert isinstance(muon, MatrixMuon) and isinstance(adamw, torch.optim.AdamW)
    hidden, other = hidden_matrices(model, list(zip(names, params)))
    assert [id(p) for g in muon.param_groups for p in g["params"]] == [id(p) for p in hidden["params"]]
    assert [id(p) for g in adamw.param_groups for p in g["params"]] == [id(p) for p in other["params"]] + [id(extra[0])]
    assert muon.param_groups[0]["lr"] == 0.02 and adamw.param_groups[0]["lr"] == 3e-4


def test_matrix_muon_steps_a_filter_as_torch_muon_steps_its_matrix():
    torch.manual_seed(0)
    conv = nn.Parameter(torch.randn(8, 4, 3, 3))
    matrix = nn.Parameter(conv.detach().reshape(8, -1).clone())
    ours, theirs = MatrixMuon([conv], lr=0.02), torch.optim.Muon([matrix], lr=0.02)
    for step in range(3):
        grad = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(step))
        conv.grad, matrix.grad = grad.clone(), grad.reshape(8, -1).clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(conv.detach().reshape(8, -1), matrix.detach(), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"2 dimensions or more.*shape \(3,\)"):
        MatrixMuon([nn.Parameter(torch.ones(3))])


def test_a_groups_function_that_misses_a_parameter_is_refused_by_name():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    names, params = zip(*named_trainable(model))
    preset = OptimizerPreset(name="half", title="Half", factory="torch.optim:SGD", defaults={"lr": 0.1},
                             groups=lambda m, named: [{"role": "hidden", "params": [named[0][1]]}])
    with pytest.raises(ConfigError, match=r"optimizer 'half'.*every trainable parameter exactly once.*miss or add "
                                          r"0.bias and 2 more"):
        build_optimizer(preset, model, names, params, [], {"lr": 0.1})
    twice = OptimizerPreset(name="twice", title="Twice", factory="torch.optim:SGD", defaults={"lr": 0.1},
                            groups=lambda m, named: [{"role": "a", "params": [p for _, p in named]},
                                                     {"role": "b", "params": [named[0][1]]}])
    with pytest.raises(ConfigError, match=r"a parameter is in two groups \('a' and 'b'\)"):
        build_optimizer(twice, model, names, params, [], {"lr": 0.1})


def two_part(seed=0):
    torch.manual_seed(seed)
    a, b = nn.Linear(3, 3), nn.Linear(3, 1)
    opt = CombinedOptimizer([torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9),
                             torch.optim.Adam(b.parameters(), lr=0.01)])
    return a, b, opt


def step(a, b, opt, seed):
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed))
    opt.zero_grad()
    b(a(x)).pow(2).mean().backward()
    opt.step()


def test_combined_optimizer_resumes_exactly_from_its_state_dict():
    a, b, opt = two_part()
    for s in range(3):
        step(a, b, opt, s)
    buffer = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "a": a.state_dict(), "b": b.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    a2, b2, opt2 = two_part(seed=1)
    a2.load_state_dict(saved["a"])
    b2.load_state_dict(saved["b"])
    opt2.load_state_dict(saved["opt"])
    for s in range(3, 6):
        step(a, b, opt, s)
        step(a2, b2, opt2, s)
    for p, q in zip([*a.parameters(), *b.parameters()], [*a2.parameters(), *b2.parameters()]):
        assert torch.equal(p, q)
    assert len(opt.state) == 4 and opt.state[b.weight]["step"] == opt2.state[b2.weight]["step"] == 6


def test_combined_optimizer_is_one_optimizer_to_a_scheduler_and_refuses_overlap_and_other_states():
    a, b, opt = two_part()
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    step(a, b, opt, 0)
    scheduler.step()
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.005]
    assert [o.param_groups[0]["lr"] for o in opt.optimizers] == [0.05, 0.005]
    with pytest.raises(ValueError, match="shares a parameter with an earlier one"):
        CombinedOptimizer([torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(a.parameters(), lr=0.1)])
    with pytest.raises(ValueError, match="holds 1 optimizers, this CombinedOptimizer 2"):
        opt.load_state_dict({"optimizers": [opt.optimizers[0].state_dict()]})
    loss = opt.step(lambda: torch.tensor(3.0))
    assert loss.item() == 3.0


def bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))


def test_recompute_batchnorm_is_the_plain_average_over_the_batches():
    net = bn_net()
    batches = [torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    net(batches[0])
    net.eval()
    assert recompute_batchnorm(net, ((x,) for x in batches), 2) == 2
    bn = net[1]
    feats = [net[0](x).detach() for x in batches[:2]]
    want_mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean, want_mean)
    assert bn.momentum == 0.1 and not net.training and int(bn.num_batches_tracked) == 2


def schedule_free(net):
    preset = REGISTRY.get("schedulefree_adamw")
    names, params = zip(*named_trainable(net))
    opt = build_optimizer(preset, net, names, params, [], preset.resolve({"bn_batches": 2}))
    return preset, opt


def test_schedule_free_is_evaluated_at_its_average_with_fresh_statistics_and_resumes_in_train_mode():
    net = bn_net()
    preset, opt = schedule_free(net)
    x = torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    lifecycle = OptimizerLifecycle(preset, opt, net, preset.resolve({"bn_batches": 2}))
    for _ in range(3):
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
    train_point = [p.detach().clone() for p in net.parameters()]
    z = [opt.state[p]["z"].clone() for p in net.parameters()]
    drawn = []
    stream = ((drawn.append(i) or (x + i,)) for i in range(100))
    with lifecycle.evaluation(stream):
        beta1 = opt.param_groups[0]["betas"][0]
        for p, y, zz in zip(net.parameters(), train_point, z):  # x = y + (1 - 1/beta1)(z - y)
            torch.testing.assert_close(p.detach(), torch.lerp(y, zz, 1 - 1 / beta1))
        assert drawn == [0, 1] and lifecycle.bn_passes == 2 and int(net[1].num_batches_tracked) == 2
        saved = {"model": {k: v.clone() for k, v in net.state_dict().items()}, "opt": opt.state_dict()}
    after = [p.detach().clone() for p in net.parameters()]
    for p, y in zip(after, train_point):
        torch.testing.assert_close(p, y)
    # A run restored from that checkpoint is back at exactly the same training point.
    net2 = bn_net()
    preset2, opt2 = schedule_free(net2)
    OptimizerLifecycle(preset2, opt2, net2, preset2.resolve())
    net2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    assert opt2.param_groups[0]["train_mode"] is True
    for p, q in zip(net2.parameters(), after):
        assert torch.equal(p, q)


def test_an_optimizer_without_train_and_eval_is_left_alone():
    net = bn_net()
    preset = REGISTRY.get("adam")
    opt = torch.optim.Adam(net.parameters())
    lifecycle = OptimizerLifecycle(preset, opt, net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with lifecycle.evaluation(iter(lambda: pytest.fail("no batch may be drawn"), None)):
        pass
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize("needs, message", [("closure", "needs='closure' must be a frozenset"),
                                            ({"hessian"}, "unknown need 'hessian'; known: closure, train_eval")])
def test_needs_are_checked_when_a_plugin_loads(needs, message):
    preset = OptimizerPreset(name="x", title="X", factory="torch.optim:SGD", defaults={"lr": 0.1}, needs=needs)
    with pytest.raises(ValueError, match=message):
        validate_preset(preset)
    with pytest.raises(ValueError, match="groups 3 is not callable or a dotted name"):
        validate_preset(OptimizerPreset(name="x", title="X", factory="torch.optim:SGD", groups=3))


def test_capabilities_are_data_on_the_presets():
    caps = {name: REGISTRY.get(name).capabilities() for name in
            ("adam", "mtadamv2", "muon", "sam_sgd", "schedulefree_adamw", "prodigy", "dadapt_adam")}
    assert caps == {"adam": [], "mtadamv2": ["per-task"], "muon": ["groups"], "sam_sgd": ["closure"],
                    "schedulefree_adamw": ["train_eval"], "prodigy": ["lr-free"], "dadapt_adam": ["lr-free"]}
    assert set(REGISTRY.get("prodigy").tuning_space()) == {"d_coef"}
    zoo = [p for p in REGISTRY.presets.values() if p.origin in ("torch", "pytorch-optimizer")]
    assert len(zoo) >= 15 and all(p.description and p.tuning_space() for p in zoo)


def test_library_optimizers_by_name_step_and_the_refused_ones_say_why():
    net = bn_net()
    net(torch.zeros(1, 3, 6, 6))
    entries = library_entries()
    assert len(entries) == 128 and sum(e.refused is None for e in entries) == 128 - len(REFUSED)
    for entry in entries:
        if entry.refused:
            with pytest.raises(ConfigError, match=rf"^{entry.name} cannot run here: it "):
                library_preset(entry.name)
            continue
        preset = library_preset(entry.name)
        assert preset.name == entry.name and preset.resolve() == {}
        opt = preset.build(list(net.parameters()), **preset.resolve())
        loss = net(torch.ones(2, 3, 6, 6)).pow(2).mean()
        loss.backward()
        opt.step((lambda: net(torch.ones(2, 3, 6, 6)).pow(2).mean()) if "closure" in preset.needs else None)
        opt.zero_grad()
    with pytest.raises(ConfigError, match=r"pytorch-optimizer has no optimizer 'lionn'; did you mean 'lion'"):
        library_preset("pytorch_optimizer:lionn")
    assert REGISTRY.get("pytorch_optimizer:fromage").notice == "licence CC BY-NC-SA 4.0: non-commercial use only"


def test_listing_imports_neither_torch_nor_pytorch_optimizer():
    code = ("import sys; from mtbench.cli import main\n"
            "try:\n    main(['list'], prog_name='mtbench')\nexcept SystemExit:\n    pass\n"
            "print('loaded:', sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'pytorch_optimizer'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MTBENCH_PLUGINS": ""})
    assert "pytorch-optimizer (15)" in out.stdout and "torch.optim (5)" in out.stdout, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "loaded: []"


def invoke(args):
    from click.testing import CliRunner

    from mtbench.cli import main

    return CliRunner().invoke(main, args, env={"MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": ""})


def test_list_all_shows_the_library_and_why_some_are_refused():
    result = invoke(["list", "--all"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    sophia = next(line for line in lines if line.startswith("pytorch_optimizer:sophiah "))
    assert "refused: it needs Hessian-vector products" in sophia
    assert any(line.startswith("pytorch_optimizer:alig ") and "runs (closure)" in line for line in lines)
    assert any(line.startswith("pytorch_optimizer:fromage ") and "non-commercial" in line for line in lines)
    assert f"{128 - len(REFUSED)} of 128 optimizers of pytorch-optimizer run by name" in result.output
    records = invoke(["list", "--json"]).output
    import json

    muon = next(r for r in json.loads(records)["optimizers"] if r["name"] == "muon")
    assert muon["origin"] == "torch" and muon["groups"] == "mtbench.training.optimizers:hidden_matrices"
    assert muon["tuning_space"] == {"lr": "lr=0.002:0.2:log", "adamw_lr": "adamw_lr=3e-05:0.003:log"}


def test_a_refused_library_optimizer_is_one_line_before_anything_runs(tmp_path):
    result = invoke(["run", "-o", "pytorch_optimizer:adahessian", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        "Error: pytorch_optimizer:adahessian cannot run here: it needs Hessian-vector products (a backward pass "
        "with create_graph=True), which the trainer does not take"]
    assert not any(tmp_path.iterdir())
