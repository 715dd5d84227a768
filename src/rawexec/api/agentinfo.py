"""The agent, node and namespace endpoints that describe this single-node agent to Nomad's tools.

* ``/v1/agent/health``: a client-only Nomad agent's answer (no ``server`` part; ``?type=server`` is
  a 500 "server not enabled", as Nomad);
* ``/v1/agent/members``: Nomad's client with no server to forward to answers 500 "no servers";
* ``/v1/namespaces``, ``/v1/namespace/:name``: ``default``, and each namespace some job names
  (namespaces exist here as soon as a job names one);
* ``/v1/client/stats``: the host's ``HostStats`` (:mod:`rawexec.api.hoststats`);
* ``/v1/node/:id/allocations``: the node's allocations in full (``nomad node status <id>``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from rawexec.api.blocking import IndexWatch, blocking
from rawexec.api.common import ApiError, json_response, prefix_filter, to_thread
from rawexec.api.hoststats import HostStatsCollector
from rawexec.api.protocol import AgentAPI

__all__ = ["AgentInfoEndpoints"]

_DEFAULT_NS_DESCRIPTION = "Default shared namespace"  # Nomad's


def _namespace(name: str, index: int) -> dict[str, Any]:
    """Nomad's ``Namespace`` JSON (no quotas, capabilities or node pool rules here: all null)."""
    return {"Name": name, "Description": _DEFAULT_NS_DESCRIPTION if name == "default" else "",
            "Quota": "", "Capabilities": None, "NodePoolConfiguration": None, "VaultConfiguration": None,
            "ConsulConfiguration": None, "Meta": None, "CreateIndex": index, "ModifyIndex": index}


class AgentInfoEndpoints:
    """The handlers, bound to one agent (and the blocking-query watch of its app)."""

    def __init__(self, agent: AgentAPI, watch: IndexWatch) -> None:
        self.agent = agent
        self.watch = watch
        self._stats: HostStatsCollector | None = None

    # -- agent -----------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        kinds = request.query_params.getlist("type")
        out: dict[str, Any] = {}
        if not kinds or "client" in kinds:
            out["client"] = {"ok": True, "message": "ok"}  # this agent is its own client: always ready
        if "server" in kinds:
            out["server"] = {"ok": False, "message": "server not enabled"}
        if not all(part["ok"] for part in out.values()):
            raise ApiError(500, json.dumps(out, separators=(",", ":")))  # Nomad: the JSON as the error text
        return json_response(out, index=0)

    async def members(self, request: Request) -> Response:
        raise ApiError(500, "no servers: rawexec is a single-node client agent with no Nomad servers to list "
                            "(this agent itself: /v1/agent/self)")

    # -- namespaces ------------------------------------------------------------------------------
    async def _namespaces(self) -> tuple[int, list[dict[str, Any]]]:
        jobs = await to_thread(self.agent.list_jobs, None)
        first: dict[str, int] = {"default": 1}
        for j in jobs:
            ns = str(j.get("Namespace") or "default")
            idx = int(j.get("CreateIndex") or 1)
            first[ns] = min(first.get(ns, idx), idx)
        index = max((int(j.get("ModifyIndex") or 1) for j in jobs), default=1)
        return index, [_namespace(n, first[n]) for n in sorted(first)]

    async def namespaces(self, request: Request) -> Response:
        async def fetch() -> Response:
            index, items = await self._namespaces()
            return json_response(prefix_filter(items, request.query_params.get("prefix"), key="Name"),
                                 index=index)

        return await blocking(self.watch, request, fetch)

    async def namespace(self, request: Request) -> Response:
        name = request.path_params["name"]
        if request.method != "GET":
            raise ApiError(501, f"{request.method} {request.url.path} is not supported by rawexec: namespaces "
                                "are not managed here (a job's namespace exists as soon as a job names it)")

        async def fetch() -> Response:
            index, items = await self._namespaces()
            for ns in items:
                if ns["Name"] == name:
                    return json_response(ns, index=index)
            raise ApiError(404, "Namespace not found")

        return await blocking(self.watch, request, fetch)

    # -- client ----------------------------------------------------------------------------------
    async def client_stats(self, request: Request) -> Response:
        if self._stats is None:
            attrs = self.agent.node.get("Attributes") or {}
            try:
                mhz = float(attrs.get("cpu.totalcompute") or 0)
            except ValueError:
                mhz = 0.0
            data_dir = self.agent.config.require_data_dir()
            self._stats = HostStatsCollector(os.path.join(data_dir, "alloc"), mhz)
        return json_response(await to_thread(self._stats.collect), index=0)

    async def node_allocations(self, request: Request) -> Response:
        node_id = request.path_params["node_id"]
        own = str(self.agent.node.get("ID", ""))

        async def fetch() -> Response:
            index, allocs = await to_thread(self.agent.node_allocations)
            if node_id != "self" and not (node_id and own.startswith(node_id)):
                allocs = []  # as Nomad: an unknown node simply has no allocations
            return json_response(allocs, index=index)

        return await blocking(self.watch, request, fetch)
