"""The parse tree of python-hcl2's grammar (:class:`Tree`, :class:`Token`) and small helpers over it
(positions come from tokens).

The classes have the fields of Lark's ``Tree`` and ``Token``, so the fast parser builds exactly the
tree Lark would, without importing Lark; a tree Lark itself built is converted by :func:`from_lark`.
"""

from __future__ import annotations

from typing import Any

from rawexec.jobspec.diagnostics import Pos

__all__ = ["Token", "Tree", "from_lark", "kids", "node_pos", "node_source"]


class Token(str):
    """A terminal: its text, its grammar type and where it is (lines and columns from 1, offsets from 0)."""

    __slots__ = ("column", "end_column", "end_line", "end_pos", "line", "start_pos", "type")
    type: str
    start_pos: int
    line: int
    column: int
    end_line: int
    end_column: int
    end_pos: int

    @classmethod
    def make(cls, type_: str, value: str, start_pos: int = 0, line: int = 1, column: int = 1,
             end_line: int = 1, end_column: int = 1, end_pos: int = 0) -> Token:
        tok = str.__new__(cls, value)
        tok.type, tok.start_pos, tok.line, tok.column = type_, start_pos, line, column
        tok.end_line, tok.end_column, tok.end_pos = end_line, end_column, end_pos
        return tok

    @property
    def value(self) -> str:
        """The text as a plain ``str`` (Lark's field; not stored: it is the token itself)."""
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"Token({self.type!r}, {self.value!r})"


class Tree:
    """A rule's node: the rule name (``data``) and the children (trees and tokens)."""

    __slots__ = ("children", "data")
    data: str
    children: list[Any]

    # No __init__: ``Tree()`` then two attribute stores is the cheapest way to build one (the parser
    # makes tens of thousands); :meth:`make` for everyone else.
    @classmethod
    def make(cls, data: str, children: list[Any]) -> Tree:
        tree = cls()
        tree.data = data
        tree.children = children
        return tree

    def __eq__(self, other: object) -> bool:
        """Same rules, same tokens (text and type): as Lark's ``Tree.__eq__``, but iterative."""
        if not isinstance(other, Tree):
            return NotImplemented
        stack = [(self, other)]
        while stack:
            a, b = stack.pop()
            if a.data != b.data or len(a.children) != len(b.children):
                return False
            for x, y in zip(a.children, b.children, strict=True):
                if isinstance(x, Tree) and isinstance(y, Tree):
                    stack.append((x, y))
                elif isinstance(x, Tree) or isinstance(y, Tree) or x != y or getattr(x, "type", None) != getattr(
                        y, "type", None):
                    return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Tree({self.data!r}, {self.children!r})"

    def tokens(self) -> list[Token]:
        """Every token under this node, in order."""
        out: list[Token] = []
        stack: list[Any] = [self]
        while stack:
            node = stack.pop()
            if type(node) is Tree:
                stack.extend(reversed(node.children))
            else:
                out.append(node)
        return out


def from_lark(tree: Any) -> Tree:
    """The same tree built by Lark (``lark.Tree`` and ``lark.Token``), as :class:`Tree` and :class:`Token`."""
    from lark import Token as LarkToken

    def convert(node: Any) -> Any:
        if isinstance(node, LarkToken):
            tok: Any = node
            return Token.make(tok.type, tok.value, tok.start_pos, tok.line, tok.column, tok.end_line,
                              tok.end_column, tok.end_pos)
        return Tree.make(str(node.data), [])

    root = convert(tree)
    stack = [(tree, root)]  # iterative: expression trees can be deeper than the recursion limit
    while stack:
        src, dst = stack.pop()
        for child in src.children:
            new = convert(child)
            dst.children.append(new)
            if type(new) is Tree:
                stack.append((child, new))
    out: Tree = root
    return out


def kids(node: Tree) -> list[Tree]:
    """The sub-trees of a node, without newlines/comments and punctuation tokens."""
    return [c for c in node.children if type(c) is Tree and c.data != "new_line_or_comment"]


def _edge_token(node: Tree | Token, last: bool) -> Token | None:
    """The first (or last) token under a node: the parser keeps no positions on trees."""
    cur: Any = node
    while not isinstance(cur, Token):
        if not cur.children:
            return None
        cur = cur.children[-1] if last else cur.children[0]
    return cur


_new_pos = tuple.__new__


def node_pos(node: Tree | Token, filename: str, line_offset: int = 0) -> Pos:
    tok = _edge_token(node, last=False)
    if tok is None:
        return Pos(filename, line_offset, 0)
    return _new_pos(Pos, (filename, (tok.line or 0) + line_offset, tok.column or 0))  # Pos(...), faster


def node_source(node: Tree, src: str) -> str:
    """The source text a node was parsed from."""
    first, last = _edge_token(node, last=False), _edge_token(node, last=True)
    if first is None or last is None or first.start_pos is None or last.end_pos is None:
        return ""
    return src[first.start_pos:last.end_pos].strip()
