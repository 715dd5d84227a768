"""Collection and number functions of Nomad's jobspec2 set (cty's stdlib semantics).

Lists and sets are Python lists here; a set result is sorted the way cty orders a set of
primitives (strings lexically, numbers by value) and otherwise keeps first-seen order.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from rawexec.jobspec.hcl.functions import (
    Func,
    FuncContext,
    FuncError,
    arg_error,
    arity,
    as_int,
    as_list,
    as_str,
    to_number,
    to_string,
)
from rawexec.jobspec.hcl.values import type_name

__all__ = ["COLLECTION_FUNCTIONS"]

#: Digits ``parseint`` accepts: Go's big.Int ``SetString`` alphabet (lower case first above base 36).
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _set(name: str, param: str, v: Any) -> list[Any]:
    """A set argument: a list, deduplicated, in cty's set order."""
    if not isinstance(v, list):
        raise arg_error(name, param, f"set of any single type required, got {type_name(v)}")
    out: list[Any] = []
    for x in v:
        if not any(_same(x, y) for y in out):
            out.append(x)
    return _set_order(out)


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and bool(a == b)


def _set_order(items: list[Any]) -> list[Any]:
    if items and all(isinstance(x, str) for x in items):
        return sorted(items)
    if items and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
        return sorted(items)
    return items


def _fn_setunion(a: list[Any], c: FuncContext) -> Any:
    arity("setunion", a, 1, -1)
    out: list[Any] = []
    for i, s in enumerate(a):
        for x in _set("setunion", "first" if i == 0 else "other_sets", s):
            if not any(_same(x, y) for y in out):
                out.append(x)
    return _set_order(out)


def _fn_setintersection(a: list[Any], c: FuncContext) -> Any:
    arity("setintersection", a, 1, -1)
    sets = [_set("setintersection", "first" if i == 0 else "other_sets", s) for i, s in enumerate(a)]
    return [x for x in sets[0] if all(any(_same(x, y) for y in s) for s in sets[1:])]


def _fn_setproduct(a: list[Any], c: FuncContext) -> Any:
    if len(a) < 2:
        raise FuncError("setproduct(): at least two arguments are required")
    out: list[list[Any]] = [[]]
    for s in a:
        items = as_list("setproduct", s, "sets")
        out = [[*prefix, x] for prefix in out for x in items]
        if len(out) > 10_000:
            raise FuncError("setproduct(): the product has more than 10000 elements")
    return out


def _fn_chunklist(a: list[Any], c: FuncContext) -> Any:
    arity("chunklist", a, 2)
    lst = as_list("chunklist", a[0])
    if not lst:
        return []
    if a[1] is None:
        raise arg_error("chunklist", "size", "must not be null")
    size = as_int("chunklist", a[1], "size")
    if size < 0:
        raise arg_error("chunklist", "size", "the size argument must be positive")
    if size == 0:
        return [list(lst)]
    return [lst[i:i + size] for i in range(0, len(lst), size)]


def _fn_coalescelist(a: list[Any], c: FuncContext) -> Any:
    if not a:
        raise FuncError("coalescelist(): at least one argument is required")
    for i, v in enumerate(a):
        if v is None:
            continue
        if not isinstance(v, list):
            raise arg_error("coalescelist", "vals", f"coalescelist arguments must be lists or tuples; argument "
                            f"{i + 1} is a {type_name(v)}")
        if v:
            return v
    raise FuncError("coalescelist(): no non-null arguments")


def _fn_index(a: list[Any], c: FuncContext) -> Any:
    arity("index", a, 2)
    lst = as_list("index", a[0])
    if not lst:
        raise arg_error("index", "list", "cannot search an empty list")
    for i, x in enumerate(lst):
        if _same(x, a[1]):
            return i
    raise FuncError("index(): item not found")


def _fn_slice(a: list[Any], c: FuncContext) -> Any:
    arity("slice", a, 3)
    lst = as_list("slice", a[0])
    start, end = as_int("slice", a[1], "start_index"), as_int("slice", a[2], "end_index")
    if start < 0:
        raise arg_error("slice", "start_index", "must be greater than or equal to 0")
    if end > len(lst):
        raise arg_error("slice", "end_index", f"must be less than or equal to the length of the list ({len(lst)})")
    if start > end:
        raise arg_error("slice", "start_index", "must be less than or equal to end_index")
    return lst[start:end]


def _fn_sort(a: list[Any], c: FuncContext) -> Any:
    arity("sort", a, 1)
    items: list[str] = []
    for i, x in enumerate(as_list("sort", a[0])):
        if x is None:
            raise arg_error("sort", "list", f"given list element {i} is null")
        if isinstance(x, (list, dict)):
            raise arg_error("sort", "list", f"list of string required, element {i} is a {type_name(x)}")
        items.append(to_string(x))
    return sorted(items)


def _fn_zipmap(a: list[Any], c: FuncContext) -> Any:
    arity("zipmap", a, 2)
    keys, vals = as_list("zipmap", a[0], "keys"), as_list("zipmap", a[1], "values")
    if len(keys) != len(vals):
        raise FuncError(f"zipmap(): number of keys ({len(keys)}) does not match number of values ({len(vals)})")
    out: dict[str, Any] = {}
    for i, (k, v) in enumerate(zip(keys, vals, strict=True)):
        if k is None:
            raise arg_error("zipmap", "keys", f"keys list has null value at index {i}")
        out[as_str("zipmap", k, "keys")] = v
    return out


def _fn_csvdecode(a: list[Any], c: FuncContext) -> Any:
    arity("csvdecode", a, 1)
    text = as_str("csvdecode", a[0], "str")
    rows = list(csv.reader(io.StringIO(text), strict=True))
    if not rows:
        raise FuncError("csvdecode(): missing header line")
    header = rows[0]
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise FuncError(f"csvdecode(): record on line {n}: wrong number of fields "
                            f"(expected {len(header)}, got {len(row)})")
        out.append(dict(zip(header, row, strict=True)))
    return out


def _num(name: str, v: Any, param: str) -> int | float:
    if v is None:
        raise arg_error(name, param, "must not be null")
    try:
        return to_number(v)
    except FuncError as exc:
        raise arg_error(name, param, str(exc)) from None


def _whole(x: float) -> int | float:
    return int(x) if math.isfinite(x) and x.is_integer() else x


def _fn_ceil(a: list[Any], c: FuncContext) -> Any:
    arity("ceil", a, 1)
    return math.ceil(_num("ceil", a[0], "num"))


def _fn_floor(a: list[Any], c: FuncContext) -> Any:
    arity("floor", a, 1)
    return math.floor(_num("floor", a[0], "num"))


def _fn_log(a: list[Any], c: FuncContext) -> Any:
    arity("log", a, 2)
    num, base = _num("log", a[0], "num"), _num("log", a[1], "base")
    if num <= 0 or base <= 0 or base == 1:
        raise FuncError(f"log(): the logarithm of {to_string(num)} to base {to_string(base)} is not a finite number")
    return _whole(math.log(num) / math.log(base))


def _fn_pow(a: list[Any], c: FuncContext) -> Any:
    arity("pow", a, 2)
    num, power = _num("pow", a[0], "num"), _num("pow", a[1], "power")
    try:
        result = math.pow(num, power)
    except (OverflowError, ValueError):
        raise FuncError(f"pow(): {to_string(num)} to the power {to_string(power)} is not a finite number") from None
    return _whole(result)


def _fn_signum(a: list[Any], c: FuncContext) -> Any:
    arity("signum", a, 1)
    n = _num("signum", a[0], "num")
    return (n > 0) - (n < 0)


def _fn_parseint(a: list[Any], c: FuncContext) -> Any:
    arity("parseint", a, 2)
    if a[0] is None:
        raise arg_error("parseint", "number", "must not be null")
    if not isinstance(a[0], str):
        raise arg_error("parseint", "number", f"a string is required, got {type_name(a[0])}")
    base_n = _num("parseint", a[1], "base")
    if not (isinstance(base_n, int) or base_n.is_integer()) or not 2 <= base_n <= 62:
        raise arg_error("parseint", "base", "base must be a whole number between 2 and 62 inclusive")
    base, text = int(base_n), a[0]
    digits = text[1:] if text[:1] in "+-" and text else text
    table = _DIGITS[:base] if base > 36 else _DIGITS[:base] + _DIGITS[36:36 + max(base - 10, 0)]
    if not digits or any(ch not in table for ch in digits):
        raise FuncError(f'parseint(): cannot parse "{text}" as a base {base} integer')
    value = 0
    for ch in digits:
        d = _DIGITS.index(ch)
        value = value * base + (d - 26 if base <= 36 and d >= 36 else d)
    return -value if text.startswith("-") else value


COLLECTION_FUNCTIONS: dict[str, Func] = {
    "chunklist": _fn_chunklist,
    "coalescelist": _fn_coalescelist,
    "csvdecode": _fn_csvdecode,
    "index": _fn_index,
    "setintersection": _fn_setintersection,
    "setproduct": _fn_setproduct,
    "setunion": _fn_setunion,
    "slice": _fn_slice,
    "sort": _fn_sort,
    "zipmap": _fn_zipmap,
    "ceil": _fn_ceil,
    "floor": _fn_floor,
    "log": _fn_log,
    "pow": _fn_pow,
    "signum": _fn_signum,
    "parseint": _fn_parseint,
}
