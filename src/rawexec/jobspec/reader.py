"""Typed field access over an HCL body or a JSON object, with every mistake collected.

The job decoder (:mod:`.decode`) is written once against :class:`Reader`; :class:`HclReader`
reads jobspec names (``kill_timeout = "5s"``) from evaluated HCL, :class:`JsonReader` reads API
names (``"KillTimeout": 5000000000``) from a dict. Both record errors in a shared
:class:`~rawexec.jobspec.diagnostics.Diagnostics` and report unknown names with "did you mean".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from rawexec.jobspec.diagnostics import SEP, Diagnostics, Pos, did_you_mean, path_join
from rawexec.jobspec.durations import HINT as DURATION_HINT
from rawexec.jobspec.durations import ns_to_seconds, parse_duration_ns
from rawexec.jobspec.hcl.evaluator import Evaluator
from rawexec.jobspec.hcl.structure import Block, Body
from rawexec.jobspec.hcl.values import ErrorReported, EvalError, type_name

__all__ = ["SCHEDULER_ONLY", "HclReader", "JsonReader", "Reader"]

_MISSING = object()
_UNREAD = object()

#: Valid Nomad blocks/fields that only steer the scheduler: accepted, warned about, not modelled.
SCHEDULER_ONLY = frozenset({
    "affinity", "spread", "migrate", "scaling", "multiregion", "consul", "disconnect",
    "max_client_disconnect", "stop_after_client_disconnect", "prevent_reschedule_on_lost",
    "dispatch_payload", "csi_plugin", "device", "numa", "ui", "vault_token", "consul_token",
    "consul_namespace", "vault_namespace", "schedule", "secret", "action", "kind",
})


#: The same, by their API JSON names.
SCHEDULER_ONLY_JSON = frozenset({
    "Affinities", "Spreads", "Migrate", "Scaling", "Multiregion", "Consul", "Disconnect", "MaxClientDisconnect",
    "StopAfterClientDisconnect", "PreventRescheduleOnLost", "DispatchPayload", "CSIPluginConfig", "ScalingPolicies",
    "UI", "VaultToken", "ConsulToken", "ConsulNamespace", "VaultNamespace", "Schedule", "Actions", "Kind",
    "Devices", "NUMA",
})


class Reader:
    """Common part: path, diagnostics, bookkeeping of which names were read."""

    is_json = False

    def __init__(self, path: str, diags: Diagnostics, pos: Pos | None) -> None:
        self.path = path
        self.diags = diags
        self.pos = pos
        self.known: set[str] = set()

    # Implemented by subclasses ------------------------------------------------------------------
    def raw(self, hcl: str, json: str) -> tuple[Any, Pos | None]:
        raise NotImplementedError

    def blocks(self, hcl: str, json: str) -> list[Reader]:
        raise NotImplementedError

    def labelled(self, hcl: str, json: str, label_json: str = "Name") -> list[tuple[str, Reader]]:
        raise NotImplementedError

    def strmap(self, hcl: str, json: str) -> dict[str, str]:
        raise NotImplementedError

    def anymap(self, hcl: str, json: str) -> dict[str, Any]:
        raise NotImplementedError

    def finish(self, ignored: Iterable[str] = ()) -> None:
        """Report every name that was not read: ``ignored`` ones (valid Nomad, unused by rawexec) as
        warnings, scheduler-only ones as warnings, all others as errors with "did you mean"."""
        raise NotImplementedError

    def _ignored(self, name: str, pos: Pos | None) -> None:
        self.diags.warn(f'"{name}" is accepted but not used by rawexec; it is ignored', path_join(self.path, name), pos)

    def duration(self, hcl: str, json: str, default: float) -> float:
        raise NotImplementedError

    # Shared typed getters ---------------------------------------------------------------------
    def name(self, hcl: str, json: str) -> str:
        return json if self.is_json else hcl

    def err(self, field: str, message: str, pos: Pos | None = None, hint: str = "") -> None:
        self.diags.error(message, path_join(self.path, field) if field else self.path, pos or self.pos, hint)

    def has(self, hcl: str, json: str) -> bool:
        v, _ = self.raw(hcl, json)
        return v is not _MISSING and v is not None

    def _type_err(self, hcl: str, json: str, want: str, got: Any, pos: Pos | None) -> None:
        field = self.name(hcl, json)
        self.err(field, f'Incorrect attribute value type: inappropriate value for attribute "{field}": '
                        f"{want} is required, got {type_name(got)}", pos)

    def string(self, hcl: str, json: str, default: str = "") -> str:
        v, pos = self.raw(hcl, json)
        if v is _MISSING or v is None:
            return default
        if isinstance(v, str):
            return v
        # HCL converts a number or bool to a string (cty); API JSON does not: Go's decoder refuses
        # `"ID": 123` ("cannot unmarshal number into Go struct field Job.ID of type string")
        if isinstance(v, bool) and not self.is_json:
            return "true" if v else "false"
        if (isinstance(v, int) or (isinstance(v, float) and math.isfinite(v))) and not self.is_json:
            return str(int(v)) if float(v).is_integer() else repr(v)
        self._type_err(hcl, json, "a string", v, pos)
        return default

    def integer(self, hcl: str, json: str, default: int = 0) -> int:
        v, pos = self.raw(hcl, json)
        if v is _MISSING or v is None:
            return default
        if isinstance(v, str) and not self.is_json:
            try:
                v = float(v.strip()) if "." in v or "e" in v.lower() else int(v.strip())
            except ValueError:
                self._type_err(hcl, json, "a number", v, pos)
                return default
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self._type_err(hcl, json, "a number", v, pos)
            return default
        if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
            self.err(self.name(hcl, json), f"a whole number is required, got {v}", pos)
            return default
        iv = int(v)
        if abs(iv) > 2**63 - 1:
            self.err(self.name(hcl, json), f"number {iv} is out of range", pos)
            return default
        return iv

    def boolean(self, hcl: str, json: str, default: bool = False) -> bool:
        v, pos = self.raw(hcl, json)
        if v is _MISSING or v is None:
            return default
        if isinstance(v, bool):
            return v
        if v in ("true", "false") and not self.is_json:
            return bool(v == "true")
        self._type_err(hcl, json, "a bool", v, pos)
        return default

    def strlist(self, hcl: str, json: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        v, pos = self.raw(hcl, json)
        if v is _MISSING or v is None:
            return default
        if not isinstance(v, list):
            self._type_err(hcl, json, "a list of string", v, pos)
            return default
        out: list[str] = []
        for i, item in enumerate(v):
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, (int, float)) and not isinstance(item, bool) and not self.is_json:
                out.append(str(int(item)) if float(item).is_integer() else repr(item))
            elif isinstance(item, bool) and not self.is_json:
                out.append("true" if item else "false")
            else:
                self.err(f"{self.name(hcl, json)}[{i}]",
                         f"Incorrect attribute value type: element {i}: a string is required, got "
                         f"{type_name(item)}", pos)
        return tuple(out)

    def block(self, hcl: str, json: str) -> Reader | None:
        bs = self.blocks(hcl, json)
        if len(bs) > 1:
            self.err(self.name(hcl, json), f'Duplicate {hcl} block: only one "{hcl}" block is allowed here',
                     bs[1].pos, "merge the blocks into one")
        return bs[0] if bs else None


class HclReader(Reader):
    """Reads one HCL :class:`Body`: attributes are evaluated on first use."""

    def __init__(self, body: Body, ev: Evaluator, path: str, diags: Diagnostics, pos: Pos | None = None) -> None:
        # Reader.__init__, inlined: one of these is made for every block of the job file.
        self.path = path
        self.diags = diags
        self.pos = pos = pos or body.pos
        self.known: set[str] = set()
        self.body = body
        self.ev = ev
        self.cache: dict[str, Any] = {}
        self._by_type: dict[str, list[Block]] | None = None
        diags.locations.setdefault(path, pos or body.pos)

    def _typed(self) -> dict[str, list[Block]]:
        """The body's blocks by type, in source order (built on first use)."""
        if self._by_type is None:
            by_type: dict[str, list[Block]] = {}
            for b in self.body.blocks:
                by_type.setdefault(b.type, []).append(b)
            self._by_type = by_type
        return self._by_type

    def raw(self, hcl: str, json: str) -> tuple[Any, Pos | None]:
        self.known.add(hcl)
        body = self.body
        attr = body.attrs.get(hcl)
        if attr is None:
            if body.blocks:
                same = self._typed().get(hcl)
                if same:
                    self.err(hcl, f'Unsupported block type: "{hcl}" is an argument here, not a block',
                             same[0].pos, f"write {hcl} = ...")
            return _MISSING, None
        cache = self.cache
        value = cache.get(hcl, _UNREAD)
        if value is _UNREAD:  # the first read: record where the field is written, and evaluate it
            self.diags.locations.setdefault(path_join(self.path, hcl), attr.pos)
            try:
                value = self.ev.evaluate(attr.expr)
            except EvalError as exc:
                if not isinstance(exc, ErrorReported):  # else: reported where the value failed
                    self.err(hcl, exc.message, exc.pos or attr.pos, exc.hint)
                self.diags.failed.add(path_join(self.path, hcl))
                value = _MISSING
            cache[hcl] = value
        return value, attr.pos

    def _blocks_of(self, hcl: str, allow_attr: bool = False) -> list[Block]:
        self.known.add(hcl)
        same = self._typed().get(hcl) if self.body.blocks else None
        found = list(same) if same else []
        if allow_attr:
            if found and hcl in self.body.attrs:
                self.err(hcl, f'"{hcl}" is set twice: as an argument and as a block', found[0].pos,
                         "use one form")
            return found
        if hcl in self.body.attrs:
            self.err(hcl, f'Unsupported argument: "{hcl}" is a block here, not an argument',
                     self.body.attrs[hcl].pos, f"write {hcl} {{ ... }}")
        return found

    def _child(self, b: Block, elem: str) -> HclReader:
        return HclReader(b.body, self.ev, path_join(self.path, elem), self.diags, b.pos)

    def blocks(self, hcl: str, json: str) -> list[Reader]:
        out: list[Reader] = []
        found = self._blocks_of(hcl)
        for i, b in enumerate(found):
            if b.labels:
                self.err(hcl, f'Extraneous label for {hcl}: no labels are expected for "{hcl}" blocks', b.pos,
                         f"write {hcl} {{ ... }}")
            out.append(self._child(b, hcl if len(found) == 1 else f"{hcl}[{i}]"))
        return out

    def labelled(self, hcl: str, json: str, label_json: str = "Name") -> list[tuple[str, Reader]]:
        out: list[tuple[str, Reader]] = []
        for b in self._blocks_of(hcl):
            if len(b.labels) != 1:
                self.err(hcl, f'Missing name for {hcl}: a "{hcl}" block needs exactly one label', b.pos,
                         f'write {hcl} "name" {{ ... }}')
                continue
            out.append((b.labels[0], self._child(b, f'{hcl} "{b.labels[0]}"')))
        return out

    def strmap(self, hcl: str, json: str) -> dict[str, str]:
        out: dict[str, str] = {}
        blocks = self._blocks_of(hcl, allow_attr=True)
        if hcl in self.body.attrs:
            v, pos = self.raw(hcl, json)
            if v is _MISSING or v is None:
                return out
            if not isinstance(v, dict):
                self._type_err(hcl, json, "a map of string", v, pos)
                return out
            items: list[tuple[str, Any, Pos | None]] = [(k, x, pos) for k, x in v.items()]
        else:
            items = []
            for b in blocks:
                child = self._child(b, hcl)
                for nb in b.body.blocks:
                    self.err(hcl, f'Unexpected "{nb.type}" block: {hcl} only holds name = value pairs', nb.pos)
                for k, attr in b.body.attrs.items():
                    val, _ = child.raw(k, k)
                    if val is not _MISSING:
                        items.append((k, val, attr.pos))
        for k, x, pos in items:
            if isinstance(x, str):
                out[k] = x
            elif isinstance(x, (bool, int, float)):
                out[k] = ("true" if x else "false") if isinstance(x, bool) else (
                    str(int(x)) if float(x).is_integer() else repr(x))
            else:
                self.err(f"{hcl}{SEP}{k}", f'Incorrect attribute value type: "{k}": a string is required, got '
                                          f"{type_name(x)}", pos)
        return out

    def anymap(self, hcl: str, json: str) -> dict[str, Any]:
        blocks = self._blocks_of(hcl, allow_attr=True)
        if hcl in self.body.attrs:
            v, pos = self.raw(hcl, json)
            if v is _MISSING or v is None:
                return {}
            if not isinstance(v, dict):
                self._type_err(hcl, json, "an object", v, pos)
                return {}
            return v
        out: dict[str, Any] = {}
        for b in blocks:
            out.update(self._block_value(self._child(b, hcl), b.body))
        return out

    def _block_value(self, child: HclReader, body: Body) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in body.attrs:
            v, _ = child.raw(k, k)
            if v is not _MISSING:
                out[k] = v
        for nb in body.blocks:
            sub = HclReader(nb.body, self.ev, path_join(child.path, nb.type), self.diags, nb.pos)
            value = self._block_value(sub, nb.body)
            for lab in reversed(nb.labels):
                value = {lab: value}
            lst = out.setdefault(nb.type, [])
            if isinstance(lst, list):
                lst.append(value)
        return out

    def duration(self, hcl: str, json: str, default: float) -> float:
        v, pos = self.raw(hcl, json)
        if v is _MISSING or v is None:
            return default
        if not isinstance(v, str):
            self.err(hcl, f'Incorrect attribute value type: inappropriate value for attribute "{hcl}": a duration '
                          f"string is required, got {type_name(v)}", pos, DURATION_HINT)
            return default
        try:
            return ns_to_seconds(parse_duration_ns(v))
        except ValueError as exc:
            self.err(hcl, f'Invalid duration "{v}": {exc}', pos, DURATION_HINT)
            return default

    def finish(self, ignored: Iterable[str] = ()) -> None:
        body = self.body
        if not ignored and self.known.issuperset(body.attrs) and (
                not body.blocks or self.known.issuperset(self._typed())):
            return  # every argument and block was read: nothing to report (the common case)
        skip = set(ignored)
        known = self.known | skip
        for name, attr in self.body.attrs.items():
            if name in skip and name not in self.known:
                self._ignored(name, attr.pos)
            elif name not in known:
                self._unknown(name, "argument", attr.pos, known)
        for b in self.body.blocks:
            if b.type in skip and b.type not in self.known:
                self._ignored(b.type, b.pos)
            elif b.type not in known:
                self._unknown(b.type, "block type", b.pos, known)

    def _unknown(self, name: str, what: str, pos: Pos, known: set[str]) -> None:
        if name in SCHEDULER_ONLY:
            self.diags.warn(f'"{name}" is a Nomad scheduler feature that rawexec does not use; it is ignored',
                            path_join(self.path, name), pos)
            return
        if name == "dynamic":
            self.err(name, 'Unsupported block type: "dynamic" blocks are not supported by rawexec', pos,
                     "write the blocks out, or generate the job file")
            return
        hint = did_you_mean(name, known)
        if not hint:
            hint = "expected one of: " + ", ".join(sorted(known))
        self.err("", f'Unsupported {what}: {"an argument" if what == "argument" else "blocks of type"} '
                     f'"{name}" {"is" if what == "argument" else "are"} not expected here', pos, hint)


class JsonReader(Reader):
    """Reads one object of Nomad's API JSON (PascalCase names, durations in nanoseconds)."""

    is_json = True

    def __init__(self, obj: dict[str, Any], path: str, diags: Diagnostics) -> None:
        super().__init__(path, diags, None)
        self.obj = obj

    def raw(self, hcl: str, json: str) -> tuple[Any, Pos | None]:
        self.known.add(json)
        return self.obj.get(json, _MISSING), None

    def _objs(self, json: str) -> list[dict[str, Any]]:
        v, _ = self.raw("", json)
        if v is _MISSING or v is None:
            return []
        if isinstance(v, dict):
            return [v]
        if isinstance(v, list) and all(isinstance(x, dict) for x in v):
            return v
        self.err(json, f"{json} must be an object or a list of objects, got {type_name(v)}")
        return []

    def blocks(self, hcl: str, json: str) -> list[Reader]:
        objs = self._objs(json)
        many = len(objs) > 1 or isinstance(self.obj.get(json), list)
        return [JsonReader(o, path_join(self.path, f"{json}[{i}]" if many else json), self.diags)
                for i, o in enumerate(objs)]

    def labelled(self, hcl: str, json: str, label_json: str = "Name") -> list[tuple[str, Reader]]:
        out: list[tuple[str, Reader]] = []
        for i, o in enumerate(self._objs(json)):
            label = o.get(label_json)
            if not isinstance(label, str):
                label = ""
            child = JsonReader(o, path_join(self.path, f'{hcl} "{label}"' if label else f"{json}[{i}]"),
                               self.diags)
            if o.get(label_json) is not None and not label:
                child.string("", label_json)  # the type error, named
            child.known.add(label_json)
            out.append((label, child))
        return out

    def strmap(self, hcl: str, json: str) -> dict[str, str]:
        v, _ = self.raw(hcl, json)
        if v is _MISSING or v is None:
            return {}
        if not isinstance(v, dict):
            self._type_err(hcl, json, "a map of string", v, None)
            return {}
        out: dict[str, str] = {}
        for k, x in v.items():
            if isinstance(x, str):
                out[str(k)] = x
            else:
                self.err(f"{json}{SEP}{k}", f"a string is required, got {type_name(x)}")
        return out

    def anymap(self, hcl: str, json: str) -> dict[str, Any]:
        v, _ = self.raw(hcl, json)
        if v is _MISSING or v is None:
            return {}
        if not isinstance(v, dict):
            self._type_err(hcl, json, "an object", v, None)
            return {}
        return v

    def duration(self, hcl: str, json: str, default: float) -> float:
        v, _ = self.raw(hcl, json)
        if v is _MISSING or v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            self.err(json, f"{json} must be a duration in integer nanoseconds, got {type_name(v)}")
            return default
        return ns_to_seconds(v)

    def finish(self, ignored: Iterable[str] = ()) -> None:
        skip = set(ignored)
        known = self.known | skip
        for k, v in self.obj.items():
            if k in self.known or _empty(v):
                continue
            if k in skip:
                self._ignored(k, None)
                continue
            if k in SCHEDULER_ONLY_JSON:
                self.diags.warn(f'"{k}" is a Nomad scheduler feature that rawexec does not use; it is ignored',
                                path_join(self.path, k))
                continue
            if k[:1].islower():
                hint = did_you_mean(k, known) or "the API JSON uses PascalCase names, e.g. \"KillTimeout\""
            else:
                hint = did_you_mean(k, known) or "expected one of: " + ", ".join(sorted(known))
            self.err("", f'Unsupported field "{k}": not a field of this object, or not supported by rawexec',
                     None, hint)


def _empty(v: Any) -> bool:
    return v is None or v is False or v in (0, "", [], {})
