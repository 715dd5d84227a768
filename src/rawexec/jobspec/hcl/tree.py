"""Small helpers over python-hcl2's Lark parse tree (positions come from tokens)."""

from __future__ import annotations

from typing import Any

from lark import Token, Tree

from rawexec.jobspec.diagnostics import Pos

__all__ = ["kids", "node_pos", "node_source"]


def kids(node: Tree[Any]) -> list[Tree[Any]]:
    """The sub-trees of a node, without newlines/comments and punctuation tokens."""
    return [c for c in node.children if type(c) is Tree and c.data != "new_line_or_comment"]


def _edge_token(node: Tree[Any] | Token, last: bool) -> Token | None:
    """The first (or last) token under a node: the parser keeps no positions on trees."""
    cur: Any = node
    while not isinstance(cur, Token):
        if not cur.children:
            return None
        cur = cur.children[-1] if last else cur.children[0]
    return cur


def node_pos(node: Tree[Any] | Token, filename: str, line_offset: int = 0) -> Pos:
    tok = _edge_token(node, last=False)
    if tok is None:
        return Pos(filename, line_offset, 0)
    return Pos(filename, (tok.line or 0) + line_offset, tok.column or 0)


def node_source(node: Tree[Any], src: str) -> str:
    """The source text a node was parsed from."""
    first, last = _edge_token(node, last=False), _edge_token(node, last=True)
    if first is None or last is None or first.start_pos is None or last.end_pos is None:
        return ""
    return src[first.start_pos:last.end_pos].strip()
