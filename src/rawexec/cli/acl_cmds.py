"""``rawexec acl bootstrap``: issue the management token (once)."""

from __future__ import annotations

import click

from rawexec.cli.client import ClientCtx, api_command, kv_table, print_json

__all__ = ["acl"]


@click.group("acl")
def acl() -> None:
    """ACL tokens of the agent's API."""


@acl.command("bootstrap")
@api_command("bootstrapping ACL system")
def bootstrap_cmd(ctx: ClientCtx) -> None:
    """Create the initial management token and print its secret (shown only this once)."""
    tok = ctx.api.put("/v1/acl/bootstrap")
    if ctx.as_json:
        print_json(tok)
        return
    click.echo(kv_table([
        ("Accessor ID", tok.get("AccessorID", "")), ("Secret ID", tok.get("SecretID", "")),
        ("Name", tok.get("Name", "")), ("Type", tok.get("Type", "")), ("Global", str(tok.get("Global")).lower()),
        ("Create Time", tok.get("CreateTime", "")), ("Expiry Time", tok.get("ExpirationTime") or "<none>"),
        ("Create Index", tok.get("CreateIndex", "")), ("Modify Index", tok.get("ModifyIndex", "")),
        ("Policies", "n/a"), ("Roles", "n/a"),
    ]))
