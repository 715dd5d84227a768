"""Mode detection from mountinfo: v2, v1, hybrid, and every reason for "off"."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rawexec.containment import CgroupFS, clear_detect_cache, detect, parse_mountinfo
from tests.containment.fakefs import build_tree, mountinfo_line


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_detect_cache()


def test_pure_v2(tmp_path: Path) -> None:
    s = detect(fs=build_tree(tmp_path, "v2"))
    assert s.mode == "v2"
    assert s.unified_mount == "/sys/fs/cgroup"
    assert s.v1_mounts == {}
    assert s.v2_controllers == ("cpuset", "cpu", "io", "memory", "pids")
    assert "cgroup2 is mounted at /sys/fs/cgroup" in s.reason


def test_v1(tmp_path: Path) -> None:
    s = detect(fs=build_tree(tmp_path, "v1"))
    assert s.mode == "v1"
    assert s.unified_mount is None
    assert s.v1_mounts["freezer"] == "/sys/fs/cgroup/freezer"
    assert s.v1_mounts["memory"] == "/sys/fs/cgroup/memory"
    assert "name=systemd" not in s.v1_mounts and "systemd" not in s.v1_mounts


def test_v1_comounted_cpu_cpuacct(tmp_path: Path) -> None:
    s = detect(fs=build_tree(tmp_path, "v1", cpu_cpuacct_together=True))
    assert s.v1_mounts["cpu"] == s.v1_mounts["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"


def test_hybrid(tmp_path: Path) -> None:
    s = detect(fs=build_tree(tmp_path, "hybrid"))
    assert s.mode == "hybrid"
    assert s.unified_mount == "/sys/fs/cgroup/unified"
    assert s.v1_mounts["freezer"] == "/sys/fs/cgroup/freezer"
    assert "plus cgroup2 at /sys/fs/cgroup/unified" in s.reason


def test_no_cgroups_turns_it_off(tmp_path: Path) -> None:
    s = detect(no_cgroups=True, fs=build_tree(tmp_path, "hybrid"))
    assert (s.mode, s.enabled) == ("off", False)
    assert "no_cgroups" in s.reason


def test_not_root_is_off_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fs = build_tree(tmp_path, "v2", euid=1000)
    with caplog.at_level(logging.INFO, logger="rawexec.containment"):
        s1 = detect(fs=fs)
        s2 = detect(fs=fs)
    assert s1 is s2  # detected once, cached
    assert s1.mode == "off"
    assert "not running as root (euid 1000)" in s1.reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not running as root" in warnings[0].getMessage()


def test_mode_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fs = build_tree(tmp_path, "hybrid")
    with caplog.at_level(logging.INFO, logger="rawexec.containment"):
        detect(fs=fs)
        detect(fs=fs)
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and msgs[0].startswith("cgroups: hybrid — ")
    clear_detect_cache()
    with caplog.at_level(logging.INFO, logger="rawexec.containment"):
        detect(fs=fs)
    assert len(caplog.records) == 2


def _with_mountinfo(tmp_path: Path, lines: list[str]) -> CgroupFS:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text("\n".join(lines) + "\n")
    return CgroupFS(str(tmp_path), euid=0)


def test_nothing_mounted_is_off(tmp_path: Path) -> None:
    s = detect(fs=_with_mountinfo(tmp_path, [mountinfo_line(20, "/", "ext4", "rw")]))
    assert s.mode == "off"
    assert "no cgroup filesystem is mounted at /sys/fs/cgroup" in s.reason


def test_unreadable_mountinfo_is_off(tmp_path: Path) -> None:
    s = detect(fs=CgroupFS(str(tmp_path), euid=0))
    assert s.mode == "off" and "cannot read /proc/self/mountinfo" in s.reason


def test_read_only_v2_is_off(tmp_path: Path) -> None:
    fs = _with_mountinfo(tmp_path, [mountinfo_line(31, "/sys/fs/cgroup", "cgroup2", "rw", "ro,nosuid")])
    s = detect(fs=fs)
    assert s.mode == "off" and "read-only" in s.reason


def test_read_only_v1_controllers_are_not_used(tmp_path: Path) -> None:
    fs = _with_mountinfo(tmp_path, [
        mountinfo_line(30, "/sys/fs/cgroup", "tmpfs", "rw"),
        mountinfo_line(31, "/sys/fs/cgroup/freezer", "cgroup", "rw,freezer", "ro,nosuid"),
    ])
    s = detect(fs=fs)
    assert s.mode == "off"
    assert "read-only, not used: /sys/fs/cgroup/freezer" in s.reason


def test_unknown_filesystem_is_off(tmp_path: Path) -> None:
    s = detect(fs=_with_mountinfo(tmp_path, [mountinfo_line(31, "/sys/fs/cgroup", "sysfs", "rw")]))
    assert s.mode == "off" and "unexpected filesystem 'sysfs'" in s.reason


def test_tmpfs_with_only_cgroup2_below_is_v2(tmp_path: Path) -> None:
    fs = _with_mountinfo(tmp_path, [
        mountinfo_line(30, "/sys/fs/cgroup", "tmpfs", "rw"),
        mountinfo_line(31, "/sys/fs/cgroup/unified", "cgroup2", "rw"),
    ])
    s = detect(fs=fs)
    assert s.mode == "v2" and s.unified_mount == "/sys/fs/cgroup/unified"


def test_overmount_last_wins(tmp_path: Path) -> None:
    fs = build_tree(tmp_path, "v2")
    mi = tmp_path / "proc/self/mountinfo"
    mi.write_text(mi.read_text() + mountinfo_line(99, "/sys/fs/cgroup", "tmpfs", "rw") + "\n")
    s = detect(fs=fs)
    assert s.mode == "off" and "tmpfs without writable cgroup mounts" in s.reason


def test_parse_mountinfo_escapes_and_optional_fields() -> None:
    text = ("36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n"
            "garbage line\n")
    (m,) = parse_mountinfo(text)
    assert m.mount_point == "/mnt/with space"
    assert m.fstype == "ext3"
    assert m.options == ("rw", "noatime")
    assert m.super_options == ("rw", "errors=continue")


def test_real_host_detection_matches_mounts() -> None:
    s = detect(fs=CgroupFS())
    mounts = {m.mount_point: m.fstype for m in parse_mountinfo(Path("/proc/self/mountinfo").read_text())}
    import os

    if os.geteuid() != 0:
        assert s.mode == "off"
    elif mounts.get("/sys/fs/cgroup") == "cgroup2":
        assert s.mode == "v2"
    elif mounts.get("/sys/fs/cgroup") == "tmpfs" and mounts.get("/sys/fs/cgroup/unified") == "cgroup2":
        assert s.mode == "hybrid"
