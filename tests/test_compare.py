"""`mtbench compare`: parsing, the plan, the comparison directory, resume and failures.

Most tests swap the trainer for one that writes hand-made run directories; the last one trains
for real on tiny data.
"""

import csv
import json
import os
import re
import socket
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakeruns import write_run
import mtbench.cli.compare as cli_compare
from mtbench.cli import main
from mtbench.compare import parse_optimizers, parse_seeds, split_overrides
from mtbench.report.comparison import describe_difference
from mtbench.errors import ConfigError, NonFiniteLossError
from mtbench.locks import LOCK_FILE, DirLock
from mtbench.plugins import load_registry


@pytest.fixture(scope="module")
def registry():
    return load_registry()


# -- parsing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, first, seeds", [
    ("3", 0, (0, 1, 2)), ("2", 10, (10, 11)), ("1", 0, (0,)), ("0,5,7", 0, (0, 5, 7)),
    (" 4, ", 0, (4,)), ("7,3", 100, (7, 3)),
])
def test_parse_seeds(text, first, seeds):
    assert parse_seeds(text, first) == seeds


@pytest.mark.parametrize("text, message", [
    ("", "does not parse"), ("x", "does not parse"), ("3.5", "does not parse"), ("1,,2", "does not parse"),
    (",4", "does not parse"), ("0", "at least 1"), ("-1,2", ">= 0"), ("1,1", "repeats"),
])
def test_parse_seeds_rejects(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_seeds(text)


def test_parse_optimizers(registry):
    default = parse_optimizers(None, registry)
    assert default[:8] == ["sgd", "sgd_nesterov", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "mtadamv2"]
    assert "muon" not in default and "lion" not in default  # the zoo's rows only on request
    assert parse_optimizers("all", registry) == list(registry.presets)
    assert {"muon", "lion"} <= set(parse_optimizers("all", registry))
    assert parse_optimizers(" adam, sgd ", registry) == ["adam", "sgd"]


@pytest.mark.parametrize("text, message", [
    ("", "is empty"), (" , ", "is empty"), ("adamx", "did you mean 'adam"), ("adam,adam", "'adam' is listed twice"),
])
def test_parse_optimizers_rejects(registry, text, message):
    with pytest.raises(ConfigError, match=message):
        parse_optimizers(text, registry)


def test_overrides_scoped_and_shared(registry):
    presets = {n: registry.get(n) for n in ("sgd", "adam")}
    overrides = split_overrides(["adam.lr=0.5", "lr=0.1", "momentum=0.95"], presets)
    # scoped last: it wins
    assert overrides.optimizers == {"sgd": ["lr=0.1", "momentum=0.95"], "adam": ["lr=0.1", "lr=0.5"]}
    assert overrides.notes == ["--set momentum=0.95 applies to sgd only (the others do not accept 'momentum')"]


@pytest.mark.parametrize("item, message", [
    ("nosuch=1", "none of the compared optimizers accepts 'nosuch'"),
    ("adamw.lr=1", "'adamw' is not one of the compared optimizers"),
    ("lr", "expected key=value"),
])
def test_overrides_rejected(registry, item, message):
    with pytest.raises(ConfigError, match=message):
        split_overrides([item], {n: registry.get(n) for n in ("sgd", "adam")})


def test_describe_difference_names_the_setting():
    old = {"format": 1, "optimizers": ["a", "b"], "seeds": [0],
           "settings": {"a": {"epochs": 5, "hyperparams": {"lr": 0.1}}, "b": {"epochs": 5, "hyperparams": {"lr": 1}}}}
    new = json.loads(json.dumps(old))
    assert describe_difference(old, new) is None
    new["settings"]["a"]["epochs"] = new["settings"]["b"]["epochs"] = 1
    new["settings"]["a"]["hyperparams"]["lr"] = 0.2
    assert describe_difference(old, new) == "epochs: 1 now, 5 there; a hyperparams.lr: 0.2 now, 0.1 there"
    assert describe_difference(old, {**old, "seeds": [0, 1]}) == "seeds: 0,1 now, 0 there"


# -- the command, with a stand-in trainer ------------------------------------------------------

CURVES = {"sgd": [(0.3, 0.2), (0.6, 0.35)], "adam": [(0.6, 0.3), (0.7, 0.4)], "adamw": [(0.5, 0.3), (0.7, 0.38)]}


class FakeTrainer:
    """Writes a run directory like the trainer's; can fail or be interrupted for one optimizer."""

    def __init__(self, fail=None, interrupt=None, early=None):
        self.calls = []
        self.fail, self.interrupt, self.early = fail, interrupt, early

    def __call__(self, config, preset, *, method=None, workload=None, resume=False, progress=True, echo=print):
        self.calls.append((config.optimizer, config.seed, resume))
        if config.optimizer == self.early:
            raise ConfigError(f"--batch-size {config.batch_size} is larger than the training set")
        kwargs = dict(optimizer=config.optimizer, seed=config.seed, init_sha=f"init-{config.seed}",
                      loss_scale=config.loss_scale, hyperparams=config.hyperparams)
        if config.optimizer == self.interrupt:
            write_run(config.run_dir, curve=CURVES[config.optimizer][:1], status="running", **kwargs)
            (Path(config.run_dir) / "checkpoints").mkdir()
            (Path(config.run_dir) / "checkpoints/last.pt").write_bytes(b"epoch 1")
            raise KeyboardInterrupt
        if config.optimizer == self.fail:
            write_run(config.run_dir, curve=CURVES[config.optimizer][:1], status="failed",
                      error="non-finite loss at step 7 in segmentation", **kwargs)
            raise NonFiniteLossError("non-finite loss at step 7 in segmentation")
        write_run(config.run_dir, curve=CURVES[config.optimizer], **kwargs)
        return json.loads((Path(config.run_dir) / "summary.json").read_text())


@pytest.fixture
def fake(monkeypatch):
    trainer = FakeTrainer()
    monkeypatch.setattr("mtbench.train.train", trainer)
    return trainer


def compare(*args):
    return CliRunner().invoke(main, ["compare", "--epochs", "2", "-q", *args])


def test_compare_runs_every_optimizer_and_seed_and_writes_the_report(tmp_path, fake):
    out = tmp_path / "cmp"
    result = compare("--optimizers", "sgd,adam", "--seeds", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    heads = [line for line in result.output.splitlines() if line.startswith("[")]
    assert [re.sub(r"\[\d+m\d\ds elapsed\]", "[elapsed]", line) for line in heads] == [  # whatever the speed
        "[1/4] sgd seed 0  [elapsed]", "[2/4] adam seed 0  [elapsed]",
        "[3/4] sgd seed 1  [elapsed]", "[4/4] adam seed 1  [elapsed]"]
    assert fake.calls == [("sgd", 0, False), ("adam", 0, False), ("sgd", 1, False), ("adam", 1, False)]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["adam-seed0", "adam-seed1", "sgd-seed0", "sgd-seed1"]
    record = json.loads((out / "comparison.json").read_text())
    assert record["optimizers"] == ["sgd", "adam"] and record["seeds"] == [0, 1]
    assert record["settings"]["sgd"]["hyperparams"]["momentum"] == 0.9
    for name in ("report.md", "report.csv", "report.json", "loss.png", "validation.png", "final.png"):
        assert (out / name).stat().st_size > 0
    rows = {r["optimizer"]: r for r in csv.DictReader(open(out / "report.csv"))}
    assert float(rows["adam"]["top1_mean"]) == pytest.approx(0.7) and rows["adam"]["seeds"] == "2"
    assert rows["adam"]["convergence"] == "fast" and rows["sgd"]["convergence"] == "not reached"
    assert "adam" in result.output and "70.0±0.0%" in result.output
    assert "identical for every optimizer within each seed" in result.output


def test_default_directory_is_found_again_by_the_same_command(tmp_path, fake, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = compare("--optimizers", "adam")
    assert first.exit_code == 0, first.output
    (made,) = (tmp_path / "comparisons").iterdir()
    again = compare("--optimizers", "adam")
    assert again.exit_code == 0, again.output
    assert f"comparison directory: comparisons/{made.name} (resuming: 1 of 1 runs completed)" in again.output
    assert "[1/1] adam seed 0: completed before, skipped" in again.output
    assert "skipped" in compare("--optimizers", "adam", "--workers", "2").output  # speed only: same one
    assert compare("--optimizers", "adam", "--batch-size", "4").exit_code == 0
    assert len(list((tmp_path / "comparisons").iterdir())) == 2  # other settings, other directory
    assert fake.calls == [("adam", 0, False), ("adam", 0, False)]


def test_interrupted_comparison_resumes(tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    interrupted = FakeTrainer(interrupt="adam")
    monkeypatch.setattr("mtbench.train.train", interrupted)
    result = compare("--optimizers", "sgd,adam,adamw", "--out", str(out))
    assert result.exit_code == 130
    assert f"interrupted; run the same command again to resume the comparison in {out}" in result.output
    assert json.loads((out / "runs/adam-seed0/summary.json").read_text())["status"] == "running"

    resumed = FakeTrainer()
    monkeypatch.setattr("mtbench.train.train", resumed)
    result = compare("--optimizers", "sgd,adam,adamw", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "(resuming: 1 of 3 runs completed)" in result.output
    assert "[1/3] sgd seed 0: completed before, skipped" in result.output
    assert "[2/3] adam seed 0 (resuming from its last checkpoint)" in result.output
    assert resumed.calls == [("adam", 0, True), ("adamw", 0, False)]


def test_directory_with_other_settings_is_refused(tmp_path, fake):
    out = tmp_path / "cmp"
    assert compare("--optimizers", "adam", "--out", str(out)).exit_code == 0
    result = CliRunner().invoke(main, ["compare", "--optimizers", "adam", "--epochs", "3", "--set", "lr=0.01",
                                       "--out", str(out)])
    assert result.exit_code == 1
    assert f"{out} holds a comparison with other settings (epochs: 3 now, 2 there; hyperparams.lr: 0.01 now, " \
           "0.001 there)" in result.output
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    result = compare("--optimizers", "adam", "--out", str(other))
    assert result.exit_code == 1 and "is not a comparison directory" in result.output
    assert len(fake.calls) == 1


def test_failed_run_is_reported_and_the_comparison_goes_on(tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    trainer = FakeTrainer(fail="sgd", early="adamw")
    monkeypatch.setattr("mtbench.train.train", trainer)
    result = compare("--optimizers", "sgd,adam,adamw", "--out", str(out))
    assert result.exit_code == 1
    assert [c[0] for c in trainer.calls] == ["sgd", "adam", "adamw"]
    assert "[1/3] sgd seed 0: failed: non-finite loss at step 7 in segmentation" in result.output
    report = json.loads((out / "report.json").read_text())
    status = {r["optimizer"]: r["status"] for r in report["rows"]}
    assert status == {"sgd": "failed: non-finite loss at step 7 in segmentation", "adam": "ok",
                      "adamw": "failed: --batch-size 8 is larger than the training set"}
    assert result.output.strip().splitlines()[-1] == (
        "Error: 2 of 3 runs failed (sgd seed 0: non-finite loss at step 7 in segmentation; "
        "adamw seed 0: --batch-size 8 is larger than the training set)")


def test_shared_set_goes_to_the_optimizers_that_accept_it(tmp_path, fake):
    out = tmp_path / "cmp"
    result = compare("--optimizers", "sgd,adam", "--set", "momentum=0.8", "--set", "adam.lr=0.01",
                     "--loss-scale", "seg=100", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "note: --set momentum=0.8 applies to sgd only" in result.output
    settings = json.loads((out / "comparison.json").read_text())["settings"]
    assert settings["sgd"]["hyperparams"]["momentum"] == 0.8 and "momentum" not in settings["adam"]["hyperparams"]
    assert settings["adam"]["hyperparams"]["lr"] == 0.01 and settings["sgd"]["hyperparams"]["lr"] == 0.01
    assert "Loss scale: cls x1, seg x100" in result.output
    assert "Loss scale: cls x1, seg x100" in (out / "report.md").read_text()


def test_a_second_compare_on_a_directory_in_use_stops_and_names_the_holder(tmp_path, fake):
    out = tmp_path / "cmp"
    out.mkdir()
    holder = DirLock(out).acquire(command="mtbench compare --optimizers adam --out cmp")
    try:
        result = compare("--optimizers", "adam", "--out", str(out))
    finally:
        holder.release()
    assert result.exit_code == 1
    assert f"Error: {out} is in use by another process (pid {os.getpid()} on {socket.gethostname()}, since " \
        in result.output
    assert "command: mtbench compare --optimizers adam --out cmp); two comparisons cannot share one " \
           "directory; wait for the other to finish, use --wait to wait for it, or choose another --out" \
        in result.output
    assert fake.calls == [] and not (out / "comparison.json").exists()


def test_compare_with_wait_runs_after_the_holder_is_done(tmp_path, fake, monkeypatch):
    out = tmp_path / "cmp"
    assert compare("--optimizers", "adam", "--out", str(out)).exit_code == 0
    assert not (out / LOCK_FILE).exists()  # released when the command ended
    holder = DirLock(out).acquire(command="the first compare")
    stderr = cli_compare._stderr

    def release_once_waiting(line):
        if line.startswith("waiting for"):
            threading.Timer(0.3, holder.release).start()
        stderr(line)

    monkeypatch.setattr(cli_compare, "_stderr", release_once_waiting)
    result = compare("--optimizers", "adam", "--out", str(out), "--wait")
    assert result.exit_code == 0, result.output
    assert f"waiting for {out} (pid {os.getpid()} on " in result.output
    assert "command: the first compare)" in result.output
    assert "[1/1] adam seed 0: completed before, skipped" in result.output


def test_comparison_files_follow_the_umask(tmp_path, fake):
    old = os.umask(0o027)
    try:
        assert compare("--optimizers", "adam", "--out", str(tmp_path / "cmp")).exit_code == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "cmp").iterdir()}
    assert modes == {"comparison.json": 0o640, "runs": 0o750, "report.md": 0o640, "report.csv": 0o640,
                     "report.json": 0o640, "loss.png": 0o640, "validation.png": 0o640, "final.png": 0o640}


@pytest.mark.parametrize("args, message", [
    (["--optimizers", "adamx"], "Error: Invalid value for --optimizers: unknown optimizer 'adamx'; did you mean"),
    (["--optimizers", ","], "Error: Invalid value for --optimizers: ',' is empty: expected a comma list"),
    (["--seeds", "two"], "Error: Invalid value for --seeds: 'two' does not parse: expected a count like 3"),
    (["--seeds", "0,5", "--seed", "3"], "Error: Invalid value for --seed: --seeds 0,5 lists the seeds"),
    (["--set", "adam.nosuch=1"], "Error: adam: unknown setting 'nosuch' for optimizer 'adam'"),
    (["--set", "lr=-1"], "Error: sgd: lr=-1.0 is out of range: expected a number in (0, inf)"),
])
def test_bad_input_is_one_line(tmp_path, fake, args, message):
    result = CliRunner().invoke(main, ["compare", "--optimizers", "sgd,adam", *args, "--out", str(tmp_path / "c")])
    assert result.exit_code in (1, 2)
    assert message in result.output
    assert "Traceback" not in result.output and fake.calls == []


# -- end to end, with the trainer --------------------------------------------------------------

@pytest.mark.slow
def test_three_optimizers_two_seeds_on_tiny_data(tmp_path):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(main, [
        "compare", "--optimizers", "sgd,adam,mtadamv2", "--seeds", "2", "--limit-train", "16",
        "--limit-val", "16", "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
        "-q", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summaries = {(s["optimizer"], s["seed"]): s
                 for s in (json.loads(p.read_text()) for p in out.glob("runs/*/summary.json"))}
    assert sorted(summaries) == sorted((o, s) for o in ("sgd", "adam", "mtadamv2") for s in (0, 1))
    # compare holds out 10 % by default: 2 of the 16 training images, so 14 make one step of 8
    assert all(s["status"] == "completed" and s["steps"] == 1 and s["holdout"] == 0.1
               and s["holdout_top1"] is not None for s in summaries.values())
    for seed in (0, 1):
        # same initial weights, and the same first batches: the loss before any update agrees
        assert len({summaries[(o, seed)]["init_weights_sha256"] for o in ("sgd", "adam", "mtadamv2")}) == 1
        first = [json.loads((out / f"runs/{o}-seed{seed}/metrics.jsonl").read_text().splitlines()[0])
                 for o in ("sgd", "adam", "mtadamv2")]
        for record in first[1:]:
            assert record["loss_cls"] == pytest.approx(first[0]["loss_cls"], rel=1e-5)
            assert record["loss_seg"] == pytest.approx(first[0]["loss_seg"], rel=1e-5)
    assert summaries[("adam", 0)]["init_weights_sha256"] != summaries[("adam", 1)]["init_weights_sha256"]
    assert "identical for every optimizer within each seed" in result.output

    rows = list(csv.DictReader(open(out / "report.csv")))
    assert [r["optimizer"] for r in rows] == ["sgd", "adam", "mtadamv2"]
    for row in rows:
        assert row["seeds"] == "2" and row["status"] == "ok"
        assert 0 <= float(row["top1_mean"]) <= 1 and 0 <= float(row["miou_mean"]) <= 1
        assert float(row["seconds_per_step_mean"]) > 0 and 0 < float(row["guide_top1_lo"]) < 1
    report = json.loads((out / "report.json").read_text())
    assert [r["label"] for r in report["rows"]] == ["sgd", "adam", "mtadamv2"]
    from matplotlib.image import imread
    for name in ("loss.png", "validation.png", "final.png"):
        assert imread(out / name).shape[2] in (3, 4)
