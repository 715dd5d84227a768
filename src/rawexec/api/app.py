"""The agent's HTTP API as a Starlette app: Nomad's paths, JSON field names and status codes.

Every agent call runs in a worker thread (the agent is synchronous). Errors are Nomad-style
plain-text bodies: 400 for malformed requests, 403 without a valid token, 404 for unknown ids.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from rawexec import __version__ as _pkg_version
from rawexec.agent.eventstream import Event
from rawexec.api.acl import PermissionDeniedError, TokenStore
from rawexec.api.agentinfo import AgentInfoEndpoints
from rawexec.api.blocking import IndexWatch, blocking
from rawexec.api.common import (
    ApiError,
    LiveStreamingResponse,
    error_response,
    filter_list,
    filtered_json_response,
    json_response,
    prefix_filter,
    query_bool,
    query_int,
    query_namespace,
    query_namespaces,
    read_json_body,
    to_thread,
)
from rawexec.api.exec_ws import exec_endpoint
from rawexec.api.fs import fs_cat, fs_logs, fs_ls, fs_readat, fs_stat, fs_stream
from rawexec.api.protocol import AgentAPI
from rawexec.errors import RawExecError, ValidationError
from rawexec.jobspec import load_hcl, load_json, to_api_json

__all__ = ["ApiInfo", "create_app"]

_EVENT_HEARTBEAT_S = 10.0
_ACL_EXEMPT = {"/v1/acl/bootstrap", "/v1/status/leader", "/v1/status/peers",
               "/v1/agent/health"}  # as Nomad: no token needed

Handler = Callable[[Request], Awaitable[Response]]

_UNSUPPORTED_JOB_OPS = (("plan", "plan"), ("dispatch", "dispatch"), ("scale", "scale"),
                        ("periodic/force", "periodic force"), ("revert", "revert"), ("stable", "stable"),
                        ("evaluate", "evaluate"), ("submission", "submission"), ("services", "services"),
                        ("action", "action"), ("actions", "actions"))
"""Nomad's ``/v1/job/:id/<sub-path>`` operations this agent does not have (answered 501, never
"job not found")."""


class ApiInfo:
    """Where the API listens, for ``/v1/agent/self`` and ``/v1/status/leader``."""

    def __init__(self, unix_path: str = "", http_addr: tuple[str, int] | None = None) -> None:
        self.unix_path = unix_path
        self.http_addr = http_addr
        self.started = time.time()

    @property
    def address(self) -> str:
        if self.http_addr is not None:
            return f"{self.http_addr[0]}:{self.http_addr[1]}"
        return f"unix://{self.unix_path}"


def _token_of(headers: Any) -> str:
    tok = str(headers.get("x-nomad-token") or "")
    if tok:
        return tok
    auth = str(headers.get("authorization") or "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return ""


class _ACLMiddleware:
    """With ACLs on, every request (but bootstrap) needs a known ``X-Nomad-Token`` / bearer token."""

    def __init__(self, app: ASGIApp, tokens: TokenStore) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.tokens.enabled or scope["type"] not in ("http", "websocket") or scope["path"] in _ACL_EXEMPT:
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import Headers

        token = _token_of(Headers(scope=scope))
        if scope["type"] == "websocket" and not token:
            await self.app(scope, receive, send)  # the endpoint checks (token may come in a handshake frame)
            return
        try:
            self.tokens.resolve(token)
        except PermissionDeniedError as e:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": e.message})
                return
            await error_response(ApiError(403, e.message))(scope, receive, send)
            return
        scope["rawexec.authenticated"] = True
        await self.app(scope, receive, send)


#: What an escaped slash (``%2F``) in a request path stands for while the path is routed: never in
#: an id (a job ID cannot hold a null character), so never taken for a separator either.
_ESCAPED_SLASH = "\0"


class _EscapedSlashes:
    """Route ``/v1/job/a%2Fsummary`` to job ``a/summary``, not to the summary of job ``a``.

    The server hands the app the decoded path, where an escaped slash inside an id and a real one
    look the same (Nomad's router has that ambiguity). When the raw path holds ``%2F``, the path is
    decoded again with those kept as :data:`_ESCAPED_SLASH`; :func:`_wrap` turns them back into
    ``/`` in the path parameters. Paths without ``%2F`` are routed as before (``/v1/job/a/b`` is job
    ``a/b``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        if scope["type"] in ("http", "websocket") and isinstance(raw, bytes):
            text = raw.split(b"?", 1)[0].decode("latin-1")
            if "%2f" in text.lower() and "%00" not in text:
                marked = text.replace("%2F", _ESCAPED_SLASH).replace("%2f", _ESCAPED_SLASH)
                scope = dict(scope, path=unquote(marked))
        await self.app(scope, receive, send)


def _wrap(fn: Handler) -> Handler:
    async def handler(request: Request) -> Response:
        params = request.path_params
        for k, v in params.items():
            if isinstance(v, str) and _ESCAPED_SLASH in v:
                params[k] = v.replace(_ESCAPED_SLASH, "/")
        try:
            return await fn(request)
        except (ApiError, RawExecError, LookupError) as e:
            return error_response(e)

    return handler


def create_app(agent: AgentAPI, tokens: TokenStore, info: ApiInfo | None = None, *,
               watch: IndexWatch | None = None) -> ASGIApp:
    """The ASGI app serving ``agent``. ``watch`` (made here if not given) wakes the blocking queries;
    its :meth:`~IndexWatch.close` ends them and the streams when the server stops."""
    info = info or ApiInfo()

    # The agent's fast path: the body joined from per-allocation stubs encoded once per commit (the
    # unfiltered list cached until the next change): no I/O and no JSON work here. Index and body come
    # from one snapshot, so a body is never older than the index it is sent with.
    fast_allocs: Callable[..., tuple[int, bytes]] | None = getattr(agent, "allocations_json", None)
    jobs_index: Callable[[], int] | None = getattr(agent, "jobs_index", None)
    # blocking queries (?index=&wait=) of the read endpoints wait on this, woken by every commit
    watch = watch or IndexWatch(agent)

    def raw_json(index: int, body: bytes) -> Response:
        return Response(body, media_type="application/json",
                        headers={"X-Nomad-Index": str(max(index, 1)), "X-Nomad-KnownLeader": "true",
                                 "X-Nomad-LastContact": "0"})

    async def _job_or_404(job_id: str, namespace: str) -> Any:
        job = await to_thread(agent.get_job, job_id, namespace)
        if job is None:
            raise ApiError(404, "job not found")
        return job

    # -- jobs ---------------------------------------------------------------------------------
    async def jobs(request: Request) -> Response:
        if request.method == "GET":
            async def fetch() -> Response:
                index = jobs_index() if jobs_index is not None else None  # before the data: never newer
                items = await to_thread(agent.list_jobs, query_namespaces(request))
                return filtered_json_response(prefix_filter(items, request.query_params.get("prefix")),
                                              request.query_params.get("filter"), index=index)

            return await blocking(watch, request, fetch)
        return await _register(request, None)

    async def _register(request: Request, path_id: str | None) -> Response:
        body = await read_json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("Job"), dict):
            raise ApiError(400, 'Job must be specified: send {"Job": {...}}')
        if path_id is not None and body["Job"].get("ID") != path_id:
            raise ApiError(400, "Job ID does not match name")
        if request.query_params.get("namespace"):
            # the request's namespace wins over the job's own (Nomad): `job run -namespace=x`
            body = dict(body, Job=dict(body["Job"], Namespace=query_namespace(request)))
        try:
            parsed = load_json(body, filename="request")
        except ValidationError as e:
            raise ApiError(400, str(e)) from None
        drivers = sorted({t.driver for g in parsed.job.groups for t in g.tasks if t.driver != "raw_exec"})
        if drivers:
            raise ApiError(400, f'driver "{drivers[0]}" not available on this node: rawexec runs raw_exec '
                                "tasks only")
        enforce = body.get("EnforceIndex")
        if enforce is not None and not isinstance(enforce, bool):
            raise ApiError(400, f"EnforceIndex must be true or false; got {enforce!r}")
        jmi = body.get("JobModifyIndex") or 0
        if isinstance(jmi, bool) or not isinstance(jmi, int) or jmi < 0:
            raise ApiError(400, f"JobModifyIndex must be a non-negative integer; got {jmi!r}")
        checked = getattr(agent, "register_job_checked", None)
        if enforce and checked is None:
            raise ApiError(400, "EnforceIndex is not supported by this agent")
        job_ = parsed.job
        resp = dict(await to_thread(lambda: checked(job_, jmi) if enforce and checked else agent.register_job(job_)))
        warns = [w for w in (resp.get("Warnings") or "").split("\n") if w] + list(parsed.warnings)
        out = {"EvalID": resp.get("EvalID", ""), "EvalCreateIndex": resp.get("EvalCreateIndex", 0),
               "JobModifyIndex": resp.get("JobModifyIndex", 0), "Warnings": "\n".join(warns),
               "Index": resp.get("Index", resp.get("JobModifyIndex", 0)), "LastContact": 0, "KnownLeader": True}
        return json_response(out, index=int(out["Index"] or 0))

    async def jobs_parse(request: Request) -> Response:
        body = await read_json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("JobHCL"), str):
            raise ApiError(400, 'Job HCL must be specified: send {"JobHCL": "job \\"x\\" {...}"}')
        if body.get("HCLv1"):
            raise ApiError(400, "HCLv1 is not supported: rawexec parses HCL2 job files only")
        variables = body.get("Variables") or ""
        if not isinstance(variables, str):
            raise ApiError(400, "Variables must be a string holding HCL variable assignments")

        def parse() -> dict[str, Any]:
            var_files: list[str] = []
            tmp = None
            try:
                if variables:
                    fd, tmp = tempfile.mkstemp(suffix=".hcl", prefix="rawexec-vars-")
                    with os.fdopen(fd, "w", encoding="utf-8") as f:
                        f.write(variables)
                    var_files.append(tmp)
                parsed = load_hcl(body["JobHCL"], filename="JobHCL", var_files=var_files or None, env={})
            finally:
                if tmp:
                    os.unlink(tmp)
            job: dict[str, Any] = to_api_json(parsed.job)["Job"]
            return job

        try:
            return json_response(await to_thread(parse), index=0)
        except ValidationError as e:
            raise ApiError(400, str(e)) from None

    async def job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        if request.method in ("POST", "PUT"):
            return await _register(request, job_id)
        ns = query_namespace(request)
        if request.method == "GET":
            return await blocking(watch, request, lambda: job_get(job_id, ns))
        if request.method == "DELETE":
            await _job_or_404(job_id, ns)
            purge = query_bool(request, "purge")
            resp = await to_thread(lambda: agent.stop_job(job_id, purge=purge, namespace=ns))
            out = {"EvalID": resp.get("EvalID", ""), "EvalCreateIndex": resp.get("EvalCreateIndex", 0),
                   "JobModifyIndex": resp.get("JobModifyIndex", 0), "Index": resp.get("JobModifyIndex", 0),
                   "LastContact": 0, "KnownLeader": True}
            return json_response(out)
        raise ApiError(405, f"method {request.method} not allowed")

    async def job_get(job_id: str, ns: str) -> Response:
        api_fn = getattr(agent, "get_job_api", None)
        if api_fn is not None:
            found = await to_thread(api_fn, job_id, ns)
            if found is None:
                raise ApiError(404, "job not found")
            return json_response(found)
        j = await _job_or_404(job_id, ns)
        out = to_api_json(j)["Job"]
        for stub in await to_thread(agent.list_jobs, ns):
            if stub.get("ID") == job_id:
                for k in ("Status", "StatusDescription", "Stop", "Version", "CreateIndex", "ModifyIndex",
                          "JobModifyIndex", "SubmitTime", "Stable"):
                    if k in stub:
                        out[k] = stub[k]
        return json_response(out)

    async def job_allocations(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        ns = query_namespace(request)
        return await blocking(watch, request, lambda: job_allocations_get(request, job_id, ns))

    async def job_allocations_get(request: Request, job_id: str, ns: str) -> Response:
        if fast_allocs is not None:
            index, body = fast_allocs(job_id=job_id, namespace=ns)
            if body == b"[]":
                await _job_or_404(job_id, ns)
            if request.query_params.get("filter"):
                return filtered_json_response(body, request.query_params.get("filter"), index=index)
            return raw_json(index, body)
        allocs = await to_thread(agent.list_allocations, job_id, ns)
        if not allocs:
            await _job_or_404(job_id, ns)
        return filtered_json_response(allocs, request.query_params.get("filter"))

    async def job_summary(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        ns = query_namespace(request)

        async def fetch() -> Response:
            await _job_or_404(job_id, ns)
            return json_response(await to_thread(lambda: agent.job_summary(job_id, namespace=ns)))

        return await blocking(watch, request, fetch)

    async def job_versions(request: Request) -> Response:
        versions = await to_thread(agent.job_versions, request.path_params["job_id"])
        idx = max((int(v.get("ModifyIndex", 0)) for v in versions), default=0)
        return json_response({"Versions": versions, "Diffs": None, "Index": idx, "LastContact": 0,
                              "KnownLeader": True, "NextToken": ""}, index=idx)

    async def job_evaluations(request: Request) -> Response:
        return json_response(await to_thread(agent.list_evaluations, request.path_params["job_id"]))

    async def job_deployments(request: Request) -> Response:
        return json_response([], index=0)  # no deployments: updates are applied at once

    async def job_deployment(request: Request) -> Response:
        return json_response(None, index=0)

    def job_unsupported(op: str) -> Handler:
        async def handler(request: Request) -> Response:
            raise ApiError(501, f"job {op} is not supported by rawexec (a single-node agent: "
                                f"{request.method} {request.url.path} has no equivalent here)")

        return handler

    # -- evaluations --------------------------------------------------------------------------
    async def evaluations(request: Request) -> Response:
        items = await to_thread(agent.list_evaluations)
        return json_response(prefix_filter(items, request.query_params.get("prefix")))

    async def evaluation(request: Request) -> Response:
        return json_response(await to_thread(agent.get_evaluation, request.path_params["eval_id"]))

    async def evaluation_allocations(request: Request) -> Response:
        return json_response(await to_thread(agent.evaluation_allocations, request.path_params["eval_id"]))

    # -- allocations --------------------------------------------------------------------------
    async def allocations(request: Request) -> Response:
        prefix = request.query_params.get("prefix")
        ns = query_namespaces(request)
        expression = request.query_params.get("filter")
        task_states = query_bool(request, "task_states", True)

        async def fetch() -> Response:
            if fast_allocs is not None and not expression:
                return raw_json(*fast_allocs(prefix=prefix or "", task_states=task_states, namespace=ns))
            index: int | None
            if fast_allocs is not None:  # filter after prefix, on the JSON stubs (TaskStates included, as Nomad)
                index, body = fast_allocs(prefix=prefix or "", task_states=True, namespace=ns)
                items = filter_list(body, expression)
            else:
                index = None
                items = filter_list(prefix_filter(await to_thread(agent.list_allocations, None, ns), prefix),
                                    expression)
            if not task_states:
                items = [{k: v for k, v in a.items() if k != "TaskStates"} for a in items]
            return json_response(items, index=index)

        return await blocking(watch, request, fetch)

    async def allocation(request: Request) -> Response:
        alloc_id = request.path_params["alloc_id"]

        async def fetch() -> Response:
            return json_response(await to_thread(agent.get_allocation, alloc_id))

        return await blocking(watch, request, fetch)

    async def allocation_stop(request: Request) -> Response:
        resp = await to_thread(agent.stop_allocation, request.path_params["alloc_id"])
        return json_response({"EvalID": resp.get("EvalID", ""), "Index": resp.get("Index", 0)},
                             index=int(resp.get("Index", 0)))

    async def allocation_signal(request: Request) -> Response:
        body = await read_json_body(request, required=False) or {}
        if not isinstance(body, dict):
            raise ApiError(400, 'send {"Signal": "SIGUSR1", "Task": "name"}')
        sig = body.get("Signal") or "SIGKILL"
        task = body.get("Task") or None
        if not isinstance(sig, str) or (task is not None and not isinstance(task, str)):
            raise ApiError(400, "Signal and Task must be strings")
        await to_thread(agent.signal_allocation, request.path_params["alloc_id"], sig, task)
        return json_response({}, index=0)

    async def allocation_restart(request: Request) -> Response:
        body = await read_json_body(request, required=False) or {}
        if not isinstance(body, dict):
            raise ApiError(400, 'send {"TaskName": "name", "AllTasks": false}')
        task = body.get("TaskName") or None
        all_tasks = bool(body.get("AllTasks", False))
        if task is not None and not isinstance(task, str):
            raise ApiError(400, "TaskName must be a string")
        if task and all_tasks:
            raise ApiError(400, "Task name cannot be set when restarting all tasks")
        await to_thread(agent.restart_allocation, request.path_params["alloc_id"], task, all_tasks)
        return json_response({}, index=0)

    async def allocation_stats(request: Request) -> Response:
        return json_response(await to_thread(agent.allocation_stats, request.path_params["alloc_id"]), index=0)

    def task_names(alloc_id: str) -> list[str]:
        alloc = agent.get_allocation(alloc_id)
        return list((alloc.get("TaskStates") or {}).keys())

    async def logs(request: Request) -> Response:
        return await fs_logs(agent, request, task_names, until=watch.wait_closed)

    async def ls(request: Request) -> Response:
        return await fs_ls(agent, request)

    async def stat_(request: Request) -> Response:
        return await fs_stat(agent, request)

    async def cat(request: Request) -> Response:
        return await fs_cat(agent, request)

    async def readat(request: Request) -> Response:
        return await fs_readat(agent, request)

    async def stream(request: Request) -> Response:
        return await fs_stream(agent, request, until=watch.wait_closed)

    async def exec_ws(ws: WebSocket) -> None:
        await exec_endpoint(agent, tokens, ws)

    # -- node, agent, status ------------------------------------------------------------------
    def node_stub() -> dict[str, Any]:
        n = agent.node
        keys = ("ID", "Datacenter", "Name", "NodeClass", "NodePool", "Version", "Drain", "SchedulingEligibility",
                "Status", "StatusDescription", "Drivers", "CreateIndex", "ModifyIndex", "Address", "HTTPAddr")
        stub = {k: n[k] for k in keys if k in n}
        stub.setdefault("Address", "127.0.0.1")
        stub.setdefault("Version", (n.get("Attributes") or {}).get("nomad.version", ""))
        return stub

    async def nodes(request: Request) -> Response:
        with_os = query_bool(request, "os")

        async def fetch() -> Response:
            items = [node_stub()]
            if with_os:
                items[0]["Attributes"] = {k: v for k, v in (agent.node.get("Attributes") or {}).items()
                                          if k.startswith("os.")}
            return filtered_json_response(prefix_filter(items, request.query_params.get("prefix")),
                                          request.query_params.get("filter"))

        return await blocking(watch, request, fetch)

    async def node(request: Request) -> Response:
        node_id = request.path_params["node_id"]

        async def fetch() -> Response:
            n = agent.node
            if node_id in ("self",) or (node_id and str(n.get("ID", "")).startswith(node_id)):
                return json_response(n)
            raise ApiError(404, "node not found")

        return await blocking(watch, request, fetch)

    async def agent_self(request: Request) -> Response:
        c = agent.config
        n = agent.node
        cfg = {"Region": c.region, "Datacenter": c.datacenter, "NodeName": c.name, "DataDir": c.data_dir,
               "BindAddr": c.bind_addr or "127.0.0.1", "Ports": {"HTTP": c.http_port or 0},
               "LogLevel": c.log_level, "ACL": {"Enabled": c.acl_enabled}, "Version": {"Version": _pkg_version},
               "Client": {"Enabled": True, "Meta": dict(c.client.meta), "NodePool": c.client.node_pool},
               "Server": {"Enabled": False}}
        member = {"Name": c.name, "Addr": "127.0.0.1", "Port": 0, "Status": "alive",
                  "Tags": {"region": c.region, "dc": c.datacenter, "build": _pkg_version}}
        stats = {"client": {"node_id": str(n.get("ID", "")), "known_servers": "", "num_allocations": "",
                            "last_heartbeat": "0"},
                 "runtime": {"version": "python", "goroutines": "0"},
                 "agent": {"uptime_s": str(int(time.time() - info.started)), "api": info.address}}
        return json_response({"config": cfg, "member": member, "stats": stats}, index=0)

    async def status_leader(request: Request) -> Response:
        return json_response(info.address, index=0)

    async def status_peers(request: Request) -> Response:
        return json_response([info.address], index=0)

    async def regions(request: Request) -> Response:
        return json_response([agent.config.region], index=0)

    # -- event stream -------------------------------------------------------------------------
    async def event_stream(request: Request) -> Response:
        index = query_int(request, "index", 0)
        topics: dict[str, set[str]] = {}
        for t in request.query_params.getlist("topic"):
            name, _, key = t.partition(":")
            if not name:
                raise ApiError(400, f'Invalid topic "{t}": use Topic:Key, e.g. Job:* or Allocation:<id>')
            topics.setdefault(name, set()).add(key or "*")

        # as Nomad: only the namespace asked for ("default" unless given; "*" for all), and events of
        # objects outside namespaces (nodes)
        namespace = request.query_params.get("namespace") or "default"

        def wanted(ev: Event) -> bool:
            if namespace != "*" and ev.namespace and ev.namespace != namespace:
                return False
            if not topics:
                return True
            keys = topics.get(ev.topic, set()) | topics.get("*", set())
            return any(ev.matches(k) for k in keys)

        sub = await to_thread(agent.events, index)

        async def lines() -> AsyncIterator[bytes]:
            while True:
                batch = await anyio.to_thread.run_sync(sub.next_batch, _EVENT_HEARTBEAT_S, abandon_on_cancel=True)
                events = [e for e in batch if wanted(e)]
                for idx, group in itertools.groupby(events, key=lambda e: e.index):  # a frame per index, as Nomad
                    yield (f'{{"Index":{idx},"Events":[' + ",".join(e.to_api_json() for e in group)
                           + "]}\n").encode()
                if not batch:
                    yield b"{}\n"  # heartbeat

        return LiveStreamingResponse(lines(), media_type="application/json", until=watch.wait_closed)

    # -- ACL ----------------------------------------------------------------------------------
    async def acl_bootstrap(request: Request) -> Response:
        body = await read_json_body(request, required=False)
        secret = body.get("BootstrapSecret") if isinstance(body, dict) else None
        if secret is not None and not isinstance(secret, str):
            raise ApiError(400, "BootstrapSecret must be a string (a UUID)")
        tok = await to_thread(tokens.bootstrap, secret or None)
        return json_response(tok.to_api(), index=tok.create_index)

    async def acl_token_self(request: Request) -> Response:
        if not tokens.enabled:
            raise ApiError(400, "ACL support disabled")
        secret = _token_of(request.headers)
        tok = tokens.resolve(secret)
        return json_response({**tok.to_api(), "SecretID": secret}, index=tok.create_index)  # the caller's own

    more = AgentInfoEndpoints(agent, watch)
    routes = [
        Route("/v1/jobs", _wrap(jobs), methods=["GET", "PUT", "POST"]),
        Route("/v1/jobs/parse", _wrap(jobs_parse), methods=["PUT", "POST"]),
        Route("/v1/job/{job_id:path}/allocations", _wrap(job_allocations), methods=["GET"]),
        Route("/v1/job/{job_id:path}/summary", _wrap(job_summary), methods=["GET"]),
        Route("/v1/job/{job_id:path}/versions", _wrap(job_versions), methods=["GET"]),
        Route("/v1/job/{job_id:path}/evaluations", _wrap(job_evaluations), methods=["GET"]),
        Route("/v1/job/{job_id:path}/deployments", _wrap(job_deployments), methods=["GET"]),
        Route("/v1/job/{job_id:path}/deployment", _wrap(job_deployment), methods=["GET"]),
        *[Route(f"/v1/job/{{job_id:path}}/{sub}", _wrap(job_unsupported(op)),
                methods=["GET", "PUT", "POST", "DELETE"]) for sub, op in _UNSUPPORTED_JOB_OPS],
        Route("/v1/evaluations", _wrap(evaluations), methods=["GET"]),
        Route("/v1/evaluation/{eval_id}/allocations", _wrap(evaluation_allocations), methods=["GET"]),
        Route("/v1/evaluation/{eval_id}", _wrap(evaluation), methods=["GET"]),
        Route("/v1/job/{job_id:path}", _wrap(job), methods=["GET", "PUT", "POST", "DELETE"]),
        Route("/v1/allocations", _wrap(allocations), methods=["GET"]),
        Route("/v1/allocation/{alloc_id}/stop", _wrap(allocation_stop), methods=["PUT", "POST"]),
        Route("/v1/allocation/{alloc_id}", _wrap(allocation), methods=["GET"]),
        Route("/v1/client/allocation/{alloc_id}/signal", _wrap(allocation_signal), methods=["PUT", "POST"]),
        Route("/v1/client/allocation/{alloc_id}/restart", _wrap(allocation_restart), methods=["PUT", "POST"]),
        Route("/v1/client/allocation/{alloc_id}/stats", _wrap(allocation_stats), methods=["GET"]),
        WebSocketRoute("/v1/client/allocation/{alloc_id}/exec", exec_ws),
        Route("/v1/client/fs/logs/{alloc_id}", _wrap(logs), methods=["GET"]),
        Route("/v1/client/fs/ls/{alloc_id}", _wrap(ls), methods=["GET"]),
        Route("/v1/client/fs/stat/{alloc_id}", _wrap(stat_), methods=["GET"]),
        Route("/v1/client/fs/cat/{alloc_id}", _wrap(cat), methods=["GET"]),
        Route("/v1/client/fs/readat/{alloc_id}", _wrap(readat), methods=["GET"]),
        Route("/v1/client/fs/stream/{alloc_id}", _wrap(stream), methods=["GET"]),
        Route("/v1/client/stats", _wrap(more.client_stats), methods=["GET"]),
        Route("/v1/nodes", _wrap(nodes), methods=["GET"]),
        Route("/v1/node/{node_id}/allocations", _wrap(more.node_allocations), methods=["GET"]),
        Route("/v1/node/{node_id}", _wrap(node), methods=["GET"]),
        Route("/v1/agent/self", _wrap(agent_self), methods=["GET"]),
        Route("/v1/agent/health", _wrap(more.health), methods=["GET"]),
        Route("/v1/agent/members", _wrap(more.members), methods=["GET"]),
        Route("/v1/namespaces", _wrap(more.namespaces), methods=["GET"]),
        Route("/v1/namespace/{name}", _wrap(more.namespace), methods=["GET", "PUT", "POST", "DELETE"]),
        Route("/v1/status/leader", _wrap(status_leader), methods=["GET"]),
        Route("/v1/status/peers", _wrap(status_peers), methods=["GET"]),
        Route("/v1/regions", _wrap(regions), methods=["GET"]),
        Route("/v1/event/stream", _wrap(event_stream), methods=["GET"]),
        Route("/v1/acl/bootstrap", _wrap(acl_bootstrap), methods=["PUT", "POST"]),
        Route("/v1/acl/token/self", _wrap(acl_token_self), methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    return _ACLMiddleware(_EscapedSlashes(app), tokens)
