"""The output-folder rule: a fresh run refuses a folder that holds files unless told otherwise."""

import os

import pytest

from gnnkit.train.outdir import OutDirNotEmptyError, check_out_dir, prepare_out_dir


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
    assert removed == [tmp_path / "result.json"] and os.listdir(tmp_path) == ["notes.txt"]
    prepare_out_dir(tmp_path / "deep" / "new")
    assert (tmp_path / "deep" / "new").is_dir()


def test_stale_temporaries_alone_do_not_make_a_folder_non_empty(tmp_path):
    (tmp_path / ".checkpoint.pt.tmp999999999").write_bytes(b"partial")
    check_out_dir(tmp_path)
    prepare_out_dir(tmp_path)
    assert os.listdir(tmp_path) == []
