"""Interop with a real go-plugin host (Debian's go-plugin 1.0.1 + grpc-go), built from scripts/go-interop.

CI needs: apt-get install -y golang-go golang-github-hashicorp-go-plugin-dev golang-google-grpc-dev
golang-github-hashicorp-go-hclog-dev. The host binary is cached (keyed by the source hash) in
pytest's cache dir, so only the first run pays for the Go build.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rawexec.plugin.gen import base_pb2, driver_pb2, hclspec_pb2
from rawexec.plugin.hclspec import from_proto, plugin_config_spec
from tests.plugin.harness import launch
from tests.plugin.nomad_client import set_config, task_config

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "scripts" / "go-interop"
GO_PLUGIN = Path("/usr/share/gocode/src/github.com/hashicorp/go-plugin")
APT = ("apt-get install -y golang-go golang-github-hashicorp-go-plugin-dev golang-google-grpc-dev "
       "golang-github-hashicorp-go-hclog-dev")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def go_host(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("go") is None or not GO_PLUGIN.is_dir():
        pytest.skip(f"needs Go and Debian's go-plugin sources; install with: {APT}")
    digest = hashlib.sha256((SRC / "main.go").read_bytes() + (SRC / "build.sh").read_bytes()).hexdigest()[:16]
    store = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    cache = Path(store.mkdir("go-interop")) if store is not None else tmp_path_factory.mktemp("go-interop")
    binary = cache / f"goplughost-{digest}"
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers build once between them
        if not binary.exists():
            tmp = cache / f"goplughost-{digest}.tmp{os.getpid()}"
            res = subprocess.run([str(SRC / "build.sh"), str(tmp), str(cache / "gocache")], capture_output=True,
                                 text=True, timeout=600, check=False)
            if res.returncode != 0:
                pytest.fail(f"go build of the interop host failed:\n{res.stdout}\n{res.stderr}")
            os.replace(tmp, binary)
    return binary


def _wrapper(tmp_path: Path) -> Path:
    """What an operator puts in plugin_dir: an executable that execs the interpreter (facts §1.2)."""
    w = tmp_path / "raw_exec"
    w.write_text(f"#!/bin/sh\nexec {sys.executable} -m rawexec.plugin.main \"$@\"\n")
    w.chmod(w.stat().st_mode | stat.S_IXUSR)
    return w


def _run_host(go_host: Path, tmp_path: Path, sock_dir: Path,
              extra: dict[str, str] | None = None) -> tuple[dict[str, str], subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGIN_")}
    env["PLUGIN_UNIX_SOCKET_DIR"] = str(sock_dir)
    env["PYTHONPATH"] = str(ROOT / "src")
    env.update(extra or {})
    res = subprocess.run([str(go_host), str(_wrapper(tmp_path))], capture_output=True, text=True, timeout=120,
                         env=env, check=False)
    out: dict[str, str] = {}
    for line in res.stdout.splitlines():
        key, _, rest = line.partition(" ")
        out[key] = rest
    assert res.returncode == 0 and "DONE" in out, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr[-4000:]}"
    return out, res


def _kill_ms(out: dict[str, str]) -> int:
    m = re.fullmatch(r"(\d+)ms exited=(\w+)", out["KILL"])
    assert m and m.group(2) == "true", out["KILL"]
    return int(m.group(1))


def test_go_plugin_host_launches_pings_calls_and_kills(go_host: Path, tmp_path: Path, sock_dir: Path) -> None:
    out, res = _run_host(go_host, tmp_path, sock_dir)
    assert out["HANDSHAKE"].startswith("ok") and out["PING"] == "ok" and out["SETCONFIG"] == "ok"

    info = base_pb2.PluginInfoResponse.FromString(bytes.fromhex(out["PLUGININFO"]))
    assert (info.type, list(info.plugin_api_versions), info.name) == (base_pb2.DRIVER, ["0.1.0"], "raw_exec")
    schema = base_pb2.ConfigSchemaResponse.FromString(bytes.fromhex(out["CONFIGSCHEMA"]))
    assert from_proto(hclspec_pb2.Spec.FromString(schema.spec.SerializeToString())) == plugin_config_spec()
    assert out["SETCONFIG_BAD"].startswith("code=InvalidArgument") and "not valid msgpack" in out["SETCONFIG_BAD"]
    fp = driver_pb2.FingerprintResponse.FromString(bytes.fromhex(out["FINGERPRINT"]))
    assert fp.health == driver_pb2.FingerprintResponse.HEALTHY and fp.attributes["driver.raw_exec"].bool_val

    assert _kill_ms(out) < 1000, "Kill took the 2 s fallback path: GRPCController/Shutdown not honoured"
    assert "plugin failed to exit gracefully" not in res.stderr
    assert "Unrecognized remote plugin message" not in res.stderr
    # Our hclog JSON lines were parsed by go-plugin (shown as "[DEBUG] <host>.raw_exec: ...").
    assert re.search(r"\[DEBUG\] goplughost\.raw_exec: plugin exiting", res.stderr), res.stderr[-3000:]
    assert list(sock_dir.iterdir()) == []


def test_go_host_kill_with_a_running_task(go_host: Path, tmp_path: Path, sock_dir: Path) -> None:
    """go-plugin's Kill() waits for the plugin's stderr to reach EOF: no task or helper may hold it.
    The task outlives the plugin, and a new plugin recovers and stops it."""
    cfg = task_config(tmp_path / "alloc", {"command": "/bin/sh", "args": ["-c", "echo up; exec sleep 60"]})
    req = driver_pb2.StartTaskRequest(task=cfg).SerializeToString().hex()
    out, res = _run_host(go_host, tmp_path, sock_dir, {"GOPLUGHOST_START_TASK": req})
    handle = driver_pb2.StartTaskResponse.FromString(bytes.fromhex(out["STARTTASK"])).handle
    assert handle.config.id == cfg.id and handle.driver_state
    assert _kill_ms(out) < 1000, f"Kill blocked (stderr held open by a child?):\n{res.stderr[-3000:]}"
    assert "plugin failed to exit gracefully" not in res.stderr
    p = launch(tmp_path, sock_dir)
    try:
        set_config(p)
        p.driver.RecoverTask(driver_pb2.RecoverTaskRequest(handle=handle), timeout=20)
        insp = p.driver.InspectTask(driver_pb2.InspectTaskRequest(task_id=cfg.id), timeout=5)
        assert insp.task.state == driver_pb2.RUNNING, "the task must outlive the plugin"
        p.driver.StopTask(driver_pb2.StopTaskRequest(task_id=cfg.id, signal="SIGKILL"), timeout=30)
        p.driver.DestroyTask(driver_pb2.DestroyTaskRequest(task_id=cfg.id, force=True), timeout=30)
    finally:
        p.close()
