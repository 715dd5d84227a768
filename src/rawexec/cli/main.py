"""The ``rawexec`` command line.

Subcommands are imported on first use: ``rawexec run`` does not pay for the HTTP client (httpx),
the agent's API server or the table renderers of the other verbs (start time and memory).
"""

from __future__ import annotations

import importlib

import click

from rawexec import __version__, _dccache

_dccache.install()  # before any subcommand's modules make their dataclasses

__all__ = ["cli", "main"]

_COMMANDS: dict[str, tuple[str, str]] = {
    "acl": ("rawexec.cli.acl_cmds", "acl"),
    "agent": ("rawexec.cli.agent_cmd", "agent_cmd"),
    "alloc": ("rawexec.cli.alloc_cmds", "alloc"),
    # job_api_cmds attaches job status/stop/inspect to job_cmds.job when imported
    "job": ("rawexec.cli.job_api_cmds", "job"),
    "node": ("rawexec.cli.node_cmds", "node"),
    "run": ("rawexec.cli.run_cmd", "run"),
    "status": ("rawexec.cli.status_cmds", "status"),
    "version": ("rawexec.cli.status_cmds", "version"),
}
"""Command name -> (module, attribute) of its click command."""


class _LazyGroup(click.Group):
    """A group whose subcommands are loaded from :data:`_COMMANDS` when first looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            module, attr = _COMMANDS[cmd_name]
            cmd = getattr(importlib.import_module(module), attr)
            if not isinstance(cmd, click.Command):
                raise TypeError(f"{module}.{attr} is not a click command")
            self.add_command(cmd, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "-help", "--help"]})
@click.version_option(__version__, "-version", "--version", "-v", message="rawexec v%(version)s",
                      help="Print the rawexec version (as `rawexec version`).")
def cli() -> None:
    """rawexec: Nomad's raw_exec task driver, standalone."""


def main() -> None:
    cli()
