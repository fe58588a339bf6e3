"""Workloads as plugins: the README's example runs from $MTBENCH_PLUGINS, a broken workload plugin is
isolated, the lookup suggests a name, and run directories from before workloads still load and resume."""

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mtbench.cli import main
from mtbench.config import DEFAULT_WORKLOAD, RunConfig, build_config
from mtbench.errors import ConfigError
from mtbench.plugins import load_registry
from mtbench.train import train

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The python block that follows the README's workload-plugin marker."""
    text = README.read_text()
    after = text[text.index("<!-- workload-plugin-example"):]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


def invoke(args, plugins: str = ""):
    return CliRunner().invoke(main, args, env={"MTBENCH_PLUGINS": plugins, "MTBENCH_DISABLE_PLUGINS": ""})


def test_the_readme_workload_plugin_trains_three_tasks_on_one_shared_batch(tmp_path):
    plugin = tmp_path / "my_workload.py"
    plugin.write_text(readme_example())
    listed = invoke(["list", "--json"], str(plugin))
    assert listed.exit_code == 0, listed.output
    (bands,) = [w for w in json.loads(listed.output)["workloads"] if w["name"] == "bands"]
    assert bands["batches"] == "shared" and [t["name"] for t in bands["tasks"]] == ["bands0", "bands1", "bands2"]

    out = tmp_path / "runs"
    result = invoke(["run", "--workload", "bands", "-o", "mtadamv2", "--epochs", "2", "--device", "cpu",
                     "--quiet", "--out", str(out)], str(plugin))
    assert result.exit_code == 0, result.output
    assert re.search(r"final: accuracy 0 \d+\.\d%  accuracy 1 \d+\.\d%  accuracy 2 \d+\.\d%", result.output)
    (run_dir,) = out.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    assert summary["status"] == "completed" and summary["workload"] == "bands" == config["workload"]
    assert summary["tasks"] == ["bands0", "bands1", "bands2"] and config["task_weights"] == [1 / 3] * 3
    assert summary["final_top1"] is None and set(summary["final_metrics"]) == {"acc0", "acc1", "acc2"}
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1]["backward_passes"] == 3 and steps[-1]["grad_cosine_mean"] is not None


BROKEN = {
    "raises.py": "from mtbench import hookimpl\n@hookimpl\ndef mtbench_workloads():\n    raise RuntimeError('no data')\n",
    "not_a_workload.py": "from mtbench import hookimpl\n@hookimpl\ndef mtbench_workloads():\n    return ['nyuv2']\n",
    "duplicate.py": "from mtbench import hookimpl\nfrom mtbench.workloads.imagenet_coco import WORKLOAD\n"
                    "@hookimpl\ndef mtbench_workloads():\n    return [WORKLOAD]\n",
    "bad_name.py": "import dataclasses\nfrom mtbench import hookimpl\nfrom mtbench.workloads.imagenet_coco import WORKLOAD\n"
                   "@hookimpl\ndef mtbench_workloads():\n    return [dataclasses.replace(WORKLOAD, name='Big Name')]\n",
}


def test_a_broken_workload_plugin_is_reported_by_name_and_the_others_keep_working(tmp_path):
    for name, code in BROKEN.items():
        (tmp_path / name).write_text(code)
    registry = load_registry([tmp_path], environ={})
    reasons = {f.name: f.reason for f in registry.failures}
    assert reasons["raises"] == "mtbench_workloads() raised RuntimeError: no data"
    assert reasons["not_a_workload"] == "ValueError: returned str, expected mtbench.Workload"
    assert reasons["duplicate"].startswith("workload 'imagenet-coco' is already defined by plugin 'imagenet_coco'")
    assert reasons["bad_name"] == "ValueError: workload name 'Big Name' must be lower-case letters, digits, '_' or '-'"
    assert registry.workload(DEFAULT_WORKLOAD).source.startswith("'imagenet_coco'")
    assert "adam" in registry.presets and "upgrad" in registry.methods
    listed = invoke(["plugins"], str(tmp_path / "raises.py"))
    assert listed.exit_code == 0 and "plugin 'raises'" in listed.output and "imagenet-coco" in listed.output


def test_an_unknown_workload_is_one_line_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown workload 'imagenet-cocoo'; did you mean 'imagenet-coco'\?"):
        load_registry(environ={}).workload("imagenet-cocoo")
    result = invoke(["run", "--workload", "imagenet-cocoo", "-o", "adam", "--out", str(tmp_path)])
    assert result.exit_code == 1 and result.output.startswith("Error: unknown workload 'imagenet-cocoo'")
    assert not any(tmp_path.iterdir())


def test_a_run_directory_from_before_workloads_loads_and_resumes_as_imagenet_coco(tmp_path):
    registry = load_registry(environ={})
    preset = registry.get("adam")
    run_dir = tmp_path / "run"
    config = build_config(preset, run_dir, image_size=32, limit_train=16, limit_val=8, batch_size=8, epochs=1,
                          device="cpu")
    train(config, preset, progress=False, echo=lambda s: None)
    # what an older mtbench wrote: no workload or data in config.json, nor in the checkpoint's settings
    saved = json.loads((run_dir / "config.json").read_text())
    for key in ("workload", "data"):
        del saved[key]
    (run_dir / "config.json").write_text(json.dumps(saved))
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    for key in ("workload", "data"):
        del ckpt["settings"][key]
    torch.save(ckpt, ckpt_path)

    saved.pop("preset")
    old = RunConfig.from_dict({**saved, "epochs": 2})
    assert old.workload == DEFAULT_WORKLOAD and old.loss_weights == (0.5, 0.5)
    summary = train(old, preset, resume=True, progress=False, echo=lambda s: None)
    assert summary["status"] == "completed" and summary["epochs"] == 2 and summary["workload"] == DEFAULT_WORKLOAD


def test_data_names_the_imagenet_coco_root_and_imagenet_belongs_to_that_workload_alone(tmp_path):
    from mtbench.data.synthetic import ensure_synthetic
    from mtbench.workloads import build
    from mtbench.workloads.imagenet_coco import WORKLOAD
    from tiny_workloads import tiny_workload

    imagenet, coco = ensure_synthetic(tmp_path / "cache")
    root = tmp_path / "data"
    root.mkdir()
    (root / "imagenet").symlink_to(imagenet)
    (root / "coco").symlink_to(coco)
    preset = load_registry(environ={}).get("adam")
    config = build_config(preset, tmp_path / "r", data=str(root), limit_train=4, limit_val=2)
    data = build.build_data(WORKLOAD, config)
    assert [len(s) for s in data.train] == [4, 4] and data.info["imagenet_dir"] == str(root / "imagenet")
    both = build_config(preset, tmp_path / "r", data=str(root), imagenet=str(imagenet), coco=str(coco))
    with pytest.raises(ConfigError, match=r"^--data and --imagenet/--coco both name the data; give one of them$"):
        build.build_data(WORKLOAD, both)
    tiny = tiny_workload(2, True)
    other = build_config(preset, tmp_path / "r", workload=tiny, imagenet=str(imagenet))
    with pytest.raises(ConfigError, match=r"^--imagenet is for the imagenet-coco workload; workload 'tiny2-shared' "
                                          r"takes its data with --data DIR$"):
        build.build_data(tiny, other)
