"""The rule for a run's output folder: a fresh run never replaces another run's files.

A recipe calls :func:`check_out_dir` while validating its arguments (before any data is loaded)
and :func:`prepare_out_dir` when it starts. A folder holding files is refused unless the run is
told what to do with them: ``resume`` (continue the run they belong to) or ``overwrite``
(remove the files this run writes, then start afresh).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from gnnkit.train.checkpoint import is_temporary, remove_stale_temporaries

__all__ = ["OutDirNotEmptyError", "check_out_dir", "prepare_out_dir"]


class OutDirNotEmptyError(FileExistsError):
    """A fresh run was pointed at a folder that already holds files."""


def check_out_dir(path: str | os.PathLike, resume: bool = False, overwrite: bool = False) -> None:
    """Checks, without changing anything, that a run may write into ``path``.

    Raises:
        ValueError: both ``resume`` and ``overwrite``, or ``path`` is a file.
        OutDirNotEmptyError: ``path`` holds files and neither ``resume`` nor ``overwrite`` is set.
    """
    path = Path(path)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run in --out, or replace it")
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a folder")
    if resume or overwrite or not path.is_dir():
        return
    held = sorted(e.name for e in path.iterdir() if not is_temporary(e.name))
    if held:
        shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        raise OutDirNotEmptyError(
            f"--out {path} already holds {shown}; pass --resume to continue the run there, --overwrite to "
            "replace it, or choose another --out"
        )


def prepare_out_dir(
    path: str | os.PathLike, resume: bool = False, overwrite: bool = False, outputs: Iterable[str] = ()
) -> list[Path]:
    """:func:`check_out_dir`, then creates ``path``, removes temporary files left by a killed
    writer and, with ``overwrite``, the files this run writes (``outputs``, names relative to
    ``path``; other files are left alone).

    Returns:
        the removed files.
    """
    check_out_dir(path, resume, overwrite)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_temporaries(path)
    if overwrite:
        for name in outputs:
            target = path / name
            if target.is_file():
                target.unlink()
                removed.append(target)
    return removed
