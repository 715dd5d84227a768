"""The HCL2 functions job files may call (Nomad's jobspec2 set, the common part).

Each function takes the evaluated arguments and a :class:`FuncContext` and returns a value or
raises :class:`FuncError` with a message that the evaluator places at the call.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rawexec.jobspec.hcl.values import type_name
from rawexec.taskenv.hclexpr import cty_jsonencode

__all__ = ["FUNCTIONS", "Func", "FuncContext", "FuncError", "arg_error", "arity", "as_int", "as_list", "as_str",
           "format_number", "normalize_number", "to_number", "to_string"]

#: ``file()`` refuses files larger than this (a job file is not a transport for big blobs).
MAX_FILE_BYTES = 4 * 1024 * 1024


class FuncError(Exception):
    """A function call failed; the message says why."""


@dataclass(frozen=True)
class FuncContext:
    """What functions may need: the job file's directory (for ``file()``)."""

    base_dir: str


Func = Callable[[list[Any], FuncContext], Any]


#: Significant digits a computed float keeps: binary noise beyond them is dropped, so that
#: ``0.1 + 0.2`` is ``0.3`` as in cty's decimal arithmetic (not ``0.30000000000000004``).
SIGNIFICANT_DIGITS = 15


def normalize_number(v: int | float) -> int | float:
    """A whole float becomes an int (``384.0`` → ``384``); others lose float noise (``0.1 + 0.2`` → ``0.3``)."""
    if type(v) is not float or not math.isfinite(v):
        return v
    if v.is_integer():
        return int(v)
    r = float(f"{v:.{SIGNIFICANT_DIGITS}g}")
    return int(r) if r.is_integer() else r


def format_number(v: int | float) -> str:
    """cty's number-to-string: no fractional part for whole numbers, never an exponent."""
    n = normalize_number(v)
    if isinstance(n, int):
        return str(n)
    if not math.isfinite(n):
        return "-Inf" if n < 0 else "+Inf"
    import decimal  # (its C module is ~1 MB: only for a fraction)

    text = format(decimal.Decimal(repr(n)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def to_string(v: Any) -> str:
    """HCL's conversion of a primitive to string (``true``, ``1``, ``1.5``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_number(v)
    if isinstance(v, str):
        return v
    raise FuncError(f"cannot convert {type_name(v)} to string; a string is required")


def to_number(v: Any) -> int | float:
    if isinstance(v, bool):
        raise FuncError("cannot convert bool to number; a number is required")
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        s = v.strip()
        try:
            return int(s)
        except ValueError:
            pass
        try:
            f = float(s)
        except ValueError:
            raise FuncError(f'cannot convert "{v}" to number; given string must be a decimal '
                            "representation of a number") from None
        if not math.isfinite(f):
            raise FuncError(f'cannot convert "{v}" to number')
        return f
    raise FuncError(f"cannot convert {type_name(v)} to number; a number is required")


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v == "true":
        return True
    if v == "false":
        return False
    raise FuncError(f"cannot convert {type_name(v) if not isinstance(v, str) else repr(v)} to bool; "
                    'only "true" or "false" are allowed')


def _arity(name: str, args: list[Any], lo: int, hi: int | None = None) -> None:
    hi = lo if hi is None else hi
    if len(args) < lo or (hi >= 0 and len(args) > hi):
        want = str(lo) if lo == hi else (f"at least {lo}" if hi < 0 else f"{lo} to {hi}")
        raise FuncError(f"{name}() takes {want} argument(s), got {len(args)}")


def arg_error(name: str, param: str, message: str) -> FuncError:
    """An error about one parameter, worded as cty words it (``Invalid value for "size" parameter``)."""
    return FuncError(f'{name}(): invalid value for "{param}" parameter: {message}')


def arity(name: str, args: list[Any], lo: int, hi: int | None = None) -> None:
    """Refuse a call with fewer than ``lo`` or more than ``hi`` (-1: any number) arguments."""
    _arity(name, args, lo, hi)


def as_str(name: str, v: Any, param: str = "str") -> str:
    """A string parameter (numbers and bools convert, as in cty); null and collections are refused."""
    if v is None:
        raise arg_error(name, param, "argument must not be null")
    if isinstance(v, (list, dict)):
        raise arg_error(name, param, f"string required, got {type_name(v)}")
    return _str(name, v, param)


def as_list(name: str, v: Any, param: str = "list") -> list[Any]:
    """A list, set or tuple parameter."""
    if v is None:
        raise arg_error(name, param, "argument must not be null")
    if not isinstance(v, list):
        raise arg_error(name, param, f"list required, got {type_name(v)}")
    return v


def as_int(name: str, v: Any, param: str) -> int:
    """A whole-number parameter (a numeric string converts)."""
    if v is None:
        raise arg_error(name, param, "argument must not be null")
    try:
        n = to_number(v)
    except FuncError as exc:
        raise arg_error(name, param, str(exc)) from None
    if isinstance(n, float):
        if not n.is_integer():
            raise arg_error(name, param, f"a whole number is required, got {to_string(n)}")
        n = int(n)
    return n


def _str(name: str, v: Any, what: str = "argument") -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, int, float)):
        return to_string(v)
    raise FuncError(f"{name}(): {what} must be a string, got {type_name(v)}")


def _list(name: str, v: Any) -> list[Any]:
    if isinstance(v, list):
        return v
    raise FuncError(f"{name}(): a list is required, got {type_name(v)}")


def _map(name: str, v: Any) -> dict[str, Any]:
    if isinstance(v, dict):
        return v
    raise FuncError(f"{name}(): a map or object is required, got {type_name(v)}")


def _int(name: str, v: Any) -> int:
    n = to_number(v)
    if isinstance(n, float):
        if not n.is_integer():
            raise FuncError(f"{name}(): a whole number is required, got {n}")
        n = int(n)
    return n


_VERB = re.compile(r"%([-+ 0#]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def _format(fmt: str, args: list[Any]) -> str:
    out: list[str] = []
    pos = 0
    argi = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if (width and int(width) > 10_000) or (prec and int(prec) > 10_000):
            raise FuncError("format(): width or precision larger than 10000")
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            raise FuncError(f"format(): not enough arguments for %{verb} at offset {m.start()}")
        a = args[argi]
        argi += 1
        if verb in ("s", "v"):
            text = json.dumps(a, separators=(",", ":")) if isinstance(a, (list, dict)) else to_string(a)
            if verb == "s" and prec:
                text = text[: int(prec)]
        elif verb == "q":
            text = json.dumps(_str("format", a), ensure_ascii=False)
        elif verb == "d":
            text = str(_int("format", a))
        elif verb in ("f", "F", "e", "E", "g", "G"):
            py = "f" if verb == "F" else verb
            text = format(float(to_number(a)), f".{prec or 6}{py}")
        elif verb == "t":
            if not isinstance(a, bool):
                raise FuncError(f"format(): %t requires a bool, got {type_name(a)}")
            text = to_string(a)
        elif verb in ("x", "X", "o", "b"):
            text = a.encode().hex() if isinstance(a, str) and verb in "xX" else format(_int("format", a), verb)
            if verb == "X":
                text = text.upper()
        else:
            raise FuncError(f"format(): unsupported format verb %{verb}")
        if width:
            w = int(width)
            if "-" in flags:
                text = text.ljust(w)
            elif "0" in flags and verb in "dfFeEgGxXob":
                text = text.zfill(w)
            else:
                text = text.rjust(w)
        out.append(text)
    out.append(fmt[pos:])
    if argi < len(args):
        raise FuncError(f"format(): too many arguments; {argi} used of {len(args)}")
    return "".join(out)


def _fn_format(a: list[Any], c: FuncContext) -> Any:
    _arity("format", a, 1, -1)
    return _format(_str("format", a[0], "format string"), a[1:])


def _fn_join(a: list[Any], c: FuncContext) -> Any:
    _arity("join", a, 2, -1)
    sep = _str("join", a[0], "separator")
    items: list[str] = []
    for lst in a[1:]:
        items.extend(_str("join", x, "list element") for x in _list("join", lst))
    return sep.join(items)


def _fn_split(a: list[Any], c: FuncContext) -> Any:
    _arity("split", a, 2)
    sep, s = _str("split", a[0]), _str("split", a[1])
    if sep == "":
        return list(s)
    return s.split(sep)


def _fn_concat(a: list[Any], c: FuncContext) -> Any:
    out: list[Any] = []
    for lst in a:
        out.extend(_list("concat", lst))
    return out


def _fn_lookup(a: list[Any], c: FuncContext) -> Any:
    _arity("lookup", a, 2, 3)
    m, k = _map("lookup", a[0]), _str("lookup", a[1], "key")
    if k in m:
        return m[k]
    if len(a) == 3:
        return a[2]
    raise FuncError(f'lookup(): the given key "{k}" does not exist in the map and no default was given')


def _fn_merge(a: list[Any], c: FuncContext) -> Any:
    out: dict[str, Any] = {}
    for m in a:
        if m is None:
            continue
        out.update(_map("merge", m))
    return out


def _fn_coalesce(a: list[Any], c: FuncContext) -> Any:
    for v in a:
        if v is not None and v != "":
            return v
    raise FuncError("coalesce(): no non-null, non-empty-string arguments")


def _fn_length(a: list[Any], c: FuncContext) -> Any:
    _arity("length", a, 1)
    v = a[0]
    if isinstance(v, (str, list, dict)):
        return len(v)
    raise FuncError(f"length(): a string, list or map is required, got {type_name(v)}")


def _json_ready(v: Any) -> Any:
    if isinstance(v, float):
        return normalize_number(v)
    if isinstance(v, list):
        return [_json_ready(x) for x in v]
    if isinstance(v, dict):
        return {k: _json_ready(x) for k, x in v.items()}
    return v


def _fn_jsonencode(a: list[Any], c: FuncContext) -> Any:
    _arity("jsonencode", a, 1)
    return cty_jsonencode(_json_ready(a[0]))


def _fn_formatlist(a: list[Any], c: FuncContext) -> Any:
    _arity("formatlist", a, 1, -1)
    fmt = _str("formatlist", a[0], "format string")
    length = -1
    for i, v in enumerate(a[1:], start=1):
        if isinstance(v, list):
            if length >= 0 and len(v) != length:
                raise FuncError(f"formatlist(): argument {i + 1} has length {len(v)}, which is inconsistent "
                                f"with the previous list arguments of length {length}")
            length = len(v)
    if length < 0:
        length = 1
    return [_format(fmt, [v[n] if isinstance(v, list) else v for v in a[1:]]) for n in range(length)]


def _fn_jsondecode(a: list[Any], c: FuncContext) -> Any:
    _arity("jsondecode", a, 1)
    try:
        return json.loads(_str("jsondecode", a[0]))
    except (ValueError, RecursionError) as exc:
        raise FuncError(f"jsondecode(): invalid JSON: {exc}") from None


def _fn_file(a: list[Any], c: FuncContext) -> Any:
    _arity("file", a, 1)
    rel = _str("file", a[0], "path")
    path = os.path.join(c.base_dir, os.path.expanduser(rel))
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise FuncError(f'file(): no file exists at "{rel}" ({exc.strerror}); the path is relative to '
                        "the job file's directory") from None
    if len(data) > MAX_FILE_BYTES:
        raise FuncError(f'file(): "{rel}" is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB')
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FuncError(f'file(): the contents of "{rel}" are not valid UTF-8; use filebase64 '
                        "for binary files") from None


def _fn_filebase64(a: list[Any], c: FuncContext) -> Any:
    _arity("filebase64", a, 1)
    rel = _str("filebase64", a[0], "path")
    try:
        with open(os.path.join(c.base_dir, rel), "rb") as f:
            return base64.b64encode(f.read(MAX_FILE_BYTES)).decode()
    except OSError as exc:
        raise FuncError(f'filebase64(): no file exists at "{rel}" ({exc.strerror})') from None


def _fn_replace(a: list[Any], c: FuncContext) -> Any:
    _arity("replace", a, 3)
    s, sub, rep = (_str("replace", x) for x in a)
    if len(sub) >= 2 and sub.startswith("/") and sub.endswith("/"):
        try:
            pattern = re.compile(sub[1:-1])
        except re.error as exc:
            raise FuncError(f"replace(): invalid regular expression: {exc}") from None
        return pattern.sub(re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", rep), s)
    return s.replace(sub, rep)


def _fn_tostring(a: list[Any], c: FuncContext) -> Any:
    _arity("tostring", a, 1)
    return None if a[0] is None else to_string(a[0])


def _fn_tonumber(a: list[Any], c: FuncContext) -> Any:
    _arity("tonumber", a, 1)
    return None if a[0] is None else to_number(a[0])


def _fn_tobool(a: list[Any], c: FuncContext) -> Any:
    _arity("tobool", a, 1)
    return None if a[0] is None else _to_bool(a[0])


def _fn_tolist(a: list[Any], c: FuncContext) -> Any:
    _arity("tolist", a, 1)
    return list(_list("tolist", a[0]))


def _fn_tomap(a: list[Any], c: FuncContext) -> Any:
    _arity("tomap", a, 1)
    return dict(_map("tomap", a[0]))


def _fn_toset(a: list[Any], c: FuncContext) -> Any:
    _arity("toset", a, 1)
    out: list[Any] = []
    for v in _list("toset", a[0]):
        if v not in out:
            out.append(v)
    return out


def _fn_element(a: list[Any], c: FuncContext) -> Any:
    _arity("element", a, 2)
    lst, i = _list("element", a[0]), _int("element", a[1])
    if not lst:
        raise FuncError("element(): cannot use element function with an empty list")
    return lst[i % len(lst)]


def _fn_contains(a: list[Any], c: FuncContext) -> Any:
    _arity("contains", a, 2)
    return a[1] in _list("contains", a[0])


def _fn_keys(a: list[Any], c: FuncContext) -> Any:
    _arity("keys", a, 1)
    return sorted(_map("keys", a[0]))


def _fn_values(a: list[Any], c: FuncContext) -> Any:
    _arity("values", a, 1)
    m = _map("values", a[0])
    return [m[k] for k in sorted(m)]


def _fn_flatten(a: list[Any], c: FuncContext) -> Any:
    _arity("flatten", a, 1)
    out: list[Any] = []

    def walk(v: list[Any]) -> None:
        for x in v:
            if isinstance(x, list):
                walk(x)
            else:
                out.append(x)

    walk(_list("flatten", a[0]))
    return out


def _fn_range(a: list[Any], c: FuncContext) -> Any:
    _arity("range", a, 1, 3)
    nums = [_int("range", x) for x in a]
    r = range(*nums) if len(nums) > 1 else range(nums[0])
    if len(r) > 1024:
        raise FuncError("range(): more than 1024 elements requested")
    return list(r)


def _fn_substr(a: list[Any], c: FuncContext) -> Any:
    _arity("substr", a, 3)
    s, off, ln = _str("substr", a[0]), _int("substr", a[1]), _int("substr", a[2])
    if off < 0:
        off = max(len(s) + off, 0)
    return s[off:] if ln < 0 else s[off:off + ln]


def _fn_minmax(name: str, pick: Callable[..., Any]) -> Func:
    def fn(a: list[Any], c: FuncContext) -> Any:
        _arity(name, a, 1, -1)
        return pick(to_number(x) for x in a)

    return fn


def _s1(name: str, op: Callable[[str], Any]) -> Func:
    def fn(a: list[Any], c: FuncContext) -> Any:
        _arity(name, a, 1)
        return op(_str(name, a[0]))

    return fn


def _s2(name: str, op: Callable[[str, str], Any]) -> Func:
    def fn(a: list[Any], c: FuncContext) -> Any:
        _arity(name, a, 2)
        return op(_str(name, a[0]), _str(name, a[1]))

    return fn


def _b64decode(s: str) -> str:
    try:
        return base64.b64decode(s, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise FuncError(f"base64decode(): {exc}") from None


def _fn_abs(a: list[Any], c: FuncContext) -> Any:
    _arity("abs", a, 1)
    return abs(to_number(a[0]))


FUNCTIONS: dict[str, Func] = {
    "upper": _s1("upper", str.upper),
    "lower": _s1("lower", str.lower),
    "trimspace": _s1("trimspace", str.strip),
    "chomp": _s1("chomp", lambda s: s.rstrip("\r\n")),
    "strlen": _s1("strlen", len),
    "base64encode": _s1("base64encode", lambda s: base64.b64encode(s.encode()).decode()),
    "base64decode": _s1("base64decode", _b64decode),
    "trim": _s2("trim", lambda s, cut: s.strip(cut)),
    "trimprefix": _s2("trimprefix", lambda s, p: s.removeprefix(p)),
    "trimsuffix": _s2("trimsuffix", lambda s, p: s.removesuffix(p)),
    "startswith": _s2("startswith", str.startswith),
    "endswith": _s2("endswith", str.endswith),
    "format": _fn_format,
    "formatlist": _fn_formatlist,
    "join": _fn_join,
    "split": _fn_split,
    "concat": _fn_concat,
    "lookup": _fn_lookup,
    "merge": _fn_merge,
    "coalesce": _fn_coalesce,
    "length": _fn_length,
    "jsonencode": _fn_jsonencode,
    "jsondecode": _fn_jsondecode,
    "file": _fn_file,
    "filebase64": _fn_filebase64,
    "replace": _fn_replace,
    "tostring": _fn_tostring,
    "tonumber": _fn_tonumber,
    "tobool": _fn_tobool,
    "tolist": _fn_tolist,
    "tomap": _fn_tomap,
    "toset": _fn_toset,
    "element": _fn_element,
    "contains": _fn_contains,
    "keys": _fn_keys,
    "values": _fn_values,
    "flatten": _fn_flatten,
    "range": _fn_range,
    "substr": _fn_substr,
    "abs": _fn_abs,
    "min": _fn_minmax("min", min),
    "max": _fn_minmax("max", max),
    "compact": lambda a, c: [x for x in _list("compact", a[0]) if x not in ("", None)] if len(a) == 1
    else _arity("compact", a, 1),
    "distinct": _fn_toset,
}
