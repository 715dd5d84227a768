"""``rawexec job validate|run``: Nomad's job verbs for job files.

``job validate FILE [-var k=v]... [-var-file F]...`` prints ``Job validation successful`` (plus
any warnings) or every error at once (exit 1). ``job run -output FILE`` prints the API JSON a
Nomad server would accept; ``job run FILE`` registers the job with the running agent. ``-json``
reads FILE as API JSON (``job inspect`` output too: the server-set fields are ignored, as Nomad does).
A FILE of ``-`` is standard input (Nomad's ``job run -``).
"""

from __future__ import annotations

import json
import sys

import click

from rawexec.errors import ValidationError
from rawexec.jobspec import ParsedJob, load_file, to_api_json

__all__ = ["job"]


def _vars(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        name, sep, value = p.partition("=")
        if not sep or not name:
            raise click.UsageError(f'-var "{p}": expected name=value, e.g. -var image=nginx')
        out[name.strip()] = value
    return out


def _load(file: str, var: tuple[str, ...], var_file: tuple[str, ...], as_json: bool = False) -> ParsedJob | None:
    try:
        return load_file(file, variables=_vars(var) or None, var_files=list(var_file) or None, as_json=as_json)
    except ValidationError as exc:
        click.echo("Job validation errors:", err=True)
        for e in exc.errors:
            click.echo(f"  * {e}", err=True)
        return None


def _print_warnings(parsed: ParsedJob) -> None:
    if parsed.warnings:
        click.echo("Job Warnings:", err=True)
        for w in parsed.warnings:
            click.echo(f"  * {w}", err=True)


_var_opt = click.option("-var", "--var", "var", multiple=True, metavar="KEY=VALUE",
                        help="Set an HCL2 input variable (repeatable).")
_var_file_opt = click.option("-var-file", "--var-file", "var_file", multiple=True, metavar="FILE",
                             help="Read HCL2 input variables from a file (repeatable).")
_json_opt = click.option("-json", "--json", "as_json", is_flag=True,
                         help="The file is API JSON (as `job inspect` or `job run -output` print it).")


@click.group("job")
def job() -> None:
    """Work with Nomad job files."""


@job.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@_var_opt
@_var_file_opt
@_json_opt
def validate_cmd(file: str, var: tuple[str, ...], var_file: tuple[str, ...], as_json: bool) -> None:
    """Check a job file (HCL2 or API JSON; - is standard input) and report every problem at once."""
    parsed = _load(file, var, var_file, as_json)
    if parsed is None:
        sys.exit(1)
    _print_warnings(parsed)
    click.echo("Job validation successful")


@job.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-output", "--output", "output", is_flag=True,
              help="Print the job as Nomad API JSON instead of running it.")
@_var_opt
@_var_file_opt
@_json_opt
@click.option("-detach", "--detach", "detach", is_flag=True, help="Print the evaluation ID only.")
@click.option("-address", "--address", "address", default=None, metavar="ADDR",
              help="The agent's API: unix:///path/api.sock or http://host:port (env RAWEXEC_ADDR).")
@click.option("-token", "--token", "token", default=None, metavar="SECRET",
              help="ACL token secret (env RAWEXEC_TOKEN).")
@click.option("-namespace", "--namespace", "namespace", default=None, metavar="NAME",
              help="Register the job in this namespace (env RAWEXEC_NAMESPACE; default: the job's own).")
def run_cmd(file: str, output: bool, var: tuple[str, ...], var_file: tuple[str, ...], as_json: bool,
            detach: bool, address: str | None, token: str | None, namespace: str | None) -> None:
    """Run a job on the agent (with -output: print its API JSON). FILE - is standard input."""
    parsed = _load(file, var, var_file, as_json)
    if parsed is None:
        sys.exit(1)
    if output:
        _print_warnings(parsed)
        click.echo(json.dumps(to_api_json(parsed.job), indent=4, sort_keys=False))
        return
    from rawexec.cli.job_api_cmds import run_on_agent

    run_on_agent(to_api_json(parsed.job), address=address, token=token, detach=detach, namespace=namespace)
