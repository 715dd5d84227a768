"""Path and file functions of Nomad's jobspec2 set (go-cty-funcs' filesystem semantics).

``basename``/``dirname`` follow Go's ``filepath.Base``/``filepath.Dir``; ``abspath`` is relative to
the working directory (as Nomad's is); ``fileexists`` and ``fileset`` are relative to the job
file's directory, like ``file()``.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from typing import Any

from rawexec.jobspec.hcl.functions import Func, FuncContext, FuncError, arg_error, arity, as_str

__all__ = ["FILE_FUNCTIONS"]

#: ``fileset`` looks at no more than this many directory entries (a job file is not a crawler).
MAX_FILESET_ENTRIES = 100_000


def _go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` (``""`` is ``"."``)."""
    if not path:
        return "."
    clean = posixpath.normpath(path)
    return "/" + clean.lstrip("/") if clean.startswith("//") else clean


def _expand_home(name: str, path: str) -> str:
    if not path.startswith("~"):
        return path
    if path != "~" and not path.startswith("~/"):
        raise arg_error(name, "path", f'cannot expand user-specific home dir in "{path}"; write ~/... or an '
                        "absolute path")
    home = os.environ.get("HOME") or os.path.expanduser("~")
    return home + path[1:]


def _fn_abspath(a: list[Any], c: FuncContext) -> Any:
    arity("abspath", a, 1)
    return os.path.abspath(as_str("abspath", a[0], "path"))


def _fn_basename(a: list[Any], c: FuncContext) -> Any:
    arity("basename", a, 1)
    p = as_str("basename", a[0], "path")
    if p == "":
        return "."
    p = p.rstrip("/")
    return "/" if p == "" else p.rsplit("/", 1)[-1]


def _fn_dirname(a: list[Any], c: FuncContext) -> Any:
    arity("dirname", a, 1)
    p = as_str("dirname", a[0], "path")
    return _go_clean(p[:p.rfind("/") + 1])


def _fn_pathexpand(a: list[Any], c: FuncContext) -> Any:
    arity("pathexpand", a, 1)
    return _expand_home("pathexpand", as_str("pathexpand", a[0], "path"))


def _resolve(name: str, c: FuncContext, rel: str) -> str:
    path = _expand_home(name, rel)
    return path if os.path.isabs(path) else os.path.join(c.base_dir, path)


def _fn_fileexists(a: list[Any], c: FuncContext) -> Any:
    arity("fileexists", a, 1)
    rel = as_str("fileexists", a[0], "path")
    try:
        st = os.stat(_resolve("fileexists", c, rel))
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise FuncError(f'fileexists(): failed to stat "{rel}": {exc.strerror}') from None
    if stat.S_ISREG(st.st_mode):
        return True
    kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
    raise FuncError(f'fileexists(): "{rel}" is {kind}; fileexists() checks regular files')


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A doublestar glob (``*``, ``**``, ``?``, ``[...]``, ``{a,b}``) as a regex over ``/`` paths."""
    out: list[str] = []
    i, n, depth = 0, len(pattern), 0
    while i < n:
        ch = pattern[i]
        if pattern.startswith("**", i):
            at_start = i == 0 or pattern[i - 1] == "/"
            if at_start and pattern.startswith("**/", i):
                out.append("(?:[^/]*/)*")
                i += 3
                continue
            if at_start and i + 2 == n:
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise ValueError("unterminated [ in pattern")
            body = pattern[i + 1:j]
            neg = body[:1] in ("!", "^")
            body = body[1:] if neg else body
            out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
            i = j + 1
        elif ch == "{":
            out.append("(?:")
            depth += 1
            i += 1
        elif ch == "}" and depth:
            out.append(")")
            depth -= 1
            i += 1
        elif ch == "," and depth:
            out.append("|")
            i += 1
        elif ch == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(ch))
            i += 1
    if depth:
        raise ValueError("unterminated { in pattern")
    return re.compile("".join(out) + r"\Z")


def _fn_fileset(a: list[Any], c: FuncContext) -> Any:
    arity("fileset", a, 2)
    rel = as_str("fileset", a[0], "path")
    pattern = as_str("fileset", a[1], "pattern")
    root = _resolve("fileset", c, rel)
    try:
        rx = _glob_regex(pattern)
    except (ValueError, re.error) as exc:
        raise arg_error("fileset", "pattern", f'failed to glob pattern "{pattern}": {exc}') from None
    found: list[str] = []
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        seen += len(dirnames) + len(filenames)
        if seen > MAX_FILESET_ENTRIES:
            raise FuncError(f'fileset(): more than {MAX_FILESET_ENTRIES} entries under "{rel}"; '
                            "use a narrower path")
        sub = os.path.relpath(dirpath, root)
        for f in filenames:
            p = f if sub == "." else f"{sub}/{f}"
            if rx.match(p) and os.path.isfile(os.path.join(dirpath, f)):
                found.append(p)
    return sorted(found)


FILE_FUNCTIONS: dict[str, Func] = {
    "abspath": _fn_abspath,
    "basename": _fn_basename,
    "dirname": _fn_dirname,
    "fileexists": _fn_fileexists,
    "fileset": _fn_fileset,
    "pathexpand": _fn_pathexpand,
}
