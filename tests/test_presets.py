"""One table of presets drives the generic optimizer tests (after PyTorch's OptimizerInfo tests)."""

import copy

import pytest
import torch

from mtbench.errors import ConfigError
from mtbench.plugins import load_registry
from mtbench.presets import OptimizerPreset, Param

REGISTRY = load_registry(environ={})
# The guide's presets; the optimizer zoo's, built as a run builds them, have tests/test_zoo_generic.py.
PRESETS = [p for p in REGISTRY.presets.values() if p.listed_origin == "guide"]
EXPECTED_SETTINGS = {
    "sgd": {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4},
    "sgd_nesterov": {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    "adam": {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8},
    "adamw": {"lr": 0.001, "betas": (0.9, 0.999), "weight_decay": 0.01},
    "rmsprop": {"lr": 0.001, "alpha": 0.99, "eps": 1e-8},
    "adagrad": {"lr": 0.01, "lr_decay": 0.0, "eps": 1e-10},
    "adadelta": {"lr": 1.0, "rho": 0.9, "eps": 1e-6},
    "mtadamv2": {"lr": 0.001, "betas": (0.9, 0.999), "task_weights": (0.5, 0.5)},
}


def test_the_eight_builtin_presets_carry_the_guide_settings():
    assert list(REGISTRY.presets)[:8] == list(EXPECTED_SETTINGS) == [p.name for p in PRESETS]
    for name, settings in EXPECTED_SETTINGS.items():
        assert dict(REGISTRY.get(name).defaults) == settings
    assert [p.name for p in PRESETS if p.per_task_gradients] == ["mtadamv2"]


class Problem:
    """Two tasks on shared weights plus a task head each, and one parameter no task reaches."""

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.shared = torch.randn(6, 4, generator=g).requires_grad_()
        self.heads = [torch.randn(4, generator=g).requires_grad_() for _ in range(2)]
        self.unused = torch.randn(3, generator=g).requires_grad_()
        self.x = torch.randn(16, 6, generator=g)
        self.y = [torch.randn(16, generator=g), torch.randn(16, generator=g)]

    def params(self):
        return [self.shared, *self.heads, self.unused]

    def losses(self):
        h = torch.tanh(self.x @ self.shared)
        return [((h @ head - y) ** 2).mean() for head, y in zip(self.heads, self.y)]


def take_step(opt, preset, problem):
    """One optimizer step as the trainer drives this preset; returns the summed loss before it."""
    losses = problem.losses()
    opt.zero_grad(set_to_none=True)
    if preset.per_task_gradients:
        params = [p for group in opt.param_groups for p in group["params"]]  # the optimizer's order
        grads = [torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True) for loss in losses]
        opt.step([list(g) for g in grads])
    else:
        sum(losses).backward()
        opt.step()
    return float(sum(losses).detach())


def build(preset, problem, **overrides):
    return preset.resolve_factory()(problem.params(), **preset.resolve(overrides))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_lowers_the_loss_in_a_few_steps(preset):
    problem = Problem()
    opt = build(preset, problem)
    first = take_step(opt, preset, problem)
    for _ in range(20):
        take_step(opt, preset, problem)
    assert float(sum(problem.losses()).detach()) < first


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_state_dict_round_trip_continues_identically(preset):
    problem = Problem()
    opt = build(preset, problem)
    for _ in range(3):
        take_step(opt, preset, problem)
    saved_params = [p.detach().clone() for p in problem.params()]
    saved_state = copy.deepcopy(opt.state_dict())
    for _ in range(3):
        take_step(opt, preset, problem)
    expected = [p.detach().clone() for p in problem.params()]

    resumed = Problem()
    with torch.no_grad():
        for p, v in zip(resumed.params(), saved_params):
            p.copy_(v)
    opt2 = build(preset, resumed)
    opt2.load_state_dict(saved_state)
    for _ in range(3):
        take_step(opt2, preset, resumed)
    for got, want in zip(resumed.params(), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_a_parameter_without_gradient_is_untouched(preset):
    problem = Problem()
    before = problem.unused.detach().clone()
    opt = build(preset, problem)
    for _ in range(3):
        take_step(opt, preset, problem)
    assert torch.equal(problem.unused, before)
    assert not torch.equal(problem.shared, Problem().shared)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_honours_a_per_group_learning_rate(preset):
    problem = Problem()
    hyper = preset.resolve()
    frozen = problem.heads[1].detach().clone()
    groups = [
        {"params": [problem.shared, problem.heads[0], problem.unused]},
        {"params": [problem.heads[1]], "lr": 0.0},
    ]
    opt = preset.resolve_factory()(groups, **hyper)
    for _ in range(3):
        take_step(opt, preset, problem)
    assert torch.equal(problem.heads[1], frozen)
    assert not torch.equal(problem.heads[0], Problem().heads[0])


ADAM = REGISTRY.get("adam")
MTADAM = REGISTRY.get("mtadamv2")


@pytest.mark.parametrize(
    "preset, overrides, expected",
    [
        (ADAM, ["lr=0.01"], {"lr": 0.01}),
        (ADAM, ["betas=0.8,0.99"], {"betas": (0.8, 0.99)}),
        (ADAM, ["betas=(0.8, 0.99)"], {"betas": (0.8, 0.99)}),
        (ADAM, ["amsgrad=true"], {"amsgrad": True}),
        (ADAM, ["weight_decay=0"], {"weight_decay": 0.0}),
        (REGISTRY.get("sgd"), ["nesterov=yes", "momentum=0.5"], {"nesterov": True, "momentum": 0.5}),
        (MTADAM, ["task_weights=0.2,0.8", "norm_beta=0.5"], {"task_weights": (0.2, 0.8), "norm_beta": 0.5}),
    ],
)
def test_overrides_are_typed_from_the_preset(preset, overrides, expected):
    resolved = preset.resolve(overrides)
    for key, value in expected.items():
        assert resolved[key] == value and type(resolved[key]) is type(value)
    untouched = {k: v for k, v in preset.defaults.items() if k not in expected}
    assert {k: resolved[k] for k in untouched} == untouched


@pytest.mark.parametrize(
    "preset, override, pattern",
    [
        (ADAM, "lr=-1", r"lr=-1.0 is out of range: expected a number in \(0, inf\)"),
        (ADAM, "lr=0", r"lr=0.0 is out of range"),
        (ADAM, "lr=fast", r"lr='fast' is not allowed: expected a number"),
        (ADAM, "lr=nan", r"lr=nan is out of range"),
        (ADAM, "betas=0.9,1.0", r"betas=0.9,1 is out of range: expected 2 comma-separated values, each a number in \[0, 1\)"),
        (ADAM, "betas=0.9", r"betas=0.9 has 1 values: expected 2"),
        (ADAM, "eps=0", r"eps=0.0 is out of range"),
        (ADAM, "amsgrad=maybe", r"amsgrad='maybe' is not allowed: expected true or false"),
        (ADAM, "momentum=0.9", r"unknown setting 'momentum' for optimizer 'adam'; accepted: amsgrad, betas, eps, lr, weight_decay"),
        (ADAM, "lr", r"bad setting 'lr': expected key=value"),
        (REGISTRY.get("sgd"), "momentum=1.5", r"momentum=1.5 is out of range: expected a number in \[0, 1\)"),
        (REGISTRY.get("adagrad"), "lr_decay=-0.1", r"lr_decay=-0.1 is out of range"),
        (MTADAM, "task_weights=0.5,0.5,0.5", r"task_weights=0.5,0.5,0.5 has 3 values"),
        (MTADAM, "task_weights=-1,1", r"task_weights=-1,1 is out of range"),
    ],
)
def test_bad_overrides_name_key_value_and_what_is_allowed(preset, override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        preset.resolve([override])


def test_unknown_optimizer_suggests_the_closest_name():
    with pytest.raises(ConfigError, match=r"unknown optimizer 'adm'; did you mean 'adam'\?"):
        REGISTRY.get("adm")
    with pytest.raises(ConfigError, match=r"unknown optimizer 'nonesuch' \(available: sgd, sgd_nesterov, adam"):
        REGISTRY.get("nonesuch")


def test_a_preset_param_narrows_what_set_accepts():
    preset = OptimizerPreset(
        name="toy", title="Toy", factory=torch.optim.SGD, defaults={"lr": 0.1},
        params={"lr": Param(float, 0.0, 0.5, low_open=True)},
    )
    assert preset.resolve(["lr=0.4"])["lr"] == 0.4
    with pytest.raises(ConfigError, match=r"lr=0.6 is out of range: expected a number in \(0, 0.5\]"):
        preset.resolve(["lr=0.6"])


@pytest.mark.parametrize(
    "preset, message",
    [
        (OptimizerPreset(name=5, title="Five", factory=torch.optim.SGD), r"optimizer name 5 must be lower-case"),
        (OptimizerPreset(name="Adam2", title="A", factory=torch.optim.SGD), r"optimizer name 'Adam2' must be"),
        (OptimizerPreset(name="x", title="X", factory="SGD"),
         r"optimizer 'x': factory 'SGD' is not callable or a dotted name 'package.module:attr'"),
        (OptimizerPreset(name="x", title="X", factory=torch.optim.SGD, params=[Param(float)]),
         r"optimizer 'x': params must be a dict of mtbench.Param"),
        (OptimizerPreset(name="x", title="X", factory=torch.optim.SGD, defaults={"lr": -1.0}),
         r"optimizer 'x': bad default: lr=-1.0 is out of range"),
        ("adam", r"returned str, expected mtbench.OptimizerPreset"),
    ],
)
def test_validate_preset_says_what_is_wrong(preset, message):
    from mtbench.presets import validate_preset

    with pytest.raises(ValueError, match=message):
        validate_preset(preset)


def test_a_dotted_name_factory_is_imported_only_when_a_run_builds_it(tmp_path, monkeypatch):
    (tmp_path / "lazy_factory_mod.py").write_text(
        "import torch\n\ndef make(params, lr):\n    return torch.optim.SGD(params, lr=lr)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "lazy_factory_mod", raising=False)
    from mtbench.presets import validate_preset

    preset = validate_preset(OptimizerPreset(name="lazy", title="Lazy", factory="lazy_factory_mod:make",
                                             defaults={"lr": 0.5}))
    assert "lazy_factory_mod" not in __import__("sys").modules
    opt = preset.build([torch.zeros(2, requires_grad=True)], **preset.resolve())
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["lr"] == 0.5
    assert "lazy_factory_mod" in __import__("sys").modules


@pytest.mark.parametrize(
    "factory, message",
    [
        ("no_such_module_xyz:make", r"importing its factory 'no_such_module_xyz:make' raised ModuleNotFoundError"),
        ("torch.optim:NoSuchOptimizer", r"importing its factory 'torch.optim:NoSuchOptimizer' raised AttributeError"),
        ("torch:__version__", r"its factory 'torch:__version__' is \w+, not callable"),
    ],
)
def test_a_dotted_name_that_does_not_import_is_one_line_naming_the_preset(factory, message):
    preset = OptimizerPreset(name="lazy", title="Lazy", factory=factory, defaults={"lr": 0.1})
    with pytest.raises(ConfigError, match=r"^optimizer 'lazy' could not be built: " + message) as info:
        preset.build([torch.zeros(2, requires_grad=True)], **preset.resolve())
    assert "\n" not in str(info.value)

