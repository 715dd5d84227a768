"""The agent's state store: one SQLite database in ``data_dir`` (``state.db``).

What it holds: jobs, allocations, per-task states, per-task events, driver handles (the
opaque blobs the driver needs to re-attach to a running task), and small metadata (the node
id, the schema version, the global modify index).

Durability: WAL journal, every write inside one ``BEGIN IMMEDIATE`` transaction, so a
``kill -9`` of the agent at any moment leaves either the whole write or none of it; a
committed write survives a process crash (``synchronous=NORMAL`` is crash-safe in WAL mode;
pass ``fsync=True`` to also survive power loss). Model objects are stored as JSON: dict in,
dict out; the store does not know the job model.

Exclusivity: ``data_dir/agent.lock`` is held with ``flock`` for the store's lifetime, so a
second agent on the same data dir is refused with an error that names the first one's pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rawexec.errors import InvalidConfigError, RawExecError, UnavailableError

__all__ = ["DB_NAME", "LOCK_NAME", "SCHEMA_VERSION", "StateStore", "Tx"]

SCHEMA_VERSION = 1
DB_NAME = "state.db"
LOCK_NAME = "agent.lock"
SQLITE_CACHE_KIB = 256
"""SQLite page cache of the state db (KiB)."""

# Small columns come before ``body`` so listings of summaries never read the bodies' overflow pages.
_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE jobs (
        namespace TEXT NOT NULL, job_id TEXT NOT NULL,
        create_index INTEGER NOT NULL, modify_index INTEGER NOT NULL,
        summary TEXT, body TEXT NOT NULL,
        PRIMARY KEY (namespace, job_id));
    CREATE TABLE allocs (
        alloc_id TEXT PRIMARY KEY, namespace TEXT NOT NULL, job_id TEXT NOT NULL,
        create_index INTEGER NOT NULL, modify_index INTEGER NOT NULL,
        summary TEXT, body TEXT NOT NULL);
    CREATE INDEX allocs_by_job ON allocs (namespace, job_id);
    CREATE TABLE task_states (
        alloc_id TEXT NOT NULL, task TEXT NOT NULL, body TEXT NOT NULL, modify_index INTEGER NOT NULL,
        PRIMARY KEY (alloc_id, task));
    CREATE TABLE task_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, alloc_id TEXT NOT NULL, task TEXT NOT NULL,
        body TEXT NOT NULL);
    CREATE INDEX task_events_by_task ON task_events (alloc_id, task, id);
    CREATE TABLE driver_handles (
        alloc_id TEXT NOT NULL, task TEXT NOT NULL, blob BLOB NOT NULL, PRIMARY KEY (alloc_id, task));
    """,
}


def _dump(obj: Mapping[str, Any], what: str) -> str:
    if not isinstance(obj, Mapping):
        raise TypeError(f"{what} must be a dict, got {type(obj).__name__}")
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} is not JSON-serialisable: {e}") from None


def _load(text: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(text)
    return out


class Tx:
    """The write/read verbs, bound to one open transaction (see :meth:`StateStore.transaction`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn
        self._index: int | None = None

    # -- index --------------------------------------------------------------------------------

    def _bump(self) -> int:
        """The modify index of this transaction (bumped once per transaction)."""
        if self._index is None:
            self._index = self.index() + 1
            self._c.execute("INSERT INTO meta(key, value) VALUES ('index', ?) "
                            "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(self._index),))
        return self._index

    def bump(self) -> int:
        """This transaction's modify index, for a write that changes no job or allocation (an evaluation)."""
        return self._bump()

    def index(self) -> int:
        """The latest modify index (0 for an empty store)."""
        row = self._c.execute("SELECT value FROM meta WHERE key = 'index'").fetchone()
        return int(row[0]) if row else 0

    # -- meta ---------------------------------------------------------------------------------

    def put_meta(self, key: str, value: str) -> None:
        if key in ("index", "schema_version"):
            raise ValueError(f"meta key {key!r} is managed by the store")
        self._c.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self._c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # -- jobs ---------------------------------------------------------------------------------

    def put_job(self, namespace: str, job_id: str, job: Mapping[str, Any], *,
                summary: Mapping[str, Any] | None = None) -> int:
        """Insert or replace a job; returns the modify index. ``summary`` is an optional small form
        (e.g. the API's list stub) that listings can return without decoding every full job."""
        body = _dump(job, "job")
        stub = None if summary is None else _dump(summary, "job summary")
        idx = self._bump()
        self._c.execute(
            "INSERT INTO jobs(namespace, job_id, body, summary, create_index, modify_index) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(namespace, job_id) DO UPDATE SET body = excluded.body, "
            "summary = excluded.summary, modify_index = excluded.modify_index",
            (namespace, job_id, body, stub, idx, idx))
        return idx

    def get_job(self, namespace: str, job_id: str) -> dict[str, Any] | None:
        row = self._c.execute("SELECT body FROM jobs WHERE namespace = ? AND job_id = ?",
                              (namespace, job_id)).fetchone()
        return None if row is None else _load(row[0])

    def job_indexes(self, namespace: str, job_id: str) -> tuple[int, int] | None:
        """(create_index, modify_index) of a job, or None."""
        row = self._c.execute("SELECT create_index, modify_index FROM jobs WHERE namespace = ? AND job_id = ?",
                              (namespace, job_id)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def _jobs_sql(self, col: str, namespace: str | None) -> tuple[str, list[Any]]:
        if namespace is None:
            return f"SELECT {col} FROM jobs ORDER BY namespace, job_id", []
        return f"SELECT {col} FROM jobs WHERE namespace = ? ORDER BY job_id", [namespace]

    def list_jobs(self, namespace: str | None = None, *, summary: bool = False) -> list[dict[str, Any]]:
        """All jobs (or their summaries, where stored; the full job otherwise)."""
        sql, args = self._jobs_sql("coalesce(summary, body)" if summary else "body", namespace)
        return [_load(r[0]) for r in self._c.execute(sql, args).fetchall()]

    def list_jobs_json(self, namespace: str | None = None, *, summary: bool = False) -> str:
        """Like :meth:`list_jobs`, as one JSON array text, without decoding (for the HTTP API)."""
        sql, args = self._jobs_sql("coalesce(summary, body) AS j" if summary else "body AS j", namespace)
        return self._json_array(sql, args)

    def delete_job(self, namespace: str, job_id: str) -> bool:
        cur = self._c.execute("DELETE FROM jobs WHERE namespace = ? AND job_id = ?", (namespace, job_id))
        if cur.rowcount:
            self._bump()
        return cur.rowcount > 0

    # -- allocations --------------------------------------------------------------------------

    def put_alloc(self, alloc_id: str, alloc: Mapping[str, Any], *, job_id: str,
                  namespace: str = "default", summary: Mapping[str, Any] | None = None) -> int:
        """Insert or replace an allocation (``summary``: an optional list stub, see :meth:`put_job`)."""
        body = _dump(alloc, "allocation")
        stub = None if summary is None else _dump(summary, "allocation summary")
        idx = self._bump()
        self._c.execute(
            "INSERT INTO allocs(alloc_id, namespace, job_id, body, summary, create_index, modify_index) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(alloc_id) DO UPDATE SET body = excluded.body, "
            "summary = excluded.summary, namespace = excluded.namespace, job_id = excluded.job_id, "
            "modify_index = excluded.modify_index",
            (alloc_id, namespace, job_id, body, stub, idx, idx))
        return idx

    def put_alloc_json(self, alloc_id: str, body: str, *, job_id: str, namespace: str = "default") -> int:
        """:meth:`put_alloc` with the allocation already encoded as a JSON object (the agent encodes
        its fields once for the list stub and the stored body)."""
        if not body.startswith("{"):
            raise TypeError("allocation must be a JSON object")
        idx = self._bump()
        self._c.execute(
            "INSERT INTO allocs(alloc_id, namespace, job_id, body, summary, create_index, modify_index) "
            "VALUES (?, ?, ?, ?, NULL, ?, ?) ON CONFLICT(alloc_id) DO UPDATE SET body = excluded.body, "
            "summary = excluded.summary, namespace = excluded.namespace, job_id = excluded.job_id, "
            "modify_index = excluded.modify_index",
            (alloc_id, namespace, job_id, body, idx, idx))
        return idx

    def get_alloc(self, alloc_id: str) -> dict[str, Any] | None:
        row = self._c.execute("SELECT body FROM allocs WHERE alloc_id = ?", (alloc_id,)).fetchone()
        return None if row is None else _load(row[0])

    def _allocs_sql(self, col: str, job_id: str | None, namespace: str | None) -> tuple[str, list[Any]]:
        sql, args = f"SELECT {col} FROM allocs", []
        conds = []
        if namespace is not None:
            conds.append("namespace = ?")
            args.append(namespace)
        if job_id is not None:
            conds.append("job_id = ?")
            args.append(job_id)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        return sql + " ORDER BY create_index, alloc_id", args

    def list_allocs(self, *, job_id: str | None = None, namespace: str | None = None,
                    summary: bool = False) -> list[dict[str, Any]]:
        """Allocations in creation order (or their summaries, where stored)."""
        sql, args = self._allocs_sql("coalesce(summary, body)" if summary else "body", job_id, namespace)
        return [_load(r[0]) for r in self._c.execute(sql, args).fetchall()]

    def list_allocs_json(self, *, job_id: str | None = None, namespace: str | None = None,
                         summary: bool = False) -> str:
        """Like :meth:`list_allocs`, as one JSON array text, without decoding (for the HTTP API)."""
        sql, args = self._allocs_sql("coalesce(summary, body) AS j" if summary else "body AS j", job_id, namespace)
        return self._json_array(sql, args)

    def _json_array(self, sql: str, args: list[Any]) -> str:
        row = self._c.execute(f"SELECT '[' || coalesce(group_concat(j, ','), '') || ']' FROM ({sql})", args)
        return str(row.fetchone()[0])

    def alloc_ids_by_prefix(self, prefix: str) -> list[str]:
        """Ids starting with ``prefix`` (for ``nomad alloc status <short id>``)."""
        esc = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._c.execute("SELECT alloc_id FROM allocs WHERE alloc_id LIKE ? ESCAPE '\\' ORDER BY alloc_id",
                               (esc + "%",)).fetchall()
        return [str(r[0]) for r in rows]

    def delete_alloc(self, alloc_id: str) -> bool:
        """Delete an allocation with its task states, events and driver handles."""
        cur = self._c.execute("DELETE FROM allocs WHERE alloc_id = ?", (alloc_id,))
        for table in ("task_states", "task_events", "driver_handles"):
            self._c.execute(f"DELETE FROM {table} WHERE alloc_id = ?", (alloc_id,))
        if cur.rowcount:
            self._bump()
        return cur.rowcount > 0

    # -- task states and events ---------------------------------------------------------------

    def put_task_state(self, alloc_id: str, task: str, state: Mapping[str, Any]) -> int:
        return self.put_task_state_json(alloc_id, task, _dump(state, "task state"))

    def put_task_state_json(self, alloc_id: str, task: str, body: str) -> int:
        """:meth:`put_task_state` with the state already encoded as a JSON object (the agent builds it
        from pieces encoded once per event)."""
        if not body.startswith("{"):
            raise TypeError("task state must be a JSON object")
        idx = self._bump()
        self._c.execute(
            "INSERT INTO task_states(alloc_id, task, body, modify_index) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(alloc_id, task) DO UPDATE SET body = excluded.body, modify_index = excluded.modify_index",
            (alloc_id, task, body, idx))
        return idx

    def get_task_state(self, alloc_id: str, task: str) -> dict[str, Any] | None:
        row = self._c.execute("SELECT body FROM task_states WHERE alloc_id = ? AND task = ?",
                              (alloc_id, task)).fetchone()
        return None if row is None else _load(row[0])

    def task_states(self, alloc_id: str) -> dict[str, dict[str, Any]]:
        rows = self._c.execute("SELECT task, body FROM task_states WHERE alloc_id = ? ORDER BY task",
                               (alloc_id,)).fetchall()
        return {str(t): _load(b) for t, b in rows}

    def append_event(self, alloc_id: str, task: str, event: Mapping[str, Any], *, keep: int = 10) -> int:
        """Append an event, keeping only the newest ``keep`` for that task."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        body = _dump(event, "task event")
        idx = self._bump()
        self._c.execute("INSERT INTO task_events(alloc_id, task, body) VALUES (?, ?, ?)", (alloc_id, task, body))
        self._c.execute(
            "DELETE FROM task_events WHERE alloc_id = ? AND task = ? AND id <= "
            "(SELECT id FROM task_events WHERE alloc_id = ? AND task = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (alloc_id, task, alloc_id, task, keep))
        return idx

    def events(self, alloc_id: str, task: str) -> list[dict[str, Any]]:
        rows = self._c.execute("SELECT body FROM task_events WHERE alloc_id = ? AND task = ? ORDER BY id",
                               (alloc_id, task)).fetchall()
        return [_load(r[0]) for r in rows]

    # -- driver handles -----------------------------------------------------------------------

    def put_driver_handle(self, alloc_id: str, task: str, blob: bytes) -> None:
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise TypeError(f"driver handle must be bytes, got {type(blob).__name__}")
        self._c.execute("INSERT INTO driver_handles(alloc_id, task, blob) VALUES (?, ?, ?) "
                        "ON CONFLICT(alloc_id, task) DO UPDATE SET blob = excluded.blob",
                        (alloc_id, task, bytes(blob)))

    def get_driver_handle(self, alloc_id: str, task: str) -> bytes | None:
        row = self._c.execute("SELECT blob FROM driver_handles WHERE alloc_id = ? AND task = ?",
                              (alloc_id, task)).fetchone()
        return None if row is None else bytes(row[0])

    def delete_driver_handle(self, alloc_id: str, task: str) -> None:
        self._c.execute("DELETE FROM driver_handles WHERE alloc_id = ? AND task = ?", (alloc_id, task))

    def driver_handles(self) -> dict[tuple[str, str], bytes]:
        """Every stored handle, keyed by (alloc_id, task): what the agent recovers on start."""
        rows = self._c.execute("SELECT alloc_id, task, blob FROM driver_handles ORDER BY alloc_id, task")
        return {(str(a), str(t)): bytes(b) for a, t, b in rows.fetchall()}


class StateStore(Tx):
    """The store. Every verb of :class:`Tx` is available directly (each call is its own
    transaction), or grouped atomically with ``with store.transaction() as tx: ...``.
    Thread-safe: one connection, one lock.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        self._lock = threading.RLock()
        self._lock_fd = -1
        self._closed = False
        self._prepare_dir()
        self._acquire_lock()
        try:
            # State holds job env values: owner-only. SQLite gives -wal/-shm the db file's mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            try:
                # SQLite's default page cache is 2 MB; the state is written far more than read,
                # and the OS page cache holds the file anyway.
                conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
                conn.execute("PRAGMA journal_mode=WAL").fetchone()
                conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
                super().__init__(conn)
                self._migrate()
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as e:
            self._release_lock()
            raise RawExecError(f'state store "{self.path}" cannot be opened: {e}; move it away to start '
                               "with empty state") from None
        except BaseException:
            self._release_lock()
            raise

    # -- lifecycle ----------------------------------------------------------------------------

    def _prepare_dir(self) -> None:
        try:
            # 0755 like Nomad: tasks running as another user (task.user) must reach their alloc dirs.
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
            probe = self.data_dir / f".write-test.{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise InvalidConfigError(
                f'data_dir "{self.data_dir}" is not usable: {e.strerror or e}; '
                "pass a writable directory with -data-dir") from None

    def _acquire_lock(self) -> None:
        lock_path = self.data_dir / LOCK_NAME
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise UnavailableError(
                f'data_dir "{self.data_dir}" is in use by another rawexec agent (pid {holder}); '
                "stop that agent or pass a different -data-dir", recoverable=False) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = -1

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._c.close()
            finally:
                self._release_lock()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self.transaction() as tx:
            has_meta = tx._c.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
            current = 0
            if has_meta:
                row = tx._c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise RawExecError(
                    f'state store "{self.path}" has schema version {current}, newer than this rawexec '
                    f"supports ({SCHEMA_VERSION}); use a newer rawexec or another -data-dir")
            for v in range(current + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[v].split(";"):
                    if stmt.strip():
                        tx._c.execute(stmt)
                tx._c.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
                              "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(v),))

    @property
    def schema_version(self) -> int:
        row = self._c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0])

    # -- transactions -------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """All writes inside commit together or not at all (``BEGIN IMMEDIATE`` ... ``COMMIT``)."""
        with self._lock:
            if self._closed:
                raise UnavailableError(f'state store "{self.path}" is closed', recoverable=False)
            if self._c.in_transaction:  # nested: join the outer transaction
                yield self._current
                return
            tx = Tx(self._c)
            self._current: Tx = tx
            self._c.execute("BEGIN IMMEDIATE")
            try:
                yield tx
            except BaseException:
                self._c.execute("ROLLBACK")
                raise
            else:
                self._c.execute("COMMIT")


def _single(name: str) -> Any:
    """Wrap a Tx verb so that calling it on the store runs it in its own transaction."""
    fn = getattr(Tx, name)

    def call(self: StateStore, *args: Any, **kw: Any) -> Any:
        with self.transaction() as tx:
            return fn(tx, *args, **kw)

    call.__name__ = name
    call.__doc__ = fn.__doc__
    return call


for _name in ("index", "put_meta", "get_meta", "put_job", "get_job", "job_indexes", "list_jobs",
              "list_jobs_json", "delete_job", "put_alloc", "put_alloc_json", "get_alloc", "list_allocs",
              "list_allocs_json", "alloc_ids_by_prefix", "delete_alloc", "put_task_state",
              "put_task_state_json", "get_task_state", "task_states", "append_event", "events", "put_driver_handle",
              "get_driver_handle", "delete_driver_handle", "driver_handles"):
    setattr(StateStore, _name, _single(_name))
