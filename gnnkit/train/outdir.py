"""The rules for a run's output folder: a fresh run never replaces another run's files, and
one run at a time writes into a folder.

A recipe calls :func:`check_out_dir` while validating its arguments (before any data is loaded)
and :func:`prepare_out_dir` when it starts. A folder holding files is refused unless the run is
told what to do with them: ``resume`` (continue the run they belong to) or ``overwrite``
(remove the files this run writes, then start afresh).

:func:`prepare_out_dir` also locks the folder for this process (``OUT/.gnnkit-run.lock``, an
exclusive ``fcntl.flock`` on a file that names the holder's pid, host and start time), so that a
second run on the same ``--out``, even with ``--resume`` or ``--overwrite``, is refused with
:class:`OutDirLockedError` instead of mixing its files with the first's. The kernel drops a
``flock`` when its process ends, however it ends, so the lock file a killed run leaves behind
is stale and the next run simply takes it over. The lock is held until
:func:`release_out_dir` (a recipe's ``main`` releases it on return with
:func:`releases_out_dirs`) or the process exits.
"""

from __future__ import annotations

import atexit
import errno
import datetime
import functools
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from gnnkit.train.checkpoint import is_temporary, remove_stale_temporaries

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: O_EXCL lock files with a liveness check instead
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_NAME",
    "OutDirLockedError",
    "OutDirNotEmptyError",
    "OutDirNotWritableError",
    "check_out_dir",
    "lock_out_dir",
    "prepare_out_dir",
    "release_out_dir",
    "releases_out_dirs",
]

LOCK_NAME = ".gnnkit-run.lock"
F = TypeVar("F", bound=Callable[..., Any])


class OutDirNotEmptyError(FileExistsError):
    """A fresh run was pointed at a folder that already holds files."""


class OutDirLockedError(FileExistsError, ValueError):
    """Another live run holds the folder's lock (``holder`` says which: pid, host, start)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(
            f"--out {path} is in use by another run ({holder}); wait for it to finish, or choose another --out. "
            f"(The lock is {path / LOCK_NAME}; the system releases it when that process ends, so a lock left by a "
            "killed run never blocks.)"
        )
        self.path, self.holder = path, holder


class OutDirNotWritableError(PermissionError, ValueError):
    """The run could create no file in its output folder (permissions, a read-only mount)."""


class _Lock:
    """An exclusive lock on ``folder/LOCK_NAME`` held through an open file descriptor."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder, self.fd, self.count = folder, fd, 1

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            # Unlink while still holding the lock: a run that opened this file meanwhile sees, once
            # it gets the lock, that the name no longer points at it, and tries again.
            (self.folder / LOCK_NAME).unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = -1


_HELD: dict[Path, _Lock] = {}


def _holder_text(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "holder unknown"
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if not fields:
        return "holder unknown"
    return f"pid {fields.get('pid', '?')} on host {fields.get('host', '?')}, started {fields.get('started', '?')}"


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _try_lock(lock_path: Path) -> int | None:
    """An fd holding the exclusive lock on ``lock_path``, or ``None`` if a live process holds it."""
    if fcntl is None:  # pragma: no cover - see the import
        return _try_lock_excl(lock_path)
    for _ in range(100):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if _same_file(fd, lock_path):
            return fd
        os.close(fd)  # the holder removed the file after we opened it: lock the new one
    raise RuntimeError(f"could not lock {lock_path}: it keeps being replaced")


def _try_lock_excl(lock_path: Path) -> int | None:  # pragma: no cover - only without fcntl
    from gnnkit.data.files import pid_alive

    for _ in range(2):
        try:
            return os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            fields = dict(line.split("=", 1) for line in lock_path.read_text().splitlines() if "=" in line)
            pid = int(fields.get("pid", "0") or 0)
            if fields.get("host") == socket.gethostname() and pid and not pid_alive(pid):
                lock_path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            return None
    return None


def lock_out_dir(path: str | os.PathLike) -> None:
    """Locks ``path`` (created if missing) for this process: see the module docstring. Calling
    it again for a folder this process holds is a no-op (counted: release as often).

    Raises:
        OutDirLockedError: another live process holds the lock.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _HELD:
        _HELD[key].count += 1
        return
    lock_path = folder / LOCK_NAME
    fd = _try_lock(lock_path)
    if fd is None:
        raise OutDirLockedError(folder, _holder_text(lock_path))
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.write(fd, f"pid={os.getpid()}\nhost={socket.gethostname()}\nstarted={started}\n".encode())
    _HELD[key] = _Lock(folder, fd)


def release_out_dir(path: str | os.PathLike) -> None:
    """Releases this process's lock on ``path`` (removes the lock file); nothing if not held."""
    key = Path(path).resolve()
    lock = _HELD.get(key)
    if lock is None:
        return
    lock.count -= 1
    if lock.count <= 0:
        del _HELD[key]
        lock.release()


def releases_out_dirs(fn: F) -> F:
    """Decorates a recipe's ``main``: the folders it locked (through :func:`prepare_out_dir`) are
    released when it returns or raises, so that the next run in this process, or a process it
    starts, may use them."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = {k: v.count for k, v in _HELD.items()}
        try:
            return fn(*args, **kwargs)
        finally:
            for key in list(_HELD):
                for _ in range(_HELD[key].count - before.get(key, 0)) if key in _HELD else ():
                    release_out_dir(key)

    return wrapper  # type: ignore[return-value]


@atexit.register
def _release_all() -> None:
    for lock in list(_HELD.values()):
        lock.release()
    _HELD.clear()


def _locked_by_another(folder: Path) -> str | None:
    """Who holds ``folder``'s lock, if another live process does (checked without taking it)."""
    lock_path = folder / LOCK_NAME
    if folder.resolve() in _HELD or not lock_path.is_file():
        return None
    if fcntl is None:  # pragma: no cover
        fd = _try_lock_excl(lock_path)
        if fd is None:
            return _holder_text(lock_path)
        os.close(fd)
        lock_path.unlink(missing_ok=True)
        return None
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_text(lock_path)
    finally:
        os.close(fd)
    return None


def check_out_dir(path: str | os.PathLike, resume: bool = False, overwrite: bool = False) -> None:
    """Checks, without changing anything, that a run may write into ``path``.

    Raises:
        ValueError: both ``resume`` and ``overwrite``, or ``path`` is a file.
        OutDirNotWritableError: ``path`` (or the folder it would be created in) is not writable
            (a ``PermissionError``).
        OutDirLockedError: another live run holds ``path``'s lock.
        OutDirNotEmptyError: ``path`` holds files and neither ``resume`` nor ``overwrite`` is set.
    """
    path = Path(path)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run in --out, or replace it")
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a folder")
    _check_writable(path)
    # Under torchrun only rank 0 writes (and locks); the other ranks of the same run must not be refused.
    if path.is_dir() and os.environ.get("RANK", "0") == "0":
        holder = _locked_by_another(path)
        if holder is not None:
            raise OutDirLockedError(path, holder)
    if resume or overwrite or not path.is_dir():
        return
    held = sorted(e.name for e in path.iterdir() if not is_temporary(e.name) and e.name != LOCK_NAME)
    if held:
        shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        raise OutDirNotEmptyError(
            f"--out {path} already holds {shown}; pass --resume to continue the run there, --overwrite to "
            "replace it, or choose another --out"
        )


def _probe(folder: Path) -> None:
    """OSError if this process may not create files in ``folder``: access(2) answers for the
    permission bits, ACLs and read-only mounts (EROFS) without writing anything."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "permission denied or a read-only file system")


def _check_writable(path: Path) -> None:
    """``path``, or its nearest existing parent, accepts new files."""
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return  # a file on the way: mkdir will say so
    try:
        _probe(folder)
    except OSError as e:
        where = f"--out {path}" if folder == path else f"--out {path} (its folder {folder})"
        raise OutDirNotWritableError(f"{where} is not writable ({e.strerror or e}); the run could save no checkpoint "
                              "there: choose another --out") from None  # fmt: skip


def prepare_out_dir(
    path: str | os.PathLike, resume: bool = False, overwrite: bool = False, outputs: Iterable[str] = ()
) -> list[Path]:
    """:func:`check_out_dir`, then creates and locks ``path`` (:func:`lock_out_dir`), removes
    temporary files left by a killed writer and, with ``overwrite``, the files this run writes
    (``outputs``, names relative to ``path``; other files are left alone).

    Returns:
        the removed files.

    Raises:
        OutDirLockedError: another live run holds ``path`` (nothing was removed).
    """
    check_out_dir(path, resume, overwrite)
    path = Path(path)
    lock_out_dir(path)
    try:
        # Checked again under the lock: a run that finished between the check and the lock left files.
        check_out_dir(path, resume, overwrite)
    except BaseException:
        release_out_dir(path)
        raise
    removed = remove_stale_temporaries(path)
    if overwrite:
        for name in outputs:
            target = path / name
            if target.is_file():
                target.unlink()
                removed.append(target)
    return removed
