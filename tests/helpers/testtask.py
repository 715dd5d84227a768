"""A scriptable fake task, in the spirit of Nomad's helper/testtask.

Run as ``python testtask.py OP [ARGS] OP [ARGS] ...``; ops run in order:

  sleep SECONDS            sleep (float seconds)
  echo MSG                 print MSG and a newline to stdout (flushed)
  eecho MSG                the same to stderr
  write MSG FILE           write MSG to FILE (mode 0666)
  pgrp N                   setpgid(0, N) (0 = a new process group)
  setsid                   start a new session
  fork/exec PIDFILE OPS..  run the remaining ops in a child; write its pid to PIDFILE; wait for it
  spawn PIDFILE OPS..      like fork/exec but do not wait: the parent then sleeps 100 s
  daemon PIDFILE OPS..     double-fork: the grandchild (new session) runs the remaining ops
  ignore SIG               ignore a signal (e.g. SIGTERM)
  trap SIG CODE MSG        on SIG print MSG and exit CODE
  forkstorm N PIDFILE      fork N children that each sleep forever (pids appended to PIDFILE)
  alloc MB                 allocate and touch MB megabytes, keep them
  busy SECONDS             spin the CPU
  exit CODE                exit with CODE
"""

from __future__ import annotations

import os
import signal
import sys
import time

_held: list[bytearray] = []


def _write_pid(path: str, pid: int, append: bool = False) -> None:
    with open(path, "a" if append else "w") as f:
        f.write(f"{pid}\n")
    os.chmod(path, 0o777)


def run(ops: list[str]) -> None:
    i = 0
    while i < len(ops):
        op = ops[i]
        i += 1
        if op == "sleep":
            time.sleep(float(ops[i]))
            i += 1
        elif op == "echo":
            print(ops[i], flush=True)
            i += 1
        elif op == "eecho":
            print(ops[i], file=sys.stderr, flush=True)
            i += 1
        elif op == "write":
            with open(ops[i + 1], "w") as f:
                f.write(ops[i])
            os.chmod(ops[i + 1], 0o666)
            i += 2
        elif op == "pgrp":
            os.setpgid(0, int(ops[i]))
            i += 1
        elif op == "setsid":
            os.setsid()
        elif op in ("fork/exec", "spawn"):
            pidfile, rest = ops[i], ops[i + 1:]
            pid = os.fork()
            if pid == 0:
                run(rest)
                os._exit(0)
            _write_pid(pidfile, pid)
            if op == "fork/exec":
                os.waitpid(pid, 0)
            else:
                time.sleep(100)
            return
        elif op == "daemon":
            pidfile, rest = ops[i], ops[i + 1:]
            pid = os.fork()
            if pid == 0:
                os.setsid()
                if os.fork() == 0:
                    _write_pid(pidfile, os.getpid())
                    run(rest)
                    os._exit(0)
                os._exit(0)
            os.waitpid(pid, 0)
            return
        elif op == "ignore":
            signal.signal(getattr(signal, ops[i]), signal.SIG_IGN)
            i += 1
        elif op == "trap":
            sig, code, msg = getattr(signal, ops[i]), int(ops[i + 1]), ops[i + 2]

            def handler(_s: int, _f: object, code: int = code, msg: str = msg) -> None:
                print(msg, flush=True)
                os._exit(code)

            signal.signal(sig, handler)
            i += 3
        elif op == "forkstorm":
            n, pidfile = int(ops[i]), ops[i + 1]
            for _ in range(n):
                pid = os.fork()
                if pid == 0:
                    while True:
                        time.sleep(3600)
                _write_pid(pidfile, pid, append=True)
            i += 2
        elif op == "alloc":
            block = bytearray(int(ops[i]) * 1024 * 1024)
            for off in range(0, len(block), 4096):
                block[off] = 1
            _held.append(block)
            i += 1
        elif op == "busy":
            end = time.monotonic() + float(ops[i])
            while time.monotonic() < end:
                pass
            i += 1
        elif op == "exit":
            sys.stdout.flush()
            os._exit(int(ops[i]))
        else:
            print(f"testtask: unknown op {op!r}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    run(sys.argv[1:])
