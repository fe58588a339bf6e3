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
    write_plugin(tmp_path, "lion_plugin", "my_lion")
    install_distribution(tmp_path, "mtbench-lion", {"my_lion": "lion_plugin"})
    monkeypatch.syspath_prepend(str(tmp_path))
    result = invoke(["list", "--json"])
    assert result.exit_code == 0, result.output
    records = {r["name"]: r for r in json.loads(result.output)["optimizers"]}
    assert len(records) == 29
    assert records["my_lion"]["defaults"] == {"lr": 1e-4, "momentum": 0.5}
    assert "entry point lion_plugin from mtbench-lion 1.0" in records["my_lion"]["source"]
    preset = load_registry(environ={}).get("my_lion")
    opt = preset.resolve_factory()([__import__("torch").zeros(2, requires_grad=True)], **preset.resolve())
    assert type(opt).__name__ == "Lion" and opt.defaults["lr"] == 1e-4


def test_a_local_plugin_file_and_folder_add_optimizers(tmp_path):
    single = write_plugin(tmp_path / "one", "lion_local", "my_lion")
    write_plugin(tmp_path / "many", "alpha", "alpha")
    write_plugin(tmp_path / "many", "beta", "beta")
    result = invoke(["--plugin", str(single), "--plugin", str(tmp_path / "many"), "list"])
    assert result.exit_code == 0, result.output
    for name in ("my_lion", "alpha", "beta", "mtadamv2"):
        assert f" {name} " in result.output
    assert "31 optimizers" in result.output


def test_mtbench_plugins_environment_variable(tmp_path):
    write_plugin(tmp_path / "a", "alpha", "alpha")
    write_plugin(tmp_path / "b", "beta", "beta")
    paths = os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b" / "beta.py")])
    registry = load_registry(environ={"MTBENCH_PLUGINS": paths})
    assert {"alpha", "beta"} <= set(registry.names())


def test_a_broken_plugin_is_reported_by_name_and_the_rest_keeps_working(tmp_path):
    write_plugin(tmp_path, "broken", "x", body="import not_a_module_anywhere\n")
    write_plugin(tmp_path, "wrong", "x", body="from mtbench import hookimpl\n\n@hookimpl\ndef mtbench_optimizers():\n    return ['adam']\n")
    write_plugin(tmp_path, "good", "my_lion")
    result = invoke(["--plugin", str(tmp_path), "list"])
    assert result.exit_code == 0
    assert "warning: plugin 'broken' (file " in result.output
    assert "ModuleNotFoundError: No module named 'not_a_module_anywhere'" in result.output
    assert "warning: plugin 'wrong'" in result.output and "returned str, expected mtbench.OptimizerPreset" in result.output
    assert " my_lion " in result.output and "29 optimizers" in result.output

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
    assert "adagrad" not in registry.names() and len(registry.names()) == 27
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


FACTORY_PLUGIN = '''
from mtbench import OptimizerPreset, hookimpl


def factory(params, lr):
    {body}


@hookimpl
def mtbench_optimizers():
    return [OptimizerPreset(name="boom", title="Boom", factory=factory, defaults={"lr": 0.1})]
'''


@pytest.mark.parametrize(
    "body, message",
    [
        ("raise RuntimeError('no kernel for this device')",
         "could not be built: its factory raised RuntimeError: no kernel for this device"),
        ("return None", "its factory returned None, expected a torch.optim.Optimizer"),
        ("return [1, 2]", "its factory returned list, expected a torch.optim.Optimizer"),
        ("import sys; sys.exit(4)", "could not be built: its factory called sys.exit(4)"),
    ],
)
def test_a_factory_that_fails_is_a_config_error_naming_plugin_and_preset(tmp_path, body, message):
    import torch

    from mtbench.errors import ConfigError

    path = write_plugin(tmp_path, "boom_plugin", "x", body=FACTORY_PLUGIN.replace("{body}", body))
    preset = load_registry([path], environ={}).get("boom")
    with pytest.raises(ConfigError) as info:
        preset.build([torch.zeros(2, requires_grad=True)], **preset.resolve())
    text = str(info.value)
    assert text.startswith(f"optimizer 'boom' from plugin 'boom_plugin' (file {path})")
    assert message in text and "\n" not in text


def test_a_factory_that_rejects_its_settings_says_so():
    import torch

    from mtbench.errors import ConfigError

    preset = load_registry(environ={}).get("adam")
    with pytest.raises(ConfigError, match=r"optimizer 'adam' from plugin 'adam' \(entry point mtbench_plugins.adam"
                       r".*\) rejected its settings lr=0.001 betas=2,0.999 eps=1e-08: ValueError: Invalid beta parameter"):
        preset.build([torch.zeros(2, requires_grad=True)], lr=0.001, betas=(2.0, 0.999), eps=1e-8)
    opt = preset.build([torch.zeros(2, requires_grad=True)], **preset.resolve())
    assert isinstance(opt, torch.optim.Adam)


def test_run_reports_a_failing_factory_in_one_line(tmp_path):
    path = write_plugin(tmp_path / "plugins", "boom_plugin", "x",
                        body=FACTORY_PLUGIN.replace("{body}", "raise RuntimeError('out of memory')"))
    out = tmp_path / "runs"
    result = invoke(["--plugin", str(path), "run", "-o", "boom", "--out", str(out), "--image-size", "32",
                     "--limit-train", "16", "--limit-val", "8", "--epochs", "1", "--quiet"])
    assert result.exit_code == 1, result.output
    assert "Error: optimizer 'boom' from plugin 'boom_plugin'" in result.output
    assert "its factory raised RuntimeError: out of memory" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "body, reason",
    [
        ("import sys\nsys.exit(3)\n", "called sys.exit(3) while loading"),
        ("raise SystemExit('bad python')\n", "called sys.exit('bad python') while loading"),
        ("import sys\nfrom mtbench import hookimpl\n\n@hookimpl\ndef mtbench_optimizers():\n    sys.exit()\n",
         "mtbench_optimizers() called sys.exit()"),
    ],
)
def test_a_plugin_that_calls_sys_exit_is_reported_and_the_rest_keeps_working(tmp_path, body, reason):
    write_plugin(tmp_path, "quitter", "x", body=body)
    write_plugin(tmp_path, "good", "my_lion")
    result = invoke(["--plugin", str(tmp_path), "list"])
    assert result.exit_code == 0, result.output
    assert f"warning: plugin 'quitter' (file {tmp_path / 'quitter.py'}): {reason}" in result.output
    assert " my_lion " in result.output and "29 optimizers" in result.output


def test_a_disabled_optimizer_is_called_disabled_not_unknown(tmp_path):
    registry = load_registry(environ={"MTBENCH_DISABLE_PLUGINS": "adam"})
    with pytest.raises(Exception, match=r"^optimizer 'adam' is disabled by \$MTBENCH_DISABLE_PLUGINS$"):
        registry.get("adam")
    result = invoke(["run", "-o", "adam", "--out", str(tmp_path)], env={"MTBENCH_DISABLE_PLUGINS": "adam"})
    assert result.exit_code == 1
    assert "optimizer 'adam' is disabled by $MTBENCH_DISABLE_PLUGINS" in result.output
    assert "did you mean" not in result.output


def test_a_missing_path_in_mtbench_plugins_is_called_missing(tmp_path):
    missing = tmp_path / "x" / "y"
    write_plugin(tmp_path / "ok", "alpha", "alpha")
    registry = load_registry(environ={"MTBENCH_PLUGINS": os.pathsep.join([str(missing), str(tmp_path / "ok")])})
    assert [str(f) for f in registry.failures] == [f"MTBENCH_PLUGINS: {missing} does not exist"]
    assert "alpha" in registry.names()
    result = invoke(["list"], env={"MTBENCH_PLUGINS": str(missing)})
    assert result.exit_code == 0
    assert f"warning: MTBENCH_PLUGINS: {missing} does not exist" in result.output
