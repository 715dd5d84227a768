"""Everything decided before a task is spawned: task dirs, user, binary, signal names."""

from __future__ import annotations

import os
import pwd
import signal as _signal
import stat

from rawexec.driver.config import DriverConfig
from rawexec.errors import InvalidConfigError
from rawexec.executor.launch import Credentials

__all__ = ["SIGNALS", "build_task_dirs", "lookup_bin", "parse_signal", "resolve_user"]

# consul-template's unix signal table (what Nomad accepts by name), minus nothing, plus nothing.
SIGNALS: dict[str, int] = {
    name: int(getattr(_signal, name)) for name in (
        "SIGABRT", "SIGALRM", "SIGBUS", "SIGCONT", "SIGFPE", "SIGHUP", "SIGILL", "SIGINT", "SIGIO", "SIGIOT",
        "SIGKILL", "SIGPIPE", "SIGPROF", "SIGQUIT", "SIGSEGV", "SIGSTOP", "SIGSYS", "SIGTERM", "SIGTRAP",
        "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGXCPU", "SIGXFSZ")
}
SIGNALS["SIGNULL"] = 0


def parse_signal(name: str | int | None, default: str = "SIGINT") -> int:
    """A signal name (``SIGHUP``, also ``HUP``/``hup``) or number. Unknown names are rejected:
    Nomad silently sends SIGINT instead; we refuse."""
    if name is None or name == "":
        name = default
    if isinstance(name, int):
        if name in SIGNALS.values():
            return name
        raise InvalidConfigError(f"unknown signal {name}; use a name such as SIGTERM, SIGHUP or SIGUSR1")
    key = name.strip().upper()
    if not key.startswith("SIG"):
        key = "SIG" + key
    if key not in SIGNALS:
        raise InvalidConfigError(
            f"unknown signal {name!r}; valid signals: " + ", ".join(sorted(k for k in SIGNALS if k != "SIGNULL")))
    return SIGNALS[key]


_DIRS: tuple[tuple[str, int], ...] = (
    ("alloc", 0o777), ("alloc/logs", 0o777), ("alloc/tmp", 0o777), ("alloc/data", 0o777),
)
_TASK_DIRS: tuple[tuple[str, int], ...] = (
    ("", 0o777), ("local", 0o777), ("secrets", 0o777), ("private", 0o777), ("tmp", 0o1777),
)


def build_task_dirs(alloc_dir: str, task_name: str) -> None:
    """Create Nomad's alloc dir layout (facts §5.1) where missing. Cheap when it already exists."""
    if not os.path.isabs(alloc_dir):
        raise InvalidConfigError(f"alloc_dir must be an absolute path; got {alloc_dir!r}")
    if not task_name or "/" in task_name or task_name in (".", ".."):
        raise InvalidConfigError(f"invalid task name {task_name!r}: it must be a single path component")
    task_dir = os.path.join(alloc_dir, task_name)
    if os.path.isdir(os.path.join(task_dir, "tmp")) and os.path.isdir(os.path.join(alloc_dir, "alloc", "logs")):
        return
    os.makedirs(alloc_dir, mode=0o755, exist_ok=True)
    for rel, mode in _DIRS:
        _mkdir(os.path.join(alloc_dir, rel), mode)
    for rel, mode in _TASK_DIRS:
        _mkdir(os.path.join(task_dir, rel), mode)


def _mkdir(path: str, mode: int) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise InvalidConfigError(f"cannot create task directory {path}: a file is in the way") from None
        return
    os.chmod(path, mode)


def resolve_user(user: str, config: DriverConfig) -> Credentials | None:
    """Validate the task's user against the deny lists; return the credentials to switch to, or
    None to run as the agent's own user. With no ``user``, the agent's own ids are checked (Nomad)."""
    uid_ranges, gid_ranges = config.uid_ranges(), config.gid_ranges()
    prefix = "failed driver config validation: "
    if not user:
        uid = os.geteuid()
        gids = sorted({os.getegid(), *os.getgroups()})
        pw_gid = os.getegid()
        creds = None
    else:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise InvalidConfigError(f'{prefix}failed to identify user "{user}": unknown user {user}') from None
        uid, pw_gid = pw.pw_uid, pw.pw_gid
        gids = sorted(set(os.getgrouplist(user, pw.pw_gid)))
        creds = None if uid == os.geteuid() else Credentials(uid, pw.pw_gid, tuple(gids))
        if creds is not None and os.geteuid() != 0:
            raise InvalidConfigError(
                f'{prefix}cannot run as user "{user}": the agent runs as uid {os.geteuid()} and only root can '
                'switch users; remove "user" from the task or run the agent as root')
    if any(uid in r for r in uid_ranges):
        raise InvalidConfigError(f"{prefix}running as uid {uid} is disallowed")
    for gid in [pw_gid, *gids]:
        if any(gid in r for r in gid_ranges):
            raise InvalidConfigError(f"{prefix}running as gid {gid} is disallowed")
    return creds


def lookup_bin(task_dir: str, command: str, path_env: str | None, alloc_dir: str) -> str:
    """Nomad's lookup order (facts §3.2 step 7): ``<task>/local/<cmd>``, ``<task>/<cmd>``, an
    absolute path, then PATH — the task's PATH first, then the agent's (Nomad uses only the
    agent's). Binaries inside the alloc dir are made executable as Nomad does; host files are not
    touched and must already be executable."""
    rel = command.lstrip("/")
    candidates = [os.path.normpath(os.path.join(task_dir, "local", rel)),
                  os.path.normpath(os.path.join(task_dir, rel))]
    if os.path.isabs(command):
        candidates.append(command)
    found = next((c for c in candidates if os.path.exists(c)), None)
    if found is None and "/" not in command:
        for p in (path_env, os.environ.get("PATH")):
            for d in (p or "").split(":"):
                if d and os.path.isfile(full := os.path.join(d, command)) and os.access(full, os.X_OK):
                    found = full
                    break
            if found:
                break
    if found is None:
        raise InvalidConfigError(f'failed to launch command with executor: binary "{command}" could not be found')
    st = os.stat(found)
    if stat.S_ISDIR(st.st_mode):
        raise InvalidConfigError(
            f'failed to launch command with executor: binary "{found}" is a directory, not an executable file; '
            "set config { command } to a program")
    if not stat.S_ISREG(st.st_mode):
        raise InvalidConfigError(f'failed to launch command with executor: binary "{found}" is not a regular file')
    perm = stat.S_IMODE(st.st_mode)
    if perm & 0o555 != 0o555:
        inside = os.path.commonpath([os.path.realpath(found), os.path.realpath(alloc_dir)]) == \
            os.path.realpath(alloc_dir)
        if inside:
            os.chmod(found, perm | 0o555)
        elif not os.access(found, os.X_OK) or perm & 0o111 == 0:
            raise InvalidConfigError(
                f'failed to launch command with executor: binary "{found}" is not executable '
                f"(mode {perm:04o}); chmod +x it or point command at an executable")
    return os.path.abspath(found)
