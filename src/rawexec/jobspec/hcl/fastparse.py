"""A faster driver for python-hcl2's Lark parser: same grammar, same tables, same tree.

python-hcl2 parses with Lark's LALR parser, whose run time goes into generic per-token work: a
generator chain (contextual lexer → hcl2's post-lexer → parser), a ``feed_token`` call per token,
and one tree-builder callback per reduction, most of them the single-child reductions of the
operator-precedence ladder (``?expression → or_expr → … → expr_term``).

:class:`FastParser` runs the very same automaton in one loop. :func:`compile_tables` takes
everything from the Lark object that python-hcl2's grammar builds — the LALR parse table, the
per-state terminal regexes of Lark's contextual lexer (with their keyword scanners), the shapes of
the tree-builder callbacks, hcl2's post-lexer operator set — as plain data, which is what
:class:`FastParser` is built from, so parsing needs neither Lark nor python-hcl2 to be imported
(see :mod:`.tables`). It replicates hcl2's post-lexer pass (a newline before a binary operator is
merged into the operator). Nothing about HCL is written here: terminals, precedence and tree shapes
all come from ``hcl2.lark``.

What it does differently, with identical results:

* chains of single-child reductions are followed once per (state below, state, lookahead) and
  cached with the action that follows them, so the value is wrapped without walking the ladder;
* trees are built inline (Lark's tree-builder callbacks here are all ``Tree(rule, children)``,
  possibly after filtering the children, or a ``?rule``'s single child);
* the lexer's alternation of terminal regexes is narrowed by the next character: for each lexer
  state and ASCII character, a regex of only those alternatives (in Lark's order) whose first
  character can be that one. Python's ``re`` tries alternatives in order, so dropping ones that
  cannot match there leaves the result unchanged; the first-character sets are computed from the
  terminals' own regexes, conservatively (anything not understood admits every character). When
  only one terminal remains and it is that very character (a bracket, a quote), no regex runs.

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

from rawexec.jobspec.hcl.tree import Token, Tree

__all__ = ["TABLES_FORMAT", "FastParseError", "FastParser", "compile_tables"]

#: The layout of :func:`compile_tables`' data; bump it when the layout changes.
TABLES_FORMAT: Final = 1

# Action kinds in the compiled table: (kind, a, b, c)
_SHIFT: Final = 0  # (SHIFT, next state, None, None)
_TREE: Final = 1  # (TREE, size, rule origin, tree name): Tree(name, children)
_UNIT: Final = 2  # (UNIT, 1, rule origin, None): ``?rule`` with one child: the child itself
_FILTER: Final = 4  # (FILTER, size, rule origin, (name, to_include)): Lark's child filter, then Tree
#: (SPLICE, size, rule origin, tree name): the child filter that splices the first child's children
#: and keeps the others (left-recursive repetitions): ``Tree(name, c[0].children + c[1:])``.
_SPLICE: Final = 5

_Action = tuple[int, Any, Any, Any]
#: Per lexer state: the match method (or the terminal's name, for a one-character literal) per next
#: character, filled on first use; per terminal that may be a keyword (NAME) the keyword scanner
#: and a memo of its answers; the newline terminals, the ignored terminals that are not newlines,
#: the ignored terminals, and the lexer state's :class:`_Alternatives`.
_Lexer = tuple[dict[str, Any], dict[str, tuple[Any, dict[str, str | None]]], frozenset[str], frozenset[str],
               frozenset[str], "_Alternatives"]
#: A single-child reduction chain: the state reached, the wrappers, the action that follows.
_Chain = tuple[Any, tuple[tuple[Any, int], ...], "_Action | None"]
# How a wrapper in a chain builds its value ``v``: Tree(name, [v]), Tree(name, v.children),
# Tree(name, []).
_WRAP_ONE: Final = 0
_WRAP_SPLICE: Final = 1
_WRAP_NONE: Final = 2
_NL: Final = "NL_OR_COMMENT"
#: Bound on each keyword memo (distinct names seen); it is cleared when full.
_MEMO_MAX: Final = 4096
#: Terminal regexes (exactly as Lark writes them) → an equivalent that ``re`` runs faster, used in
#: the narrowed alternations. hcl2's STRING_CHARS tries four look-aheads on every character of a
#: string; only ``$`` and ``%`` can start the sequences they exclude, so other characters are taken
#: in runs and the look-aheads kept for those two (the tests compare both on random text).
_FASTER_REGEX: Final = {
    r'(?:(?!\$\$\{)(?!\$\{)(?!%%\{)(?!%\{)[^"\\]|\\.|(?:\$(?!\$?\{))|(?:%(?!%?\{)))+':
        r'(?:[^"\\$%]++|\\.|\$(?!\$?\{)|%(?!%?\{))++',
}


class FastParseError(Exception):
    """The fast path cannot parse this text; parse it with Lark to get the real outcome."""


def compile_tables(lark: Any) -> dict[str, Any]:
    """The automaton of ``lark`` (python-hcl2's grammar: LALR, contextual lexer, hcl2's post-lexer)
    as plain JSON data for :class:`FastParser`; :class:`FastParseError` if it is built in a way this
    module does not know (then Lark parses everything)."""
    from hcl2.postlexer import OPERATOR_TYPES, PostLexer
    from lark import Tree as LarkTree
    from lark.lexer import UnlessCallback
    from lark.parse_tree_builder import ChildFilterLALR_NoPlaceholders, ExpandSingleChild
    from lark.parsers.lalr_analysis import Shift

    def plain_tree_name(cb: Any) -> str | None:  # exactly ``functools.partial(Tree, name)``
        if isinstance(cb, functools.partial) and cb.func is LarkTree and not cb.keywords and len(cb.args) == 1:
            name = cb.args[0]
            return name if isinstance(name, str) else None
        return None

    frontend: Any = lark.parser
    connector = frontend.lexer
    if type(getattr(connector, "postlexer", None)) is not PostLexer or tuple(connector.postlexer.always_accept):
        raise FastParseError("not python-hcl2's post-lexer")
    contextual = connector.lexer
    parser = frontend.parser.parser
    table = parser.parse_table
    callbacks = parser.callbacks
    if any(isinstance(k, str) for k in callbacks):
        raise FastParseError("terminal callbacks are not supported")
    if sorted(table.states) != list(range(len(table.states))):
        raise FastParseError("parser states are not numbered 0..n-1")
    compiled: dict[Any, int] = {}  # rule → index in ``actions``
    actions: list[list[Any]] = []
    states: list[dict[str, int]] = []
    for state in range(len(table.states)):
        row: dict[str, int] = {}
        for name, (action, arg) in table.states[state].items():
            if action is Shift:
                row[name] = int(arg)
                continue
            index = compiled.get(arg)
            if index is None:
                cb = callbacks[arg]
                size = len(arg.expansion)
                origin = arg.origin.name
                tree_name = plain_tree_name(cb)
                filter_tree = plain_tree_name(cb.node_builder) if type(cb) is ChildFilterLALR_NoPlaceholders else None
                if tree_name is not None:
                    act = [_TREE, size, origin, tree_name]
                elif filter_tree is not None:
                    include = [(int(i), bool(expand)) for i, expand in cb.to_include]
                    if size >= 2 and include == [(i, i == 0) for i in range(size)]:
                        act = [_SPLICE, size, origin, filter_tree]
                    else:
                        act = [_FILTER, size, origin, [filter_tree, [list(x) for x in include]]]
                elif type(cb) is ExpandSingleChild and size == 1:
                    act = [_UNIT, 1, origin, None]
                else:
                    raise FastParseError(f"tree-builder callback {cb!r} for {origin} is not supported")
                index = compiled[arg] = len(actions)
                actions.append(act)
            row[name] = -1 - index
        states.append(row)
    lexers: list[dict[str, Any]] = []
    lexer_index: dict[int, int] = {}
    lexer_of: list[int] = []
    for state in range(len(table.states)):
        basic = contextual.lexers[state]
        index = lexer_index.get(id(basic))
        if index is None:
            index = lexer_index[id(basic)] = len(lexers)
            lexers.append(_compile_lexer(basic, UnlessCallback))
        lexer_of.append(index)
    symbols = sorted({name for row in states for name in row})
    number = {name: i for i, name in enumerate(symbols)}
    rows = [[[number[name] for name in row], list(row.values())] for row in states]
    return {"format": TABLES_FORMAT, "start": table.start_states["start"], "end": table.end_states["start"],
            "symbols": symbols, "actions": actions, "states": rows, "lexer_of": lexer_of, "lexers": lexers,
            "operators": sorted(OPERATOR_TYPES)}


def _compile_lexer(basic: Any, unless: Any) -> dict[str, Any]:
    """One of Lark's per-state lexers as data: its terminals (Lark's order) and flags, keyword scanners."""
    scanner = basic.scanner
    terms = [[t.name, t.pattern.to_regexp()] for t in scanner.terminals]
    full = "|".join(f"(?P<{name}>{rx})" for name, rx in terms)
    mres = scanner._mres
    if scanner.re_ is not re or scanner.use_bytes or len(mres) != 1 or mres[0].pattern != full:
        raise FastParseError("unexpected scanner layout")
    keywords: dict[str, list[Any]] = {}
    for name, cb in basic.callback.items():
        if type(cb) is not unless or name in basic.ignore_types:
            raise FastParseError(f"lexer callback on {name} is not supported")
        kw: Any = cb.scanner
        pattern = "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in kw.terminals)
        if kw.re_ is not re or kw.use_bytes or len(kw._mres) != 1 or kw._mres[0].pattern != pattern:
            raise FastParseError("unexpected keyword scanner layout")
        keywords[name] = [pattern, kw.g_regex_flags]
    return {"terms": terms, "flags": scanner.g_regex_flags, "keywords": keywords,
            "newline": sorted(basic.newline_types), "ignore": sorted(basic.ignore_types)}


def _keyword_scanner(pattern: str, flags: int) -> Any:
    """Lark's ``Scanner.fullmatch`` for a keyword scanner: the keyword terminal a name spells, or None."""
    fullmatch = re.compile(pattern, flags).fullmatch

    def kind(value: str) -> str | None:
        m = fullmatch(value)
        return None if m is None else m.lastgroup
    return kind


def _action(act: list[Any]) -> _Action:
    kind, size, origin, c = act
    if kind == _FILTER:
        c = (c[0], tuple((int(i), bool(e)) for i, e in c[1]))
    return (kind, size, origin, c)


class FastParser:
    """Parses text with the automaton :func:`compile_tables` took from Lark (python-hcl2's grammar,
    LALR, contextual lexer, hcl2's post-lexer) and returns the tree Lark would return (as
    :class:`~rawexec.jobspec.hcl.tree.Tree`), or raises :class:`FastParseError`."""

    def __init__(self, tables: dict[str, Any]) -> None:
        if tables.get("format") != TABLES_FORMAT:
            raise FastParseError("tables of another format")
        self.start_state: Any = tables["start"]
        self.end_state: Any = tables["end"]
        # Per state, the symbols (terminals and rules) it has an action for, and the action codes: a
        # state to shift to (>= 0) or -1 - the index of a reduction in ``actions``.
        codes: list[_Action] = [(_SHIFT, state, None, None) for state in range(len(tables["states"]))]
        codes += reversed([_action(act) for act in tables["actions"]])
        symbol = tables["symbols"].__getitem__
        code = codes.__getitem__
        self.states: list[dict[str, _Action]] = [dict(zip(map(symbol, names), map(code, acts), strict=True))
                                                 for names, acts in tables["states"]]
        self.operators = frozenset(tables["operators"])
        self.lexers = _Lexers(tables["lexer_of"], tables["lexers"])
        #: per state: per lookahead: per state below: the chain (nested: no key tuple to build per reduction)
        self.chains: list[dict[str, dict[Any, _Chain]]] = [{} for _ in self.states]

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
            elif kind != _UNIT:  # a ``?rule``'s single child is the value itself
                raise FastParseError(f"unexpected one-child action {act!r}")
            state = states[below][origin][1]
            if state == self.end_state:
                return state, tuple(wraps), None
        return state, tuple(wraps), states[state].get(lookahead)

    def parse(self, text: str) -> Tree:
        """The parse tree of ``text``; :class:`FastParseError` if it is not (simply) valid."""
        try:
            return self._parse(text)
        except FastParseError:
            raise
        except Exception as exc:  # a table entry missing: let Lark decide
            raise FastParseError(repr(exc)) from None

    def _parse(self, text: str) -> Tree:  # one loop on purpose: this is the hot path
        states = self.states
        lexers = self.lexers
        chains = self.chains
        ops = self.operators
        new_token = Token  # (calling the classes is cheaper than str.__new__/object.__new__)
        new_tree = Tree
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
        tok: Any
        ty: str
        while True:
            is_end = False
            if pos < n:
                by_char, keywords, nl_types, skip, ignore, alts = lexers[state_stack[-1]]
                ch = text[pos]
                match: Any = by_char.get(ch)
                if match is None:
                    match = alts.literal(ch) or alts.matcher(ch)
                    if ch < "\x80":
                        by_char[ch] = match
                if match.__class__ is str:  # the one terminal this character can start is this character
                    ty = match
                    value = ch
                else:
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
                tok = new_token(value)
                tok.type = ty
                tok.start_pos = start
                tok.line = start_line
                tok.column = column
                tok.end_line = line
                tok.end_column = pos - line_start + 1
                tok.end_pos = pos
                # hcl2's post-lexer: a newline is held until the next token shows whether it is a
                # line continuation (merged into a binary operator) or a statement end.
                if ty == _NL:
                    if pending is None:
                        pending = tok
                        continue
                    tok, pending = pending, tok
                elif pending is not None:
                    if ty in ops:
                        merged = pending + tok  # hcl2 merges the newline into the operator's token
                        op = new_token(merged)
                        op.type = ty
                        op.start_pos = tok.start_pos
                        op.line = tok.line
                        op.column = tok.column
                        op.end_line = tok.end_line
                        op.end_column = tok.end_column
                        op.end_pos = tok.end_pos
                        tok = op
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
                tok = None  # $END is never shifted
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
                    by_below = chains[top].get(ty)
                    if by_below is None:
                        by_below = chains[top][ty] = {}
                    chain = by_below.get(below)
                    if chain is None:
                        chain = by_below[below] = self._chain(below, top, ty)
                    top, wraps, nxt = chain
                    if wraps:
                        v = value_stack[-1]
                        for w, mode in wraps:
                            t = new_tree()
                            t.data = w
                            t.children = [v] if mode == _WRAP_ONE else v.children if mode == _WRAP_SPLICE else []
                            v = t
                        value_stack[-1] = v
                    state_stack[-1] = top
                    if nxt is None:
                        if is_end and top == end_state:
                            result: Tree = value_stack[-1]
                            return result
                        raise FastParseError(f"no action for {ty} in state {top}")
                    act = nxt
                    continue
                if kind == _SPLICE:  # as Lark's child filter does: extend the first child's list
                    spliced = value_stack[-a].children
                    spliced += value_stack[1 - a:]
                    del state_stack[-a:]
                    del value_stack[-a:]
                    t = new_tree()
                    t.data = c
                    t.children = spliced
                    top = states[state_stack[-1]][b][1]
                    push_state(top)
                    push_value(t)
                    if is_end and top == end_state:
                        result = t
                        return result
                    act = states[top][ty]
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
                    t = new_tree()
                    t.data = c[0]
                    t.children = out
                else:  # _TREE (a one-child rule never gets here: its chain handled it)
                    t = new_tree()
                    t.data = c
                    t.children = children
                top = states[state_stack[-1]][b][1]
                push_state(top)
                push_value(t)
                if is_end and top == end_state:
                    result = t
                    return result
                act = states[top][ty]


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
    """Parser state → :data:`_Lexer`, built on first use from the tables' lexer for that state (as
    Lark itself builds its per-state scanners lazily: most states are never lexed in)."""

    def __init__(self, lexer_of: list[int], specs: list[dict[str, Any]]) -> None:
        super().__init__()
        self.lexer_of = lexer_of
        self.specs = specs
        self.built: dict[int, _Lexer] = {}
        self.regex_cache: dict[tuple[str, ...], Any] = {}
        self.first_cache: dict[tuple[str, int], _CharSet] = {}

    def __missing__(self, state: Any) -> _Lexer:
        index = self.lexer_of[state]
        lx = self.built.get(index)
        if lx is None:
            spec = self.specs[index]
            keywords: dict[str, tuple[Any, dict[str, str | None]]] = {
                name: (_keyword_scanner(pattern, flags), {}) for name, (pattern, flags) in spec["keywords"].items()}
            nl, ignore = frozenset(spec["newline"]), frozenset(spec["ignore"])
            alts = _Alternatives(spec["terms"], spec["flags"], self.regex_cache, self.first_cache,
                                 special=nl | ignore | frozenset(keywords))
            lx = self.built[index] = ({}, keywords, nl, ignore - nl, ignore, alts)
        self[state] = lx
        return lx


class _Alternatives:
    """One lexer state's terminals (Lark's scanner: its order, regexes and flags) and, per next
    character, the compiled alternation of only those that can start with it."""

    def __init__(self, terms: list[list[str]], flags: int, cache: dict[tuple[str, ...], Any],
                 first_cache: dict[tuple[str, int], _CharSet], special: frozenset[str] = frozenset()) -> None:
        self.flags = flags
        self.special = special  # newline, ignored and keyword terminals: never taken as plain literals
        self.terms = [(name, rx) for name, rx in terms]
        self.firsts = []
        for _, rx in self.terms:
            cs = first_cache.get((rx, flags))
            if cs is None:
                cs = first_cache[(rx, flags)] = _first_chars(rx, flags)
            self.firsts.append(cs)
        self.cache = cache

    @functools.cached_property
    def full(self) -> Any:
        """``match(text, pos)`` of Lark's own alternation of every terminal (compiled on first use)."""
        return re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in self.terms), self.flags).match

    def _compile(self, names: tuple[str, ...]) -> Any:
        """The alternation of ``names`` (in Lark's order), with the faster equivalents of regexes."""
        m = self.cache.get(names)
        if m is None:
            pattern = "|".join(f"(?P<{name}>{_FASTER_REGEX.get(rx, rx)})" for name, rx in self.terms if name in names)
            m = self.cache[names] = re.compile(pattern, self.flags).match if names else _no_match
        return m

    def literal(self, ch: str) -> str | None:
        """The terminal's name if ``ch`` can only start one terminal here and that terminal is the
        literal character ``ch`` itself (a bracket, a quote...): no regex needs to run."""
        if ch >= "\x80" or self.flags & re.IGNORECASE:
            return None
        names = [name for (name, rx), cs in zip(self.terms, self.firsts, strict=True) if _admits(cs, ch)]
        if len(names) == 1 and names[0] not in self.special and dict(self.terms)[names[0]] == re.escape(ch):
            return names[0]
        return None

    def matcher(self, ch: str) -> Any:
        """``match(text, pos)`` for a position whose character is ``ch``."""
        if ch >= "\x80":
            return self._compile(tuple(name for name, _ in self.terms))
        names = tuple(name for (name, _), cs in zip(self.terms, self.firsts, strict=True) if _admits(cs, ch))
        return self._compile(names)


def _no_match(text: str, pos: int) -> None:
    return None
