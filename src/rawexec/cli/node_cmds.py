"""``rawexec node status [-self] [NODE]``, as ``nomad node status``."""

from __future__ import annotations

from typing import Any

import click

from rawexec.api.client import path_escape
from rawexec.cli.client import ClientCtx, api_command, filter_opt, kv_table, print_json, table
from rawexec.errors import RawExecError

__all__ = ["node"]


@click.group("node")
def node() -> None:
    """Inspect the agent's node."""


def _drivers(n: dict[str, Any]) -> str:
    ok = [name for name, d in sorted((n.get("Drivers") or {}).items()) if d.get("Detected") and d.get("Healthy")]
    return ",".join(ok) or "<none>"


@node.command("status")
@click.argument("node_id", required=False)
@click.option("-self", "--self", "self_", is_flag=True, help="The node of the agent being queried.")
@click.option("-verbose", "--verbose", "verbose", is_flag=True, help="Full IDs and all attributes.")
@filter_opt
@api_command("querying node")
def node_status_cmd(ctx: ClientCtx, node_id: str | None, self_: bool, verbose: bool, filter_expr: str | None) -> None:
    """List nodes, or show one node's details."""
    if filter_expr and (node_id or self_):
        raise RawExecError("-filter applies to the list of nodes: give it without a node ID or -self")
    if self_:
        node_id = str(ctx.api.get("/v1/agent/self")["stats"]["client"]["node_id"])
    if not node_id:
        nodes = ctx.api.get("/v1/nodes", filter=filter_expr or None) or []
        if ctx.as_json:
            print_json(nodes)
            return
        rows = [(str(n.get("ID", ""))[: None if verbose else 8], n.get("NodePool", ""), n.get("Datacenter", ""),
                 n.get("Name", ""), n.get("NodeClass") or "<none>", str(bool(n.get("Drain"))).lower(),
                 n.get("SchedulingEligibility", ""), n.get("Status", "")) for n in nodes]
        click.echo(table(["ID", "Node Pool", "DC", "Name", "Class", "Drain", "Eligibility", "Status"], rows))
        return
    if len(node_id) == 1:
        raise RawExecError("Identifier must contain at least two characters.")
    n = ctx.api.get(f"/v1/node/{path_escape(node_id)}")
    if ctx.as_json:
        print_json(n)
        return
    click.echo(kv_table([
        ("ID", n.get("ID", "")), ("Name", n.get("Name", "")), ("Node Pool", n.get("NodePool", "")),
        ("Class", n.get("NodeClass") or "<none>"), ("DC", n.get("Datacenter", "")),
        ("Drain", str(bool(n.get("Drain"))).lower()), ("Eligibility", n.get("SchedulingEligibility", "")),
        ("Status", n.get("Status", "")), ("Drivers", _drivers(n)),
    ]))
    attrs = n.get("Attributes") or {}
    keys = sorted(attrs) if verbose else [k for k in sorted(attrs) if k.split(".")[0] in
                                           ("kernel", "os", "cpu", "memory", "unique", "driver")]
    if keys:
        click.echo("\nAttributes")
        click.echo(kv_table([(k, attrs[k]) for k in keys]))
    meta = n.get("Meta") or {}
    if meta:
        click.echo("\nMeta")
        click.echo(kv_table(sorted(meta.items())))
