from __future__ import annotations

import logging

import pytest

from rawexec import DriverConfig
from rawexec.driver.config import TaskDriverConfig, filter_env, parse_go_bool, parse_id_ranges
from rawexec.driver.prepare import parse_signal
from rawexec.errors import InvalidConfigError


def test_defaults_are_secure() -> None:
    cfg = DriverConfig()
    assert cfg.enabled is False and cfg.no_cgroups is False
    assert DriverConfig.from_plugin_config({}) == DriverConfig(state_dir=cfg.state_dir)


def test_plugin_config_round_trips() -> None:
    cfg = DriverConfig.from_plugin_config({"enabled": True, "no_cgroups": True, "denied_host_uids": "0-10",
                                           "denied_host_gids": "5", "denied_envvars": ["AWS_*"]})
    assert (cfg.enabled, cfg.no_cgroups, cfg.denied_envvars) == (True, True, ("AWS_*",))
    assert [(r.low, r.high) for r in cfg.uid_ranges()] == [(0, 10)]


@pytest.mark.parametrize(("cfg", "msg"), [
    ({"enabled": "yes"}, "enabled must be a boolean"),
    ({"enabeld": True}, "unknown raw_exec plugin option 'enabeld'"),
    ({"denied_host_uids": "100-1"},
     'invalid range deniedHostUIDs "100-1": lower bound cannot be greater than upper bound'),
    ({"denied_host_gids": "1-100,,200"}, 'invalid range deniedHostGIDs "": range bound not valid'),
    ({"denied_host_uids": "abc"}, 'invalid range deniedHostUIDs "abc": range bound not valid'),
    ({"denied_host_uids": "1-99999999999"}, "range bound not valid"),
    ({"denied_host_uids": 5}, "denied_host_uids must be a string"),
    ({"denied_envvars": "AWS_*"}, "denied_envvars must be a list of strings"),
])
def test_plugin_config_errors(cfg: dict[str, object], msg: str) -> None:
    with pytest.raises(InvalidConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        DriverConfig.from_plugin_config(cfg)


def test_client_options_go_bools_and_deprecation(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    cfg = DriverConfig.from_client_options({"driver.raw_exec.enable": "1", "driver.raw_exec.no_cgroups": "T"})
    assert cfg.enabled and cfg.no_cgroups
    assert "deprecated" in caplog.text
    # unparsable values are ignored, as Nomad's loader does
    assert DriverConfig.from_client_options({"driver.raw_exec.enable": "maybe"}).enabled is False
    for s in ("1", "t", "T", "TRUE", "true", "True"):
        assert parse_go_bool(s) is True
    for s in ("0", "f", "F", "FALSE", "false", "False"):
        assert parse_go_bool(s) is False
    assert parse_go_bool("yes") is None


def test_id_ranges() -> None:
    rs = parse_id_ranges("0, 5-7 ,100", "deniedHostUIDs")
    assert [(r.low, r.high) for r in rs] == [(0, 0), (5, 7), (100, 100)]
    assert 6 in rs[1] and 8 not in rs[1]
    assert parse_id_ranges("", "deniedHostUIDs") == ()


@pytest.mark.parametrize(("raw", "msg"), [
    ({"command": "/bin/true", "cgroup_v2_override": "custom.slice/app.scope", "cgroup_v1_override": {"pids": "x"}},
     "failed driver config validation: only one of cgroups_v1_override and cgroups_v2_override may be set"),
    ({"command": "/bin/true", "oom_score_adj": -1},
     "failed driver config validation: oom_score_adj must not be negative"),
    ({"command": "/bin/true", "work_dir": "bad/path"},
     "failed driver config validation: work_dir must be an absolute path"),
    ({}, 'The argument "command" is required'),
    ({"command": ""}, 'The argument "command" is required'),
    ({"command": "   "}, 'The argument "command" is required'),
    ({"command": 5}, "command must be a string"),
    ({"command": "/bin/true", "args": "-c x"}, "args must be a list of strings"),
    ({"command": "/bin/true", "args": [{"a": 1}]}, "args must be a list of strings"),
    ({"command": "/bin/true", "oom_score_adj": "high"}, "oom_score_adj must be an integer"),
    ({"command": "/bin/true", "comand": "x"}, 'unsupported argument "comand"'),
    ({"command": "/bin/true", "cgroup_v1_override": "pids"}, "cgroup_v1_override must be a map"),
])
def test_task_config_errors(raw: dict[str, object], msg: str) -> None:
    with pytest.raises(InvalidConfigError) as ei:
        TaskDriverConfig.decode(raw)
    assert msg in str(ei.value)


def test_task_config_parse_all() -> None:
    cfg = TaskDriverConfig.decode({"command": "/bin/bash", "args": ["-c", "echo hello"]})
    assert cfg.command == "/bin/bash" and cfg.args == ("-c", "echo hello")
    v1 = TaskDriverConfig.decode({"command": "x", "cgroup_v1_override": [{"pids": "a"}, {"cpuset": "b"}]})
    assert dict(v1.cgroup_v1_override) == {"pids": "a", "cpuset": "b"}


GEN_ENV = {"NOMAD_TOKEN": "abcd", "GITHUB_TOKEN": "efg", "AWS_SECRET_KEY": "hij", "NOMAD_ADDR": "klm",
           "TEST_TOKEN": "nop", "TEST_AWS_VAR": "qrs", "VAR_TEST_AWS": "tuv", "PORT": "wxyz"}


@pytest.mark.parametrize(("deny", "want"), [
    (["AWS_SECRET_KEY", "NOMAD_TOKEN", "GITHUB_TOKEN"],
     ["NOMAD_ADDR=klm", "PORT=wxyz", "TEST_AWS_VAR=qrs", "TEST_TOKEN=nop", "VAR_TEST_AWS=tuv"]),
    (["AWS_SECRET_KEY", "*_TOKEN"], ["NOMAD_ADDR=klm", "PORT=wxyz", "TEST_AWS_VAR=qrs", "VAR_TEST_AWS=tuv"]),
    (["*AWS*"], ["GITHUB_TOKEN=efg", "NOMAD_ADDR=klm", "NOMAD_TOKEN=abcd", "PORT=wxyz", "TEST_TOKEN=nop"]),
])
def test_build_env_list_matches_nomad(deny: list[str], want: list[str]) -> None:
    assert [f"{k}={v}" for k, v in filter_env(GEN_ENV, deny).items()] == want


def test_signal_names_are_checked() -> None:
    assert parse_signal("SIGHUP") == 1
    assert parse_signal("term") == 15
    assert parse_signal(None) == 2  # default SIGINT, as Nomad
    with pytest.raises(InvalidConfigError, match="unknown signal 'SIGFOO'"):
        parse_signal("SIGFOO")
    with pytest.raises(InvalidConfigError):
        parse_signal(999)
