"""Agent config files: Nomad's names, merging, deprecated options, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawexec.agent.agentconfig import (
    AgentConfig,
    load_config,
    parse_bytes,
    parse_config_text,
    parse_duration,
    parse_go_bool,
)
from rawexec.errors import InvalidConfigError, ValidationError
from rawexec.taskenv import DEFAULT_ENV_DENYLIST

FULL = """
data_dir   = "/var/lib/rawexec"
name       = "node-1"
region     = "eu"
datacenter = "dc2"
bind_addr  = "0.0.0.0"
log_level  = "debug"
ports { http = 5656 }
acl { enabled = true }
client {
  enabled = true
  meta { rack = "r1"  count = 3 }
  options = { "env.denylist" = "A_SECRET, B_SECRET" }
  max_kill_timeout = "1m30s"
  cgroup_parent = "rawexec.slice"
  min_dynamic_port = 21000
  max_dynamic_port = 22000
  artifact {
    http_read_timeout = "5m"
    http_max_size = "1GiB"
    decompression_file_count_limit = 10
    decompression_size_limit = "5MB"
    set_environment_variables = "https_proxy"
  }
}
plugin "raw_exec" {
  config {
    enabled          = true
    denied_host_uids = "0,10-15"
    denied_host_gids = "2"
    denied_envvars   = ["*_TOKEN", "AWS_SECRET_KEY"]
  }
}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_full_config(tmp_path: Path) -> None:
    cfg = load_config([write(tmp_path, "a.hcl", FULL)])
    assert (cfg.data_dir, cfg.name, cfg.region, cfg.datacenter) == ("/var/lib/rawexec", "node-1", "eu", "dc2")
    assert cfg.http_address() == ("0.0.0.0", 5656) and cfg.acl_enabled and cfg.log_level == "DEBUG"
    c = cfg.client
    assert dict(c.meta) == {"rack": "r1", "count": "3"}
    assert c.max_kill_timeout == 90 and c.cgroup_parent == "rawexec.slice" == cfg.cgroup_parent
    assert (c.min_dynamic_port, c.max_dynamic_port) == (21000, 22000)
    assert c.artifact.http_read_timeout == 300 and c.artifact.http_max_size == 2**30
    assert c.artifact.decompression_size_limit == 5_000_000 and c.artifact.git_timeout == 1800
    assert cfg.env_denylist == ("A_SECRET", "B_SECRET")
    r = cfg.raw_exec
    assert r.enabled and cfg.raw_exec_enabled and r.denied_host_uids == "0,10-15"
    assert r.denied_envvars == ("*_TOKEN", "AWS_SECRET_KEY")
    assert cfg.sources == (str(tmp_path / "a.hcl"),)


def test_defaults_and_disabled_unless_enabled() -> None:
    cfg = load_config(texts=[("x.hcl", 'data_dir = "/d"')])
    assert not cfg.raw_exec_enabled
    assert cfg.with_dev().raw_exec_enabled
    assert cfg.http_address() is None  # unix socket only
    assert cfg.client.max_kill_timeout == 30 and cfg.client.artifact.http_max_size == 100 * 10**9
    assert (cfg.region, cfg.datacenter, cfg.log_level) == ("global", "dc1", "INFO")
    assert cfg.env_denylist == DEFAULT_ENV_DENYLIST
    assert load_config(texts=[("p", "ports { http = 4747 }")]).http_address() == ("127.0.0.1", 4747)
    with pytest.raises(InvalidConfigError, match="no data_dir: set data_dir"):
        AgentConfig().require_data_dir()
    assert AgentConfig().with_data_dir("rel").require_data_dir().endswith("/rel")


def test_a_relative_data_dir_is_made_absolute_however_the_config_is_built(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """As Nomad's agent: alloc dirs, the API socket and the driver need an absolute data dir."""
    monkeypatch.chdir(tmp_path)
    want = str(tmp_path / "dd1")
    assert AgentConfig(data_dir="dd1").data_dir == want
    assert AgentConfig().with_data_dir("dd1").data_dir == want
    assert load_config(texts=[("x.hcl", 'data_dir = "dd1"')]).data_dir == want
    assert AgentConfig(data_dir="/abs/d").data_dir == "/abs/d"


def test_acl_enabled_flag_allows_a_non_loopback_bind_addr() -> None:
    """``-acl-enabled`` (load_config's acl_enabled) counts for the files' bind_addr, as Nomad merges flags."""
    text = 'bind_addr = "0.0.0.0"\nports { http = 4747 }'
    with pytest.raises(ValidationError, match="not a loopback address"):
        load_config(texts=[("a.hcl", text)])
    cfg = load_config(texts=[("a.hcl", text)], acl_enabled=True)
    assert cfg.acl_enabled and cfg.http_address() == ("0.0.0.0", 4747)


@pytest.mark.parametrize(("value", "enabled"), [("1", True), ("true", True), ("T", True), ("0", False),
                                                 ("False", False), ("yes", False)])
def test_deprecated_client_option(value: str, enabled: bool) -> None:
    cfg = load_config(texts=[("x", f'client {{ options = {{ "driver.raw_exec.enable" = "{value}" }} }}')])
    assert cfg.raw_exec_enabled is enabled
    assert len(cfg.warnings) == 1
    if value == "yes":
        assert cfg.warnings[0] == 'client.options["driver.raw_exec.enable"] = "yes" is not a boolean and is ignored'
    else:
        assert "is deprecated; use plugin \"raw_exec\"" in cfg.warnings[0]


def test_plugin_block_beats_deprecated_option() -> None:
    cfg = load_config(texts=[("x", 'client { options = { "driver.raw_exec.enable" = "1" } }\n'
                                   'plugin "raw_exec" { config { enabled = false } }')])
    assert not cfg.raw_exec_enabled
    assert cfg.warnings == ('client.options["driver.raw_exec.enable"] is ignored: plugin "raw_exec" config '
                            "sets enabled",)


def test_merge_files_and_dirs(tmp_path: Path) -> None:
    d = tmp_path / "conf.d"
    d.mkdir()
    write(d, "10-base.hcl", 'data_dir = "/one"\nclient { meta { a = "1"  b = "1" } }\nlog_level = "WARN"')
    write(d, "20-more.json", json.dumps({"client": {"meta": {"b": "2"}, "max_kill_timeout": "10s"},
                                         "plugin": {"raw_exec": {"config": {"enabled": True}}}}))
    write(d, "ignored.txt", "garbage {{{")
    over = write(tmp_path, "over.hcl", 'data_dir = "/two"\nplugin "raw_exec" { config { no_cgroups = true } }')
    cfg = load_config([d, over])
    assert cfg.data_dir == "/two" and cfg.log_level == "WARN"
    assert dict(cfg.client.meta) == {"a": "1", "b": "2"} and cfg.client.max_kill_timeout == 10
    assert cfg.raw_exec.enabled and cfg.raw_exec.no_cgroups


def test_unknown_keys_did_you_mean() -> None:
    with pytest.raises(ValidationError) as e:
        load_config(texts=[("a.hcl", 'data_dri = "/x"\nclient { max_kil_timeout = "1s" }\n'
                                     'plugin "raw_exec" { config { enabeld = true } }\n'
                                     'zzz = 1\nserver { enabled = true }')])
    errs = e.value.errors
    assert 'a.hcl: unknown key "data_dri" in the top level (did you mean "data_dir"?)' in errs
    assert 'a.hcl: unknown key "max_kil_timeout" in client (did you mean "max_kill_timeout"?)' in errs
    assert 'a.hcl: unknown key "enabeld" in plugin "raw_exec".config (did you mean "enabled"?)' in errs
    assert any(x.startswith('a.hcl: unknown key "zzz" in the top level; known keys here: acl, bind_addr') for x in errs)
    assert 'a.hcl: "server" is a Nomad setting that rawexec does not support; remove it' in errs


@pytest.mark.parametrize(("text", "msg"), [
    ('data_dir = 5', "data_dir must be a string, got 5"),
    ('ports { http = 70000 }', "ports.http must be a port number between 1 and 65535, got 70000"),
    ('ports { http = "web" }', 'ports.http must be an integer, got "web"'),
    ('acl { enabled = "yes" }', 'acl.enabled must be true or false, got "yes"'),
    ('client { max_kill_timeout = "soon" }', 'client.max_kill_timeout: invalid duration "soon"'),
    ('client { max_kill_timeout = 30 }', 'client.max_kill_timeout must be a duration string like "30s", got 30'),
    ('client { max_kill_timeout = "-1s" }', "client.max_kill_timeout must be > 0"),
    ('client { artifact { git_timeout = "-5m" } }', "client.artifact.git_timeout must be > 0"),
    ('client { artifact { http_max_size = "lots" } }', 'client.artifact.http_max_size: invalid size "lots"'),
    ('client { meta { a = [1] } }', 'client.meta["a"] must be a string, got [1]'),
    ('plugin "raw_exec" { config { denied_envvars = "X" } }',
     'plugin "raw_exec".config.denied_envvars must be a list of strings, got "X"'),
    ('plugin "raw_exec" { config { denied_host_uids = "1-100,,200" } }',
     'unable to start validator: invalid range deniedHostUIDs "": range bound not valid'),
    ('plugin "raw_exec" { config { denied_host_gids = "10-5" } }',
     'invalid range deniedHostGIDs "10-5": lower bound cannot be greater than upper bound'),
    ('plugin "docker" { config { } }', 'plugin "docker": only the built-in "raw_exec" plugin can be configured'),
    ('plugin "raw_exec" { args = ["x"] }', 'plugin "raw_exec".args is only for external plugins'),
    ('log_level = "LOUD"', 'Invalid log level: "LOUD". Valid log levels are: [TRACE DEBUG INFO WARN ERROR OFF]'),
    ('bind_addr = "0.0.0.0"', 'bind_addr "0.0.0.0" is not a loopback address: the HTTP API would be reachable '
                              "from the network without authentication; set acl { enabled = true } (or pass "
                              '-acl-enabled), or use bind_addr = "127.0.0.1"'),
    ('bind_addr = "127.0.0.1:4747"', 'bind_addr "127.0.0.1:4747" includes a port: bind_addr takes an address only; '
                                     'use bind_addr = "127.0.0.1" and set the port with ports { http = 4747 }'),
    ('bind_addr = "localhost"', 'bind_addr "localhost" is not an IP address'),
    ('client { min_dynamic_port = 30000\n max_dynamic_port = 20000 }',
     "client.min_dynamic_port (30000) must not be greater than client.max_dynamic_port (20000)"),
    ('name = ""', "name must not be empty"),
    ("client {", "cannot parse config"),
    ("ports = 5", "ports must be a block, got 5"),
])
def test_garbage_values_get_clear_errors(text: str, msg: str) -> None:
    with pytest.raises(InvalidConfigError) as e:
        load_config(texts=[("bad.hcl", text)])
    assert msg in str(e.value)


def test_all_errors_of_all_files_at_once(tmp_path: Path) -> None:
    a = write(tmp_path, "a.hcl", "data_dir = 1")
    b = write(tmp_path, "b.json", '{"log_level": 3, "nme": "x"}')
    with pytest.raises(ValidationError) as e:
        load_config([a, b])
    assert len(e.value.errors) == 3 and str(e.value).startswith("3 errors occurred:")
    with pytest.raises(InvalidConfigError, match=r'config file ".*/missing\.hcl" does not exist'):
        load_config([tmp_path / "missing.hcl"])
    with pytest.raises(InvalidConfigError, match="a config file must hold an object"):
        parse_config_text("[1, 2]", "x.json")


def test_scalar_parsers() -> None:
    assert parse_duration("1h2m3.5s") == 3723.5 and parse_duration("250ms") == 0.25 and parse_duration("0") == 0
    assert parse_duration("1.5h") == 5400 and parse_duration("-2s") == -2 and parse_duration("10us") == 1e-5
    for bad in ("", "5", "1x", "s", "1s2", "--1s"):
        with pytest.raises(InvalidConfigError, match="invalid duration"):
            parse_duration(bad)
    assert parse_bytes("100GB") == 100 * 10**9 and parse_bytes("1 kib") == 1024 and parse_bytes(512) == 512
    assert parse_bytes("1.5MB") == 1_500_000
    with pytest.raises(InvalidConfigError, match="must not be negative"):
        parse_bytes(-1)
    assert parse_go_bool("t") is True and parse_go_bool("FALSE") is False and parse_go_bool("yes") is None


def test_hcl1_style_map_blocks_and_dotted_keys() -> None:
    cfg = load_config(texts=[("x.hcl", 'client {\n  options {\n    "driver.raw_exec.enable" = "1"\n'
                                       '    "env.denylist" = "X"\n  }\n  meta { "rack.id" = "r1" }\n}')])
    assert cfg.raw_exec_enabled and cfg.env_denylist == ("X",) and dict(cfg.client.meta) == {"rack.id": "r1"}
    cfg = load_config(texts=[("x.hcl", 'client { options = { driver.raw_exec.enable = "true" } }')])
    assert cfg.raw_exec_enabled


_KEYS = ["data_dir", "name", "region", "datacenter", "bind_addr", "log_level", "ports", "http", "acl", "enabled",
         "client", "meta", "options", "max_kill_timeout", "cgroup_parent", "artifact", "http_read_timeout",
         "http_max_size", "plugin", "raw_exec", "config", "denied_host_uids", "denied_envvars", "bogus"]


def _json_values() -> st.SearchStrategy[object]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False),
                        st.sampled_from(["", "1s", "-1s", "127.0.0.1", "0.0.0.0", "x", "1-2", "100GB", "INFO"]))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4)), max_leaves=12)


@given(st.dictionaries(st.sampled_from(_KEYS), _json_values(), max_size=6))
@settings(max_examples=150, deadline=None)
def test_garbage_trees_only_raise_invalid_config(tree: dict[str, object]) -> None:
    try:
        load_config(texts=[("fuzz.json", json.dumps(tree))])
    except InvalidConfigError:
        pass


def test_artifact_allow_file_is_off_unless_enabled() -> None:
    from rawexec.agent.agentconfig import load_config

    assert load_config(texts=[("a.hcl", "client {}\n")]).client.artifact.allow_file is False
    cfg = load_config(texts=[("a.hcl", "client {\n  artifact {\n    allow_file = true\n  }\n}\n")])
    assert cfg.client.artifact.allow_file is True
