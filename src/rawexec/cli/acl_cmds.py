"""``rawexec acl bootstrap [PATH]``: issue the management token (once)."""

from __future__ import annotations

import sys
import uuid

import click

from rawexec.cli.client import ClientCtx, api_command, kv_table, print_json
from rawexec.errors import RawExecError

__all__ = ["acl"]


@click.group("acl")
def acl() -> None:
    """ACL tokens of the agent's API."""


@acl.command("bootstrap")
@click.argument("path", required=False)
@api_command("bootstrapping ACL system")
def bootstrap_cmd(ctx: ClientCtx, path: str | None) -> None:
    """Create the initial management token and print its secret (shown only this once).

    With PATH, the token's secret is the one in that file (``-``: standard input): a UUID, as
    ``uuidgen`` makes, so the secret can be set up ahead of time (Nomad 1.4+)."""
    body = None
    if path:
        body = {"BootstrapSecret": _read_secret(path)}
    tok = ctx.api.put("/v1/acl/bootstrap", body)
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


def _read_secret(path: str) -> str:
    text: str
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise RawExecError(f"cannot read the bootstrap secret from {path}: {e}") from e
    secret = text.strip()
    if not secret:
        raise RawExecError(f"the bootstrap secret file {path} is empty: put the token's secret (a UUID) in it")
    try:
        uuid.UUID(secret)
    except ValueError:
        raise RawExecError(f"the bootstrap secret in {path} is not a UUID (make one with uuidgen)") from None
    return secret
