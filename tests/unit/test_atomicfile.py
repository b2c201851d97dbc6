import os

import pytest

from dockyard import atomicfile


def test_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    atomicfile.write(str(target), b"new" * 100000, 0o600)
    assert target.read_bytes() == b"new" * 100000
    assert oct(target.stat().st_mode & 0o777) == oct(0o600)
    assert os.listdir(tmp_path) == ["state.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomicfile.write(str(target), "not bytes")  # fails after the temporary file exists
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.json"]
