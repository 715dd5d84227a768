"""``rawexec agent [-dev] [-config FILE]... [-data-dir DIR]``: the agent and its HTTP API as a daemon.

SIGINT/SIGTERM shut the API and the agent down but leave the tasks running, so the next agent
on the same data dir recovers them. ``-dev`` without ``-data-dir`` uses a scratch dir whose
tasks are stopped (and the dir removed) at shutdown, like Nomad's dev agent.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import sys
from types import FrameType

import click

from rawexec import _dccache
from rawexec.agent.memory import limit_malloc_arenas
from rawexec.cli.client import dev_data_dir
from rawexec.cli.logwatch import Waker
from rawexec.errors import RawExecError, ValidationError

__all__ = ["agent_cmd"]

_LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
           "ERROR": logging.ERROR, "OFF": logging.CRITICAL + 1}


@click.command("agent")
@click.option("-dev", "--dev", "dev", is_flag=True, help="Development mode: raw_exec enabled, scratch data dir.")
@click.option("-config", "--config", "configs", multiple=True, metavar="PATH",
              help="A config file or a directory of *.hcl/*.json files (repeatable; later ones win).")
@click.option("-data-dir", "--data-dir", "data_dir", default=None, metavar="DIR", help="State directory.")
@click.option("-bind", "--bind", "bind", default=None, metavar="ADDR",
              help="Serve the HTTP API on TCP at this IP address too (the port: ports { http } in a config "
                   "file; non-loopback only with -acl-enabled).")
@click.option("-acl-enabled", "--acl-enabled", "acl_enabled", is_flag=True, default=None,
              help="Require ACL tokens on every API request.")
@click.option("-log-level", "--log-level", "log_level", default=None, metavar="LEVEL",
              help="TRACE, DEBUG, INFO, WARN, ERROR or OFF.")
def agent_cmd(dev: bool, configs: tuple[str, ...], data_dir: str | None, bind: str | None,
              acl_enabled: bool | None, log_level: str | None) -> None:
    """Run the rawexec agent and its HTTP API until SIGINT/SIGTERM."""
    limit_malloc_arenas()
    from rawexec.agent.agentconfig import LOG_LEVELS, bind_addr_problem, load_config

    try:
        config = load_config(list(configs), acl_enabled=bool(acl_enabled))
    except ValidationError as e:
        click.echo("==> Error loading configuration:", err=True)
        for err in e.errors:
            click.echo(f"    * {err}", err=True)
        sys.exit(1)
    except RawExecError as e:
        click.echo(f"==> Error loading configuration: {e}", err=True)
        sys.exit(1)
    scratch = False
    if data_dir:
        config = config.with_data_dir(data_dir)
    elif config.data_dir is None and dev:
        config = config.with_data_dir(dev_data_dir())
        scratch = True
    if bind is not None:
        # checked here, before anything starts (ApiServer checks again, for library callers)
        problem = bind_addr_problem(bind, acl_enabled=config.acl_enabled, name="-bind")
        if problem:
            click.echo(f"==> Error starting agent: {problem}", err=True)
            sys.exit(1)
        config = dataclasses.replace(config, bind_addr=bind)
    if log_level is not None:
        if log_level.upper() not in LOG_LEVELS:
            click.echo(f'==> Invalid log level: "{log_level}". Valid log levels are: [{" ".join(LOG_LEVELS)}]',
                       err=True)
            sys.exit(1)
        config = dataclasses.replace(config, log_level=log_level.upper())
    if not config.data_dir:
        click.echo("==> Must specify data directory: set data_dir in a config file, pass -data-dir DIR, "
                   "or use -dev", err=True)
        sys.exit(1)
    logging.basicConfig(level=_LEVELS.get(config.log_level, logging.INFO), stream=sys.stderr,
                        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    sys.exit(_run(config, dev=dev, scratch=scratch))


def _run(config: object, *, dev: bool, scratch: bool) -> int:
    from rawexec.agent.agent import Agent
    from rawexec.agent.agentconfig import AgentConfig
    from rawexec.api.server import ApiServer

    assert isinstance(config, AgentConfig)
    data_dir = config.require_data_dir()
    try:
        os.makedirs(data_dir, mode=0o711, exist_ok=True)
        if not os.access(data_dir, os.W_OK | os.X_OK):
            raise PermissionError(f"data_dir {data_dir} is not writable")
    except OSError as e:
        click.echo(f"==> Error starting agent: cannot use data_dir {data_dir}: {e.strerror or e}", err=True)
        return 1
    # The handler only appends and writes a byte: no lock. (It used to set a threading.Event,
    # which deadlocks when the signal lands while the main thread holds that Event's lock inside
    # its own wait(): the agent then ignored every later SIGINT/SIGTERM and had to be killed.)
    waker = Waker()
    caught: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        caught.append(signum)
        waker.wake()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    waker.wake_on_signals()  # also when the kernel hands the signal to another of our threads
    agent = Agent(config, dev=dev)
    try:
        agent.start()
    except (RawExecError, OSError) as e:
        click.echo(f"==> Error starting agent: {e}", err=True)
        return 1
    try:
        server = ApiServer(agent, agent.config)
        server.start()
    except (RawExecError, OSError) as e:
        click.echo(f"==> Error starting agent: {e}", err=True)
        agent.shutdown(stop_tasks=scratch)
        if scratch:
            shutil.rmtree(data_dir, ignore_errors=True)
        return 1
    c = agent.config
    click.echo("==> rawexec agent configuration:\n")
    rows = [("Node Name", c.name), ("Node ID", agent.node.get("ID", "")), ("Region", c.region),
            ("Datacenter", c.datacenter), ("Data Dir", data_dir), ("ACL", "enabled" if c.acl_enabled else "disabled"),
            ("raw_exec", "enabled" if c.raw_exec_enabled else "disabled (enable it in the plugin \"raw_exec\" block)"),
            ("API (unix)", f"unix://{server.unix_path}"), ("API (http)", server.http_url or "off")]
    for k, v in rows:
        click.echo(f"{k:>15}: {v}")
    click.echo("\n==> rawexec agent started! Log data will stream in below:\n", nl=True)
    sys.stdout.flush()
    _dccache.release()  # up: write the compiled dataclass methods for the next start, free the tables
    while not caught:
        waker.wait(5.0)  # woken at once; the timeout only bounds a handler that has yet to run
    name = "interrupt" if caught and caught[0] == signal.SIGINT else "terminated"
    click.echo(f"==> Caught signal: {name}")
    click.echo("==> Gracefully shutting down agent...")
    server.stop()
    agent.shutdown(stop_tasks=scratch)
    if scratch:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0
