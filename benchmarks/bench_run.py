"""``rawexec run`` of a job with ``count = N`` sleep tasks: time from the command's start until every
task is running (target: <= 1.5 s for N = 200), the idle agent's CPU (target < 1 % of a core) and
RSS (target <= 60 MB), then Ctrl-C and the time until everything stopped.

    .venv/bin/python benchmarks/bench_run.py [N] [REPEATS] [--baseline-src DIR] [--pyc]

``--baseline-src DIR``: also run ``rawexec run`` with ``PYTHONPATH=DIR`` (a copy of ``src/`` from
before a change, e.g. ``git archive <rev> src | tar -x -C /tmp/base``), interleaved with this tree's
runs, and print both side by side with the ratio. Besides wall time (noisy on a shared machine) it
prints the CPU time the ``rawexec run`` process used until every task ran, and its spawner's.

The runs' files go under ``TMPDIR``: ``TMPDIR=DIR`` with ``benchmarks/node-disk.sh DIR`` puts them
on an ext4 with its journal, as a node's disk usually is (this VM's root file system has none).

``--supervisor-path DIR`` (a ``pip install --target DIR supervisor==4.3.0``): also start supervisord
4.3 with the same N programs (``/bin/sleep 1000``, ``startsecs = 0``, output to log files, as ours),
interleaved with this tree's runs: the issue's reference ("~0.6 s for 200 programs, including its
boot"). "All running" is then when N sleeps exist: as root counted in a cgroup2 dir of its own
(one small read per 5 ms), else by a /proc scan every 50 ms (coarser, and it costs CPU).

``--pyc``: give ``src/`` (and the baseline) a bytecode cache, as an installed package has (pip
compiles it; a source checkout writes ``__pycache__``), and the compiled dataclass methods a first
start writes next to it (``rawexec/_dccache.py``). Without it, an environment with
``PYTHONDONTWRITEBYTECODE=1`` and no ``__pycache__`` compiles every module on every start.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout: its test helpers
from benchmarks import supervisord  # noqa: E402
from tests.helpers.util import pids_with_tag  # noqa: E402

RAWEXEC = ROOT / ".venv" / "bin" / "rawexec"


def job_text(n: int) -> str:
    return f'''
job "bench" {{
  type = "service"
  group "sleepers" {{
    count = {n}
    task "sleep" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sleep"
        args    = ["1000"]
      }}
      logs {{
        max_files     = 1
        max_file_size = 1
      }}
    }}
  }}
}}
'''


def _cpu(p: psutil.Process) -> float:
    try:
        t = p.cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0


_WARM = ("import rawexec.cli.main, rawexec.cli.run_cmd, rawexec.agent.agent, rawexec.jobspec, "
         "rawexec.executor.spawner")

PYC_ENV: dict[str, str] = {}
"""With --pyc: PYTHONPYCACHEPREFIX for the measured processes."""

LEFT: list[str] = []
"""The runs' temp dirs, removed after the last run: removing 200 alloc dirs (thousands of inodes)
right before the next run would slow that run's file creations (on this VM's ext4 without a
journal, making an inode skips every inode deleted in the last minutes)."""


def run_once(n: int, src: str | None = None) -> tuple[float, float, float, float, float, float, float]:
    env = dict(os.environ)
    if PYC_ENV:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(PYC_ENV)
    if src:
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    tmp = tempfile.mkdtemp(prefix="bench-run-")
    LEFT.append(tmp)
    jf = Path(tmp, "bench.nomad.hcl")
    jf.write_text(job_text(n))
    t0 = time.monotonic()
    proc = subprocess.Popen([str(RAWEXEC), "run", "-data-dir", str(Path(tmp, "data")), str(jf)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    all_running = reported = -1.0
    agent_cpu = spawner_cpu = 0.0
    for line in proc.stdout:
        m = re.search(r"All (\d+) main task\(s\) started \(([\d.]+)s", line)
        if m:
            all_running = time.monotonic() - t0
            reported = float(m.group(2))
            ps = psutil.Process(proc.pid)
            agent_cpu = _cpu(ps)
            spawner_cpu = sum(_cpu(c) for c in ps.children())
            break
    if all_running < 0:
        proc.kill()
        raise SystemExit("rawexec run never reported all tasks running:\n" + (proc.stdout.read() or ""))
    time.sleep(2.0)  # let the starts settle, then measure the idle agent (10 s window)
    ps = psutil.Process(proc.pid)
    c0 = sum(ps.cpu_times()[:2])
    time.sleep(10.0)
    idle_cpu = (sum(ps.cpu_times()[:2]) - c0) / 10.0 * 100
    rss = ps.memory_info().rss / 1e6
    t1 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.stdout.read()
    rc = proc.wait(120)
    stopped = time.monotonic() - t1
    if rc != 130:
        raise SystemExit(f"rawexec run exited {rc}, expected 130 after Ctrl-C")
    return all_running, reported, stopped, idle_cpu, rss, agent_cpu, spawner_cpu


_UNIFIED = "/sys/fs/cgroup/unified" if os.path.exists("/sys/fs/cgroup/unified/cgroup.procs") else "/sys/fs/cgroup"


def supervisord_once(n: int, path: str) -> tuple[float, float, float]:
    """supervisord 4.3 with ``n`` sleep programs: (seconds from exec until all run, its CPU until
    then, seconds from SIGTERM until it exited with every program stopped)."""
    tmp = tempfile.mkdtemp(prefix="bench-run-supd-")
    LEFT.append(tmp)
    tag = f"BENCH_RUN_SUPD={os.getpid()}{time.monotonic_ns()}"
    key, value = tag.split("=")
    progs = "".join(f"""
[program:sleep{i}]
command=/bin/sleep 1000
environment={key}="{value}"
startsecs=0
autorestart=false
stdout_logfile={tmp}/sleep{i}.stdout
stderr_logfile={tmp}/sleep{i}.stderr
stdout_logfile_maxbytes=1MB
stdout_logfile_backups=1
stderr_logfile_maxbytes=1MB
stderr_logfile_backups=1
""" for i in range(n))
    conf = supervisord.write_conf(tmp, progs)
    cg = os.path.join(_UNIFIED, f"bench-run-supd-{os.getpid()}") if os.geteuid() == 0 else None
    if cg is not None:
        os.mkdir(cg)

    def join() -> None:
        if cg is not None:
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write("0")

    t0 = time.monotonic()
    proc = supervisord.popen(path, conf, preexec_fn=join)
    try:
        while True:
            if cg is not None:
                with open(os.path.join(cg, "cgroup.procs"), "rb") as f:
                    running = f.read().count(b"\n") - 1  # supervisord itself is one of them
                time.sleep(0.005)
            else:
                running = len(pids_with_tag(tag))
                time.sleep(0.05)
            if running >= n:
                break
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                raise SystemExit("supervisord did not start every program")
        all_running = time.monotonic() - t0
        cpu = _cpu(psutil.Process(proc.pid))
        time.sleep(2.0)
        t1 = time.monotonic()
        proc.terminate()
        proc.wait(120)
        stopped = time.monotonic() - t1
        return all_running, cpu, stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if cg is not None:
            with open(os.path.join(cg, "cgroup.procs"), "rb") as left:
                for pid in left.read().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            for _ in range(100):
                try:
                    os.rmdir(cg)
                    break
                except OSError:
                    time.sleep(0.05)


def _line(r: tuple[float, ...]) -> str:
    return (f"all running after {r[0]:.3f}s from exec (agent's own figure {r[1]:.3f}s from process start; "
            f"CPU until then: rawexec run {r[5]:.2f}s, spawner {r[6]:.2f}s); Ctrl-C -> all stopped in "
            f"{r[2]:.3f}s; idle agent CPU {r[3]:.2f}% of a core, RSS {r[4]:.1f} MB")


def _stats(results: list[tuple[float, ...]], i: int) -> tuple[float, float]:
    vals = sorted(r[i] for r in results)
    return vals[0], vals[len(vals) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", nargs="?", type=int, default=200, help="tasks in the job (count), default 200")
    ap.add_argument("repeats", nargs="?", type=int, default=3, help="runs, default 3")
    ap.add_argument("--baseline-src", metavar="DIR", help="also run this copy of src/, interleaved")
    ap.add_argument("--supervisor-path", metavar="DIR", help="also run supervisord 4.3 from this --target dir")
    ap.add_argument("--pyc", action="store_true", help="give src/ a bytecode cache, as an installed package has")
    opts = ap.parse_args()
    base_src, supd, pyc, n, repeats = opts.baseline_src, opts.supervisor_path, opts.pyc, opts.n, opts.repeats
    if pyc:
        PYC_ENV["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="bench-run-pyc-")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | PYC_ENV
        for tree in filter(None, (str(ROOT / "src"), base_src)):
            subprocess.run([sys.executable, "-m", "compileall", "-q", tree], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            # and what a first start leaves next to the .pyc files (rawexec/_dccache.py: the
            # compiled dataclass methods), so every measured run is a later one
            subprocess.run([sys.executable, "-c", _WARM], env=env | {"PYTHONPATH": tree}, check=True)
    print(f"rawexec run, count = {n} sleep tasks; {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; bytecode cache: "
          + ("yes (--pyc)" if pyc else "as the environment has it"
             + (" (PYTHONDONTWRITEBYTECODE=1: none for src/)" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "")))
    results: list[tuple[float, ...]] = []
    base: list[tuple[float, ...]] = []
    sups: list[tuple[float, float, float]] = []
    try:
        for i in range(repeats):
            r = run_once(n)
            results.append(r)
            print(f"  run {i + 1}: {_line(r)}")
            if base_src:
                b = run_once(n, base_src)
                base.append(b)
                print(f"  baseline run {i + 1}: {_line(b)}")
            if supd:
                sv = supervisord_once(n, supd)
                sups.append(sv)
                print(f"  supervisord run {i + 1}: all running after {sv[0]:.3f}s from exec (its CPU until then "
                      f"{sv[1]:.2f}s); SIGTERM -> all stopped in {sv[2]:.3f}s")
    finally:
        for tmp in LEFT:
            shutil.rmtree(tmp, ignore_errors=True)
    rows: tuple[tuple[str, int, str, float | None], ...] = (
        ("all running", 0, "s", 1.5), ("CPU of rawexec run until all running", 5, "s", None),
        ("idle agent CPU", 3, "% of a core", 1.0), ("RSS", 4, " MB", 60.0))
    for name, idx, unit, target in rows:
        best, med = _stats(results, idx)
        line = f"{name}: best {best:.3f}{unit}, median {med:.3f}{unit}"
        if base:
            bbest, bmed = _stats(base, idx)
            ratio = f"{med / bmed:.2f}x" if bmed else "n/a"  # an idle agent's CPU can round to 0
            line += f"; baseline best {bbest:.3f}{unit}, median {bmed:.3f}{unit} (median ratio {ratio})"
        if target is not None:
            line += f" (target {'<' if idx == 3 else '<='} {target}{unit}: median {med / target:.2f}x of it)"
        print(line)
    if sups:
        sv_best, sv_med = min(x[0] for x in sups), sorted(x[0] for x in sups)[len(sups) // 2]
        _, med = _stats(results, 0)
        print(f"supervisord 4.3, all running: best {sv_best:.3f}s, median {sv_med:.3f}s (rawexec run's median "
              f"is {med / sv_med:.2f}x of it)")
    if PYC_ENV:
        shutil.rmtree(PYC_ENV["PYTHONPYCACHEPREFIX"], ignore_errors=True)


if __name__ == "__main__":
    main()
