"""The msgpack-cty codec: config values as Nomad sends them (facts §3.1-3.3).

Decoding (what the plugin does) is lenient, as the facts ask: a ``number`` may arrive as an
int, a float or a decimal string; nil means "unset"; every schema key is normally present but
a missing one is treated as unset; an absent block list is ``[]``. The value is conformed to
the spec so the driver gets Python ints, floats, strs, bools, lists and dicts, and a value of
the wrong type is refused with an error naming the field.

Encoding (what Nomad does; used by the test harness and benchmarks to play the client) follows
go-cty's rules: keys sorted, numbers as the smallest int when they are an exact int64, float64
when exactly representable, else a decimal string. :func:`hcldec` applies a spec to a JSON-like
input the way Nomad's ``hcldec.Decode`` does (defaults, absent blocks, ``${VAR}``
interpolation), so the harness can produce byte-exact ``msgpack_config`` values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import msgpack  # type: ignore[import-untyped]

from rawexec.errors import InvalidConfigError
from rawexec.plugin.hclspec import (
    Array,
    Attr,
    Block,
    BlockAttrs,
    BlockList,
    BlockMap,
    BlockSet,
    Default,
    HclType,
    Literal,
    Object,
    Spec,
    parse_type,
)

__all__ = ["decode", "encode", "evaluate_literal", "hcldec", "unpack"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# --- decoding (plugin side) -------------------------------------------------------------------


def unpack(data: bytes, what: str = "config") -> Any:
    """``msgpack.unpackb`` with every failure turned into one clear :class:`InvalidConfigError`."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated classes for bad input
        raise InvalidConfigError(
            f"{what} is not valid msgpack ({type(exc).__name__}: {exc or 'malformed data'}); it must be "
            "the msgpack encoding of the config object, as Nomad sends it") from exc


def decode(spec: Spec, data: bytes, what: str = "config") -> dict[str, Any]:
    """Decode ``data`` (msgpack of a cty object) against ``spec``; empty bytes decode as ``{}``.

    ``what`` names the thing in errors ("plugin config", "task config").
    """
    raw: Any = {} if not data else unpack(data, what)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidConfigError(f"{what} must be an object (a msgpack map), got {_kind(raw)}")
    try:
        value = _conform(spec, raw, what, "")
    except RecursionError:
        raise InvalidConfigError(f"{what} nests too deeply to be a config object") from None
    if not isinstance(value, dict):
        raise InvalidConfigError(f"{what} spec must be an object spec")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str | bytes):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def _err(what: str, path: str, msg: str) -> InvalidConfigError:
    where = f'{what} field "{path}"' if path else what
    return InvalidConfigError(f"{where}: {msg}")


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _conform(spec: Spec, value: Any, what: str, path: str) -> Any:
    if isinstance(spec, Object):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise _err(what, path, f"expected an object, got {_kind(value)}")
        return {key: _conform(child, value.get(key), what, _join(path, key))
                for key, child in spec.attributes.items()}
    if isinstance(spec, Attr):
        if value is None:
            if spec.required:
                raise _err(what, path, "is required; set it in the config block")
            return None
        return conform_type(parse_type(spec.type), value, what, path)
    if isinstance(spec, Default):
        primary = _conform(spec.primary, value, what, path)
        return _conform(spec.default, None, what, path) if primary is None else primary
    if isinstance(spec, Literal):
        return evaluate_literal(spec.value)
    if isinstance(spec, Block):
        if isinstance(value, list) and len(value) <= 1:  # HCL1's "a block is a list of maps"
            value = value[0] if value else None
        if value is None:
            if spec.required:
                raise _err(what, path, "block is required")
            return None
        return _conform(spec.nested, value, what, path)
    if isinstance(spec, BlockList | BlockSet):
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            raise _err(what, path, f"expected a list of blocks, got {_kind(value)}")
        return [_conform(spec.nested, v, what, _join(path, i)) for i, v in enumerate(value)]
    if isinstance(spec, BlockMap):
        return _conform_block_map(spec.nested, len(spec.labels), value, what, path)
    if isinstance(spec, BlockAttrs):
        if value is None:
            return None
        return conform_type(("map", parse_type(spec.type)), value, what, path)
    if isinstance(spec, Array):
        if value is None:
            value = [None] * len(spec.values)
        if not isinstance(value, list | tuple) or len(value) != len(spec.values):
            raise _err(what, path, f"expected a tuple of {len(spec.values)} values, got {_kind(value)}")
        return [_conform(s, v, what, _join(path, i)) for i, (s, v) in enumerate(zip(spec.values, value, strict=True))]
    raise TypeError(f"not an hclspec node: {spec!r}")  # pragma: no cover


def _conform_block_map(nested: Spec, depth: int, value: Any, what: str, path: str) -> Any:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _err(what, path, f"expected a map of labelled blocks, got {_kind(value)}")
    if depth <= 1:
        return {str(k): _conform(nested, v, what, _join(path, str(k))) for k, v in value.items()}
    return {str(k): _conform_block_map(nested, depth - 1, v, what, _join(path, str(k)))
            for k, v in value.items()}


def conform_type(ty: HclType, value: Any, what: str = "config", path: str = "") -> Any:
    """Check/convert one value to HCL type ``ty`` with cty's safe conversions; nil stays None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _err(what, path, "is not valid UTF-8 text") from exc
    if ty == "any":
        return _plain(value)
    if ty == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return _number_text(value)
        if isinstance(value, str):
            return value
        raise _err(what, path, f"expected a string, got {_kind(value)}")
    if ty == "number":
        return _number(value, what, path)
    if ty == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise _err(what, path, f"expected a bool (true or false), got {_kind(value)} {value!r}")
    kind = ty[0]
    if kind in ("list", "set"):
        if not isinstance(value, list | tuple):
            raise _err(what, path, f"expected a list, got {_kind(value)} {value!r}")
        return [conform_type(ty[1], v, what, _join(path, i)) for i, v in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            raise _err(what, path, f"expected a map, got {_kind(value)} {value!r}")
        return {str(k): conform_type(ty[1], v, what, _join(path, str(k))) for k, v in value.items()}
    if kind == "object":
        if not isinstance(value, dict):
            raise _err(what, path, f"expected an object, got {_kind(value)}")
        return {k: conform_type(t, value.get(k), what, _join(path, k)) for k, t in ty[1].items()}
    if kind == "tuple":
        if not isinstance(value, list | tuple) or len(value) != len(ty[1]):
            raise _err(what, path, f"expected a tuple of {len(ty[1])} values, got {_kind(value)}")
        return [conform_type(t, v, what, _join(path, i)) for i, (t, v) in enumerate(zip(ty[1], value, strict=True))]
    raise _err(what, path, f"unsupported type {ty!r}")  # pragma: no cover


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _number(value: Any, what: str, path: str) -> int | float:
    if isinstance(value, bool):
        raise _err(what, path, f"expected a number, got bool {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise _err(what, path, f"expected a number, got the string {value!r}") from None
        if d.is_nan():
            raise _err(what, path, "NaN is not a number")
        if d.is_infinite():
            return math.inf if d > 0 else -math.inf
        return int(d) if d == d.to_integral_value() else float(d)
    raise _err(what, path, f"expected a number, got {_kind(value)} {value!r}")


def _number_text(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return str(int(value))
    return str(value)


# --- literal expressions -----------------------------------------------------------------------


def evaluate_literal(text: str) -> Any:
    """Evaluate a Literal spec's HCL expression text (constants only: JSON-shaped values)."""
    try:
        return _from_json(json.loads(text, parse_float=Decimal))
    except ValueError:
        raise InvalidConfigError(
            f"literal {text!r} is not a constant HCL expression; use e.g. \"true\", \"10\", "
            "\"\\\"text\\\"\" or \"[]\"") from None


def _from_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return value


# --- encoding (Nomad side, for the harness) -------------------------------------------------------


def encode(value: Any) -> bytes:
    """Encode a decoded cty value the way go-cty's msgpack marshaller does."""
    packed: bytes = msgpack.packb(_cty_prepare(value), use_bin_type=True)
    return packed


def _cty_prepare(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float | Decimal):
        return _cty_number(value)
    if isinstance(value, dict):
        return {k: _cty_prepare(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_cty_prepare(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} as a cty value")


def _cty_number(value: int | float | Decimal) -> int | float | str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return value
        d = Decimal(value)
    else:
        d = Decimal(value)
    if d == d.to_integral_value() and _INT64_MIN <= int(d) <= _INT64_MAX:
        return int(d)
    f = float(d)
    if math.isfinite(f) and Decimal(f) == d:
        return f
    return format(d.normalize(), "f") if d == d.to_integral_value() else format(d, "f")


# --- hcldec emulation (Nomad side, for the harness) -----------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.\-]*)\}")


def hcldec(spec: Spec, body: Mapping[str, Any], variables: Mapping[str, str] | None = None) -> Any:
    """Apply ``spec`` to a JSON-like ``body`` as Nomad's ``hcldec.Decode`` does.

    Errors use hcldec's summaries (``Missing required argument``, ``Invalid label``). Numbers
    in ``body`` may be int, float or :class:`~decimal.Decimal` (parse JSON with
    ``parse_float=Decimal`` to keep ``0.1`` exact, as HCL does).
    """
    return _dec(spec, body, dict(variables or {}), "")


def _dec(spec: Spec, body: Any, env: dict[str, str], implied: str) -> Any:
    if isinstance(spec, Object):
        if not isinstance(body, Mapping):
            raise InvalidConfigError(f"Unsuitable value type; an object is required, got {_kind(body)}")
        names: set[str] = set().union(*(_input_names(child, key) for key, child in spec.attributes.items()))
        for key in body:
            if key not in names:
                raise InvalidConfigError(f'Invalid label; No argument or block type is named "{key}".')
        return {key: _dec(child, body, env, key) for key, child in spec.attributes.items()}
    if isinstance(spec, Default):
        v = _dec(spec.primary, body, env, implied)
        return _dec(spec.default, body, env, implied) if v is None else v
    if isinstance(spec, Literal):
        return evaluate_literal(spec.value)
    if isinstance(spec, Array):
        return [_dec(s, body, env, "") for s in spec.values]
    name = spec.name or implied
    if not name:
        raise InvalidConfigError("Missing name in attribute spec")
    raw = body.get(name) if isinstance(body, Mapping) else None
    if isinstance(spec, Attr):
        if raw is None:
            if spec.required:
                raise InvalidConfigError(f'Missing required argument; The argument "{name}" is required, '
                                         "but no definition was found.")
            return None
        return _convert(parse_type(spec.type), _interp(raw, env), name)
    if isinstance(spec, Block):
        blocks = raw if isinstance(raw, list) else ([] if raw is None else [raw])
        if not blocks:
            if spec.required:
                raise InvalidConfigError(f'Missing {name} block; A block of type "{name}" is required here.')
            return None
        return _dec(spec.nested, blocks[0], env, "")
    if isinstance(spec, BlockList | BlockSet):
        blocks = raw if isinstance(raw, list) else ([] if raw is None else [raw])
        out = [_dec(spec.nested, b, env, "") for b in blocks]
        if isinstance(spec, BlockSet):
            out.sort(key=lambda v: json.dumps(v, sort_keys=True, default=str))
        return out
    if isinstance(spec, BlockAttrs):
        return None if raw is None else _convert(("map", parse_type(spec.type)), _interp(raw, env), name)
    if isinstance(spec, BlockMap):
        return {} if raw is None else _dec_block_map(spec.nested, len(spec.labels), raw, env)
    raise TypeError(f"not an hclspec node: {spec!r}")  # pragma: no cover


def _dec_block_map(nested: Spec, depth: int, raw: Any, env: dict[str, str]) -> Any:
    if depth <= 1:
        return {k: _dec(nested, v[0] if isinstance(v, list) else v, env, "") for k, v in raw.items()}
    return {k: _dec_block_map(nested, depth - 1, v, env) for k, v in raw.items()}


def _input_names(spec: Spec, key: str) -> set[str]:
    """The body keys a child spec consumes (through Default and Array wrappers)."""
    if isinstance(spec, Default):
        return _input_names(spec.primary, key) | _input_names(spec.default, key)
    if isinstance(spec, Array):
        return set().union(*(_input_names(v, "") for v in spec.values))
    if isinstance(spec, Literal | Object):
        return set()
    return {spec.name or key}


def _interp(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                raise InvalidConfigError(f'Unknown variable; There is no variable named "{m.group(1)}".')
            return env[m.group(1)]
        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_interp(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _interp(v, env) for k, v in value.items()}
    return value


def _convert(ty: HclType, value: Any, name: str) -> Any:
    if ty == "number" and isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return value  # keep Decimal precision for the encoder
    if ty == "any":
        return value
    if isinstance(ty, tuple) and ty[0] in ("list", "set", "map") and ty[1] in ("any", "number"):
        if ty[0] == "map" and isinstance(value, dict):
            return {k: _convert(ty[1], v, name) for k, v in value.items()}
        if ty[0] != "map" and isinstance(value, list):
            return [_convert(ty[1], v, name) for v in value]
    try:
        out = conform_type(ty, value, "config", name)
    except InvalidConfigError as exc:
        raise InvalidConfigError(f"Incorrect attribute value type; {exc}") from None
    if isinstance(ty, tuple) and ty[0] == "set" and isinstance(out, list):
        out.sort(key=lambda v: json.dumps(v, sort_keys=True, default=str))
    return out
