"""Atomic writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from models.files import atomic_bytes, atomic_text


class Interrupted(Exception):
    pass


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "export.csv"
    target.write_text("old\n")
    with pytest.raises(Interrupted), atomic_text(target) as out:
        out.write("new, half")
        raise Interrupted
    assert target.read_text() == "old\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["export.csv"]


def test_a_complete_write_replaces_the_file_with_the_given_permissions(tmp_path: Path) -> None:
    target = tmp_path / "pjsip.conf"
    target.write_text("old\n")
    with atomic_text(target, 0o640) as out:
        out.write("line one\r\nline two\n")
    assert target.read_bytes() == b"line one\r\nline two\n"  # newlines as written
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    with atomic_bytes(tmp_path / "segment.jsonl") as raw:
        raw.writelines([b"{}\n", b"[]\n"])
    assert (tmp_path / "segment.jsonl").read_bytes() == b"{}\n[]\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pjsip.conf", "segment.jsonl"]
