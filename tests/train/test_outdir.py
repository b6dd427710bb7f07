"""The output-folder rule: a fresh run refuses a folder that holds files unless told otherwise."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from gnnkit.train.outdir import (
    LOCK_NAME,
    OutDirLockedError,
    OutDirNotEmptyError,
    check_out_dir,
    prepare_out_dir,
    release_out_dir,
)


def test_fresh_run_refuses_a_non_empty_folder(tmp_path, record_property):
    record_property("reliability", {
        "area": "run folder", "case": "fresh run on an --out holding another run's files",
        "outcome": "refused before anything is loaded (names the files, suggests --resume / --overwrite); "
                   "files untouched"})  # fmt: skip
    check_out_dir(tmp_path / "new")  # missing: fine
    check_out_dir(tmp_path)  # empty: fine
    (tmp_path / "result.json").write_text("{}")
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(OutDirNotEmptyError, match=r"already holds checkpoint.pt, result.json; pass --resume"):
        check_out_dir(tmp_path)
    with pytest.raises(OutDirNotEmptyError):
        prepare_out_dir(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt", "result.json"]
    check_out_dir(tmp_path, resume=True)
    with pytest.raises(ValueError, match="exclude each other"):
        check_out_dir(tmp_path, resume=True, overwrite=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        check_out_dir(tmp_path / "file")


def test_overwrite_removes_only_the_runs_files(tmp_path):
    (tmp_path / "result.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    removed = prepare_out_dir(tmp_path, overwrite=True, outputs=("result.json", "log.csv"))
    assert removed == [tmp_path / "result.json"] and sorted(os.listdir(tmp_path)) == [LOCK_NAME, "notes.txt"]
    release_out_dir(tmp_path)
    assert os.listdir(tmp_path) == ["notes.txt"]
    prepare_out_dir(tmp_path / "deep" / "new")
    assert (tmp_path / "deep" / "new").is_dir()


def test_stale_temporaries_alone_do_not_make_a_folder_non_empty(tmp_path):
    (tmp_path / ".checkpoint.pt.tmp999999999").write_bytes(b"partial")
    check_out_dir(tmp_path)
    prepare_out_dir(tmp_path)
    release_out_dir(tmp_path)
    assert os.listdir(tmp_path) == []


HOLD = """
import sys, time, pathlib
from gnnkit.train.outdir import OutDirLockedError, prepare_out_dir
out, go, seconds = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), float(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
try:
    prepare_out_dir(out, overwrite=True, outputs=("result.json",))
except OutDirLockedError as e:
    print(e, file=sys.stderr)
    sys.exit(3)
(out / "result.json").write_text(str(__import__("os").getpid()))
print("locked", flush=True)
time.sleep(seconds)
"""


def _holder(out, go, seconds):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(go), str(seconds)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_two_processes_racing_for_one_out(tmp_path, record_property):
    record_property("reliability", {
        "area": "run folder", "case": "two real processes started at the same instant on one --out (both with "
                                      "--overwrite)",
        "outcome": "one runs; the other is refused with OutDirLockedError naming the holder's pid and host (both "
                   "used to exit 0, leaving a folder mixing their files)"})  # fmt: skip
    out, go = tmp_path / "run", tmp_path / "go"
    procs = [_holder(out, go, 1.5) for _ in range(2)]
    time.sleep(1.0)  # both interpreters started and spinning on the go file
    go.write_text("")
    codes = [p.wait(timeout=60) for p in procs]
    assert sorted(codes) == [0, 3], [p.stderr.read() for p in procs]
    winner, loser = (procs[0], procs[1]) if codes[0] == 0 else (procs[1], procs[0])
    err = loser.stderr.read()
    assert f"is in use by another run (pid {winner.pid} on host {socket.gethostname()}" in err
    assert (out / "result.json").read_text() == str(winner.pid)
    assert not (out / LOCK_NAME).exists()  # released (and removed) when the winner ended


def test_live_lock_is_refused_early_and_a_killed_runs_lock_is_stale(tmp_path, record_property):
    record_property("reliability", {
        "area": "run folder", "case": "`--resume` on an --out a live run holds; then that run SIGKILLed (its lock "
                                      "file left behind)",
        "outcome": "the live lock is refused by the argument check, before any data is loaded, naming the pid; the "
                   "killed run's lock is stale (the kernel dropped its flock) and the next run takes it over"})  # fmt: skip
    out, go = tmp_path / "run", tmp_path / "go"
    go.write_text("")
    proc = _holder(out, go, 600)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(OutDirLockedError, match=rf"pid {proc.pid} on host"):
        check_out_dir(out, resume=True)
    with pytest.raises(OutDirLockedError):
        prepare_out_dir(out, overwrite=True)
    assert (out / "result.json").exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert f"pid={proc.pid}" in (out / LOCK_NAME).read_text()  # left behind by the killed run
    check_out_dir(out, resume=True)
    prepare_out_dir(out, resume=True)
    assert f"pid={os.getpid()}" in (out / LOCK_NAME).read_text()
    release_out_dir(out)
    assert not (out / LOCK_NAME).exists()


def test_read_only_out_is_refused_before_anything(tmp_path, monkeypatch, record_property):
    record_property("reliability", {
        "area": "run folder", "case": "`--resume` into a read-only --out; a new --out inside a read-only folder",
        "outcome": "PermissionError naming the folder at the argument check, before any data is loaded (it used "
                   "to train a whole epoch first)"})  # fmt: skip
    import errno

    from gnnkit.train import outdir

    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"x")
    if os.geteuid() == 0:  # root writes through permission bits: what it meets is a read-only mount
        real = outdir._probe

        def read_only(folder):
            if folder == out:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            real(folder)

        monkeypatch.setattr(outdir, "_probe", read_only)
    out.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=rf"--out {out} is not writable"):
            check_out_dir(out, resume=True)
        with pytest.raises(PermissionError, match=rf"its folder {out}\)"):
            check_out_dir(out / "sub" / "deeper")
        check_out_dir(tmp_path / "elsewhere")
    finally:
        out.chmod(0o755)
