"""The wire format between the driver, the spawner and each shim.

A message is a 4-byte big-endian length followed by that many bytes of JSON (an object).
File descriptors travel with a message as SCM_RIGHTS ancillary data; the JSON says how many
(``"nfds": N``). Both the blocking side (driver) and the non-blocking side (shim event loop) use
:class:`Channel`.
"""

from __future__ import annotations

import _socket
import array
import importlib
import json
import marshal
import os
import signal
import socket
import struct
from collections.abc import Callable
from typing import Any

__all__ = ["FD_SPACE", "MAX_MESSAGE", "SPAWN_REQUEST", "Channel", "ProtocolError", "exit_record_tmp",
           "fds_from_ancdata", "recv_spec", "remove_socket", "send_spec", "sockaddr"]

MAX_MESSAGE = 64 * 1024 * 1024
# Driver -> spawner, and spawner -> idle shim: this one byte, with the driver's socket for the shim
# as SCM_RIGHTS. The task's spec then goes from the driver to the shim on that socket.
SPAWN_REQUEST = b"S"
_HDR = struct.Struct(">I")
_MAX_FDS = 8
# A plain int, computed once: ``|`` on socket's IntFlag members runs enum's Python code (page
# copies in a freshly forked shim).
_RECV_FLAGS = int(socket.MSG_WAITALL | socket.MSG_CMSG_CLOEXEC)
# Per read: 64 KiB, not more. A buffer past glibc's mmap threshold (128 KiB) costs an mmap and an
# munmap on every read (~30 µs, measured), and most messages are a few hundred bytes.
_RECV_CHUNK = 64 * 1024
FD_SPACE = socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)  # ancillary room for recvmsg


def sockaddr(name: str) -> str:
    """The ``bind``/``connect`` address of a shim's control socket as stored in a task's state.

    ``@name`` is a Linux abstract socket (the leading NUL form): no file system inode to create,
    scan for and remove, and nothing left behind when the shim dies. Anything else is a path (a
    task started by an older release). Either way the shim accepts only its own user and root
    (``SO_PEERCRED``), the same people a 0600 socket in a 0700 directory lets in."""
    return "\0" + name[1:] if name.startswith("@") else name


def remove_socket(name: str) -> None:
    """Remove a control socket's file, if it has one (an abstract socket has none)."""
    if name and not name.startswith("@"):
        try:
            os.unlink(name)
        except OSError:
            pass


def fds_from_ancdata(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The file descriptors that came as SCM_RIGHTS in ``recvmsg``'s ancillary data."""
    fds = array.array("i")
    for level, kind, cdata in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(cdata[: len(cdata) - (len(cdata) % fds.itemsize)])
    return list(fds)


def _unencodable(o: object) -> object:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _c_json() -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    """The C encoder and scanner behind :func:`json.dumps` and :func:`json.loads`, called
    directly: the Python layers around them run about a dozen functions per message, and in a
    freshly forked shim each of those costs page copies (about 25 per stop). Same output: compact,
    ASCII-escaped; same input: what ``json.loads`` accepts, without surrounding whitespace (which
    no peer sends)."""
    try:
        cjson: Any = importlib.import_module("_json")
        make_encoder, make_scanner = cjson.make_encoder, cjson.make_scanner
    except (ImportError, AttributeError):  # an interpreter without the accelerator
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        return (lambda msg: dumps(msg).encode()), json.loads
    chunks = make_encoder(None, _unencodable, cjson.encode_basestring_ascii, None, ":", ",", False, False, True)
    scan = make_scanner(json.JSONDecoder())

    def encode(msg: Any) -> bytes:
        return "".join(chunks(msg, 0)).encode()

    def decode(raw: bytes) -> Any:
        s = raw.decode()
        try:
            obj, end = scan(s, 0)
        except StopIteration as e:
            raise ValueError(f"no JSON value at character {e.value}") from None
        if end != len(s):
            raise ValueError(f"extra data at character {end}")
        return obj

    return encode, decode


_encode, _decode = _c_json()


class ProtocolError(Exception):
    """The peer sent something that is not a valid message, or went away mid-message."""


def send_spec(sock: _socket.socket, obj: dict[str, Any], fds: list[int] | None = None, *,
              version: int = marshal.version) -> None:
    """One length-prefixed :mod:`marshal` message (with ``fds`` as SCM_RIGHTS): the driver's task
    spec for a new shim, and the shim's first answer.

    marshal rather than JSON because decoding it is one C call: in the freshly forked shim every
    Python-level step costs page copies. Both ends are this package run by the same interpreter
    (the driver starts the spawner with its own ``sys.executable``), over a socket pair the driver
    made, so the data is trusted and the format matches. After it, the connection carries
    :class:`Channel` messages.

    ``version=0`` (the driver's spec for a fresh shim): no interned strings in the payload, so
    decoding never looks them up in, or adds them to, the interpreter's table of interned
    strings, whose pages a forked shim would copy (~15 fewer page copies per task)."""
    try:
        payload = marshal.dumps(obj, version)
    except ValueError:  # a str/int subclass somewhere: normalise to plain types first
        payload = marshal.dumps(json.loads(json.dumps(obj)), version)
    data = _HDR.pack(len(payload)) + payload
    if fds:
        sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        if sent < len(data):
            sock.sendall(data[sent:])
    else:
        sock.sendall(data)


def recv_spec(sock: _socket.socket, want_fds: int = 0) -> tuple[Any, list[int]]:
    """Read exactly one :func:`send_spec` message (blocking) and the fds sent with it (closed and
    refused if more than ``want_fds`` came); ProtocolError if the peer went away or sent garbage."""
    hdr, anc, _flags, _addr = sock.recvmsg(_HDR.size, FD_SPACE, _RECV_FLAGS)
    got = fds_from_ancdata(anc)
    try:
        if len(got) > want_fds:
            raise ProtocolError(f"{len(got)} file descriptors sent, at most {want_fds} expected")
        if len(hdr) != _HDR.size:
            raise ProtocolError("connection closed")
        (n,) = _HDR.unpack(hdr)
        if n > MAX_MESSAGE:
            raise ProtocolError(f"message of {n} bytes exceeds the limit")
        data = sock.recv(n, socket.MSG_WAITALL)
        if len(data) != n:
            raise ProtocolError("connection closed")
        try:
            return marshal.loads(data), got
        except (ValueError, EOFError, TypeError) as e:
            raise ProtocolError(f"malformed message: {e}") from None
    except BaseException:
        for fd in got:
            os.close(fd)
        raise


class Channel:
    """A message stream over a connected unix socket.

    ``recv()`` blocks (honouring the socket's timeout) unless the socket is non-blocking, in which
    case ``poll()`` returns complete messages already received and never blocks.
    """

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()
        self._fds: list[int] = []
        self.eof = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: dict[str, Any], fds: list[int] | None = None) -> None:
        payload = _encode(msg)
        data = _HDR.pack(len(payload)) + payload
        if fds:
            msg_fds = array.array("i", fds)
            sent = self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, msg_fds)])
        else:
            sent = self.sock.send(data)
        if sent < len(data):
            self.sock.sendall(data[sent:])

    def _fill(self) -> bool:
        """Read what is available into the buffer; False on EOF."""
        data, ancdata, _flags, _addr = self.sock.recvmsg(_RECV_CHUNK, FD_SPACE)
        fds = fds_from_ancdata(ancdata)
        for fd in fds:
            os.set_inheritable(fd, False)
        self._fds.extend(fds)
        if not data:
            self.eof = True
            return False
        self._buf += data
        return True

    def _take(self) -> tuple[dict[str, Any], list[int]] | None:
        if len(self._buf) < _HDR.size:
            return None
        (n,) = _HDR.unpack_from(self._buf)
        if n > MAX_MESSAGE:
            raise ProtocolError(f"message of {n} bytes exceeds the limit")
        if len(self._buf) < _HDR.size + n:
            return None
        raw = bytes(self._buf[_HDR.size:_HDR.size + n])
        del self._buf[:_HDR.size + n]
        try:
            msg = _decode(raw)
        except ValueError as e:
            raise ProtocolError(f"malformed message: {e}") from None
        if not isinstance(msg, dict):
            raise ProtocolError("malformed message: not an object")
        nfds = int(msg.get("nfds", 0) or 0)
        fds, self._fds = self._fds[:nfds], self._fds[nfds:]
        if len(fds) < nfds:
            raise ProtocolError("message announced file descriptors that did not arrive")
        return msg, fds

    def buffered(self) -> tuple[dict[str, Any], list[int]] | None:
        """A whole message already received, if any (never reads the socket)."""
        return self._take()

    def recv(self) -> tuple[dict[str, Any], list[int]]:
        """Block until one whole message arrived; ProtocolError on EOF."""
        while True:
            got = self._take()
            if got is not None:
                return got
            if not self._fill():
                raise ProtocolError("connection closed")

    def poll(self) -> list[tuple[dict[str, Any], list[int]]]:
        """Non-blocking: read once, return every complete message (may set ``eof``)."""
        try:
            self._fill()
        except (BlockingIOError, InterruptedError):
            pass
        out = []
        while (got := self._take()) is not None:
            out.append(got)
        return out

    def close(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
        self.sock.close()


def exit_record_tmp(path: str, shim_pid: int) -> str:
    """The temp file a shim writes its exit record ``path`` into before renaming it (the driver
    removes it when a killed shim left it)."""
    return f"{path}.tmp.{shim_pid}"


#: The file, next to the tasks' state files, whose lock says "a stop is in flight": a driver holds
#: it shared while any of its stops runs, and a shim that has answered everything takes it
#: exclusively (bounded) before it exits. See ``rawexec.executor.shim._teardown_when_idle``.
STOP_GATE = ".stop-gate"


#: What a driver sends a stopped task's shim whose clean-up it wants now (``Driver.destroy_task``):
#: the shim skips the stop gate, or leaves it. A shim catches it from the start.
RELEASE_SIGNAL = signal.SIGUSR1


def stop_gate_path(state_path: str) -> str:
    """The stop gate for a task whose exit record is ``state_path`` (one per state dir)."""
    return os.path.join(os.path.dirname(state_path), STOP_GATE)
