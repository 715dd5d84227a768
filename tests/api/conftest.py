"""Fixtures: a real uvicorn server (unix socket + TCP on a free port) in front of an agent."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from rawexec.agent.agent import Agent
from rawexec.agent.agentconfig import AgentConfig
from rawexec.api.server import ApiServer


@dataclass
class Served:
    server: ApiServer
    agent: Agent
    unix: httpx.Client
    tcp: httpx.Client
    data_dir: str


def make_config(data_dir: str, *, acl: bool = False) -> AgentConfig:
    return AgentConfig(data_dir=data_dir, name="test-node", acl_enabled=acl, bind_addr="127.0.0.1", http_port=None)


@pytest.fixture
def short_dir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="rxapi-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _serve(data_dir: str, *, acl: bool) -> Iterator[Served]:
    cfg = make_config(data_dir, acl=acl)
    agent = Agent(cfg, dev=True)
    agent.start()
    server = ApiServer(agent, agent.config, tcp=("127.0.0.1", 0))
    server.start()
    assert server.http_url is not None
    unix = httpx.Client(base_url="http://rawexec", transport=httpx.HTTPTransport(uds=server.unix_path), timeout=30)
    tcp = httpx.Client(base_url=server.http_url, timeout=30)
    try:
        yield Served(server, agent, unix, tcp, data_dir)
    finally:
        unix.close()
        tcp.close()
        server.stop()
        agent.shutdown(stop_tasks=True, timeout=20)


@pytest.fixture
def served(short_dir: str) -> Iterator[Served]:
    yield from _serve(short_dir, acl=False)


@pytest.fixture
def served_acl(short_dir: str) -> Iterator[Served]:
    yield from _serve(short_dir, acl=True)
