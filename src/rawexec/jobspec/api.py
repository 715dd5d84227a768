"""The entry points: job files (HCL2 or API JSON) → a validated :class:`~rawexec.jobspec.model.Job`."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rawexec.jobspec.decode import decode_job
from rawexec.jobspec.diagnostics import Diagnostics, Pos, did_you_mean
from rawexec.jobspec.hcl.evaluator import Context, Evaluator
from rawexec.jobspec.hcl.structure import build_body, parse_text, tree_body
from rawexec.jobspec.hcl.values import EvalError
from rawexec.jobspec.hcl.variables import locals_resolver, resolve_variables
from rawexec.jobspec.model import Job
from rawexec.jobspec.reader import HclReader, JsonReader
from rawexec.jobspec.validate import check, warnings

__all__ = ["MAX_JOB_FILE_BYTES", "ParsedJob", "load_file", "load_hcl", "load_json", "parse_file", "parse_hcl",
           "parse_json"]

#: Larger job files are refused before parsing (a 200-task job with artifacts is ~130 KB; parsing
#: runs at roughly 150-250 KB/s on a slow machine, so this bounds the time a file can take).
MAX_JOB_FILE_BYTES = 2 * 1024 * 1024
_TOP = ("job", "variable", "locals")
#: Fields of Nomad's job-register request besides "Job": EnforceIndex and JobModifyIndex are checked by the
#: API (rawexec.api.app), the others mean nothing to a single node and are accepted silently.
_SUBMIT_FIELDS = ("EnforceIndex", "JobModifyIndex", "PolicyOverride", "PreserveCounts", "EvalPriority", "Submission")
#: Job fields the server sets (``job inspect`` prints them); Nomad ignores them on register, so
#: the output of ``job inspect`` / ``GET /v1/job/:id`` can be submitted again as it is.
_READ_ONLY_JOB_FIELDS = frozenset({
    "Status", "StatusDescription", "Stable", "Version", "SubmitTime", "CreateIndex", "ModifyIndex",
    "JobModifyIndex", "NomadTokenID", "VersionTag",
})


@dataclass(frozen=True)
class ParsedJob:
    """A parsed, valid job and the warnings about what rawexec will not honour."""

    job: Job
    warnings: tuple[str, ...] = ()


_gc_lock = threading.Lock()
_gc_depth = 0
_gc_was_enabled = False


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a job file is parsed and decoded.

    Parsing builds a large tree of small lists, trees and tokens that all stay alive until the job is
    built, so each automatic collection re-scans everything built so far: on a 200-task job that was
    more time than the parse itself. None of those objects form reference cycles (they are freed by
    reference counting as soon as the job is built), so nothing is left for the collector to do
    afterwards. Nested and concurrent calls share one pause; the collector is switched back on only
    if it was on when the first of them started.
    """
    global _gc_depth, _gc_was_enabled
    with _gc_lock:
        if _gc_depth == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_was_enabled:
                gc.enable()


def _too_big(size: int, filename: str, d: Diagnostics) -> bool:
    if size > MAX_JOB_FILE_BYTES:
        d.error(f"job file is too large: {size / 1048576:.1f} MB; the limit is "
                f"{MAX_JOB_FILE_BYTES // 1048576} MB", pos=Pos(filename),
                hint="split the job, or move large content into artifacts or file() includes")
        return True
    return False


def _decode_utf8(data: bytes, filename: str, d: Diagnostics) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        d.error(f"invalid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} is not valid text",
                pos=Pos(filename, line, col), hint="save the job file as UTF-8")
        return None


def load_hcl(text: str | bytes, *, filename: str = "<job>", variables: Mapping[str, str] | None = None,
             var_files: list[str] | None = None, env: Mapping[str, str] | None = None,
             base_dir: str | None = None) -> ParsedJob:
    """Parse and validate an HCL2 job file; see :func:`parse_hcl`."""
    d = Diagnostics()
    if isinstance(text, bytes):
        if _too_big(len(text), filename, d):
            d.raise_if_any()
        decoded = _decode_utf8(text, filename, d)
        d.raise_if_any()
        assert decoded is not None
        text = decoded
    if _too_big(len(text.encode("utf-8", "surrogatepass")), filename, d):
        d.raise_if_any()
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark, as some Windows editors write
    try:
        with _gc_paused():
            return _load_hcl(text, d, filename, variables, var_files, os.environ if env is None else env,
                             base_dir if base_dir is not None else (os.path.dirname(filename) or "."))
    except RecursionError:
        d.error("the job file is nested too deeply", pos=Pos(filename))
        d.raise_if_any()
        raise  # unreachable


def _load_hcl(text: str, d: Diagnostics, filename: str, variables: Mapping[str, str] | None,
              var_files: list[str] | None, env: Mapping[str, str], base_dir: str) -> ParsedJob:
    try:
        tree = parse_text(text, filename)
    except EvalError as exc:
        d.error(exc.message, pos=exc.pos, hint=exc.hint)
        d.raise_if_any()
        raise  # unreachable
    errs: list[EvalError] = []
    body = build_body(tree_body(tree), filename, errs)
    for e in errs:
        d.error(e.message, pos=e.pos, hint=e.hint)
    for name, attr in body.attrs.items():
        d.error(f'Unsupported argument: an argument named "{name}" is not expected at the top level',
                pos=attr.pos, hint="put it inside the job block")
    for blk in body.blocks:
        if blk.type not in _TOP:
            d.error(f'Unsupported block type: blocks of type "{blk.type}" are not expected at the top level',
                    pos=blk.pos, hint=did_you_mean(blk.type, _TOP) or "expected job, variable or locals")
    ctx = Context(filename=filename, base_dir=base_dir)
    resolve_variables(body, text, ctx, d, cli_vars=variables, var_files=var_files, env=env)
    locals_resolver(body, text, ctx, d)
    jobs = [b for b in body.blocks if b.type == "job"]
    if not jobs:
        d.error("No job stanza found", pos=Pos(filename, 1, 1), hint='a job file needs a job "name" { ... } block')
        d.raise_if_any()
    if len(jobs) > 1:
        d.error("only one job block is allowed in a job file", pos=jobs[1].pos)
    blk = jobs[0]
    if len(blk.labels) != 1:
        d.error('Missing name for job: a job block needs exactly one label, its ID', pos=blk.pos,
                hint='write job "example" { ... }')
    job_id = blk.labels[0] if blk.labels else ""
    reader = HclReader(blk.body, Evaluator(text, ctx), f'job "{job_id}"', d, blk.pos)
    job = decode_job(reader, job_id)
    check(job, d, d.locations)
    d.raise_if_any()
    warns = [str(w) for w in d.warnings] + warnings(job, d.locations)
    return ParsedJob(job, tuple(warns))


def load_json(text_or_dict: str | bytes | Mapping[str, Any], *, filename: str = "<json>") -> ParsedJob:
    """Parse and validate Nomad API JSON; see :func:`parse_json`."""
    d = Diagnostics()
    obj: Any = text_or_dict
    if isinstance(text_or_dict, (str, bytes)):
        raw = text_or_dict
        if _too_big(len(raw), filename, d):
            d.raise_if_any()
        if isinstance(raw, bytes):
            decoded = _decode_utf8(raw, filename, d)
            d.raise_if_any()
            assert decoded is not None
            raw = decoded
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            d.error(f"invalid JSON: {exc.msg}", pos=Pos(filename, exc.lineno, exc.colno))
            d.raise_if_any()
        except RecursionError:
            d.error("invalid JSON: nested too deeply", pos=Pos(filename))
            d.raise_if_any()
    if not isinstance(obj, Mapping):
        d.error(f"the API JSON must be an object, got {type(obj).__name__}", pos=Pos(filename),
                hint='the form is {"Job": {"ID": "...", "TaskGroups": [...]}}')
        d.raise_if_any()
    if "Job" in obj:
        extra = [k for k in obj if k != "Job" and k not in _SUBMIT_FIELDS]
        obj = obj["Job"]
        if extra:
            d.warn(f"ignored top-level fields: {', '.join(sorted(map(str, extra)))}", pos=Pos(filename))
    elif "job" in obj:
        d.error('this looks like HCL written in JSON syntax ("job" key); rawexec reads the API JSON form',
                pos=Pos(filename), hint="convert it with `nomad job run -output job.hcl` or write it as HCL")
        d.raise_if_any()
    if not isinstance(obj, Mapping):
        d.error(f'"Job" must be an object, got {type(obj).__name__}', pos=Pos(filename))
        d.raise_if_any()
    job_id = obj.get("ID") if isinstance(obj.get("ID"), str) else ""
    if obj.get("Stop") is True:
        d.warn('"Stop" is ignored: registering the job runs it', pos=Pos(filename))
    body = {k: v for k, v in obj.items() if k not in _READ_ONLY_JOB_FIELDS and k != "Stop"}
    try:
        job = decode_job(JsonReader(body, f'job "{job_id}"', d), str(job_id))
    except RecursionError:
        d.error("the job is nested too deeply", pos=Pos(filename))
        d.raise_if_any()
        raise  # unreachable
    check(job, d)
    d.raise_if_any()
    return ParsedJob(job, tuple([str(w) for w in d.warnings] + warnings(job)))


def _looks_like_json(data: bytes) -> bool:
    return data.lstrip()[:1] == b"{"


#: The name diagnostics give a job file read from standard input (``-``).
STDIN_NAME = "<stdin>"


def load_file(path: str | os.PathLike[str], variables: Mapping[str, str] | None = None,
              var_files: list[str] | None = None, env: Mapping[str, str] | None = None, *,
              as_json: bool = False) -> ParsedJob:
    """Read a job file (HCL2, or API JSON by ``.json`` extension or a leading ``{``) and validate it.

    ``as_json`` (the CLI's ``-json``) reads the file as API JSON whatever its name. A ``path`` of
    ``-`` reads the job from standard input (Nomad's ``job run -``): its errors name ``<stdin>``,
    and its relative paths (``file()``) are relative to the current directory.
    """
    p = os.fspath(path)
    d = Diagnostics()
    stdin = p == "-"
    name = STDIN_NAME if stdin else p
    try:
        if stdin:  # one byte more than the limit: load_hcl/load_json refuse it
            data = sys.stdin.buffer.read(MAX_JOB_FILE_BYTES + 1)
        else:
            size = os.path.getsize(p)
            if _too_big(size, p, d):
                d.raise_if_any()
            with open(p, "rb") as f:
                data = f.read(MAX_JOB_FILE_BYTES + 1)
    except OSError as exc:
        d.error(f"cannot read job file: {exc.strerror}", pos=Pos(name),
                hint="check standard input" if stdin else "check the path")
        d.raise_if_any()
        raise  # unreachable
    if as_json or p.endswith(".json") or _looks_like_json(data):
        if variables or var_files:
            d.error("-var and -var-file apply to HCL job files only; this is API JSON", pos=Pos(name))
            d.raise_if_any()
        return load_json(data, filename=name)
    return load_hcl(data, filename=name, variables=variables, var_files=var_files, env=env,
                    base_dir=os.getcwd() if stdin else os.path.dirname(os.path.abspath(p)))


def parse_hcl(text: str, *, filename: str = "<job>", variables: Mapping[str, str] | None = None,
              var_files: list[str] | None = None, env: Mapping[str, str] | None = None,
              base_dir: str | None = None) -> Job:
    """Parse an HCL2 job file into a validated :class:`Job`.

    ``variables`` are ``-var`` values, ``var_files`` ``-var-file`` paths; ``env`` supplies
    ``NOMAD_VAR_<name>`` values (default: this process's environment); ``base_dir`` is where
    ``file()`` paths are relative to (default: the directory of ``filename``).
    Raises :class:`rawexec.errors.ValidationError` listing every problem.
    """
    return load_hcl(text, filename=filename, variables=variables, var_files=var_files, env=env,
                    base_dir=base_dir).job


def parse_json(text_or_dict: str | bytes | Mapping[str, Any]) -> Job:
    """Parse Nomad API JSON (``{"Job": {...}}`` or the bare job object) into a validated :class:`Job`."""
    return load_json(text_or_dict).job


def parse_file(path: str | os.PathLike[str], variables: Mapping[str, str] | None = None,
               var_files: list[str] | None = None, env: Mapping[str, str] | None = None) -> Job:
    """Parse a job file: HCL2, or API JSON (``.json`` extension or content starting with ``{``)."""
    return load_file(path, variables, var_files, env).job
