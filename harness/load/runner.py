"""Locust runs as subprocesses the harness owns: started deliberately, always stopped.

Why a subprocess and not locust.env.Environment in the pytest process: importing locust
monkey-patches the whole interpreter with gevent (socket, ssl, threading, time.sleep,
subprocess). The pytest process also runs paramiko SSH sessions, the kubernetes client's
urllib3 pools, the process supervisor's threads, pytest-timeout's signal handler and the cluster's
SIGTERM handler; patching under them after ssl is imported is unsupported by gevent and turns
blocking waits into cooperative ones that only yield if something else yields. A separate
process keeps both worlds intact, lets the load generator use the second core of a 2-core
machine instead of contending for the pytest process's GIL, and is the same `locust -f
locustfile.py` command people run, so the harness exercises the path users use (including the
distributed mode, where a master and N workers are simply more processes).

What crosses the boundary is data, not objects: each Locust process appends JSON-lines records
(harness/load/records.py) to a directory the harness reads, live or after the run.

Load always stops:
- bounded in the child: Locust's --run-time and the locustfile's --kq-max-requests;
- stopped by the parent: SIGTERM to each process group, SIGKILL after a grace period, from
  stop(), from a watchdog timer at max duration plus grace, and from an atexit hook;
- killed with the parent: every child has PR_SET_PDEATHSIG=SIGKILL, so even a SIGKILLed pytest
  leaves no orphan Locust behind (children are forked from the main thread or from one
  long-lived spawner thread, because the signal fires when the forking thread exits).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from harness.load.errors import LoadError
from harness.load.settings import TrafficSettings
from harness.net.tls import TLSClient
from harness.spawn import die_with_parent, popen_surviving_thread

log = logging.getLogger(__name__)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# The checkout (or site-packages) directory that holds the `harness` package.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# Extra time past max_duration before the watchdog kills a run that ignored --run-time.
WATCHDOG_GRACE_S = 20.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_loopback_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (for a Locust master's bind port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) of the live processes in a process group."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        # fields[0] is field 3 (state); pgrp is field 5, utime/stime fields 14/15.
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


@dataclass(frozen=True)
class ProcessExit:
    role: str
    pid: int
    returncode: int | None
    killed: bool


class LocustProcess:
    """One Locust process (standalone, master or worker) in its own process group."""

    def __init__(self, role: str, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.role = role
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self._popen: subprocess.Popen[bytes] | None = None
        self._cpu_last = 0.0

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as logf:

            def make() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=str(PACKAGE_ROOT),
                    start_new_session=True,
                    preexec_fn=die_with_parent,  # prctl only, no locks taken
                    close_fds=True,
                )

            try:
                self._popen = popen_surviving_thread(make)
            except OSError as exc:
                raise LoadError(f"cannot start Locust ({self.argv[0]}): {exc}") from None
        log.debug("started locust %s pid %d: %s", self.role, self._popen.pid, " ".join(self.argv))

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def cpu_seconds(self) -> float:
        """CPU seconds used so far (the last live reading once the process has gone)."""
        if self._popen is not None and self.alive():
            self._cpu_last = max(self._cpu_last, _group_cpu_seconds(self._popen.pid))
        return self._cpu_last

    def signal_group(self, sig: signal.Signals) -> None:
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def wait(self, timeout: float) -> bool:
        if self._popen is None:
            return True
        try:
            self._popen.wait(timeout=max(0.0, timeout))
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, timeout: float) -> ProcessExit:
        """SIGTERM (Locust shuts down and flushes), then SIGKILL the whole group after `timeout`."""
        if self._popen is None:
            return ProcessExit(self.role, 0, None, False)
        self.cpu_seconds()
        killed = False
        if self.alive():
            self.signal_group(signal.SIGTERM)
            if not self.wait(timeout):
                log.warning(
                    "locust %s pid %d ignored SIGTERM for %.0fs; killing it", self.role, self._popen.pid, timeout
                )
                killed = True
        # SIGKILL the group even after a clean exit: a straggling child must not outlive the run.
        self.signal_group(signal.SIGKILL)
        if not self.wait(5.0):
            pid = self._popen.pid
            raise LoadError(f"locust {self.role} pid {pid} survived SIGKILL; check `ps -p {pid}`")
        return ProcessExit(self.role, self._popen.pid, self._popen.returncode, killed)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join("  " + t[:300] for t in text)


_LIVE_RUNS: weakref.WeakSet[LocustRun] = weakref.WeakSet()
_atexit_lock = threading.Lock()
_atexit_registered = False


def _stop_all_at_exit() -> None:
    for run in list(_LIVE_RUNS):
        with contextlib.suppress(LoadError, OSError):
            run.stop(timeout=2.0)


class LocustRun:
    """Locust against one API endpoint: one process, or a master plus N workers on loopback."""

    def __init__(
        self,
        url: str,
        tls: TLSClient,
        settings: TrafficSettings,
        *,
        records_dir: Path,
        namespace: str,
        run_tag: str,
        locustfile: Path = LOCUSTFILE,
        python: str = sys.executable,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.url = url
        self.tls = tls
        self.settings = settings.validate()
        self.records_dir = records_dir
        self.namespace = namespace
        self.run_tag = run_tag
        self.locustfile = locustfile
        self.python = python
        self.extra_args = extra_args
        self.processes: list[LocustProcess] = []
        self.master_port: int | None = None
        self.started_at: float | None = None
        self.exits: list[ProcessExit] = []
        self._watchdog: threading.Timer | None = None
        self._lock = threading.Lock()

    # -- argv --------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        # The load generator talks to loopback only; a proxy from the environment must not
        # capture it, and the system CA bundle must not replace the cluster CA.
        for var in (
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
        ):
            env.pop(var, None)
        return env

    def _kq_args(self) -> list[str]:
        return [
            f"--kq-ca={self.tls.ca}",
            f"--kq-cert={self.tls.cert}",
            f"--kq-key={self.tls.key}",
            "--kq-skip-setup",
            *self.settings.locust_options(records_dir=self.records_dir, namespace=self.namespace, run_tag=self.run_tag),
        ]

    def _base(self) -> list[str]:
        return [self.python, "-m", "locust", "-f", str(self.locustfile)]

    def _driver_args(self) -> list[str]:
        s = self.settings
        return [
            "--headless",
            f"--host={self.url}",
            f"--users={s.users}",
            f"--spawn-rate={s.spawn_rate}",
            f"--run-time={math.ceil(s.max_duration_s)}s",
            "--only-summary",
            "--loglevel=INFO",
        ]

    def argv(self) -> dict[str, list[str]]:
        """Role -> argv of each process this run starts."""
        s = self.settings
        if s.workers == 0:
            return {"local": [*self._base(), *self._driver_args(), *self._kq_args(), *self.extra_args]}
        if self.master_port is None:
            self.master_port = free_loopback_port()
        out = {
            "master": [
                *self._base(),
                *self._driver_args(),
                "--master",
                "--master-bind-host=127.0.0.1",
                f"--master-bind-port={self.master_port}",
                f"--expect-workers={s.workers}",
                f"--expect-workers-max-wait={math.ceil(s.start_timeout_s)}",
                *self._kq_args(),
                *self.extra_args,
            ],
        }
        for i in range(s.workers):
            out[f"worker{i + 1}"] = [
                *self._base(),
                "--worker",
                "--master-host=127.0.0.1",
                f"--master-port={self.master_port}",
                "--loglevel=INFO",
                *self._kq_args(),
            ]
        return out

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        global _atexit_registered
        with self._lock:
            if self.processes:
                raise LoadError("this Locust run was already started; start a new LocustRun")
            self.records_dir.mkdir(parents=True, exist_ok=True)
            env = self._env()
            with _atexit_lock:
                if not _atexit_registered:
                    atexit.register(_stop_all_at_exit)
                    _atexit_registered = True
            _LIVE_RUNS.add(self)
            self.started_at = time.time()
            try:
                for role, argv in self.argv().items():
                    proc = LocustProcess(role, argv, self.records_dir / f"locust-{role}.log", env)
                    self.processes.append(proc)
                    proc.start()
            except BaseException:
                self._stop_locked(timeout=2.0)
                raise
            self._watchdog = threading.Timer(self.settings.max_duration_s + WATCHDOG_GRACE_S, self._on_watchdog)
            self._watchdog.daemon = True
            self._watchdog.start()
        log.info(
            "traffic started: %s through %s (namespace %s, records in %s)",
            ", ".join(f"{p.role} pid {p.pid}" for p in self.processes),
            self.url,
            self.namespace,
            self.records_dir,
        )

    def _on_watchdog(self) -> None:
        if self.alive():
            log.error(
                "traffic still running %.0fs past max_duration_s=%.0f; killing it",
                WATCHDOG_GRACE_S,
                self.settings.max_duration_s,
            )
            with contextlib.suppress(LoadError):
                self.stop(timeout=2.0)

    def alive(self) -> bool:
        return any(p.alive() for p in self.processes)

    def exited_early(self) -> LocustProcess | None:
        """A process that has already exited although nobody stopped it."""
        for p in self.processes:
            if not p.alive() and p.returncode() is not None:
                return p
        return None

    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds() for p in self.processes)

    def stop(self, timeout: float | None = None) -> list[ProcessExit]:
        """Stop every process (safe to call twice); returns how each one ended."""
        with self._lock:
            return self._stop_locked(self.settings.stop_timeout_s if timeout is None else timeout)

    def _stop_locked(self, timeout: float) -> list[ProcessExit]:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.exits or not self.processes:
            return self.exits
        # The master (or the single process) first: it tells workers to quit and writes its last
        # records; then workers, which are usually gone by then.
        ordered = sorted(self.processes, key=lambda p: p.role.startswith("worker"))
        deadline = time.monotonic() + timeout
        errors: list[LoadError] = []
        for p in ordered:
            try:
                self.exits.append(p.stop(max(1.0, deadline - time.monotonic())))
            except LoadError as exc:
                errors.append(exc)
        _LIVE_RUNS.discard(self)
        if errors:
            raise errors[0]
        log.info(
            "traffic stopped: %s",
            ", ".join(f"{e.role} rc={e.returncode}{' (killed)' if e.killed else ''}" for e in self.exits),
        )
        return self.exits
