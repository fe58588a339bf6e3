"""A method plugin that breaks its contract ends the run with one line naming the method and its plugin.

What a method returns is checked where it enters the trainer: ``combine``'s gradients (their
number, None only where no task reaches a parameter, tensors shaped like the parameters, finite),
its exceptions, and a ``state_dict`` that every checkpoint must be able to load with weights_only.
"""

import json
import re
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mtbench import MethodPreset
from mtbench.cli import main
from mtbench.config import build_config
from mtbench.errors import MethodError
from mtbench.plugins import load_registry
from mtbench.train import train

REGISTRY = load_registry(environ={})
TINY = dict(image_size=32, limit_train=16, limit_val=8, batch_size=8, epochs=1, device="cpu")
SOURCE = "'broken' (file /plugins/broken.py)"
LABEL = f"method 'broken' from plugin {SOURCE}"


def summed(task_grads):
    """The plain sum of the tasks' gradients, None where no task reaches a parameter."""
    out = []
    for grads in zip(*task_grads):
        present = [g for g in grads if g is not None]
        out.append(sum(present) if present else None)
    return out


class Broken:
    """A method whose combine returns ``returns(task_grads)`` and whose state is ``state()``."""

    def __init__(self, num_tasks, returns=summed, state=dict):
        self.returns, self.state = returns, state

    def combine(self, task_grads, losses, step):
        return self.returns(task_grads)

    def state_dict(self):
        return self.state()

    def load_state_dict(self, state):
        pass


def preset(**settings):
    return MethodPreset(name="broken", title="Broken", factory=lambda num_tasks: Broken(num_tasks, **settings),
                        description="A method that breaks its contract (a test).", source=SOURCE)


def run(run_dir, method):
    adam = REGISTRY.get("adam")
    return train(build_config(adam, run_dir, method, method="broken", **TINY), adam, method=method,
                 progress=False, echo=lambda line: None)


def raise_zero(task_grads):
    return 1 / 0


def first_flattened(task_grads):
    grads = summed(task_grads)
    return [grads[0].reshape(-1), *grads[1:]]


def with_nan(task_grads):
    grads = summed(task_grads)
    grads[0] = torch.full_like(grads[0], float("nan"))
    return grads


def as_lists(task_grads):
    return [None if g is None else g.tolist() for g in summed(task_grads)]


def as_float64(task_grads):
    return [None if g is None else g.double() for g in summed(task_grads)]


@pytest.mark.parametrize("returns, problem", [
    (lambda task_grads: [None], r"its combine returned 1 gradients at step 1: expected \d+, one per parameter"),
    (lambda task_grads: None, r"its combine returned None at step 1: expected a list of \d+ gradients"),
    (lambda task_grads: [None] * len(task_grads[0]),
     r"its combine returned None for parameter backbone\.\S+ at step 1, which the tasks reach"),
    (raise_zero, r"its combine raised ZeroDivisionError: division by zero at step 1"),
    (first_flattened, r"its combine returned a gradient of float32 \(\d+,\) on cpu for parameter backbone\.\S+ at "
                      r"step 1: expected float32 \(\d+, \d+, \d+, \d+\) on cpu, like the parameter"),
    (as_float64, r"its combine returned a gradient of float64 .* expected float32"),
    (as_lists, r"its combine returned list for parameter backbone\.\S+ at step 1: expected a tensor"),
    (with_nan, r"its combine returned a non-finite gradient for parameter backbone\.\S+ at step 1, from finite "
               r"task gradients and losses"),
])
def test_a_combine_that_breaks_the_contract_is_one_error_naming_the_method(tmp_path, returns, problem):
    with pytest.raises(MethodError) as info:
        run(tmp_path / "run", preset(returns=returns))
    message = str(info.value)
    assert message.startswith(f"{LABEL}: ") and "\n" not in message
    assert re.search(problem, message) and "lower lr" not in message, message
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == message


class Opaque:
    """A Python object: torch.load(weights_only=True) refuses to build one."""


def test_a_state_no_checkpoint_could_load_is_refused_before_training(tmp_path):
    state = lambda: {"counts": torch.zeros(2), "history": [1.0, Opaque()]}  # noqa: E731
    with pytest.raises(MethodError, match=rf"^{re.escape(LABEL)}: its state_dict holds an object of type "
                                          r"test_method_contract\.Opaque at state_dict\(\)\['history'\]\[1\], "
                                          "which no checkpoint can hold"):
        run(tmp_path / "run", preset(state=state))
    assert not (tmp_path / "run").exists()  # refused before the run directory was written


def test_a_state_that_turns_unloadable_fails_at_the_first_checkpoint(tmp_path):
    steps = []

    def returns(task_grads):
        steps.append(1)
        return summed(task_grads)

    def state():
        return {"steps": np.int64(len(steps))} if steps else {}  # a NumPy scalar: weights_only refuses it

    with pytest.raises(MethodError, match=rf"^{re.escape(LABEL)}: its state_dict holds an object of type "
                                          r"numpy\.int64 at state_dict\(\)\['steps'\], which no checkpoint can "
                                          "hold: checkpoints load with weights_only"):
        run(tmp_path / "run", preset(returns=returns, state=state))
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["status"] == "failed" and "its state_dict holds" in summary["error"]
    assert not (tmp_path / "run/checkpoints/last.pt").exists()


def test_a_method_that_keeps_the_contract_trains_and_resumes(tmp_path):
    method = preset(state=lambda: {"weights": torch.ones(2), "seen": [1, 2.5, "x", None]})
    assert run(tmp_path / "run", method)["status"] == "completed"
    loaded = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert loaded["gradients"]["method"]["seen"] == [1, 2.5, "x", None]


PLUGIN = '''
from mtbench import MethodPreset, hookimpl


class OneGradient:
    def __init__(self, num_tasks):
        pass

    def combine(self, task_grads, losses, step):
        return [None]

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@hookimpl
def mtbench_methods():
    return [MethodPreset(name="onegrad", title="One gradient", factory=OneGradient, description="Broken.")]
'''


def test_the_cli_prints_the_broken_method_as_one_line(tmp_path):
    plugin = tmp_path / "onegrad.py"
    plugin.write_text(textwrap.dedent(PLUGIN))
    result = CliRunner().invoke(main, [
        "--plugin", str(plugin), "run", "--optimizer", "adam", "--method", "onegrad", "--image-size", "32",
        "--limit-train", "16", "--limit-val", "8", "--epochs", "1", "--device", "cpu", "--quiet",
        "--out", str(tmp_path / "runs")], env={"MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": ""})
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith(
        f"Error: method 'onegrad' from plugin 'onegrad' (file {plugin}): its combine returned 1 gradients at step 1")


def checked(returns=summed, **attributes):
    from mtbench.training.contract import CheckedMethod

    method = Broken(2, returns=returns)
    for name, value in attributes.items():
        setattr(method, name, value)
    return CheckedMethod(method, LABEL, ["shared.weight", "head.bias"], [torch.zeros(2, 2), torch.zeros(3)])


def test_a_non_finite_result_from_non_finite_task_gradients_is_not_blamed_on_the_method():
    from mtbench.errors import NonFiniteLossError

    task_grads = [[torch.full((2, 2), float("inf")), torch.ones(3)], [torch.ones(2, 2), None]]
    with pytest.raises(NonFiniteLossError, match=r"^non-finite task gradient at step 4 \(the losses were finite\)"):
        checked().combine(task_grads, torch.ones(2), 4)


def test_task_weights_that_are_not_numbers_name_the_method():
    assert checked(last_weights=torch.tensor([0.25, 0.75])).last_weights == [0.25, 0.75]
    assert checked().last_weights is None
    with pytest.raises(MethodError, match=rf"^{re.escape(LABEL)}: its last_weights is str: expected a tensor"):
        checked(last_weights="balanced").last_weights


class Scalar:
    """A losses-only method whose scalarize returns ``returns(losses)``."""

    def __init__(self, returns):
        self.returns = returns

    def scalarize(self, losses, step):
        return self.returns(losses)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _raise(losses):
    raise RuntimeError("no solver")


@pytest.mark.parametrize("returns, message", [
    (lambda losses: losses, r"its scalarize returned a tensor of float32 \(2,\) on cpu at step 3: expected a 0-d "
                            r"floating tensor, the scalar the step backpropagates$"),
    (lambda losses: 1.5, r"its scalarize returned float at step 3: expected a 0-d floating tensor"),
    (lambda losses: torch.tensor(2.0), r"its scalarize returned a scalar without gradient at step 3: expected one "
                                       r"computed from the losses it was given$"),
    (lambda losses: losses.sum() / 0 * 0, r"its scalarize returned a non-finite scalar at step 3, from finite losses$"),
    (_raise, r"its scalarize raised RuntimeError: no solver at step 3$"),
])
def test_a_losses_only_method_that_breaks_its_contract_is_one_method_error(returns, message):
    from mtbench.training.contract import CheckedMethod

    checked = CheckedMethod(Scalar(returns), LABEL, ["w"], [torch.zeros(2)])
    losses = torch.tensor([1.0, 2.0], requires_grad=True) * 1
    with pytest.raises(MethodError, match=f"^{re.escape(LABEL)}: {message}") as info:
        checked.scalarize(losses, 3)
    assert "\n" not in str(info.value)
    assert checked.method.returns is returns
    good = CheckedMethod(Scalar(lambda losses: losses.sum()), LABEL, ["w"], [torch.zeros(2)])
    assert good.scalarize(losses, 3).requires_grad
