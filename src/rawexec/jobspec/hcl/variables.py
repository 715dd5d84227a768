"""``variable`` and ``locals`` blocks: declared types, values from every source, validation rules.

Precedence (later wins): ``default`` < ``NOMAD_VAR_<name>`` environment < ``-var-file`` files
(in order) < ``-var name=value`` flags.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rawexec.jobspec.diagnostics import SEP, Diagnostics, Pos, did_you_mean
from rawexec.jobspec.hcl.evaluator import Context, Evaluator, kids
from rawexec.jobspec.hcl.functions import FuncError, to_number, to_string
from rawexec.jobspec.hcl.structure import Body, build_body, parse_text, tree_body
from rawexec.jobspec.hcl.tree import Tree
from rawexec.jobspec.hcl.values import ErrorReported, EvalError, type_name

__all__ = ["VarType", "convert", "locals_resolver", "parse_type", "resolve_variables", "type_str"]

VarType = tuple[Any, ...]  # ("string",) | ("list", T) | ("object", {k: T}, {optional k: default}) | ("tuple", [T...])
_ANY: VarType = ("any",)
_PRIMS = ("string", "number", "bool", "any")


@dataclass
class _Decl:
    name: str
    type: VarType
    default: Any
    has_default: bool
    validations: list[tuple[Tree, Tree | None, Pos]]
    pos: Pos
    sensitive: bool = False


def _call(node: Tree) -> tuple[str, list[Tree]] | None:
    """``(name, argument nodes)`` when ``node`` is a function call (``list(string)``), else None."""
    while node.data == "expr_term" and len(kids(node)) == 1:
        node = kids(node)[0]
    if node.data != "function_call":
        return None
    parts = kids(node)
    return str(parts[0].children[0]), kids(parts[1]) if len(parts) > 1 else []


def parse_type(node: Tree, ev: Evaluator) -> VarType:
    """Parse a type expression (``string``, ``list(string)``, ``object({a=number})``...).

    An object type is ``("object", {attr: T}, {attr: default})``: the third element holds its
    ``optional(T)``/``optional(T, default)`` attributes, each with its default converted to ``T``
    (None: null), as HCL's ``typeexpr.TypeConstraintWithDefaults``.
    """
    if node.data == "expr_term":
        ks = kids(node)
        if len(ks) == 1:
            return parse_type(ks[0], ev)
    if node.data == "identifier":
        name = str(node.children[0])
        if name in _PRIMS:
            return (name,)
        raise EvalError(f'Invalid type specification: the keyword "{name}" is not a valid type',
                        ev.pos(node), did_you_mean(name, _PRIMS) or "use string, number, bool, list(...), "
                        "map(...), set(...), object({...}), tuple([...]) or any")
    call = _call(node)
    if call is not None:
        name, args = call
        if name in ("list", "set", "map") and len(args) == 1:
            return (name, parse_type(args[0], ev))
        if name == "optional":
            raise EvalError('Invalid type specification: the keyword "optional" is valid only as a modifier '
                            "for object type attributes", ev.pos(node),
                            "write object({ name = optional(string) }), or drop optional(...)")
        if name == "object" and len(args) == 1:
            obj = kids(args[0])
            if len(obj) == 1 and obj[0].data == "object":
                fields: dict[str, VarType] = {}
                optional: dict[str, Any] = {}
                for elem in kids(obj[0]):
                    k, v = kids(elem)
                    aname = str(kids(kids(k)[0])[0].children[0]) if kids(kids(k)[0]) else "?"
                    fields[aname] = _attr_type(aname, v, optional, ev)
                return ("object", fields, optional)
        if name == "tuple" and len(args) == 1:
            tup = kids(args[0])
            if len(tup) == 1 and tup[0].data == "tuple":
                return ("tuple", [parse_type(t, ev) for t in kids(tup[0])])
    raise EvalError("Invalid type specification", ev.pos(node),
                    "use string, number, bool, list(T), set(T), map(T), object({...}), tuple([...]) or any")


def _attr_type(name: str, node: Tree, optional: dict[str, Any], ev: Evaluator) -> VarType:
    """An object attribute's type; ``optional(T[, default])`` also records the attribute in ``optional``."""
    call = _call(node)
    if call is None or call[0] != "optional":
        return parse_type(node, ev)
    args = call[1]
    if not args or len(args) > 2:
        raise EvalError("Invalid type specification: the optional attribute modifier takes the attribute type "
                        f"and an optional default value, got {len(args)} argument(s)", ev.pos(node),
                        f"write {name} = optional(string) or {name} = optional(string, \"default\")")
    t = parse_type(args[0], ev)
    default: Any = None
    if len(args) == 2:
        default = ev.evaluate(args[1])
        try:
            default = convert(default, t)
        except ValueError as exc:
            raise EvalError(f"Invalid default value for optional attribute: {exc}", ev.pos(args[1]),
                            f'the type of attribute "{name}" is {type_str(t)}') from None
    optional[name] = default
    return t


def type_str(t: VarType) -> str:
    if t[0] in _PRIMS:
        return str(t[0])
    if t[0] in ("list", "set", "map"):
        return f"{t[0]}({type_str(t[1])})"
    if t[0] == "object":
        optional = t[2] if len(t) > 2 else {}
        return "object({" + ", ".join(f"{k}=optional({type_str(v)})" if k in optional else f"{k}={type_str(v)}"
                                      for k, v in t[1].items()) + "})"
    return "tuple([" + ", ".join(type_str(v) for v in t[1]) + "])"


def convert(value: Any, t: VarType) -> Any:
    """Convert a value to a declared type (HCL's safe conversions), or raise ValueError.

    An optional object attribute that is absent or null takes its default (or null), and so do
    those of the default itself; the message of a failure inside a collection names where
    (``element 0: attribute "name" is required``), as cty's conversion errors do.
    """
    kind = t[0]
    if value is None or kind == "any":
        return value
    try:
        if kind == "string":
            if isinstance(value, (list, dict)):
                raise ValueError(f"string required, got {type_name(value)}")
            return to_string(value)
        if kind == "number":
            return to_number(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if value in ("true", "false"):
                return value == "true"
            raise ValueError(f"bool required, got {type_name(value)}")
    except FuncError as exc:
        raise ValueError(str(exc)) from None
    if kind in ("list", "set"):
        if not isinstance(value, list):
            raise ValueError(f"{type_str(t)} required, got {type_name(value)}")
        return [_convert_in(v, t[1], f"element {i}") for i, v in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            raise ValueError(f"{type_str(t)} required, got {type_name(value)}")
        return {k: _convert_in(v, t[1], f'element "{k}"') for k, v in value.items()}
    if kind == "object":
        if not isinstance(value, dict):
            raise ValueError(f"object required, got {type_name(value)}")
        optional: dict[str, Any] = t[2] if len(t) > 2 else {}
        out: dict[str, Any] = {}
        for k, ft in t[1].items():
            v = value.get(k)
            if v is None and k in optional:
                out[k] = copy.deepcopy(optional[k])  # already converted to ft
            elif k not in value:
                raise ValueError(f'attribute "{k}" is required')
            else:
                out[k] = _convert_in(v, ft, f'attribute "{k}"')
        return out
    if kind == "tuple":
        if not isinstance(value, list) or len(value) != len(t[1]):
            raise ValueError(f"tuple of {len(t[1])} elements required")
        return [_convert_in(v, ft, f"element {i}") for i, (v, ft) in enumerate(zip(value, t[1], strict=True))]
    return value


def _convert_in(value: Any, t: VarType, where: str) -> Any:
    try:
        return convert(value, t)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _decls(body: Body, src: str, ctx: Context, diags: Diagnostics) -> dict[str, _Decl]:
    out: dict[str, _Decl] = {}
    static = Context(filename=ctx.filename, base_dir=ctx.base_dir, allow_vars=False)
    ev = Evaluator(src, static)
    for blk in body.blocks:
        if blk.type != "variable":
            continue
        if len(blk.labels) != 1:
            diags.error('Missing name for variable: a variable block needs one label, its name', pos=blk.pos,
                        hint='write variable "name" { ... }')
            continue
        name = blk.labels[0]
        path = f'variable "{name}"'
        if name in out:
            diags.error(f'Duplicate variable declaration: a variable named "{name}" was already declared at '
                        f"{out[name].pos.line}:{out[name].pos.column}", path, blk.pos)
            continue
        vtype: VarType = _ANY
        default: Any = None
        has_default = False
        for aname, attr in blk.body.attrs.items():
            try:
                if aname == "type":
                    vtype = parse_type(attr.expr, ev)
                elif aname == "default":
                    default = ev.evaluate(attr.expr)
                    has_default = True
                elif aname in ("description", "sensitive"):
                    ev.evaluate(attr.expr)
                else:
                    diags.error(f'Unsupported argument: an argument named "{aname}" is not expected here',
                                f"{path}{SEP}{aname}", attr.pos,
                                did_you_mean(aname, ("type", "default", "description", "sensitive")))
            except EvalError as exc:
                diags.error(exc.message, f"{path}{SEP}{aname}", exc.pos or attr.pos, exc.hint)
        validations: list[tuple[Tree, Tree | None, Pos]] = []
        for vb in blk.body.blocks:
            if vb.type != "validation":
                diags.error(f'Unsupported block type: blocks of type "{vb.type}" are not expected here',
                            path, vb.pos, did_you_mean(vb.type, ("validation",)))
                continue
            cond = vb.body.attrs.get("condition")
            msg = vb.body.attrs.get("error_message")
            if cond is None:
                diags.error('Missing required argument: the argument "condition" is required',
                            f"{path}{SEP}validation", vb.pos)
                continue
            validations.append((cond.expr, msg.expr if msg else None, cond.pos))
        if has_default and default is not None:
            try:
                default = convert(default, vtype)
            except ValueError as exc:
                diags.error(f"Invalid default value for variable: {exc}", f"{path}{SEP}default",
                            blk.body.attrs["default"].pos, f"the declared type is {type_str(vtype)}")
        out[name] = _Decl(name, vtype, default, has_default, validations, blk.pos)
    return out


def _parse_cli_value(raw: str, t: VarType, where: str) -> Any:
    if t[0] in ("string", "number", "bool") or t[0] == "any":
        return raw
    # Complex types: the value is an HCL expression (as Terraform and Nomad do).
    text = f"v = {raw}\n"
    tree = parse_text(text, where)
    attr = kids(kids(tree_body(tree))[0])
    return Evaluator(text, Context(filename=where, allow_vars=False)).evaluate(attr[-1])


def _load_var_file(path: str, diags: Diagnostics) -> dict[str, tuple[Any, Pos]]:
    out: dict[str, tuple[Any, Pos]] = {}
    try:
        with open(path, "rb") as f:
            data = f.read(4 * 1024 * 1024 + 1)
    except OSError as exc:
        diags.error(f"Failed to read variables file: {exc.strerror}", pos=Pos(path),
                    hint="check the -var-file path")
        return out
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        diags.error(f"Invalid UTF-8 in variables file at byte {exc.start}", pos=Pos(path))
        return out
    if path.endswith(".json"):
        try:
            obj = json.loads(text)
        except ValueError as exc:
            diags.error(f"Invalid JSON in variables file: {exc}", pos=Pos(path))
            return out
        if not isinstance(obj, dict):
            diags.error("Invalid variables file: the top level must be an object", pos=Pos(path))
            return out
        return {str(k): (v, Pos(path)) for k, v in obj.items()}
    try:
        tree = parse_text(text, path)
    except EvalError as exc:
        diags.error(exc.message, pos=exc.pos, hint=exc.hint)
        return out
    errs: list[EvalError] = []
    body = build_body(tree_body(tree), path, errs)
    for e in errs:
        diags.error(e.message, pos=e.pos, hint=e.hint)
    ev = Evaluator(text, Context(filename=path, base_dir=os.path.dirname(path) or ".", allow_vars=False))
    for blk in body.blocks:
        diags.error(f'Unexpected "{blk.type}" block: a variables file may only set variables (name = value)',
                    pos=blk.pos)
    for name, attr in body.attrs.items():
        try:
            out[name] = (ev.evaluate(attr.expr), attr.pos)
        except EvalError as exc:
            diags.error(exc.message, name, exc.pos or attr.pos, exc.hint)
    return out


def resolve_variables(body: Body, src: str, ctx: Context, diags: Diagnostics, *,
                      cli_vars: Mapping[str, str] | None, var_files: list[str] | None,
                      env: Mapping[str, str] | None) -> dict[str, Any]:
    """Compute every declared variable's value, reporting missing/undeclared/invalid ones."""
    decls = _decls(body, src, ctx, diags)
    ctx.declared = set(decls)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    invalid: set[str] = set()  # given a value that was refused: not "missing" on top of that
    for name, d in decls.items():
        if d.has_default:
            values[name] = d.default
            origin[name] = "default"
    for key, raw in (env or {}).items():
        if key.startswith("NOMAD_VAR_") and key[10:] in decls:
            name = key[10:]
            try:
                values[name] = convert(_parse_cli_value(raw, decls[name].type, key), decls[name].type)
                origin[name] = f"environment variable {key}"
            except (ValueError, EvalError) as exc:
                invalid.add(name)
                diags.error(f"Invalid value for variable: {getattr(exc, 'message', exc)}", f'variable "{name}"',
                            Pos(key), f"the declared type is {type_str(decls[name].type)}")
    for vf in var_files or []:
        for name, (value, pos) in _load_var_file(vf, diags).items():
            if name not in decls:
                diags.error(f'Undefined variable: a variable named "{name}" was assigned in a variables file '
                            "but has not been declared", "", pos,
                            did_you_mean(name, decls) or f'declare it: variable "{name}" {{}}')
                continue
            try:
                values[name] = convert(value, decls[name].type)
                origin[name] = vf
            except ValueError as exc:
                invalid.add(name)
                diags.error(f"Invalid value for variable: {exc}", f'variable "{name}"', pos,
                            f"the declared type is {type_str(decls[name].type)}")
    for name, raw in (cli_vars or {}).items():
        if name not in decls:
            diags.error(f'Undefined -var variable: a "{name}" variable was passed in but has not been declared',
                        "", Pos("-var"), did_you_mean(name, decls) or f'declare it: variable "{name}" {{}}')
            continue
        try:
            values[name] = convert(_parse_cli_value(raw, decls[name].type, f"-var {name}"), decls[name].type)
            origin[name] = "-var"
        except (ValueError, EvalError) as exc:
            invalid.add(name)
            diags.error(f"Invalid value for variable: {getattr(exc, 'message', exc)}", f'variable "{name}"',
                        Pos("-var"), f"the declared type is {type_str(decls[name].type)}")
    for name, d in decls.items():
        if name not in values and name not in invalid:
            diags.error(f'Missing required variable: the variable "{name}" has no default and no value was given',
                        f'variable "{name}"', d.pos,
                        f"set it with -var {name}=..., a -var-file, or the NOMAD_VAR_{name} environment variable")
    ctx.variables = values
    # Validation rules see the final values.
    for name, d in decls.items():
        if name not in values:
            continue
        ev = Evaluator(src, ctx)
        for cond_n, msg_n, pos in d.validations:
            try:
                ok = ev.evaluate(cond_n)
                if ok is True:
                    continue
                if ok is not False:
                    diags.error(f"Invalid variable validation result: the condition must be a bool, got "
                                f"{type_name(ok)}", f'variable "{name}"{SEP}validation', pos)
                    continue
                msg = ev.evaluate(msg_n) if msg_n is not None else "the value failed its validation rule"
                diags.error(f"Invalid value for variable: {msg}", f'variable "{name}"', pos,
                            f"this was checked by the validation rule of variable \"{name}\" "
                            f"(value from {origin.get(name, 'default')})")
            except ErrorReported:
                pass
            except EvalError as exc:
                diags.error(exc.message, f'variable "{name}"{SEP}validation', exc.pos or pos, exc.hint)
    return values


def locals_resolver(body: Body, src: str, ctx: Context, diags: Diagnostics) -> None:
    """Install lazy evaluation of ``locals {}`` (any order, cycles reported) into ``ctx``."""
    exprs: dict[str, tuple[Tree, Pos]] = {}
    for blk in body.blocks:
        if blk.type != "locals":
            continue
        if blk.labels:
            diags.error("Extraneous label for locals: a locals block takes no labels", "locals", blk.pos)
        for b in blk.body.blocks:
            diags.error(f'Unexpected "{b.type}" block in locals: locals only hold name = value', "locals", b.pos)
        for name, attr in blk.body.attrs.items():
            if name in exprs:
                diags.error(f'Duplicate local value definition: "{name}" was already defined at '
                            f"{exprs[name][1].line}:{exprs[name][1].column}", f"locals{SEP}{name}", attr.pos)
                continue
            exprs[name] = (attr.expr, attr.pos)
    cache: dict[str, Any] = {}
    active: list[str] = []
    failed: set[str] = set()

    def lookup(name: str, pos: Pos) -> Any:
        if name in cache:
            return cache[name]
        if name in failed:
            raise ErrorReported(f'local value "{name}" failed', pos)
        if name not in exprs:
            raise EvalError(f'Unsupported attribute: no local value named "{name}" has been declared', pos,
                            did_you_mean(name, exprs) or f"define it in a locals block: locals {{ {name} = ... }}")
        if name in active:
            cycle = " → ".join([*active[active.index(name):], name])
            raise EvalError(f"Cycle in local values: {cycle}", exprs[name][1],
                            "a local value may not depend on itself")
        active.append(name)
        try:
            # Locals keep runtime references as ${...} text, like any other value.
            value = Evaluator(src, ctx).evaluate(exprs[name][0])
        except ErrorReported:
            failed.add(name)
            raise
        except EvalError as exc:
            # Reported once, here; whatever uses this local fails silently (HCL's error value).
            diags.error(exc.message, f"locals{SEP}{name}", exc.pos or exprs[name][1], exc.hint)
            failed.add(name)
            raise ErrorReported(exc.message, exc.pos) from None
        finally:
            active.pop()
        cache[name] = value
        return value

    ctx.local_lookup = lookup
    ctx.local_names = lambda: list(exprs)
    # Evaluate every local once so that errors in unused locals are reported too.
    for name, (_, pos) in exprs.items():
        try:
            lookup(name, pos)
        except ErrorReported:
            pass

