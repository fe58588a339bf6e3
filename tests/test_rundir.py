"""The run directory: unique creation, locking, atomic writes, permissions, damaged files."""

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from mtbench.errors import ConfigError, MTBenchError
from mtbench.locks import LOCK_FILE, DirLock, LockedError
from mtbench.rundir import (
    EPOCH_COLUMNS, RunDir, RunFileError, atomic_write_text, atomic_writer, create_run_dir, make_temp_dir,
    read_epochs, read_json, read_metrics,
)

REPO = Path(__file__).resolve().parents[1]


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def python(code: str, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, **kwargs)


# -- creating run directories ------------------------------------------------------------------

def test_runs_started_at_once_never_share_a_directory(tmp_path):
    out, made, errors = tmp_path / "runs" / "nested", [], []
    start = threading.Barrier(8)

    def create():
        start.wait()
        try:
            made.append(create_run_dir(out, "adam", stamp="20240101-120000"))
        except Exception as exc:  # noqa: BLE001 - any failure of a racing thread fails the test
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in made) == sorted(
        ["adam-20240101-120000"] + [f"adam-20240101-120000-{n}" for n in range(2, 9)])
    assert all(p.is_dir() and not any(p.iterdir()) for p in made)


def test_create_run_dir_names_the_folder_it_cannot_make(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError) as info:
        create_run_dir(tmp_path / "file", "sgd", stamp="1-1")
    assert str(info.value) == f"cannot write the run directory {tmp_path}/file/sgd-1-1: {tmp_path}/file is not a folder"
    with pytest.raises(ConfigError, match="cannot write the run directory /proc/runs/sgd-1-1: "):
        create_run_dir("/proc/runs", "sgd", stamp="1-1")


# -- the lock ------------------------------------------------------------------------------------

HOLDER = """
    import sys, time
    from mtbench.locks import DirLock
    lock = DirLock(sys.argv[1]).acquire(command="mtbench compare --out there")
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    lock.release()
"""


def hold_in_another_process(folder, seconds):
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLDER), str(folder), str(seconds)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_turned_away_with_the_holder_named(tmp_path):
    proc = hold_in_another_process(tmp_path, 60)
    try:
        with pytest.raises(LockedError) as info:
            DirLock(tmp_path, hint="use --wait").acquire()
        message = str(info.value)
        assert message.startswith(f"{tmp_path} is in use by another process (pid {proc.pid} on "
                                  f"{socket.gethostname()}, since ")
        assert message.endswith(", command: mtbench compare --out there); use --wait")
    finally:
        proc.kill()
        proc.wait()
    # the operating system dropped the killed holder's lock: nothing stale is left to clean up
    with DirLock(tmp_path).acquire() as lock:
        assert lock.held and json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()


def test_wait_blocks_until_the_holder_is_done(tmp_path):
    proc = hold_in_another_process(tmp_path, 1)
    waited = []
    lock = DirLock(tmp_path).acquire(wait=True, on_wait=waited.append)
    try:
        assert proc.wait(timeout=30) == 0
        assert len(waited) == 1 and waited[0].startswith(f"pid {proc.pid} on ")
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_threads_of_one_process_exclude_each_other(tmp_path):
    first = DirLock(tmp_path).acquire(command="first")
    with pytest.raises(LockedError, match="command: first"):
        DirLock(tmp_path).acquire()
    first.release()
    DirLock(tmp_path).acquire().release()


def test_run_dir_lock_is_rank_zeros(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.lock():
        with pytest.raises(LockedError, match="two processes cannot write one run directory"):
            RunDir(tmp_path / "run").lock()
        other_rank = RunDir(tmp_path / "run", writable=False).lock()
        assert not other_rank.held
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_locking_a_run_removes_what_killed_writers_left(tmp_path):
    run = RunDir(tmp_path / "run")
    run.create()
    stale = [run.checkpoints / ".last.pt.k3j9_x2a", run.checkpoints / ".best.pt.0a1b2c3d",
             run.path / ".summary.json.0a1b2c3d", run.path / ".metrics.jsonl.zz81kk2p"]
    kept = [run.checkpoints / "last.pt", run.path / "summary.json", run.path / "notes.txt",
            run.path / ".hidden"]
    for path in stale + kept:
        path.write_bytes(b"x" * 1000)
    with run.lock():
        assert [p for p in stale if p.exists()] == []
        assert all(p.exists() for p in kept)


# -- writing: atomic, with the umask's permissions ---------------------------------------------

@pytest.fixture
def umask():
    def set_umask(value):
        os.umask(value)
    old = os.umask(0o022)
    yield set_umask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_files_and_folders_follow_the_umask(tmp_path, umask, mask):
    import torch

    umask(mask)
    files, folders = 0o666 & ~mask, 0o777 & ~mask
    run = RunDir(create_run_dir(tmp_path / "runs", "adam"))
    run.create()
    run.write_json("summary.json", {"status": "completed"})
    run.save_checkpoint({"w": torch.ones(3)})
    run.append_epoch({k: 1 for k in EPOCH_COLUMNS})
    atomic_write_text(tmp_path / "report.md", "# report\n")
    assert {p.name: mode(p) for p in (run.path / "summary.json", run.checkpoints / "last.pt",
                                      run.path / "epochs.csv", tmp_path / "report.md")} == {
        "summary.json": files, "last.pt": files, "epochs.csv": files, "report.md": files}
    assert mode(run.path) == folders and mode(run.checkpoints) == folders
    assert mode(make_temp_dir(tmp_path, ".staging.")) == folders


def test_the_data_cache_folder_follows_the_umask(tmp_path, umask):
    from mtbench.data.synthetic import SyntheticSpec, ensure_synthetic

    umask(0o022)
    spec = SyntheticSpec(classes=2, train_per_class=1, val_per_class=1, seg_classes=1, seg_train=1, seg_val=1,
                         image_size=32)
    imagenet, _ = ensure_synthetic(tmp_path / "cache", spec)
    assert mode(imagenet.parent) == 0o755
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [imagenet.parent.name]


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.md"
    atomic_write_text(target, "old\n")
    with pytest.raises(ZeroDivisionError):
        with atomic_writer(target) as f:
            f.write("half")
            1 / 0
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_checkpoint_write_over_the_file_size_limit_keeps_the_previous_checkpoint(tmp_path):
    result = python("""
        import resource, signal, sys, torch
        from mtbench.errors import MTBenchError
        from mtbench.rundir import RunDir
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG
        run = RunDir(sys.argv[1])
        run.create()
        run.save_checkpoint({"w": torch.ones(10)})
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            run.save_checkpoint({"w": torch.zeros(1_000_000)})
        except MTBenchError as exc:
            print(exc)
    """, tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    assert result.stdout.strip() == f"writing {last} failed (File too large); the previous checkpoint is intact", \
        result.stderr
    import torch

    assert torch.equal(RunDir(tmp_path / "run").load_checkpoint()["w"], torch.ones(10))
    assert [p.name for p in last.parent.iterdir()] == ["last.pt"]


# -- reading: damaged files say what is wrong ---------------------------------------------------

def test_empty_or_truncated_checkpoint_is_a_one_line_error(tmp_path):
    import torch

    run = RunDir(tmp_path / "run")
    run.create()
    (run.checkpoints / "last.pt").write_bytes(b"")
    with pytest.raises(ConfigError) as info:
        run.load_checkpoint()
    assert str(info.value) == (
        f"cannot resume from {run.checkpoints / 'last.pt'}: it is empty (0 bytes): the run was killed while "
        "writing it, or the disk filled up? Remove it to start the run again from scratch")
    run.save_checkpoint({"w": torch.zeros(1000)})
    whole = (run.checkpoints / "last.pt").read_bytes()
    (run.checkpoints / "last.pt").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(ConfigError, match=rf"it is truncated or damaged \({len(whole) // 2} bytes\): the run "
                                          "was killed while writing it") as info:
        run.load_checkpoint()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, problem", [
    (None, "is missing"),
    ("", "is empty"),
    ('{"status": "comp', "is not valid JSON (cut short? Unterminated string starting at: line 1 column 12 (char 11))"),
    ("[1, 2]", "holds a JSON list, not an object"),
])
def test_read_json_says_what_is_wrong(tmp_path, text, problem):
    path = tmp_path / "summary.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(RunFileError) as info:
        read_json(path)
    assert info.value.problem == problem and str(info.value) == f"{path} {problem}"


def test_resume_trims_logs_past_the_checkpoint_and_lines_cut_short(tmp_path):
    run = RunDir(tmp_path / "run")
    run.create()
    run.append_metrics({"step": s, "loss_cls": 1.0} for s in range(1, 7))
    for epoch in (1, 2, 3):
        run.append_epoch({**{k: 0.5 for k in EPOCH_COLUMNS}, "epoch": epoch, "step": 2 * epoch})
    with open(run.file("metrics.jsonl"), "a") as f:
        f.write('{"step": 7, "loss_c')  # the process was killed in the middle of this line
    with open(run.file("epochs.csv"), "a") as f:
        f.write("4,8,0.5")
    run.trim_logs(last_step=4, last_epoch=2)
    assert [r["step"] for r in read_metrics(run.path)] == [1, 2, 3, 4]
    assert [(r.epoch, r.step, r.val_top1) for r in read_epochs(run.path)] == [(1, 2, 0.5), (2, 4, 0.5)]
    run.append_epoch({**{k: 0.25 for k in EPOCH_COLUMNS}, "epoch": 3, "step": 6})
    assert [r.epoch for r in read_epochs(run.path)] == [1, 2, 3]


def test_resume_keeps_another_workloads_metric_columns(tmp_path):
    columns = ["epoch", "step", "train_loss_left", "val_left_acc", "holdout_left_acc", "seconds"]
    run = RunDir(tmp_path / "run")
    run.create()
    for epoch in (1, 2, 3):
        run.append_epoch({"epoch": epoch, "step": 2 * epoch, "val_left_acc": 0.1 * epoch,
                          "holdout_left_acc": 0.2 * epoch}, columns)
    run.trim_logs(last_step=4, last_epoch=2, columns=columns)
    rows = read_epochs(run.path)
    assert [(r.epoch, r.figure("val", "left_acc"), r.figure("holdout", "left_acc")) for r in rows] == [
        (1, 0.1, 0.2), (2, 0.2, 0.4)]


def test_a_full_disk_while_logging_is_a_one_line_error(tmp_path):
    run = RunDir(tmp_path / "run")
    run.create()
    run.file("metrics.jsonl").mkdir()  # any write error will do: this one is easy to make
    with pytest.raises(MTBenchError, match=r"cannot write .*metrics.jsonl: Is a directory"):
        run.append_metrics([{"step": 1}])
