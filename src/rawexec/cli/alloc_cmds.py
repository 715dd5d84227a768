"""``rawexec alloc status|logs|signal|exec|restart|stop|fs``, as ``nomad alloc ...``."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

import click

from rawexec.api.client import path_escape
from rawexec.cli.client import ClientCtx, api_command, format_time_ns, kv_table, print_json, resolve_alloc, table
from rawexec.errors import RawExecError

__all__ = ["alloc"]


@click.group("alloc")
def alloc() -> None:
    """Inspect and control allocations on the agent."""


def _pick_task(a: dict[str, Any], task: str | None) -> str:
    names = sorted(str(k) for k in (a.get("TaskStates") or {}))
    if task:
        if names and task not in names:
            raise RawExecError(f'Could not find task named: {task}; the allocation has: {", ".join(names)}')
        return task
    if len(names) == 1:
        return names[0]
    if not names:
        raise RawExecError("the allocation has no tasks yet; pass the task name")
    raise RawExecError(f"Allocation has multiple tasks. Specify the task name: {', '.join(names)}")


# -- status -------------------------------------------------------------------------------------
def _task_time(value: Any) -> str:
    """A task state's RFC 3339 time to the second, as nomad prints it; ``N/A`` for Go's zero time."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return "N/A"
    head, dot, _ = value.partition(".")
    return head + "Z" if dot else value


def _reschedule_rows(a: dict[str, Any], verbose: bool, wait_until: str | None) -> list[tuple[str, Any]]:
    """Nomad's alloc status lines about rescheduling: attempts used of a limited policy, the
    replacement, and when a pending one is due (``wait_until``: its evaluation's WaitUntil)."""
    rows: list[tuple[str, Any]] = []
    events = (a.get("RescheduleTracker") or {}).get("Events") or []
    group = next((g for g in (a.get("Job") or {}).get("TaskGroups") or [] if g.get("Name") == a.get("TaskGroup")),
                 None)
    policy = (group or {}).get("ReschedulePolicy") or {}
    if events and not policy.get("Unlimited") and int(policy.get("Attempts") or 0) > 0:
        now = time.time_ns()
        window = int(policy.get("Interval") or 0)
        used = sum(1 for e in events if now - int(e.get("RescheduleTime") or 0) < window)
        rows.append(("Reschedule Attempts", f"{used}/{policy['Attempts']}"))
    if a.get("NextAllocation"):
        rows.append(("Replacement Alloc ID", str(a["NextAllocation"])[: None if verbose else 8]))
    if wait_until:
        try:
            due = datetime.fromisoformat(wait_until.replace("Z", "+00:00")).timestamp()
        except ValueError:
            due = 0.0
        if due > time.time():
            rows.append(("Reschedule Eligibility", f"{round(due - time.time())}s from now"))
    return rows


def _status_text(a: dict[str, Any], verbose: bool, wait_until: str | None = None) -> str:
    aid = str(a.get("ID", ""))
    short = aid if verbose else aid[:8]
    out = [kv_table([
        ("ID", short), ("Eval ID", str(a.get("EvalID", ""))[: None if verbose else 8]), ("Name", a.get("Name", "")),
        ("Node ID", str(a.get("NodeID", ""))[: None if verbose else 8]), ("Node Name", a.get("NodeName", "")),
        ("Job ID", a.get("JobID", "")), ("Job Version", a.get("JobVersion", 0)),
        ("Client Status", a.get("ClientStatus", "")), ("Client Description", a.get("ClientDescription") or "<none>"),
        ("Desired Status", a.get("DesiredStatus", "")),
        ("Desired Description", a.get("DesiredDescription") or "<none>"),
        ("Created", format_time_ns(a.get("CreateTime"))), ("Modified", format_time_ns(a.get("ModifyTime"))),
        *_reschedule_rows(a, verbose, wait_until),
    ])]
    for name, ts in sorted((a.get("TaskStates") or {}).items()):
        out.append(f'\nTask "{name}" is "{ts.get("State", "")}"')
        out.append(kv_table([("Restarts", ts.get("Restarts", 0)), ("Failed", str(bool(ts.get("Failed"))).lower()),
                             ("Started At", _task_time(ts.get("StartedAt"))),
                             ("Finished At", _task_time(ts.get("FinishedAt")))]))
        events = list(reversed(ts.get("Events") or []))
        if not verbose:
            events = events[:10]
        out.append("\nRecent Events:")
        rows = [(format_time_ns(e.get("Time")), e.get("Type", ""), e.get("DisplayMessage", "")) for e in events]
        out.append(table(["Time", "Type", "Description"], rows))
    return "\n".join(out)


@alloc.command("status")
@click.argument("alloc_id")
@click.option("-verbose", "--verbose", "verbose", is_flag=True, help="Full IDs and all events.")
@click.option("-stats", "--stats", "stats", is_flag=True, help="Also show resource usage.")
@api_command("querying allocation")
def status_cmd(ctx: ClientCtx, alloc_id: str, verbose: bool, stats: bool) -> None:
    """Show an allocation's status, its tasks and their recent events."""
    a = resolve_alloc(ctx, alloc_id)
    usage = ctx.api.get(f"/v1/client/allocation/{path_escape(a['ID'])}/stats") if stats else None
    if ctx.as_json:
        print_json(a if usage is None else {**a, "Stats": usage})
        return
    wait_until = None
    if a.get("FollowupEvalID") and not a.get("NextAllocation"):  # a reschedule is pending: when?
        try:
            wait_until = ctx.api.get(f"/v1/evaluation/{path_escape(str(a['FollowupEvalID']))}").get("WaitUntil")
        except RawExecError:
            wait_until = None
    click.echo(_status_text(a, verbose, wait_until if isinstance(wait_until, str) else None))
    if usage:
        click.echo("\nResource Usage")
        rows = []
        for name, tu in sorted((usage.get("Tasks") or {}).items()):
            ru = tu.get("ResourceUsage") or {}
            mem = (ru.get("MemoryStats") or {}).get("RSS", 0)
            cpu = (ru.get("CpuStats") or {}).get("Percent", 0.0)
            rows.append((name, f"{cpu:.1f}%", f"{mem / 1024 / 1024:.1f} MiB"))
        click.echo(table(["Task", "CPU", "Memory (RSS)"], rows))


# -- logs ---------------------------------------------------------------------------------------
def _tail_offset(ctx: ClientCtx, alloc_id: str, task: str, typ: str, lines: int) -> tuple[bytes, int]:
    """The last ``lines`` lines and how many bytes from the end they start."""
    want = max(lines, 1) * 128
    while True:
        with ctx.api.stream(f"/v1/client/fs/logs/{path_escape(alloc_id)}", task=task, type=typ, plain=True,
                            origin="end", offset=want) as r:
            data = r.read()
        body = data[:-1] if data.endswith(b"\n") else data
        parts = body.split(b"\n")
        if len(parts) > lines or len(data) < want:
            keep = b"\n".join(parts[-lines:]) + (b"\n" if data.endswith(b"\n") else b"") if lines > 0 else b""
            return keep, len(keep)
        want *= 4


@alloc.command("logs")
@click.argument("alloc_id")
@click.argument("task_arg", required=False, metavar="[TASK]")
@click.option("-task", "--task", "task_opt", default=None, help="The task (needed when the alloc has several).")
@click.option("-stderr", "--stderr", "stderr", is_flag=True, help="Show stderr instead of stdout.")
@click.option("-f", "--follow", "-follow", "follow", is_flag=True, help="Keep streaming new output.")
@click.option("-tail", "--tail", "tail", is_flag=True, help="Show the end of the log (default 10 lines).")
@click.option("-n", "lines", type=int, default=None, help="With -tail: number of lines.")
@click.option("-c", "count_bytes", type=int, default=None, help="With -tail: number of bytes.")
@api_command("reading logs", json_flag=False)
def logs_cmd(ctx: ClientCtx, alloc_id: str, task_arg: str | None, task_opt: str | None, stderr: bool,
             follow: bool, tail: bool, lines: int | None, count_bytes: int | None) -> None:
    """Print (or follow) a task's stdout or stderr."""
    if lines is not None and lines < 0:
        raise RawExecError("-n must be >= 0")
    if count_bytes is not None and count_bytes < 0:
        raise RawExecError("-c must be >= 0")
    a = resolve_alloc(ctx, alloc_id)
    task = _pick_task(a, task_opt or task_arg)
    typ = "stderr" if stderr else "stdout"
    out = sys.stdout.buffer
    origin, offset = "start", 0
    if tail or lines is not None or count_bytes is not None:
        origin = "end"
        if count_bytes is not None:
            offset = count_bytes
        else:
            head, offset = _tail_offset(ctx, a["ID"], task, typ, 10 if lines is None else lines)
            if not follow:
                out.write(head)
                out.flush()
                return
    with ctx.api.stream(f"/v1/client/fs/logs/{path_escape(a['ID'])}", task=task, type=typ, plain=True, follow=follow,
                        origin=origin, offset=offset) as r:
        for chunk in r.iter_raw():
            out.write(chunk)
            out.flush()


# -- signal, restart, stop ----------------------------------------------------------------------
@alloc.command("signal")
@click.argument("alloc_id")
@click.argument("task_arg", required=False, metavar="[TASK]")
@click.option("-s", "signal", default="SIGKILL", show_default=True, help="The signal to send.")
@click.option("-task", "--task", "task_opt", default=None, help="Only this task.")
@api_command("signalling allocation", json_flag=False)
def signal_cmd(ctx: ClientCtx, alloc_id: str, task_arg: str | None, signal: str, task_opt: str | None) -> None:
    """Send a signal to an allocation's tasks (all, or one)."""
    a = resolve_alloc(ctx, alloc_id)
    task = task_opt or task_arg
    if task:
        task = _pick_task(a, task)
    ctx.api.put(f"/v1/client/allocation/{path_escape(a['ID'])}/signal", {"Signal": signal.upper(), "Task": task or ""})


@alloc.command("restart")
@click.argument("alloc_id")
@click.argument("task_arg", required=False, metavar="[TASK]")
@click.option("-task", "--task", "task_opt", default=None, help="Only this task.")
@click.option("-all-tasks", "--all-tasks", "all_tasks", is_flag=True, help="Restart every task, also dead ones.")
@api_command("restarting allocation", json_flag=False)
def restart_cmd(ctx: ClientCtx, alloc_id: str, task_arg: str | None, task_opt: str | None, all_tasks: bool) -> None:
    """Restart an allocation's running tasks in place."""
    a = resolve_alloc(ctx, alloc_id)
    task = task_opt or task_arg
    if task and all_tasks:
        raise RawExecError("The -all-tasks option cannot be used with a task name")
    if task:
        task = _pick_task(a, task)
    ctx.api.put(f"/v1/client/allocation/{path_escape(a['ID'])}/restart",
                {"TaskName": task or "", "AllTasks": all_tasks})


@alloc.command("stop")
@click.argument("alloc_id")
@click.option("-detach", "--detach", "detach", is_flag=True, help="Print the evaluation ID only.")
@api_command("stopping allocation", json_flag=False)
def stop_cmd(ctx: ClientCtx, alloc_id: str, detach: bool) -> None:
    """Stop an allocation and reschedule it (a replacement is placed unless the job is stopped)."""
    a = resolve_alloc(ctx, alloc_id)
    resp = ctx.api.put(f"/v1/allocation/{path_escape(a['ID'])}/stop") or {}
    eval_id = str(resp.get("EvalID", ""))
    click.echo(eval_id if detach else f'==> Allocation "{a["ID"][:8]}" stopped (evaluation "{eval_id[:8]}")')
    if detach or not eval_id:
        return
    for new in ctx.api.get(f"/v1/evaluation/{path_escape(eval_id)}/allocations") or []:
        click.echo(f'    Allocation "{str(new.get("ID", ""))[:8]}" created ({new.get("Name", "")}), replacing '
                   f'"{str(new.get("PreviousAllocation", ""))[:8]}"')


# -- fs -----------------------------------------------------------------------------------------
@alloc.command("fs")
@click.argument("alloc_id")
@click.argument("path", required=False, default="/")
@click.option("-stat", "--stat", "show_stat", is_flag=True, help="Show file information instead of contents.")
@api_command("reading allocation files")
def fs_cmd(ctx: ClientCtx, alloc_id: str, path: str, show_stat: bool) -> None:
    """List a directory or print a file of the allocation directory."""
    a = resolve_alloc(ctx, alloc_id)
    info = ctx.api.get(f"/v1/client/fs/stat/{path_escape(a['ID'])}", path=path)
    if show_stat or info.get("IsDir"):
        entries = [info] if show_stat else ctx.api.get(f"/v1/client/fs/ls/{path_escape(a['ID'])}", path=path)
        if ctx.as_json:
            print_json(info if show_stat else entries)
            return
        rows = [(e.get("FileMode", ""), e.get("Size", 0), e.get("ModTime", ""),
                 e.get("Name", "") + ("/" if e.get("IsDir") else "")) for e in entries]
        click.echo(table(["Mode", "Size", "Modified Time", "Name"], rows))
        return
    with ctx.api.stream(f"/v1/client/fs/cat/{path_escape(a['ID'])}", path=path) as r:
        for chunk in r.iter_raw():
            sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


# -- exec ---------------------------------------------------------------------------------------
def _go_bool(flag: str, raw: str) -> bool:
    """Go-style boolean flag values (``-i=false``, ``-t true``)."""
    v = raw.lstrip("=").strip().lower()
    if v in ("", "1", "t", "true", "yes"):
        return True
    if v in ("0", "f", "false", "no"):
        return False
    raise RawExecError(f"{flag}: {raw!r} is not a boolean; use {flag}=true or {flag}=false")


class _GoBoolFlags(click.Command):
    """``nomad alloc exec``'s flags as Go's flag package reads them: a boolean flag is ``-i``,
    ``-i=true`` or ``-i=false`` and never takes the next argument (which is the allocation id).
    Rewritten, before click parses them, into the value-taking options declared below."""

    bools = frozenset({"i", "t"})
    with_value = frozenset({"task"})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--" or not arg.startswith("-") or arg == "-":
                break  # the allocation id: from here on everything is the command's
            name, eq, value = arg.lstrip("-").partition("=")
            if name in self.bools:
                out += ["-" + name, value if eq else "true"]
            else:
                out.append(arg)
                if name in self.with_value and not eq and i + 1 < len(args):
                    i += 1
                    out.append(args[i])
            i += 1
        return super().parse_args(ctx, out + args[i:])


def _exec_tty(flag: str | None, use_stdin: bool) -> bool:
    """Whether ``alloc exec`` asks for a pseudo-TTY. As ``nomad alloc exec``: by default when stdin
    and stdout are both terminals; ``-t`` given needs ``-i`` and both terminals (Nomad: "-i must be
    enabled if running with tty", "not a terminal"). Unlike Nomad, ``-i=false`` alone in a terminal
    just means no TTY (Nomad refuses it, its ``-t`` default being on there)."""
    terminals = sys.stdin.isatty() and sys.stdout.isatty()
    if flag is None:
        return terminals and use_stdin
    if not _go_bool("-t", flag):
        return False
    if not use_stdin:
        raise RawExecError("-i must be enabled if running with tty: drop -i=false, or pass -t=false")
    if not terminals:
        which = "stdin" if not sys.stdin.isatty() else "stdout"
        raise RawExecError(f"-t needs a terminal, and {which} is not one; run the command from a terminal, or "
                           "pass -t=false (the default when stdin or stdout is redirected)")
    return True


@alloc.command("exec", cls=_GoBoolFlags,
               context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-task", "--task", "task_opt", default=None, help="The task to run the command in.")
@click.option("-i", "interactive", type=str, default="true", metavar="[=BOOL]",
              help="Pass stdin to the command (default true; -i=false to disable).")
@click.option("-t", "tty", type=str, default=None, metavar="[=BOOL]",
              help="Allocate a pseudo-TTY (default: when stdin and stdout are terminals; -t=false to disable).")
@click.argument("alloc_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@api_command("executing command", json_flag=False)
def exec_cmd(ctx: ClientCtx, task_opt: str | None, interactive: str, tty: str | None, alloc_id: str,
             command: tuple[str, ...]) -> None:
    """Run a command inside a running task's context (as `nomad alloc exec`)."""
    from rawexec.cli.exec_client import run_exec

    use_stdin = _go_bool("-i", interactive)
    use_tty = _exec_tty(tty, use_stdin)
    a = resolve_alloc(ctx, alloc_id)
    task = _pick_task(a, task_opt)
    code = run_exec(ctx, a["ID"], task, list(command), tty=use_tty, stdin=use_stdin)
    sys.exit(code)
