"""State store: round trips, atomicity, lock, schema version, kill -9 durability."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rawexec.agent.state import SCHEMA_VERSION, StateStore
from rawexec.errors import InvalidConfigError, RawExecError, UnavailableError


def test_roundtrips(tmp_path: Path) -> None:
    with StateStore(tmp_path / "d") as st:
        assert st.schema_version == SCHEMA_VERSION and st.index() == 0
        i1 = st.put_job("default", "web", {"ID": "web", "Type": "service", "Count": 2})
        i2 = st.put_job("default", "web", {"ID": "web", "Type": "service", "Count": 3})
        assert i2 == i1 + 1 and st.job_indexes("default", "web") == (i1, i2)
        assert st.get_job("default", "web") == {"ID": "web", "Type": "service", "Count": 3}
        assert st.get_job("other", "web") is None
        st.put_job("other", "batch1", {"ID": "batch1"})
        assert [j["ID"] for j in st.list_jobs()] == ["web", "batch1"]
        assert [j["ID"] for j in st.list_jobs("other")] == ["batch1"]
        for n in range(3):
            st.put_alloc(f"a{n}aaaa", {"ID": f"a{n}aaaa", "n": n}, job_id="web")
        assert [a["n"] for a in st.list_allocs(job_id="web")] == [0, 1, 2]
        assert st.list_allocs(job_id="nope") == []
        assert st.alloc_ids_by_prefix("a1") == ["a1aaaa"]
        assert st.alloc_ids_by_prefix("%") == []
        st.put_task_state("a0aaaa", "server", {"state": "running", "restarts": 1})
        assert st.task_states("a0aaaa") == {"server": {"state": "running", "restarts": 1}}
        for i in range(15):
            st.append_event("a0aaaa", "server", {"type": "Restarting", "i": i})
        assert [e["i"] for e in st.events("a0aaaa", "server")] == list(range(5, 15))
        st.put_driver_handle("a0aaaa", "server", b"\x00\xffblob")
        assert st.get_driver_handle("a0aaaa", "server") == b"\x00\xffblob"
        assert st.driver_handles() == {("a0aaaa", "server"): b"\x00\xffblob"}
        st.put_meta("node_id", "abc")
        assert st.get_meta("node_id") == "abc" and st.get_meta("x") is None
        assert st.delete_alloc("a0aaaa")
        assert st.task_states("a0aaaa") == {} and st.events("a0aaaa", "server") == []
        assert st.driver_handles() == {}
        assert not st.delete_alloc("a0aaaa")
        assert st.delete_job("default", "web") and not st.delete_job("default", "web")
    with StateStore(tmp_path / "d") as st:  # reopen: still there
        assert st.get_meta("node_id") == "abc"
        assert st.list_allocs() and st.index() > 0


def test_transaction_is_atomic(tmp_path: Path) -> None:
    with StateStore(tmp_path) as st:
        with pytest.raises(RuntimeError), st.transaction() as tx:
            tx.put_job("default", "j", {"ID": "j"})
            tx.put_alloc("a", {"ID": "a"}, job_id="j")
            raise RuntimeError("crash in the middle")
        assert st.get_job("default", "j") is None and st.get_alloc("a") is None
        with st.transaction() as tx:
            i1 = tx.put_job("default", "j", {"ID": "j"})
            i2 = tx.put_alloc("a", {"ID": "a"}, job_id="j")
            with st.transaction() as inner:  # nested joins the outer one
                inner.put_task_state("a", "t", {"state": "pending"})
        assert i1 == i2  # one index per transaction
        assert st.get_alloc("a") == {"ID": "a"}


def test_bad_values(tmp_path: Path) -> None:
    with StateStore(tmp_path) as st:
        with pytest.raises(TypeError, match="job is not JSON-serialisable"):
            st.put_job("default", "j", {"x": object()})
        with pytest.raises(TypeError, match="allocation must be a dict"):
            st.put_alloc("a", ["x"], job_id="j")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            st.put_job("default", "j", {"x": float("nan")})
        with pytest.raises(TypeError, match="driver handle must be bytes"):
            st.put_driver_handle("a", "t", "text")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="managed by the store"):
            st.put_meta("index", "5")
        assert st.get_job("default", "j") is None
    with pytest.raises(UnavailableError, match="is closed"):
        st.get_job("default", "j")


def test_second_store_on_same_dir_refused(tmp_path: Path) -> None:
    msg = f'data_dir "{tmp_path}" is in use by another rawexec agent \\(pid {os.getpid()}\\)'
    with StateStore(tmp_path), pytest.raises(UnavailableError, match=msg):
        StateStore(tmp_path)
    StateStore(tmp_path).close()  # released on close


def test_lock_held_by_other_process_then_freed_by_kill(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from rawexec.agent.state import StateStore
        st = StateStore({str(tmp_path)!r})
        print("ready", flush=True)
        sys.stdin.read()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        with pytest.raises(UnavailableError, match=f"pid {p.pid}"):
            StateStore(tmp_path)
    finally:
        p.kill()
        p.wait()
    StateStore(tmp_path).close()


def test_data_dir_not_usable(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InvalidConfigError, match=f'data_dir "{f}/sub" is not usable: .*writable directory'):
        StateStore(f / "sub")


def test_newer_schema_and_garbage_db_refused(tmp_path: Path) -> None:
    StateStore(tmp_path).close()
    c = sqlite3.connect(tmp_path / "state.db")
    c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    c.commit()
    c.close()
    with pytest.raises(RawExecError, match="has schema version 99, newer than this rawexec supports"):
        StateStore(tmp_path)
    other = tmp_path / "g"
    other.mkdir()
    (other / "state.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RawExecError, match="cannot be opened: file is not a database"):
        StateStore(other)
    with pytest.raises(RawExecError, match="cannot be opened"):  # lock not leaked by the failed open
        StateStore(other)


WRITER = """
import sys
from rawexec.agent.state import StateStore
st = StateStore(sys.argv[1])
i = 0
while True:
    with st.transaction() as tx:
        tx.put_alloc(f"alloc-{i}", {"ID": f"alloc-{i}", "pad": "x" * 2000, "i": i}, job_id="j")
        tx.put_task_state(f"alloc-{i}", "t", {"state": "running", "i": i})
        tx.append_event(f"alloc-{i}", "t", {"type": "Started", "i": i})
    print(i, flush=True)
    i += 1
"""


def test_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    acked = -1
    for line in p.stdout:
        acked = int(line)
        if acked >= 300:
            break
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    with StateStore(tmp_path) as st:
        assert st._c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        allocs = st.list_allocs()
        ids = {a["i"] for a in allocs}
        assert set(range(acked + 1)) <= ids  # every acknowledged write is there
        n = len(allocs)
        assert ids == set(range(n))  # and nothing half-written: each alloc complete with its state/event
        for a in allocs:
            assert st.get_task_state(a["ID"], "t") == {"state": "running", "i": a["i"]}
            assert st.events(a["ID"], "t") == [{"type": "Started", "i": a["i"]}]
    assert json.loads(json.dumps(allocs))  # plain data


def test_summaries_and_json_listings(tmp_path: Path) -> None:
    with StateStore(tmp_path) as st:
        st.put_job("default", "j", {"ID": "j", "Big": "x" * 100}, summary={"ID": "j"})
        st.put_job("default", "k", {"ID": "k"})
        assert st.list_jobs(summary=True) == [{"ID": "j"}, {"ID": "k"}]
        assert json.loads(st.list_jobs_json(summary=True)) == [{"ID": "j"}, {"ID": "k"}]
        assert json.loads(st.list_jobs_json("default"))[0]["Big"] == "x" * 100
        assert st.list_jobs_json("none") == "[]"
        st.put_alloc("a1", {"ID": "a1", "Full": True}, job_id="j", summary={"ID": "a1"})
        st.put_alloc("a2", {"ID": "a2", "Full": True}, job_id="k")
        assert st.list_allocs(summary=True) == [{"ID": "a1"}, {"ID": "a2", "Full": True}]
        assert json.loads(st.list_allocs_json(job_id="j")) == [{"ID": "a1", "Full": True}]
        assert json.loads(st.list_allocs_json(job_id="j", summary=True)) == [{"ID": "a1"}]
        st.put_alloc("a1", {"ID": "a1", "Full": False}, job_id="j")  # a replace without summary drops it
        assert st.list_allocs(job_id="j", summary=True) == [{"ID": "a1", "Full": False}]


def test_concurrent_writers_from_threads(tmp_path: Path) -> None:
    import threading

    with StateStore(tmp_path) as st:
        def work(n: int) -> None:
            for i in range(50):
                with st.transaction() as tx:
                    tx.put_alloc(f"t{n}-{i}", {"n": n, "i": i}, job_id=f"j{n}")
                    tx.append_event(f"t{n}-{i}", "task", {"i": i})
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(st.list_allocs()) == 200
        assert st.index() == 200  # one index per transaction, none lost
        assert all(len(st.list_allocs(job_id=f"j{n}")) == 50 for n in range(4))


def test_files_are_owner_only(tmp_path: Path) -> None:
    import stat

    with StateStore(tmp_path / "d") as st:
        st.put_job("default", "j", {"Env": {"SECRET": "x"}})
        for name in ("state.db", "state.db-wal", "state.db-shm", "agent.lock"):
            mode = stat.S_IMODE(os.stat(tmp_path / "d" / name).st_mode)
            assert mode == 0o600, (name, oct(mode))
        assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) & 0o022 == 0  # not writable by others


def test_put_alloc_json(tmp_path: Path) -> None:
    """An allocation given as JSON text is stored as given: read back like any other."""
    with StateStore(tmp_path) as st:
        idx = st.put_alloc_json("a1", '{"ID":"a1","n":1}', job_id="web")
        assert st.get_alloc("a1") == {"ID": "a1", "n": 1} and st.index() == idx
        st.put_alloc_json("a1", '{"ID":"a1","n":2}', job_id="web")
        assert [a["n"] for a in st.list_allocs(job_id="web")] == [2]
        with pytest.raises(TypeError):
            st.put_alloc_json("a2", "[]", job_id="web")
