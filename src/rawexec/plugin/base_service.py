"""``hashicorp.nomad.plugins.base.proto.BasePlugin`` and the plugin's shared state.

``SetConfig`` only decodes and validates: Nomad calls it once in a short-lived validation
process (``nomad_config`` unset) and once in the long-lived one, so the driver itself (and
its spawner) is created lazily by :meth:`PluginState.driver` on the first call that needs it.

The servicers are ``grpc.aio`` handlers; anything that may block (the driver, its lock) runs on
the blocking pool (:func:`rawexec.plugin.server.run_blocking`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from rawexec import __version__
from rawexec.errors import InvalidConfigError, TaskStateError
from rawexec.plugin import cty, hclspec
from rawexec.plugin.gen import base_pb2
from rawexec.plugin.server import run_blocking
from rawexec.plugin.status import abort

if TYPE_CHECKING:
    from rawexec.driver import Driver, DriverConfig

__all__ = ["API_VERSIONS", "BasePluginServicer", "PluginState"]

log = logging.getLogger("rawexec.plugin.base")

API_VERSIONS = ("0.1.0",)
_ACCEPTED_API = {"0.1.0", "v0.1.0"}


@dataclass
class PluginState:
    """What the servicers share: the reported name, the decoded config, the driver."""

    name: str = "raw_exec"
    config: dict[str, Any] | None = None
    nomad_config: dict[str, Any] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: list[Callable[[], None]] = []
        self._driver: Driver | None = None
        self._driver_config: DriverConfig | None = None

    def set_config(self, config: dict[str, Any]) -> None:
        """Validate ``config`` (the decoded plugin config) and remember it."""
        from rawexec.driver import DriverConfig

        driver_config = DriverConfig.from_plugin_config(_set_keys(config))
        with self._lock:
            if self._driver is not None and self._driver_config != driver_config:
                reconfigure = getattr(self._driver, "set_config", None)
                if reconfigure is None:
                    raise TaskStateError(
                        "the plugin is already running with a different config; restart the Nomad "
                        "client to change plugin \"raw_exec\" { config {} }")
                reconfigure(driver_config)
            changed = self._driver_config != driver_config
            self.config = config
            self._driver_config = driver_config
            watchers = list(self._watchers) if changed else []
        for w in watchers:  # e.g. Fingerprint streams: a new config may change the driver's health
            w()

    def watch_config(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from the thread that set the config) whenever the config changes;
        returns the function that stops it."""
        with self._lock:
            self._watchers.append(callback)

        def unwatch() -> None:
            with self._lock:
                if callback in self._watchers:
                    self._watchers.remove(callback)
        return unwatch

    def driver(self) -> Driver:
        """The driver, created on first use from the config SetConfig gave."""
        with self._lock:
            if self._driver is None:
                if self._driver_config is None:
                    raise TaskStateError("the plugin is not configured yet: SetConfig must be called first")
                from rawexec.driver import Driver

                self._driver = Driver(self._driver_config)
                log.debug("driver created", extra={"kv": {"enabled": self._driver_config.enabled}})
            return self._driver

    def existing_driver(self) -> Driver | None:
        with self._lock:
            return self._driver

    def close(self) -> None:
        """Release the driver's helpers (tasks keep running: they outlive the plugin)."""
        drv = self.existing_driver()
        closer = getattr(drv, "close", None)
        if callable(closer):
            closer()


def _set_keys(config: dict[str, Any]) -> dict[str, Any]:
    """The config without unset (nil) keys."""
    return {k: v for k, v in config.items() if v is not None}


class BasePluginServicer:
    """PluginInfo, ConfigSchema, SetConfig."""

    def __init__(self, state: PluginState) -> None:
        self.state = state

    async def PluginInfo(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return base_pb2.PluginInfoResponse(type=base_pb2.DRIVER, plugin_api_versions=list(API_VERSIONS),
                                           plugin_version=__version__, name=self.state.name)

    async def ConfigSchema(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return base_pb2.ConfigSchemaResponse(spec=hclspec.to_proto(hclspec.plugin_config_spec()))

    async def SetConfig(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            await run_blocking(lambda: self._set_config(request))  # the state's lock may be held a while
        except Exception as exc:
            await abort(context, exc, "SetConfig")
        return base_pb2.SetConfigResponse()

    def _set_config(self, request: Any) -> None:
        api = request.plugin_api_version
        if api and api not in _ACCEPTED_API:
            raise InvalidConfigError(
                f"plugin_api_version {api!r} is not supported; this plugin speaks {API_VERSIONS[0]}")
        config = cty.decode(hclspec.plugin_config_spec(), request.msgpack_config, "plugin config")
        self.state.set_config(config)
        if request.HasField("nomad_config") and request.nomad_config.HasField("driver"):
            drv = request.nomad_config.driver
            self.state.nomad_config = {"client_min_port": drv.ClientMinPort,
                                       "client_max_port": drv.ClientMaxPort}
        log.debug("config set", extra={"kv": {"config": _set_keys(config),
                                               "nomad_config": self.state.nomad_config}})
