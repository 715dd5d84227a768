"""Evaluate HCL2 expressions straight from python-hcl2's Lark parse tree.

python-hcl2 8's grammar gives a concrete syntax tree (see :mod:`.structure`); this module
gives it meaning: literals, operators, conditionals, ``for`` expressions, splats, indexing and
the functions in :mod:`.functions`; templates and heredocs are in :mod:`.templates`.

Names: ``var.<name>`` and ``local.<name>`` are resolved here. Any other root name (``NOMAD_*``,
``attr``, ``meta``, ``node``, ``env``, or an environment variable) is a runtime reference that
Nomad resolves on the client, so it evaluates to :class:`Runtime` and lands in the model as the
``${...}`` text the user wrote.
"""

from __future__ import annotations

import math
from typing import Any

from rawexec.jobspec.diagnostics import Pos, did_you_mean
from rawexec.jobspec.hcl.functions import FuncContext, FuncError, normalize_number, to_number, to_string
from rawexec.jobspec.hcl.templates import MAX_LEN, TemplateMixin, decode_string_chars, parse_heredoc
from rawexec.jobspec.hcl.tree import Token, Tree, kids, node_pos, node_source
from rawexec.jobspec.hcl.values import Context, ErrorReported, EvalError, NeedsRuntime, Runtime, type_name

__all__ = ["Context", "Evaluator", "decode_string_chars", "kids", "node_pos", "parse_heredoc", "render_runtime"]

#: Nesting depth beyond which an expression is rejected (keeps recursion bounded).
MAX_DEPTH = 150
#: Most for-expression/%{for} iterations one evaluator may run (nested loops multiply).
MAX_ITERATIONS = 200_000

_VAR, _LOCAL = object(), object()
#: Where the error hint for an unknown function points.
FUNCTIONS_DOC = "docs/functions.md"
#: Per evaluator class: rule name → its ``e_<rule>`` function (``eval`` dispatches through it).
_METHODS: dict[type, dict[str, Any]] = {}


class Evaluator(TemplateMixin):
    """Evaluates expression trees of one source text (the job file, or a heredoc body)."""

    def __init__(self, src: str, ctx: Context, line_offset: int = 0) -> None:
        self.src = src
        self.ctx = ctx
        self.line_offset = line_offset
        self.scopes: list[dict[str, Any]] = []
        self.depth = 0
        self.iterations = 0
        self.fctx = FuncContext(ctx.base_dir)
        self._methods = _METHODS.setdefault(type(self), {})

    # -- entry points -------------------------------------------------------------------------
    def evaluate(self, node: Tree) -> Any:
        """Evaluate a whole attribute expression; runtime references come back as ``${...}`` text."""
        literal = _plain_literal(node)
        if literal is not None:
            return literal
        try:
            value = self.eval(node)
        except NeedsRuntime:
            value = self._runtime_whole(node)
        except RecursionError:
            raise EvalError("expression nested too deeply", self.pos(node)) from None
        return render_runtime(value)

    def pos(self, node: Tree | Token) -> Pos:
        return node_pos(node, self.ctx.filename, self.line_offset)

    def source(self, node: Tree) -> str:
        return node_source(node, self.src)

    # -- dispatch -----------------------------------------------------------------------------
    def eval(self, node: Tree) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise EvalError(f"expression nested too deeply (more than {MAX_DEPTH} levels)",
                                self.pos(node), "simplify the expression")
            fn = self._methods.get(node.data)
            if fn is None:
                fn = self._method(node)
            return fn(self, node)
        finally:
            self.depth -= 1

    def _method(self, node: Tree) -> Any:
        """The ``e_<rule>`` function for a tree (looked up once per class and rule name)."""
        fn = getattr(type(self), "e_" + str(node.data), None)
        if fn is None:
            raise EvalError(f"unsupported expression ({node.data})", self.pos(node))
        self._methods[str(node.data)] = fn
        return fn

    def e_expr_term(self, node: Tree) -> Any:
        ch = node.children
        if len(ch) == 1 and type(ch[0]) is Tree:  # the common case: no parentheses, no newlines
            return self.eval(ch[0])
        sub = kids(node)
        if len(sub) != 1:
            raise EvalError("invalid expression", self.pos(node))
        return self.eval(sub[0])

    def e_int_lit(self, node: Tree) -> Any:
        return int(str(node.children[0]))

    def e_float_lit(self, node: Tree) -> Any:
        value = float(str(node.children[0]))
        if not math.isfinite(value):
            raise EvalError(f"number {node.children[0]} is out of range", self.pos(node))
        return value

    def e_literal_value(self, node: Tree) -> Any:
        return {"true": True, "false": False, "null": None}[str(node.children[0])]

    def e_identifier(self, node: Tree) -> Any:
        name = str(node.children[0])
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        if name == "var":
            if not self.ctx.allow_vars:
                raise EvalError("Variables not allowed: variables may not be used here", self.pos(node))
            return _VAR
        if name == "local":
            if not self.ctx.allow_vars:
                raise EvalError("Variables not allowed: locals may not be used here", self.pos(node))
            return _LOCAL
        return Runtime(name)

    def e_keyword(self, node: Tree) -> Any:
        return Runtime(str(node.children[0]))

    def e_get_attr_expr_term(self, node: Tree) -> Any:
        inner, ga = kids(node)
        base = self.eval(inner)
        name_node = kids(ga)[0]
        name = str(name_node.children[0])
        return self._get_attr(base, name, node, self.pos(name_node))

    def _get_attr(self, base: Any, name: str, node: Tree, pos: Pos) -> Any:
        if base is _VAR:
            if name in self.ctx.variables:
                return self.ctx.variables[name]
            if name in self.ctx.declared:  # declared, but its value failed: that error is reported
                raise ErrorReported(f'variable "{name}" has no valid value', pos)
            hint = did_you_mean(name, self.ctx.declared) or f'declare it: variable "{name}" {{ type = string }}'
            raise EvalError(f'Reference to undeclared input variable: an input variable with the name '
                            f'"{name}" has not been declared', pos, hint)
        if base is _LOCAL:
            if self.ctx.local_lookup is None:
                raise EvalError("locals may not be used here", pos)
            return self.ctx.local_lookup(name, pos)
        if isinstance(base, Runtime):
            return Runtime(self.source(node) or f"{base.text}.{name}")
        if isinstance(base, dict):
            if name in base:
                return base[name]
            raise EvalError(f'Unsupported attribute: this object does not have an attribute named "{name}"',
                            pos, did_you_mean(name, base.keys()))
        if isinstance(base, list) and name.isdigit():
            return self._index(base, int(name), pos)
        raise EvalError(f"Unsupported attribute: cannot read attribute \"{name}\" of a {type_name(base)}", pos)

    def e_index_expr_term(self, node: Tree) -> Any:
        inner, idx = kids(node)
        base = self.eval(inner)
        if idx.data == "short_index":
            key: Any = int(str([t for t in idx.children if isinstance(t, Token)][-1]))
        else:
            key = self.eval(kids(idx)[0])
        if base is _VAR or base is _LOCAL:
            if not isinstance(key, str):
                raise EvalError("variable names are strings", self.pos(idx))
            return self._get_attr(base, key, node, self.pos(idx))
        if isinstance(base, Runtime) or isinstance(key, Runtime):
            if isinstance(key, Runtime):
                raise NeedsRuntime
            return Runtime(self.source(node))
        return self._index(base, key, self.pos(idx))

    def _index(self, base: Any, key: Any, pos: Pos) -> Any:
        if isinstance(base, list):
            try:
                i = int(to_number(key)) if not isinstance(key, bool) else None
            except FuncError:
                i = None
            if i is None or (isinstance(key, float) and not key.is_integer()):
                raise EvalError(f"Invalid index: a number is required to index a list, got {type_name(key)}", pos)
            if not 0 <= i < len(base):
                raise EvalError(f"Invalid index: the given index {i} is out of range for a list of "
                                f"{len(base)} elements", pos)
            return base[i]
        if isinstance(base, dict):
            k = to_string(key) if isinstance(key, (str, int, float, bool)) else None
            if k is None or k not in base:
                raise EvalError(f'Invalid index: the given key "{key}" does not exist', pos,
                                did_you_mean(str(key), base.keys()))
            return base[k]
        raise EvalError(f"Invalid index: a {type_name(base)} cannot be indexed", pos)

    def _splat(self, node: Tree, full: bool) -> Any:
        inner, sp = kids(node)
        base = self.eval(inner)
        if isinstance(base, Runtime):
            return Runtime(self.source(node))
        items = base if isinstance(base, list) else ([] if base is None else [base])
        out = []
        for item in items:
            v = item
            for op in kids(sp):
                if op.data == "get_attr":
                    name_node = kids(op)[0]
                    v = self._get_attr(v, str(name_node.children[0]), node, self.pos(name_node))
                elif op.data == "short_index":
                    v = self._index(v, int(str([t for t in op.children if isinstance(t, Token)][-1])),
                                    self.pos(op))
                else:
                    v = self._index(v, self.eval(kids(op)[0]), self.pos(op))
            out.append(v)
        return out

    def e_attr_splat_expr_term(self, node: Tree) -> Any:
        return self._splat(node, False)

    def e_full_splat_expr_term(self, node: Tree) -> Any:
        return self._splat(node, True)

    def e_tuple(self, node: Tree) -> Any:
        return [self.eval(k) for k in kids(node)]

    def e_object(self, node: Tree) -> Any:
        out: dict[str, Any] = {}
        runtime_keys = False
        for elem in kids(node):
            key_node, val_node = kids(elem)
            key = self._object_key(key_node)
            if isinstance(key, Runtime):
                runtime_keys = True
                continue
            out[key] = self.eval(val_node)
        if runtime_keys:
            raise NeedsRuntime
        return out

    def _object_key(self, key_node: Tree) -> Any:
        sub = kids(key_node)[0]
        if sub.data == "keyword":
            return str(sub.children[0])
        if sub.data == "expr_term":
            inner = kids(sub)
            has_paren = any(isinstance(t, Token) and t.type == "LPAR" for t in sub.children)
            if len(inner) == 1 and inner[0].data == "identifier" and not has_paren:
                return str(inner[0].children[0])
            if len(inner) == 1 and inner[0].data == "literal_value" and not has_paren:
                return str(inner[0].children[0])
        key = self.eval(sub)
        if isinstance(key, Runtime):
            return key
        if isinstance(key, (str, int, float, bool)):
            return to_string(key)
        raise EvalError(f"Incorrect key type: object keys must be strings, got {type_name(key)}",
                        self.pos(key_node))

    def e_function_call(self, node: Tree) -> Any:
        parts = kids(node)
        idents = [p for p in parts if p.data == "identifier"]
        name = "::".join(str(i.children[0]) for i in idents)
        # the function table (and the modules behind it) loads with the first call: a job without
        # functions, and an agent that never parses HCL, do without its memory
        from rawexec.jobspec.hcl.library import ALL_NAMES, EXPRESSION_FUNCTIONS, FUNCTIONS, NOT_SUPPORTED

        fn = FUNCTIONS.get(name)
        arg_nodes = [p for p in parts if p.data == "arguments"]
        if fn is None:
            if name in EXPRESSION_FUNCTIONS:
                return self._expression_function(name, node, kids(arg_nodes[0]) if arg_nodes else [])
            if name in NOT_SUPPORTED:
                raise EvalError(f'Call to unsupported function: "{name}" is not supported by this job file '
                                f"parser: {NOT_SUPPORTED[name]}", self.pos(node))
            raise EvalError(f'Call to unknown function: there is no function named "{name}"', self.pos(node),
                            did_you_mean(name, ALL_NAMES)
                            or f"see the list of supported functions in {FUNCTIONS_DOC}")
        args: list[Any] = []
        expand = False
        if arg_nodes:
            an = arg_nodes[0]
            expand = any(isinstance(t, Token) and t.type == "ELLIPSIS" for t in an.children)
            args = [self.eval(a) for a in kids(an)]
        if expand:
            last = args[-1] if args else None
            if not isinstance(last, list):
                raise EvalError("Invalid expanding argument value: the expanding argument (...) must be a list",
                                self.pos(node))
            args = args[:-1] + last
        for a in args:
            if isinstance(a, Runtime):
                raise NeedsRuntime
        # The functions never change their arguments, so whether a runtime value is nested in them
        # is only worked out when a call fails.
        try:
            result = fn(args, self.fctx)
        except FuncError as exc:
            if _has_runtime(args):
                raise NeedsRuntime from None
            raise EvalError(f"Error in function call: {exc}", self.pos(node)) from None
        except (TypeError, ValueError, OverflowError) as exc:
            if _has_runtime(args):
                raise NeedsRuntime from None
            raise EvalError(f"Error in function call: {name}(): {exc}", self.pos(node)) from None
        if isinstance(result, (str, list)) and len(result) > MAX_LEN:
            raise EvalError(f"Error in function call: {name}() result is too large", self.pos(node))
        return normalize_number(result) if type(result) is float else result

    def _expression_function(self, name: str, node: Tree, arg_nodes: list[Tree]) -> Any:
        """``try``, ``can`` and ``convert``: they look at their arguments as expressions."""
        pos = self.pos(node)
        if name == "can":
            if len(arg_nodes) != 1:
                raise EvalError(f"Error in function call: can() takes 1 argument(s), got {len(arg_nodes)}", pos)
            try:
                v = self.eval(arg_nodes[0])
            except ErrorReported:
                raise
            except EvalError:
                return False
            if _has_runtime(v):  # only the client can tell: the call stays verbatim
                raise NeedsRuntime
            return True
        if name == "try":
            if not arg_nodes:
                raise EvalError("Error in function call: try(): at least one argument is required", pos)
            failures: list[str] = []
            for a in arg_nodes:
                try:
                    v = self.eval(a)
                    if _has_runtime(v):
                        raise NeedsRuntime
                    return v
                except ErrorReported:
                    raise
                except EvalError as exc:
                    where = f" (at {exc.pos.line}:{exc.pos.column})" if exc.pos else ""
                    failures.append(f"{exc.message}{where}")
            raise EvalError("Error in function call: try(): no expression succeeded:\n- " + "\n- ".join(failures),
                            pos, "every argument of try() failed; add a fallback value as the last argument")
        # convert(value, type)
        from rawexec.jobspec.hcl.variables import convert, parse_type, type_str  # variables imports this module

        if len(arg_nodes) != 2:
            raise EvalError(f"Error in function call: convert() takes 2 argument(s), got {len(arg_nodes)}", pos)
        value = self.eval(arg_nodes[0])
        if _has_runtime(value):
            raise NeedsRuntime
        t = parse_type(arg_nodes[1], self)
        try:
            return convert(value, t)
        except ValueError as exc:
            raise EvalError(f'Error in function call: convert(): invalid value for "value" parameter: {exc} '
                            f"(converting to {type_str(t)})", pos) from None

    def e_conditional(self, node: Tree) -> Any:
        cond_n, t_n, f_n = kids(node)
        cond = self.eval(cond_n)
        if isinstance(cond, Runtime):
            raise NeedsRuntime
        if not isinstance(cond, bool):
            if cond in ("true", "false"):
                cond = cond == "true"
            else:
                raise EvalError(f"Incorrect condition type: the condition must be a bool, got {type_name(cond)}",
                                self.pos(cond_n))
        return self.eval(t_n if cond else f_n)

    def e_unary_op(self, node: Tree) -> Any:
        op = str(node.children[0]).strip()
        v = self.eval(kids(node)[0])
        if isinstance(v, Runtime):
            raise NeedsRuntime
        if op == "!":
            if not isinstance(v, bool):
                raise EvalError(f"Invalid operand: a bool is required for !, got {type_name(v)}", self.pos(node))
            return not v
        try:
            return -to_number(v)
        except FuncError as exc:
            raise EvalError(f"Invalid operand: {exc}", self.pos(node)) from None

    def e_binary_op(self, node: Tree) -> Any:
        left_n, term = kids(node)[:2]
        op_n, right_n = kids(term)
        op = str(op_n.children[0]).strip()
        a = self.eval(left_n)
        if op in ("&&", "||") and isinstance(a, bool) and (a is False if op == "&&" else a is True):
            # HCL evaluates both sides; but a decided result needs no runtime value.
            b = self.eval(right_n)
            if isinstance(b, Runtime):
                raise NeedsRuntime
            return a
        b = self.eval(right_n)
        if isinstance(a, Runtime) or isinstance(b, Runtime):
            raise NeedsRuntime
        pos = self.pos(node)
        if op == "==":
            return _eq(a, b)
        if op == "!=":
            return not _eq(a, b)
        if op in ("&&", "||"):
            if not (isinstance(a, bool) and isinstance(b, bool)):
                raise EvalError(f"Invalid operand: {op} needs bool operands, got {type_name(a)} and "
                                f"{type_name(b)}", pos)
            return (a and b) if op == "&&" else (a or b)
        try:
            x, y = to_number(a), to_number(b)
        except FuncError as exc:
            raise EvalError(f"Invalid operand: unsuitable value for {op}: {exc}", pos) from None
        if op == "+":
            return normalize_number(x + y)
        if op == "-":
            return normalize_number(x - y)
        if op == "*":
            return normalize_number(x * y)
        if op in ("/", "%"):
            if y == 0:
                raise EvalError("Division by zero", pos)
            if op == "%":
                return normalize_number(x % y)
            q = x / y
            return int(q) if isinstance(x, int) and isinstance(y, int) and x % y == 0 else normalize_number(q)
        cmp = {"<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y}
        if op in cmp:
            return cmp[op]
        raise EvalError(f"unknown operator {op}", pos)

    def e_for_tuple_expr(self, node: Tree) -> Any:
        return self._for(node, obj=False)

    def e_for_object_expr(self, node: Tree) -> Any:
        return self._for(node, obj=True)

    def _for(self, node: Tree, obj: bool) -> Any:
        sub = kids(node)
        intro = sub[0]
        intro_k = kids(intro)
        names = [str(n.children[0]) for n in intro_k if n.data == "identifier"]
        coll_n = next(n for n in intro_k if n.data != "identifier")
        cond_n = sub[-1] if sub[-1].data == "for_cond" else None
        body = [s for s in sub[1:] if s.data != "for_cond"]
        group = obj and any(isinstance(t, Token) and t.type == "ELLIPSIS" for t in node.children)
        coll = self.eval(coll_n)
        if isinstance(coll, Runtime):
            raise NeedsRuntime
        if isinstance(coll, dict):
            pairs: list[tuple[Any, Any]] = list(coll.items())
        elif isinstance(coll, list):
            pairs = list(enumerate(coll))
        else:
            raise EvalError(f"Iteration over non-iterable value: a {type_name(coll)} cannot be iterated",
                            self.pos(coll_n))
        out_list: list[Any] = []
        out_obj: dict[str, Any] = {}
        for k, v in pairs:
            self._count_iteration(node)
            scope = {names[0]: v} if len(names) == 1 else {names[0]: k, names[1]: v}
            self.scopes.append(scope)
            try:
                if cond_n is not None:
                    c = self.eval(kids(cond_n)[0])
                    if isinstance(c, Runtime):
                        raise NeedsRuntime
                    if not isinstance(c, bool):
                        raise EvalError("Invalid for expression condition: a bool is required", self.pos(cond_n))
                    if not c:
                        continue
                if obj:
                    key = self.eval(body[0])
                    val = self.eval(body[1])
                    if isinstance(key, Runtime) or isinstance(val, Runtime):
                        raise NeedsRuntime
                    skey = to_string(key) if isinstance(key, (str, int, float, bool)) else None
                    if skey is None:
                        raise EvalError("Invalid object key: a string is required", self.pos(body[0]))
                    if group:
                        out_obj.setdefault(skey, []).append(val)
                    elif skey in out_obj:
                        raise EvalError(f'Duplicate object key: two elements produce the key "{skey}"; '
                                        "use ... to group them", self.pos(body[0]))
                    else:
                        out_obj[skey] = val
                else:
                    out_list.append(self.eval(body[0]))
            finally:
                self.scopes.pop()
        return out_obj if obj else out_list

    def _runtime_whole(self, expr: Tree) -> Runtime:
        roots = _root_names(expr)
        if "var" in roots or "local" in roots:
            rt = sorted(r for r in roots if r not in ("var", "local"))
            raise EvalError(
                "cannot mix job-file variables (var., local.) with runtime values "
                f"({', '.join(rt) or 'attr/meta/env'}) in one expression",
                self.pos(expr),
                'split it into separate parts, e.g. "${var.a}-${attr.b}"')
        return Runtime(self.source(expr))

    def _count_iteration(self, node: Tree) -> None:
        self.iterations += 1
        if self.iterations > MAX_ITERATIONS:
            raise EvalError(f"expression too expensive: more than {MAX_ITERATIONS} for-loop iterations",
                            self.pos(node), "simplify nested for expressions")


def _plain_literal(node: Tree) -> str | int | None:
    """The value of the most common attribute expressions without the general machinery: a quoted
    string without escapes or templates (``"raw_exec"``) or a decimal integer (``128``); else None.
    The result is what :meth:`Evaluator.evaluate` gives for them (see ``e_string``, ``e_int_lit``)."""
    ch = node.children
    if len(ch) != 1 or node.data != "expr_term":
        return None
    inner = ch[0]
    if type(inner) is not Tree:
        return None
    data = inner.data
    if data == "string":
        parts = inner.children  # DBLQUOTE string_part* DBLQUOTE
        n = len(parts)
        if n == 3:
            part = parts[1]
            if type(part) is Tree and part.data == "string_part":
                pch = part.children
                if len(pch) == 1:
                    tok = pch[0]
                    if type(tok) is Token and tok.type == "STRING_CHARS" and "\\" not in tok:
                        return str(tok)
        elif n == 2:
            return ""
        return None
    if data == "int_lit":
        return int(str(inner.children[0]))
    return None


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _has_runtime(v: Any) -> bool:
    if isinstance(v, Runtime):
        return True
    if isinstance(v, list):
        return any(_has_runtime(x) for x in v)
    if isinstance(v, dict):
        return any(_has_runtime(x) for x in v.values())
    return False


def _root_names(expr: Tree) -> set[str]:
    """Root names referenced by an expression (not object keys, not function names)."""
    names: set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if node.data == "object_elem_key":
            continue
        if node.data == "expr_term":
            ks = kids(node)
            if len(ks) == 1 and ks[0].data == "identifier":
                names.add(str(ks[0].children[0]))
                continue
        stack.extend(kids(node))
    return names


def render_runtime(value: Any) -> Any:
    """Replace :class:`Runtime` values by their ``${...}`` text, and normalise floats, recursively."""
    if isinstance(value, Runtime):
        return value.render()
    if isinstance(value, list):
        return [render_runtime(v) for v in value]
    if isinstance(value, dict):
        return {k: render_runtime(v) for k, v in value.items()}
    if type(value) is float:
        return normalize_number(value)
    return value
