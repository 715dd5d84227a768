"""rawexec run's log pump: whole lines with prefixes; tasks not yet started are not looked at."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rawexec.cli.logwatch import LogDirWatch
from rawexec.cli.run_cmd import _LogPump


def _alloc(root: Path, alloc_id: str) -> Any:
    alloc_dir = root / alloc_id
    (alloc_dir / "alloc" / "logs").mkdir(parents=True)
    runner = SimpleNamespace(started_once=False)
    return SimpleNamespace(alloc_id=alloc_id, alloc_dir=str(alloc_dir), runners={"web": runner})


@pytest.mark.parametrize("inotify", [False, True])
def test_unstarted_task_is_skipped_until_started(tmp_path: Path, inotify: bool) -> None:
    ar = _alloc(tmp_path, "a1")
    out = io.StringIO()
    pump = _LogPump(out, threading.Lock())
    if inotify:
        pump.watch = LogDirWatch()
    try:
        pump.add_alloc(ar, "a1")
        (Path(ar.alloc_dir) / "alloc" / "logs" / "web.stdout.0").write_bytes(b"early\npart")
        assert pump.poll() == 0 and out.getvalue() == ""  # not started: not even listed
        assert all(st.pos is None for st in pump.streams.values())
        ar.runners["web"].started_once = True
        assert pump.poll(changed=None) == 1
        assert out.getvalue() == "a1/web | early\n"
        assert pump.poll(final=True) == 1
        assert out.getvalue() == "a1/web | early\na1/web | part\n"
    finally:
        if pump.watch is not None:
            pump.watch.close()


def test_final_poll_reads_a_task_never_marked_started(tmp_path: Path) -> None:
    ar = _alloc(tmp_path, "a2")
    out = io.StringIO()
    pump = _LogPump(out, threading.Lock())
    pump.add_alloc(ar, "a2")
    (Path(ar.alloc_dir) / "alloc" / "logs" / "web.stderr.0").write_bytes(b"oops\n")
    assert pump.poll(final=True) == 1
    assert out.getvalue() == "a2/web | oops\n"
