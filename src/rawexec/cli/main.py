"""The ``rawexec`` command line."""

from __future__ import annotations

import click

from rawexec.cli.agent_cmd import agent_cmd
from rawexec.cli.job_cmds import job
from rawexec.cli.run_cmd import run


@click.group()
@click.version_option(package_name="nomad-rawexec")
def cli() -> None:
    """rawexec: Nomad's raw_exec task driver, standalone."""


cli.add_command(job)
cli.add_command(run)
cli.add_command(agent_cmd)


def main() -> None:
    cli()
