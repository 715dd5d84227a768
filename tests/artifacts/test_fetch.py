"""fetch_artifact end to end: a real HTTP server on 127.0.0.1:0, the sandboxed child, the task dir."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rawexec.artifacts import ArtifactSpec, FetchResult, GetterConfig, Progress, fetch_artifact
from rawexec.artifacts.landlock import abi_version
from rawexec.errors import ArtifactError
from tests.artifacts.conftest import Alloc
from tests.artifacts.corpus import bad_corpus, sample_tree, tar_bytes
from tests.artifacts.server import TestServer, wait_until

FAST = GetterConfig(http_retries=2, retry_backoff=0.01, http_read_timeout=2.0,
                    decompression_size_limit=4 << 20, decompression_file_count_limit=32)
SCRIPT = b"#!/bin/sh\necho hello from the artifact\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(spec: ArtifactSpec, alloc: Alloc, config: GetterConfig = FAST, **kw: object) -> FetchResult:
    return fetch_artifact(spec, task_dir=str(alloc.task), alloc_dir=str(alloc.root), config=config,
                          **kw)  # type: ignore[arg-type]


def expect_failure(spec: ArtifactSpec, alloc: Alloc, match: str, *, recoverable: bool,
                   config: GetterConfig = FAST) -> ArtifactError:
    before = alloc.task_files()
    with pytest.raises(ArtifactError) as err:
        fetch(spec, alloc, config)
    assert err.value.message.startswith(f'failed to download artifact "{spec.source}": ')
    assert match in err.value.message, err.value.message
    assert err.value.recoverable is recoverable
    assert alloc.task_files() == before, "a failed fetch left something in the task dir"
    assert alloc.staging_leftovers() == []
    return err.value


# ---- the seed's example ------------------------------------------------------------------------

def test_seed_example_binary_with_sha256_runs_by_relative_command(server: TestServer, alloc: Alloc) -> None:
    server.add("/name-of-my-binary", body=SCRIPT)
    spec = ArtifactSpec(server.url("/name-of-my-binary"), options={"checksum": f"sha256:{sha256(SCRIPT)}"})
    res = fetch(spec, alloc)
    target = alloc.task / "local" / "name-of-my-binary"
    assert res.destination == str(target) and res.kind == "file" and not res.skipped
    assert res.checksum == f"sha256:{sha256(SCRIPT)}"
    assert target.read_bytes() == SCRIPT
    assert os.stat(target).st_mode & stat.S_IXUSR
    out = subprocess.run(["local/name-of-my-binary"], cwd=alloc.task, capture_output=True, check=True)
    assert out.stdout == b"hello from the artifact\n"
    if abi_version() > 0:
        assert res.isolation == "landlock"
    else:
        assert res.isolation == "checked-paths"


def test_restart_does_not_fetch_again(server: TestServer, alloc: Alloc) -> None:
    route = server.add("/tool", body=SCRIPT)
    spec = ArtifactSpec(server.url("/tool"), options={"checksum": f"md5:{hashlib.md5(SCRIPT).hexdigest()}"})
    first = fetch(spec, alloc)
    second = fetch(spec, alloc)
    assert len(route.requests) == 1
    assert second.skipped and second.destination == first.destination
    # the destination vanished ⇒ fetched again
    os.unlink(first.destination)
    third = fetch(spec, alloc)
    assert not third.skipped and len(route.requests) == 2


def test_progress_reports_bytes_total_rate_eta(server: TestServer, alloc: Alloc) -> None:
    body = os.urandom(3 << 20)
    server.add("/big.bin", body=body)
    seen: list[Progress] = []
    fetch(ArtifactSpec(server.url("/big.bin")), alloc, progress=seen.append)
    dl = [p for p in seen if p.phase == "download"]
    assert dl and dl[-1].bytes == len(body) and dl[-1].total == len(body)
    assert all(a.bytes <= b.bytes for a, b in itertools.pairwise(dl))
    assert dl[-1].rate > 0 and dl[-1].eta == 0


# ---- archives ---------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", ["tgz", "tar.xz", "tar.zst"])
def test_archive_unpacked_into_destination(server: TestServer, alloc: Alloc, ext: str) -> None:
    comp = {"tgz": "gz", "tar": ""}.get(ext, ext.rsplit(".", maxsplit=1)[-1])
    data = tar_bytes(sample_tree(), comp)
    server.add(f"/app.{ext}", body=data)
    res = fetch(ArtifactSpec(server.url(f"/app.{ext}"), destination="local/pkg",
                             options={"checksum": f"sha512:{hashlib.sha512(data).hexdigest()}"}), alloc)
    assert res.kind == "dir" and res.files == 5
    assert (alloc.task / "local/pkg/app/run.sh").read_bytes() == b"#!/bin/sh\necho ok\n"
    assert os.readlink(alloc.task / "local/pkg/app/link") == "run.sh"


def test_archive_false_keeps_the_file_and_forced_type_unpacks(server: TestServer, alloc: Alloc) -> None:
    data = tar_bytes(sample_tree(), "gz")
    server.add("/a.tar.gz", body=data)
    server.add("/download", body=data)
    fetch(ArtifactSpec(server.url("/a.tar.gz"), options={"archive": "false"}), alloc)
    assert (alloc.task / "local/a.tar.gz").read_bytes() == data
    fetch(ArtifactSpec(server.url("/download"), destination="local/forced", options={"archive": "tar.gz"}), alloc)
    assert (alloc.task / "local/forced/app/run.sh").exists()


def test_mode_file_and_dir(server: TestServer, alloc: Alloc) -> None:
    server.add("/cfg.json", body=b"{}")
    res = fetch(ArtifactSpec(server.url("/cfg.json"), destination="local/config.json", mode="file"), alloc)
    assert res.destination == str(alloc.task / "local/config.json")
    assert (alloc.task / "local/config.json").read_bytes() == b"{}"
    expect_failure(ArtifactSpec(server.url("/cfg.json"), destination="local/d", mode="dir"), alloc,
                   'mode "dir" needs an archive', recoverable=False)


def test_destination_in_shared_alloc_dir(server: TestServer, alloc: Alloc) -> None:
    server.add("/shared.txt", body=b"s")
    res = fetch(ArtifactSpec(server.url("/shared.txt"), destination="../alloc/data/"), alloc)
    assert res.destination == str(alloc.shared / "data/shared.txt")


def test_interpolation_of_source_destination_options_headers(server: TestServer, alloc: Alloc) -> None:
    route = server.add("/v1.2/tool", body=SCRIPT, require_header=("X-Token", "s3cr3t"))
    env = {"VERSION": "1.2", "DEST": "local/bin", "SUM": sha256(SCRIPT), "TOKEN": "s3cr3t"}

    def interp(s: str) -> str:
        for k, v in env.items():
            s = s.replace("${" + k + "}", v)
        return s

    spec = ArtifactSpec(f"http://127.0.0.1:{server.port}/v${{VERSION}}/tool", destination="${DEST}/",
                        options={"checksum": "sha256:${SUM}", "flavor": "${VERSION}"},
                        headers={"X-Token": "${TOKEN}"})
    res = fetch(spec, alloc, interpolate=interp)
    assert res.destination == str(alloc.task / "local/bin/tool")
    assert route.requests[-1]["path"] == "/v1.2/tool?flavor=1.2"  # options merged into the query
    assert route.requests[-1]["x-token"] == "s3cr3t"


def test_netrc_credentials_are_used(server: TestServer, alloc: Alloc, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text("machine 127.0.0.1 login alice password wonderland\n")
    monkeypatch.setenv("HOME", str(home))
    creds = base64.b64encode(b"alice:wonderland").decode()
    server.add("/private", body=b"ok", require_header=("Authorization", f"Basic {creds}"))
    fetch(ArtifactSpec(server.url("/private")), alloc)
    assert (alloc.task / "local/private").read_bytes() == b"ok"


# ---- checksums ---------------------------------------------------------------------------------

def test_checksum_file_url(server: TestServer, alloc: Alloc) -> None:
    data = tar_bytes(sample_tree(), "gz")
    server.add("/rel/app.tar.gz", body=data)
    server.add("/rel/SHA256SUMS", body=f"{'0' * 64}  other.tar.gz\n{sha256(data)}  app.tar.gz\n".encode())
    res = fetch(ArtifactSpec(server.url("/rel/app.tar.gz"),
                             options={"checksum": f"file:{server.url('/rel/SHA256SUMS')}"}), alloc)
    assert res.checksum == f"sha256:{sha256(data)}"
    server.add("/rel/BAD", body=f"{'1' * 64}  app.tar.gz\n".encode())
    expect_failure(ArtifactSpec(server.url("/rel/app.tar.gz"), destination="local/x/",
                                options={"checksum": f"file:{server.url('/rel/BAD')}"}), alloc,
                   "checksums did not match", recoverable=True)


def test_wrong_checksum_leaves_nothing_and_is_recoverable(server: TestServer, alloc: Alloc) -> None:
    """Recoverable as in Nomad (the source may be mid-update): the task's restart policy applies."""
    data = tar_bytes(sample_tree(), "gz")
    route = server.add("/app.tar.gz", body=data)
    expect_failure(ArtifactSpec(server.url("/app.tar.gz"), options={"checksum": f"sha256:{'ab' * 32}"}),
                   alloc, "checksums did not match", recoverable=True)
    assert len(route.requests) == 1  # not downloaded again within the attempt


@pytest.mark.parametrize(("checksum", "message"), [
    ("", "checksum value cannot be empty"),
    ("abc", 'checksum must be given as "type:value"; got "abc"'),
    ("sha256:zz", "invalid checksum:"),
    ("crc32:abcd", "unsupported checksum type: crc32"),
    ("sha256:abcd", "invalid sha256 checksum: abcd"),
])
def test_malformed_checksum_option(server: TestServer, alloc: Alloc, checksum: str, message: str) -> None:
    route = server.add("/t", body=b"x")
    expect_failure(ArtifactSpec(server.url("/t"), options={"checksum": checksum}), alloc, message,
                   recoverable=False)
    assert route.requests == []  # refused before any download


# ---- HTTP failures -----------------------------------------------------------------------------

def test_404_is_recoverable_but_not_retried(server: TestServer, alloc: Alloc) -> None:
    """Recoverable as every getter error in Nomad (the file may be published later: the task's restart
    policy applies), but not a transient error worth repeating within the attempt."""
    route = server.add("/missing", status=404, body=b"not found")
    expect_failure(ArtifactSpec(server.url("/missing")), alloc, "bad response code: 404", recoverable=True)
    assert len(route.requests) == 1


def test_500_is_retried_then_recoverable(server: TestServer, alloc: Alloc) -> None:
    route = server.add("/flaky", status=500, body=b"boom")
    expect_failure(ArtifactSpec(server.url("/flaky")), alloc, "bad response code: 500", recoverable=True)
    assert len(route.requests) == FAST.http_retries + 1


def test_transient_500_then_success(server: TestServer, alloc: Alloc) -> None:
    route = server.add("/sometimes", body=SCRIPT, fail_first=2, fail_status=503)
    fetch(ArtifactSpec(server.url("/sometimes")), alloc)
    assert len(route.requests) == 3 and (alloc.task / "local/sometimes").read_bytes() == SCRIPT


def test_read_timeout_is_recoverable(server: TestServer, alloc: Alloc) -> None:
    server.add("/slow", body=b"x" * 10000, stall=30)
    cfg = GetterConfig(http_retries=0, http_read_timeout=0.3)
    expect_failure(ArtifactSpec(server.url("/slow")), alloc, "timeout", recoverable=True, config=cfg)


def test_connection_reset_is_recoverable(server: TestServer, alloc: Alloc) -> None:
    route = server.add("/reset", body=b"y" * 200_000, reset=True)
    expect_failure(ArtifactSpec(server.url("/reset")), alloc, "after 3 attempts", recoverable=True)
    assert len(route.requests) == 3


def test_interrupted_download_resumes_with_range(server: TestServer, alloc: Alloc) -> None:
    body = os.urandom(500_000)
    route = server.add("/resume.bin", body=body, ranges=True, cut_first=1, cut_at=200_000)
    res = fetch(ArtifactSpec(server.url("/resume.bin"), options={"checksum": f"sha256:{sha256(body)}"}), alloc)
    assert (alloc.task / "local/resume.bin").read_bytes() == body and res.bytes == len(body)
    assert len(route.requests) == 2
    assert route.requests[1]["range"] == "bytes=200000-"
    assert route.requests[1]["if-range"] == '"v1"'


def test_interrupted_download_without_ranges_starts_over(server: TestServer, alloc: Alloc) -> None:
    body = os.urandom(300_000)
    route = server.add("/norange.bin", body=body, cut_first=1, cut_at=100_000)
    fetch(ArtifactSpec(server.url("/norange.bin"), options={"checksum": f"sha256:{sha256(body)}"}), alloc)
    assert (alloc.task / "local/norange.bin").read_bytes() == body
    assert "range" not in route.requests[1]


def test_redirects_followed_and_loop_refused(server: TestServer, alloc: Alloc) -> None:
    server.add("/real", body=b"real")
    server.add("/go", status=302, location="/real")
    fetch(ArtifactSpec(server.url("/go"), destination="local/r", mode="file"), alloc)
    assert (alloc.task / "local/r").read_bytes() == b"real"
    server.add("/loop-a", status=302, location="/loop-b")
    server.add("/loop-b", status=302, location="/loop-a")
    expect_failure(ArtifactSpec(server.url("/loop-a")), alloc, "too many redirects", recoverable=False)


def test_max_size(server: TestServer, alloc: Alloc) -> None:
    server.add("/huge", body=b"z" * 5000)
    expect_failure(ArtifactSpec(server.url("/huge")), alloc, "exceeds http_max_size", recoverable=False,
                   config=GetterConfig(http_max_size=1000))


# ---- bad sources and destinations --------------------------------------------------------------

def test_file_source_refused_unless_allowed(alloc: Alloc, tmp_path: Path) -> None:
    f = tmp_path / "local-tool"
    f.write_bytes(SCRIPT)
    expect_failure(ArtifactSpec(f"file://{f}"), alloc, "allow_file = true", recoverable=False)
    res = fetch(ArtifactSpec(f"file://{f}", options={"checksum": f"sha256:{sha256(SCRIPT)}"}), alloc,
                GetterConfig(allow_file=True))
    assert Path(res.destination).read_bytes() == SCRIPT
    sums = tmp_path / "sums" / "SHA256SUMS"
    sums.parent.mkdir()
    sums.write_text(f"{sha256(SCRIPT)} *local-tool\n")
    res = fetch(ArtifactSpec(f"file://{f}", destination="local/again/", options={"checksum": f"file:file://{sums}"}),
                alloc, GetterConfig(allow_file=True))
    assert res.checksum == f"sha256:{sha256(SCRIPT)}" and Path(res.destination).read_bytes() == SCRIPT


@pytest.mark.parametrize("source", ["s3://bucket/key", "ftp://host/file", "hg::https://host/repo", "no-scheme/x"])
def test_unsupported_sources(alloc: Alloc, source: str) -> None:
    expect_failure(ArtifactSpec(source), alloc, "", recoverable=False)


@pytest.mark.parametrize("dest", ["../../x", "../other-task/local", "local/../../../../tmp", "/../../x",
                                  "/local/../../../x"])
def test_destination_escaping_alloc_dir(server: TestServer, alloc: Alloc, dest: str) -> None:
    route = server.add("/t", body=b"x")
    expect_failure(ArtifactSpec(server.url("/t"), destination=dest), alloc,
                   "artifact destination path escapes alloc directory", recoverable=False)
    assert route.requests == []


@pytest.mark.parametrize(("dest", "where"), [
    ("${NOMAD_TASK_DIR}/x", "web/local/x/plain.txt"),  # absolute, inside the task dir: kept
    ("${NOMAD_ALLOC_DIR}/data", "alloc/data/plain.txt"),  # absolute, inside the shared dir: kept
    ("/local/x", "web/local/x/plain.txt"),  # absolute elsewhere: taken below the task dir (Nomad's ClientPath)
    ("/etc/", "web/etc/plain.txt"),
])
def test_absolute_destination_like_nomad(server: TestServer, alloc: Alloc, dest: str, where: str) -> None:
    server.add("/plain.txt", body=b"plain\n")
    env = {"${NOMAD_TASK_DIR}": str(alloc.task / "local"), "${NOMAD_ALLOC_DIR}": str(alloc.shared)}

    def interpolate(s: str) -> str:
        for k, v in env.items():
            s = s.replace(k, v)
        return s

    res = fetch(ArtifactSpec(server.url("/plain.txt"), destination=dest), alloc, interpolate=interpolate)
    assert (alloc.root / where).read_bytes() == b"plain\n"
    assert res.destination in (str(alloc.root / where), str((alloc.root / where).parent))


def test_destination_through_symlink_out_of_task_dir(server: TestServer, alloc: Alloc, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, alloc.task / "local" / "sneaky")
    server.add("/t", body=b"x")
    expect_failure(ArtifactSpec(server.url("/t"), destination="local/sneaky/"), alloc,
                   "escapes alloc directory", recoverable=False)
    assert list(outside.iterdir()) == []


# One case per category end to end (the whole corpus runs in-process in test_archive.py).
HTTP_CORPUS = ["zip-slip", "tar-absolute", "symlink-then-file", "symlink-chain", "hardlink-escape", "device",
               "zip-bomb", "tar-bomb", "file-count", "truncated-tgz", "lying-name-zip-as-tgz"]


@pytest.mark.parametrize("case", HTTP_CORPUS)
def test_bad_archive_corpus_over_http(server: TestServer, alloc: Alloc, case: str) -> None:
    name, data, expect = bad_corpus()[case]
    server.add(f"/{name}", body=data)
    expect_failure(ArtifactSpec(server.url(f"/{name}")), alloc, expect, recoverable=False)
    assert not os.path.exists("/tmp/evil")
    assert [p for p in alloc.root.parent.rglob("x")] == []


# ---- git -----------------------------------------------------------------------------------------

def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    r = tmp_path / "repo"
    r.mkdir()
    _git("init", "-q", "-b", "main", cwd=r)
    (r / "v.txt").write_text("one")
    _git("add", ".", cwd=r)
    _git("commit", "-q", "-m", "one", cwd=r)
    first = _git("rev-parse", "HEAD", cwd=r)
    _git("tag", "v1", cwd=r)
    (r / "v.txt").write_text("two")
    _git("commit", "-q", "-am", "two", cwd=r)
    return r, first


@pytest.mark.skipif(not os.path.exists("/usr/bin/git"), reason="needs the system git")
def test_git_clone_with_ref_and_depth(alloc: Alloc, repo: tuple[Path, str]) -> None:
    r, first = repo
    cfg = GetterConfig(allow_file=True)
    res = fetch(ArtifactSpec(f"git::file://{r}", destination="local/repo"), alloc, cfg)
    assert res.kind == "dir" and (alloc.task / "local/repo/v.txt").read_text() == "two"
    fetch(ArtifactSpec(f"git::file://{r}", destination="local/at-commit", options={"ref": first}), alloc, cfg)
    assert (alloc.task / "local/at-commit/v.txt").read_text() == "one"
    fetch(ArtifactSpec(f"git::file://{r}", destination="local/shallow", options={"ref": "v1", "depth": "1"}),
          alloc, cfg)
    assert (alloc.task / "local/shallow/v.txt").read_text() == "one"
    assert _git("rev-list", "--count", "HEAD", cwd=alloc.task / "local/shallow") == "1"
    expect_failure(ArtifactSpec(f"git::file://{r}", destination="local/bad", options={"ref": "nope"}),
                   alloc, "git checkout failed", recoverable=False, config=cfg)
    expect_failure(ArtifactSpec(f"git::file://{r}", destination="local/inj", options={"ref": "--upload-pack=x"}),
                   alloc, 'must not start with "-"', recoverable=False, config=cfg)
    expect_failure(ArtifactSpec(f"git::file://{r}"), alloc, "allow_file", recoverable=False)


# ---- isolation -----------------------------------------------------------------------------------

def test_isolation_can_be_disabled(server: TestServer, alloc: Alloc) -> None:
    server.add("/t", body=b"x")
    res = fetch(ArtifactSpec(server.url("/t")), alloc, GetterConfig(disable_filesystem_isolation=True))
    assert res.isolation == "disabled"


@pytest.mark.skipif(abi_version() <= 0, reason="kernel without Landlock")
def test_landlock_confines_writes_and_reads(tmp_path: Path) -> None:
    inside = tmp_path / "inside"
    inside.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = tmp_path / "secret"
    secret.write_text("s")
    code = f"""
import sys
from rawexec.artifacts import landlock
from rawexec.artifacts.sandbox import sandbox_read_paths
landlock.restrict(sandbox_read_paths({{}}), [{str(inside)!r}], ["/dev/null"])
open({str(inside / "ok")!r}, "w").write("ok")
for path, mode in (({str(outside / "bad")!r}, "w"), ({str(secret)!r}, "r")):
    try:
        open(path, mode)
    except PermissionError:
        print("denied", path)
if landlock.abi_version() >= 4:
    import socket
    try:
        socket.socket().bind(("127.0.0.1", 0))
    except PermissionError:
        print("bind denied")
else:
    print("bind denied")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [f"denied {outside / 'bad'}", f"denied {secret}", "bind denied"]
    assert (inside / "ok").read_text() == "ok" and list(outside.iterdir()) == []


# ---- deadline, task-level helper, checked paths without Landlock --------------------------------

def test_overall_deadline_kills_the_child(server: TestServer, alloc: Alloc) -> None:
    server.add("/hang", body=b"x" * 10000, stall=60)
    cfg = GetterConfig(http_retries=0, http_read_timeout=60, fetch_deadline=1.0)
    expect_failure(ArtifactSpec(server.url("/hang")), alloc, "getter subprocess timed out", recoverable=True,
                   config=cfg)


def test_cancel_kills_the_child_at_once(server: TestServer, alloc: Alloc) -> None:
    """``cancelled`` (the task is being killed) ends a download in flight at once, not when the
    server or a deadline lets go; nothing is left in the task dir or the staging area."""
    import threading
    import time

    route = server.add("/hang", body=b"x" * 10000, stall=60)
    cfg = GetterConfig(http_retries=0, http_read_timeout=60)
    stop = threading.Event()

    def cancel_once_requested() -> None:
        wait_until(lambda: route.requests, 30)
        stop.set()

    threading.Thread(target=cancel_once_requested, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(ArtifactError, match="download cancelled") as err:
        fetch(ArtifactSpec(server.url("/hang")), alloc, cfg, cancelled=stop.is_set)
    assert time.monotonic() - t0 < 10
    assert err.value.recoverable
    assert alloc.task_files() == ["local", "secrets", "tmp"] and alloc.staging_leftovers() == []


def test_task_artifacts_in_parallel_with_events(server: TestServer, alloc: Alloc) -> None:
    from rawexec.artifacts import EVENT_DOWNLOADING, EVENT_FAILED, fetch_task_artifacts

    for n in ("a", "b", "c"):
        server.add(f"/{n}", body=n.encode())
    events: list[tuple[str, str]] = []
    specs = [ArtifactSpec(server.url(f"/{n}")) for n in ("a", "b", "c")]
    res = fetch_task_artifacts(specs, task_dir=str(alloc.task), alloc_dir=str(alloc.root), config=FAST,
                               emit=lambda t, m: events.append((t, m)))
    assert [Path(r.destination).read_bytes() for r in res] == [b"a", b"b", b"c"]
    assert events == [(EVENT_DOWNLOADING, "Client is downloading artifacts")]
    events.clear()
    with pytest.raises(ArtifactError) as err:
        fetch_task_artifacts([*specs, ArtifactSpec(server.url("/nope"))], task_dir=str(alloc.task),
                             alloc_dir=str(alloc.root), config=FAST, emit=lambda t, m: events.append((t, m)))
    assert err.value.recoverable  # as Nomad's artifact hook: every download failure is
    assert events[-1] == (EVENT_FAILED, f'failed to download artifact "{server.url("/nope")}": '
                                        "bad response code: 404")


def test_escape_checks_hold_without_landlock(server: TestServer, alloc: Alloc) -> None:
    name, data, expect = bad_corpus()["symlink-chain"]
    server.add(f"/{name}", body=data)
    expect_failure(ArtifactSpec(server.url(f"/{name}")), alloc, expect, recoverable=False,
                   config=GetterConfig(disable_filesystem_isolation=True))


def test_interpolated_destination_escaping(server: TestServer, alloc: Alloc) -> None:
    route = server.add("/t", body=b"x")
    with pytest.raises(ArtifactError, match="artifact destination path escapes alloc directory"):
        fetch(ArtifactSpec(server.url("/t"), destination="${D}"), alloc,
              interpolate=lambda s: s.replace("${D}", "../../../etc"))
    assert route.requests == []


# ---- TLS through the sandbox, chown ------------------------------------------------------------

@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TestServer]:
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    s = TestServer()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    s.httpd.socket = ctx.wrap_socket(s.httpd.socket, server_side=True)
    yield s
    s.close()


def test_https_with_insecure_and_verification_failure(tls_server: TestServer, alloc: Alloc) -> None:
    tls_server.add("/secure.bin", body=SCRIPT)
    url = tls_server.url("/secure.bin").replace("http://", "https://")
    res = fetch(ArtifactSpec(url, insecure=True, options={"checksum": f"sha256:{sha256(SCRIPT)}"}), alloc)
    assert Path(res.destination).read_bytes() == SCRIPT
    err = expect_failure(ArtifactSpec(url, destination="local/v/"), alloc, "CERTIFICATE_VERIFY_FAILED",
                         recoverable=True, config=GetterConfig(http_retries=0))
    assert "ConnectError" in err.message


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_chown_to_task_user(server: TestServer, alloc: Alloc) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    server.add("/app.tgz", body=tar_bytes(sample_tree(), "gz"))
    res = fetch(ArtifactSpec(server.url("/app.tgz"), destination="local/owned", chown=True), alloc,
                task_user="nobody")
    for p in [Path(res.destination), *Path(res.destination).rglob("*")]:
        st = os.lstat(p)
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), p


def test_sandbox_module_entry_point(tmp_path: Path) -> None:
    """``python -m rawexec.artifacts.sandbox``: JSON params in, JSON events out."""
    import json

    src = tmp_path / "tool"
    src.write_bytes(SCRIPT)
    staging = tmp_path / "staging"
    staging.mkdir()
    params = {"source": f"file://{src}", "getter": "file", "url": str(src), "name": "tool", "mode": "any",
              "archive_disabled": False, "archive_kind": None, "checksum": ["sha256", sha256(SCRIPT)],
              "headers": {}, "insecure": False, "git": {}, "staging": str(staging),
              "config": GetterConfig().to_dict(), "isolation": {"enabled": True}, "extra_read": [str(src)]}
    out = subprocess.run([sys.executable, "-m", "rawexec.artifacts.sandbox"], input=json.dumps(params),
                         capture_output=True, text=True, check=True)
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events[0]["event"] == "isolation"
    assert events[-1] == {"event": "done", "kind": "file", "name": "tool", "bytes": len(SCRIPT), "files": 1,
                          "checksum": f"sha256:{sha256(SCRIPT)}"}
    assert (staging / "out" / "tool").read_bytes() == SCRIPT
    bad = subprocess.run([sys.executable, "-m", "rawexec.artifacts.sandbox"], input="{not json", check=False,
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert json.loads(bad.stdout.splitlines()[-1])["message"].startswith("getter subprocess got bad parameters")
