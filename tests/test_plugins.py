"""Plugin discovery: third-party entry points, local files, broken plugins, duplicates, the disable list."""

import json
import os
import textwrap

import pytest
from click.testing import CliRunner

from mtbench.cli import main
from mtbench.plugins import load_registry

LION = '''
import torch
from mtbench import OptimizerPreset, hookimpl


class Lion(torch.optim.SGD):
    """A stand-in third-party optimizer."""


@hookimpl
def mtbench_optimizers():
    return [OptimizerPreset(name="{name}", title="Lion", factory=Lion, defaults={{"lr": 1e-4, "momentum": 0.5}})]
'''


def write_plugin(folder, module, name, body=LION):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}.py"
    path.write_text(textwrap.dedent(body.format(name=name) if "{name}" in body else body))
    return path


def install_distribution(root, dist, modules):
    """A package 'installed' beside mtbench: a module plus a dist-info with entry points in group mtbench."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    info.joinpath("METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{ep} = {mod}\n" for ep, mod in modules.items())
    info.joinpath("entry_points.txt").write_text(f"[mtbench]\n{lines}")


def invoke(args, env=None):
    result = CliRunner().invoke(main, args, env={"MTBENCH_PLUGINS": "", "MTBENCH_DISABLE_PLUGINS": "", **(env or {})})
    return result


def test_an_installed_plugin_package_appears_in_list_without_changing_mtbench(tmp_path, monkeypatch):
    write_plugin(tmp_path, "lion_plugin", "lion")
    install_distribution(tmp_path, "mtbench-lion", {"lion": "lion_plugin"})
    monkeypatch.syspath_prepend(str(tmp_path))
    result = invoke(["list", "--json"])
    assert result.exit_code == 0, result.output
    records = {r["name"]: r for r in json.loads(result.output)}
    assert len(records) == 9
    assert records["lion"]["defaults"] == {"lr": 1e-4, "momentum": 0.5}
    assert "entry point lion_plugin from mtbench-lion 1.0" in records["lion"]["source"]
    preset = load_registry(environ={}).get("lion")
    opt = preset.factory([__import__("torch").zeros(2, requires_grad=True)], **preset.resolve())
    assert type(opt).__name__ == "Lion" and opt.defaults["lr"] == 1e-4


def test_a_local_plugin_file_and_folder_add_optimizers(tmp_path):
    single = write_plugin(tmp_path / "one", "lion_local", "lion")
    write_plugin(tmp_path / "many", "alpha", "alpha")
    write_plugin(tmp_path / "many", "beta", "beta")
    result = invoke(["--plugin", str(single), "--plugin", str(tmp_path / "many"), "list"])
    assert result.exit_code == 0, result.output
    for name in ("lion", "alpha", "beta", "mtadamv2"):
        assert f" {name} " in result.output
    assert "11 optimizers" in result.output


def test_mtbench_plugins_environment_variable(tmp_path):
    write_plugin(tmp_path / "a", "alpha", "alpha")
    write_plugin(tmp_path / "b", "beta", "beta")
    paths = os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b" / "beta.py")])
    registry = load_registry(environ={"MTBENCH_PLUGINS": paths})
    assert {"alpha", "beta"} <= set(registry.names())


def test_a_broken_plugin_is_reported_by_name_and_the_rest_keeps_working(tmp_path):
    write_plugin(tmp_path, "broken", "x", body="import not_a_module_anywhere\n")
    write_plugin(tmp_path, "wrong", "x", body="from mtbench import hookimpl\n\n@hookimpl\ndef mtbench_optimizers():\n    return ['adam']\n")
    write_plugin(tmp_path, "good", "lion")
    result = invoke(["--plugin", str(tmp_path), "list"])
    assert result.exit_code == 0
    assert "warning: plugin 'broken' (file " in result.output
    assert "ModuleNotFoundError: No module named 'not_a_module_anywhere'" in result.output
    assert "warning: plugin 'wrong'" in result.output and "returned str, expected mtbench.OptimizerPreset" in result.output
    assert " lion " in result.output and "9 optimizers" in result.output

    plugins = invoke(["--plugin", str(tmp_path), "plugins"])
    assert plugins.exit_code == 0
    assert "2 failed:" in plugins.output and "good" in plugins.output


def test_a_duplicate_name_is_an_error_naming_both_sources(tmp_path):
    path = write_plugin(tmp_path, "my_adam", "adam")
    registry = load_registry([path], environ={})
    assert registry.get("adam").title == "Adam"  # the first one stays
    (failure,) = registry.failures
    message = str(failure)
    assert f"plugin 'my_adam' (file {path})" in message
    assert "optimizer 'adam' is already defined by plugin 'adam' (entry point mtbench_plugins.adam" in message


def test_a_plugin_file_named_like_a_loaded_plugin(tmp_path):
    path = write_plugin(tmp_path, "sgd", "sgd_copy")
    registry = load_registry([path], environ={})
    (failure,) = registry.failures
    assert "a plugin named 'sgd' is already loaded (entry point mtbench_plugins.sgd" in str(failure)
    assert "sgd_copy" not in registry.names()


def test_disabled_plugins_do_not_load(tmp_path):
    path = write_plugin(tmp_path, "broken", "x", body="raise RuntimeError('must not import')\n")
    registry = load_registry([path], environ={"MTBENCH_DISABLE_PLUGINS": "broken, adagrad"})
    assert registry.failures == []
    assert "adagrad" not in registry.names() and len(registry.names()) == 7
    assert sorted(registry.disabled) == ["adagrad", "broken"]


def test_a_plugin_without_the_hook(tmp_path):
    path = write_plugin(tmp_path, "empty", "x", body="X = 1\n")
    (failure,) = load_registry([path], environ={}).failures
    assert "defines no @mtbench.hookimpl mtbench_optimizers()" in str(failure)


def test_a_bad_plugin_path_is_reported(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("")
    (failure,) = load_registry([text], environ={}).failures
    assert "not a .py file or a folder of them" in str(failure)
