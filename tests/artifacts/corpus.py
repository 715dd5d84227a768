"""Builders for good and malicious archives (everything the tests need is made here)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import stat
import tarfile
import zipfile

import zstandard


def tar_bytes(entries: list[tarfile.TarInfo | tuple[str, bytes]], compression: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tf.addfile(e)
            else:
                name, data = e
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(data))
    return compress(buf.getvalue(), compression)


def compress(data: bytes, compression: str) -> bytes:
    if compression in ("", "tar"):
        return data
    if compression == "gz":
        return gzip.compress(data, 1)
    if compression == "bz2":
        return bz2.compress(data, 1)
    if compression == "xz":
        return lzma.compress(data, preset=0)
    if compression == "zst":
        return bytes(zstandard.ZstdCompressor(level=1).compress(data))
    raise ValueError(compression)


def ti(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.type = kind
    t.linkname = linkname
    t.mode = mode
    return t


def zip_bytes(entries: list[tuple[str, bytes] | tuple[str, bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for e in entries:
            info = zipfile.ZipInfo(e[0])
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = e[2] if len(e) == 3 else stat.S_IFREG | 0o644
            info.external_attr = mode << 16
            zf.writestr(info, e[1])
    return buf.getvalue()


def sample_tree() -> list[tarfile.TarInfo | tuple[str, bytes]]:
    return [ti("app/", tarfile.DIRTYPE, mode=0o755), ("app/run.sh", b"#!/bin/sh\necho ok\n"),
            ("app/data/x.txt", b"x" * 1000), ti("app/link", tarfile.SYMTYPE, "run.sh"),
            ti("app/hard", tarfile.LNKTYPE, "app/run.sh")]


#: name -> (archive file name, bytes, substring expected in the error)
def bad_corpus() -> dict[str, tuple[str, bytes, str]]:
    big = b"\0" * (3 << 20)
    return {
        "zip-slip": ("slip.zip", zip_bytes([("ok.txt", b"ok"), ("../../x", b"evil")]), '("..")'),
        "tar-slip": ("slip.tar.gz", tar_bytes([("a/../../x", b"evil")], "gz"), '("..")'),
        "zip-absolute": ("abs.zip", zip_bytes([("/tmp/evil", b"evil")]), "absolute paths"),
        "tar-absolute": ("abs.tar", tar_bytes([("/tmp/evil", b"evil")]), "absolute paths"),
        "symlink-then-file": ("through.tar.gz", tar_bytes(
            [ti("d", tarfile.SYMTYPE, "."), ("d/f", b"ok")], "gz"), "through symlink"),
        "symlink-outside-then-file": ("through2.tar", tar_bytes(
            [ti("d", tarfile.SYMTYPE, "../../../../tmp"), ("d/f", b"evil")]), "points outside"),
        "symlink-absolute": ("abslink.tar.xz", tar_bytes([ti("l", tarfile.SYMTYPE, "/etc/passwd")], "xz"),
                             "absolute path"),
        "symlink-chain": ("chain.tar", tar_bytes(
            [ti("a", tarfile.SYMTYPE, "."), ti("b", tarfile.SYMTYPE, "a/..")]), "resolving outside"),
        "zip-symlink": ("zl.zip", zip_bytes([("l", b"../../etc/passwd", stat.S_IFLNK | 0o777)]),
                        "points outside"),
        "hardlink-escape": ("hl.tar.bz2", tar_bytes([ti("h", tarfile.LNKTYPE, "../../etc/passwd")], "bz2"),
                            '("..")'),
        "hardlink-absolute": ("hla.tar", tar_bytes([ti("h", tarfile.LNKTYPE, "/etc/passwd")]), "absolute"),
        "hardlink-missing": ("hlm.tar", tar_bytes([ti("h", tarfile.LNKTYPE, "etc/passwd")]),
                             "not an earlier member"),
        "device": ("dev.tar.zst", tar_bytes([ti("null", tarfile.CHRTYPE)], "zst"), "device files"),
        "fifo": ("fifo.tar", tar_bytes([ti("p", tarfile.FIFOTYPE)]), "FIFOs"),
        "zip-bomb": ("bomb.zip", zip_bytes([(f"f{i}", big) for i in range(2)]), "decompression_size_limit"),
        "tar-bomb": ("bomb.tar.gz", tar_bytes([("z", big * 2)], "gz"), "decompression_size_limit"),
        "gz-bomb": ("bomb.gz", gzip.compress(big * 2), "decompression_size_limit"),
        "file-count": ("many.tar", tar_bytes([(f"f{i}", b"") for i in range(40)]),
                       "decompression_file_count_limit"),
        "truncated-tgz": ("trunc.tar.gz", tar_bytes(sample_tree(), "gz")[:-40], "truncated or corrupt"),
        "truncated-zip": ("trunc.zip", zip_bytes([("a", b"a" * 5000)])[:-30], "truncated or corrupt"),
        "truncated-tar": ("trunc.tar", tar_bytes([("a", b"a" * 5000)])[:1000], "truncated or corrupt"),
        "lying-name-zip-as-tgz": ("liar.tar.gz", zip_bytes([("a", b"a")]), "content is zip"),
        "lying-name-text-as-zip": ("liar.zip", b"hello, I am text\n" * 10, "not a recognised archive"),
        "lying-name-gz-as-xz": ("liar.tar.xz", tar_bytes([("a", b"a")], "gz"), "content is gz"),
    }
