"""Benchmark: parse + validate a generated job file with 200 tasks (target ≤ 200 ms).

Run: ``.venv/bin/python benchmarks/bench_jobspec.py [--tasks N] [--rounds R]``.
Prints the file size and min/median/max wall time of ``parse_hcl`` (parse, evaluate, decode,
validate), of ``parse_json`` on the same job's API JSON, and of ``to_api_json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

from rawexec.jobspec import parse_hcl, parse_json, to_api_json

__all__ = ["generate_job", "main"]


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


def _time(fn: Callable[[], object], rounds: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds per round (CPU time is steadier on a busy machine)."""
    wall, cpu = [], []
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    text = generate_job(args.tasks)
    job = parse_hcl(text, env={})
    assert sum(len(g.tasks) for g in job.groups) == args.tasks
    api = json.dumps(to_api_json(job))
    results = {
        "parse_hcl+validate": _time(lambda: parse_hcl(text, env={}), args.rounds),
        "parse_json+validate": _time(lambda: parse_json(api), args.rounds),
        "to_api_json": _time(lambda: to_api_json(job), args.rounds),
    }
    print(f"job file: {args.tasks} tasks, {len(text) / 1024:.1f} KiB HCL, {len(api) / 1024:.1f} KiB API JSON; "
          f"{args.rounds} rounds; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, (wall, cpu) in results.items():
        print(f"  {name:20s} wall min {min(wall):7.1f}  median {statistics.median(wall):7.1f} ms | "
              f"cpu min {min(cpu):7.1f}  median {statistics.median(cpu):7.1f} ms")
    budget = 200.0
    best = min(results["parse_hcl+validate"][1])
    print(f"  target: parse_hcl+validate <= {budget:.0f} ms (best CPU time {best:.0f} ms) -> "
          f"{'OK' if best <= budget else 'OVER BUDGET'}")


if __name__ == "__main__":
    main()
