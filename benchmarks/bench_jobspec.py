"""Benchmark: parse + validate a generated job file with 200 tasks (target ≤ 200 ms).

Run: ``.venv/bin/python benchmarks/bench_jobspec.py [--tasks N] [--rounds R] [--baseline REV|none]``.
Prints the file size and min/median wall and CPU time of ``parse_hcl`` (parse, evaluate, decode,
validate), of ``parse_json`` on the same job's API JSON, and of ``to_api_json``; next to each, the
same figures for the source tree of git revision ``--baseline`` (default: the last commit before the
parser work), run in a child process round by round with this tree, so both see the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rawexec.jobspec import parse_hcl, parse_json, to_api_json

__all__ = ["generate_job", "main"]

#: The revision whose ``src/`` is the baseline: python-hcl2's Lark parser called as it comes.
BASELINE_REV = "ec2a0de"
ROOT = Path(__file__).resolve().parent.parent


def generate_job(tasks: int = 200, tasks_per_group: int = 10) -> str:
    """A realistic job file: variables, locals, several groups, every common task block."""
    parts = [
        'variable "image_version" {\n  type    = string\n  default = "1.2.3"\n}\n',
        'variable "replicas" {\n  type    = number\n  default = 2\n'
        '  validation {\n    condition     = var.replicas > 0\n    error_message = "replicas must be positive"\n'
        "  }\n}\n",
        'locals {\n  base = "/opt/app-${var.image_version}"\n'
        '  common_env = { APP_ENV = "prod", LOG_LEVEL = "info" }\n}\n',
        'job "bench" {\n  datacenters = ["dc1"]\n  type = "service"\n  meta { owner = "bench" }\n',
    ]
    groups = (tasks + tasks_per_group - 1) // tasks_per_group
    n = 0
    for g in range(groups):
        parts.append(f'  group "g{g}" {{\n    count = var.replicas\n'
                     '    restart {\n      attempts = 3\n      interval = "5m"\n      delay = "15s"\n'
                     '      mode = "delay"\n    }\n'
                     f'    network {{\n      port "http" {{ to = {8000 + g} }}\n    }}\n')
        for _ in range(tasks_per_group):
            if n >= tasks:
                break
            parts.append(
                f'    task "t{n}" {{\n'
                '      driver = "raw_exec"\n'
                '      config {\n'
                f'        command = "${{local.base}}/bin/server"\n'
                f'        args    = ["--port", "${{NOMAD_PORT_http}}", "--id", "{n}", upper("x{n}")]\n'
                '      }\n'
                '      env = merge(local.common_env, { TASK = "t' + str(n) + '" })\n'
                '      artifact {\n'
                '        source      = "https://example.com/app.tar.gz"\n'
                '        destination = "local/app"\n'
                '        options {\n'
                '          checksum = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"\n'
                '        }\n'
                '      }\n'
                '      resources {\n        cpu    = 200\n        memory = 128\n      }\n'
                '      logs {\n        max_files     = 3\n        max_file_size = 5\n      }\n'
                '      kill_timeout = "10s"\n'
                '    }\n')
            n += 1
        parts.append("  }\n")
    parts.append("}\n")
    return "".join(parts)


def _once(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU milliseconds of one call (CPU time is steadier on a busy machine)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000


#: The child that times the baseline tree: one command per line in, "wall cpu" per line out.
_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[2])
from bench_jobspec import generate_job
from rawexec.jobspec import parse_hcl, parse_json, to_api_json
import time
text = generate_job(int(sys.argv[1]))
job = parse_hcl(text, env={})
api = json.dumps(to_api_json(job))
fns = {"parse_hcl+validate": lambda: parse_hcl(text, env={}), "parse_json+validate": lambda: parse_json(api),
       "to_api_json": lambda: to_api_json(job)}
print("ready", flush=True)
for line in sys.stdin:
    t0, c0 = time.perf_counter(), time.process_time()
    fns[line.strip()]()
    print((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000, flush=True)
"""


class _Baseline:
    """The baseline source tree (``git archive`` of a revision) timed in a child process."""

    def __init__(self, rev: str, tasks: int) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-jobspec-")
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", self.tmp.name], input=archive.stdout, check=True)
        env = dict(os.environ, PYTHONPATH=os.path.join(self.tmp.name, "src"))
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(tasks), str(Path(__file__).parent)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def once(self, name: str) -> tuple[float, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        wall, cpu = self.proc.stdout.readline().split()
        return float(wall), float(cpu)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.tmp.cleanup()


def _fmt(wall: list[float], cpu: list[float]) -> str:
    return (f"cpu min {min(cpu):7.1f} median {statistics.median(cpu):7.1f} | "
            f"wall min {min(wall):7.1f} median {statistics.median(wall):7.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--baseline", default=BASELINE_REV, help="git revision to compare with, or 'none'")
    args = ap.parse_args()
    text = generate_job(args.tasks)
    job = parse_hcl(text, env={})
    assert sum(len(g.tasks) for g in job.groups) == args.tasks
    api = json.dumps(to_api_json(job))
    fns: dict[str, Callable[[], object]] = {
        "parse_hcl+validate": lambda: parse_hcl(text, env={}),
        "parse_json+validate": lambda: parse_json(api),
        "to_api_json": lambda: to_api_json(job),
    }
    base = None if args.baseline == "none" else _Baseline(args.baseline, args.tasks)
    now: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in fns}
    then: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in fns}
    try:
        for _ in range(args.rounds):  # alternate with the baseline: both see the same machine load
            for name, fn in fns.items():
                for res, (wall, cpu) in ((now, _once(fn)), (then, base.once(name) if base else (0.0, 0.0))):
                    res[name][0].append(wall)
                    res[name][1].append(cpu)
    finally:
        if base is not None:
            base.close()
    print(f"job file: {args.tasks} tasks, {len(text) / 1024:.1f} KiB HCL, {len(api) / 1024:.1f} KiB API JSON; "
          f"{args.rounds} rounds; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; milliseconds")
    for name in fns:
        print(f"  {name:20s} this tree:  {_fmt(*now[name])}")
        if base is not None:
            ratio = min(then[name][1]) / max(min(now[name][1]), 1e-9)
            # each round times both trees back to back: the median of the per-round ratios is the
            # figure that moves least with the load other processes put on the machine
            paired = statistics.median(b / max(a, 1e-9) for a, b in zip(now[name][1], then[name][1], strict=True))
            print(f"  {'':20s} baseline {args.baseline}: {_fmt(*then[name])}  -> x{ratio:.2f} (cpu min), "
                  f"x{paired:.2f} (median of per-round cpu ratios)")
    budget = 200.0
    best = min(now["parse_hcl+validate"][1])
    vs = ""
    if base is not None:
        was = min(then["parse_hcl+validate"][1])
        vs = f"; baseline {was:.0f} ms, x{was / best:.2f}"
    print(f"  target: parse_hcl+validate <= {budget:.0f} ms (best CPU time {best:.0f} ms{vs}) -> "
          f"{'OK' if best <= budget else 'OVER BUDGET'}")


if __name__ == "__main__":
    main()
