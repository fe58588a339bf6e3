"""`mtbench list`, `mtbench list --json`, `mtbench plugins` and the CLI's handling of unknown names."""

import json

import pytest
from click.testing import CliRunner

from mtbench.cli import main

from test_presets import EXPECTED_SETTINGS


def invoke(args):
    return CliRunner().invoke(main, args, env={"MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": ""})


def test_list_json_has_the_eight_guide_settings_value_by_value():
    result = invoke(["list", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)["optimizers"]
    # The guide's eight come first and are listed as the guide's; the zoo's presets follow.
    assert [r["name"] for r in records][:8] == list(EXPECTED_SETTINGS)
    assert {r["origin"] for r in records[:8]} == {"guide"}
    records = records[:8]
    for record in records:
        want = {k: list(v) if isinstance(v, tuple) else v for k, v in EXPECTED_SETTINGS[record["name"]].items()}
        assert record["defaults"] == want
        assert record["per_task_gradients"] is (record["name"] == "mtadamv2")
        assert record["source"].startswith(f"'{record['name']}' (entry point mtbench_plugins.{record['name']}")
    expected = {r["name"]: r["expected"] for r in records}
    assert expected["sgd"] == {"top1": [0.5, 0.6], "miou": [0.03, 0.04], "convergence": "slow"}
    assert expected["adadelta"]["convergence"] == "very slow"
    assert expected["adamw"]["top1"] == [0.56, 0.66]


def test_list_table_shows_settings_and_expected_results():
    result = invoke(["list"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "the optimizer guide (8)"
    header = lines[1].split()
    assert header[:5] == ["#", "name", "title", "settings", "needs"]
    sgd_n = next(line for line in lines if " sgd_nesterov " in line)
    assert "lr=0.01 momentum=0.9 nesterov=true weight_decay=0.0001" in sgd_n
    assert "52%-62%" in sgd_n and "medium" in sgd_n
    mt = next(line for line in lines if " mtadamv2 " in line)
    assert "task_weights=0.5,0.5" in mt and " per-task " in mt
    assert "expected by the optimizer guide" in result.output


def test_list_verbose_shows_descriptions():
    result = invoke(["list", "-v"])
    assert result.exit_code == 0
    assert "adadelta: Adadelta with rho 0.9." in result.output
    assert "accepts --set amsgrad, betas, eps, lr, weight_decay" in result.output
    assert "\nsum: The plain weighted sum of the task losses" in result.output
    assert "which gives the same gradient.\n  accepts no settings" in result.output


def test_list_shows_the_methods_after_the_optimizers():
    result = invoke(["list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["#", "method"])
    assert header > next(i for i, line in enumerate(lines) if " mtadamv2 " in line)
    assert lines[header].split() == ["#", "method", "title", "cost", "per", "step", "settings", "plugin"]
    row = lines[header + 2]
    assert row.split()[:2] == ["1", "sum"]  # the default comes first
    assert " Weighted sum " in row and " one backward (weighted loss) " in row and row.endswith(" sum")
    assert "methods turn the per-task gradients into the one gradient" in result.output


def test_list_json_has_the_methods():
    result = invoke(["list", "--json"])
    assert result.exit_code == 0, result.output
    methods = {m["name"]: m for m in json.loads(result.output)["methods"]}
    assert methods["sum"]["reads"] == "loss" and methods["sum"]["cost"] == "one backward (weighted loss)"
    assert methods["sum"]["needs_grads"] is False and methods["sum"]["needs_losses"] is False
    assert methods["sum"]["defaults"] == {} and methods["sum"]["accepts"] == []
    assert methods["sum"]["source"].startswith("'sum' (entry point mtbench_plugins.sum_method")


# What each route of the trainer computes per step beyond the forward passes.
COSTS = {
    "sum": "one backward (weighted loss)",
    "upgrad": "T gradients + Gramian + weighted sum", "pcgrad": "T gradients + Gramian + weighted sum",
    "nash_mtl": "T gradients + Gramian + weighted sum", "random": "T gradients + Gramian + weighted sum",
    "graddrop": "T gradients + Jacobian copy + aggregator", "config": "T gradients + Jacobian copy + aggregator",
    "uncertainty": "one backward (weighted loss)", "dwa": "one backward (weighted loss)",
    "gradnorm": "one backward (weighted loss) + T backwards to the last shared layer",
}


def test_list_shows_what_each_method_costs_per_step():
    result = invoke(["list"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if line.split()[:1] != ["#"]
            and len(line.split()) > 2 and line.split()[1] in COSTS}
    for name, cost in COSTS.items():
        assert f"  {cost}  " in rows[name], rows[name]
    assert '"T gradients" is one backward pass that keeps the T tasks\' gradients apart' in result.output
    records = {m["name"]: m for m in json.loads(invoke(["list", "--json"]).output)["methods"]}
    for name, cost in COSTS.items():
        assert records[name]["cost"] == cost and records[name]["needs_grads"] is cost.startswith("T gradients")


def test_each_declared_cost_is_the_route_the_built_method_takes():
    """A method's ``reads`` is what its object does: a Gramian method computes the Gramian, etc."""
    from mtbench import GramianWeightingMethod, JacobianMethod, LossWeightingMethod
    from mtbench.plugins import load_registry

    routes = {"gramian": GramianWeightingMethod, "jacobian": JacobianMethod, "weights": LossWeightingMethod,
              "norms": LossWeightingMethod}
    methods = load_registry(environ={}).methods
    assert len(methods) >= 17
    for name, preset in methods.items():
        method = preset.build(2, **preset.resolve())
        if preset.reads == "loss":
            assert not isinstance(method, (GramianWeightingMethod, JacobianMethod, LossWeightingMethod)), name
        else:
            assert isinstance(method, routes[preset.reads]), name


def test_a_method_that_declares_nothing_costs_its_combine(tmp_path):
    plugin = tmp_path / "plain.py"
    plugin.write_text(
        "from mtbench import MethodPreset, hookimpl\n\n"
        "@hookimpl\ndef mtbench_methods():\n"
        "    return [MethodPreset(name='plain', title='Plain', factory=object)]\n")
    result = CliRunner().invoke(main, ["--plugin", str(plugin), "list"], env={"MTBENCH_PLUGINS": ""})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if " plain " in line)
    assert "  T gradients + the method's combine  " in row


def test_plugins_lists_sources_and_the_ops_backend():
    result = invoke(["plugins"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("compiled ops:")
    assert "entry point mtbench_plugins.mtadamv2" in result.output
    lines = result.output.splitlines()
    assert lines[1].split() == ["plugin", "optimizers", "methods", "workloads", "source"]
    assert next(line for line in lines if line.startswith("sum ")).split()[:4] == ["sum", "-", "sum", "-"]
    assert next(line for line in lines if line.startswith("imagenet_coco ")).split()[:4] == \
        ["imagenet_coco", "-", "-", "imagenet-coco"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["lst"], "no such command 'lst'; did you mean 'list'?"),
        (["run", "--optimizer", "adm"], "unknown optimizer 'adm'; did you mean 'adam'?"),
        (["run", "--optimizer", "adam", "--set", "lr=-1"], "lr=-1.0 is out of range: expected a number in (0, inf)"),
        (["run", "--optimizer", "adam", "--set", "betas=0.9"], "betas=0.9 has 1 values: expected 2 comma-separated"),
        (["run", "--optimizer", "adam", "--set", "gamma=2"], "unknown setting 'gamma' for optimizer 'adam'"),
        (["run", "--optimizer", "sgd", "--set", "nesterov=perhaps"], "nesterov='perhaps' is not allowed: expected true or false"),
    ],
)
def test_unknown_names_and_bad_overrides_are_one_line_errors(args, message, tmp_path):
    result = CliRunner().invoke(main, args + (["--out", str(tmp_path)] if args[0] == "run" else []))
    assert result.exit_code == 2 or result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
