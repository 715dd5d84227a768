"""The external plugin (``nomad-driver-rawexec``) as Nomad's client sees it.

Measures, in one run:

* launch -> handshake line (target <= 300 ms), next to bare ``python -c pass`` and
  ``python -c "import grpc"`` on the same machine (the floor any Python plugin pays);
* Kill: ``GRPCController/Shutdown`` -> process exited (target <= 100 ms; go-plugin waits 2 s
  and then SIGKILLs a plugin without it);
* StartTask over gRPC p50 (target <= 10 ms) next to ``Driver.start_task`` in-process. Nomad's
  client builds the alloc and task directories (its alloc runner's prestart) before it calls
  StartTask, so the benchmark builds each task's directories first, as the client would, on
  both sides of the comparison: the figure is what Nomad waits for, not directory creation.
  Next to it, InspectTask over the same path (grpc.aio, handler, pool hop) with a trivial
  driver call: the floor any plugin call pays here, so StartTask minus it is the driver's start;
* N running tasks (default 200), each with a blocked WaitTask and a 1 s TaskStats stream,
  plus the Fingerprint and TaskEvents streams: the plugin process's CPU over a window
  (target < 2 % of a core), split by thread: the main thread runs the gRPC event loop (calls,
  message writes); the other threads are the blocking pool (``Driver.task_stats`` for every
  streamed task once per tick, message build) and grpc's own threads. Next to it, the same
  ``Driver.task_stats`` calls in this process (the collection the plugin cannot avoid), the
  building of their messages, and the transport's floor: a bare ``grpc.aio`` server (same
  grpcio, unix socket) streaming a 300-byte message per second to as many streams from one
  ticker, with no protobuf and no work per message (``--floor-server``, a separate process).

    .venv/bin/python benchmarks/bench_plugin.py [--launches 10] [--starts 50] [--tasks 200] [--window 10]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import grpc
import psutil
from google.protobuf import duration_pb2

from rawexec.driver.prepare import build_task_dirs
from rawexec.plugin import convert, cty, hclspec
from rawexec.plugin.gen import base_pb2, driver_pb2, driver_pb2_grpc, plugin_pb2, plugin_pb2_grpc
from rawexec.plugin.server import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE

LINE = re.compile(r"^1\|2\|unix\|(/[^|]+)\|grpc\|?$")


def _env(sock_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({MAGIC_COOKIE_KEY: MAGIC_COOKIE_VALUE, "PLUGIN_PROTOCOL_VERSIONS": "2",
                "PLUGIN_UNIX_SOCKET_DIR": sock_dir, "RAWEXEC_PLUGIN_LOG_LEVEL": "info"})
    return env


class Launched:
    def __init__(self, sock_dir: str) -> None:
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "rawexec.plugin.main"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=_env(sock_dir),
                                     start_new_session=True)
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        while not buf.endswith(b"\n"):
            if not sel.select(30):
                raise RuntimeError("no handshake within 30 s")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError("plugin exited before the handshake")
            buf += chunk
        sel.close()
        self.handshake_s = time.perf_counter() - t0
        ct = psutil.Process(self.proc.pid).cpu_times()
        self.handshake_cpu_s = ct.user + ct.system  # load-independent: the plugin's own work to get here
        m = LINE.match(buf.decode().strip())
        if not m:
            raise RuntimeError(f"bad handshake {buf!r}")
        self.channel = grpc.insecure_channel(f"unix:{m.group(1)}")
        self.base = base_pb2_grpc_stub(self.channel)
        self.driver = driver_pb2_grpc.DriverStub(self.channel)
        self.controller = plugin_pb2_grpc.GRPCControllerStub(self.channel)

    def kill(self) -> float:
        """go-plugin's Kill(): Shutdown, then wait for the exit; returns seconds."""
        t0 = time.perf_counter()
        try:
            self.controller.Shutdown(plugin_pb2.Empty(), timeout=5)
        except grpc.RpcError:
            pass
        self.channel.close()
        self.proc.wait(timeout=10)
        dt = time.perf_counter() - t0
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return dt


def base_pb2_grpc_stub(channel: grpc.Channel) -> Any:
    from rawexec.plugin.gen import base_pb2_grpc

    return base_pb2_grpc.BasePluginStub(channel)


def _ratio(value: float, target: float) -> str:
    """``value / target`` (<= 1.00x means the target is met)."""
    return f"{value / target:5.2f}x target"


def _ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(len(xs) * 0.9))]
    return f"p50 {statistics.median(xs) * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms   max {xs[-1] * 1000:7.1f} ms"


def _time_cmd(argv: list[str], n: int, cpu: list[float] | None = None) -> list[float]:
    """Wall seconds of each run; with ``cpu``, also appends each run's user+sys CPU seconds."""
    out = []
    for _ in range(n):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(argv, check=True)
        out.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if cpu is not None:
            cpu.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
    return out


def _task(alloc_root: str, command: str, args: list[str]) -> Any:
    """A StartTask TaskConfig whose alloc and task directories exist already: Nomad's client
    builds them (alloc runner) before it calls StartTask."""
    alloc_id = str(uuid.uuid4())
    alloc_dir = os.path.join(alloc_root, alloc_id[:8])
    build_task_dirs(alloc_dir, "t")
    body = cty.hcldec(hclspec.task_config_spec(), {"command": command, "args": args})
    return driver_pb2.TaskConfig(id=f"{alloc_id}/t/{uuid.uuid4().hex[:8]}", name="t", alloc_id=alloc_id,
                                 alloc_dir=alloc_dir, msgpack_driver_config=cty.encode(body),
                                 env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                 stdout_path=os.devnull, stderr_path=os.devnull)


def _set_config(p: Launched) -> None:
    cfg = cty.encode(cty.hcldec(hclspec.plugin_config_spec(), {"enabled": True}))
    req = base_pb2.SetConfigRequest(msgpack_config=cfg, plugin_api_version="0.1.0")
    req.nomad_config.driver.ClientMinPort = 14000
    req.nomad_config.driver.ClientMaxPort = 14512
    p.base.SetConfig(req, timeout=10)


def _stop_all(p: Launched, ids: list[str]) -> None:
    for tid in ids:
        p.driver.StopTask(driver_pb2.StopTaskRequest(task_id=tid, timeout=duration_pb2.Duration(seconds=1),
                                                     signal="SIGKILL"), timeout=60)
        p.driver.DestroyTask(driver_pb2.DestroyTaskRequest(task_id=tid, force=True), timeout=60)


def bench_launch(sock_dir: str, n: int) -> None:
    print(f"== launch -> handshake, Kill (controller Shutdown -> exited); {n} launches")
    bare = _time_cmd([sys.executable, "-c", "pass"], n)
    grpc_cpu: list[float] = []
    grpc_only = _time_cmd([sys.executable, "-c", "import grpc"], n, grpc_cpu)
    hs, cpus, kills = [], [], []
    for _ in range(n):
        p = Launched(sock_dir)
        hs.append(p.handshake_s)
        cpus.append(p.handshake_cpu_s)
        kills.append(p.kill())
    print(f"  python -c pass               {_ms(bare)}")
    print(f"  python -c 'import grpc'      {_ms(grpc_only)}")
    print(f"  plugin handshake             {_ms(hs)}   (target p50 <= 300 ms; {_ratio(statistics.median(hs), 0.3)})")
    print(f"  python -c 'import grpc' CPU  {_ms(grpc_cpu)}   (user+sys: the floor for the line below)")
    print(f"  plugin CPU until handshake   {_ms(cpus)}   (user+sys; ~ the wall time on an idle machine)")
    print(f"  Kill via Shutdown            {_ms(kills)}   (target <= 100 ms; 2000 ms without it; "
          f"{_ratio(statistics.median(kills), 0.1)})")


def bench_start(sock_dir: str, alloc_root: str, n: int) -> None:
    print(f"== StartTask over gRPC vs Driver.start_task in-process; {n} x /bin/sleep 60")
    p = Launched(sock_dir)
    try:
        _set_config(p)
        ids, times = [], []
        warm = _task(alloc_root, "/bin/sleep", ["60"])
        p.driver.StartTask(driver_pb2.StartTaskRequest(task=warm), timeout=30)
        ids.append(warm.id)
        proc = psutil.Process(p.proc.pid)
        c0 = proc.cpu_times()
        for _ in range(n):
            cfg = _task(alloc_root, "/bin/sleep", ["60"])
            t0 = time.perf_counter()
            p.driver.StartTask(driver_pb2.StartTaskRequest(task=cfg), timeout=30)
            times.append(time.perf_counter() - t0)
            ids.append(cfg.id)
        c1 = proc.cpu_times()
        plugin_cpu = ((c1.user - c0.user) + (c1.system - c0.system)) / n
        floor, floor_cpu = _inspect_floor(p, proc, warm.id, max(n, 100))
        _stop_all(p, ids)
    finally:
        p.kill()
    print(f"  StartTask (gRPC)             {_ms(times)}   (target p50 <= 10 ms; "
          f"{_ratio(statistics.median(times), 0.01)})")
    print(f"  plugin process CPU per StartTask   {plugin_cpu * 1000:6.2f} ms   (user+sys, load-independent)")
    print(f"  InspectTask (gRPC)           {_ms(floor)}   (the same path with a trivial driver call: "
          "grpc.aio + pool hop floor)")
    print(f"  plugin process CPU per InspectTask {floor_cpu * 1000:6.2f} ms")
    try:
        local, local_cpu = _local_starts(alloc_root, n)
    except Exception as exc:  # the comparison is informative only
        print(f"  Driver.start_task (local)    failed: {exc}")
        return
    print(f"  Driver.start_task (local)    {_ms(local)}")
    print(f"  Driver.start_task CPU per call     {local_cpu * 1000:6.2f} ms   (this process: the driver's own work)")


def _inspect_floor(p: Launched, proc: psutil.Process, task_id: str, n: int) -> tuple[list[float], float]:
    """InspectTask ``n`` times, a few ms apart as StartTasks are (the plugin's threads asleep in
    between): the wall seconds of each and the plugin's mean CPU seconds per call. Same server,
    handler wrapping and pool hop as StartTask, with a trivial driver call: what any plugin
    call costs here, so StartTask minus this is about the driver's start."""
    req = driver_pb2.InspectTaskRequest(task_id=task_id)
    p.driver.InspectTask(req, timeout=30)
    times = []
    c0 = proc.cpu_times()
    for _ in range(n):
        time.sleep(0.005)
        t0 = time.perf_counter()
        p.driver.InspectTask(req, timeout=30)
        times.append(time.perf_counter() - t0)
    c1 = proc.cpu_times()
    return times, ((c1.user - c0.user) + (c1.system - c0.system)) / n


def _local_starts(alloc_root: str, n: int) -> tuple[list[float], float]:
    """Wall seconds of each in-process ``Driver.start_task``, and its mean CPU seconds."""
    from rawexec.driver import Driver, DriverConfig, TaskConfig

    local = []
    with Driver(DriverConfig(enabled=True)) as drv:
        tids = []
        cpu = 0.0
        for i in range(n + 1):
            alloc_id = str(uuid.uuid4())  # (alloc, task) is unique in Nomad; the cgroup is named after it
            build_task_dirs(os.path.join(alloc_root, f"local{i}"), "t")  # as Nomad's client would
            cfg = TaskConfig(id=f"{alloc_id}/t/local", name="t", alloc_id=alloc_id,
                             alloc_dir=os.path.join(alloc_root, f"local{i}"),
                             driver_config={"command": "/bin/sleep", "args": ["60"]},
                             env={"PATH": os.environ.get("PATH", "")}, stdout_path=os.devnull,
                             stderr_path=os.devnull)
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            drv.start_task(cfg)
            if i:
                local.append(time.perf_counter() - t0)
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                cpu += (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            tids.append(cfg.id)
        for tid in tids:
            drv.stop_task(tid, 1.0, "SIGKILL")
            drv.destroy_task(tid, force=True)
    return local, cpu / n


def bench_idle_cpu(sock_dir: str, alloc_root: str, tasks: int, window: float) -> None:
    print(f"== {tasks} running tasks, each with a WaitTask and a 1 s TaskStats stream; CPU over {window:.0f} s")
    p = Launched(sock_dir)
    calls: list[Any] = []
    ids: list[str] = []
    try:
        _set_config(p)
        calls.append(p.driver.Fingerprint(driver_pb2.FingerprintRequest()))
        calls.append(p.driver.TaskEvents(driver_pb2.TaskEventsRequest()))
        for _ in range(tasks):
            cfg = _task(alloc_root, "/bin/sleep", ["600"])
            p.driver.StartTask(driver_pb2.StartTaskRequest(task=cfg), timeout=30)
            ids.append(cfg.id)
            calls.append(p.driver.WaitTask.future(driver_pb2.WaitTaskRequest(task_id=cfg.id)))
        proc = psutil.Process(p.proc.pid)
        idle, _ = _cpu_share(proc, window)
        for tid in ids:
            calls.append(p.driver.TaskStats(driver_pb2.TaskStatsRequest(
                task_id=tid, collection_interval=duration_pb2.Duration(seconds=1))))
        busy, loop = _cpu_share(proc, window)
        print(f"  plugin threads {proc.num_threads()}, RSS {proc.memory_info().rss / 2**20:.1f} MiB")
        print(f"  plugin CPU, WaitTasks + Fingerprint + TaskEvents only   {idle:6.2f} % of a core")
        print(f"  plugin CPU, plus {tasks} TaskStats streams at 1 s         {busy:6.2f} % of a core   "
              f"(target < 2 %; {_ratio(busy, 2.0)})")
        print(f"    of which the event loop (main thread: gRPC)         {loop:6.2f} %")
        print(f"    of which the other threads (task_stats, grpc)       {busy - loop:6.2f} %")
    finally:
        for c in calls:
            c.cancel()
        _stop_all(p, ids)
        p.kill()
    try:
        local, build = _local_stats_share(alloc_root, tasks, window)
    except Exception as exc:  # informative only
        print(f"  Driver.task_stats x {tasks}/s (local)  failed: {exc}")
        return
    print(f"  Driver.task_stats x {tasks}/s, in this process          {local:6.2f} % of a core   "
          "(the collection alone, no gRPC)")
    print(f"  their {tasks} TaskStatsResponse builds/s, in this process {build:6.2f} % of a core   "
          "(convert.task_stats_to_proto + serialization; the rest above is gRPC)")
    floor = _grpc_floor(sock_dir, tasks, window)
    print(f"  bare grpc.aio server, {tasks} streams x 1 msg/s       {floor:6.2f} % of a core   "
          "(300-byte messages, no protobuf, no work: the transport's floor)")
    print(f"  floors added up (transport + collection + builds)     {floor + local + build:6.2f} % of a core")


_FLOOR_MSG = b"x" * 300


def _ident(b: bytes) -> bytes:
    return b


async def _floor_server(path: str) -> None:
    """A bare grpc.aio server: every call of /floor.F/Stream gets ``_FLOOR_MSG`` once a second,
    all streams fed by one ticker (as the plugin's StatsHub does)."""
    import asyncio

    queues: list[asyncio.Queue[bytes]] = []

    async def stream(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        q: asyncio.Queue[bytes] = asyncio.Queue()
        queues.append(q)
        while True:
            await context.write(await q.get())

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1.0)
            for q in queues:
                q.put_nowait(_FLOOR_MSG)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("floor.F", {
        "Stream": grpc.unary_stream_rpc_method_handler(stream, request_deserializer=_ident,
                                                       response_serializer=_ident)}),))
    server.add_insecure_port("unix:" + path)
    await server.start()
    tick = asyncio.get_running_loop().create_task(ticker())
    print("ready", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        tick.cancel()


def _grpc_floor(sock_dir: str, streams: int, window: float) -> float:
    """CPU (% of a core) of :func:`_floor_server` serving ``streams`` streams, over ``window`` s."""
    path = os.path.join(sock_dir, "floor.sock")
    proc = subprocess.Popen([sys.executable, __file__, "--floor-server", path], stdout=subprocess.PIPE, text=True)
    channel = None
    calls: list[Any] = []
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the floor server did not start")
        channel = grpc.insecure_channel("unix:" + path)
        method = channel.unary_stream("/floor.F/Stream", request_serializer=_ident, response_deserializer=_ident)
        calls = [method(b"") for _ in range(streams)]

        def drain(call: Any) -> None:
            try:
                for _ in call:
                    pass
            except grpc.RpcError:
                pass

        for call in calls:
            threading.Thread(target=drain, args=(call,), daemon=True).start()
        busy, _ = _cpu_share(psutil.Process(proc.pid), window)
        return busy
    finally:
        for call in calls:
            call.cancel()
        if channel is not None:
            channel.close()
        proc.kill()
        proc.wait()


def _thread_ticks(pid: int) -> tuple[int, int]:
    """(user+system clock ticks of the whole process, of its main thread), from /proc."""
    def ticks(path: str) -> int:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    return ticks(f"/proc/{pid}/stat"), ticks(f"/proc/{pid}/task/{pid}/stat")


def _cpu_share(proc: psutil.Process, window: float) -> tuple[float, float]:
    """The process's CPU use over ``window`` seconds (after 2 s to settle), in % of one core,
    and the part of it used by the main thread."""
    hz = os.sysconf("SC_CLK_TCK")
    time.sleep(2.0)
    (a0, m0), t0 = _thread_ticks(proc.pid), time.perf_counter()
    time.sleep(window)
    (a1, m1), dt = _thread_ticks(proc.pid), time.perf_counter() - t0
    return (a1 - a0) / hz / dt * 100, (m1 - m0) / hz / dt * 100


def _local_stats_share(alloc_root: str, tasks: int, window: float) -> tuple[float, float]:
    """CPU of ``Driver.task_stats`` for ``tasks`` tasks once a second, in this process, and of
    building their TaskStatsResponse messages (in % of a core)."""
    from rawexec.driver import Driver, DriverConfig, TaskConfig

    with Driver(DriverConfig(enabled=True)) as drv:
        tids = []
        try:
            for i in range(tasks):
                alloc_id = str(uuid.uuid4())
                cfg = TaskConfig(id=f"{alloc_id}/t/stats", name="t", alloc_id=alloc_id,
                                 alloc_dir=os.path.join(alloc_root, f"stats{i}"),
                                 driver_config={"command": "/bin/sleep", "args": ["600"]},
                                 env={"PATH": os.environ.get("PATH", "")}, stdout_path=os.devnull,
                                 stderr_path=os.devnull)
                drv.start_task(cfg)
                tids.append(cfg.id)
            for tid in tids:
                drv.task_stats(tid)  # first readings (opens the cgroup files)
            used = built = 0.0
            deadline = time.perf_counter() + window
            t0 = time.perf_counter()
            while time.perf_counter() < deadline:
                c0 = time.thread_time()
                samples = [drv.task_stats(tid) for tid in tids]
                c1 = time.thread_time()
                now_ns = time.time_ns()
                for tid, usage in zip(tids, samples, strict=True):
                    convert.task_stats_to_proto(tid, usage, now_ns).SerializeToString()
                built += time.thread_time() - c1
                used += c1 - c0
                time.sleep(1.0)
            dt = time.perf_counter() - t0
            return used / dt * 100, built / dt * 100
        finally:
            for tid in tids:
                drv.stop_task(tid, 1.0, "SIGKILL")
                drv.destroy_task(tid, force=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--launches", type=int, default=10)
    ap.add_argument("--starts", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--floor-server", metavar="SOCKET", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.floor_server:
        import asyncio

        asyncio.run(_floor_server(args.floor_server))
        return
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    sock_dir = tempfile.mkdtemp(prefix="rxb")
    alloc_root = tempfile.mkdtemp(prefix="rawexec-bench-")
    try:
        bench_launch(sock_dir, args.launches)
        bench_start(sock_dir, alloc_root, args.starts)
        if args.tasks:
            bench_idle_cpu(sock_dir, alloc_root, args.tasks, args.window)
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
        shutil.rmtree(alloc_root, ignore_errors=True)


if __name__ == "__main__":
    main()
