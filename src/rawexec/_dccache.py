"""Compiled dataclass methods, cached on disk like bytecode.

Python 3.11 builds every method of a dataclass (``__init__``, ``__repr__``, ``__eq__``, and for a
frozen one ``__hash__``, ``__setattr__`` and ``__delattr__``) by compiling generated source text
with ``exec``: about 400 compilations for the ~70 dataclasses ``rawexec run`` imports, 60-80 ms of
its start before the first task can start (40 % of its import time). A ``.pyc`` file does not
help: the text is made at import time.

The text is a pure function of the class definition, so its code object can be cached like a
module's bytecode: :func:`install` makes :mod:`dataclasses` look the text up in a table loaded
from ``<module>.<tag>.dcc`` next to the module's ``.pyc`` (honouring ``PYTHONPYCACHEPREFIX``),
one file per module of ours that defines dataclasses, read when that module makes its first one
(a process loads only what it imports: the spawner, whose every page is copied into each fork,
stays as small as before). What is not there is compiled. New entries are written back by the
process that installed the hook, when :func:`release` is called (once a command is up) or at exit
-- never when ``PYTHONDONTWRITEBYTECODE``/``-B`` asks Python not to write bytecode, never from a
forked child (a task's shim), never for another package's modules. The key is the whole source
text, so a changed class simply misses; a file from another Python version (other magic number)
or a damaged one is ignored and rewritten. ``python -m rawexec._dccache`` writes every module's
table at once, also under ``PYTHONDONTWRITEBYTECODE`` (an explicit request, as ``compileall`` is):
``scripts/bootstrap`` runs it after byte-compiling ``src/``.

Nothing else changes: the same text gives the same code object, executed the same way.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib.util
import marshal
import os
import sys
from types import CodeType
from typing import Any

__all__ = ["install", "release"]

_HEADER = b"rawexec-dcc\n" + importlib.util.MAGIC_NUMBER
_MAX_ENTRIES = 512
"""Per module: more than any of our modules has methods, so a process that makes classes at run
time (``make_dataclass`` in a loop) cannot grow a file without bound."""

_PACKAGE = "rawexec"
"""Only this package's modules are cached (tests point it at a package of their own)."""

_tables: dict[str, dict[str, CodeType]] = {}  # module -> its file's entries
_added: dict[str, dict[str, CodeType]] = {}  # module -> what this process compiled
_owner = 0  # the pid that installed the hook: only it writes files
_enabled = False


def _path(module: str) -> str | None:
    """``<pycache>/<module file>.<tag>.dcc`` for one of our modules, None for anything else."""
    if module != _PACKAGE and not module.startswith(_PACKAGE + "."):
        return None  # never write next to another package's bytecode
    source = getattr(sys.modules.get(module), "__file__", None)
    if not isinstance(source, str) or not source.endswith(".py"):
        return None
    try:
        pyc = importlib.util.cache_from_source(source)
    except (NotImplementedError, ValueError):  # no cache tag, or a path importlib cannot map
        return None
    return pyc[: -len(".pyc")] + ".dcc"


def _load(path: str | None) -> dict[str, CodeType]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return {}
    if not data.startswith(_HEADER):
        return {}
    try:
        table = marshal.loads(data[len(_HEADER):])
    except (EOFError, ValueError, TypeError):
        return {}
    if not isinstance(table, dict):
        return {}
    return {k: v for k, v in table.items() if isinstance(k, str) and isinstance(v, CodeType)}


def _exec(source: Any, globals: dict[str, Any] | None = None, locals: Any = None, /) -> None:
    """``exec`` as :mod:`dataclasses` calls it (``globals`` is the class's module's namespace),
    with the compiled text looked up first."""
    if _enabled and type(source) is str and globals is not None:
        module = globals.get("__name__")
        if isinstance(module, str):
            table = _tables.get(module)
            if table is None:
                table = _tables[module] = _load(_path(module))
            code = table.get(source)  # not pop: two classes of a module may make the same text
            if code is None:
                code = compile(source, "<string>", "exec", dont_inherit=True)
                new = _added.setdefault(module, {})
                if len(new) < _MAX_ENTRIES:
                    new[source] = code
            source = code
    exec(source, globals, locals)


def install() -> None:
    """Route :mod:`dataclasses`' ``exec`` through the cache (idempotent)."""
    global _enabled, _owner
    if _enabled or sys.flags.optimize or getattr(dataclasses, "exec", None) is _exec:
        return
    _owner = os.getpid()
    _enabled = True
    # a module global named ``exec`` shadows the builtin for dataclasses' own calls only
    dataclasses.exec = _exec  # type: ignore[attr-defined]
    atexit.register(_save)


def release() -> None:
    """Write what this process added, then stop caching and drop the tables (not needed once a
    long-running command is up; a later dataclass is compiled as before)."""
    global _enabled
    _save()
    _enabled = False
    _tables.clear()
    _added.clear()  # also when nothing could be written (PYTHONDONTWRITEBYTECODE, a forked child)


def _save() -> None:
    if not _added or os.getpid() != _owner or sys.dont_write_bytecode:
        return
    for module, new in list(_added.items()):
        path = _path(module)
        if path is not None:
            table = _load(path)  # another process may have written entries meanwhile: keep them
            for k, v in new.items():
                if len(table) >= _MAX_ENTRIES:
                    break
                table.setdefault(k, v)
            _write(path, _HEADER + marshal.dumps(table))
        del _added[module]


def _write(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def main() -> None:
    """``python -m rawexec._dccache``: write every module's table now, as ``compileall`` writes
    bytecode (also under ``PYTHONDONTWRITEBYTECODE``, which only stops *implicit* writes). The
    project's bootstrap runs it after byte-compiling ``src/``."""
    import importlib
    import pkgutil

    install()
    import rawexec

    for info in pkgutil.walk_packages(rawexec.__path__, "rawexec."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as e:  # an optional dependency missing: that module is simply not cached
            sys.stderr.write(f"rawexec._dccache: skipped {info.name}: {e}\n")
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, False
    try:
        _save()
    finally:
        sys.dont_write_bytecode = dont_write


if __name__ == "__main__":
    # run as a script this module is ``__main__``, a second copy: the imported modules call
    # ``install()`` on ``rawexec._dccache``, so that copy must be the one that does the work
    from rawexec._dccache import main as _main

    _main()
