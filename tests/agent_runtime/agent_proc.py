"""An agent in its own process, for crash tests: ``python -m tests.agent_runtime.agent_proc DATA STATE TAG [JOB]``.

Prints ``READY`` once started (and the job registered); SIGTERM leaves the tasks running.
"""

from __future__ import annotations

import os
import signal
import sys

from rawexec.agent.agent import Agent
from rawexec.agent.agentconfig import AgentConfig, RawExecPluginConfig
from rawexec.driver import DriverConfig
from rawexec.jobspec import parse_file


def main() -> None:
    data_dir, state_dir, tag = sys.argv[1:4]
    cfg = AgentConfig(data_dir=data_dir, raw_exec=RawExecPluginConfig(enabled=True, no_cgroups=True))
    agent = Agent(cfg, driver_config=DriverConfig(no_cgroups=True, state_dir=state_dir))
    k, _, v = tag.partition("=")
    agent.host_env[k] = v
    agent.start()
    if len(sys.argv) > 4:
        agent.register_job(parse_file(sys.argv[4]))
    print("READY", flush=True)

    def term(signum: int, frame: object) -> None:
        agent.shutdown(stop_tasks=False)
        os._exit(0)

    signal.signal(signal.SIGTERM, term)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
