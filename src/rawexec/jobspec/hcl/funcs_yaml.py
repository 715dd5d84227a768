"""``yamldecode`` and ``yamlencode``, as Nomad's jobspec2 has them (cty's go-cty-yaml semantics).

PyYAML parses and emits; what a scalar *means* is decided here, by go-cty-yaml's rules rather
than PyYAML's own:

* a quoted or block (``|``, ``>``) scalar is a string, verbatim;
* a plain scalar is guessed: ``null``/``~``/empty, YAML 1.1 booleans (``yes``, ``on``, ``y`` ...),
  numbers (decimal, ``0x``, ``0o``, ``0b``, ``.inf``), timestamps (as RFC 3339 strings: cty has no
  time type), else a string; ``.nan`` is an error (cty has no NaN);
* an explicit tag (``!!str``, ``!!int``, ``!!bool``, ``!!binary`` ...) is obeyed, or is an error;
* one document only; mapping keys are scalars, turned into strings; an alias may not refer to
  the anchor it is inside of. Merge keys (``<<``) are not special, as in go-cty-yaml.

``yamlencode`` writes block style with every string double-quoted, keys sorted, and ``...``
after a lone non-string scalar, as go-cty-yaml does (e.g. ``"a": "b"\\n"c":\\n- 1\\n``).
PyYAML is imported on the first call only: most job files never use these.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from rawexec.jobspec.hcl.functions import Func, FuncContext, FuncError, arity, as_str, format_number, normalize_number

__all__ = ["YAML_FUNCTIONS"]

_TAG = "tag:yaml.org,2002:"
_PLAIN = "!rawexec-plain"  # the tag the loader gives an untagged plain scalar: guessed below

_TRUE = frozenset(["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"])
_FALSE = frozenset(["n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"])
_NULL = frozenset(["", "~", "null", "Null", "NULL"])
_INF = {".inf": math.inf, ".Inf": math.inf, ".INF": math.inf, "+.inf": math.inf, "+.Inf": math.inf,
        "+.INF": math.inf, "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf,
        "+Inf": math.inf, "-Inf": -math.inf}
_NAN = frozenset([".nan", ".NaN", ".NAN"])
_DECIMAL = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_BASED = re.compile(r"([-+]?)0(?:(x)([0-9a-fA-F]+)|(o)([0-7]+)|(b)([01]+))")
_TIMESTAMP = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})"
                        r"(?:(?:[Tt](\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.\d{1,9})?(Z|[+-]\d{2}:\d{2}))"
                        r"|(?: (\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.\d{1,9})?))?")


class _YamlError(Exception):
    """A value the YAML holds that cty cannot take; ``node`` locates it."""

    def __init__(self, message: str, node: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node


def _number(text: str) -> int | float | None:
    """A number written as YAML writes one (decimal, 0x/0o/0b, infinities), else None."""
    if _DECIMAL.fullmatch(text):
        if re.fullmatch(r"[-+]?[0-9]+", text):
            return int(text)
        return normalize_number(float(text))
    m = _BASED.fullmatch(text)
    if m:
        digits, base = next((m[i + 1], {"x": 16, "o": 8, "b": 2}[m[i]]) for i in (2, 4, 6) if m[i])
        n = int(digits, base)
        return -n if m[1] == "-" else n
    return _INF.get(text)


def _timestamp(text: str) -> str | None:
    """RFC 3339 text (seconds, as cty writes time) for a YAML timestamp go-cty-yaml accepts, else None."""
    m = _TIMESTAMP.fullmatch(text)
    if not m:
        return None
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    clock = m.group(4, 5, 6) if m[4] else m.group(8, 9, 10) if m[8] else ("0", "0", "0")
    zone = m[7]
    try:
        tz = UTC
        if zone and zone != "Z":
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        hour, minute, second = (int(x) for x in clock)
        t = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError:
        return None
    out = t.strftime("%Y-%m-%dT%H:%M:%S")
    offset = t.strftime("%z")
    return out + ("Z" if offset in ("", "+0000") else f"{offset[:3]}:{offset[3:]}")


def _plain(text: str) -> Any:
    """What an unquoted, untagged scalar means (go-cty-yaml's guess)."""
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if text in _NAN:
        raise _YamlError("floating point NaN is not supported")
    if text[:1] in ("+", "-", ".") or text[:1].isdigit():
        stamp = _timestamp(text)
        if stamp is not None:
            return stamp
        n = _number(text)
        if n is not None:
            return n
    return text


def _tagged(tag: str, text: str) -> Any:
    """A scalar with an explicit tag: the tag decides, or the value is refused."""
    short = "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag
    if tag == _TAG + "str":
        return text
    if tag == _TAG + "binary":  # cty has no bytes: the base64 text stays, once it is checked
        try:
            base64.b64decode(re.sub(r"[\r\n]", "", text), validate=True)
        except (binascii.Error, ValueError):
            raise _YamlError(f"cannot parse {_q(text)} as {tag}: not valid base64") from None
        return text
    if tag == _TAG + "bool":
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    elif tag in (_TAG + "int", _TAG + "float"):
        if text in _NAN:
            raise _YamlError("floating point NaN is not supported")
        n = _number(text)
        if n is not None:
            return n
    elif tag == _TAG + "null":
        return None
    elif tag == _TAG + "timestamp":
        stamp = _timestamp(text)
        if stamp is not None:
            return stamp
    else:
        raise _YamlError(f"unsupported tag {_q(tag)}")
    raise _YamlError(f"cannot parse {_q(text)} as {short}")


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _key(value: Any, node: Any) -> str:
    if value is None:
        raise _YamlError("mapping key cannot be null", node)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_number(value)
    return str(value)


def _convert(root: Any) -> Any:
    """The value of a composed node graph. Aliases share the node they name: each node is
    converted once (a "billion laughs" file stays linear), and one inside its own anchor fails."""
    import yaml

    done: dict[int, Any] = {}
    active: set[int] = set()

    def conv(node: Any) -> Any:
        nid = id(node)
        if nid in done:
            return done[nid]
        if nid in active:
            raise _YamlError("cannot refer to an anchor from inside its own definition", node)
        active.add(nid)
        try:
            if isinstance(node, yaml.ScalarNode):
                try:
                    out = _plain(node.value) if node.tag == _PLAIN else _tagged(node.tag, node.value)
                except _YamlError as e:
                    raise _YamlError(e.message, node) from None
            elif isinstance(node, yaml.SequenceNode):
                if node.tag != _TAG + "seq":
                    raise _YamlError(f"can't interpret sequence as {node.tag}", node)
                out = [conv(item) for item in node.value]
            else:
                if node.tag != _TAG + "map":
                    raise _YamlError(f"can't interpret mapping as {node.tag}", node)
                obj: dict[str, Any] = {}
                for k, v in node.value:
                    if not isinstance(k, yaml.ScalarNode):
                        raise _YamlError("only strings are allowed as mapping keys", k)
                    obj[_key(conv(k), k)] = conv(v)
                out = obj
        finally:
            active.discard(nid)
        done[nid] = out
        return out

    return conv(root)


def _loader_class() -> Any:
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc,valid-type]
        """PyYAML's parser and composer; no implicit typing (``resolve`` marks plain scalars)."""

        def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
            if kind is yaml.ScalarNode:
                return _PLAIN if implicit[0] else _TAG + "str"
            return _TAG + ("seq" if kind is yaml.SequenceNode else "map")

    return Loader


def _where(node: Any) -> str:
    mark = getattr(node, "start_mark", None)
    return f"on line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def _fn_yamldecode(a: list[Any], c: FuncContext) -> Any:
    arity("yamldecode", a, 1)
    src = as_str("yamldecode", a[0], "src")
    import yaml

    loader = _loader_class()(src)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            problem = e.problem or e.context or "invalid YAML"
            mark = e.problem_mark or e.context_mark
            if "expected a single document" in str(e.context or ""):
                problem = "only a single document is allowed"
            at = f"on line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            raise FuncError(f"yamldecode(): {at}{problem}") from None
        except yaml.YAMLError as e:  # (an unmarked one: a byte the reader refuses)
            raise FuncError(f"yamldecode(): {e}") from None
        finally:
            loader.dispose()
        if root is None:  # an empty document is null, as in go-cty-yaml 1.0.3
            return None
        return _convert(root)
    except _YamlError as e:
        raise FuncError(f"yamldecode(): {_where(e.node)}{e.message}") from None
    except RecursionError:
        raise FuncError("yamldecode(): the document nests too deeply") from None


def _dumper_class() -> Any:
    import yaml

    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class Dumper(base):  # type: ignore[misc,valid-type]
        """Block style, strings double-quoted, numbers as cty writes them."""

    def string(d: Any, v: str) -> Any:
        return d.represent_scalar(_TAG + "str", v, style='"')

    def number(d: Any, v: float) -> Any:  # tagged as its text reads, so that no "!!float" is written
        text = format_number(v)
        return d.represent_scalar(d.resolve(yaml.ScalarNode, text, (True, False)), text)

    def boolean(d: Any, v: bool) -> Any:
        return d.represent_scalar(_TAG + "bool", "true" if v else "false")

    def null(d: Any, v: None) -> Any:
        return d.represent_scalar(_TAG + "null", "null")

    def mapping(d: Any, v: dict[str, Any]) -> Any:
        return d.represent_mapping(_TAG + "map", sorted(v.items()), flow_style=False)

    def sequence(d: Any, v: list[Any]) -> Any:
        return d.represent_sequence(_TAG + "seq", v, flow_style=False)

    for t, f in ((str, string), (int, number), (float, number), (bool, boolean), (type(None), null),
                 (dict, mapping), (list, sequence)):
        Dumper.add_representer(t, f)
    return Dumper


def _fn_yamlencode(a: list[Any], c: FuncContext) -> Any:
    arity("yamlencode", a, 1)
    import yaml

    try:
        text: str = yaml.dump(a[0], Dumper=_dumper_class(), allow_unicode=True, width=80, sort_keys=False)
    except yaml.YAMLError as e:  # (a runtime value inside: the evaluator leaves the call to the client)
        raise FuncError(f"yamlencode(): cannot encode {e}") from None
    if not isinstance(a[0], (str, dict, list)) and not text.endswith("...\n"):
        text += "...\n"  # a lone plain scalar ends its document explicitly, as go-yaml's emitter does
    return text


YAML_FUNCTIONS: dict[str, Func] = {"yamldecode": _fn_yamldecode, "yamlencode": _fn_yamlencode}
