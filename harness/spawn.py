"""Starting child processes that die with the harness, from any thread.

PR_SET_PDEATHSIG delivers its signal when the *thread* that forked the child exits, not the
process. A component restarted by the node watchdog, or traffic started from a thread pool,
would be SIGKILLed the moment that thread returned. The main thread lives as long as the
process, so it forks directly; every other thread hands the fork to one long-lived spawner
thread. Cluster components and Locust processes both start through here.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError

_PR_SET_PDEATHSIG = 1
# Loaded once in the parent: loading a library between fork and exec can deadlock on a loader
# lock another thread held at the moment of the fork.
_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """Run in the child between fork and exec: one prctl, no locks, no allocation."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _Spawner:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jobs: list[tuple[Callable[[], subprocess.Popen[bytes]], list[object]]] = []
        self._thread: threading.Thread | None = None

    def popen(self, make: Callable[[], subprocess.Popen[bytes]], timeout: float) -> subprocess.Popen[bytes]:
        if threading.current_thread() is threading.main_thread():
            return make()
        box: list[object] = []
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="kubequake-spawner", daemon=True)
                self._thread.start()
            self._jobs.append((make, box))
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: bool(box), timeout):
                with contextlib.suppress(ValueError):
                    self._jobs.remove((make, box))
                raise HarnessError(f"the process spawner thread did not start a process within {timeout:.0f}s")
        result = box[0]
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, subprocess.Popen)
        return result

    def _loop(self) -> None:
        # Lives as long as the process (daemon thread); each job is one Popen.
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._jobs))
                make, box = self._jobs.pop(0)
            result: object
            try:
                result = make()
            except BaseException as exc:  # handed back to the caller, raised there
                result = exc
            with self._cond:
                box.append(result)
                self._cond.notify_all()


_SPAWNER = _Spawner()


def popen_surviving_thread(
    make: Callable[[], subprocess.Popen[bytes]], timeout: float = 30.0
) -> subprocess.Popen[bytes]:
    """Run `make` (a Popen call) on a thread that lives as long as the process."""
    return _SPAWNER.popen(make, timeout)


def kubequake_command() -> list[str]:
    """How to run this same kubequake in another process: the venv's entry point, else the module."""
    exe = Path(sys.executable).parent / "kubequake"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "harness.cli"]
