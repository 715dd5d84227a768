"""rawexec run's log pump: whole lines with prefixes; tasks not yet started are not looked at."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rawexec.cli.logwatch import LogDirWatch
from rawexec.cli.run_cmd import _LogPump


@contextlib.contextmanager
def _pump(ar: Any, label: str, inotify: bool) -> Iterator[tuple[_LogPump, io.StringIO]]:
    out = io.StringIO()
    pump = _LogPump(out, threading.Lock())
    if inotify:
        pump.watch = LogDirWatch()
    try:
        pump.add_alloc(ar, label)
        yield pump, out
    finally:
        if pump.watch is not None:
            pump.watch.close()


def _alloc(root: Path, alloc_id: str) -> Any:
    alloc_dir = root / alloc_id
    (alloc_dir / "alloc" / "logs").mkdir(parents=True)
    runner = SimpleNamespace(started_once=False)
    return SimpleNamespace(alloc_id=alloc_id, alloc_dir=str(alloc_dir), runners={"web": runner})


@pytest.mark.parametrize("inotify", [False, True])
def test_unstarted_task_is_skipped_until_started(tmp_path: Path, inotify: bool) -> None:
    ar = _alloc(tmp_path, "a1")
    with _pump(ar, "a1", inotify) as (pump, out):
        (Path(ar.alloc_dir) / "alloc" / "logs" / "web.stdout.0").write_bytes(b"early\npart")
        assert pump.poll() == 0 and out.getvalue() == ""  # not started: not even listed
        assert all(st.pos is None for st in pump.streams.values())
        ar.runners["web"].started_once = True
        assert pump.poll(changed=None) == 1
        assert out.getvalue() == "a1/web | early\n"
        assert pump.poll(final=True) == 1
        assert out.getvalue() == "a1/web | early\na1/web | part\n"


def test_final_poll_reads_a_task_never_marked_started(tmp_path: Path) -> None:
    ar = _alloc(tmp_path, "a2")
    out = io.StringIO()
    pump = _LogPump(out, threading.Lock())
    pump.add_alloc(ar, "a2")
    (Path(ar.alloc_dir) / "alloc" / "logs" / "web.stderr.0").write_bytes(b"oops\n")
    assert pump.poll(final=True) == 1
    assert out.getvalue() == "a2/web | oops\n"


@pytest.mark.parametrize("inotify", [False, True])
def test_files_rotated_away_before_they_were_shown_are_named(tmp_path: Path, inotify: bool) -> None:
    """A task that writes faster than its max_files x max_file_size keeps can have files deleted
    before `rawexec run` read them: it says which, instead of skipping to the next one silently."""
    ar = _alloc(tmp_path, "a3")
    ar.runners["web"].started_once = True
    logs = Path(ar.alloc_dir) / "alloc" / "logs"
    with _pump(ar, "a3", inotify) as (pump, out):
        (logs / "web.stdout.0").write_bytes(b"one\ntw")
        assert pump.poll(changed=None) == 1 and out.getvalue() == "a3/web | one\n"
        (logs / "web.stdout.0").unlink()  # .0 and .1 rotated away, .2 and .3 kept
        (logs / "web.stdout.2").write_bytes(b"five\n")
        (logs / "web.stdout.3").write_bytes(b"six\n")
        assert pump.poll(changed=None) == 4
        assert out.getvalue().splitlines()[1:] == [
            "a3/web | tw",
            "a3/web | [rawexec run: web.stdout.0 to .1 rotated away (the task's logs max_files) before it could be "
            "shown; those lines are lost]",
            "a3/web | five",
            "a3/web | six",
        ]
        (logs / "web.stdout.3").write_bytes(b"six\nseven\n")
        assert pump.poll(changed=None) == 1 and out.getvalue().endswith("a3/web | seven\n")


@pytest.mark.parametrize("inotify", [False, True])
def test_files_rotated_away_before_the_first_look_are_named(tmp_path: Path, inotify: bool) -> None:
    """A task can rotate its first files away before `rawexec run` even looks at its logs (a fast
    writer: `seq 1 800000` with max_files = 2, max_file_size = 1): the loss is named, not silent."""
    ar = _alloc(tmp_path, "a4")
    ar.runners["web"].started_once = True
    logs = Path(ar.alloc_dir) / "alloc" / "logs"
    (logs / "web.stdout.3").write_bytes(b"seven\n")
    (logs / "web.stdout.4").write_bytes(b"eight\nni")
    with _pump(ar, "a4", inotify) as (pump, out):
        assert pump.poll(changed=None) == 3
        assert out.getvalue().splitlines() == [
            "a4/web | [rawexec run: web.stdout.0 to .2 rotated away (the task's logs max_files) before it could be "
            "shown; those lines are lost]",
            "a4/web | seven",
            "a4/web | eight",
        ]
        assert pump.poll(final=True) == 1 and out.getvalue().endswith("a4/web | ni\n")
