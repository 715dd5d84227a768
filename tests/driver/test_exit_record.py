"""The shim's exit record: written whole (temp file + rename), also when its temp file was made
ahead of time (after the start) and removed before the exit."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rawexec.executor.protocol import exit_record_tmp
from rawexec.executor.supervisor import open_record_tmp, write_json_atomic


def test_written_whole_with_and_without_a_file_made_ahead(tmp_path: Path) -> None:
    path = str(tmp_path / "t.json")
    write_json_atomic(path, {"n": 1})
    assert json.loads(Path(path).read_text()) == {"n": 1}
    fd = open_record_tmp(path)
    tmp = exit_record_tmp(path, os.getpid())
    assert os.path.exists(tmp) and os.path.getsize(tmp) == 0
    assert json.loads(Path(path).read_text()) == {"n": 1}  # the old record, untouched
    write_json_atomic(path, {"n": 2}, fd)
    assert json.loads(Path(path).read_text()) == {"n": 2}
    assert sorted(os.listdir(tmp_path)) == ["t.json"]  # no temp file left


def test_a_file_made_ahead_and_removed_meanwhile(tmp_path: Path) -> None:
    path = str(tmp_path / "t.json")
    fd = open_record_tmp(path)
    os.unlink(exit_record_tmp(path, os.getpid()))  # e.g. a state dir cleaned under a running shim
    write_json_atomic(path, {"exit": 3}, fd)
    assert json.loads(Path(path).read_text()) == {"exit": 3}
    assert sorted(os.listdir(tmp_path)) == ["t.json"]
