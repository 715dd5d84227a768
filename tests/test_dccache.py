"""The on-disk cache of compiled dataclass methods (rawexec._dccache), in fresh interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

SHAPES = '''
import dataclasses

@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int = 2
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Twin:  # the same fields: the same generated texts as Point's, served twice from one entry
    x: int
    y: int = 2
    tags: tuple[str, ...] = ()
'''

# Imports a module of a stand-in package (the cache only serves one package's modules), uses
# its frozen dataclass and reports what the cache did.
PROBE = r"""
import json, os, sys, dataclasses
from rawexec import _dccache
_dccache._PACKAGE = "dcprobe"
_dccache.install()
from dcprobe.shapes import Point, Twin
assert Twin(1) != Point(1) and repr(Twin(1)) == "Twin(x=1, y=2, tags=())"

@dataclasses.dataclass
class NotOurs:  # __main__ is not the package: compiled, never cached
    z: int

p = Point(1)
try:
    p.x = 5
    frozen = False
except dataclasses.FrozenInstanceError:
    frozen = True
out = {"added": {m: len(v) for m, v in _dccache._added.items()}, "repr": repr(p), "eq": p == Point(1, 2),
       "ne": p != Point(1, 3), "hash": hash(p) == hash(Point(1)), "frozen": frozen,
       "ann": Point.__init__.__annotations__.get("return") is None, "path": _dccache._path("dcprobe.shapes")}
if len(sys.argv) > 1 and sys.argv[1] == "fork":
    pid = os.fork()
    if pid == 0:
        _dccache._save()  # a forked child (a task's shim) never writes
        os._exit(0)
    os.waitpid(pid, 0)
    out["exists"] = os.path.exists(out["path"])
    _dccache._added.clear()  # and the parent, for this test, does not write at exit either
print(json.dumps(out))
"""


def _env(tmp_path: Path, dont_write: bool = False) -> dict[str, str]:
    pkg = tmp_path / "pkg" / "dcprobe"
    if not pkg.exists():
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "shapes.py").write_text(SHAPES)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONOPTIMIZE")}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pyc")
    env["PYTHONPATH"] = os.pathsep.join((SRC, str(tmp_path / "pkg")))
    if dont_write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(tmp_path: Path, code: str, *args: str, dont_write: bool = False) -> object:
    res = subprocess.run([sys.executable, "-c", code, *args], check=False, env=_env(tmp_path, dont_write),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _probe(tmp_path: Path, *args: str, dont_write: bool = False) -> dict[str, object]:
    out = _run(tmp_path, PROBE, *args, dont_write=dont_write)
    assert isinstance(out, dict)
    assert out["repr"] == "Point(x=1, y=2, tags=())"
    assert out["eq"] and out["ne"] and out["hash"] and out["frozen"]
    # the methods were compiled without the cache module's `from __future__ import annotations`
    assert out["ann"]
    return out


def test_first_start_writes_the_cache_and_the_next_one_compiles_nothing(tmp_path: Path) -> None:
    first = _probe(tmp_path)
    assert first["added"] == {"dcprobe.shapes": 6, "__main__": 3}  # init repr eq hash setattr delattr
    path = Path(str(first["path"]))
    assert path.is_file() and str(path).startswith(str(tmp_path / "pyc"))  # honours PYTHONPYCACHEPREFIX
    assert path.name.startswith("shapes.") and path.suffix == ".dcc"
    assert [p.name for p in path.parent.iterdir() if p.suffix == ".dcc"] == [path.name]  # not __main__'s
    second = _probe(tmp_path)
    assert second["added"] == {"__main__": 3}  # every method of Point came from the file


def test_nothing_is_written_when_python_is_asked_not_to_write_bytecode(tmp_path: Path) -> None:
    out = _probe(tmp_path, dont_write=True)
    assert not Path(str(out["path"])).exists()


@pytest.mark.parametrize("content", [b"", b"garbage", b"rawexec-dcc\n\x00\x00\x00\x00{}",
                                     b"rawexec-dcc\n" + b"\xa7\r\r\n" + b"\xff\x00truncated"])
def test_a_damaged_or_foreign_cache_file_is_ignored_and_replaced(tmp_path: Path, content: bytes) -> None:
    path = Path(str(_probe(tmp_path)["path"]))
    path.write_bytes(content)
    assert _probe(tmp_path)["added"] == {"dcprobe.shapes": 6, "__main__": 3}
    assert _probe(tmp_path)["added"] == {"__main__": 3}


def test_a_forked_child_never_writes(tmp_path: Path) -> None:
    out = _probe(tmp_path, "fork")
    assert out["exists"] is False


@pytest.mark.parametrize("dont_write", [False, True])
def test_release_writes_at_once_and_stops_caching(tmp_path: Path, dont_write: bool) -> None:
    code = ("import json, os\nfrom rawexec import _dccache\n_dccache._PACKAGE = 'dcprobe'\n_dccache.install()\n"
            "import dcprobe.shapes\n_dccache.release()\nex = os.path.exists(_dccache._path('dcprobe.shapes'))\n"
            "import dataclasses\n@dataclasses.dataclass\nclass B:\n    b: int\n"
            "print(json.dumps([ex, _dccache._added, B(1) == B(1)]))\n"
            "os._exit(0)\n")  # no atexit: what is on disk is what release() wrote
    # with PYTHONDONTWRITEBYTECODE nothing is written, and what was compiled is dropped all the same
    assert _run(tmp_path, code, dont_write=dont_write) == [not dont_write, {}, True]


def test_the_project_s_own_modules_are_served_from_the_cache(tmp_path: Path) -> None:
    code = ("import json\nfrom rawexec import _dccache\n_dccache.install()\n"
            "import rawexec.types, rawexec.driver.types\n"
            "print(json.dumps(sum(len(v) for v in _dccache._added.values())))\n")
    assert isinstance(first := _run(tmp_path, code), int) and first > 20
    assert _run(tmp_path, code) == 0


def test_python_m_writes_every_table_even_under_dont_write_bytecode(tmp_path: Path) -> None:
    """What scripts/bootstrap runs after compileall: like compileall, an explicit request."""
    env = _env(tmp_path, dont_write=True)
    res = subprocess.run([sys.executable, "-m", "rawexec._dccache"], check=False, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert len(list((tmp_path / "pyc").rglob("*.dcc"))) >= 20
    code = ("import json\nfrom rawexec import _dccache\n_dccache.install()\n"
            "import rawexec.cli.run_cmd, rawexec.agent.agent, rawexec.executor.spawner, rawexec.plugin.hclspec\n"
            "print(json.dumps(sum(len(v) for v in _dccache._added.values())))\n")
    assert _run(tmp_path, code, dont_write=True) == 0
