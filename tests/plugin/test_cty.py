"""msgpack-cty: the golden vectors from the facts (§3.3), lenient decoding, clear errors."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawexec.errors import InvalidConfigError
from rawexec.plugin import cty
from rawexec.plugin.hclspec import (
    Array,
    Attr,
    Block,
    BlockAttrs,
    BlockList,
    BlockMap,
    BlockSet,
    Default,
    Literal,
    Object,
    plugin_config_spec,
    task_config_spec,
)

GOLDEN_SPEC = Object({
    "command": Attr("string", required=True),
    "args": Attr("list(string)"),
    "labels": Attr("map(string)"),
    "cpu_weight": Attr("number"),
    "privileged": Default(Attr("bool", name="privileged"), Literal("false")),
    "opts": Attr("any"),
    "mount": BlockList(Object({"source": Attr("string", required=True), "ro": Attr("bool")})),
    "health": Block(Object({"path": Attr("string")})),
})

MINIMAL_HEX = ("88a461726773c0a7636f6d6d616e64a92f62696e2f74727565aa6370755f776569676874c0a66865616c7468c0a6"
               "6c6162656c73c0a56d6f756e7490a46f707473c0aa70726976696c65676564c2")
FULL_INPUT = ('{"command":"/bin/echo","args":["hi","${NOMAD_TASK_NAME}"],"labels":{"b":"2","a":"1"},'
              '"cpu_weight":1.5,"privileged":true,"opts":{"x":1,"y":[true,"z"]},'
              '"mount":[{"source":"/a","ro":true},{"source":"/c"}],"health":[{"path":"/h"}]}')
FULL_HEX = ("88a46172677392a26869a3776562a7636f6d6d616e64a92f62696e2f6563686faa6370755f776569676874cb3ff8"
            "000000000000a66865616c746881a470617468a22f68a66c6162656c7382a161a131a162a132a56d6f756e749282"
            "a2726fc3a6736f75726365a22f6182a2726fc0a6736f75726365a22f63a46f70747382a17801a17992c3a17aaa70"
            "726976696c65676564c3")
FULL_DECODED = {"args": ["hi", "web"], "command": "/bin/echo", "cpu_weight": 1.5, "health": {"path": "/h"},
                "labels": {"a": "1", "b": "2"},
                "mount": [{"ro": True, "source": "/a"}, {"ro": None, "source": "/c"}],
                "opts": {"x": 1, "y": [True, "z"]}, "privileged": True}
BLOCKS_SPEC = Object({"ba": BlockAttrs("string"), "bm": BlockMap(("name",), Object({"v": Attr("string")})),
                      "bs": BlockSet(Object({"v": Attr("string")})), "tu": Array((Attr("string", name="t1"),))})


def _json(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def test_golden_minimal_encodes_byte_exact_and_decodes() -> None:
    value = cty.hcldec(GOLDEN_SPEC, {"command": "/bin/true"})
    assert cty.encode(value).hex() == MINIMAL_HEX
    assert cty.decode(GOLDEN_SPEC, bytes.fromhex(MINIMAL_HEX)) == {
        "args": None, "command": "/bin/true", "cpu_weight": None, "health": None, "labels": None,
        "mount": [], "opts": None, "privileged": False}


def test_golden_full_input_with_interpolation() -> None:
    value = cty.hcldec(GOLDEN_SPEC, _json(FULL_INPUT), {"NOMAD_TASK_NAME": "web"})
    assert cty.encode(value).hex() == FULL_HEX
    assert cty.decode(GOLDEN_SPEC, bytes.fromhex(FULL_HEX)) == FULL_DECODED


def test_golden_numbers_under_any() -> None:
    nums = _json("[0,-1,127,128,-33,65536,4294967296,0.1,1e300,12345678901234567890123]")
    raw = cty.encode(nums)
    prefix = "9a" + "00ff7fcc80d0dfce00010000cf0000000100000000"
    assert raw.hex().startswith(prefix)
    decoded = msgpack.unpackb(raw, raw=False)
    assert decoded[:7] == [0, -1, 127, 128, -33, 65536, 4294967296]
    assert decoded[7] == "0.1"
    assert decoded[8] == "1" + "0" * 300 and raw[len(prefix) // 2 + 4] == 0xDA  # str16
    assert decoded[9] == "12345678901234567890123"
    # Lenient decoding of those as `number`: int, float or decimal string all work.
    spec = Object({"n": Attr("list(number)")})
    got = cty.decode(spec, msgpack.packb({"n": decoded}))["n"]
    assert got[:7] == [0, -1, 127, 128, -33, 65536, 4294967296]
    assert got[7] == 0.1 and got[8] == 10**300 and got[9] == 12345678901234567890123


def test_golden_absent_block_kinds() -> None:
    value = cty.hcldec(BLOCKS_SPEC, {})
    assert cty.encode(value).hex() == "84a26261c0a2626d80a2627390a2747591c0"
    assert cty.decode(BLOCKS_SPEC, bytes.fromhex("84a26261c0a2626d80a2627390a2747591c0")) == {
        "ba": None, "bm": {}, "bs": [], "tu": [None]}


def test_golden_present_block_kinds_set_sorted() -> None:
    body = _json('{"bm":{"x":{"v":"1"}},"ba":{"k":"v"},"bs":[{"v":"b"},{"v":"a"}],"t1":"q"}')
    value = cty.hcldec(BLOCKS_SPEC, body)
    assert value == {"ba": {"k": "v"}, "bm": {"x": {"v": "1"}}, "bs": [{"v": "a"}, {"v": "b"}], "tu": ["q"]}
    assert cty.decode(BLOCKS_SPEC, cty.encode(value)) == value


def test_golden_plugin_default_true() -> None:
    spec = Object({"enabled": Default(Attr("bool", name="enabled"), Literal("true"))})
    assert cty.encode(cty.hcldec(spec, {})).hex() == "81a7656e61626c6564c3"
    assert cty.decode(spec, bytes.fromhex("81a7656e61626c6564c3")) == {"enabled": True}


def test_hcldec_errors_use_hcl_summaries() -> None:
    with pytest.raises(InvalidConfigError, match='Missing required argument; The argument "command" is required'):
        cty.hcldec(GOLDEN_SPEC, {})
    with pytest.raises(InvalidConfigError, match='Invalid label; No argument or block type is named "bogus"'):
        cty.hcldec(GOLDEN_SPEC, {"command": "x", "bogus": 1})


def test_raw_exec_plugin_config_defaults() -> None:
    assert cty.decode(plugin_config_spec(), cty.encode(cty.hcldec(plugin_config_spec(), {}))) == {
        "enabled": False, "no_cgroups": False, "denied_host_uids": None, "denied_host_gids": None,
        "denied_envvars": None}


def test_lenient_numbers_nil_and_missing_keys() -> None:
    spec = task_config_spec()
    raw = msgpack.packb({"command": "/bin/sleep", "oom_score_adj": "10", "args": None})
    got = cty.decode(spec, raw, "task config")
    assert got["command"] == "/bin/sleep" and got["oom_score_adj"] == 10 and got["args"] is None
    assert got["work_dir"] is None  # a key that is missing entirely counts as unset
    assert cty.decode(spec, msgpack.packb({"command": "x", "oom_score_adj": 5.0}))["oom_score_adj"] == 5
    assert cty.decode(spec, msgpack.packb({"command": "x", "oom_score_adj": 2.5}))["oom_score_adj"] == 2.5
    inf = cty.decode(Object({"n": Attr("number")}), msgpack.packb({"n": math.inf}))["n"]
    assert inf == math.inf
    assert cty.decode(plugin_config_spec(), b"") == cty.decode(plugin_config_spec(), b"\x80")


@pytest.mark.parametrize(("payload", "field", "expect"), [
    ({"command": ["a"]}, "command", "expected a string, got list"),
    ({"command": "x", "args": "a b"}, "args", "expected a list, got string"),
    ({"command": "x", "args": ["a", {"k": 1}]}, "args[1]", "expected a string, got map"),
    ({"command": "x", "oom_score_adj": "ten"}, "oom_score_adj", "expected a number, got the string 'ten'"),
    ({"command": "x", "oom_score_adj": True}, "oom_score_adj", "expected a number, got bool"),
    ({"command": "x", "cgroup_v1_override": {"pids": "a"}}, "cgroup_v1_override", "expected a list, got map"),
    ({"command": None}, "command", "is required"),
])
def test_wrong_types_name_the_field(payload: dict[str, Any], field: str, expect: str) -> None:
    with pytest.raises(InvalidConfigError) as ei:
        cty.decode(task_config_spec(), msgpack.packb(payload), "task config")
    assert f'task config field "{field}"' in str(ei.value)
    assert expect in str(ei.value)


def test_plugin_config_bool_type_errors() -> None:
    with pytest.raises(InvalidConfigError, match=r'plugin config field "enabled": expected a bool'):
        cty.decode(plugin_config_spec(), msgpack.packb({"enabled": "yes"}), "plugin config")
    assert cty.decode(plugin_config_spec(), msgpack.packb({"enabled": "true"}))["enabled"] is True


@pytest.mark.parametrize("data", [b"\xc1", b"\x85\xa1a", b"\x81\xa1a\x01\xff\xff", b"\xd9"])
def test_malformed_msgpack_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(InvalidConfigError, match="task config is not valid msgpack"):
        cty.decode(task_config_spec(), data, "task config")


def test_absurd_nesting_is_a_clear_error() -> None:
    with pytest.raises(InvalidConfigError, match="not valid msgpack"):
        cty.decode(task_config_spec(), b"\x81\xa7command" + b"\x91" * 100_000 + b"\x01", "task config")
    with pytest.raises(InvalidConfigError, match="nests too deeply"):
        cty.decode(Object({"opts": Attr("any")}), b"\x81\xa4opts" + b"\x91" * 900 + b"\x01", "task config")


def test_root_must_be_a_map() -> None:
    with pytest.raises(InvalidConfigError, match=r"must be an object \(a msgpack map\), got list"):
        cty.decode(task_config_spec(), msgpack.packb([1, 2]), "task config")


def test_literal_must_be_constant() -> None:
    assert cty.evaluate_literal('"bash"') == "bash"
    assert cty.evaluate_literal("[]") == []
    assert cty.evaluate_literal("10") == 10
    with pytest.raises(InvalidConfigError, match="not a constant HCL expression"):
        cty.evaluate_literal("var.x")


_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=60, deadline=None)
@given(command=_text.filter(bool), args=st.none() | st.lists(_text, max_size=4),
       oom=st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
       work_dir=st.none() | _text, denied=st.none() | st.lists(_text, max_size=3))
def test_task_config_round_trip(command: str, args: list[str] | None, oom: int | None, work_dir: str | None,
                                denied: list[str] | None) -> None:
    body: dict[str, Any] = {"command": command}
    for key, val in (("args", args), ("oom_score_adj", oom), ("work_dir", work_dir), ("denied_envvars", denied)):
        if val is not None:
            body[key] = val
    value = cty.hcldec(task_config_spec(), body)
    decoded = cty.decode(task_config_spec(), cty.encode(value))
    assert decoded == value
    assert list(msgpack.unpackb(cty.encode(value), raw=False)) == sorted(task_config_spec().attributes)
