"""The ``rawexec`` command line."""

from __future__ import annotations

import click

from rawexec.cli import job_api_cmds  # noqa: F401  (attaches job status/stop/inspect)
from rawexec.cli.acl_cmds import acl
from rawexec.cli.agent_cmd import agent_cmd
from rawexec.cli.alloc_cmds import alloc
from rawexec.cli.job_cmds import job
from rawexec.cli.node_cmds import node
from rawexec.cli.run_cmd import run
from rawexec.cli.status_cmds import status, version


@click.group()
@click.version_option(package_name="nomad-rawexec")
def cli() -> None:
    """rawexec: Nomad's raw_exec task driver, standalone."""


cli.add_command(job)
cli.add_command(run)
cli.add_command(agent_cmd)
cli.add_command(alloc)
cli.add_command(node)
cli.add_command(acl)
cli.add_command(status)
cli.add_command(version)


def main() -> None:
    cli()
