"""The data-root convention (gnnkit.data.paths) and the datasets that follow it."""

import pathlib

import pytest

from gnnkit.data import QM9, data_root, user_cache_dir
from gnnkit.data import paths

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_root_argument_then_environment_then_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv("GNNKIT_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root(str(tmp_path)) == tmp_path
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_root("~/data") == tmp_path / "data"
    assert data_root() == tmp_path / "env"
    monkeypatch.setenv("GNNKIT_DATA", "")  # empty counts as unset
    assert data_root() == REPO / "datasets" == paths.checkout_datasets_dir()
    monkeypatch.delenv("GNNKIT_DATA")
    assert data_root() == REPO / "datasets"
    with pytest.raises(TypeError, match="root must be a str or os.PathLike, got int"):
        data_root(3)


def test_installed_package_uses_the_user_cache(monkeypatch, tmp_path):
    # An installed gnnkit sits in site-packages: no pyproject.toml, no datasets/ beside it.
    monkeypatch.delenv("GNNKIT_DATA", raising=False)
    monkeypatch.setattr(paths, "_SOURCE_ROOT", tmp_path / "site-packages")
    assert paths.checkout_datasets_dir() is None
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == user_cache_dir() == tmp_path / "xdg" / "gnnkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".cache" / "gnnkit"
    # another project's checkout (a pyproject.toml and datasets/, but not gnnkit's) is not ours
    other = tmp_path / "other"
    (other / "datasets").mkdir(parents=True)
    (other / "pyproject.toml").write_text('[project]\nname = "other"\n')
    monkeypatch.setattr(paths, "_SOURCE_ROOT", other)
    assert paths.checkout_datasets_dir() is None
    (other / "pyproject.toml").write_text('[project]\nname = "gnnkit"\n')
    assert paths.checkout_datasets_dir() == other / "datasets"


def test_qm9_default_root_follows_the_convention(monkeypatch, tmp_path):
    monkeypatch.setenv("GNNKIT_DATA", str(tmp_path))
    ds = QM9(subset=[0, 1], num_workers=1, log=False)
    assert pathlib.Path(ds.root) == tmp_path / "qm9" and len(ds) == 2
    assert len(list((tmp_path / "qm9" / "processed").glob("qm9_v1_*_sub2_*.pt"))) == 1
    with pytest.raises(TypeError, match="root"):
        QM9(root=1.5, subset=[0], log=False)
