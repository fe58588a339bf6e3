"""Reports from run directories: loading, aggregation over seeds, tables, plots and `mtbench report`."""

import csv
import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from fakeruns import write_comparison, write_run
from mtbench.cli import main
from mtbench.errors import MTBenchError
from mtbench.report.plots import load_losses, write_plots
from mtbench.report import build_report, find_runs, load_run
from mtbench.report.files import json_record, markdown, table_rows, terminal_table, write_tables
from mtbench.rundir import read_epochs

CURVES = {
    "adam": [[(0.5, 0.3), (0.70, 0.40)], [(0.5, 0.3), (0.72, 0.42)]],
    "sgd": [[(0.2, 0.1), (0.50, 0.30)], [(0.3, 0.1), (0.56, 0.28)]],
}


@pytest.fixture
def comparison(tmp_path):
    return write_comparison(tmp_path / "cmp", CURVES)


def test_mean_and_interval_over_seeds(comparison):
    report = build_report(find_runs([comparison]))
    adam, sgd = report.rows
    top1 = adam.metrics["top1"]
    assert top1["mean"] == pytest.approx(0.71) and top1["std"] == pytest.approx(0.0141421, rel=1e-4)
    # t(0.975, 1) = 12.7062: two seeds give a wide interval
    assert (top1["ci_low"], top1["ci_high"]) == pytest.approx((0.71 - 0.127062, 0.71 + 0.127062), rel=1e-4)
    assert top1["n"] == 2 and sgd.metrics["miou"]["mean"] == pytest.approx(0.29)
    assert adam.metrics["joint"]["mean"] == pytest.approx((0.71 + 0.41) / 2)
    assert adam.metrics["seconds_per_step"]["mean"] == pytest.approx(0.1) and adam.metrics["peak_memory_mb"]["mean"] == 123
    table = terminal_table(report)
    assert "71.0±12.7%" in table and "0.410±0.127" in table
    assert "Runs: 4 (2 rows x 2 seeds: 0, 1); epochs 2, batch size 8" in table


def test_one_seed_has_no_spread(tmp_path):
    report = build_report([load_run(write_run(tmp_path / "r", curve=[(0.25, 0.125)]))])
    assert report.rows[0].metrics["top1"]["std"] is None and report.rows[0].metrics["top1"]["ci_low"] is None
    (row,) = table_rows(report)
    assert "25.0%" in row and not any("±" in cell for cell in row)


def test_tables_written_and_parseable(comparison):
    report = build_report(find_runs([comparison]))
    files = write_tables(report, comparison)
    assert [f.name for f in files] == ["report.md", "report.csv", "report.json"]
    md = (comparison / "report.md").read_text()
    assert md.startswith("# Optimizer comparison\n\nBest joint score: adam") and "| adam " in md and "guide top-1" in md
    assert "real ImageNet + COCO" in md and "<= 1.25x fast" in md
    rows = list(csv.DictReader(open(comparison / "report.csv")))
    assert [r["optimizer"] for r in rows] == ["adam", "sgd"]
    assert float(rows[0]["top1_mean"]) == pytest.approx(0.71) and rows[0]["guide_top1_lo"] == "0.55"
    assert rows[0]["role"] == "row" and rows[1]["rank"] == "2" and rows[1]["tied_with_best"] == "False"
    data = json.loads((comparison / "report.json").read_text())
    assert data["target"]["fraction"] == 0.9 and data["rows"][1]["miou"]["n"] == 2
    assert data["rows"][0]["runs"][1] == {
        "seed": 1, "path": "runs/adam-seed1", "status": "completed", "error": None, "final_top1": 0.72,
        "final_miou": 0.42, "selected": {"epoch": 2, "step": 20, "top1": 0.72, "miou": 0.42, "rule": "final"},
        "target_split": "test", "init_weights_sha256": "sha-seed1", "loss_scale": [1.0, 1.0]}


def test_plots_written_and_readable(comparison):
    report = build_report(find_runs([comparison]))
    files = write_plots(report, comparison)
    assert [f.name for f in files] == ["loss.png", "validation.png", "final.png"]
    for f in files:
        image = imread(f)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
        assert image.std() > 0.05  # something was drawn


def test_failures_and_runs_that_never_started(tmp_path):
    out = write_comparison(tmp_path / "cmp", CURVES)
    write_run(out / "runs/sgd-seed1", optimizer="sgd", seed=1, curve=[(0.1, 0.05)], epochs=2, status="failed",
              error="non-finite loss at step 12 in segmentation (loss_cls=2.1, loss_seg=nan)\nmore")
    record = json.loads((out / "comparison.json").read_text())
    record["optimizers"].append("adadelta")
    (out / "comparison.json").write_text(json.dumps(record))
    (out / "runs/adadelta-seed0").mkdir()
    report = build_report(find_runs([out]))
    status = {r.group.optimizer: r.status for r in report.rows}
    assert status == {
        "adam": "ok",
        "sgd": "1/2 ok; seed 1: failed: non-finite loss at step 12 in segmentation (loss_cls=2.1, loss_seg=nan)",
        "adadelta": "seed 0: summary.json is missing; epochs.csv shows no finished epoch; seed 1: not run"}
    sgd = report.rows[1]
    top1 = sgd.metrics["top1"]
    assert (top1["n"], top1["dropped"]) == (1, 1) and top1["mean"] == pytest.approx(0.5)  # the failed seed is left out
    assert "1/2" in terminal_table(report)
    assert [r.path.name for r in report.failed_runs] == ["adadelta-seed0", "sgd-seed1", "adadelta-seed1"]


def test_interrupted_run_reason(tmp_path):
    run = load_run(write_run(tmp_path / "r", curve=[(0.1, 0.1)], epochs=3, status="running"))
    assert run.reason == "interrupted after epoch 1"


def test_loss_scale_shown_in_the_header(tmp_path):
    out = write_comparison(tmp_path / "cmp", CURVES, loss_scale=(1.0, 100.0))
    report = build_report(find_runs([out]))
    assert "Loss scale: cls x1, seg x100 (stress test" in markdown(report)
    assert "Loss scale: none" in markdown(build_report(find_runs([write_comparison(tmp_path / "plain", CURVES)])))


def test_guide_ranges_from_config_or_fallback(tmp_path):
    with_expected = load_run(write_run(tmp_path / "a", optimizer="adam"))
    without = load_run(write_run(tmp_path / "b", optimizer="sgd", expected=None))
    fallback = {"sgd": {"top1": [0.5, 0.6], "miou": [0.03, 0.04], "convergence": "slow"}}
    report = build_report([with_expected, without], expected=fallback)
    assert [r[-4:-1] for r in table_rows(report)] == [["55-65%", "0.03-0.04", "fast"], ["50-60%", "0.03-0.04", "slow"]]
    assert json_record(report)["rows"][1]["guide_real_data"] == fallback["sgd"]
    assert table_rows(build_report([without]))[0][-4:-1] == ["-", "-", "-"]


def test_different_initial_weights_are_flagged(tmp_path):
    runs = [load_run(write_run(tmp_path / "a", optimizer="adam", init_sha="x")),
            load_run(write_run(tmp_path / "b", optimizer="sgd", init_sha="y"))]
    assert "Initial weights: DIFFER between optimizers for seed 0" in terminal_table(build_report(runs))


def test_runs_of_one_optimizer_with_other_settings_are_told_apart(tmp_path):
    runs = [load_run(write_run(tmp_path / "a", optimizer="adam", hyperparams={"lr": 0.001})),
            load_run(write_run(tmp_path / "b", optimizer="adam", hyperparams={"lr": 0.01})),
            load_run(write_run(tmp_path / "c", optimizer="adam", seed=1, hyperparams={"lr": 0.01}))]
    report = build_report(runs)
    assert [(r.group.label, len(r.group.runs)) for r in report.rows] == [("adam (lr=0.001)", 1), ("adam (lr=0.01)", 2)]


def test_epochs_and_losses_keep_the_last_record_of_a_replayed_step(tmp_path):
    run_dir = write_run(tmp_path / "r", curve=[(0.1, 0.1), (0.2, 0.2)], steps_per_epoch=3)
    with open(run_dir / "epochs.csv", "a") as f:
        f.write("2,6,0.1,0.1,0.9,0.95,0.5,0.8,,,,,1.0\n")
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 6, "epoch": 2, "loss_cls": 9.0, "loss_seg": float("nan")}) + "\n{\"step\": 7, \"ep")
    epochs = read_epochs(run_dir)
    assert [e.epoch for e in epochs] == [1, 2] and epochs[1].val_top1 == 0.9
    losses = load_losses(run_dir)
    assert list(losses["step"]) == [1, 2, 3, 4, 5, 6] and losses["loss_cls"][-1] == 9.0


def test_find_runs_rejects_a_folder_without_runs(tmp_path):
    with pytest.raises(MTBenchError, match="neither a run directory"):
        find_runs([tmp_path])


# -- `mtbench report` --------------------------------------------------------------------------

def test_report_command_rebuilds_a_comparison(comparison):
    result = CliRunner().invoke(main, ["report", str(comparison)])
    assert result.exit_code == 0, result.output
    assert "adam" in result.output and "71.0±12.7%" in result.output
    assert f"written to {comparison}: report.md, report.csv, report.json, loss.png, validation.png, final.png" \
        in result.output
    assert (comparison / "final.png").is_file()


def test_report_command_merges_run_directories(tmp_path, comparison):
    single = write_run(tmp_path / "runs/adamw-x", optimizer="adamw", curve=[(0.3, 0.2), (0.6, 0.35)])
    out = tmp_path / "merged"
    result = CliRunner().invoke(main, ["report", str(comparison), str(single), "--out", str(out), "--target", "0.5"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    assert [r["optimizer"] for r in data["rows"]] == ["adam", "sgd", "adamw"]
    assert data["target"]["fraction"] == 0.5
    assert CliRunner().invoke(main, ["report", str(tmp_path / "runs"), "--out", str(out)]).exit_code == 0


def test_a_run_reached_from_two_directories_counts_once(tmp_path, comparison):
    # another comparison whose adam seed-0 run is the first one's (a link to it), a copy of the whole
    # comparison (the same runs, written elsewhere), the comparison twice, and it with its own runs folder
    other = write_comparison(tmp_path / "other", {"adam": [[(0.1, 0.1)]]})
    shutil.rmtree(other / "runs/adam-seed0")
    (other / "runs/adam-seed0").symlink_to(comparison / "runs/adam-seed0", target_is_directory=True)
    copy = shutil.copytree(comparison, tmp_path / "copy")
    out = tmp_path / "merged"
    for dirs in ([comparison, other], [comparison, copy], [comparison, comparison], [comparison, comparison / "runs"]):
        result = CliRunner().invoke(main, ["report", *map(str, dirs), "--out", str(out)])
        assert result.exit_code == 0, result.output
        rows = {row["label"]: row for row in json.loads((out / "report.json").read_text())["rows"]}
        assert {label: row["seeds"] for label, row in rows.items()} == {"adam": [0, 1], "sgd": [0, 1]}, dirs
        assert rows["adam"]["metrics"]["top1"]["mean"] == pytest.approx(0.71)
        assert "Runs: 4 (2 rows x 2 seeds: 0, 1)" in result.output


def test_report_command_takes_the_guide_ranges_from_the_plugins_when_runs_lack_them(tmp_path):
    run = write_run(tmp_path / "r", optimizer="adagrad", expected=None)
    result = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "o/report.json").read_text())["rows"][0]
    assert row["guide_real_data"] == {"top1": [0.48, 0.58], "miou": [0.03, 0.04], "convergence": "slow"}


def test_report_command_needs_out_for_run_directories(tmp_path):
    single = write_run(tmp_path / "r", optimizer="adamw")
    result = CliRunner().invoke(main, ["report", str(single)])
    assert result.exit_code == 2
    assert f"--out is required: {single} is not a comparison directory" in result.output


def test_report_command_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "neither a run directory" in result.output
    assert "Traceback" not in result.output


# -- damaged run directories say what is true ---------------------------------------------------

@pytest.mark.parametrize("damage, problem", [
    (lambda path: path.unlink(), "summary.json is missing"),
    (lambda path: path.write_text(path.read_text()[:40]), "summary.json is not valid JSON (cut short? "),
    (lambda path: path.write_text(""), "summary.json is empty"),
])
def test_a_run_whose_summary_is_gone_or_cut_short_says_so(tmp_path, damage, problem):
    run_dir = write_run(tmp_path / "runs/adam-x", curve=[(0.2, 0.1), (0.5, 0.3)], epochs=3, steps_per_epoch=10)
    damage(run_dir / "summary.json")
    (row,) = build_report(find_runs([tmp_path / "runs"])).rows
    assert row.status.startswith(problem)
    assert row.status.endswith("; epochs.csv shows 2 of 3 epochs done (last: epoch 2, step 20)")
    assert "did not start" not in row.status and "\n" not in row.status
    result = CliRunner().invoke(main, ["report", str(run_dir), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert problem in result.output and "epochs.csv shows 2 of 3 epochs done" in result.output


def test_a_run_without_summary_or_epochs_says_no_epoch_finished(tmp_path):
    run_dir = write_run(tmp_path / "r", curve=[(0.2, 0.1)])
    (run_dir / "summary.json").unlink()
    (run_dir / "epochs.csv").unlink()
    run = load_run(run_dir)
    assert run.status == "no summary"
    assert run.reason == "summary.json is missing; epochs.csv shows no finished epoch"


def test_report_over_a_hundred_runs_is_fast_and_needs_no_torch(tmp_path):
    curves = {f"opt{i}": [[(0.2 + 0.05 * i, 0.1), (0.4 + 0.05 * i, 0.2), (0.5 + 0.04 * i, 0.3)]] * 10
              for i in range(10)}
    out = write_comparison(tmp_path / "cmp", curves, steps_per_epoch=100)
    # CPU seconds of the whole command, imports included: other processes on the machine do not count
    code = ("import sys, time; from mtbench.cli import main\n"
            "try:\n    main(['report', sys.argv[1]])\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
            "print('seconds', time.process_time(), 'torch', 'torch' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    _, seconds, _, torch_loaded = result.stderr.split()
    assert torch_loaded == "False"
    assert float(seconds) < 5.0
    assert len(json.loads((out / "report.json").read_text())["rows"]) == 10
