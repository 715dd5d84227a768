"""hclspec: the HCL decoding specs a Nomad plugin returns from ConfigSchema/TaskConfigSchema.

A small, typed mirror of ``hashicorp.nomad.plugins.shared.hclspec.Spec`` (facts §2.3), the
HCL type-expression parser the specs use, and raw_exec's two specs with Nomad's defaults.
The same tree drives the lenient msgpack-cty decoder in :mod:`rawexec.plugin.cty`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

from rawexec.errors import InvalidConfigError
from rawexec.plugin.gen import hclspec_pb2

__all__ = [
    "Array",
    "Attr",
    "Block",
    "BlockAttrs",
    "BlockList",
    "BlockMap",
    "BlockSet",
    "Default",
    "HclType",
    "Literal",
    "Object",
    "Spec",
    "from_proto",
    "parse_type",
    "plugin_config_spec",
    "task_config_spec",
    "to_proto",
]


@dataclass(frozen=True)
class Attr:
    """One attribute of HCL type expression ``type`` (``string``, ``list(string)``, ...)."""

    type: str
    required: bool = False
    name: str = ""


@dataclass(frozen=True)
class Literal:
    """A constant, written as HCL expression text: ``"true"``, ``"10"``, ``"\\"bash\\""``, ``"[]"``."""

    value: str


@dataclass(frozen=True)
class Default:
    """``primary``, or ``default`` when primary is null."""

    primary: Spec
    default: Spec


@dataclass(frozen=True)
class Object:
    """An object; each key is the output name and the implied input name of its child."""

    attributes: Mapping[str, Spec] = field(default_factory=dict)


@dataclass(frozen=True)
class Array:
    """A tuple of specs."""

    values: tuple[Spec, ...] = ()


@dataclass(frozen=True)
class Block:
    """Zero or one nested block."""

    nested: Spec
    required: bool = False
    name: str = ""


@dataclass(frozen=True)
class BlockAttrs:
    """A block whose attributes become a map of ``type``."""

    type: str
    required: bool = False
    name: str = ""


@dataclass(frozen=True)
class BlockList:
    """Repeated blocks, as a list."""

    nested: Spec
    min_items: int = 0
    max_items: int = 0
    name: str = ""


@dataclass(frozen=True)
class BlockSet:
    """Repeated blocks, as a set."""

    nested: Spec
    min_items: int = 0
    max_items: int = 0
    name: str = ""


@dataclass(frozen=True)
class BlockMap:
    """Labelled blocks, as a map keyed by the labels (at least one label)."""

    labels: tuple[str, ...]
    nested: Spec
    name: str = ""


Spec: TypeAlias = Attr | Literal | Default | Object | Array | Block | BlockAttrs | BlockList | BlockSet | BlockMap


# --- HCL type expressions -------------------------------------------------------------------

# A parsed type: "string" | "number" | "bool" | "any" | ("list"|"set"|"map", T)
# | ("object", {name: T}) | ("tuple", [T, ...]).
HclType: TypeAlias = Any

_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_-]*|[(){}\[\],=])")
_PRIMITIVES = ("string", "number", "bool", "any")


@functools.lru_cache(maxsize=256)
def parse_type(expr: str) -> HclType:
    """Parse an HCL type expression such as ``list(map(string))`` (errors name the text).

    Memoised (the decoder asks for the same few on every config): treat the result as
    read-only."""
    tokens: list[str] = []
    pos = 0
    text = expr.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise InvalidConfigError(f"invalid HCL type expression {expr!r}: unexpected {text[pos:]!r}")
        tokens.append(m.group(1))
        pos = m.end()
    if not tokens:
        raise InvalidConfigError("invalid HCL type expression: empty; use e.g. \"string\" or \"list(string)\"")
    result, rest = _parse_type_tokens(tokens, expr)
    if rest:
        raise InvalidConfigError(f"invalid HCL type expression {expr!r}: trailing {' '.join(rest)!r}")
    return result


def _expect(tokens: list[str], tok: str, expr: str) -> list[str]:
    if not tokens or tokens[0] != tok:
        raise InvalidConfigError(f"invalid HCL type expression {expr!r}: expected {tok!r}")
    return tokens[1:]


def _parse_type_tokens(tokens: list[str], expr: str) -> tuple[HclType, list[str]]:
    head, rest = tokens[0], tokens[1:]
    if head in _PRIMITIVES:
        return head, rest
    if head in ("list", "set", "map"):
        rest = _expect(rest, "(", expr)
        inner, rest = _parse_type_tokens(rest, expr) if rest else (None, rest)
        if inner is None:
            raise InvalidConfigError(f"invalid HCL type expression {expr!r}: {head}() needs an element type")
        return (head, inner), _expect(rest, ")", expr)
    if head == "object":
        rest = _expect(_expect(rest, "(", expr), "{", expr)
        attrs: dict[str, HclType] = {}
        while rest and rest[0] != "}":
            name, rest = rest[0], _expect(rest[1:], "=", expr)
            attrs[name], rest = _parse_type_tokens(rest, expr)
            if rest and rest[0] == ",":
                rest = rest[1:]
        return ("object", attrs), _expect(_expect(rest, "}", expr), ")", expr)
    if head == "tuple":
        rest = _expect(_expect(rest, "(", expr), "[", expr)
        elems: list[HclType] = []
        while rest and rest[0] != "]":
            t, rest = _parse_type_tokens(rest, expr)
            elems.append(t)
            if rest and rest[0] == ",":
                rest = rest[1:]
        return ("tuple", elems), _expect(_expect(rest, "]", expr), ")", expr)
    raise InvalidConfigError(f"invalid HCL type expression {expr!r}: unknown type {head!r}")


# --- proto conversion -------------------------------------------------------------------------


def to_proto(spec: Spec) -> Any:
    """Build the ``hclspec.Spec`` message for ``spec``."""
    msg = hclspec_pb2.Spec()
    if isinstance(spec, Attr):
        msg.Attr.CopyFrom(hclspec_pb2.Attr(name=spec.name, type=spec.type, required=spec.required))
    elif isinstance(spec, Literal):
        msg.literal.value = spec.value
    elif isinstance(spec, Default):
        msg.default.primary.CopyFrom(to_proto(spec.primary))
        msg.default.default.CopyFrom(to_proto(spec.default))
    elif isinstance(spec, Object):
        msg.object.SetInParent()
        for key, child in spec.attributes.items():
            msg.object.attributes[key].CopyFrom(to_proto(child))
    elif isinstance(spec, Array):
        msg.array.SetInParent()
        for child in spec.values:
            msg.array.values.append(to_proto(child))
    elif isinstance(spec, Block):
        msg.block_value.CopyFrom(hclspec_pb2.Block(name=spec.name, required=spec.required,
                                                   nested=to_proto(spec.nested)))
    elif isinstance(spec, BlockAttrs):
        msg.block_attrs.CopyFrom(hclspec_pb2.BlockAttrs(name=spec.name, type=spec.type,
                                                        required=spec.required))
    elif isinstance(spec, BlockList):
        msg.block_list.CopyFrom(hclspec_pb2.BlockList(name=spec.name, min_items=spec.min_items,
                                                      max_items=spec.max_items, nested=to_proto(spec.nested)))
    elif isinstance(spec, BlockSet):
        msg.block_set.CopyFrom(hclspec_pb2.BlockSet(name=spec.name, min_items=spec.min_items,
                                                    max_items=spec.max_items, nested=to_proto(spec.nested)))
    elif isinstance(spec, BlockMap):
        msg.block_map.CopyFrom(hclspec_pb2.BlockMap(name=spec.name, labels=list(spec.labels),
                                                    nested=to_proto(spec.nested)))
    else:  # pragma: no cover - exhaustive over Spec
        raise TypeError(f"not an hclspec node: {spec!r}")
    return msg


def from_proto(msg: Any) -> Spec:
    """Rebuild a :data:`Spec` from its message (errors as Nomad's converter words them)."""
    if msg is None:
        raise InvalidConfigError("nil spec given")
    kind = msg.WhichOneof("block")
    if kind is None:
        raise InvalidConfigError("Invalid spec block: no spec kind set")
    if kind == "Attr":
        return Attr(type=msg.Attr.type, required=msg.Attr.required, name=msg.Attr.name)
    if kind == "literal":
        return Literal(msg.literal.value)
    if kind == "default":
        return Default(from_proto(msg.default.primary), from_proto(msg.default.default))
    if kind == "object":
        return Object({k: from_proto(v) for k, v in sorted(msg.object.attributes.items())})
    if kind == "array":
        return Array(tuple(from_proto(v) for v in msg.array.values))
    if kind == "block_value":
        b = msg.block_value
        return Block(from_proto(b.nested), required=b.required, name=b.name)
    if kind == "block_attrs":
        ba = msg.block_attrs
        return BlockAttrs(type=ba.type, required=ba.required, name=ba.name)
    if kind == "block_list":
        bl = msg.block_list
        return BlockList(from_proto(bl.nested), bl.min_items, bl.max_items, name=bl.name)
    if kind == "block_set":
        bs = msg.block_set
        return BlockSet(from_proto(bs.nested), bs.min_items, bs.max_items, name=bs.name)
    bm = msg.block_map
    return BlockMap(tuple(bm.labels), from_proto(bm.nested), name=bm.name)


# --- raw_exec's specs (facts: nomad-rawexec-facts §1.1, §1.2) --------------------------------


@functools.cache
def plugin_config_spec() -> Object:
    """``plugin "raw_exec" { config {...} }``: today's keys plus the seed era's ``no_cgroups``.
    One read-only tree, built once (every SetConfig decodes against it)."""
    return Object(MappingProxyType({
        "enabled": Default(Attr("bool", name="enabled"), Literal("false")),
        "no_cgroups": Default(Attr("bool", name="no_cgroups"), Literal("false")),
        "denied_host_uids": Attr("string"),
        "denied_host_gids": Attr("string"),
        "denied_envvars": Attr("list(string)"),
    }))


@functools.cache
def task_config_spec() -> Object:
    """A raw_exec task's ``config {...}``. One read-only tree, built once (every StartTask
    decodes against it)."""
    return Object(MappingProxyType({
        "command": Attr("string", required=True),
        "args": Attr("list(string)"),
        "cgroup_v1_override": Attr("list(map(string))"),
        "cgroup_v2_override": Attr("string"),
        "oom_score_adj": Attr("number"),
        "work_dir": Attr("string"),
        "denied_envvars": Attr("list(string)"),
    }))
