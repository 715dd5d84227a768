"""Property: whatever a tar or zip archive contains, nothing is written outside the unpack root."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawexec.artifacts.archive import UnpackError, unpack

_PARTS = st.sampled_from(["a", "b", "..", ".", "", "sentinel", "/"])
_PATH = st.lists(_PARTS, min_size=1, max_size=4).map("/".join)
_ENTRY = st.tuples(st.sampled_from(["file", "dir", "sym", "hard"]), _PATH, _PATH)


def _tar(entries: list[tuple[str, str, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for kind, name, target in entries:
            t = tarfile.TarInfo(name or "x")
            if kind == "file":
                t.size = 3
                tf.addfile(t, io.BytesIO(b"bad"))
                continue
            t.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[kind]
            t.linkname = target
            tf.addfile(t)
    return buf.getvalue()


def _zip(entries: list[tuple[str, str, str]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for kind, name, target in entries:
            if kind == "hard":
                continue
            info = zipfile.ZipInfo((name or "x") + ("/" if kind == "dir" else ""))
            info.external_attr = ((stat.S_IFLNK | 0o777) if kind == "sym" else (stat.S_IFREG | 0o644)) << 16
            zf.writestr(info, target.encode() if kind == "sym" else b"bad")
    return buf.getvalue()


def _snapshot(base: str) -> dict[str, bytes | str]:
    snap: dict[str, bytes | str] = {}
    for d, dirs, files in os.walk(base):
        for n in dirs + files:
            p = os.path.join(d, n)
            if "/root/out" in p:
                continue
            if os.path.islink(p):
                snap[p] = os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    snap[p] = f.read()
            else:
                snap[p] = "d"
    return snap


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(_ENTRY, min_size=1, max_size=6), as_zip=st.booleans())
def test_nothing_escapes_the_root(entries: list[tuple[str, str, str]], as_zip: bool) -> None:
    base = tempfile.mkdtemp()
    try:
        root = os.path.join(base, "a", "b", "root")
        os.makedirs(root)
        with open(os.path.join(base, "a", "sentinel"), "w") as f:
            f.write("keep")
        path = os.path.join(base, "in.zip" if as_zip else "in.tar")
        with open(path, "wb") as f:
            f.write(_zip(entries) if as_zip else _tar(entries))
        before = _snapshot(base)
        try:
            unpack(path, "zip" if as_zip else "tar", os.path.join(root, "out"), out_name="x",
                   size_limit=1 << 20, count_limit=100, display="in")
        except UnpackError:
            assert _snapshot(base) == before  # refused: the caller discards the staging dir
            return
        assert _snapshot(base) == before
        real_out = os.path.realpath(os.path.join(root, "out"))
        for d, dirs, files in os.walk(os.path.join(root, "out")):
            for n in dirs + files:
                real = os.path.realpath(os.path.join(d, n))
                assert real == real_out or real.startswith(real_out + os.sep), (entries, real)
    finally:
        shutil.rmtree(base)
