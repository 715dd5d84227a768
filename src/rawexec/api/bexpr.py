"""Nomad's ``?filter=`` language (HashiCorp go-bexpr) over decoded JSON, written from its documented behaviour.

An expression is parsed once into a small AST (:func:`parse`, or :class:`Filter`) and evaluated against
each object a list endpoint returns, as decoded from the response JSON (dicts, lists, str, int, float,
bool, None)::

    Status == "running" and not (Meta["team"] == `ops` or JobSummary.Summary.web.Failed != 0)
    "web" in Name         Tags contains "a"      Meta is empty      ID matches "^ab[0-9]+"

Grammar, lowest precedence first: ``or``, ``and``, ``not``, then a parenthesised expression or one match:

* ``Selector == Value``, ``!=``, ``contains``, ``not contains``, ``matches``, ``not matches`` (regex search);
* ``Selector is empty``, ``Selector is not empty``;
* ``Value in Selector``, ``Value not in Selector``.

A selector is a dotted path over JSON field names (``JobSummary.Summary``), with map keys as
``.key`` or ``["key"]`` and list items as ``.0``; a double-quoted JSON pointer (``"/Meta/team"``) also
works. A value is a double-quoted string (Go escapes), a backtick raw string, a number, or a bare word
(``true``, ``running``), all kept as raw text and coerced to the type of the field they meet, as bexpr
does: ``Count == 3`` and ``Count == "3"`` are the same test, ``Stop == true`` compares booleans.

Missing fields follow bexpr: a key missing from a nested object (``Meta.nosuch``, ``TaskStates.web``)
or a JSON ``null`` on the way makes ``==``, ``in``, ``matches`` and ``is not empty`` false and their
negations true; a missing top-level field is an error (Nomad answers "error finding value in datum",
since a struct field of that name does not exist), as is comparing a value of the wrong type
(``ModifyIndex == "abc"``) or a map with ``==``.

Regular expressions are compiled when the expression is parsed, by the ``regex`` package (the ``re``
syntax, which agrees with Go's RE2 for the common subset). RE2 matches in linear time; a backtracking
engine can take exponential time on patterns such as ``^(a|aa)+$``, so matching has a time budget
(:data:`REGEX_BUDGET_S` for one evaluation of the filter over a whole list): a pattern that exceeds it
is an evaluation error, never a stalled agent.

Parsing and evaluation never recurse along a chain of ``and``/``or`` (``a and b and ... and z``, of any
length) nor along a run of ``not``; parentheses nest at most :data:`MAX_NESTING` deep.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import regex as _regex

__all__ = [
    "MAX_NESTING",
    "REGEX_BUDGET_S",
    "REGEX_PER_MATCH_S",
    "And",
    "Filter",
    "FilterError",
    "FilterEvalError",
    "FilterSyntaxError",
    "Match",
    "Not",
    "Or",
    "RegexBudget",
    "evaluate",
    "parse",
]


class FilterError(ValueError):
    """A filter that cannot be used; ``message`` is the text for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FilterSyntaxError(FilterError):
    """The expression does not parse (or its regex does not compile)."""


class FilterEvalError(FilterError):
    """The expression parsed but cannot be applied to an object (unknown field, wrong type, a regular
    expression that takes too long)."""


MAX_NESTING = 100
"""How deep parentheses may nest (Python's stack, not the grammar, would give out a few hundred deeper)."""

REGEX_BUDGET_S = 0.1
"""Seconds that all the regular-expression matching of one evaluation (one object, or one whole list
with :meth:`Filter.select`) may take in total, besides :data:`REGEX_PER_MATCH_S` per match."""

REGEX_PER_MATCH_S = 50e-6
"""What each match adds to the budget: an ordinary match costs a few microseconds (most of it the
timeout bookkeeping), so a long list of them never runs out, while the whole stays linear in the
number of objects, as RE2's matching is linear in the input."""


class RegexBudget:
    """The matching time left to the evaluations that share it (seconds spent in the regex engine)."""

    def __init__(self, seconds: float = REGEX_BUDGET_S, per_match: float = REGEX_PER_MATCH_S) -> None:
        self.seconds = seconds
        self.per_match = per_match
        self.left = seconds


# -- AST ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Match:
    """One comparison: ``op`` is one of ``==  !=  in  not in  is empty  is not empty  matches  not matches``."""

    selector: tuple[str, ...]
    op: str
    value: str | None = None
    pointer: bool = False  # the selector was written as a JSON pointer (for messages)
    regex: _regex.Pattern[str] | None = field(default=None, compare=False)

    @property
    def selector_text(self) -> str:
        return "/" + "/".join(self.selector) if self.pointer else ".".join(self.selector)


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Or:
    left: Expr
    right: Expr


Expr: TypeAlias = Match | Not | And | Or

# What a missing map key (or null) makes each operator return, as bexpr's NotPresentDisposition.
_NOT_PRESENT = {"==": False, "!=": True, "in": False, "not in": True, "is empty": True,
                "is not empty": False, "matches": False, "not matches": True}


# -- parser ------------------------------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_WS = " \t\r\n"
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
            '"': '"', "'": "'"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0  # open parentheses around the current position

    # helpers
    def error(self, msg: str, pos: int | None = None) -> FilterSyntaxError:
        p = self.pos if pos is None else pos
        line = self.text.count("\n", 0, p) + 1
        col = p - (self.text.rfind("\n", 0, p) + 1) + 1
        return FilterSyntaxError(f"{line}:{col} ({p}): {msg}")

    def ws(self) -> bool:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1
        return self.pos > start

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek_word(self, *words: str) -> bool:
        """Whether ``words`` (separated by whitespace) come next, each ending at a non-identifier char."""
        p = self.pos
        for i, w in enumerate(words):
            if i:
                q = p
                while q < len(self.text) and self.text[q] in _WS:
                    q += 1
                if q == p:
                    return False
                p = q
            if not self.text.startswith(w, p):
                return False
            p += len(w)
            if p < len(self.text) and (self.text[p].isalnum() or self.text[p] == "_"):
                return False
        return True

    def take_word(self, *words: str) -> bool:
        if not self.peek_word(*words):
            return False
        for i, w in enumerate(words):
            if i:
                self.ws()
            self.pos += len(w)
        return True

    def describe_here(self) -> str:
        if self.at_end():
            return "end of input"
        return repr(self.text[self.pos:self.pos + 12])

    # grammar
    def parse(self) -> Expr:
        self.ws()
        if self.at_end():
            raise self.error("the expression is empty; write e.g. Status == \"running\"")
        expr = self.or_expr()
        self.ws()
        if not self.at_end():
            if self.text[self.pos] == ")":
                raise self.error("unmatched ')'")
            raise self.error(f"unexpected {self.describe_here()}: expected 'and', 'or' or the end of the expression")
        return expr

    def or_expr(self) -> Expr:
        return self._chain("or", self.and_expr, Or)

    def and_expr(self) -> Expr:
        return self._chain("and", self.not_expr, And)

    def _chain(self, word: str, operand: Callable[[], Expr], node: type[Or] | type[And]) -> Expr:
        # a loop, not recursion: a chain of any length; folded to the right (a or (b or c))
        parts = [operand()]
        while True:
            save = self.pos
            if not (self.ws() and self.take_word(word)):
                self.pos = save
                break
            self.ws()
            parts.append(operand())
        return _fold_right(node, parts)

    def not_expr(self) -> Expr:
        negate = False
        while True:  # a run of `not`s, counted (two cancel out)
            save = self.pos
            if self.take_word("not") and (self.ws() or self.text.startswith("(", self.pos)):
                negate = not negate
                continue
            self.pos = save
            break
        inner = self.primary()
        if not negate:
            return inner
        return inner.operand if isinstance(inner, Not) else Not(inner)

    def primary(self) -> Expr:
        if self.text.startswith("(", self.pos):
            open_at = self.pos
            if self.depth >= MAX_NESTING:
                raise self.error(f"parentheses nest deeper than {MAX_NESTING} levels here; "
                                 "write the expression with fewer of them")
            self.depth += 1
            self.pos += 1
            self.ws()
            expr = self.or_expr()
            self.ws()
            if not self.text.startswith(")", self.pos):
                if self.at_end():
                    raise self.error("unmatched parentheses: no ')' for the '(' here", open_at)
                raise self.error(f"unexpected {self.describe_here()}: expected ')', 'and' or 'or'")
            self.pos += 1
            self.depth -= 1
            return expr
        return self.match()

    def match(self) -> Expr:
        start = self.pos
        if self.at_end():
            raise self.error("expected a selector or a value, got end of input")
        ch = self.text[self.pos]
        if ch.isalpha():
            path = self.selector()
            return self.after_selector(path, start, pointer=False)
        if ch in "\"`":
            is_dq = ch == '"'
            lit = self.string()
            if self.peek_in():
                return self.value_in(lit)
            if is_dq and lit.startswith("/"):
                return self.after_selector(_pointer_parts(lit), start, pointer=True)
            raise self.error("a string can only start a match as a JSON pointer (\"/Field/key\") "
                             "or before 'in'; put the selector first, e.g. Name == \"web\"", start)
        if ch == "-" or ch.isdigit():
            num = self.number()
            if self.peek_in():
                return self.value_in(num)
            raise self.error(f"expected 'in' or 'not in' after the number {num}", self.pos)
        raise self.error(f"unexpected {self.describe_here()}: expected a selector (e.g. Status) or '('")

    def peek_in(self) -> bool:
        save = self.pos
        ok = self.ws() and (self.peek_word("in") or self.peek_word("not", "in"))
        self.pos = save
        return ok

    def value_in(self, value: str) -> Match:
        self.ws()
        op = "not in" if self.take_word("not", "in") else "in"
        if op == "in":
            self.take_word("in")
        if not self.ws():
            raise self.error(f"expected a selector after '{op}'")
        if self.at_end() or not (self.text[self.pos].isalpha() or self.text[self.pos] == '"'):
            raise self.error(f"invalid selector after '{op}': {self.describe_here()}")
        if self.text[self.pos] == '"':
            at = self.pos
            lit = self.string()
            if not lit.startswith("/"):
                raise self.error("a quoted selector must be a JSON pointer like \"/Meta/team\"", at)
            return Match(_pointer_parts(lit), op, value, pointer=True)
        return Match(self.selector(), op, value)

    def after_selector(self, path: tuple[str, ...], start: int, *, pointer: bool) -> Match:
        sel_end = self.pos
        spaced = self.ws()
        if self.text.startswith("==", self.pos) or self.text.startswith("!=", self.pos):
            op = self.text[self.pos:self.pos + 2]
            self.pos += 2
            self.ws()
            return Match(path, op, self.value(op), pointer=pointer)
        if spaced:
            empties: tuple[tuple[tuple[str, ...], str], ...] = (
                (("is", "not", "empty"), "is not empty"), (("is", "empty"), "is empty"))
            for words, op in empties:
                if self.take_word(*words):
                    return Match(path, op, None, pointer=pointer)
            valued: tuple[tuple[tuple[str, ...], str], ...] = (
                (("not", "contains"), "not in"), (("contains",), "in"),
                (("not", "matches"), "not matches"), (("matches",), "matches"))
            for words, op in valued:
                if self.take_word(*words):
                    if not self.ws():
                        raise self.error(f"expected a value after '{' '.join(words)}'")
                    value = self.value(" ".join(words))
                    compiled = None
                    if op in ("matches", "not matches"):
                        try:
                            compiled = _regex.compile(value)
                        except (_regex.error, RecursionError, OverflowError) as e:
                            raise self.error(f"Failed to compile regular expression {value!r}: {e}") from None
                    return Match(path, op, value, pointer=pointer, regex=compiled)
            if not pointer and (self.peek_word("in") or self.peek_word("not", "in")):
                self.pos = sel_end
                return self.value_in(".".join(path))  # a bare word is a value: foo in Tags
        self.pos = sel_end
        self.ws()
        raise self.error(f"unexpected {self.describe_here()} after the selector {self.text[start:sel_end]!r}: "
                         "expected ==, !=, contains, not contains, matches, not matches, in, not in, "
                         "is empty or is not empty")

    def selector(self) -> tuple[str, ...]:
        m = _IDENT.match(self.text, self.pos)
        if m is None:
            raise self.error(f"invalid selector: {self.describe_here()}")
        parts = [m.group()]
        self.pos = m.end()
        while not self.at_end():
            ch = self.text[self.pos]
            if ch == ".":
                m = _IDENT.match(self.text, self.pos + 1) or re.compile(r"[0-9]+").match(self.text, self.pos + 1)
                if m is None:
                    raise self.error("expected a field name or an index after '.'", self.pos + 1)
                parts.append(m.group())
                self.pos = m.end()
            elif ch == "[":
                self.pos += 1
                self.ws()
                if self.at_end() or self.text[self.pos] not in "\"`":
                    raise self.error('invalid index: write a quoted key, e.g. Meta["team"]')
                parts.append(self.string())
                self.ws()
                if not self.text.startswith("]", self.pos):
                    raise self.error("unclosed index expression: expected ']'")
                self.pos += 1
            else:
                break
        return tuple(parts)

    def value(self, after: str) -> str:
        if self.at_end():
            raise self.error(f"expected a value after '{after}', got end of input")
        ch = self.text[self.pos]
        if ch in "\"`":
            return self.string()
        if ch == "-" or ch.isdigit():
            return self.number()
        if ch.isalpha():
            return ".".join(self.selector())
        raise self.error(f"expected a value after '{after}' (a \"string\", `raw string`, number or word), "
                         f"got {self.describe_here()}")

    def number(self) -> str:
        start = self.pos
        m = _NUMBER.match(self.text, self.pos)
        end = m.end() if m else start
        if m is None or (end < len(self.text) and self.text[end] not in _WS + ")"):
            raise self.error("invalid number literal", start)
        self.pos = end
        return m.group()

    def string(self) -> str:
        start = self.pos
        quote = self.text[self.pos]
        self.pos += 1
        if quote == "`":
            end = self.text.find("`", self.pos)
            if end < 0:
                raise self.error("unterminated string literal", start)
            s = self.text[self.pos:end]
            self.pos = end + 1
            return s
        out: list[str] = []
        while True:
            if self.at_end():
                raise self.error("unterminated string literal", start)
            ch = self.text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch != "\\":
                out.append(ch)
                self.pos += 1
                continue
            esc = self.text[self.pos + 1:self.pos + 2]
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
                self.pos += 2
                continue
            width = {"x": 2, "u": 4, "U": 8}.get(esc)
            digits = self.text[self.pos + 2:self.pos + 2 + width] if width else ""
            if width and len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
                out.append(chr(int(digits, 16)))
                self.pos += 2 + width
                continue
            oct_digits = self.text[self.pos + 1:self.pos + 4]
            if len(oct_digits) == 3 and all(c in "01234567" for c in oct_digits):
                out.append(chr(int(oct_digits, 8)))
                self.pos += 4
                continue
            raise self.error(f"invalid escape sequence in string: \\{esc}", self.pos)


def _fold_right(node: type[And] | type[Or], parts: list[Expr]) -> Expr:
    expr = parts[-1]
    for left in reversed(parts[:-1]):
        expr = node(left, expr)
    return expr


def _pointer_parts(ptr: str) -> tuple[str, ...]:
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in ptr[1:].split("/")) if ptr != "/" else ()


def parse(expression: str) -> Expr:
    """Parse ``expression`` into an AST; :class:`FilterSyntaxError` (with ``line:col (offset)``) if malformed."""
    try:
        return _Parser(expression).parse()
    except RecursionError:  # only on a stack already nearly full: MAX_NESTING keeps the parser shallow
        raise FilterSyntaxError("the expression nests too deeply to be read; write it with fewer "
                                "parentheses") from None


# -- evaluation --------------------------------------------------------------------------------------

class _NotPresent(Exception):
    """A key missing from a nested object (or a null): the operator's not-present answer applies."""


def _q(s: str) -> str:
    return json.dumps(s)


def _go_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map"
    if isinstance(v, list):
        return "slice"
    return type(v).__name__


def _lookup(obj: Any, m: Match) -> Any:
    cur = obj
    ptr = "/" + "/".join(m.selector)
    for i, part in enumerate(m.selector):
        if cur is None and i > 0:
            raise _NotPresent
        if isinstance(cur, dict):
            if part in cur:
                cur = cur[part]
                continue
            if i == 0:
                raise FilterEvalError(f"error finding value in datum: {ptr} at part 0: "
                                      f"couldn't find struct field with name {_q(part)} "
                                      f"(the listed objects have: {', '.join(sorted(cur))})")
            raise _NotPresent
        if isinstance(cur, list):
            if not part.isdigit():
                raise FilterEvalError(f"error finding value in datum: {ptr} at part {i}: "
                                      f"failed to parse index {_q(part)} of a list as a number")
            idx = int(part)
            if idx >= len(cur):
                raise FilterEvalError(f"error finding value in datum: {ptr} at part {i}: "
                                      f"index {idx} out of range (length {len(cur)})")
            cur = cur[idx]
            continue
        raise FilterEvalError(f"error finding value in datum: {ptr} at part {i}: "
                              f"invalid value kind: {_go_type(cur)} has no field {_q(part)}")
    if cur is None:
        raise _NotPresent
    return cur


_GO_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
            "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
_GO_INT = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO]?[0-7_]+|[1-9][0-9_]*|0)")
_GO_FLOAT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[iI]nf(?:inity)?|NaN|nan)")


class _Coerce(Exception):
    """The raw value does not parse as the field's type (bexpr: a strconv syntax error)."""


def _coerce(raw: str, like: Any) -> Any:
    """``raw`` as the type of ``like`` (bool, int, float, str), as bexpr's Coerce* functions."""
    if isinstance(like, bool):
        if raw not in _GO_BOOL:
            raise _Coerce(f'strconv.ParseBool: parsing "{raw}": invalid syntax')
        return _GO_BOOL[raw]
    if isinstance(like, int):
        if not _GO_INT.fullmatch(raw):
            raise _Coerce(f'strconv.ParseInt: parsing "{raw}": invalid syntax')
        body = raw.lstrip("+-")
        sign = -1 if raw.startswith("-") else 1
        try:
            if len(body) > 1 and body[0] == "0" and body[1] in "01234567_oO":  # Go: a leading 0 is octal
                return sign * int(body[2:] if body[1] in "oO" else body[1:], 8)
            return sign * int(body, 0)
        except ValueError:
            raise _Coerce(f'strconv.ParseInt: parsing "{raw}": invalid syntax') from None
    if isinstance(like, float):
        if not _GO_FLOAT.fullmatch(raw):
            raise _Coerce(f'strconv.ParseFloat: parsing "{raw}": invalid syntax')
        return float(raw)
    return raw


def _equal(m: Match, value: Any) -> bool:
    if isinstance(value, dict | list):
        raise FilterEvalError(f"unable to find suitable primitive comparison function for matching "
                              f"{m.selector_text} ({_go_type(value)})")
    assert m.value is not None
    try:
        return bool(_coerce(m.value, value) == value)
    except _Coerce as e:
        raise FilterEvalError(f"error getting match value in expression: {e}") from None


def _contains(m: Match, value: Any) -> bool:
    assert m.value is not None
    raw = m.value
    if isinstance(value, dict):
        return raw in value
    if isinstance(value, list):
        for item in value:
            if item is None:
                continue
            if isinstance(item, dict | list):
                raise FilterEvalError(f'unable to find suitable primitive comparison function for "in" '
                                      f"comparison in {m.selector_text} (a list of {_go_type(item)})")
            try:
                if _coerce(raw, item) == item:
                    return True
            except _Coerce:
                continue  # a mixed list: this item is of another type
        return False
    if isinstance(value, str):
        return raw in value
    raise FilterEvalError(f"Cannot perform in/contains operations on type {_go_type(value)} "
                          f"for selector: {_q(m.selector_text)}")


def _is_empty(m: Match, value: Any) -> bool:
    if isinstance(value, dict | list | str):
        return len(value) == 0
    raise FilterEvalError(f"Cannot perform is empty on type {_go_type(value)} for selector: {_q(m.selector_text)}")


def _matches(m: Match, value: Any, budget: RegexBudget) -> bool:
    if not isinstance(value, str):
        raise FilterEvalError(f"Value of type {_go_type(value)} is not convertible to []byte "
                              f"(selector {_q(m.selector_text)}): matches works on strings")
    assert m.regex is not None
    budget.left += budget.per_match
    start = time.perf_counter()
    try:
        # the regex package takes 0 as "out of time at once": at least a microsecond for a budget spent
        return m.regex.search(value, timeout=max(budget.left, 1e-6)) is not None
    except TimeoutError:
        raise FilterEvalError(f"the regular expression {_q(m.value or '')} took too long to match "
                              f"{m.selector_text} (a filter may spend {budget.seconds:g}s matching, plus "
                              f"{budget.per_match * 1e6:g}µs per match): "
                              "it backtracks too much; simplify it, e.g. without nested repetition like "
                              "(a+)+ or overlapping alternatives like (a|aa)+") from None
    finally:
        budget.left -= time.perf_counter() - start


def _eval_match(m: Match, obj: Any, budget: RegexBudget) -> bool:
    try:
        value = _lookup(obj, m)
    except _NotPresent:
        return _NOT_PRESENT[m.op]
    if m.op == "==":
        return _equal(m, value)
    if m.op == "!=":
        return not _equal(m, value)
    if m.op == "in":
        return _contains(m, value)
    if m.op == "not in":
        return not _contains(m, value)
    if m.op == "is empty":
        return _is_empty(m, value)
    if m.op == "is not empty":
        return not _is_empty(m, value)
    if m.op == "matches":
        return _matches(m, value, budget)
    return not _matches(m, value, budget)


def evaluate(expr: Expr, obj: Any, *, budget: RegexBudget | None = None) -> bool:
    """Whether ``obj`` passes ``expr``; :class:`FilterEvalError` when it cannot be applied to ``obj``.

    ``budget`` bounds the time spent matching regular expressions (shared by the evaluations given
    the same one); by default :data:`REGEX_BUDGET_S` for this evaluation.
    """
    try:
        return _evaluate(expr, obj, budget or RegexBudget())
    except RecursionError:  # a tree built by hand, nested deeper than parse() allows
        raise FilterEvalError("the expression nests too deeply to be evaluated; write it with fewer "
                              "parentheses") from None


def _evaluate(expr: Expr, obj: Any, budget: RegexBudget) -> bool:
    # along an and/or chain (right-folded by the parser) in a loop: recursion only into a left operand
    while True:
        if isinstance(expr, Match):
            return _eval_match(expr, obj, budget)
        if isinstance(expr, Not):
            return not _evaluate(expr.operand, obj, budget)
        if isinstance(expr, And):
            if not _evaluate(expr.left, obj, budget):
                return False
        elif _evaluate(expr.left, obj, budget):
            return True
        expr = expr.right


class Filter:
    """A parsed filter expression, applied with :meth:`matches` or :meth:`select`."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.ast = parse(expression)

    def matches(self, obj: Any) -> bool:
        return evaluate(self.ast, obj)

    def select(self, items: Iterable[Any]) -> list[Any]:
        """The items that pass, in order; the first evaluation error aborts (as Nomad's paginator does).

        All the items share one regular-expression budget (:data:`REGEX_BUDGET_S`).
        """
        budget = RegexBudget()
        return [i for i in items if evaluate(self.ast, i, budget=budget)]
