"""Multi-task gradient methods as plugins: the contract, discovery beside optimizers, build_method."""

import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

import mtbench
from mtbench import MethodPreset, Param, build_method
from mtbench.cli import main
from mtbench.errors import ConfigError
from mtbench.plugins import load_registry

CLEAN_ENV = {"MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": ""}

# A third-party method with one setting, and an optimizer from the same plugin.
HALVES = '''
import torch
from mtbench import MethodPreset, OptimizerPreset, Param, hookimpl


class Halves:
    def __init__(self, num_tasks, scale):
        self.num_tasks, self.scale, self.calls = num_tasks, scale, 0

    def combine(self, task_grads, losses, step):
        self.calls += 1
        out = []
        for grads in zip(*task_grads):
            present = [g for g in grads if g is not None]
            out.append(self.scale * sum(present) if present else None)
        return out

    def state_dict(self):
        return {{"calls": self.calls}}

    def load_state_dict(self, state):
        self.calls = state["calls"]


@hookimpl
def mtbench_methods():
    return [MethodPreset(name="{name}", title="Halves", factory=Halves, defaults={{"scale": 0.5}},
                         params={{"scale": Param(float, 0.0, 1.0, low_open=True)}},
                         description="Half of the sum (a test method).", needs_losses=True, order=5)]
'''

BOTH_HOOKS = HALVES + '''

@hookimpl
def mtbench_optimizers():
    return [OptimizerPreset(name="halfsgd", title="Half SGD", factory=torch.optim.SGD, defaults={{"lr": 0.05}})]
'''


def write_plugin(folder, module, body, name="halves"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}.py"
    path.write_text(textwrap.dedent(body.format(name=name)))
    return path


def invoke(args, env=None):
    return CliRunner().invoke(main, args, env={**CLEAN_ENV, **(env or {})})


def test_sum_is_a_builtin_plugin_found_through_its_entry_point():
    registry = load_registry(environ={})
    assert registry.method_names()[0] == "sum"
    preset = registry.get_method("sum")
    assert preset.source.startswith("'sum' (entry point mtbench_plugins.sum_method")
    assert preset.reads == "loss" and not preset.needs_grads and not preset.needs_losses
    assert dict(preset.defaults) == {}
    assert "sum" not in registry.names()  # methods and optimizers are separate tables
    (info,) = [p for p in registry.plugins if p.name == "sum"]
    assert info.methods == ("sum",) and info.presets == ()


def test_sum_adds_the_task_gradients_of_each_parameter():
    method = build_method("sum", num_tasks=3)
    a, b, c = torch.tensor([1.0, 2.0]), torch.tensor([10.0, 20.0]), torch.tensor([100.0, 200.0])
    head = torch.tensor([5.0])
    task_grads = [[a, None, None], [b, head, None], [c, None, None]]
    shared, only_one, unreached = method.combine(task_grads, torch.tensor([0.1, 0.2, 0.3]), step=1)
    assert torch.equal(shared, torch.tensor([111.0, 222.0]))
    assert torch.equal(only_one, head) and only_one is not head  # never an alias of a task's buffer
    assert unreached is None
    assert torch.equal(a, torch.tensor([1.0, 2.0]))  # the inputs are left as they were
    assert method.state_dict() == {}
    method.load_state_dict(method.state_dict())
    with pytest.raises(ValueError, match="sum was built for 3 tasks"):
        method.combine(task_grads[:2], torch.zeros(2), step=2)


def test_build_method_checks_the_name_and_the_settings():
    with pytest.raises(ConfigError, match=r"^unknown method 'summ'; did you mean 'sum'\? \(available: sum"):
        build_method("summ")
    with pytest.raises(ConfigError, match=r"^unknown setting 'alpha' for method 'sum'; accepted: none$"):
        build_method("sum", alpha=0.5)
    with pytest.raises(ConfigError, match=r"num_tasks=0 is not allowed: expected an integer >= 1"):
        build_method("sum", num_tasks=0)


def test_method_settings_use_the_same_checks_as_optimizer_settings(tmp_path, monkeypatch):
    path = write_plugin(tmp_path, "halves_plugin", HALVES)
    preset = load_registry([path], environ={}).get_method("halves")
    assert preset.resolve() == {"scale": 0.5}
    assert preset.resolve(["scale=0.25"]) == {"scale": 0.25}
    assert preset.resolve({"scale": 1}) == {"scale": 1.0}
    with pytest.raises(ConfigError, match=r"^scale=2.0 is out of range: expected a number in \(0, 1\]$"):
        preset.resolve(["scale=2"])
    with pytest.raises(ConfigError, match=r"^unknown setting 'c' for method 'halves'; accepted: scale$"):
        preset.resolve(["c=1"])
    inferred = MethodPreset(name="toy", title="Toy", factory=object, defaults={"every": 5})
    assert inferred.resolve(["every=3"]) == {"every": 3}
    with pytest.raises(ConfigError, match=r"^every='2.5' is not allowed: expected any integer$"):
        inferred.resolve(["every=2.5"])

    monkeypatch.setenv("MTBENCH_PLUGINS", str(path))
    method = build_method("halves", num_tasks=2, scale=0.25)
    (g,) = method.combine([[torch.tensor(4.0)], [torch.tensor(8.0)]], torch.zeros(2), step=1)
    assert float(g) == 3.0 and method.state_dict() == {"calls": 1}


def test_a_plugin_may_bring_optimizers_and_methods_together(tmp_path):
    path = write_plugin(tmp_path, "both", BOTH_HOOKS)
    registry = load_registry([path], environ={})
    assert registry.failures == []
    assert "halfsgd" in registry.names() and "halves" in registry.method_names()
    (info,) = [p for p in registry.plugins if p.name == "both"]
    assert info.presets == ("halfsgd",) and info.methods == ("halves",)
    assert registry.get_method("halves").source == f"'both' (file {path})"

    result = invoke(["--plugin", str(path), "plugins"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("both "))
    assert "halfsgd" in line and "halves" in line


def test_a_duplicate_method_name_is_an_error_naming_both_sources(tmp_path):
    path = write_plugin(tmp_path, "my_sum", HALVES, name="sum")
    registry = load_registry([path], environ={})
    assert registry.get_method("sum").title == "Weighted sum"  # the first one stays
    (failure,) = registry.failures
    assert f"plugin 'my_sum' (file {path})" in str(failure)
    assert "method 'sum' is already defined by plugin 'sum' (entry point mtbench_plugins.sum_method" in str(failure)


def test_a_disabled_method_is_called_disabled():
    registry = load_registry(environ={"MTBENCH_DISABLE_PLUGINS": "sum"})
    assert "sum" not in registry.method_names() and registry.disabled == ["sum"]
    with pytest.raises(ConfigError, match=r"^method 'sum' is disabled by \$MTBENCH_DISABLE_PLUGINS$"):
        registry.get_method("sum")


BAD_HOOK = '''
import torch
from mtbench import MethodPreset, OptimizerPreset, hookimpl


@hookimpl
def mtbench_optimizers():
    return [OptimizerPreset(name="fine", title="Fine", factory=torch.optim.SGD, defaults={{"lr": 0.1}})]


@hookimpl
def mtbench_methods():
    {body}
'''


@pytest.mark.parametrize(
    "body, reason",
    [
        ("raise RuntimeError('no solver')", "mtbench_methods() raised RuntimeError: no solver"),
        ("import sys; sys.exit(2)", "mtbench_methods() called sys.exit(2)"),
        ("return [OptimizerPreset(name='x', title='X', factory=torch.optim.SGD)]",
         "returned OptimizerPreset, expected mtbench.MethodPreset"),
        ("return 'pcgrad'", "mtbench_methods() returned str, expected a list of MethodPreset"),
        ("return [MethodPreset(name='PC Grad', title='X', factory=object)]",
         "method name 'PC Grad' must be lower-case letters, digits"),
        ("return [MethodPreset(name='pc', title='X', factory=object, reads='grams')]",
         "raised ValueError: method 'pc': reads='grams', expected one of loss, weights, norms, gramian"),
    ],
)
def test_a_bad_methods_hook_drops_the_whole_plugin_and_says_why(tmp_path, body, reason):
    path = write_plugin(tmp_path, "shaky", BAD_HOOK.replace("{body}", body))
    registry = load_registry([path], environ={})
    (failure,) = registry.failures
    assert str(failure).startswith(f"plugin 'shaky' (file {path}): ")
    assert reason in str(failure)
    assert "fine" not in registry.names()  # half a plugin is not loaded
    assert "shaky" not in [p.name for p in registry.plugins]


def test_a_plugin_with_neither_hook_names_both(tmp_path):
    path = write_plugin(tmp_path, "empty", "X = 1\n")
    (failure,) = load_registry([path], environ={}).failures
    assert "defines no @mtbench.hookimpl mtbench_optimizers() or mtbench_methods()" in str(failure)


FACTORY = '''
from mtbench import MethodPreset, hookimpl


class NoState:
    def combine(self, task_grads, losses, step):
        return []


def factory(num_tasks):
    {body}


@hookimpl
def mtbench_methods():
    return [MethodPreset(name="flaky", title="Flaky", factory=factory)]
'''


@pytest.mark.parametrize(
    "body, message",
    [
        ("return None", "returned None, expected an object with callable combine, state_dict, load_state_dict"),
        ("return NoState()", "returned NoState, expected an object with callable state_dict, load_state_dict"),
        ("raise RuntimeError('cuda only')", "could not be built: its factory raised RuntimeError: cuda only"),
        ("raise SystemExit(5)", "could not be built: its factory called sys.exit(5)"),
        ("raise ValueError('needs 2 tasks')", "rejected its settings (none): ValueError: needs 2 tasks"),
    ],
)
def test_a_method_factory_that_fails_is_one_config_error(tmp_path, monkeypatch, body, message):
    path = write_plugin(tmp_path, "flaky_plugin", FACTORY.replace("{body}", body))
    monkeypatch.setenv("MTBENCH_PLUGINS", str(path))
    monkeypatch.setenv("MTBENCH_DISABLE_PLUGINS", "")
    with pytest.raises(ConfigError) as info:
        build_method("flaky")
    text = str(info.value)
    assert text.startswith(f"method 'flaky' from plugin 'flaky_plugin' (file {path})")
    assert message in text and "\n" not in text


def test_a_method_object_with_a_parameters_attribute_that_is_not_callable_is_refused():
    class Weights:
        parameters = [torch.zeros(2)]

        def combine(self, task_grads, losses, step):
            return []

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    preset = MethodPreset(name="weights", title="Weights", factory=lambda num_tasks: Weights())
    with pytest.raises(ConfigError, match=r"returned Weights, expected an object with callable parameters"):
        preset.build(2)


class LossesOnly:
    """A losses-only method object: scalarize instead of combine."""

    def scalarize(self, losses, step):
        return losses.sum()

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_a_losses_only_method_needs_scalarize_not_combine():
    preset = MethodPreset(name="lossy", title="Lossy", factory=lambda num_tasks: LossesOnly(), reads="loss")
    assert isinstance(preset.build(2), LossesOnly)
    combine_only = MethodPreset(name="lossy", title="Lossy", factory=lambda num_tasks: Weights(), reads="loss")
    with pytest.raises(ConfigError, match=r"returned Weights, expected an object with callable scalarize$"):
        combine_only.build(2)
    gradients = MethodPreset(name="grads", title="Grads", factory=lambda num_tasks: LossesOnly())
    with pytest.raises(ConfigError, match=r"returned LossesOnly, expected an object with callable combine$"):
        gradients.build(2)
    broken = LossesOnly()
    broken.after_step = "later"
    with pytest.raises(ConfigError, match=r"expected an object with callable after_step$"):
        MethodPreset(name="lossy", title="Lossy", factory=lambda num_tasks: broken, reads="loss").build(2)


class Weights:
    def combine(self, task_grads, losses, step):
        return []

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_public_names_and_a_cheap_import():
    assert {"MethodPreset", "Method", "build_method"} <= set(mtbench.__all__)
    code = "import mtbench, sys; mtbench.MethodPreset; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_param_is_shared_not_copied():
    from mtbench.presets import OptimizerPreset, Preset

    assert issubclass(MethodPreset, Preset) and issubclass(OptimizerPreset, Preset)
    assert MethodPreset.resolve is OptimizerPreset.resolve
