"""supervisord 4.3, the issues' reference supervisor, for the benchmarks that compare with it.

Install it next to the project, not into it: ``pip install --target DIR supervisor==4.3.0``, then
pass ``--supervisor-path DIR``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any


def write_conf(work: str, programs: str) -> str:
    """A supervisord.conf in ``work`` (its socket, log and pid file there too) running
    ``programs`` (``[program:x]`` sections), for ``supervisord`` and ``supervisorctl`` alike; its path."""
    conf = os.path.join(work, "supervisord.conf")
    with open(conf, "w") as f:
        f.write(f"""
[unix_http_server]
file={work}/supervisor.sock
[supervisord]
logfile={work}/supervisord.log
pidfile={work}/supervisord.pid
nodaemon=true
minfds=4096
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{work}/supervisor.sock
""" + programs)
    return conf


def popen(path: str, conf: str, **kw: Any) -> subprocess.Popen[bytes]:
    """supervisord from ``path`` in the foreground on ``conf``, its output dropped."""
    return subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-c", conf],
                            env=dict(os.environ, PYTHONPATH=path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **kw)


def ctl(path: str, conf: str, *args: str) -> None:
    """``supervisorctl ARGS`` on ``conf``; waits for it, whatever it answers."""
    subprocess.run([sys.executable, "-m", "supervisor.supervisorctl", "-c", conf, *args],
                   env=dict(os.environ, PYTHONPATH=path), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
