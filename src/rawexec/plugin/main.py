"""Entry point of the ``nomad-driver-rawexec`` external plugin.

Usage (by Nomad, from ``plugin_dir``): ``nomad-driver-rawexec [-name NAME]``. ``-name`` sets
the driver name jobs use (``driver = "..."``); default ``raw_exec``, a drop-in replacement for
the built-in. Give it with ``plugin "raw_exec" { args = ["-name", "raw_exec_py"] }``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rawexec.plugin.base_service import PluginState
    from rawexec.plugin.server import ServiceTable

__all__ = ["main", "parse_args"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_USAGE = "usage: nomad-driver-rawexec [-name NAME]   (launched by a Nomad client from its plugin_dir)"


def parse_args(argv: Sequence[str]) -> str:
    """The driver name from ``-name NAME`` / ``--name NAME`` / ``-name=NAME``; errors are ValueError."""
    name = "raw_exec"
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        key, eq, val = arg.partition("=")
        if key in ("-name", "--name"):
            if not eq:
                if i + 1 >= len(args):
                    raise ValueError(f"{key} needs a value, e.g. {key} raw_exec_py")
                val = args[i + 1]
                i += 1
            name = val
        elif arg in ("-h", "--help", "-help"):
            raise ValueError(_USAGE)
        else:
            raise ValueError(f"unknown argument {arg!r}\n{_USAGE}")
        i += 1
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid -name {name!r}: use letters, digits, '_', '-' or '.'")
    return name


def main(argv: Sequence[str] | None = None) -> None:
    from rawexec.plugin import server

    try:
        name = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        sys.stderr.write(f"nomad-driver-rawexec: {exc}\n")
        sys.exit(2)

    import os

    try:
        server.check_cookie(os.environ)
    except server.HandshakeError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.exit(1)

    import threading

    from rawexec.plugin.hclog import setup_logging

    log = setup_logging(name)
    stopping = threading.Event()
    states: list[PluginState] = []  # the services' shared state, made by the first call that needs it

    def shared_state() -> PluginState:
        from rawexec import _dccache

        _dccache.install()  # the driver's dataclasses are made below
        from rawexec.plugin.base_service import PluginState

        if not states:
            states.append(PluginState(name=name, stopping=stopping))
        return states[0]

    # Each service's handlers (and imports) are made on the first call to it, not before the handshake.
    def base_service() -> ServiceTable:
        from rawexec.plugin.base_service import BasePluginServicer
        from rawexec.plugin.gen import base_pb2_grpc

        servicer = BasePluginServicer(shared_state())
        return server.collect_handlers(lambda srv: base_pb2_grpc.add_BasePluginServicer_to_server(servicer, srv))

    def driver_service() -> ServiceTable:
        from rawexec.plugin.driver_service import DriverServicer
        from rawexec.plugin.gen import driver_pb2_grpc

        servicer = DriverServicer(shared_state())
        return server.collect_handlers(lambda srv: driver_pb2_grpc.add_DriverServicer_to_server(servicer, srv))

    def on_stop() -> None:
        stopping.set()
        for state in states:
            state.close()

    log.debug("starting plugin", extra={"kv": {"name": name, "pid": os.getpid()}})
    services = {"hashicorp.nomad.plugins.base.proto.BasePlugin": base_service,
                "hashicorp.nomad.plugins.drivers.proto.Driver": driver_service}
    code = server.serve(services, on_stop=on_stop, env=os.environ, stopping=stopping)
    sys.stdout.flush()
    os._exit(code)  # worker threads may be parked in long RPCs; the state is already clean


if __name__ == "__main__":
    main()
