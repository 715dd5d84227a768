"""The artifact block's validation (Nomad's messages) and the client artifact {} config."""

from __future__ import annotations

import pytest

from rawexec.artifacts import ArtifactSpec, GetterConfig, parse_checksum, validate_artifact
from rawexec.artifacts.config import parse_duration, parse_size
from rawexec.artifacts.source import SourceError, resolve_source
from rawexec.errors import InvalidConfigError, ValidationError


def test_defaults_are_nomads() -> None:
    spec = ArtifactSpec("https://example.com/x")
    assert (spec.destination, spec.mode, dict(spec.options), dict(spec.headers)) == ("local/", "any", {}, {})
    cfg = GetterConfig()
    assert cfg.http_read_timeout == 1800 and cfg.http_max_size == 100_000_000_000
    assert cfg.decompression_file_count_limit == 4096 and cfg.decompression_size_limit == 100_000_000_000
    assert cfg.git_timeout == 1800 and not cfg.disable_filesystem_isolation and not cfg.allow_file
    assert cfg.deadline == 1800 + 60


@pytest.mark.parametrize(("spec", "errors"), [
    (ArtifactSpec(""), ["source must be specified"]),
    (ArtifactSpec("http://x/y", mode="folder"),
     ['invalid artifact mode "folder"; must be one of: any, file, dir']),
    (ArtifactSpec("http://x/y", destination="../../x"), ["destination escapes allocation directory"]),
    (ArtifactSpec("http://x/y", destination="/../../etc"), ["destination escapes allocation directory"]),
    (ArtifactSpec("http://x/y", options={"checksum": "md5:00"}), ["invalid md5 checksum: 00"]),
    (ArtifactSpec("http://x/y", options={"archive": "rar"}),
     ['unsupported archive type "rar": use one of bz2, gz, tar, tar.bz2, tar.gz, tar.xz, tar.zst, tbz2, '
      'tgz, txz, tzst, xz, zip, zst, or "false" to keep the file as it is']),
    (ArtifactSpec("", mode="x", destination="../../y"),
     ["source must be specified", 'invalid artifact mode "x"; must be one of: any, file, dir',
      "destination escapes allocation directory"]),
])
def test_validation_messages(spec: ArtifactSpec, errors: list[str]) -> None:
    assert validate_artifact(spec) == errors
    with pytest.raises(ValidationError) as err:
        spec.validate()
    assert err.value.errors == errors


@pytest.mark.parametrize("spec", [
    ArtifactSpec("http://x/y", destination="../alloc/data"),
    ArtifactSpec("http://x/y", destination="local/sub/"),
    ArtifactSpec("http://x/y", destination="/local/x"),  # absolute: below the task dir, as Nomad
    ArtifactSpec("http://x/y", destination="${NOMAD_TASK_DIR}/x"),  # checked after interpolation
    ArtifactSpec("http://x/y", options={"checksum": "sha256:${SUM}"}),
    ArtifactSpec("http://x/y", options={"checksum": "file:https://x/SHA256SUMS"}),  # Nomad #9764
    ArtifactSpec("http://x/y", options={"archive": "false"}),
])
def test_valid_blocks(spec: ArtifactSpec) -> None:
    assert validate_artifact(spec) == []
    spec.validate()


@pytest.mark.parametrize(("value", "expected"), [
    ("sha256:" + "ab" * 32, ("sha256", bytes.fromhex("ab" * 32))),
    ("SHA1:" + "00" * 20, ("sha1", bytes(20))),
    ("sha512:" + "11" * 64, ("sha512", bytes.fromhex("11" * 64))),
    ("file:https://h/sums", ("file", "https://h/sums")),
])
def test_parse_checksum(value: str, expected: tuple[str, object]) -> None:
    assert parse_checksum(value) == expected


def test_config_from_client_block() -> None:
    cfg = GetterConfig.from_dict({"http_read_timeout": "5m", "http_max_size": "1GB", "git_timeout": "1h30m",
                                  "decompression_size_limit": "512MiB", "decompression_file_count_limit": 10,
                                  "disable_filesystem_isolation": True, "set_environment_variables": "A, B"})
    assert cfg.http_read_timeout == 300 and cfg.http_max_size == 1_000_000_000
    assert cfg.git_timeout == 5400 and cfg.decompression_size_limit == 512 << 20
    assert cfg.passthrough_env == ["A", "B"] and cfg.deadline == 5400 + 60
    assert parse_duration("500ms", "x") == 0.5 and parse_size("0", "x") == 0
    assert GetterConfig(http_read_timeout=0, git_timeout=0).deadline == 1800 + 60  # 0 = no timeout


@pytest.mark.parametrize(("raw", "message"), [
    ({"http_read_timeout": "-5m"}, "http_read_timeout must be > 0"),
    ({"http_read_timeout": "5 minutes"}, 'http_read_timeout: invalid duration "5 minutes"'),
    ({"git_timeout": -1}, "git_timeout must be > 0"),
    ({"http_max_size": "lots"}, 'http_max_size: invalid size "lots"'),
    ({"decompression_file_count_limit": -1}, "decompression_file_count_limit must be >= 0"),
    ({"allow_file": "yes"}, "allow_file must be true or false"),
    ({"bogus": 1}, "artifact: unknown option(s) bogus"),
])
def test_config_errors(raw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidConfigError) as err:
        GetterConfig.from_dict(raw)
    assert message in str(err.value)


def test_resolve_source_merges_options_and_picks_getter() -> None:
    r = resolve_source("https://h/a/app.tgz?x=1", {"checksum": "md5:" + "0" * 32, "x": "2", "y": "3"},
                       allow_file=False)
    assert (r.getter, r.url, r.name, r.archive_kind) == ("http", "https://h/a/app.tgz?x=2&y=3", "app.tgz", "tar.gz")
    assert r.checksum == ("md5", "0" * 32)
    signed = resolve_source("https://h/f.bin?X-Sig=a%2Fb&e=1", {}, allow_file=False)
    assert signed.url == "https://h/f.bin?X-Sig=a%2Fb&e=1"  # untouched when nothing merges
    assert resolve_source("https://h/x?archive=false", {}, allow_file=False).archive_disabled
    assert resolve_source("git@github.com:o/r.git", {"ref": "v1"}, allow_file=False).getter == "git"
    gh = resolve_source("github.com/o/r", {}, allow_file=False)
    assert (gh.getter, gh.url) == ("git", "https://github.com/o/r")
    with pytest.raises(SourceError, match='option "ref" is only valid for git sources'):
        resolve_source("https://h/x", {"ref": "main"}, allow_file=False)
    with pytest.raises(SourceError, match='option "checksum" is not supported for git sources'):
        resolve_source("git::https://h/r.git", {"checksum": "md5:" + "0" * 32}, allow_file=False)
