"""The driver ``config {}`` evaluation: HCL2 templates over already-parsed values (facts §5.3).

Nomad JSON-encodes a task's ``config {}`` and re-reads it as HCL2 JSON, so every string in it
is an HCL template: literal text with ``${ expression }`` interpolations (``$${`` is a literal
``${``). This module evaluates those templates itself, over plain Python values:

- expressions: literals (numbers, ``"strings"`` with nested templates, ``true``/``false``/
  ``null``, ``[tuples]``, ``{objects}``), variable references with ``.attr``, ``[index]`` and
  legacy ``.0`` steps, function calls (with ``...`` expansion), unary/binary operators and
  ``cond ? a : b``;
- variables: every env var (dots nest: ``NOMAD_ALLOC_ID``, ``a.b`` -> ``a.b``), ``env`` (the
  whole env as a map, for keys dots cannot address: ``env["weird..name"]``), ``node``
  (``node.unique.id``, ``node.attr.*``, ``node.meta.*``), ``attr`` and ``meta``;
- functions: abs, coalesce, concat, hasindex, int, jsondecode, jsonencode, length, lower, max,
  min, reverse, strlen, substr, upper.

A template that is exactly one interpolation yields the expression's value unchanged (a list
stays a list); otherwise the parts are joined as a string. Every failure raises
:class:`rawexec.errors.InvalidConfigError` worded like Nomad's ``failed to parse config: ...``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rawexec.errors import InvalidConfigError

__all__ = ["EvalContext", "cty_jsonencode", "evaluate_config", "evaluate_template", "nest_dotted", "node_variables"]


class _EvalError(Exception):
    """Summary and detail of one HCL diagnostic."""

    def __init__(self, summary: str, detail: str) -> None:
        super().__init__(f"{summary}; {detail}")


def _fail(summary: str, detail: str) -> _EvalError:
    return _EvalError(summary, detail)


def nest_dotted(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "c": 2}`` -> ``{"a": {"b": 1}, "c": 2}``.

    Keys with empty segments (``a..b``, ``.a``) cannot be addressed with dots and are skipped;
    a key that would turn a value into an object (or the reverse) is skipped too: shorter keys
    are placed first and win. Such keys stay reachable through ``env["..."]``.
    """
    out: dict[str, Any] = {k: v for k, v in flat.items() if "." not in k}
    for key in sorted((k for k in flat if "." in k), key=lambda k: (k.count("."), k)):
        parts = key.split(".")
        if "" in parts:
            continue
        node: dict[str, Any] = out
        ok = True
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                ok = False
                break
            node = nxt
        if ok and parts[-1] not in node:
            node[parts[-1]] = flat[key]
    return out


@dataclass
class EvalContext:
    """Variables and functions visible to ``${...}`` expressions."""

    variables: dict[str, Any] = field(default_factory=dict)
    functions: dict[str, Callable[..., Any]] = field(default_factory=lambda: dict(FUNCTIONS))

    @classmethod
    def for_task(cls, env: Mapping[str, str], node_attrs: Mapping[str, str], *,
                 node_vars: Mapping[str, Any] | None = None) -> EvalContext:
        """Nomad's task eval context: env vars (nested on dots), ``env``, ``node``, ``attr``, ``meta``.

        ``node_vars`` is :func:`node_variables` of ``node_attrs``, when the caller has it cached.
        """
        variables = nest_dotted(env)
        variables["env"] = dict(env)
        variables.update(node_vars if node_vars is not None else node_variables(node_attrs))
        return cls(variables=variables)


def node_variables(node_attrs: Mapping[str, str]) -> dict[str, Any]:
    """``node`` (with ``node.attr``/``node.meta``), ``attr`` and ``meta`` objects from the flat node attributes."""
    nested = nest_dotted(node_attrs)
    node = dict(nested["node"]) if isinstance(nested.get("node"), dict) else {}
    attr = nested.get("attr", {})
    meta = nested.get("meta", {})
    node["attr"] = attr
    node["meta"] = meta
    return {"node": node, "attr": attr, "meta": meta}


# -- values ------------------------------------------------------------------------------------


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        return "tuple"
    if isinstance(v, Mapping):
        return "object"
    return type(v).__name__


def _norm_num(n: float) -> int | float:
    if isinstance(n, float) and n.is_integer() and math.isfinite(n):
        return int(n)
    return n


def _to_number(v: Any, what: str) -> int | float:
    if isinstance(v, bool) or v is None:
        raise _fail("Invalid operand" if what != "argument" else "Invalid function argument",
                    f"Unsuitable value for {what}: a number is required.")
    if isinstance(v, int | float):
        return v
    if isinstance(v, str):
        try:
            return _norm_num(float(v)) if any(c in v for c in ".eE") else int(v)
        except ValueError:
            pass
    raise _fail("Invalid operand" if what != "argument" else "Invalid function argument",
                f"Unsuitable value for {what}: a number is required.")


def _to_string(v: Any, where: str = "template") -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        n = _norm_num(v)
        return str(n) if isinstance(n, int) else repr(n)
    if v is None:
        raise _fail("Invalid template interpolation value",
                    "The expression result is null. Cannot include a null value in a string template.")
    raise _fail("Invalid template interpolation value",
                f"Cannot include the given value in a string {where}: string required, got {_type_name(v)}.")


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return bool(v == "true")
    raise _fail("Invalid operand", f"Unsuitable value: a bool is required, got {_type_name(v)}.")


# -- functions ---------------------------------------------------------------------------------


def _fn_abs(n: Any) -> Any:
    return abs(_to_number(n, "argument"))


def _fn_coalesce(*vals: Any) -> Any:
    for v in vals:
        if v is None or v == "":
            continue
        return v
    raise _fail("Error in function call", 'Call to function "coalesce" failed: no non-null, '
                "non-empty-string arguments.")


def _fn_concat(*lists: Any) -> list[Any]:
    out: list[Any] = []
    for i, seq in enumerate(lists):
        if not isinstance(seq, list | tuple):
            raise _fail("Invalid function argument",
                        f'Invalid value for "seqs" parameter: element {i}: list or tuple required.')
        out.extend(seq)
    return out


def _fn_hasindex(coll: Any, key: Any) -> bool:
    if isinstance(coll, Mapping):
        return _to_string(key) in coll
    if isinstance(coll, list | tuple):
        try:
            k = _to_number(key, "argument")
        except _EvalError:
            return False
        return isinstance(k, int) and 0 <= k < len(coll)
    raise _fail("Invalid function argument", f"hasindex requires a collection, got {_type_name(coll)}.")


def _fn_int(n: Any) -> int:
    return int(_to_number(n, "argument"))


def _fn_jsondecode(s: Any) -> Any:
    try:
        return json.loads(_to_string(s))
    except json.JSONDecodeError as e:
        raise _fail("Error in function call", f'Call to function "jsondecode" failed: {e}.') from None


#: Characters cty's jsonencode writes as \u escapes (Go's encoding/json HTML-safe set).
_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                               "\u2029": "\\u2029"})


def cty_jsonencode(v: Any) -> str:
    """JSON text as HCL's ``jsonencode`` (cty) writes it: compact, object keys sorted, and
    ``<``, ``>``, ``&`` escaped as Go does (they only occur inside strings, so escaping the text is safe)."""
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, sort_keys=True).translate(_JSON_ESCAPES)


def _fn_length(v: Any) -> int:
    if isinstance(v, str | list | tuple | Mapping):
        return len(v)
    raise _fail("Invalid function argument",
                f'Invalid value for "value" parameter: collection or string required, got {_type_name(v)}.')


def _fn_lower(s: Any) -> str:
    return _to_string(s).lower()


def _fn_upper(s: Any) -> str:
    return _to_string(s).upper()


def _fn_max(*nums: Any) -> Any:
    if not nums:
        raise _fail("Error in function call", 'Call to function "max" failed: must pass at least one number.')
    return max(_to_number(n, "argument") for n in nums)


def _fn_min(*nums: Any) -> Any:
    if not nums:
        raise _fail("Error in function call", 'Call to function "min" failed: must pass at least one number.')
    return min(_to_number(n, "argument") for n in nums)


def _fn_reverse(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return list(reversed(v))
    return _to_string(v)[::-1]


def _fn_strlen(s: Any) -> int:
    return len(_to_string(s))


def _fn_substr(s: Any, offset: Any, length: Any) -> str:
    text = _to_string(s)
    off = int(_to_number(offset, "argument"))
    ln = int(_to_number(length, "argument"))
    if off < 0:
        off += len(text)
        if off < 0:
            raise _fail("Error in function call", 'Call to function "substr" failed: offset out of bounds.')
    if off > len(text):
        raise _fail("Error in function call", 'Call to function "substr" failed: offset out of bounds.')
    if ln < 0:
        return text[off:]
    return text[off:off + ln]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": _fn_abs, "coalesce": _fn_coalesce, "concat": _fn_concat, "hasindex": _fn_hasindex,
    "int": _fn_int, "jsondecode": _fn_jsondecode, "jsonencode": cty_jsonencode, "length": _fn_length,
    "lower": _fn_lower, "max": _fn_max, "min": _fn_min, "reverse": _fn_reverse, "strlen": _fn_strlen,
    "substr": _fn_substr, "upper": _fn_upper,
}
_ARITY: dict[str, tuple[int, int | None]] = {
    "abs": (1, 1), "coalesce": (0, None), "concat": (0, None), "hasindex": (2, 2), "int": (1, 1),
    "jsondecode": (1, 1), "jsonencode": (1, 1), "length": (1, 1), "lower": (1, 1), "max": (0, None),
    "min": (0, None), "reverse": (1, 1), "strlen": (1, 1), "substr": (3, 3), "upper": (1, 1),
}


# -- parser + evaluator (one pass: we evaluate as we parse) -------------------------------------

_IDENT_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_CHARS = _IDENT_START | set("0123456789-")


class _Parser:
    """Recursive descent over the source text; ``ctx`` is consulted as references are parsed."""

    def __init__(self, src: str, ctx: EvalContext) -> None:
        self.s = src
        self.i = 0
        self.ctx = ctx
        self.dry = 0  # > 0 while parsing a conditional's branch that is not taken: syntax only

    # -- low level --
    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def peek(self, tok: str) -> bool:
        self.ws()
        return self.s.startswith(tok, self.i)

    def take(self, tok: str) -> bool:
        if self.peek(tok):
            self.i += len(tok)
            return True
        return False

    def expect(self, tok: str) -> None:
        if not self.take(tok):
            got = self.s[self.i:self.i + 10] or "end of template"
            raise _fail("Invalid expression", f'Expected "{tok}", found "{got}".')

    def ident(self) -> str | None:
        self.ws()
        if self.i < len(self.s) and self.s[self.i] in _IDENT_START:
            j = self.i + 1
            while j < len(self.s) and self.s[j] in _IDENT_CHARS:
                j += 1
            name = self.s[self.i:j]
            self.i = j
            return name
        return None

    # -- templates --
    def template(self, terminator: str | None) -> Any:
        """Parse a template up to ``terminator`` (``"`` for a quoted string, None = end of text)."""
        parts: list[Any] = []
        buf: list[str] = []
        s = self.s
        while True:
            if self.i >= len(s):
                if terminator is not None:
                    raise _fail("Unterminated template string", "No closing marker was found for the string.")
                break
            c = s[self.i]
            if terminator is not None and c == terminator:
                self.i += 1
                break
            if s.startswith("$${", self.i) or s.startswith("%%{", self.i):
                buf.append(s[self.i + 1:self.i + 3])
                self.i += 3
                continue
            if s.startswith("%{", self.i):
                raise _fail("Unsupported template directive",
                            "Template directives (%{if}, %{for}) are not supported in task config; "
                            "write $${...} expressions instead.")
            if s.startswith("${", self.i):
                self.i += 2
                strip_left = self.take("~")
                if strip_left and buf:
                    buf[-1] = buf[-1].rstrip()
                if buf:
                    parts.append("".join(buf))
                    buf = []
                val = self.expr()
                strip_right = self.take("~")
                self.expect("}")
                parts.append(_Interp(val))
                if strip_right:
                    while self.i < len(s) and s[self.i] in " \t\r\n":
                        self.i += 1
                continue
            if terminator is not None and c == "\\":
                buf.append(self.escape())
                continue
            buf.append(c)
            self.i += 1
        if buf:
            parts.append("".join(buf))
        if len(parts) == 1 and isinstance(parts[0], _Interp):
            return parts[0].value
        if self.dry:
            return ""
        return "".join(_to_string(p.value) if isinstance(p, _Interp) else p for p in parts)

    def escape(self) -> str:
        s = self.s
        nxt = s[self.i + 1:self.i + 2]
        simple = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
        if nxt in simple:
            self.i += 2
            return simple[nxt]
        if nxt in ("u", "U"):
            width = 4 if nxt == "u" else 8
            hexs = s[self.i + 2:self.i + 2 + width]
            try:
                ch = chr(int(hexs, 16))
            except ValueError:
                raise _fail("Invalid escape sequence", f'"\\{nxt}{hexs}" is not a valid unicode escape.') from None
            self.i += 2 + width
            return ch
        raise _fail("Invalid escape sequence", f'The symbol "{nxt}" is not a valid escape sequence selector.')

    # -- expressions --
    def expr(self) -> Any:
        cond = self.binary(0)
        if self.take("?"):
            # Like HCL, only the chosen branch is evaluated; the other is only parsed.
            take_first = None if self.dry else _to_bool(cond)
            a = self._branch(take_first is not False)
            self.expect(":")
            b = self._branch(take_first is not True)
            return None if take_first is None else (a if take_first else b)
        return cond

    def _branch(self, evaluate: bool) -> Any:
        if evaluate:
            return self.expr()
        self.dry += 1
        try:
            self.expr()
        finally:
            self.dry -= 1
        return None

    _LEVELS: tuple[tuple[str, ...], ...] = (("||",), ("&&",), ("==", "!="), ("<=", ">=", "<", ">"),
                                            ("+", "-"), ("*", "/", "%"))

    def binary(self, level: int) -> Any:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            op = next((o for o in self._LEVELS[level] if self.peek(o) and not self._is_other_op(o)), None)
            if op is None:
                return left
            self.i += len(op)
            right = self.binary(level + 1)
            left = None if self.dry else _apply(op, left, right)

    def _is_other_op(self, op: str) -> bool:
        """Avoid reading ``=`` of ``=>``/``==`` or ``-`` when not an operator (handled by callers)."""
        rest = self.s[self.i + len(op):self.i + len(op) + 1]
        return op in ("<", ">") and rest == "="

    def unary(self) -> Any:
        if self.take("!"):
            v = self.unary()
            return None if self.dry else not _to_bool(v)
        if self.take("-"):
            v = self.unary()
            return None if self.dry else -_to_number(v, "operand")
        return self.postfix(self.primary())

    def postfix(self, val: Any) -> Any:
        while True:
            self.ws()
            if self.s.startswith("...", self.i):
                return val
            if self.take("."):
                self.ws()
                j = self.i
                while j < len(self.s) and self.s[j].isdigit():
                    j += 1
                if j > self.i:
                    idx = int(self.s[self.i:j])
                    self.i = j
                    val = None if self.dry else _index(val, idx)
                    continue
                name = self.ident()
                if name is None:
                    raise _fail("Invalid attribute name", "An attribute name is required after a dot.")
                val = None if self.dry else _attr(val, name)
            elif self.take("["):
                key = self.expr()
                self.expect("]")
                val = None if self.dry else _index(val, key)
            else:
                return val

    def primary(self) -> Any:
        self.ws()
        if self.i >= len(self.s):
            raise _fail("Invalid expression", "Expected the start of an expression, but found the end of it.")
        c = self.s[self.i]
        if c == '"':
            self.i += 1
            return self.template('"')
        if c.isdigit():
            return self.number()
        if c == "(":
            self.i += 1
            v = self.expr()
            self.expect(")")
            return v
        if c == "[":
            self.i += 1
            items: list[Any] = []
            if self.take("]"):
                return items
            if self.peek("for ") or self.peek("for\t"):
                raise _fail("Unsupported expression", "for expressions are not supported in task config.")
            while True:
                items.append(self.expr())
                if self.take("]"):
                    return items
                self.expect(",")
                if self.take("]"):
                    return items
        if c == "{":
            self.i += 1
            obj: dict[str, Any] = {}
            while not self.take("}"):
                name = self.ident()
                key = name if name is not None and (self.peek("=") or self.peek(":")) else None
                if key is None:
                    if name is not None:
                        raise _fail("Invalid object key", "Object keys must be names or strings.")
                    k = self.expr()
                    key = "" if self.dry else _to_string(k)
                if not (self.take("=") or self.take(":")):
                    raise _fail("Missing key/value separator", 'Expected an equals sign ("=") after the key.')
                obj[key] = self.expr()
                self.take(",")
            return obj
        name = self.ident()
        if name is None:
            raise _fail("Invalid expression", f'Expected the start of an expression, but found "{c}".')
        if name in ("true", "false"):
            return name == "true"
        if name == "null":
            return None
        if self.take("("):
            return self.call(name)
        if self.dry:
            return None
        if name not in self.ctx.variables:
            raise _fail("Unknown variable", f'There is no variable named "{name}".')
        return self.ctx.variables[name]

    def number(self) -> int | float:
        j = self.i
        s = self.s
        while j < len(s) and s[j].isdigit():
            j += 1
        is_float = False
        if j < len(s) and s[j] == "." and j + 1 < len(s) and s[j + 1].isdigit():
            is_float = True
            j += 1
            while j < len(s) and s[j].isdigit():
                j += 1
        if j < len(s) and s[j] in "eE":
            k = j + 1
            if k < len(s) and s[k] in "+-":
                k += 1
            if k < len(s) and s[k].isdigit():
                is_float = True
                j = k
                while j < len(s) and s[j].isdigit():
                    j += 1
        text = s[self.i:j]
        self.i = j
        return _norm_num(float(text)) if is_float else int(text)

    def call(self, name: str) -> Any:
        args: list[Any] = []
        expand = False
        while not self.take(")"):
            args.append(self.expr())
            if self.take("..."):
                expand = True
                self.expect(")")
                break
            if not self.take(","):
                self.expect(")")
                break
        if self.dry:
            return None
        if name not in self.ctx.functions:
            raise _fail("Call to unknown function", f'There is no function named "{name}".')
        if expand:
            last = args.pop()
            if not isinstance(last, list | tuple):
                raise _fail("Invalid expanding argument value", "The expanding argument (indicated by ...) "
                            "must be of a tuple or list type.")
            args.extend(last)
        lo, hi = _ARITY.get(name, (0, None))
        if len(args) < lo or (hi is not None and len(args) > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}"
            raise _fail("Not enough function arguments" if len(args) < lo else "Too many function arguments",
                        f'Function "{name}" expects {want} argument(s), got {len(args)}.')
        try:
            return self.ctx.functions[name](*args)
        except _EvalError:
            raise
        except (TypeError, ValueError, OverflowError) as e:
            raise _fail("Error in function call", f'Call to function "{name}" failed: {e}.') from None


@dataclass(frozen=True)
class _Interp:
    value: Any


def _attr(val: Any, name: str) -> Any:
    if isinstance(val, Mapping):
        if name in val:
            return val[name]
        raise _fail("Unsupported attribute", f'This object does not have an attribute named "{name}".')
    raise _fail("Unsupported attribute", f"Can't access attributes on a value of type {_type_name(val)}.")


def _index(val: Any, key: Any) -> Any:
    if isinstance(val, Mapping):
        k = _to_string(key)
        if k in val:
            return val[k]
        raise _fail("Invalid index", "The given key does not identify an element in this collection value.")
    if isinstance(val, list | tuple):
        n = _to_number(key, "index")
        if not isinstance(n, int) or isinstance(n, bool):
            raise _fail("Invalid index", "The given key does not identify an element in this collection value: "
                        "a whole number is required.")
        if 0 <= n < len(val):
            return val[n]
        raise _fail("Invalid index", "The given key does not identify an element in this collection value.")
    raise _fail("Invalid index", f"This value does not have any indices (it is a {_type_name(val)}).")


def _apply(op: str, a: Any, b: Any) -> Any:
    if op == "||":
        return _to_bool(a) or _to_bool(b)
    if op == "&&":
        return _to_bool(a) and _to_bool(b)
    if op in ("==", "!="):
        eq = _norm(a) == _norm(b) and _type_name(a) == _type_name(b)
        return eq if op == "==" else not eq
    x, y = _to_number(a, "left operand"), _to_number(b, "right operand")
    if op == "<":
        return x < y
    if op == "<=":
        return x <= y
    if op == ">":
        return x > y
    if op == ">=":
        return x >= y
    if op == "+":
        return _norm_num(x + y)
    if op == "-":
        return _norm_num(x - y)
    if op == "*":
        return _norm_num(x * y)
    if y == 0:
        raise _fail("Operation failed", "Error during operation: can't divide by zero.")
    if op == "/":
        return _norm_num(x / y)
    return _norm_num(math.fmod(x, y))


def _norm(v: Any) -> Any:
    if isinstance(v, float):
        return _norm_num(v)
    if isinstance(v, tuple):
        return [_norm(x) for x in v]
    return v


# -- public API --------------------------------------------------------------------------------


def evaluate_template(text: str, ctx: EvalContext, *, where: str = "") -> Any:
    """Evaluate one template string; raises :class:`InvalidConfigError` (``failed to parse config: ...``)."""
    if "${" not in text and "%{" not in text:
        return text
    p = _Parser(text, ctx)
    try:
        return p.template(None)
    except _EvalError as e:
        loc = f"{where}: " if where else ""
        raise InvalidConfigError(f"failed to parse config: {loc}{e}") from None
    except RecursionError:
        loc = f"{where}: " if where else ""
        raise InvalidConfigError(f"failed to parse config: {loc}Invalid expression; the expression is nested "
                                 "too deeply.") from None


def evaluate_config(config: Any, ctx: EvalContext, *, where: str = "") -> Any:
    """Evaluate every string in a parsed ``config {}`` value (maps, lists, scalars) as a template."""
    if isinstance(config, str):
        return evaluate_template(config, ctx, where=where)
    if isinstance(config, Mapping):
        out: dict[str, Any] = {}
        for k, v in config.items():
            sub = f"{where}.{k}" if where else str(k)
            key = evaluate_template(k, ctx, where=sub) if isinstance(k, str) else k
            if not isinstance(key, str):
                raise InvalidConfigError(f"failed to parse config: {sub}: Invalid object key; "
                                         f"a key must be a string, got {_type_name(key)}.")
            out[key] = evaluate_config(v, ctx, where=sub)
        return out
    if isinstance(config, Sequence) and not isinstance(config, bytes | bytearray):
        return [evaluate_config(v, ctx, where=f"{where}[{i}]") for i, v in enumerate(config)]
    return config
