"""Verified torch files, checkpoints with a kept predecessor, stale temporaries, the verified cache.

Cases that record a ``reliability`` property are tabulated in recipes/results/reliability.md by
tests/write_reliability_table.py.
"""

import os
import subprocess
import sys

import pytest
import torch

from gnnkit.train.checkpoint import (
    DamagedFileError,
    atomic_save,
    load_checkpoint,
    load_or_build,
    load_verified,
    previous_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    verify_torch_file,
)


def adam_state() -> dict:
    """A checkpoint-like object: weights and Adam moments, ~100 kB."""
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 64)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 64)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}


def flip(path, count: int = 64, at: float = 0.5) -> None:
    """XORs ``count`` bytes at relative position ``at`` of the file."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


DAMAGE = {
    "flipped": (flip, "checksum mismatch", "64 bytes XOR-ed mid-file (inside Adam's state)"),
    "truncated": (truncate, "truncated", "truncated to half its size"),
    "empty": (lambda p: p.write_bytes(b""), "empty", "empty (0 bytes)"),
    "text": (lambda p: p.write_text("not a checkpoint\n"), "not a torch.save file", "a text file in its place"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_file_is_refused_naming_it(tmp_path, kind, record_property):
    damage, message, description = DAMAGE[kind]
    record_property("reliability", {
        "area": "torch files (checkpoints, caches)", "case": f"file {description}",
        "outcome": f"refused before unpickling: DamagedFileError naming the file ('{message}')"})  # fmt: skip
    path = tmp_path / "ck.pt"
    torch.save(adam_state(), path)
    verify_torch_file(path)
    damage(path)
    if kind == "flipped":
        torch.load(path, weights_only=False)  # the reproduction: torch alone loads it without complaint
    with pytest.raises(DamagedFileError, match=message) as err:
        load_verified(path, weights_only=False)
    assert err.value.path == path and str(path) in str(err.value)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        verify_torch_file(tmp_path / "absent.pt")


def test_save_checkpoint_keeps_the_previous_one(tmp_path):
    path = tmp_path / "checkpoint.pt"
    for epoch in (1, 2, 3):
        save_checkpoint({"epoch": epoch}, path)
    assert load_verified(path, weights_only=False)["epoch"] == 3
    assert load_verified(previous_checkpoint(path), weights_only=False)["epoch"] == 2
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.prev.pt", "checkpoint.pt"]
    assert load_checkpoint(tmp_path / "none.pt") is None


def test_load_checkpoint_falls_back_to_the_previous(tmp_path, record_property):
    record_property("reliability", {
        "area": "checkpoint", "case": "newest checkpoint damaged (64 bytes flipped), previous one kept",
        "outcome": "resumes from checkpoint.prev.pt with a warning naming the damaged file"})  # fmt: skip
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({**adam_state(), "epoch": 1}, path)
    save_checkpoint({**adam_state(), "epoch": 2}, path)
    flip(path)
    notes = []
    ck, used = load_checkpoint(path, log=notes.append)
    assert ck["epoch"] == 1 and used == previous_checkpoint(path)
    assert len(notes) == 1 and str(path) in notes[0] and "checksum mismatch" in notes[0]


def test_load_checkpoint_when_killed_between_renames(tmp_path, record_property):
    record_property("reliability", {
        "area": "checkpoint", "case": "killed between the two renames of a save (checkpoint.pt missing)",
        "outcome": "resumes from checkpoint.prev.pt"})  # fmt: skip
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1}, path)
    save_checkpoint({"epoch": 2}, path)
    path.unlink()
    ck, used = load_checkpoint(path, log=lambda msg: None)
    assert ck["epoch"] == 1 and used.name == "checkpoint.prev.pt"


def test_load_checkpoint_without_a_good_one_names_every_file(tmp_path, record_property):
    record_property("reliability", {
        "area": "checkpoint", "case": "checkpoint damaged and no good previous one",
        "outcome": "refused: DamagedFileError naming each file tried and what is wrong with it"})  # fmt: skip
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({**adam_state(), "epoch": 1}, path)
    truncate(path)
    with pytest.raises(DamagedFileError, match="truncated.*no previous good checkpoint") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    save_checkpoint({**adam_state(), "epoch": 1}, path)
    save_checkpoint({**adam_state(), "epoch": 2}, path)
    flip(path)
    previous_checkpoint(path).write_bytes(b"")
    with pytest.raises(DamagedFileError, match=r"checkpoint.pt: checksum mismatch.*checkpoint.prev.pt: the file is empty"):
        load_checkpoint(path)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_remove_stale_temporaries_keeps_live_writers(tmp_path, record_property):
    record_property("reliability", {
        "area": "run folder", "case": "temporary file left by a killed write (.checkpoint.pt.tmpPID)",
        "outcome": "removed at the next run's start; a live writer's temporary is kept"})  # fmt: skip
    dead, live = _dead_pid(), os.getppid()
    stale = tmp_path / f".checkpoint.pt.tmp{dead}"
    mine = tmp_path / f".result.json.tmp{os.getpid()}"  # our pid, but we are not writing it: an earlier process's
    kept = [tmp_path / f".log.csv.tmp{live}", tmp_path / "notes.tmp123", tmp_path / "checkpoint.pt"]
    for p in (stale, mine, *kept):
        p.write_text("x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale, mine])
    assert all(p.exists() for p in kept)
    assert remove_stale_temporaries(tmp_path / "absent") == []


def test_atomic_save_leaves_no_temporary_on_error(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        atomic_save({"bad": Unpicklable()}, tmp_path / "x.pt")
    assert os.listdir(tmp_path) == []


def test_load_or_build_rebuilds_a_damaged_entry(tmp_path, record_property):
    record_property("reliability", {
        "area": "operator cache", "case": "cache entry truncated",
        "outcome": "rebuilt (warning names the file), never loaded"})  # fmt: skip
    path = tmp_path / "cache" / "op.pt"
    calls = []

    def build():
        calls.append(1)
        return {"pairs": [torch.arange(6).view(2, 3)]}

    first = load_or_build(path, build)
    again = load_or_build(path, build)
    assert len(calls) == 1 and torch.equal(again["pairs"][0], first["pairs"][0])
    truncate(path)
    (path.parent / f".op.pt.tmp{_dead_pid()}").write_bytes(b"partial")
    notes = []
    rebuilt = load_or_build(path, build, log=notes.append)
    assert len(calls) == 2 and torch.equal(rebuilt["pairs"][0], first["pairs"][0])
    assert len(notes) == 1 and str(path) in notes[0] and "rebuilding" in notes[0]
    assert os.listdir(path.parent) == ["op.pt"]
    verify_torch_file(path)


def test_disk_full_during_a_checkpoint_save_names_the_file(tmp_path, monkeypatch, record_property):
    record_property("reliability", {
        "area": "checkpoint", "case": "disk full during a checkpoint save (the write raises ENOSPC after 4 kB)",
        "outcome": "FileWriteError 'no space left on device writing .../checkpoint.pt' (errno ENOSPC); the "
                   "checkpoint and its predecessor untouched; no temporary left (torch alone said "
                   "'[enforce fail at inline_container.cc:672] . unexpected pos', naming no file)"})  # fmt: skip
    import errno

    import gnnkit.data.files as files

    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1, **adam_state()}, path)
    save_checkpoint({**adam_state(), "epoch": 2}, path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # The disk fills up 4 kB into the write: the file object's write raises ENOSPC, as a real one does.
    monkeypatch.setattr(files, "open", lambda path, mode: _Failing(path), raising=False)
    with pytest.raises(files.FileWriteError, match=rf"no space left on device writing {path}") as err:
        save_checkpoint({**adam_state(), "epoch": 3}, path)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="unexpected pos"):  # the reproduction: torch.save's own message
        torch.save(adam_state(), _Failing(tmp_path / "raw.pt"))


class _Failing:
    """A file object whose writes fail with ENOSPC after 4 kB."""

    def __init__(self, path) -> None:
        self.f, self.n = open(path, "wb"), 0

    def write(self, data) -> int:
        import errno

        self.n += len(data)
        if self.n > 4096:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()

    def fileno(self) -> int:
        return self.f.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def test_checkpoint_of_an_older_gnnkit_is_refused_with_what_to_do(tmp_path, record_property):
    record_property("reliability", {
        "area": "checkpoint", "case": "`--resume` of a checkpoint.pt written before checkpoints were weights-only "
                                      "(NumPy's RNG state as an array)",
        "outcome": "refused: UnsafeFileError naming the file and the NumPy global, and saying to start afresh with "
                   "--overwrite (it is not unpickled)"})  # fmt: skip
    import numpy as np

    from gnnkit.train.checkpoint import UnsafeFileError

    path = tmp_path / "checkpoint.pt"
    torch.save({**adam_state(), "rng": {"numpy": np.random.get_state(), "torch": torch.get_rng_state()}}, path)
    with pytest.raises(UnsafeFileError, match=r"numpy.*start it afresh with --overwrite") as err:
        load_checkpoint(path)
    assert err.value.path == path
