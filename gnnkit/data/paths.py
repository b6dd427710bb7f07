"""Where gnnkit's datasets live: one convention for QM9 and the node-classification graphs.

The data root is, in this order:

1. the ``root`` argument (``--data-root`` in the recipes);
2. ``$GNNKIT_DATA``, when set and not empty;
3. the ``datasets/`` folder of the source checkout, when gnnkit runs from one (an editable
   install or the repository on ``sys.path``): it holds the committed raw graphs and split;
4. else the per-user cache, ``$XDG_CACHE_HOME/gnnkit`` or ``~/.cache/gnnkit`` (the convention
   of ``torch.hub``), where PyG downloads and processed caches go for an installed wheel.

Nothing is ever written inside the installed package. Each dataset has its own folder under
the root (``qm9/``, ``planetoid/``, ``webkb/``, ``wikipedia/``, ``actor/``), laid out as PyG
expects it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV", "checkout_datasets_dir", "data_root", "user_cache_dir"]

DATA_ENV = "GNNKIT_DATA"
# gnnkit/data/paths.py -> the folder that holds gnnkit/ (the repository root in a checkout).
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def checkout_datasets_dir() -> Path | None:
    """The ``datasets/`` folder of the gnnkit checkout this module was imported from, or
    ``None`` for an installed package (whose parent folder is ``site-packages``)."""
    pyproject = _SOURCE_ROOT / "pyproject.toml"
    datasets = _SOURCE_ROOT / "datasets"
    try:
        is_gnnkit = pyproject.is_file() and 'name = "gnnkit"' in pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    return datasets if is_gnnkit and datasets.is_dir() else None


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/gnnkit``, else ``~/.cache/gnnkit``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "gnnkit"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$GNNKIT_DATA``, else the checkout's ``datasets/``, else
    :func:`user_cache_dir` (see the module docstring).

    Raises:
        TypeError: ``root`` is not a path.
    """
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a str or os.PathLike, got {type(root).__name__}")
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return checkout_datasets_dir() or user_cache_dir()
