"""A faster driver for python-hcl2's Lark parser: same grammar, same tables, same tree.

python-hcl2 parses with Lark's LALR parser, whose run time goes into generic per-token work: a
generator chain (contextual lexer → hcl2's post-lexer → parser), a ``feed_token`` call per token,
and one tree-builder callback per reduction, most of them the single-child reductions of the
operator-precedence ladder (``?expression → or_expr → … → expr_term``).

:class:`FastParser` runs the very same automaton in one loop. It takes everything from the Lark
object that python-hcl2's grammar builds — the LALR parse table, the per-state terminal regexes of
Lark's contextual lexer (with their keyword callbacks), the tree-builder callbacks — and replicates
hcl2's post-lexer pass (a newline before a binary operator is merged into the operator). Nothing
about HCL is written here: terminals, precedence and tree shapes all come from ``hcl2.lark``.

What it does differently, with identical results:

* chains of single-child reductions are followed once per (state below, state, lookahead) and
  cached, so the value is wrapped without walking the ladder each time;
* trees are built inline for plain ``Tree(rule, children)`` callbacks;
* the lexer's alternation of terminal regexes is narrowed by the next character: for each lexer
  state and ASCII character, a regex of only those alternatives (in Lark's order) whose first
  character can be that one. Python's ``re`` tries alternatives in order, so dropping ones that
  cannot match there leaves the result unchanged; the first-character sets are computed from the
  terminals' own regexes, conservatively (anything not understood admits every character).

It only handles the success path. On anything unexpected (a syntax error, a table entry it does not
know), it raises :class:`FastParseError` and the caller re-parses with Lark itself, which raises
the usual exception with its message and position — errors are Lark's, byte for byte. The tests
compare its trees (every token's type, value and position) with Lark's on the corpus and on
generated input.
"""

from __future__ import annotations

import functools
import re
from re import _constants as sre_c
from re import _parser as sre_parse
from typing import Any, Final

from hcl2.postlexer import OPERATOR_TYPES, PostLexer
from lark import Lark, Token, Tree
from lark.lexer import UnlessCallback
from lark.parse_tree_builder import ChildFilterLALR_NoPlaceholders, ExpandSingleChild
from lark.parsers.lalr_analysis import Shift

__all__ = ["FastParseError", "FastParser"]

_str_new = str.__new__
_obj_new = object.__new__

# Action kinds in the compiled table: (kind, a, b, c)
_SHIFT: Final = 0  # (SHIFT, next state, None, None)
_TREE: Final = 1  # (TREE, size, rule origin, tree name): Tree(name, children)
_UNIT: Final = 2  # (UNIT, 1, rule origin, None): ``?rule`` with one child: the child itself
_CALL: Final = 3  # (CALL, size, rule origin, callback): Lark's tree-builder callback
_FILTER: Final = 4  # (FILTER, size, rule origin, (name, to_include)): Lark's child filter, then Tree

_Action = tuple[int, Any, Any, Any]
#: Per lexer state: the match method per next character (filled on first use), per terminal that
#: may be a keyword (NAME) the keyword scanner's fullmatch and a memo of its answers, the newline
#: terminals, the ignored terminals that are not newlines, the ignored terminals, and the lexer
#: state's :class:`_Alternatives`.
_Lexer = tuple[dict[str, Any], dict[str, tuple[Any, dict[str, str | None]]], frozenset[str], frozenset[str],
               frozenset[str], "_Alternatives"]
#: A single-child reduction chain: the state reached, the wrappers, the action that follows.
_Chain = tuple[Any, tuple[tuple[Any, int], ...], "_Action | None"]
# How a wrapper in a chain builds its value ``v``: Tree(name, [v]), Tree(name, v.children),
# Tree(name, []), or a Lark callback called with [v].
_WRAP_ONE: Final = 0
_WRAP_SPLICE: Final = 1
_WRAP_NONE: Final = 2
_WRAP_CALL: Final = 3
_NL: Final = "NL_OR_COMMENT"
#: Bound on each keyword memo (distinct names seen); it is cleared when full.
_MEMO_MAX: Final = 4096


class FastParseError(Exception):
    """The fast path cannot parse this text; parse it with Lark to get the real outcome."""


def _plain_tree_name(cb: Any) -> str | None:
    """The rule name if ``cb`` is exactly ``functools.partial(Tree, name)``."""
    if isinstance(cb, functools.partial) and cb.func is Tree and not cb.keywords and len(cb.args) == 1:
        name = cb.args[0]
        return name if isinstance(name, str) else None
    return None


def _tree_fields_known() -> bool:
    """Trees are built without calling ``Tree.__init__``: only while it sets exactly these fields."""
    t: Any = Tree("x", [])
    return bool(getattr(t, "__dict__", None) is not None and set(vars(t)) == {"data", "children", "_meta"})


class FastParser:
    """Parses text with the automaton of ``lark`` (python-hcl2's grammar, LALR, contextual lexer,
    hcl2's post-lexer) and returns the tree Lark would return, or raises :class:`FastParseError`."""

    def __init__(self, lark: Lark) -> None:
        frontend: Any = lark.parser
        connector = frontend.lexer
        if type(getattr(connector, "postlexer", None)) is not PostLexer or tuple(connector.postlexer.always_accept):
            raise FastParseError("not python-hcl2's post-lexer")
        contextual = connector.lexer
        parser = frontend.parser.parser
        table = parser.parse_table
        callbacks = parser.callbacks
        self.start_state: Any = table.start_states["start"]
        self.end_state: Any = table.end_states["start"]
        if any(isinstance(k, str) for k in callbacks):
            raise FastParseError("terminal callbacks are not supported")
        inline_trees = _tree_fields_known()
        compiled: dict[Any, _Action] = {}
        self.states: dict[Any, dict[str, _Action]] = {}
        for state, actions in table.states.items():
            row: dict[str, _Action] = {}
            for name, (action, arg) in actions.items():
                if action is Shift:
                    row[name] = (_SHIFT, arg, None, None)
                    continue
                act = compiled.get(arg)
                if act is None:
                    cb = callbacks[arg]
                    size = len(arg.expansion)
                    tree_name = _plain_tree_name(cb) if inline_trees else None
                    filter_tree = (_plain_tree_name(cb.node_builder) if inline_trees
                                   and type(cb) is ChildFilterLALR_NoPlaceholders else None)
                    if tree_name is not None:
                        act = (_TREE, size, arg.origin.name, tree_name)
                    elif filter_tree is not None:
                        include = tuple((int(i), bool(expand)) for i, expand in cb.to_include)
                        act = (_FILTER, size, arg.origin.name, (filter_tree, include))
                    elif type(cb) is ExpandSingleChild and size == 1:
                        act = (_UNIT, 1, arg.origin.name, None)
                    else:
                        act = (_CALL, size, arg.origin.name, cb)
                    compiled[arg] = act
                row[name] = act
            self.states[state] = row
        self.lexers = _Lexers(contextual.lexers)
        self.chains: dict[tuple[Any, Any, str], _Chain] = {}

    def _chain(self, below: Any, top: Any, lookahead: str) -> _Chain:
        """Follow single-child reductions from ``top`` (``below`` under it) on ``lookahead``: the
        state reached, the wrappers applied to the value on top of the stack (in order) and the
        action that follows in the state reached (``None`` if the table has none)."""
        states = self.states
        wraps: list[tuple[Any, int]] = []
        state = top
        while True:
            act = states[state].get(lookahead)
            if act is None or act[0] == _SHIFT or act[1] != 1:
                break
            kind, _, origin, c = act
            if kind == _TREE:
                wraps.append((c, _WRAP_ONE))
            elif kind == _FILTER:
                name, include = c
                if include == ((0, False),):
                    wraps.append((name, _WRAP_ONE))
                elif include == ((0, True),):
                    wraps.append((name, _WRAP_SPLICE))
                elif not include:
                    wraps.append((name, _WRAP_NONE))
                else:  # not a shape a one-child rule can have: let Lark parse
                    raise FastParseError(f"unexpected child filter {include!r}")
            elif kind == _CALL:
                wraps.append((c, _WRAP_CALL))
            state = states[below][origin][1]
            if state == self.end_state:
                return state, tuple(wraps), None
        return state, tuple(wraps), states[state].get(lookahead)

    def parse(self, text: str) -> Tree[Any]:
        """The parse tree of ``text``; :class:`FastParseError` if it is not (simply) valid."""
        try:
            return self._parse(text)
        except FastParseError:
            raise
        except Exception as exc:  # a table entry missing: let Lark decide
            raise FastParseError(repr(exc)) from None

    def _parse(self, text: str) -> Tree[Any]:  # one loop on purpose: this is the hot path
        states = self.states
        lexers = self.lexers
        chains = self.chains
        ops = OPERATOR_TYPES
        end_state = self.end_state
        state_stack: list[Any] = [self.start_state]
        value_stack: list[Any] = []
        push_state = state_stack.append
        push_value = value_stack.append
        pos = 0
        line = 1
        line_start = 0
        n = len(text)
        pending: Any = None  # a newline token held back by the post-lexer
        held: Any = None  # a token to feed right after the pending newline
        last: Any = None
        tok: Any
        ty: str
        while True:
            is_end = False
            if pos < n:
                by_char, keywords, nl_types, skip, ignore, alts = lexers[state_stack[-1]]
                ch = text[pos]
                match = by_char.get(ch)
                if match is None:
                    match = alts.matcher(ch)
                    if ch < "\x80":
                        by_char[ch] = match
                m = match(text, pos)
                if m is None:
                    raise FastParseError("no terminal matches")
                ty = m.lastgroup
                if ty in skip:
                    pos = m.end()
                    continue
                value = m.group()
                start = pos
                start_line = line
                column = start - line_start + 1
                pos = start + len(value)
                if ty in nl_types:
                    count = value.count("\n")
                    if count:
                        line += count
                        line_start = start + value.rindex("\n") + 1
                    if ty in ignore:
                        continue
                if ty in keywords:  # Lark's UnlessCallback: a NAME that spells a keyword is that keyword
                    fullmatch, memo = keywords[ty]
                    kw = memo.get(value, ty)
                    if kw is ty:
                        kw = fullmatch(value)
                        if len(memo) >= _MEMO_MAX:
                            memo.clear()
                        memo[value] = kw
                    if kw is not None:
                        ty = kw
                tok = _str_new(Token, value)
                tok.type = ty
                tok.start_pos = start
                tok.value = value
                tok.line = start_line
                tok.column = column
                tok.end_line = line
                tok.end_column = pos - line_start + 1
                tok.end_pos = pos
                last = tok
                # hcl2's post-lexer: a newline is held until the next token shows whether it is a
                # line continuation (merged into a binary operator) or a statement end.
                if ty == _NL:
                    if pending is None:
                        pending = tok
                        continue
                    tok, pending = pending, tok
                elif pending is not None:
                    if ty in ops:
                        tok = tok.update(value=str(pending) + str(tok))
                    else:
                        held = tok
                        tok = pending
                        ty = _NL
                    pending = None
            elif pending is not None:
                tok = pending
                ty = _NL
                pending = None
            else:
                tok = Token.new_borrow_pos("$END", "", last) if last is not None else Token("$END", "", 0, 1, 1)
                ty = "$END"
                is_end = True
            # Feed ``tok`` (then ``held``) to the automaton.
            top = state_stack[-1]
            act = states[top][ty]
            while True:
                kind, a, b, c = act
                if kind == _SHIFT:
                    if is_end:
                        raise FastParseError("shift at end of input")
                    push_state(a)
                    push_value(tok)
                    if held is None:
                        break
                    tok = held
                    ty = tok.type
                    held = None
                    top = a
                    act = states[a][ty]
                    continue
                if a == 1:
                    below = state_stack[-2]
                    key = (below, top, ty)
                    chain = chains.get(key)
                    if chain is None:
                        chain = chains[key] = self._chain(below, top, ty)
                    top, wraps, nxt = chain
                    if wraps:
                        v = value_stack[-1]
                        for w, mode in wraps:
                            if mode == _WRAP_CALL:
                                v = w([v])
                                continue
                            t = _obj_new(Tree)
                            t.data = w
                            t.children = [v] if mode == _WRAP_ONE else v.children if mode == _WRAP_SPLICE else []
                            t._meta = None
                            v = t
                        value_stack[-1] = v
                    state_stack[-1] = top
                    if nxt is None:
                        if is_end and top == end_state:
                            result: Tree[Any] = value_stack[-1]
                            return result
                        raise FastParseError(f"no action for {ty} in state {top}")
                    act = nxt
                    continue
                if a:
                    children = value_stack[-a:]
                    del state_stack[-a:]
                    del value_stack[-a:]
                else:
                    children = []
                if kind == _FILTER:
                    out: list[Any] = []
                    for i, expand in c[1]:
                        if expand:
                            if out:
                                out += children[i].children
                            else:
                                out = children[i].children
                        else:
                            out.append(children[i])
                    t = _obj_new(Tree)
                    t.data = c[0]
                    t.children = out
                    t._meta = None
                    v = t
                elif kind == _TREE:
                    t = _obj_new(Tree)
                    t.data = c
                    t.children = children
                    t._meta = None
                    v = t
                else:
                    v = c(children)
                top = states[state_stack[-1]][b][1]
                push_state(top)
                push_value(v)
                if is_end and top == end_state:
                    result = v
                    return result
                act = states[top][ty]


def _filtered(children: list[Any], include: tuple[tuple[int, bool], ...]) -> list[Any]:
    """Lark's ``ChildFilterLALR_NoPlaceholders``: keep the listed children, splice inlined ones."""
    out: list[Any] = []
    for i, expand in include:
        if expand:
            if out:
                out += children[i].children
            else:  # as Lark does: reuse the left-recursive child's list
                out = children[i].children
        else:
            out.append(children[i])
    return out


# -- first characters of terminal regexes ------------------------------------------------------
#: A set of characters: ("in", chars) or ("notin", chars); ("notin", ∅) admits every character.
_CharSet = tuple[str, frozenset[str]]
_ANY: Final[_CharSet] = ("notin", frozenset())
_NOTHING: Final[_CharSet] = ("in", frozenset())


def _union(a: _CharSet, b: _CharSet) -> _CharSet:
    if a[0] == "in" and b[0] == "in":
        return ("in", a[1] | b[1])
    if a[0] == "notin" and b[0] == "notin":
        return ("notin", a[1] & b[1])
    inc, exc = (a[1], b[1]) if a[0] == "in" else (b[1], a[1])
    return ("notin", exc - inc)


def _admits(cs: _CharSet, ch: str) -> bool:
    return (ch in cs[1]) if cs[0] == "in" else (ch not in cs[1])


def _in_set(items: Any) -> _CharSet:
    """The characters an ``IN`` item list (a ``[...]`` class) may match; categories admit all."""
    chars: set[str] = set()
    negate = False
    for op, av in items:
        if op is sre_c.NEGATE:
            negate = True
        elif op is sre_c.LITERAL:
            chars.add(chr(av))
        elif op is sre_c.RANGE and av[1] - av[0] < 256:
            chars.update(chr(c) for c in range(av[0], av[1] + 1))
        else:  # a category (\s, \d, ...) or a wide range: do not try to be precise
            return _ANY
    return ("notin", frozenset(chars)) if negate else ("in", frozenset(chars))


def _first(seq: Any) -> tuple[_CharSet, bool]:
    """(possible first characters, may match the empty string) of a parsed regex sequence.

    Always a superset: zero-width assertions are skipped, anything unknown admits every character.
    """
    first = _NOTHING
    for op, av in seq:
        nullable = False
        if op is sre_c.LITERAL:
            cs = ("in", frozenset(chr(av)))
        elif op is sre_c.NOT_LITERAL:
            cs = ("notin", frozenset(chr(av)))
        elif op is sre_c.IN:
            cs = _in_set(av)
        elif op is sre_c.SUBPATTERN:
            if av[1]:  # inline flags (e.g. ignore case) change what a literal matches
                return _ANY, True
            cs, nullable = _first(av[3])
        elif op is sre_c.BRANCH:
            cs, nullable = _NOTHING, False
            for alt in av[1]:
                c2, n2 = _first(alt)
                cs, nullable = _union(cs, c2), nullable or n2
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            cs, nullable = _first(av[2])
            nullable = nullable or av[0] == 0
        elif op in (sre_c.AT, sre_c.ASSERT, sre_c.ASSERT_NOT):
            continue  # zero width
        else:  # ANY, GROUPREF, ATOMIC_GROUP, ...: anything
            return _ANY, True
        first = _union(first, cs)
        if not nullable:
            return first, False
    return first, True


def _first_chars(regexp: str, flags: int) -> _CharSet:
    if flags & (re.IGNORECASE | re.VERBOSE):
        return _ANY
    try:
        cs, nullable = _first(sre_parse.parse(regexp, flags))
    except Exception:  # a pattern the private parser does not know: no narrowing
        return _ANY
    return _ANY if nullable else cs


class _Lexers(dict[Any, _Lexer]):
    """Lexer state → :data:`_Lexer`, built on first use from Lark's contextual lexer for that state
    (as Lark itself builds its per-state scanners lazily: most states are never lexed in)."""

    def __init__(self, basics: dict[Any, Any]) -> None:
        super().__init__()
        self.basics = basics
        self.built: dict[int, _Lexer] = {}
        self.regex_cache: dict[tuple[str, ...], Any] = {}
        self.first_cache: dict[tuple[str, int], _CharSet] = {}

    def __missing__(self, state: Any) -> _Lexer:
        basic = self.basics[state]
        lx = self.built.get(id(basic))
        if lx is None:
            scanner = basic.scanner  # builds the regexes and the keyword callbacks
            keywords: dict[str, tuple[Any, dict[str, str | None]]] = {}
            for name, cb in basic.callback.items():
                if type(cb) is not UnlessCallback or name in basic.ignore_types:
                    raise FastParseError(f"lexer callback on {name} is not supported")
                keywords[name] = (cb.scanner.fullmatch, {})
            alts = _Alternatives(scanner, self.regex_cache, self.first_cache)
            nl, ignore = frozenset(basic.newline_types), frozenset(basic.ignore_types)
            lx = ({}, keywords, nl, ignore - nl, ignore, alts)
            self.built[id(basic)] = lx
        self[state] = lx
        return lx


class _Alternatives:
    """One lexer state's terminals (Lark's scanner: its order, regexes and flags) and, per next
    character, the compiled alternation of only those that can start with it."""

    def __init__(self, scanner: Any, cache: dict[tuple[str, ...], Any],
                 first_cache: dict[tuple[str, int], _CharSet]) -> None:
        self.re = scanner.re_
        self.flags = scanner.g_regex_flags
        self.terms = [(t.name, t.pattern.to_regexp()) for t in scanner.terminals]
        full = "|".join(f"(?P<{name}>{rx})" for name, rx in self.terms)
        mres = scanner._mres
        if scanner.use_bytes or len(mres) != 1 or mres[0].pattern != full:
            raise FastParseError("unexpected scanner layout")
        self.full = mres[0].match
        self.firsts = []
        for _, rx in self.terms:
            cs = first_cache.get((rx, self.flags))
            if cs is None:
                cs = first_cache[(rx, self.flags)] = _first_chars(rx, self.flags)
            self.firsts.append(cs)
        self.cache = cache

    def matcher(self, ch: str) -> Any:
        """``match(text, pos)`` for a position whose character is ``ch``."""
        if ch >= "\x80":
            return self.full
        names = tuple(name for (name, _), cs in zip(self.terms, self.firsts, strict=True) if _admits(cs, ch))
        if len(names) == len(self.terms):
            return self.full
        m = self.cache.get(names)
        if m is None:
            pattern = "|".join(f"(?P<{name}>{rx})" for name, rx in self.terms if name in names)
            m = self.cache[names] = self.re.compile(pattern, self.flags).match if names else _no_match
        return m


def _no_match(text: str, pos: int) -> None:
    return None
