"""``rawexec status [ID]`` (jobs, or the job/alloc/node with that id) and ``rawexec version``."""

from __future__ import annotations

import click

from rawexec import __version__
from rawexec.cli.client import ClientCtx, api_command
from rawexec.cli.job_api_cmds import status_job
from rawexec.errors import RawExecError

__all__ = ["status", "version"]


@click.command("status")
@click.argument("ident", required=False)
@api_command("querying status")
def status(ctx: ClientCtx, ident: str | None) -> None:
    """List jobs, or show the job (or allocation) with that ID or prefix."""
    if not ident:
        status_job(ctx, None)
        return
    jobs = ctx.api.get("/v1/jobs", prefix=ident) or []
    if jobs:
        status_job(ctx, ident)
        return
    allocs = ctx.api.get("/v1/allocations", prefix=ident, task_states=False) or [] if len(ident) > 1 else []
    if len(allocs) == 1:
        from rawexec.cli.alloc_cmds import _status_text
        from rawexec.cli.client import print_json, resolve_alloc

        a = resolve_alloc(ctx, ident)
        if ctx.as_json:
            print_json(a)
        else:
            click.echo(_status_text(a, False))
        return
    raise RawExecError(f'No matches found for "{ident}"')


@click.command("version")
def version() -> None:
    """Print the rawexec version."""
    click.echo(f"rawexec v{__version__}")
