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
* trees are built inline for plain ``Tree(rule, children)`` callbacks.

It only handles the success path. On anything unexpected (a syntax error, a table entry it does not
know), it raises :class:`FastParseError` and the caller re-parses with Lark itself, which raises
the usual exception with its message and position — errors are Lark's, byte for byte. The tests
compare its trees (every token's type, value and position) with Lark's on the corpus and on
generated input.
"""

from __future__ import annotations

import functools
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
#: Per lexer state: the regexes' match methods, and per terminal that may be a keyword (NAME):
#: the keyword scanner's fullmatch and a memo of its answers; the newline and ignored terminals.
_Lexer = tuple[tuple[Any, ...], dict[str, tuple[Any, dict[str, str | None]]], frozenset[str], frozenset[str]]
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
        self.lexers: dict[Any, _Lexer] = {}
        built: dict[int, _Lexer] = {}
        for state, basic in contextual.lexers.items():
            lx = built.get(id(basic))
            if lx is None:
                scanner = basic.scanner  # builds the regexes and the keyword callbacks
                keywords: dict[str, tuple[Any, dict[str, str | None]]] = {}
                for name, cb in basic.callback.items():
                    if type(cb) is not UnlessCallback or name in basic.ignore_types:
                        raise FastParseError(f"lexer callback on {name} is not supported")
                    keywords[name] = (cb.scanner.fullmatch, {})
                lx = (tuple(m.match for m in scanner._mres), keywords, frozenset(basic.newline_types),
                      frozenset(basic.ignore_types))
                built[id(basic)] = lx
            self.lexers[state] = lx
        self.chains: dict[tuple[Any, Any, str], tuple[Any, tuple[tuple[int, Any], ...]]] = {}

    def _chain(self, below: Any, top: Any, lookahead: str) -> tuple[Any, tuple[tuple[int, Any], ...]]:
        """Follow single-child reductions from ``top`` (``below`` under it) on ``lookahead``: the
        state reached and the wrappers applied to the value on top of the stack, in order."""
        states = self.states
        wraps: list[tuple[int, Any]] = []
        state = top
        while True:
            act = states[state].get(lookahead)
            if act is None or act[0] == _SHIFT or act[1] != 1:
                break
            kind, _, origin, c = act
            if kind == _FILTER:
                wraps.append((_CALL, self._filter_function(c)))
            elif kind != _UNIT:
                wraps.append((kind, c))
            state = states[below][origin][1]
            if state == self.end_state:
                break
        return state, tuple(wraps)

    @staticmethod
    def _filter_function(spec: tuple[str, tuple[tuple[int, bool], ...]]) -> Any:
        name, include = spec

        def build(children: list[Any]) -> Tree[Any]:
            return Tree(name, _filtered(children, include))
        return build

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
                matchers, keywords, nl_types, ignore = lexers[state_stack[-1]]
                for match in matchers:
                    m = match(text, pos)
                    if m:
                        break
                else:
                    raise FastParseError("no terminal matches")
                value = m.group(0)
                ty = m.lastgroup
                start = pos
                start_line = line
                column = start - line_start + 1
                if ty in nl_types:
                    count = value.count("\n")
                    if count:
                        line += count
                        line_start = start + value.rindex("\n") + 1
                pos = start + len(value)
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
            while True:
                top = state_stack[-1]
                kind, a, b, c = states[top][ty]
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
                    continue
                if a == 1:
                    below = state_stack[-2]
                    key = (below, top, ty)
                    chain = chains.get(key)
                    if chain is None:
                        chain = chains[key] = self._chain(below, top, ty)
                    new_top, wraps = chain
                    if wraps:
                        v = value_stack[-1]
                        for wkind, w in wraps:
                            if wkind == _TREE:
                                t = _obj_new(Tree)
                                t.data = w
                                t.children = [v]
                                t._meta = None
                                v = t
                            else:
                                v = w([v])
                        value_stack[-1] = v
                    state_stack[-1] = new_top
                    if is_end and new_top == end_state:
                        result: Tree[Any] = value_stack[-1]
                        return result
                    continue
                if a:
                    children = value_stack[-a:]
                    del state_stack[-a:]
                    del value_stack[-a:]
                else:
                    children = []
                if kind == _TREE:
                    t = _obj_new(Tree)
                    t.data = c
                    t.children = children
                    t._meta = None
                    v = t
                elif kind == _FILTER:
                    t = _obj_new(Tree)
                    t.data = c[0]
                    t.children = _filtered(children, c[1])
                    t._meta = None
                    v = t
                else:
                    v = c(children)
                new_state = states[state_stack[-1]][b][1]
                push_state(new_state)
                push_value(v)
                if is_end and new_state == end_state:
                    result = v
                    return result


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
