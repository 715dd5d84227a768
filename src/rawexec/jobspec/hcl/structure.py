"""HCL2 text → a structure of bodies, attributes and blocks (expressions left unevaluated).

Syntax errors from python-hcl2's Lark parser become :class:`~rawexec.jobspec.hcl.values.EvalError`
with file, line and column and a short, readable message. Valid files are parsed by the fast driver
(:mod:`.fastparse`) from the shipped tables (:mod:`.tables`): Lark and python-hcl2 are imported only
when a file has an error (or when the shipped tables do not match them).
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from rawexec.jobspec.diagnostics import Pos
from rawexec.jobspec.hcl import tables
from rawexec.jobspec.hcl.fastparse import FastParseError, FastParser, compile_tables
from rawexec.jobspec.hcl.templates import decode_string_chars
from rawexec.jobspec.hcl.tree import Token, Tree, from_lark, kids, node_pos
from rawexec.jobspec.hcl.values import EvalError

__all__ = ["Attr", "Block", "Body", "build_body", "parse_text"]

_TOKEN_NAMES = {
    "RBRACE": '"}"', "LBRACE": '"{"', "RSQB": '"]"', "LSQB": '"["', "RPAR": '")"', "LPAR": '"("',
    "EQ": '"="', "COMMA": '","', "NL_OR_COMMENT": "a newline", "DBLQUOTE": 'a quote (")', "NAME": "a name",
    "COLON": '":"', "$END": "end of file", "INTERP_START": '"${"', "DOT": '"."', "QMARK": '"?"',
}


#: Grammar terminals that only make sense inside template directives: never worth suggesting.
_NOISE = {"ELSE", "ENDIF", "ENDFOR", "IF", "IN", "FOR", "FOR_EACH", "STRIP_MARKER", "ELLIPSIS", "COLONS",
          "ESCAPED_INTERPOLATION", "ESCAPED_DIRECTIVE", "TEMPLATE_STRING"}


def _tok(name: str) -> str:
    return _TOKEN_NAMES.get(name, name.lower())


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    """python-hcl2's grammar and post-lexer as a Lark parser, without position propagation on trees.

    ``hcl2.parses_to_tree`` builds its parser with ``propagate_positions=True``, which doubles the
    parse time; every token keeps its position anyway, and that is all the evaluator needs.
    """
    import hcl2.parser
    from hcl2.postlexer import PostLexer
    from lark import Lark

    return Lark.open("hcl2.lark", rel_to=hcl2.parser.__file__, parser="lalr", propagate_positions=False,
                     postlex=PostLexer(), cache=True)


@functools.lru_cache(maxsize=1)
def _fast_parser() -> FastParser | None:
    """The same automaton as :func:`_parser`, driven by :class:`FastParser`: from the shipped tables,
    or compiled from Lark if they do not match the installed Lark and python-hcl2 (``None`` if this
    Lark or python-hcl2 version is built in a way it does not know; then Lark parses everything)."""
    try:
        data = tables.load()
        return FastParser(data if data is not None else compile_tables(_parser()))
    except Exception:  # FastParseError, or Lark internals laid out differently: Lark parses alone
        return None


def _parse(text: str) -> Tree:
    """Parse with the fast driver; on any failure let Lark parse, so errors are Lark's own."""
    fast = _fast_parser()
    if fast is not None:
        try:
            return fast.parse(text)
        except FastParseError:
            pass
    return from_lark(_parser().parse(text))


#: Deeper bracket nesting is refused before parsing (evaluation stops far earlier anyway), so that
#: garbage like a megabyte of "[" fails in microseconds instead of after a long parse.
MAX_BRACKET_DEPTH = 500
_BRACKETS = re.compile(r"[\[\]{}()]")
_DELTA = {"[": 1, "{": 1, "(": 1, "]": -1, "}": -1, ")": -1}


def _check_nesting(text: str, filename: str, line_offset: int) -> None:
    opening = text.count("[") + text.count("{") + text.count("(")
    if opening <= MAX_BRACKET_DEPTH:  # the depth can never exceed the number of opening brackets
        return
    if max(itertools.accumulate(map(_DELTA.__getitem__, _BRACKETS.findall(text))), default=0) <= MAX_BRACKET_DEPTH:
        return  # the same running depth, computed in C; the loop below only locates the excess
    depth = 0
    for m in _BRACKETS.finditer(text):
        depth += _DELTA[m.group()]
        if depth > MAX_BRACKET_DEPTH:
            line = text.count("\n", 0, m.start()) + 1
            col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
            raise EvalError(f"nested too deeply: more than {MAX_BRACKET_DEPTH} levels of brackets",
                            Pos(filename, line + line_offset, col), "simplify the expression")


def parse_text(text: str, filename: str, line_offset: int = 0) -> Tree:
    """Parse HCL2 text to python-hcl2's parse tree, or raise EvalError pointing at the problem."""
    _check_nesting(text, filename, line_offset)
    try:
        # A trailing newline, as python-hcl2 adds: the grammar ends statements with one.
        return _parse(text + "\n")
    except RecursionError:
        raise EvalError("Syntax error: the file is nested too deeply", Pos(filename)) from None
    except Exception as exc:
        error = _syntax_error(exc, text, filename, line_offset)
        if error is None:
            raise
        raise error from None


def _syntax_error(exc: Exception, text: str, filename: str, line_offset: int) -> EvalError | None:
    """The EvalError for what Lark or python-hcl2's post-lexer raised; None for anything else."""
    if "lark" in sys.modules:  # only Lark raises its exceptions, and it was imported to do so
        error = _lark_error(exc, text, filename, line_offset)
        if error is not None:
            return error
    if isinstance(exc, (RuntimeError, ValueError, IndexError)):  # python-hcl2 internal checks
        return EvalError(f"Syntax error: {str(exc)[:200]}", Pos(filename))
    return None


def _lark_error(exc: Exception, text: str, filename: str, line_offset: int) -> EvalError | None:
    from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

    if isinstance(exc, UnexpectedInput):
        line = exc.line if isinstance(exc.line, int) and exc.line > 0 else 0
        column = exc.column if isinstance(exc.column, int) and exc.column > 0 else 0
        pos = Pos(filename, line + line_offset, column)
        hint = "check for a missing quote, bracket or brace just before this point"
        if isinstance(exc, UnexpectedCharacters):
            at = exc.pos_in_stream if isinstance(exc.pos_in_stream, int) else -1
            ch = text[at] if 0 <= at < len(text) else "?"
            msg = f"Invalid character: {ch!r} is not valid here"
        elif isinstance(exc, UnexpectedToken):
            tok = exc.token
            got = "end of file" if tok.type == "$END" else repr(str(tok).strip() or str(tok))[:40]
            names = {e for e in (exc.expected or set()) if not e.startswith("__") and e not in _NOISE}
            expected = sorted(_tok(e) for e in names)
            msg = f"Syntax error: unexpected {got}"
            if names <= {"LBRACE", "NL_OR_COMMENT"} and "LBRACE" in names:
                hint = 'a name followed by a label starts a block: write name = value for an argument, ' \
                       'or add { ... } for a block'
            if expected:
                msg += "; expected " + (", ".join(expected[:6]) + (", ..." if len(expected) > 6 else ""))
        elif isinstance(exc, UnexpectedEOF):
            msg = "Syntax error: unexpected end of file"
        else:
            msg = "Syntax error"
        return EvalError(msg, pos, hint)
    if isinstance(exc, LarkError):
        return EvalError(f"Syntax error: {str(exc).splitlines()[0][:200]}", Pos(filename))
    return None


@dataclass(slots=True)
class Attr:
    name: str
    expr: Tree
    pos: Pos


@dataclass(slots=True)
class Block:
    type: str
    labels: list[str]
    body: Body
    pos: Pos


@dataclass(slots=True)
class Body:
    attrs: dict[str, Attr] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    pos: Pos = field(default_factory=Pos)


def _name_of(node: Tree) -> str:
    # identifier / keyword / literal_value all hold one token
    return str(node.children[0])


#: ``Pos(a, b, c)`` without the named tuple's Python-level ``__new__`` (one per attribute and block).
_new_pos = tuple.__new__


def build_body(node: Tree, filename: str, errors: list[EvalError], depth: int = 0) -> Body:
    """Turn a ``body`` tree into a :class:`Body`; redefined attributes are reported in ``errors``.

    The grammar fixes the shapes walked here: ``attribute: name EQ expression`` and
    ``block: name (name | string)* new_line_or_comment? LBRACE body RBRACE`` (names being
    identifier/keyword/literal_value trees holding one token).
    """
    body = Body(pos=node_pos(node, filename))
    if depth > 64:
        errors.append(EvalError("blocks nested too deeply (more than 64 levels)", body.pos))
        return body
    attrs = body.attrs
    for item in node.children:
        if type(item) is not Tree:
            continue
        data = item.data
        if data == "attribute":
            ch = item.children
            tok: Any = ch[0].children[0]
            name = str(tok)
            pos = _new_pos(Pos, (filename, tok.line or 0, tok.column or 0))
            if name in attrs:
                prev = attrs[name].pos
                errors.append(EvalError(f'Attribute redefined: the argument "{name}" was already set at '
                                        f"{prev.line}:{prev.column}", pos,
                                        "each argument may be set only once per block"))
                continue
            attrs[name] = Attr(name, ch[-1], pos)
        elif data == "block":
            ch = item.children  # name, labels, new_line_or_comment?, LBRACE, body, RBRACE
            tok = ch[0].children[0]
            btype = str(tok)
            pos = _new_pos(Pos, (filename, tok.line or 0, tok.column or 0))
            labels: list[str] = []
            for lab in ch[1:-3]:
                if type(lab) is not Tree:
                    continue
                if lab.data == "string":
                    text = ""
                    for sp in lab.children:
                        if type(sp) is not Tree:
                            continue
                        c = sp.children[0]
                        if not isinstance(c, Token):
                            errors.append(EvalError(f'Invalid block label on "{btype}": labels may not '
                                                    "contain ${} or %{} sequences", node_pos(lab, filename),
                                                    "write the label as a plain string"))
                            break
                        raw = str(c)
                        try:
                            text += raw[1:] if c.type.startswith("ESCAPED_") else decode_string_chars(
                                raw, functools.partial(node_pos, lab, filename))
                        except EvalError as exc:
                            errors.append(exc)
                    labels.append(text)
                elif lab.data in ("identifier", "keyword", "literal_value"):
                    labels.append(_name_of(lab))
            blk = Block(btype, labels, build_body(ch[-2], filename, errors, depth + 1), pos)
            body.blocks.append(blk)
    return body


def tree_body(tree: Tree) -> Tree:
    """The ``body`` of a ``start`` tree."""
    return kids(tree)[0]

