"""replaced_atomically: an output replaces the old file only when it is complete."""

import os

import pytest

from dlcli.runs.paths import replaced_atomically


def test_a_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "preds.csv"
    out.write_bytes(b"old\n")
    with pytest.raises(RuntimeError, match="partway"), replaced_atomically(out) as tmp:
        tmp.write_bytes(b"half of the new")
        raise RuntimeError("failed partway")
    assert out.read_bytes() == b"old\n" and os.listdir(tmp_path) == ["preds.csv"]


def test_a_failure_removes_only_the_folders_it_made(tmp_path):
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError), replaced_atomically(tmp_path / "kept" / "a" / "b" / "m.onnx"):
        raise RuntimeError("rejected")
    assert os.listdir(tmp_path) == ["kept"] and os.listdir(tmp_path / "kept") == []


def test_the_new_file_replaces_the_name_with_the_usual_mode(tmp_path):
    """Written over a hard link, the other name keeps the old data; a writer's own 0600 file is
    given the mode a new file gets under the umask."""
    out, other = tmp_path / "best.bin", tmp_path / "last.bin"
    out.write_bytes(b"old")
    os.link(out, other)
    before = os.umask(0o027)
    try:
        with replaced_atomically(out) as tmp:
            tmp.write_bytes(b"new")
            os.chmod(tmp, 0o600)
    finally:
        os.umask(before)
    assert out.read_bytes() == b"new" and other.read_bytes() == b"old"
    assert out.stat().st_mode & 0o777 == 0o640


def test_a_symlink_keeps_pointing_at_the_new_file(tmp_path):
    target, link = tmp_path / "v2.csv", tmp_path / "latest.csv"
    target.write_text("old")
    link.symlink_to(target.name)
    with replaced_atomically(link) as tmp:
        tmp.write_text("new")
    assert link.is_symlink() and target.read_text() == "new"
