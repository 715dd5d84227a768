"""The ``rawexec`` command line."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="nomad-rawexec")
def cli() -> None:
    """rawexec: Nomad's raw_exec task driver, standalone."""


def main() -> None:
    cli()
