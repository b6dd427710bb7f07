"""Files a run can trust: atomic writes, verified checkpoints and caches, RNG state.

* Every write goes to a temporary file beside its destination (``.NAME.tmpPID``), is fsync-ed and
  renamed over the destination, so a crash leaves the old file or the new one, never a partial
  file. :func:`remove_stale_temporaries` removes what a killed writer left behind.
* Every file ``torch.save`` writes is a zip archive holding a CRC-32 of each record, which
  ``torch.load`` does not check: a file with flipped bytes can load without complaint and train
  on garbage. :func:`verify_torch_file` checks the archive's structure and every CRC, so that a
  damaged, truncated or empty file is refused with :class:`DamagedFileError` naming it.
* :func:`save_checkpoint` keeps the previous checkpoint beside the new one
  (``checkpoint.prev.pt``) and :func:`load_checkpoint` falls back to it when the newest is damaged
  or missing (a kill between the two renames of a save).
* :func:`load_or_build` is a verified on-disk cache: a damaged entry is rebuilt, not loaded.
"""

from __future__ import annotations

import os
import pickle
import random
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from gnnkit.data.files import (
    FileWriteError,
    UnsafeFileError,
    atomic_write,
    is_temporary,
    remove_stale_temporaries,
    temporary_path,
    torch_load_safe,
    unsafe_reason,
)

T = TypeVar("T")


class DamagedFileError(ValueError):
    """A file that exists but cannot be trusted (damaged, truncated, empty or not what it should
    be). ``path`` is the file, ``reason`` what is wrong with it."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


_temporary = temporary_path


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``:
    a crash leaves either the old file or the new one, never a partial file; a failed write
    (e.g. a full disk) raises :class:`gnnkit.data.files.FileWriteError` naming ``path`` and
    leaves no temporary."""
    atomic_write(path, lambda f: torch.save(obj, f), "wb")


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Writes a text file atomically (see :func:`atomic_save`)."""
    atomic_write(path, lambda f: f.write(text), "w")


def verify_torch_file(path: str | os.PathLike) -> None:
    """Checks a ``torch.save`` file without unpickling it: the zip structure (a truncated file
    has no central directory) and the CRC-32 of every record.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DamagedFileError: the file is empty, truncated, not a torch file, or a record's bytes do
            not match its CRC-32.
    """
    path = Path(path)
    size = path.stat().st_size  # FileNotFoundError if missing
    if size == 0:
        raise DamagedFileError(path, "the file is empty")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
                raise DamagedFileError(path, "not a torch.save file (no data.pkl record)")
            bad = archive.testzip()  # reads every record and compares its CRC-32
    except DamagedFileError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile raises several types on a broken archive
        raise DamagedFileError(path, f"truncated or not a torch.save file ({size} bytes; {type(e).__name__}: {e})") from e
    if bad is not None:
        raise DamagedFileError(path, f"checksum mismatch in record {bad!r} (the file is damaged)")


def load_verified(path: str | os.PathLike, weights_only: bool = True, map_location: Any = "cpu") -> Any:
    """:func:`verify_torch_file`, then ``torch.load``; a file that still fails to unpickle is
    reported as damaged too.

    Raises:
        DamagedFileError: see :func:`verify_torch_file`, or the file does not unpickle.
        UnsafeFileError: with ``weights_only`` (the default), the file needs full pickle.
    """
    verify_torch_file(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as e:
        if weights_only and "weights only load failed" in str(e).lower():
            raise UnsafeFileError(path, unsafe_reason(e)) from None
        raise DamagedFileError(path, f"does not load: {type(e).__name__}: {e}") from e
    except Exception as e:  # noqa: BLE001 - any unpickling failure of a checked file means a damaged one
        raise DamagedFileError(path, f"does not load: {type(e).__name__}: {e}") from e


def previous_checkpoint(path: str | os.PathLike) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint before ``path``
    (``checkpoint.pt`` -> ``checkpoint.prev.pt``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(obj: Any, path: str | os.PathLike) -> None:
    """Saves ``obj`` atomically at ``path`` and keeps the checkpoint it replaces as
    :func:`previous_checkpoint`. A kill at any point leaves a loadable checkpoint at ``path``
    or at the previous one (see :func:`load_checkpoint`); a failed write (e.g. a full disk)
    raises :class:`gnnkit.data.files.FileWriteError` naming ``path``, with both kept."""
    path = Path(path)

    def keep_previous() -> None:
        if path.exists():
            os.replace(path, previous_checkpoint(path))

    atomic_write(path, lambda f: torch.save(obj, f), "wb", before_replace=keep_previous)


def load_checkpoint(path: str | os.PathLike, log: Callable[[str], None] | None = None) -> tuple[Any, Path] | None:
    """Loads the newest good checkpoint: ``path``, else the previous one kept by
    :func:`save_checkpoint`.

    Args:
        path: the checkpoint.
        log: where a fallback is reported (default: stderr).

    Returns:
        ``(checkpoint, the path it came from)``, or ``None`` if neither file exists.

    Every file is loaded with ``weights_only=True``: a checkpoint that needs full pickle is
    refused (it is not damage to fall back from: someone wrote more into it than gnnkit does).

    Raises:
        DamagedFileError: a checkpoint exists but neither it nor a previous one is good; the
            message names every file tried and what is wrong with it.
        UnsafeFileError: a checkpoint tried needs full pickle to load.
    """
    path = Path(path)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    problems: list[DamagedFileError] = []
    for candidate in (path, previous_checkpoint(path)):
        if not candidate.exists():
            continue
        try:
            obj = load_verified(candidate)
        except DamagedFileError as e:
            problems.append(e)
            continue
        except UnsafeFileError as e:
            if "numpy" in e.reason:  # gnnkit before weights-only checkpoints kept NumPy's RNG state as an array
                raise UnsafeFileError(candidate, f"{e.reason}. If an older gnnkit wrote it (it kept NumPy's RNG state "
                                      "as an array), the run cannot be resumed safely: start it afresh with "
                                      "--overwrite") from None  # fmt: skip
            raise
        if candidate != path:
            why = f"{problems[0].path} is damaged ({problems[0].reason})" if problems else f"{path} is missing"
            log(f"warning: {why}; resuming from the previous checkpoint {candidate}")
        return obj, candidate
    if not problems:
        return None
    if len(problems) == 1:
        raise DamagedFileError(problems[0].path, f"{problems[0].reason}; no previous good checkpoint to fall back to")
    raise DamagedFileError(path, "; ".join(f"{p.path.name}: {p.reason}" for p in problems) + " (no good checkpoint left)")


def load_or_build(path: str | os.PathLike, build: Callable[[], T], log: Callable[[str], None] | None = None) -> T:
    """A verified on-disk cache of ``build()``: loads ``path`` if it is a good torch file, else
    (missing, damaged, truncated) builds, saves atomically and returns the new value.
    Concurrent callers (e.g. ``--jobs`` workers) never read a half-written file.

    Args:
        path: the cache file.
        build: computes the value (tensors and plain containers: it is loaded with
            ``weights_only=True``).
        log: where a rebuild of a damaged entry is reported (default: stderr).
    """
    path = Path(path)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    remove_stale_temporaries(path.parent, path.name)
    if path.exists():
        try:
            return load_verified(path, weights_only=True)
        except (DamagedFileError, UnsafeFileError) as e:
            log(f"warning: cache {e}; rebuilding it")
    value = build()
    atomic_save(value, path)
    return value


def rng_state() -> dict[str, Any]:
    """The state of every random number generator a training step may draw from, as tensors
    and plain values only (so that a checkpoint holding it loads with ``weights_only=True``)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},  # fmt: skip
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores :func:`rng_state`."""
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))  # fmt: skip
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


__all__ = [
    "DamagedFileError",
    "FileWriteError",
    "UnsafeFileError",
    "atomic_save",
    "atomic_write_text",
    "is_temporary",
    "load_checkpoint",
    "load_or_build",
    "load_verified",
    "previous_checkpoint",
    "remove_stale_temporaries",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "torch_load_safe",
    "verify_torch_file",
]
