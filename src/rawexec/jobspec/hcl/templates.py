"""String templates: quoted strings, ``${}`` interpolation, ``%{if}``/``%{for}`` directives, heredocs.

:class:`TemplateMixin` holds the template half of the :class:`~.evaluator.Evaluator`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rawexec.jobspec.diagnostics import Pos
from rawexec.jobspec.hcl.functions import to_string
from rawexec.jobspec.hcl.tree import Token, Tree, kids
from rawexec.jobspec.hcl.values import Context, EvalError, NeedsRuntime, Runtime, type_name

__all__ = ["MAX_LEN", "TemplateMixin", "decode_string_chars", "parse_heredoc"]

#: Longest string or list an expression may build (guards against blow-ups like range/format).
MAX_LEN = 16 * 1024 * 1024

_ESC = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def decode_string_chars(raw: str, pos: Pos | Callable[[], Pos]) -> str:
    """Resolve the escapes of a quoted string (``\\n``, ``\\"``, ``\\uNNNN``...)."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = raw[i + 1] if i + 1 < len(raw) else ""
        if nxt in _ESC:
            out.append(_ESC[nxt])
            i += 2
            continue
        if nxt in ("u", "U"):
            width = 4 if nxt == "u" else 8
            digits = raw[i + 2:i + 2 + width]
            if len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
                cp = int(digits, 16)
                if cp <= 0x10FFFF and not 0xD800 <= cp < 0xE000:
                    out.append(chr(cp))
                    i += 2 + width
                    continue
        raise EvalError(f"Invalid escape sequence: the sequence \"\\{nxt}\" is not allowed in a string",
                        pos if isinstance(pos, Pos) else pos(), 'use \\\\ for a backslash, or \\n, \\t, \\", \\uNNNN')
    return "".join(out)


_HEREDOC = re.compile(r"<<(-?)([a-zA-Z][a-zA-Z0-9._-]*)\r?\n(.*)", re.S)


def parse_heredoc(raw: str) -> tuple[str, bool]:
    """Split a heredoc token into (body, is_template_with_interpolation). Trims ``<<-`` indentation."""
    m = _HEREDOC.match(raw)
    if m is None:
        return "", False
    trim, marker, rest = m.group(1) == "-", m.group(2), m.group(3)
    lines = rest.split("\n")
    # The last non-empty line is the closing marker.
    while lines and lines[-1].strip() == "":
        lines.pop()
    if lines and lines[-1].strip() == marker:
        lines.pop()
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    if trim:
        indents = [len(ln) - len(ln.lstrip(" \t")) for ln in lines if ln.strip()]
        cut = min(indents) if indents else 0
        lines = [ln[cut:] for ln in lines]
    body = "\n".join(lines) + ("\n" if lines else "")
    return body, ("${" in body or "%{" in body)


def _template_to_quoted(body: str) -> str:
    """Turn a heredoc body into a quoted-string template with the same ${}/%{} sequences."""
    out: list[str] = []
    i = 0
    n = len(body)
    while i < n:
        two = body[i:i + 2]
        if two in ("${", "%{") and not (i > 0 and body[i - 1] == two[0] and _escaped_at(body, i)):
            end = _match_brace(body, i + 2)
            if end < 0:
                raise EvalError("Unterminated template sequence in heredoc: missing \"}\"")
            out.append(body[i:end + 1])
            i = end + 1
            continue
        ch = body[i]
        out.append("\\\\" if ch == "\\" else '\\"' if ch == '"' else ch)
        i += 1
    return '"' + "".join(out) + '"'


def _escaped_at(body: str, i: int) -> bool:
    # "$${" is an escape: count the run of the sigil before i.
    j = i - 1
    while j >= 0 and body[j] == body[i]:
        j -= 1
    return (i - j - 1) % 2 == 1


def _match_brace(s: str, i: int) -> int:
    depth = 1
    in_str = False
    while i < len(s):
        c = s[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


class TemplateMixin:
    """Template evaluation; mixed into the Evaluator, which provides the expression side."""

    src: str
    ctx: Context
    line_offset: int
    scopes: list[dict[str, Any]]
    depth: int
    iterations: int

    if TYPE_CHECKING:
        def __init__(self, src: str, ctx: Context, line_offset: int = 0) -> None: ...
        def eval(self, node: Tree) -> Any: ...
        def pos(self, node: Tree | Token) -> Pos: ...
        def _runtime_whole(self, expr: Tree) -> Runtime: ...
        def _count_iteration(self, node: Tree) -> None: ...

    def e_string(self, node: Tree) -> Any:
        ch = node.children
        if len(ch) == 3:  # DBLQUOTE string_part DBLQUOTE: a plain string, the common case
            only = ch[1]
            if type(only) is Tree and only.data == "string_part" and type(ch[0]) is Token:
                tok = only.children[0]
                if type(tok) is Token and tok.type == "STRING_CHARS" and "\\" not in tok:
                    return str(tok)
        parts = [c for c in ch if isinstance(c, Tree) and c.data == "string_part"]
        if not parts:
            return ""
        if len(parts) == 1:
            only = parts[0].children[0]
            if isinstance(only, Tree) and only.data == "interpolation":
                # "${expr}" alone yields the expression's value unchanged (HCL's rule).
                return self._interp(only, whole=True)
            if isinstance(only, Token) and only.type == "STRING_CHARS":  # a plain string: the common case
                return decode_string_chars(str(only), functools.partial(self.pos, only))
        return self._template(parts)

    def e_template_string(self, node: Tree) -> Any:
        raw = str(node.children[0])
        return decode_string_chars(raw[2:-2], self.pos(node))

    def e_heredoc_template(self, node: Tree) -> Any:
        return self._heredoc(node)

    def e_heredoc_template_trim(self, node: Tree) -> Any:
        return self._heredoc(node)

    def _heredoc(self, node: Tree) -> Any:
        body, is_template = parse_heredoc(str(node.children[0]))
        if not is_template:
            return body
        from rawexec.jobspec.hcl.structure import parse_text  # structure imports this module

        pos = self.pos(node)
        try:
            quoted = _template_to_quoted(body)
        except EvalError as exc:
            raise EvalError(exc.message, pos) from None
        text = "x = " + quoted + "\n"
        tree = parse_text(text, self.ctx.filename, line_offset=pos.line)
        expr = kids(kids(kids(tree)[0])[0])[-1]
        sub = type(self)(text, self.ctx, line_offset=pos.line)
        sub.scopes = self.scopes
        sub.depth = self.depth
        sub.iterations = self.iterations
        return sub.eval(expr)

    def _interp(self, interp: Tree, whole: bool = False) -> Any:
        expr = kids(interp)[0]
        try:
            return self.eval(expr)
        except NeedsRuntime:
            return self._runtime_whole(expr)

    def _template(self, parts: list[Tree]) -> str:
        items: list[tuple[str, Any, bool, bool]] = []  # (kind, payload, strip_left, strip_right)
        for p in parts:
            c = p.children[0]
            if isinstance(c, Token):
                raw = str(c)
                if c.type in ("ESCAPED_INTERPOLATION", "ESCAPED_DIRECTIVE"):
                    items.append(("lit", raw[1:], False, False))
                else:
                    items.append(("lit", decode_string_chars(raw, functools.partial(self.pos, c)), False, False))
                continue
            toks = [t for t in c.children if isinstance(t, Token)]
            strip_l = len(toks) > 1 and toks[1].type == "STRIP_MARKER"
            strip_r = len(toks) > 1 and toks[-2].type == "STRIP_MARKER"
            kind = {"interpolation": "interp", "template_if_start": "if", "template_else": "else",
                    "template_endif": "endif", "template_for_start": "for",
                    "template_endfor": "endfor"}[str(c.data)]
            items.append((kind, c, strip_l, strip_r))
        # Apply strip markers to neighbouring literals.
        lits = [list(i) for i in items]
        for i, it in enumerate(lits):
            if it[0] == "lit":
                continue
            if it[2] and i > 0 and lits[i - 1][0] == "lit":
                lits[i - 1][1] = str(lits[i - 1][1]).rstrip()
            if it[3] and i + 1 < len(lits) and lits[i + 1][0] == "lit":
                lits[i + 1][1] = str(lits[i + 1][1]).lstrip()
        seq = [(str(k), p) for k, p, _, _ in lits]
        out: list[str] = []
        self._render(seq, 0, len(seq), out)
        text = "".join(out)
        if len(text) > MAX_LEN:
            raise EvalError("template result is too large")
        return text

    def _render(self, seq: list[tuple[str, Any]], i: int, end: int, out: list[str]) -> None:
        while i < end:
            kind, payload = seq[i]
            if kind == "lit":
                out.append(payload)
                i += 1
            elif kind == "interp":
                v = self._interp(payload)
                out.append(self._stringify(v, payload))
                i += 1
            elif kind == "if":
                else_i, end_i = self._match(seq, i, end, "if", "endif", "else")
                cond = self._directive_value(payload)
                if not isinstance(cond, bool):
                    raise EvalError("Invalid %{if} condition: a bool is required", self.pos(payload))
                if cond:
                    self._render(seq, i + 1, else_i if else_i >= 0 else end_i, out)
                elif else_i >= 0:
                    self._render(seq, else_i + 1, end_i, out)
                i = end_i + 1
            elif kind == "for":
                _, end_i = self._match(seq, i, end, "for", "endfor", None)
                names = [str(n.children[0]) for n in kids(payload) if n.data == "identifier"]
                coll = self._directive_value(payload)
                pairs = list(coll.items()) if isinstance(coll, dict) else list(enumerate(coll)) \
                    if isinstance(coll, list) else None
                if pairs is None:
                    raise EvalError("Invalid %{for} collection: a list or map is required", self.pos(payload))
                for k, v in pairs:
                    self._count_iteration(payload)
                    self.scopes.append({names[0]: v} if len(names) == 1 else {names[0]: k, names[1]: v})
                    try:
                        self._render(seq, i + 1, end_i, out)
                    finally:
                        self.scopes.pop()
                i = end_i + 1
            else:
                raise EvalError(f"unexpected %{{{kind}}} in template", self.pos(payload))

    def _directive_value(self, payload: Tree) -> Any:
        expr = [n for n in kids(payload) if n.data != "identifier"][-1]
        try:
            v = self.eval(expr)
        except NeedsRuntime:
            v = Runtime("")
        if isinstance(v, Runtime):
            raise EvalError("template directives (%{if}/%{for}) cannot use runtime values", self.pos(payload))
        return v

    def _match(self, seq: list[tuple[str, Any]], start: int, end: int, open_: str, close: str,
               mid: str | None) -> tuple[int, int]:
        depth = 0
        mid_i = -1
        for j in range(start, end):
            k = seq[j][0]
            if k == open_:
                depth += 1
            elif k == close:
                depth -= 1
                if depth == 0:
                    return mid_i, j
            elif mid is not None and k == mid and depth == 1:
                mid_i = j
        raise EvalError(f"unterminated %{{{open_}}}: missing %{{{close}}}", self.pos(seq[start][1]))

    def _stringify(self, v: Any, at: Tree) -> str:
        if isinstance(v, Runtime):
            return v.render()
        if v is None:
            raise EvalError("Invalid template interpolation value: the value is null", self.pos(at))
        if isinstance(v, (list, dict)):
            raise EvalError(f"Invalid template interpolation value: cannot include a {type_name(v)} in a "
                            "string template", self.pos(at), "use jsonencode() or join()")
        return to_string(v)
