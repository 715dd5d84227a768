"""``rawexec job status|stop|inspect`` against a running agent (attached to the ``job`` group),
and :func:`register_job` used by ``job run``."""

from __future__ import annotations

from typing import Any

import click

from rawexec.api.client import path_escape
from rawexec.cli.client import ClientCtx, api_command, filter_opt, format_time_ns, kv_table, print_json, table
from rawexec.cli.job_cmds import job
from rawexec.errors import RawExecError, UnavailableError

__all__ = ["jobs_table", "register_job", "status_job"]


def status_string(job: dict[str, Any]) -> str:
    """A job's status as nomad prints it: ``dead (stopped)`` for a stopped job."""
    status = str(job.get("Status", ""))
    return f"{status} (stopped)" if job.get("Stop") else status


def jobs_table(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return "No running jobs"
    rows = [(j.get("ID", ""), j.get("Type", ""), j.get("Priority", ""), status_string(j),
             format_time_ns(j.get("SubmitTime"))) for j in jobs]
    return table(["ID", "Type", "Priority", "Status", "Submit Date"], rows)


def allocs_table(allocs: list[dict[str, Any]]) -> str:
    if not allocs:
        return "No allocations placed"
    rows = [(str(a.get("ID", ""))[:8], str(a.get("NodeID", ""))[:8], a.get("TaskGroup", ""), a.get("JobVersion", 0),
             a.get("DesiredStatus", ""), a.get("ClientStatus", ""), format_time_ns(a.get("CreateTime")),
             format_time_ns(a.get("ModifyTime"))) for a in allocs]
    return table(["ID", "Node ID", "Task Group", "Version", "Desired", "Status", "Created", "Modified"], rows)


def _find_job(ctx: ClientCtx, job_id: str) -> dict[str, Any]:
    jobs = ctx.api.get("/v1/jobs", prefix=job_id) or []
    exact = [j for j in jobs if j.get("ID") == job_id]
    if exact:
        jobs = exact
    if not jobs:
        raise RawExecError(f'No job(s) with prefix or ID "{job_id}" found')
    if len(jobs) > 1:
        raise RawExecError("Prefix matched multiple jobs\n\n" + jobs_table(jobs))
    found: dict[str, Any] = jobs[0]
    return found


def status_job(ctx: ClientCtx, job_id: str | None, filter_expr: str | None = None) -> None:
    if job_id and filter_expr:
        raise RawExecError("-filter applies to the list of jobs: give it without a job ID")
    if not job_id:
        jobs = ctx.api.get("/v1/jobs", filter=filter_expr or None) or []
        if ctx.as_json:
            print_json(jobs)
        else:
            click.echo(jobs_table(jobs))
        return
    stub = _find_job(ctx, job_id)
    jid = stub["ID"]
    ns = stub.get("Namespace") or None  # the job's own (-namespace "*" finds it in any)
    full = ctx.api.get(f"/v1/job/{path_escape(jid)}", namespace=ns)
    summary = ctx.api.get(f"/v1/job/{path_escape(jid)}/summary", namespace=ns)
    allocs = ctx.api.get(f"/v1/job/{path_escape(jid)}/allocations", namespace=ns) or []
    if ctx.as_json:
        print_json({"Job": full, "Summary": summary, "Allocations": allocs})
        return
    click.echo(kv_table([("ID", jid), ("Name", full.get("Name", jid)), ("Submit Date", format_time_ns(
        full.get("SubmitTime"))), ("Type", full.get("Type", "")), ("Priority", full.get("Priority", "")),
        ("Datacenters", ",".join(full.get("Datacenters") or [])), ("Namespace", full.get("Namespace", "default")),
        ("Node Pool", full.get("NodePool", "default")), ("Status", status_string(full)),
        ("Periodic", "false"), ("Parameterized", "false")]))
    click.echo("\nSummary")
    groups = (summary or {}).get("Summary") or {}
    rows = [(g, s.get("Queued", 0), s.get("Starting", 0), s.get("Running", 0), s.get("Failed", 0),
             s.get("Complete", 0), s.get("Lost", 0), s.get("Unknown", 0)) for g, s in sorted(groups.items())]
    click.echo(table(["Task Group", "Queued", "Starting", "Running", "Failed", "Complete", "Lost", "Unknown"], rows))
    click.echo("\nAllocations")
    click.echo(allocs_table(allocs))


@job.command("status")
@click.argument("job_id", required=False)
@filter_opt
@api_command("querying jobs")
def job_status_cmd(ctx: ClientCtx, job_id: str | None, filter_expr: str | None) -> None:
    """Show all jobs, or one job's summary and allocations."""
    status_job(ctx, job_id, filter_expr)


@job.command("inspect")
@click.argument("job_id")
@api_command("inspecting job")
def job_inspect_cmd(ctx: ClientCtx, job_id: str) -> None:
    """Print a job's API JSON ({"Job": ...}); -json is accepted (the output is JSON anyway)."""
    stub = _find_job(ctx, job_id)
    print_json({"Job": ctx.api.get(f"/v1/job/{path_escape(stub['ID'])}")})


@job.command("stop")
@click.argument("job_id")
@click.option("-purge", "--purge", "purge", is_flag=True, help="Also remove the job from the agent's state.")
@click.option("-yes", "--yes", "-y", "yes", is_flag=True, help="Accepted for compatibility (no prompt is shown).")
@click.option("-detach", "--detach", "detach", is_flag=True, help="Print the evaluation ID only.")
@api_command("deregistering job", json_flag=False)
def job_stop_cmd(ctx: ClientCtx, job_id: str, purge: bool, yes: bool, detach: bool) -> None:
    """Stop a running job (and with -purge, forget it)."""
    stub = _find_job(ctx, job_id)
    resp = ctx.api.delete(f"/v1/job/{path_escape(stub['ID'])}", purge=purge or None) or {}
    eval_id = resp.get("EvalID", "")
    if detach:
        click.echo(eval_id)
        return
    what = "purged" if purge else "stopped"
    click.echo(f'==> Job "{stub["ID"]}" {what} (evaluation "{str(eval_id)[:8]}")')


def register_job(ctx: ClientCtx, api_job: dict[str, Any], *, detach: bool) -> None:
    """``job run`` without ``-output``: register the job and show what was placed."""
    resp = ctx.api.put("/v1/jobs", api_job) or {}
    job_id = api_job["Job"]["ID"]
    eval_id = str(resp.get("EvalID", ""))
    warnings = resp.get("Warnings") or ""
    if warnings:
        click.echo("Job Warnings:", err=True)
        for w in warnings.splitlines():
            click.echo(f"  * {w}", err=True)
    if detach:
        click.echo("Job registration successful")
        click.echo(f"Evaluation ID: {eval_id}")
        return
    click.echo(f'==> Job "{job_id}" registered (evaluation "{eval_id[:8]}", '
               f"job modify index {resp.get('JobModifyIndex', 0)})")
    # the allocations this evaluation placed or updated in place (a kept one was created before it)
    allocs = (ctx.api.get(f"/v1/evaluation/{path_escape(eval_id)}/allocations") if eval_id
              else ctx.api.get(f"/v1/job/{path_escape(job_id)}/allocations")) or []
    created_from = int(resp.get("EvalCreateIndex", 0) or 0)
    for a in allocs:
        if a.get("DesiredStatus") == "run":
            what = "updated in place" if int(a.get("CreateIndex", 0) or 0) < created_from else "placed"
            click.echo(f'    Allocation "{str(a.get("ID", ""))[:8]}" {what} ({a.get("Name", "")}): '
                       f"{a.get('ClientStatus', '')}")


def run_on_agent(api_job: dict[str, Any], *, address: str | None, token: str | None, detach: bool,
                 namespace: str | None = None) -> None:
    """``job run FILE`` (no ``-output``): register the parsed job with the agent at ``address``, in
    ``namespace`` (else ``RAWEXEC_NAMESPACE``, else the job's own)."""
    import os
    import sys

    from rawexec.api.client import ApiResponseError

    ns = namespace or os.environ.get("RAWEXEC_NAMESPACE") or api_job.get("Job", api_job).get("Namespace") or None
    ctx = ClientCtx(address, token, False, ns)
    try:
        register_job(ctx, api_job, detach=detach)
    except ApiResponseError as e:
        click.echo(f"Error submitting job: {e.message} (HTTP {e.status})", err=True)
        sys.exit(1)
    except UnavailableError as e:
        click.echo(f"Error submitting job: {e.message}; the agent is not available yet: use -output to print "
                   "the job's API JSON, or start one with `rawexec agent -dev`", err=True)
        sys.exit(1)
    except RawExecError as e:
        click.echo(f"Error submitting job: {e.message}", err=True)
        sys.exit(1)
    finally:
        ctx.close()
