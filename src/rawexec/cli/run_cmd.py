"""``rawexec run JOBFILE``: run a Nomad job in the foreground on an embedded dev-mode agent.

Shows every task's output prefixed ``<alloc>/<task> |`` and, on a TTY, a live table of
allocations and tasks (state, restarts, last event, artifact download progress). Ctrl-C (or
SIGTERM, or SIGHUP: the terminal closed) stops every task gracefully (kill_signal, kill_timeout);
a second one kills at once. A batch job
exits 0 when every task succeeded, 1 otherwise, 130 when interrupted, after a summary.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO, cast

import click

from rawexec import _dccache
from rawexec.agent.memory import limit_malloc_arenas, trim_malloc
from rawexec.cli.logwatch import LogDirWatch, Waker
from rawexec.errors import RawExecError, ValidationError

if TYPE_CHECKING:
    from rawexec.agent.agent import Agent
    from rawexec.agent.allocrunner import AllocRunner
    from rawexec.logs import LogPosition
    from rawexec.logs.reader import LogFile

__all__ = ["run"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _vars(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        name, sep, value = p.partition("=")
        if not sep or not name.strip():
            raise click.UsageError(f'-var "{p}": expected name=value, e.g. -var greeting=hi')
        out[name.strip()] = value
    return out


# ---------------------------------------------------------------------- log following
@dataclass
class _Stream:
    alloc: AllocRunner
    task: str
    stream: str
    pos: LogPosition | None = None
    partial: bytes = b""
    prefix: str = ""
    next_scan: float = 0.0
    watched: bool = False  # its log dir is under inotify: look at it only when told it was written


_ROTATE_CHECK = 1.0
_IDLE_WAIT = 30.0
"""With every log dir watched, the loop sleeps this long at most (a safety net: it is woken by log
writes, state commits and signals)."""


def _downloading(allocs: list[AllocRunner]) -> bool:
    """An artifact download in progress (its progress bar is redrawn on a timer)."""
    return any(r.progress is not None and not r.progress.done for a in allocs for r in a.runners.values())


@dataclass
class _LogPump:
    """Follows every task's stdout/stderr log files (rawexec.logs.reader) and prints whole lines."""

    out: TextIO
    lock: threading.Lock
    streams: dict[tuple[str, str, str], _Stream] = field(default_factory=dict)
    watch: LogDirWatch | None = None

    def add_alloc(self, ar: AllocRunner, label: str) -> None:
        for task in ar.runners:
            for s in ("stdout", "stderr"):
                key = (ar.alloc_id, task, s)
                if key not in self.streams:
                    self.streams[key] = _Stream(ar, task, s, prefix=f"{label}/{task} | ")

    def all_watched(self) -> bool:
        return self.watch is not None and all(st.watched for st in self.streams.values())

    def poll(self, final: bool = False, changed: set[tuple[str, str]] | None = None) -> int:
        """Print new whole lines of every stream. Cheap when idle: one stat per stream, plus a
        look for a rotated-to file every ``_ROTATE_CHECK`` s (or at ``final``). With a :attr:`watch`,
        a stream whose log dir is watched is looked at only when ``changed`` (the (dir, file) pairs
        written since the last call; None: unknown, look at all) names one of its files."""
        from rawexec.logs import LogPosition, reader

        n = 0
        now = time.monotonic()
        written = None if changed is None else {(d, name.rsplit(".", 1)[0]) for d, name in changed}
        for st in self.streams.values():
            if st.pos is None and not final and not st.alloc.runners[st.task].started_once:
                continue  # no process yet, so no output: not worth a look (200 tasks starting)
            log_dir = os.path.join(st.alloc.alloc_dir, "alloc", "logs")
            force = final
            if self.watch is not None and not final:
                if st.watched:
                    if written is not None and (log_dir, f"{st.task}.{st.stream}") not in written:
                        continue
                    force = True
                elif now >= st.next_scan:
                    # watch first, then look: a write after the look is an event for the next call
                    st.watched = self.watch.watch(log_dir)
                    force = st.watched
            if st.pos is None:
                if not force and now < st.next_scan:
                    continue
                st.next_scan = now + _ROTATE_CHECK
                files = reader.list_log_files(log_dir, st.task, st.stream)  # type: ignore[arg-type]
                if not files:
                    continue
                st.pos = LogPosition(0, 0)
                if files[0].index > 0:
                    # the first look comes after rotation deleted .0 ... .N-1 (a fast writer, small
                    # max_files x max_file_size): name them, as when it happens later
                    n += self._skip_rotated(st, files)
            base = os.path.join(log_dir, f"{st.task}.{st.stream}.")
            try:
                grown = os.stat(base + str(st.pos.index)).st_size > st.pos.offset
            except FileNotFoundError:
                # Rotated away (the stream's max_files) before we read it all: say so, and go on
                # with the oldest file left, rather than skip to it silently.
                n += self._skip_rotated(st, reader.list_log_files(log_dir, st.task, st.stream))  # type: ignore[arg-type]
                grown = True
            except OSError:
                grown = False
            if not grown:
                if not force and now < st.next_scan:
                    continue
                st.next_scan = now + _ROTATE_CHECK
                if not os.path.exists(base + str(st.pos.index + 1)) and not final:
                    continue
            chunks = []
            for idx, off, data in reader._read_from(log_dir, st.task, st.stream,  # type: ignore[arg-type]
                                                     st.pos, follow=False, stop=None, poll_interval=0.0,
                                                     chunk_size=65536):
                chunks.append(data)
                st.pos = LogPosition(idx, off)
            if not chunks and not (final and st.partial):
                continue
            buf = st.partial + b"".join(chunks)
            lines = buf.split(b"\n")
            st.partial = lines.pop()
            if final and st.partial:
                lines.append(st.partial)
                st.partial = b""
            if lines:
                text = "".join(st.prefix + ln.decode("utf-8", "replace") + "\n" for ln in lines)
                with self.lock:
                    self.out.write(text)
                    self.out.flush()
                n += len(lines)
        return n


    def _skip_rotated(self, st: _Stream, files: list[LogFile]) -> int:
        """The file ``st`` was reading is gone: print what is left of its line, a line saying which
        files were lost, and carry on at the oldest file left. Returns the lines printed."""
        from rawexec.logs import LogPosition

        assert st.pos is not None
        later = [f.index for f in files if f.index > st.pos.index]
        if not later:
            return 0  # nothing newer yet: the writer is rotating right now; look again later
        first, last = st.pos.index, later[0] - 1
        lost = f"{st.task}.{st.stream}.{first}" + (f" to .{last}" if last > first else "")
        lines = [st.partial.decode("utf-8", "replace")] if st.partial else []
        lines.append(f"[rawexec run: {lost} rotated away (the task's logs max_files) before it could be shown; "
                     "those lines are lost]")
        st.partial = b""
        st.pos = LogPosition(later[0], 0)
        with self.lock:
            self.out.write("".join(st.prefix + ln + "\n" for ln in lines))
            self.out.flush()
        return len(lines)


# ---------------------------------------------------------------------- rendering
def _last_event(ts: dict[str, Any]) -> str:
    evs = ts.get("Events") or []
    if not evs:
        return ""
    e = evs[-1]
    return f"{e['Type']}: {e['DisplayMessage']}" if e.get("DisplayMessage") else str(e["Type"])


def _label(ar: AllocRunner) -> str:
    return ar.short


def _table(allocs: list[AllocRunner]) -> Any:
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    t = Table(box=None, pad_edge=False, expand=False)
    for col in ("Alloc", "Group", "Task", "State", "Restarts", "Last Event"):
        t.add_column(col, no_wrap=col != "Last Event")
    bars = []
    shown = allocs[:40]
    for ar in shown:
        for name, r in ar.runners.items():
            st = r.state
            state = st.state + (" (failed)" if st.failed else "")
            color = {"running": "green", "dead": "red" if st.failed else "blue"}.get(st.state, "yellow")
            last = st.events[-1] if st.events else None
            t.add_row(ar.short, f"{ar.group.name}[{ar.index}]", name, Text(state, style=color), str(st.restarts),
                      Text(f"{last.type}: {last.display_message}" if last else ""))
            p = r.progress
            if p is not None and not p.done:
                total = p.total or 0
                bar = ProgressBar(total=float(total) if total else None, completed=float(p.bytes), width=30)
                t2 = Table.grid(padding=(0, 1))
                t2.add_row(Text(f"{ar.short}/{name} {p.phase or 'download'}"), bar,
                           Text(f"{_size(p.bytes)} / {_size(total)}" if total else _size(p.bytes)))
                bars.append(t2)
    if len(allocs) > len(shown):
        t.add_row("…", f"{len(allocs) - len(shown)} more", "", "", "", "")
    return Group(t, *bars)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class _EventPrinter:
    """Plain-text progress for non-TTY output: one line per new task event."""

    def __init__(self, out: TextIO, lock: threading.Lock) -> None:
        self.out = out
        self.lock = lock
        self.seen: dict[tuple[str, str], int] = {}

    def poll(self, allocs: list[AllocRunner]) -> None:
        lines = []
        for ar in allocs:
            for name, r in ar.runners.items():
                evs = list(r.state.events)
                key = (ar.alloc_id, name)
                last = self.seen.get(key, 0)
                new = [e for e in evs if e.time > last]
                for e in new:
                    lines.append(f"==> {ar.short}/{name}: {e.type}: {e.display_message}".rstrip(": ") + "\n")
                if new:
                    self.seen[key] = new[-1].time
        if lines:
            with self.lock:
                self.out.write("".join(lines))
                self.out.flush()


def _summary(allocs: list[AllocRunner]) -> tuple[str, bool]:
    rows = []
    ok = True
    followed = {ar.alloc_id for ar in allocs}
    for ar in allocs:  # (a rescheduled allocation's outcome is its replacement's)
        ok = ok and (ar.client_status == "complete" or ar.next_allocation in followed)
        for name, r in ar.runners.items():
            st = r.state
            code = ""
            for e in reversed(st.events):
                if e.type == "Terminated":
                    code = str(e.exit_code)
                    break
            rows.append((f"{ar.short}/{name}", st.state + (" (failed)" if st.failed else ""), code or "-",
                         str(st.restarts), (f"{st.events[-1].type}: {st.events[-1].display_message}"
                                            if st.events else "")))
    w0 = max([len("Alloc/Task"), *(len(row[0]) for row in rows)])
    w1 = max([len("State"), *(len(row[1]) for row in rows)])
    lines = [f"{'Alloc/Task':<{w0}}  {'State':<{w1}}  Exit  Restarts  Last Event"]
    for row in rows[:30]:
        lines.append(f"{row[0]:<{w0}}  {row[1]:<{w1}}  {row[2]:>4}  {row[3]:>8}  {row[4]}")
    if len(rows) > 30:
        lines.append(f"... and {len(rows) - 30} more tasks")
    return "\n".join(lines), ok


# ---------------------------------------------------------------------- the command
@click.command("run", context_settings={"help_option_names": ["-h", "--help", "-help"]})
@click.argument("jobfile", type=click.Path(dir_okay=False))
@click.option("-var", "--var", "var", multiple=True, metavar="KEY=VALUE", help="Set an HCL2 variable (repeatable).")
@click.option("-var-file", "--var-file", "var_file", multiple=True, metavar="FILE",
              help="Read HCL2 variables from a file (repeatable).")
@click.option("-data-dir", "--data-dir", "data_dir", default=None, metavar="DIR",
              help="Agent data dir (default: a temp dir removed at exit).")
@click.option("-detach", "--detach", "detach", is_flag=True,
              help="Start the job and return; tasks keep running (the data dir is kept).")
def run(jobfile: str, var: tuple[str, ...], var_file: tuple[str, ...], data_dir: str | None, detach: bool) -> None:
    """Run a Nomad job file in the foreground on an embedded single-node agent.

    A JOBFILE of - reads the job from standard input."""
    sys.exit(_run(jobfile, var, var_file, data_dir, detach))


def _run(jobfile: str, var: tuple[str, ...], var_file: tuple[str, ...], data_dir: str | None,
         detach: bool) -> int:
    limit_malloc_arenas()
    # the driver's spawner boots (its own interpreter and imports) while the agent's modules
    # import here; the agent's driver takes it over
    from rawexec.executor.spawnboot import prestart

    prestart()
    _mark("command entered")
    variables = _vars(var)
    if data_dir is not None:
        if not data_dir:
            raise click.UsageError("-data-dir must not be empty")
        data_dir = os.path.abspath(data_dir)  # as the agent's: tasks need absolute alloc dirs
    tmp = None
    agent: Agent | None = None
    try:
        if data_dir is None:
            # a private temp data dir: start the agent (and the driver's spawner process) first, so
            # the spawner boots while the job file is parsed
            tmp = data_dir = tempfile.mkdtemp(prefix="rawexec-run-")
            # (mkdtemp makes it 0700: a task run as another user, user = "nobody", could not reach
            # its task dir below it; the alloc dirs themselves are 0755/0777, as Nomad's)
            os.chmod(data_dir, 0o711)
            # no later agent will know this data dir: should this process die without stopping
            # the tasks (kill -9, a crash), their shims stop them -- unless asked to leave them
            agent = _start_agent(data_dir, stop_tasks_with_driver=not detach)
        else:
            # the user's data dir may hold tasks of an earlier run: nothing is recovered before the
            # job file parsed, but the driver's spawner can boot meanwhile
            agent = _start_agent(data_dir, prepare_only=True)
        if agent is None:
            return EXIT_FAILED
        _mark("agent started" if tmp else "driver prepared")
        job = _parse(jobfile, variables, var_file)
        _mark("job parsed")
        if job is None:
            agent.shutdown(stop_tasks=False)  # nothing of ours runs; another job's tasks (-data-dir) live on
            return EXIT_FAILED
        if tmp is None:
            try:
                agent.start()
            except RawExecError as exc:
                agent.shutdown(stop_tasks=False)
                sys.stderr.write(f"Error starting the agent: {exc}\n")
                return EXIT_FAILED
            _mark("agent started")
        return _drive(agent, job, detach)
    finally:
        if not detach and tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _parse(jobfile: str, variables: dict[str, str], var_file: tuple[str, ...]) -> Any:
    from rawexec.jobspec import load_file

    err = sys.stderr
    try:
        parsed = load_file(jobfile, variables=variables or None, var_files=list(var_file) or None)
    except ValidationError as exc:
        err.write(f'Error parsing job file "{jobfile}":\n')
        for e in exc.errors:
            err.write(f"  * {e}\n")
        return None
    except OSError as exc:
        err.write(f'Error reading job file "{jobfile}": {exc.strerror or exc}\n')
        return None
    except RawExecError as exc:
        err.write(f'Error in job file "{jobfile}": {exc}\n')
        return None
    for w in parsed.warnings:
        err.write(f"Warning: {w}\n")
    return parsed.job


def _start_agent(data_dir: str, *, prepare_only: bool = False, stop_tasks_with_driver: bool = False) -> Agent | None:
    """The embedded dev agent, started (``prepare_only``: only its driver, see :meth:`Agent.prepare`)."""
    from rawexec.agent.agent import Agent
    from rawexec.agent.agentconfig import AgentConfig

    agent: Agent | None = None
    try:
        agent = Agent(AgentConfig(data_dir=data_dir, name=os.uname().nodename), dev=True,
                      stop_tasks_with_driver=stop_tasks_with_driver)
        if prepare_only:
            agent.prepare()
        else:
            agent.start()
    except RawExecError as exc:
        if agent is not None:
            agent.shutdown(stop_tasks=True)
        sys.stderr.write(f"Error starting the agent: {exc}\n")
        return None
    return agent


def _drive(agent: Agent, job: Any, detach: bool) -> int:
    out = cast(TextIO, _TerminalOut(sys.stdout))
    tty = out.isatty() and os.environ.get("TERM") != "dumb"
    lock = threading.Lock()
    interrupts: list[float] = []
    waker = Waker()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        interrupts.append(time.monotonic())
        waker.wake()

    # SIGHUP (the terminal closed) too: a run must not end without stopping its tasks gracefully,
    # running the poststop tasks and removing its temp data dir
    old_int = signal.signal(signal.SIGINT, on_sigint)
    old_term = signal.signal(signal.SIGTERM, on_sigint)
    old_hup = signal.signal(signal.SIGHUP, on_sigint)
    old_wakeup = waker.wake_on_signals()  # also when the kernel hands the signal to another thread
    stopping = False
    forced = False
    # Everything so far (modules, the agent, the parsed job) lives on: out of the collector's way
    # for the start burst, whose full collections would walk it again and again (until
    # _release_memory, which collects everything once the tasks run).
    gc.freeze()
    try:
        try:
            res = agent.register_job(job)
            _mark("job registered")
        except RawExecError as exc:
            sys.stderr.write(f"Error registering job: {exc}\n")
            agent.shutdown(stop_tasks=False)  # a failed register changed nothing: nothing to stop
            return EXIT_FAILED
        for w in filter(None, str(res.get("Warnings", "")).split("\n")):
            sys.stderr.write(f"Warning: {w}\n")
        # only this job's tasks are stopped at the end (Ctrl-C): with -data-dir, other jobs' tasks
        # recovered from an earlier run (-detach) keep running for the next agent
        mine = (job.namespace, job.id)
        allocs = [a for a in agent._allocs.values() if a.job.id == job.id and a.eval_id == res["EvalID"]]
        if not res.get("EvalCreateIndex"):  # unchanged job already running in this data dir: follow its allocations
            allocs = [a for a in agent._allocs.values() if (a.job.namespace, a.job.id) == mine and not a.terminal]
            if not allocs:
                # an unchanged batch job whose last run here has finished is not run again (Nomad's
                # rule): show that run's result, and exit as it did
                prior = [a for a in agent._allocs.values() if (a.job.namespace, a.job.id) == mine]
                if prior:
                    # that run: the allocations its registration placed, and their reschedules
                    placed = [a for a in prior if a.previous_allocation not in agent._allocs] or prior
                    last = max(placed, key=lambda a: (a.create_index, a.alloc_id)).eval_id
                    allocs = [a for a in placed if a.eval_id == last]
                    for a in allocs:  # (the list grows as it is walked: each replacement's own replacement)
                        nxt = agent._allocs.get(a.next_allocation)
                        if nxt is not None and nxt not in allocs:
                            allocs.append(nxt)
                    sys.stderr.write(
                        f"==> Job {job.id!r} is unchanged and its last run in {agent.data_dir} has finished: "
                        "showing that run's result. To run it again, change the job, or purge it with an "
                        f"agent on that data dir (rawexec job stop -purge {job.id}).\n")
        allocs.sort(key=lambda a: (a.group.name, a.index))
        if detach:
            # wait for every task to be started (or to have failed), then leave them running: the
            # next agent on this data dir (rawexec agent / run -data-dir) re-attaches to them
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not all(
                    a.terminal or all(r.started_once or r.dead for r in a.runners.values() if r.lifecycle == "")
                    for a in allocs):
                time.sleep(0.02)
            agent.persister.flush()
            out.write(f"==> Job {job.id!r} started: {len(allocs)} allocation(s); data dir {agent.data_dir}\n")
            for a in allocs:
                out.write(f"    {a.alloc_id} {a.name}\n")
            agent.shutdown(stop_tasks=False)
            return EXIT_OK
        if not tty:
            out.write(f"==> Running job {job.id!r} ({job.type}): {len(allocs)} allocation(s) on node "
                      f"{agent.node_obj.id[:8]}; Ctrl-C stops it\n")
            out.flush()
        pump = _LogPump(out, lock)
        try:
            pump.watch = LogDirWatch()
        except OSError:  # no inotify: poll the log files
            pump.watch = None
        for a in allocs:
            pump.add_alloc(a, _label(a))
        agent.add_commit_listener(waker.wake)
        announced: set[str] = set()  # allocations whose pending reschedule was said
        printer = _EventPrinter(out, lock)
        live: Any = None
        if tty:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=out)
            live = Live(_table(allocs), console=console, auto_refresh=False, transient=False,
                        redirect_stdout=False)
            live.start()
            pump.out = _LiveWriter(live)  # type: ignore[assignment]
        handled = 0
        all_running_said = False
        last_sig: tuple[Any, ...] = ()
        seen_changes = -1
        quiet_since = time.monotonic()
        try:
            interval = 0.05
            next_full = 0.0
            while True:
                now = time.monotonic()
                if not all_running_said and _all_main_started(allocs):
                    all_running_said = True
                    n = sum(1 for a in allocs for r in a.runners.values() if r.lifecycle == "")
                    _say(out, lock, live, f"==> All {n} main task(s) started "
                                          f"({_process_age():.2f}s after rawexec started)\n")
                    _mark("all main tasks started")
                    _release_memory()
                    _mark("memory released")
                starting = not all_running_said and len(allocs) >= 20
                if now < next_full and len(interrupts) == handled:
                    # every commit wakes us (to see at once whether all tasks run now), but output and
                    # events are looked at only every 50 ms, every 0.3 s while many tasks are starting:
                    # a burst of commits (200 starts or stops) must not become a burst of redraws
                    waker.wait(next_full - now)
                    continue
                next_full = now + (0.3 if starting else 0.05)
                if len(interrupts) > handled:
                    handled = len(interrupts)
                    if not stopping:
                        stopping = True
                        msg = "==> Stopping every task (Ctrl-C again to force)\n"
                        _say(out, lock, live, msg)
                        threading.Thread(target=agent.stop_all, kwargs={"job": mine}, daemon=True).start()
                    elif not forced:
                        forced = True
                        _say(out, lock, live, "==> Forcing: killing every task now\n")
                        threading.Thread(target=agent.stop_all, kwargs={"force": True, "job": mine},
                                         daemon=True).start()
                changes = agent.changes
                if live is None and changes != seen_changes:
                    seen_changes = changes
                    printer.poll(allocs)
                written = pump.watch.changes() if pump.watch is not None else None
                if pump.poll(changed=written):
                    interval = 0.05
                    quiet_since = time.monotonic()
                if live is not None:
                    sig = _signature(allocs)
                    if sig != last_sig:  # redraw only on change: an idle run costs no CPU
                        last_sig = sig
                        live.update(_table(allocs), refresh=True)
                # a failed allocation's replacement (rescheduling) is followed as soon as it is placed;
                # while one is due the job is not over, unless it is being stopped
                followed = {a.alloc_id for a in allocs}
                for prev in list(allocs):
                    if prev.reschedule_at and not prev.next_allocation and prev.alloc_id not in announced:
                        announced.add(prev.alloc_id)
                        wait_s = max(0.0, (prev.reschedule_at - time.time_ns()) / 1e9)
                        _say(out, lock, live, f"==> {prev.short}: failed; rescheduling in {wait_s:.1f}s "
                                              "(the group's reschedule policy)\n")
                    nxt = agent._allocs.get(prev.next_allocation) if prev.next_allocation not in followed else None
                    if nxt is not None:
                        allocs.append(nxt)
                        followed.add(nxt.alloc_id)
                        pump.add_alloc(nxt, _label(nxt))
                        _say(out, lock, live, f"==> {prev.short}: rescheduled as {nxt.short} "
                                              f"(reschedule {len(nxt.reschedule_events)})\n")
                        allocs.sort(key=lambda a: (a.group.name, a.index, a.create_time))
                if all(a.terminal for a in allocs) and (
                        stopping or not any(a.reschedule_at and not a.next_allocation for a in allocs)):
                    break
                timeout: float | None = interval
                if starting:
                    timeout = max(interval, 0.3)
                elif pump.all_watched() and not _downloading(allocs):
                    timeout = _IDLE_WAIT  # woken by log writes, commits and signals: nothing to poll
                waker.wait(timeout, *([pump.watch.fd] if pump.watch is not None else []))
                idle_cap = 1.0 if time.monotonic() - quiet_since > 5 else 0.25
                interval = min(idle_cap, interval * 1.5)
            pump.poll(final=True)
            if live is not None:
                live.update(_table(allocs), refresh=True)
        finally:
            if live is not None:
                live.stop()
            if pump.watch is not None:
                pump.watch.close()
        if not tty:
            printer.poll(allocs)
        text, ok = _summary(allocs)
        out.write("\n==> Summary\n" + text + "\n")
        out.flush()
        agent.shutdown(stop_tasks=True, timeout=0.0 if forced else None, job=mine)
        if stopping:
            return EXIT_INTERRUPTED
        return EXIT_OK if ok else EXIT_FAILED
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)
        signal.set_wakeup_fd(old_wakeup)
        waker.close()


def _signature(allocs: list[AllocRunner]) -> tuple[Any, ...]:
    return tuple((r.state.state, len(r.state.events), r.state.events[-1].time if r.state.events else 0,
                  r.progress.bytes if r.progress is not None and not r.progress.done else -1)
                 for a in allocs[:40] for r in a.runners.values())


def _release_memory() -> None:
    """Give back what parsing and starting left behind (the run then idles for a long time)."""
    # the job file's HCL parsers (the fast one's tables ~1.7 MB; Lark's ~7 MB, built only for a
    # file with errors) are not needed again in this process
    structure = sys.modules.get("rawexec.jobspec.hcl.structure")
    for name in ("_fast_parser", "_parser"):
        cached = getattr(structure, name, None)
        if cached is not None and hasattr(cached, "cache_clear"):
            cached.cache_clear()
    _dccache.release()  # every dataclass is made: write the compiled methods for the next start
    gc.unfreeze()
    gc.collect()
    trim_malloc()


def _mark(what: str) -> None:
    """``RAWEXEC_RUN_TIMING=1``: print where the time goes (seconds since the process started)."""
    if os.environ.get("RAWEXEC_RUN_TIMING"):
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF)
        sys.stderr.write(f"[timing] {_process_age():7.3f}s cpu {ru.ru_utime + ru.ru_stime:6.3f}s "
                         f"minflt {ru.ru_minflt:6d} rss {rss:5.1f} MB  {what}\n")


def _process_age() -> float:
    """Seconds since this process started (same clock as the kernel's start time: no rounding)."""
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    with open("/proc/self/stat") as f:
        stat = f.read()
    start_ticks = int(stat[stat.rfind(")") + 2:].split()[19])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def _all_main_started(allocs: list[AllocRunner]) -> bool:
    return all(r.started_once for a in allocs for r in a.runners.values() if r.lifecycle == "")


class _TerminalOut:
    """Standard output that may go away: once a write fails (the terminal closed -- SIGHUP, then
    EIO on every write -- or the reader of a pipe left), output is dropped, so the graceful stop
    goes on; the descriptor is pointed at /dev/null so that the exit's flush fails no more."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.lost = False

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                self._out.write(text)
            except OSError:
                self._lose()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._out.flush()
            except OSError:
                self._lose()

    def isatty(self) -> bool:
        return self._out.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)

    def _lose(self) -> None:
        self.lost = True
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, self._out.fileno())
            finally:
                os.close(null)
        except (OSError, ValueError):
            pass


class _LiveWriter:
    """Task output above the live table."""

    def __init__(self, live: Any) -> None:
        self.live = live

    def write(self, text: str) -> int:
        self.live.console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        pass


def _say(out: TextIO, lock: threading.Lock, live: Any, msg: str) -> None:
    if live is not None:
        live.console.print(msg.rstrip("\n"), markup=False)
        return
    with lock:
        out.write(msg)
        out.flush()
