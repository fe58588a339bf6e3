"""`mtbench bench`: the rows, the byte model, the output formats and one-line errors; --method; and
the benchmark scripts: every row on one device, which they print."""

from __future__ import annotations

import importlib.util
import json
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from mtbench import ops
from mtbench.bench import median_ms, run_bench, run_method_bench, task_gradient_buffer
from mtbench.cli import main
from mtbench.config import build_config
from mtbench.plugins import load_registry
from mtbench.train import Trainer

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"

TINY = ["--model", "squeezenet1_1", "--repeat", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny_result():
    return run_bench(model="squeezenet1_1", tasks=3, repeat=1, device="cpu", threads=1)


def test_rows_and_byte_model(tiny_result):
    rows = {row.name: row for row in tiny_result.rows}
    expected = {"Adam (fused)", "Adam (foreach)", "MTAdamV2 (reference)"} | (
        {"MTAdamV2 (fused)"} if ops.available() else set())
    assert set(rows) == expected
    assert tiny_result.num_params == 1_235_496 and tiny_result.num_tensors == 52
    assert rows["Adam (fused)"].ratio == 1.0
    # float32, T = 3: MTAdamV2 moves 2 + 6T = 20 floats per parameter where Adam moves 7.
    assert rows["MTAdamV2 (reference)"].floor == pytest.approx(20 / 7)
    assert rows["Adam (foreach)"].floor == 1.0
    for row in rows.values():
        assert row.median_ms > 0
        assert row.gb_per_s == pytest.approx(row.floor * 7 * 4 * tiny_result.num_params / row.median_ms / 1e6)


def test_command_prints_a_table():
    result = CliRunner().invoke(main, ["bench", *TINY, "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "squeezenet1_1 shapes (1.24 M parameters in 52 tensors), T=2, float32 on cpu (1 CPU thread)" \
        in result.output
    assert "MTAdamV2 (reference)" in result.output and "2.00x" in result.output


@pytest.mark.parametrize("tasks", [1, 8])
def test_command_takes_one_to_eight_tasks(tasks):
    result = CliRunner().invoke(main, ["bench", *TINY, "-T", str(tasks), "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    rows = {row["name"]: row for row in data["rows"]}
    assert data["tasks"] == tasks
    assert rows["MTAdamV2 (reference)"]["floor"] == pytest.approx((2 + 6 * tasks) / 7)
    assert ("MTAdamV2 (fused)" in rows) == ops.available()


def test_command_json():
    result = CliRunner().invoke(main, ["bench", *TINY, "--tasks", "1", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["tasks"] == 1 and data["model"] == "squeezenet1_1" and data["threads"] == 1
    assert {row["name"] for row in data["rows"]} >= {"Adam (fused)", "MTAdamV2 (reference)"}
    assert all(set(row) == {"name", "median_ms", "gb_per_s", "ratio", "floor"} for row in data["rows"])


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet19"], "Error: unknown model 'resnet19'; did you mean 'resnet18'?"),
    (["--model", "zzz"], "Error: unknown model 'zzz'; expected a torchvision classification model such as resnet18"),
    (["--dtype", "float8"], "Error: unknown dtype 'float8'; expected one of float32, float64, bfloat16"),
    (["--device", "tpu"], "Error: unknown device 'tpu': expected auto, cpu, cuda or cuda:N"),
    (["--device", "meta"], "Error: unknown device 'meta': expected auto, cpu, cuda or cuda:N"),
    (["--tasks", "0"], "Error: tasks must be in 1..8, got 0"),
    (["-T", "9"], "Error: tasks must be in 1..8, got 9"),
    (["-T", "-1"], "Error: tasks must be in 1..8, got -1"),
    (["--repeat", "0"], "Error: repeat must be >= 1, got 0"),
    (["--threads", "0"], "Error: threads must be >= 1, got 0"),
])
def test_bad_options_give_one_line(args, message):
    result = CliRunner().invoke(main, ["bench", *args])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [message]


# -- --method: a multi-task method's combine against the one-pass weighted sum ------------------

def test_task_gradients_are_rows_of_one_buffer():
    shapes = [torch.Size([3, 2]), torch.Size([]), torch.Size([5])]
    grads = task_gradient_buffer(shapes, 2, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(0))
    base = grads[0][0].untyped_storage().data_ptr()
    offsets = [0, 6, 7]
    for t in range(2):
        for shape, offset, g in zip(shapes, offsets, grads[t]):
            assert g.shape == shape and g.is_contiguous()
            assert g.untyped_storage().data_ptr() == base and g.storage_offset() == t * 12 + offset


@pytest.mark.parametrize("name", ["upgrad", "pcgrad", "uncertainty"])
def test_method_bench(name):
    method = load_registry().get_method(name)
    result = run_method_bench(method, model="squeezenet1_1", tasks=2, repeat=1, device="cpu", threads=1)
    assert (result.method, result.num_params, result.num_tensors, result.tasks) == (name, 1_235_496, 52, 2)
    assert result.weighted_sum_ms > 0 and result.combine_ms > 0 and result.target == 2.0
    assert result.ratio == pytest.approx(result.combine_ms / result.weighted_sum_ms)


def test_method_command_prints_the_ratio_and_the_target():
    result = CliRunner().invoke(main, ["bench", *TINY, "--threads", "1", "--method", "upgrad"])
    assert result.exit_code == 0, result.output
    assert "multi-task method combine, squeezenet1_1 shapes (1.24 M parameters in 52 tensors), T=2, float32 on " \
           "cpu (1 CPU thread), the task gradients as rows of one [T, N] buffer" in result.output
    assert "weighted sum (one pass)" in result.output and "UPGrad combine" in result.output
    assert re.search(r"^upgrad: \d+\.\d\dx the one-pass weighted sum \(target: at most 2\.0x, (met|missed)\)$",
                     result.output, re.MULTILINE)
    data = json.loads(CliRunner().invoke(main, ["bench", *TINY, "--method", "pcgrad", "--json"]).output)
    assert data["method"] == "pcgrad" and data["title"] == "PCGrad" and data["ratio"] > 0


@pytest.mark.parametrize("args, message", [
    (["--method", "pcgard"], "Error: unknown method 'pcgard'; did you mean 'pcgrad'? (available: sum, "),
    (["--method", "upgrad", "--tasks", "9"], "Error: tasks must be in 1..8, got 9"),
])
def test_method_bad_options_give_one_line(args, message):
    result = CliRunner().invoke(main, ["bench", *TINY, *args])
    assert result.exit_code != 0
    (line,) = result.output.strip().splitlines()
    assert line.startswith(message)


# -- the device every row of a benchmark runs on --------------------------------------------------

def test_timings_wait_for_the_device_they_time(monkeypatch):
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    median_ms([lambda: None], 1, torch.device("cuda", 1))  # plain Python steps: no GPU needed
    assert waited and all(d == torch.device("cuda", 1) for d in waited)


def load_benchmark(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trainer_overhead_manual_loop_runs_on_the_trainers_device(tmp_path):
    overhead = load_benchmark("trainer_overhead")
    preset = load_registry().get("adam")
    config = build_config(preset, tmp_path / "run", image_size=32, limit_train=4, batch_size=2, device="cpu")
    trainer = Trainer(config, preset, config.run_dir, progress=False, echo=lambda s: None)
    try:
        manual = overhead.ManualLoop(trainer)
        assert manual.device is trainer.device
        # A trainer on another device: the loop follows it (meta stands in for a GPU here).
        elsewhere = overhead.ManualLoop(SimpleNamespace(config=config, data=trainer.data, device=torch.device("meta")))
        assert {p.device for p in elsewhere.model.parameters()} == {torch.device("meta")}
        assert manual.step(*overhead.batches(trainer, 1)[0]) > 0
    finally:
        trainer.close()


def test_trainer_overhead_prints_the_one_device_of_its_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its runs' directories
    load_benchmark("trainer_overhead").main(["--device", "auto", "--rounds", "1", "--steps", "1", "--batch-size",
                                             "2", "--image-size", "32", "--limit-train", "4"])
    lines = capsys.readouterr().out.splitlines()
    assert re.match(r"every row on cpu: \d+ CPU threads, batch 2 per task, image size 32, median of 1 rounds x 1 "
                    r"steps$", lines[-10]), lines
    assert [line.split()[0] for line in lines[-9:-4]] == ["manual", "adam", "mtadamv2", "adam+upgrad", "adam+uw"]
    assert list(tmp_path.iterdir()) == []  # the runs were temporary


@pytest.mark.parametrize("name", ["gramian", "trainer_overhead"])
def test_benchmarks_name_a_bad_device_in_one_line(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr("sys.argv", [f"{name}.py", "--device", "tpu"])
    with pytest.raises(SystemExit):
        load_benchmark(name).main()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"{name}.py: error: unknown device 'tpu': expected auto, cpu, cuda or cuda:N")


@pytest.mark.skipif(not ops.available(), reason="compiled ops not built")
def test_mtadamv2_tasks_benchmark_prints_a_row_per_task_count(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["mtadamv2_tasks.py", "--model", "squeezenet1_1", "--tasks", "1,5",
                                     "--rounds", "1", "--repeat", "1", "--threads", "1", "--clock", "cpu",
                                     "--no-streams"])
    load_benchmark("mtadamv2_tasks").main()
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "5"]
    assert [row[4] for row in rows] == [f"{8 / 7:.2f}x", f"{32 / 7:.2f}x"]  # (2 + 6T) / 7
    assert "streams" not in lines[2]


@pytest.mark.slow
@pytest.mark.skipif(not ops.available(), reason="compiled ops not built")
def test_stream_floor_kernels_move_the_steps_values(monkeypatch, capsys):
    """benchmarks/mtadamv2_streams.cpp (compiled on the fly): both walks read every gradient, m and v
    of each task and p, and write m + g, max(v, g) and p + sum(m) - max(0, v...) over the vectors of
    each tensor; the benchmark prints its columns."""
    bench = load_benchmark("mtadamv2_tasks")
    streams = bench.load_streams()
    tasks, shapes = 3, [(70001,), (5,), (64, 3, 3, 3)]
    generator = torch.Generator().manual_seed(0)
    grads = [torch.randn(s, generator=generator) for _ in range(tasks) for s in shapes]
    params0 = [torch.randn(s, generator=generator) for s in shapes]
    m0 = [torch.randn((tasks, *s), generator=generator) for s in shapes]
    v0 = [torch.randn((tasks, *s), generator=generator) for s in shapes]
    for walk in (0, 1):
        params, m, v = [x.clone() for x in params0], [x.clone() for x in m0], [x.clone() for x in v0]
        total = streams.streams(params, grads, m, v, walk)
        assert total == pytest.approx(sum(float(g.sum()) for g in grads), rel=1e-4)
        for i, shape in enumerate(shapes):
            vectors = torch.Size(shape).numel() // 8 * 8  # the kernels leave a tensor's tail as it is
            g = torch.stack([grads[t * len(shapes) + i].reshape(-1) for t in range(tasks)])[:, :vectors]
            new_m = m0[i].reshape(tasks, -1)[:, :vectors] + g
            new_v = torch.maximum(v0[i].reshape(tasks, -1)[:, :vectors], g)
            new_p = params0[i].reshape(-1)[:vectors] + new_m.sum(0) - new_v.max(0).values.clamp_min(0)
            torch.testing.assert_close(m[i].reshape(tasks, -1)[:, :vectors], new_m)
            torch.testing.assert_close(v[i].reshape(tasks, -1)[:, :vectors], new_v)
            torch.testing.assert_close(params[i].reshape(-1)[:vectors], new_p)
            assert torch.equal(params[i].reshape(-1)[vectors:], params0[i].reshape(-1)[vectors:])

    monkeypatch.setattr("sys.argv", ["mtadamv2_tasks.py", "--model", "squeezenet1_1", "--tasks", "2",
                                     "--rounds", "1", "--repeat", "1", "--threads", "1", "--clock", "cpu"])
    bench.main()
    lines = capsys.readouterr().out.splitlines()
    header = lines[2].split()
    assert header[header.index("ratio/floor") + 1:][:2] == ["streams", "ratio/streams"]
    row = next(line.split() for line in lines if line[:1].isdigit())
    assert float(row[6].rstrip("x")) > 0 and float(row[7]) > 0  # the stream floor and MTAdamV2 against it
    assert lines[-1].startswith("streams: the step's reads and writes with no arithmetic")


@pytest.mark.parametrize("tasks", ["0", "9", "2-9"])
def test_mtadamv2_tasks_benchmark_refuses_a_bad_task_count(tasks, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["mtadamv2_tasks.py", "--tasks", tasks])
    with pytest.raises(SystemExit):
        load_benchmark("mtadamv2_tasks").main()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mtadamv2_tasks.py: error: tasks must be in 1..8, got {tasks!r}")
