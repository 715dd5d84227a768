"""Port allocation: real binds, collisions, release, restore."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest

from rawexec.agent.ports import AllocatedPort, PortAllocator, PortRequest, parse_port_ranges
from rawexec.errors import InvalidConfigError, UnavailableError


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port some other process-like owner is listening on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dynamic_ports_in_default_range_and_bindable() -> None:
    pa = PortAllocator(rng=random.Random(1))
    assert (pa.min_port, pa.max_port) == (20000, 32000)
    got = pa.allocate("a1", [PortRequest("http"), PortRequest("db", to=-1), PortRequest("x", to=8080)])
    assert [p.label for p in got] == ["http", "db", "x"]
    assert len({p.value for p in got}) == 3
    for p in got:
        assert 20000 <= p.value <= 32000 and p.host_ip == "127.0.0.1"
        with socket.socket() as s:  # really free
            s.bind(("127.0.0.1", p.value))
    assert got[1].to == got[1].value and got[1].port == got[1].value
    assert got[2].port == 8080 and got[0].port == got[0].value
    assert pa.ports_of("a1") == got
    assert pa.owner(got[0].value) == ("a1", "http")


def test_static_collision_between_allocs_and_release() -> None:
    port = free_port()
    pa = PortAllocator()
    [p] = pa.allocate("a1", [PortRequest("web", value=port)])
    assert p == AllocatedPort("web", port, 0, "127.0.0.1")
    with pytest.raises(InvalidConfigError,
                       match=f'port collision: static port {port} \\(label "api"\\) is already in use by '
                             'allocation "a1" \\(label "web"\\)'):
        pa.allocate("a2", [PortRequest("api", value=port)])
    assert pa.ports_of("a2") == []
    assert pa.release("a1") == [p]
    assert pa.release("a1") == []
    assert pa.allocate("a2", [PortRequest("api", value=port)])[0].value == port


def test_static_port_held_by_foreign_socket(listener: int) -> None:
    pa = PortAllocator()
    with pytest.raises(InvalidConfigError, match=f"static port {listener} .* cannot be bound on 127.0.0.1: "
                                                 "address already in use"):
        pa.allocate("a1", [PortRequest("web", value=listener)])


def test_all_or_nothing(listener: int) -> None:
    pa = PortAllocator()
    ok = free_port()
    with pytest.raises(InvalidConfigError):
        pa.allocate("a1", [PortRequest("a", value=ok), PortRequest("b", value=listener)])
    assert pa.owner(ok) is None and pa.ports_of("a1") == []


def test_dynamic_skips_busy_and_exhausts(listener: int) -> None:
    pa = PortAllocator(min_port=listener, max_port=listener)
    with pytest.raises(UnavailableError, match=f'dynamic port selection failed for label "http": '
                                               f"no free port in {listener}-{listener} on 127.0.0.1"):
        pa.allocate("a1", [PortRequest("http")])
    port = free_port()
    pa = PortAllocator(min_port=port, max_port=port)
    assert pa.allocate("a1", [PortRequest("http")])[0].value == port
    with pytest.raises(UnavailableError):
        pa.allocate("a2", [PortRequest("http")])
    pa.release("a1")
    assert pa.allocate("a2", [PortRequest("http")])[0].value == port


def test_reserved_ports_and_restore() -> None:
    port = free_port()
    pa = PortAllocator(reserved=f"{port}")
    with pytest.raises(InvalidConfigError, match="is reserved on this node"):
        pa.allocate("a1", [PortRequest("web", value=port)])
    pa2 = PortAllocator(check_bindable=False)
    held = [AllocatedPort("web", 25000, 0, "127.0.0.1")]
    pa2.restore("a1", held)
    assert pa2.owner(25000) == ("a1", "web")
    with pytest.raises(InvalidConfigError, match='held by allocation "a1"'):
        pa2.restore("a9", [AllocatedPort("x", 25000, 0, "127.0.0.1")])
    assert AllocatedPort.from_dict(held[0].to_dict()) == held[0]


def test_bad_input() -> None:
    pa = PortAllocator()
    with pytest.raises(InvalidConfigError, match='port label "http" is used more than once'):
        pa.allocate("a", [PortRequest("http"), PortRequest("http")])
    with pytest.raises(InvalidConfigError, match='port label "a b" is invalid'):
        pa.allocate("a", [PortRequest("a b")])
    with pytest.raises(InvalidConfigError, match="static value 70000 is outside"):
        pa.allocate("a", [PortRequest("x", value=70000)])
    pa.allocate("a", [])
    with pytest.raises(InvalidConfigError, match='allocation "a" already has ports'):
        pa.allocate("a", [])
    with pytest.raises(InvalidConfigError, match="must not be greater than max_dynamic_port"):
        PortAllocator(min_port=30000, max_port=20000)
    with pytest.raises(InvalidConfigError, match="max_dynamic_port must be a port number"):
        PortAllocator(max_port=70000)
    with pytest.raises(InvalidConfigError, match='host address "localhost" is not an IP address'):
        PortAllocator("localhost")


def test_parse_port_ranges() -> None:
    assert parse_port_ranges("22, 80,8000-8002") == {22, 80, 8000, 8001, 8002}
    assert parse_port_ranges("") == set()
    for bad, msg in (("abc", "invalid port or range"), ("10-5", "lower bound above"),
                     ("0", "outside 1-65535"), ("1,,2", "invalid port or range")):
        with pytest.raises(InvalidConfigError, match=msg):
            parse_port_ranges(bad)


def test_accepts_job_model_ports_and_dicts() -> None:
    from rawexec.jobspec.model import Port

    port = free_port()
    pa = PortAllocator()
    got = pa.allocate("a", [Port(label="web", static=port), Port(label="dyn", to=-1), {"label": "d2"}])
    assert got[0].value == port and got[1].to == got[1].value and got[2].label == "d2"
