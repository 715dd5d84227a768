import os
import signal
import subprocess
import sys

from rawexec.types import ExitResult, Resources, exit_result_from_wait_status


def _status_of(code: str) -> int:
    p = subprocess.Popen([sys.executable, "-c", code])
    _, status = os.waitpid(p.pid, 0)
    p.returncode = 0
    return status


def test_exit_code_decoded() -> None:
    r = exit_result_from_wait_status(_status_of("raise SystemExit(7)"))
    assert r == ExitResult(exit_code=7, signal=0)
    assert not r.successful


def test_signal_death_is_128_plus_n() -> None:
    r = exit_result_from_wait_status(_status_of("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"))
    assert (r.exit_code, r.signal) == (128 + signal.SIGTERM, signal.SIGTERM)


def test_memory_limits_follow_nomad_rule() -> None:
    mb = 1024 * 1024
    assert Resources(memory=256).memory_limits() == (256 * mb, None)
    assert Resources(memory=256, memory_max=512).memory_limits() == (512 * mb, 256 * mb)
    assert Resources(memory=256, memory_max=-1).memory_limits() == (None, 256 * mb)
