"""Port allocation for allocations' ``network { port "label" {...} }`` blocks.

Dynamic ports come from a range (Nomad's default 20000-32000), static ports are taken as
asked; a port is handed out only if no other allocation holds it, it is not in the node's
reserved list, and it can actually be bound on the host address right now (TCP and UDP), so
a port held by some unrelated process is never given to a task. All ports of one allocation
are taken together or not at all; :meth:`PortAllocator.release` frees them when the
allocation stops, and :meth:`PortAllocator.restore` re-marks them after an agent restart.
"""

from __future__ import annotations

import errno
import random
import re
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rawexec.errors import InvalidConfigError, UnavailableError

__all__ = [
    "DEFAULT_MAX_DYNAMIC_PORT",
    "DEFAULT_MIN_DYNAMIC_PORT",
    "AllocatedPort",
    "PortAllocator",
    "PortRequest",
    "parse_port_ranges",
]

DEFAULT_MIN_DYNAMIC_PORT = 20000
DEFAULT_MAX_DYNAMIC_PORT = 32000
_RANDOM_TRIES = 20
_LABEL_RE = re.compile(r"^[A-Za-z0-9_\-.]+$")


@dataclass(frozen=True)
class PortRequest:
    """One ``port "label"`` block: ``value`` > 0 is a static port, 0 a dynamic one.

    ``to`` is the mapped port (-1 = same as the allocated port, 0 = none).
    """

    label: str
    value: int = 0
    to: int = 0

    @classmethod
    def coerce(cls, port: Any) -> PortRequest:
        """This class from a dict or any object with ``label`` and ``static``/``value`` and ``to``
        (e.g. the job model's ``Port``)."""
        if isinstance(port, PortRequest):
            return port
        if isinstance(port, Mapping):
            return cls.from_dict(port)
        value = getattr(port, "static", None)
        if value is None:
            value = getattr(port, "value", 0)
        return cls(label=str(port.label), value=int(value or 0), to=int(getattr(port, "to", 0) or 0))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PortRequest:
        return cls(label=str(d.get("label", "")), value=int(d.get("value", d.get("static", 0)) or 0),
                   to=int(d.get("to", 0) or 0))


@dataclass(frozen=True)
class AllocatedPort:
    """A port given to an allocation. ``port`` is what ``NOMAD_PORT_<label>`` shows."""

    label: str
    value: int
    to: int
    host_ip: str

    @property
    def port(self) -> int:
        return self.to if self.to > 0 else self.value

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "value": self.value, "to": self.to, "host_ip": self.host_ip}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AllocatedPort:
        return cls(label=str(d["label"]), value=int(d["value"]), to=int(d.get("to", 0)),
                   host_ip=str(d["host_ip"]))


def parse_port_ranges(spec: str, *, field: str = "reserved_ports") -> set[int]:
    """Parse ``"22,80,8000-8100"`` into a set of ports; errors name ``field``."""
    out: set[int] = set()
    if not spec.strip():
        return out
    for raw in spec.split(","):
        part = raw.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise InvalidConfigError(f'{field}: invalid port or range "{part}"; use e.g. "22,80,8000-8100"')
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
            raise InvalidConfigError(f'{field}: port "{part}" is outside 1-65535')
        if lo > hi:
            raise InvalidConfigError(f'{field}: range "{part}" has its lower bound above its upper bound')
        out.update(range(lo, hi + 1))
    return out


def _bindable(host_ip: str, port: int) -> OSError | None:
    """None if both a TCP and a UDP socket can bind ``host_ip:port`` now, else the error."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(family, kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host_ip, port))
        except OSError as e:
            return e
        finally:
            s.close()
    return None


class PortAllocator:
    """Hands out host ports to allocations; thread-safe."""

    def __init__(self, host_ip: str = "127.0.0.1", *, min_port: int = DEFAULT_MIN_DYNAMIC_PORT,
                 max_port: int = DEFAULT_MAX_DYNAMIC_PORT, reserved: Iterable[int] | str = (),
                 check_bindable: bool = True, rng: random.Random | None = None) -> None:
        for name, v in (("min_dynamic_port", min_port), ("max_dynamic_port", max_port)):
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 65535:
                raise InvalidConfigError(f"{name} must be a port number between 1 and 65535, got {v!r}")
        if min_port > max_port:
            raise InvalidConfigError(
                f"min_dynamic_port ({min_port}) must not be greater than max_dynamic_port ({max_port})")
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host_ip else socket.AF_INET, host_ip)
        except OSError:
            raise InvalidConfigError(f'host address "{host_ip}" is not an IP address') from None
        self.host_ip = host_ip
        self.min_port = min_port
        self.max_port = max_port
        self.reserved = parse_port_ranges(reserved) if isinstance(reserved, str) else set(reserved)
        self.check_bindable = check_bindable
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._owner: dict[int, tuple[str, str]] = {}  # port -> (alloc_id, label)
        self._by_alloc: dict[str, list[AllocatedPort]] = {}

    # -- queries ------------------------------------------------------------------------------

    def ports_of(self, alloc_id: str) -> list[AllocatedPort]:
        with self._lock:
            return list(self._by_alloc.get(alloc_id, ()))

    def owner(self, port: int) -> tuple[str, str] | None:
        """(alloc_id, label) holding ``port``, or None."""
        with self._lock:
            return self._owner.get(port)

    # -- allocate / release -------------------------------------------------------------------

    def allocate(self, alloc_id: str, requests: Sequence[Any]) -> list[AllocatedPort]:
        """Give ``alloc_id`` a port per request (all or none). Static ports first, then dynamic.

        ``requests`` are :class:`PortRequest` s, dicts, or job-model ports (see :meth:`PortRequest.coerce`).

        Raises :class:`InvalidConfigError` for bad requests and static-port collisions, and
        :class:`UnavailableError` when the dynamic range has no free port left.
        """
        requests = [PortRequest.coerce(r) for r in requests]
        self._validate(requests)
        with self._lock:
            if alloc_id in self._by_alloc:
                raise InvalidConfigError(f'allocation "{alloc_id}" already has ports; release them first')
            taken: dict[int, str] = {}
            got: dict[str, AllocatedPort] = {}
            for r in requests:
                if r.value <= 0:
                    continue
                why = self._unavailable(r.value, taken)
                if why:
                    raise InvalidConfigError(
                        f'port collision: static port {r.value} (label "{r.label}") {why}')
                taken[r.value] = r.label
                got[r.label] = AllocatedPort(r.label, r.value, r.value if r.to == -1 else r.to, self.host_ip)
            for r in requests:
                if r.value > 0:
                    continue
                port = self._pick_dynamic(taken)
                if port is None:
                    raise UnavailableError(
                        f'dynamic port selection failed for label "{r.label}": no free port in '
                        f"{self.min_port}-{self.max_port} on {self.host_ip}", recoverable=False)
                taken[port] = r.label
                got[r.label] = AllocatedPort(r.label, port, port if r.to == -1 else r.to, self.host_ip)
            result = [got[r.label] for r in requests]
            self._record(alloc_id, result)
            return list(result)

    def restore(self, alloc_id: str, ports: Sequence[AllocatedPort]) -> None:
        """Re-mark ports an allocation held before an agent restart (no bind check: its tasks hold them)."""
        with self._lock:
            for p in ports:
                holder = self._owner.get(p.value)
                if holder is not None and holder[0] != alloc_id:
                    raise InvalidConfigError(
                        f'port collision: port {p.value} (label "{p.label}") of allocation "{alloc_id}" '
                        f'is held by allocation "{holder[0]}" (label "{holder[1]}")')
            self._release_locked(alloc_id)
            self._record(alloc_id, list(ports))

    def release(self, alloc_id: str) -> list[AllocatedPort]:
        """Free every port of ``alloc_id`` (no-op if it has none); returns what was freed."""
        with self._lock:
            return self._release_locked(alloc_id)

    # -- internals ----------------------------------------------------------------------------

    def _record(self, alloc_id: str, ports: list[AllocatedPort]) -> None:
        self._by_alloc[alloc_id] = ports
        for p in ports:
            self._owner[p.value] = (alloc_id, p.label)

    def _release_locked(self, alloc_id: str) -> list[AllocatedPort]:
        ports = self._by_alloc.pop(alloc_id, [])
        for p in ports:
            if self._owner.get(p.value, ("",))[0] == alloc_id:
                del self._owner[p.value]
        return ports

    def _validate(self, requests: Sequence[PortRequest]) -> None:
        errs: list[str] = []
        seen: set[str] = set()
        for r in requests:
            if not r.label or not _LABEL_RE.match(r.label):
                errs.append(f'port label "{r.label}" is invalid: use letters, digits, "_", "-" or "."')
            elif r.label in seen:
                errs.append(f'port label "{r.label}" is used more than once')
            seen.add(r.label)
            if not 0 <= r.value <= 65535:
                errs.append(f'port "{r.label}": static value {r.value} is outside 0-65535')
            if not -1 <= r.to <= 65535:
                errs.append(f'port "{r.label}": "to" value {r.to} is outside -1..65535')
        if errs:
            raise InvalidConfigError("; ".join(errs))

    def _unavailable(self, port: int, taken: Mapping[int, str]) -> str:
        if port in taken:
            return f'is requested twice in this allocation (also by label "{taken[port]}")'
        holder = self._owner.get(port)
        if holder is not None:
            return f'is already in use by allocation "{holder[0]}" (label "{holder[1]}")'
        if port in self.reserved:
            return "is reserved on this node"
        if self.check_bindable:
            err = _bindable(self.host_ip, port)
            if err is not None:
                reason = "address already in use" if err.errno == errno.EADDRINUSE else str(err)
                return f"cannot be bound on {self.host_ip}: {reason}"
        return ""

    def _pick_dynamic(self, taken: Mapping[int, str]) -> int | None:
        lo, hi = self.min_port, self.max_port
        for _ in range(_RANDOM_TRIES):
            p = self._rng.randint(lo, hi)
            if not self._unavailable(p, taken):
                return p
        start = self._rng.randint(lo, hi)
        span = hi - lo + 1
        for i in range(span):
            p = lo + (start - lo + i) % span
            if not self._unavailable(p, taken):
                return p
        return None
