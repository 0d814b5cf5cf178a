"""Atomic writes (nrnn.files): a failed write leaves the old file and no temporary."""

import json

import pytest

from nrnn.files import write_atomic, write_json_atomic


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "out.json"
    write_json_atomic(path, {"ok": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"bad": float("nan")})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert path.stat().st_mode & 0o444 == 0o444  # readable by everyone, like a normal file
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_interrupted_writer_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.bin"
    path.write_bytes(b"old")

    def interrupted(temporary):
        temporary.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, interrupted)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.bin"]


def test_missing_directories_are_created(tmp_path):
    path = write_json_atomic(tmp_path / "a" / "b" / "report.json", [1, 2])
    assert json.loads(path.read_text()) == [1, 2]
