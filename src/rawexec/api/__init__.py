"""The agent's HTTP API: Nomad's paths, JSON field names, ``X-Nomad-Token`` and status codes.

Served by :class:`rawexec.api.server.ApiServer` (uvicorn + starlette) on ``<data_dir>/api.sock``
(mode 0600) and, when configured (``bind_addr`` / ``ports { http }``), on TCP. A non-loopback TCP
address needs ``acl { enabled = true }``; with ACLs every request needs a token
(``X-Nomad-Token`` or ``Authorization: Bearer``), issued once by ``PUT /v1/acl/bootstrap``.

Endpoints::

    GET  /v1/jobs                         PUT|POST /v1/jobs {"Job": ...}      POST /v1/jobs/parse
    GET|PUT|POST|DELETE /v1/job/:id (?purge=true)   GET /v1/job/:id/allocations   GET /v1/job/:id/summary
    GET  /v1/allocations (?prefix, ?task_states)    GET /v1/allocation/:id        PUT /v1/allocation/:id/stop
    PUT  /v1/client/allocation/:id/signal|restart   GET /v1/client/allocation/:id/stats
    WS   /v1/client/allocation/:id/exec (?task, ?command=[...], ?tty, ?ws_handshake)
    GET  /v1/client/fs/logs/:alloc (?task, ?type, ?follow, ?origin, ?offset, ?plain)
    GET  /v1/client/fs/ls|stat|cat/:alloc (?path)
    GET  /v1/nodes   /v1/node/:id   /v1/agent/self   /v1/status/leader   /v1/status/peers   /v1/regions
    GET  /v1/event/stream (?topic=Job:*, ?index) — ndjson, ``{}`` heartbeats
    PUT  /v1/acl/bootstrap   GET /v1/acl/token/self

:class:`rawexec.api.client.ApiClient` is the client the CLI uses (unix socket or TCP).
"""
