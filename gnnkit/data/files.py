"""Files gnnkit reads and writes itself: nothing from a file runs as code, and a failed write
says which file and why, and leaves no temporary behind.

* :func:`torch_load_safe` loads a ``torch.save`` file with ``weights_only=True`` only: a file that
  names a class or function beyond tensors and plain containers is refused with
  :class:`UnsafeFileError`; there is no fallback to full pickle (which PyG's own loader has).
* :func:`atomic_write` writes through a temporary file beside the destination
  (``.NAME.tmpPID``), fsyncs it and renames it over the destination, so a crash leaves the old
  file or the new one. A write that fails (the disk is full, a quota, an I/O error) removes the
  temporary and raises :class:`FileWriteError` naming the destination and the system's reason:
  ``torch.save`` alone turns a full disk into ``RuntimeError: [enforce fail at
  inline_container.cc:672] . unexpected pos ...``, naming nothing.

* :class:`NoPickleDataset` is a mixin for PyG datasets that takes over the two places PyG
  unpickles files from a dataset's folder on our behalf: ``Dataset._process`` reads
  ``processed/pre_transform.pt`` and ``pre_filter.pt`` with ``weights_only=False``, and
  ``InMemoryDataset.load`` falls back to full pickle when ``weights_only=True`` fails. A data
  root may be shared (``$GNNKIT_DATA``, ``~/.cache/gnnkit``), so a file planted there must not
  run code: with the mixin every such file loads with ``weights_only=True`` or is refused.

These live in the data layer so that datasets (caches) and the training loop (checkpoints) share
them.
"""

from __future__ import annotations

import errno as errno_codes
import os
import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "FileWriteError",
    "NoPickleDataset",
    "UnsafeFileError",
    "atomic_write",
    "is_temporary",
    "remove_stale_temporaries",
    "temporary_path",
    "torch_load_safe",
]

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)$")


class UnsafeFileError(ValueError):
    """A torch file that loads only with full pickle (``weights_only=False``): it names a class
    or function beyond tensors and plain containers, which unpickling would import and may call.
    Nothing in it was run. ``path`` is the file, ``reason`` what it needs."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def unsafe_reason(error: Exception) -> str:
    """What a refused ``weights_only`` load needed, from torch's message (its 'GLOBAL ...')."""
    m = re.search(r"GLOBAL ([\w.]+)", str(error))
    needs = f"it names {m[1]}" if m else f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return (f"refused: the file holds more than tensors and plain data ({needs}), and loading it would run code "
            "from the file; nothing from it was run. gnnkit writes such files with tensors and plain types only: "
            "delete it, or replace it with a file you trust")  # fmt: skip


def torch_load_safe(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a file that would need full pickle raises
    :class:`UnsafeFileError` naming it (nothing in it is run, and there is no fallback)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            raise UnsafeFileError(path, unsafe_reason(e)) from None
        raise


class FileWriteError(OSError):
    """Writing ``filename`` failed (``errno``/``strerror`` as the system said); the destination
    is untouched and the temporary removed."""


def temporary_path(path: Path) -> Path:
    """Where :func:`atomic_write` writes before the rename: ``.NAME.tmpPID`` beside ``path``."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (on this host); our own pid counts as not running, since a
    file named with it before we wrote it was left by an earlier process."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file name of :func:`atomic_write` (``.NAME.tmpPID``)."""
    return _TEMPORARY.match(name) is not None


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Removes the temporary files (``.NAME.tmpPID``) that writers killed mid-write left in
    ``folder``: those whose process is no longer running. A live writer's file is kept.

    Args:
        folder: where to look (nothing happens if it does not exist).
        name: only temporaries of this destination file name (default: all).

    Returns:
        the removed paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        m = _TEMPORARY.match(entry.name)
        if m is None or (name is not None and m["name"] != name) or not entry.is_file():
            continue
        if not pid_alive(int(m["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


class _Recording:
    """A file wrapper that keeps the first OSError of a write, which ``torch.save`` swallows and
    replaces with its own RuntimeError."""

    def __init__(self, f: Any) -> None:
        self._f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _write_error(path: Path, cause: BaseException) -> FileWriteError:
    code = getattr(cause, "errno", None) or errno_codes.EIO
    reason = (getattr(cause, "strerror", None) or os.strerror(code)).rstrip(".")
    if code == errno_codes.ENOSPC:
        reason = "no space left on device"
    return FileWriteError(code, f"{reason} writing {path} (the previous file, if any, is kept; nothing partial is "
                                f"left)", str(path))  # fmt: skip


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb",
                 before_replace: Callable[[], None] | None = None) -> Path:  # fmt: skip
    """Writes ``path`` through a temporary file in the same folder (see the module docstring).

    Args:
        path: the destination.
        write: writes the content into the open file it is given.
        mode: ``"wb"`` or ``"w"``.
        before_replace: called after the temporary is complete and fsync-ed, just before the
            rename (e.g. to keep the file it replaces).

    Raises:
        FileWriteError: the system refused a write (full disk, quota, I/O error): names ``path``
            and the reason; the temporary is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    f = None
    try:
        try:
            with open(tmp, mode) as raw:
                f = _Recording(raw)
                write(f)
                f.flush()
                os.fsync(raw.fileno())
        except (OSError, RuntimeError) as e:
            cause = f.error if f is not None and f.error is not None else e
            if isinstance(cause, OSError):
                raise _write_error(path, cause) from e
            raise
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class NoPickleDataset:
    """Mixin (first base) for a PyG ``Dataset``/``InMemoryDataset`` subclass: see the module
    docstring. ``class SafePlanetoid(NoPickleDataset, Planetoid)`` behaves as ``Planetoid`` except
    that every file it reads from its folder loads with ``weights_only=True``; a file that needs
    more raises :class:`UnsafeFileError` naming it, and nothing in it runs."""

    def _process(self) -> None:
        from torch_geometric.data.dataset import _repr, files_exist

        records = {"pre_transform.pt": self.pre_transform, "pre_filter.pt": self.pre_filter}
        for name, value in records.items():
            path = Path(self.processed_dir) / name
            if not self.force_reload and path.exists() and torch_load_safe(path) != _repr(value):
                warnings.warn(f"{path}: the dataset was processed with another {name[:-3]} than {_repr(value)}; "
                              "pass force_reload=True to process it again", stacklevel=2)  # fmt: skip
        if not self.force_reload and files_exist(self.processed_paths):
            return
        os.makedirs(self.processed_dir, exist_ok=True)
        self.process()
        for name, value in records.items():
            atomic_write(Path(self.processed_dir) / name, lambda f, v=_repr(value): torch.save(v, f))

    def load(self, path: str, data_cls: Any = None) -> None:
        from torch_geometric.data import Data
        from torch_geometric.data.data import BaseData

        out = torch_load_safe(path)
        if not isinstance(out, tuple) or len(out) not in (2, 3):
            raise ValueError(f"{path}: not a processed PyG dataset file (it holds a {type(out).__name__}); delete it "
                             "to have it rebuilt")  # fmt: skip
        data, self.slices = out[0], out[1]
        cls = out[2] if len(out) == 3 else (data_cls or Data)
        if not (isinstance(cls, type) and issubclass(cls, BaseData)):
            raise ValueError(f"{path}: names {cls!r} as its data class, not a PyG data class")
        self.data = cls.from_dict(data) if isinstance(data, dict) else data
