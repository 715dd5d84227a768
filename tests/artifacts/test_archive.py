"""Unpacking: every format, and the malicious/broken corpus, at the library level (no network)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from rawexec.artifacts.archive import (
    UnpackError,
    archive_kind_from_name,
    archive_kind_from_option,
    check_tree,
    unpack,
)
from tests.artifacts.corpus import bad_corpus, compress, sample_tree, tar_bytes, ti, zip_bytes

LIMITS: dict[str, Any] = {"size_limit": 4 << 20, "count_limit": 32}


@pytest.mark.parametrize(("name", "kind"), [
    ("a.zip", "zip"), ("a.tar", "tar"), ("a.tar.gz", "tar.gz"), ("a.tgz", "tar.gz"),
    ("a.tar.bz2", "tar.bz2"), ("a.tbz2", "tar.bz2"), ("a.tar.xz", "tar.xz"), ("a.txz", "tar.xz"),
    ("a.tar.zst", "tar.zst"), ("a.tzst", "tar.zst"), ("a.gz", "gz"), ("a.bz2", "bz2"), ("a.xz", "xz"),
    ("a.zst", "zst"), ("A.TAR.GZ", "tar.gz"), ("binary", None), ("a.gzip", None),
])
def test_kind_from_name(name: str, kind: str | None) -> None:
    assert archive_kind_from_name(name) == kind


def test_kind_from_option() -> None:
    assert archive_kind_from_option("false") is None
    assert archive_kind_from_option("tgz") == "tar.gz"
    assert archive_kind_from_option("zip") == "zip"
    with pytest.raises(ValueError, match='unsupported archive type "rar"'):
        archive_kind_from_option("rar")


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "tar.bz2", "tar.xz", "tar.zst"])
def test_tar_formats_round_trip(tmp_path: Path, kind: str) -> None:
    comp = kind.split(".")[1] if "." in kind else ""
    path = tmp_path / f"a.{kind}"
    path.write_bytes(tar_bytes(sample_tree(), comp))
    ex = unpack(str(path), kind, str(tmp_path / "out"), out_name="a", display=path.name, **LIMITS)
    out = tmp_path / "out"
    assert (out / "app/run.sh").read_bytes() == b"#!/bin/sh\necho ok\n"
    assert (out / "app/data/x.txt").read_bytes() == b"x" * 1000
    assert os.readlink(out / "app/link") == "run.sh"
    assert os.stat(out / "app/hard").st_ino == os.stat(out / "app/run.sh").st_ino
    assert ex.files == 5 and ex.bytes == len(b"#!/bin/sh\necho ok\n") + 1000


def test_zip_round_trip_keeps_modes_and_links(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(zip_bytes([("bin/", b"", stat.S_IFDIR | 0o755), ("bin/tool", b"#!/bin/sh\n", stat.S_IFREG | 0o755),
                                ("bin/alias", b"tool", stat.S_IFLNK | 0o777), ("readme", b"hi")]))
    unpack(str(path), "zip", str(tmp_path / "out"), out_name="a", display="a.zip", **LIMITS)
    assert stat.S_IMODE(os.stat(tmp_path / "out/bin/tool").st_mode) == 0o755
    assert os.readlink(tmp_path / "out/bin/alias") == "tool"
    assert (tmp_path / "out/readme").read_bytes() == b"hi"


@pytest.mark.parametrize("comp", ["gz", "bz2", "xz", "zst"])
def test_single_file_formats(tmp_path: Path, comp: str) -> None:
    path = tmp_path / f"tool.{comp}"
    path.write_bytes(compress(b"payload" * 100, comp))
    unpack(str(path), comp, str(tmp_path / "out"), out_name="tool", display=path.name, **LIMITS)
    assert (tmp_path / "out/tool").read_bytes() == b"payload" * 100


def test_setuid_and_setgid_bits_are_stripped(tmp_path: Path) -> None:
    t = ti("suid", mode=0o6755)
    t.size = 2
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.addfile(t, io.BytesIO(b"hi"))
    path = tmp_path / "s.tar"
    path.write_bytes(buf.getvalue())
    unpack(str(path), "tar", str(tmp_path / "out"), out_name="s", display="s.tar", **LIMITS)
    assert stat.S_IMODE(os.stat(tmp_path / "out/suid").st_mode) == 0o755


def test_later_member_replaces_earlier_symlink_without_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    inner = os.path.relpath(victim, tmp_path / "out")
    path = tmp_path / "x.tar"
    # a symlink pointing outside is refused before the file could follow it
    path.write_bytes(tar_bytes([ti("f", tarfile.SYMTYPE, inner), ("f", b"evil")]))
    with pytest.raises(UnpackError, match="points outside"):
        unpack(str(path), "tar", str(tmp_path / "out"), out_name="x", display="x.tar", **LIMITS)
    assert victim.read_text() == "untouched"
    # an in-tree symlink is replaced by the later regular file, the link target untouched
    path.write_bytes(tar_bytes([("t", b"target"), ti("f", tarfile.SYMTYPE, "t"), ("f", b"new")]))
    unpack(str(path), "tar", str(tmp_path / "out2"), out_name="x", display="x.tar", **LIMITS)
    assert (tmp_path / "out2/t").read_bytes() == b"target"
    assert (tmp_path / "out2/f").read_bytes() == b"new" and not os.path.islink(tmp_path / "out2/f")


@pytest.mark.parametrize("case", sorted(bad_corpus()))
def test_bad_corpus_is_refused_and_nothing_outside_is_touched(tmp_path: Path, case: str) -> None:
    name, data, expect = bad_corpus()[case]
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    path = work / name
    path.write_bytes(data)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    from rawexec.artifacts.archive import archive_kind_from_name
    kind = archive_kind_from_name(name)
    assert kind is not None
    with pytest.raises(UnpackError) as err:
        unpack(str(path), kind, str(work / "out"), out_name="x", display=name, **LIMITS)
    assert expect in str(err.value)
    after = sorted(str(p) for p in tmp_path.rglob("*") if "/out" not in str(p))
    assert after == [p for p in before], "something was written outside the unpack root"
    assert not os.path.exists("/tmp/evil")


def test_check_tree_refuses_escaping_symlink_and_devices(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    os.symlink("../../../etc", tmp_path / "t/out")
    with pytest.raises(UnpackError, match="resolving outside"):
        check_tree(str(tmp_path / "t"))
    os.unlink(tmp_path / "t/out")
    os.mkfifo(tmp_path / "t/p")
    with pytest.raises(UnpackError, match="FIFOs"):
        check_tree(str(tmp_path / "t"))


def test_limits_zero_disable(tmp_path: Path) -> None:
    path = tmp_path / "m.tar"
    path.write_bytes(tar_bytes([(f"f{i}", b"x" * 10) for i in range(50)]))
    ex = unpack(str(path), "tar", str(tmp_path / "out"), out_name="m", display="m.tar",
                size_limit=0, count_limit=0)
    assert ex.files == 50


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("comp", ["", "gz"])
def test_long_names_and_header_formats(tmp_path: Path, fmt: int, comp: str) -> None:
    long_dir = "d" * 60 + "/" + "e" * 60
    names = [f"{long_dir}/file-{i}.txt" for i in range(3)] if fmt != tarfile.USTAR_FORMAT else ["a/b.txt"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for i, n in enumerate(names):
            data = bytes([i]) * (1000 * (i + 1))
            t = tarfile.TarInfo(n)
            t.size = len(data)
            if fmt == tarfile.PAX_FORMAT:
                t.pax_headers = {"comment": "ü" * 10}
            tf.addfile(t, io.BytesIO(data))
    path = tmp_path / ("x.tar" + (".gz" if comp else ""))
    path.write_bytes(compress(buf.getvalue(), comp))
    unpack(str(path), "tar.gz" if comp else "tar", str(tmp_path / "out"), out_name="x", display=path.name,
           **LIMITS)
    for i, n in enumerate(names):
        assert (tmp_path / "out" / n).read_bytes() == bytes([i]) * (1000 * (i + 1))


def test_symlink_loop_is_refused_as_a_loop(tmp_path: Path) -> None:
    path = tmp_path / "loop.tar"
    path.write_bytes(tar_bytes([ti("a", tarfile.SYMTYPE, "a//a")]))
    with pytest.raises(UnpackError, match='"a" is a symlink loop'):
        unpack(str(path), "tar", str(tmp_path / "out"), out_name="x", display="loop.tar", **LIMITS)
