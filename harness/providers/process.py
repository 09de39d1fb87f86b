"""Supervision of the local cluster's processes: start, signal, stop, and remember them on disk.

Each component is a child in its own session (so a terminal's Ctrl-C reaches only the harness,
which then tears down in order) with its own log file. Every pid is recorded together with the
kernel's start time of that pid, so a later `down` or `up` kills exactly the processes a crashed
run left and never an unrelated process that happens to reuse the pid.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import ClusterError
from harness.providers.cgroups import join_cgroup
from harness.spawn import die_with_parent, popen_surviving_thread

log = logging.getLogger(__name__)


class ComponentState(enum.StrEnum):
    RUNNING = "running"
    FROZEN = "frozen"
    STOPPED = "stopped"
    EXITED = "exited"


@dataclass(frozen=True)
class ProcessSpec:
    node: str
    component: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    # cgroup.procs of the node's cgroup: the child joins it before exec (see cgroups.py).
    cgroup_procs: str | None = None

    @property
    def key(self) -> str:
        return f"{self.node}/{self.component}"


@dataclass(frozen=True)
class ProcessRecord:
    node: str
    component: str
    pid: int
    start_ticks: int
    argv: list[str]
    log_path: str

    @property
    def key(self) -> str:
        return f"{self.node}/{self.component}"


def proc_start_ticks(pid: int) -> int | None:
    """The kernel's start time of a pid, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces and parentheses; fields resume after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[19])


def proc_state_letter(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2 :].split()[0]


def record_alive(rec: ProcessRecord) -> bool:
    ticks = proc_start_ticks(rec.pid)
    return ticks is not None and ticks == rec.start_ticks and proc_state_letter(rec.pid) not in ("Z", "X")


def _threads_gone(pid: int) -> bool:
    """True once a dead process holds nothing any more.

    A killed multi-threaded process (every Go binary) shows its leader as a zombie while the
    other threads are still exiting; its listening sockets close only when the last one is
    gone, up to a few hundred ms later. Until then a new cluster cannot bind the same ports.
    """
    try:
        return len(os.listdir(f"/proc/{pid}/task")) <= 1
    except OSError:
        return True


def pid_gone(pid: int) -> bool:
    """The pid no longer runs anything: absent, or a zombie whose threads have all exited."""
    return proc_state_letter(pid) in (None, "Z", "X") and _threads_gone(pid)


def record_gone(rec: ProcessRecord) -> bool:
    """The recorded process has fully exited (a reused pid counts as gone: it is not ours)."""
    ticks = proc_start_ticks(rec.pid)
    return ticks is None or ticks != rec.start_ticks or pid_gone(rec.pid)


def _child_setup(owned: bool, cgroup_procs: str | None) -> Callable[[], None] | None:
    # Children of a harness-owned cluster die with the harness even on SIGKILL of it, so a crashed
    # pytest cannot leave etcd and apiservers running. Detached clusters (`kubequake up`) skip this.
    if not owned and cgroup_procs is None:
        return None

    def setup() -> None:
        if owned:
            die_with_parent()
        if cgroup_procs is not None:
            join_cgroup(cgroup_procs)

    return setup


class Supervisor:
    """Owns the processes of one cluster, persisted in a JSON state file."""

    def __init__(self, state_file: Path, *, die_with_parent: bool) -> None:
        self._save_lock = threading.Lock()
        self.state_file = state_file
        self.die_with_parent = die_with_parent
        self._popen: dict[str, subprocess.Popen[bytes]] = {}
        self._records: dict[str, ProcessRecord] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._load()

    # -- persistence -------------------------------------------------------------------------
    # The state file is the truth shared by every process working on the cluster: `kubequake heal`
    # may restart a component while a pytest session's watchdog watches it. Each reader reloads
    # when the file changed; each writer holds a file lock across reload, change and save.
    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.state_file.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _refresh(self) -> None:
        if self._file_stamp() != self._stamp:
            self._load()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        lock_path = self.state_file.with_suffix(".lock")
        if not lock_path.parent.is_dir():
            yield
            return
        with open(lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                self._refresh()
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _load(self) -> None:
        self._stamp = self._file_stamp()
        if not self.state_file.is_file():
            self._records = {}
            return
        self._records = {}
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable process state %s: %s", self.state_file, exc)
            return
        for item in data.get("processes", []):
            try:
                rec = ProcessRecord(**item)
            except TypeError as exc:
                log.warning("ignoring malformed process record %r in %s: %s", item, self.state_file, exc)
                continue
            self._records[rec.key] = rec

    def _save(self) -> None:
        # The node watchdog restarts components from its own thread: one writer at a time.
        with self._save_lock:
            if not self._records and not self.state_file.parent.is_dir():
                # Nothing to remember and the run directory is already gone (destroy called twice).
                return
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps({"processes": [asdict(r) for r in list(self._records.values())]}, indent=2))
            os.replace(tmp, self.state_file)
            self._stamp = self._file_stamp()

    # -- queries -----------------------------------------------------------------------------
    def records(self) -> list[ProcessRecord]:
        self._refresh()
        return list(self._records.values())

    def record(self, node: str, component: str) -> ProcessRecord | None:
        self._refresh()
        return self._records.get(f"{node}/{component}")

    def state(self, node: str, component: str) -> ComponentState:
        rec = self.record(node, component)
        if rec is None:
            return ComponentState.STOPPED
        self._reap(rec.key)
        if not record_alive(rec):
            return ComponentState.EXITED
        return ComponentState.FROZEN if proc_state_letter(rec.pid) == "T" else ComponentState.RUNNING

    def pid(self, node: str, component: str) -> int | None:
        rec = self.record(node, component)
        return rec.pid if rec is not None and record_alive(rec) else None

    def _reap(self, key: str) -> None:
        popen = self._popen.get(key)
        if popen is not None and popen.poll() is not None:
            del self._popen[key]

    # -- control -----------------------------------------------------------------------------
    def start(self, spec: ProcessSpec) -> ProcessRecord:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._exclusive():
            return self._start_locked(spec)

    def _start_locked(self, spec: ProcessSpec) -> ProcessRecord:
        existing = self._records.get(spec.key)
        if existing is not None and record_alive(existing):
            raise ClusterError(f"{spec.key} is already running as pid {existing.pid}; stop it before starting it")
        preexec = _child_setup(self.die_with_parent, spec.cgroup_procs)
        with open(spec.log_path, "ab") as logf:
            logf.write(f"\n--- kubequake start {time.strftime('%Y-%m-%dT%H:%M:%S')} {spec.key}\n".encode())
            logf.flush()

            def make() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    spec.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=spec.env,
                    start_new_session=True,
                    preexec_fn=preexec,
                    close_fds=True,
                )

            try:
                popen = popen_surviving_thread(make) if self.die_with_parent else make()
            except FileNotFoundError:
                raise ClusterError(
                    f"cannot start {spec.key}: {spec.argv[0]} not found; build binaries with `kubequake binaries`"
                ) from None
        ticks = proc_start_ticks(popen.pid) or 0
        rec = ProcessRecord(spec.node, spec.component, popen.pid, ticks, spec.argv, str(spec.log_path))
        self._popen[rec.key] = popen
        self._records[rec.key] = rec
        self._save()
        log.debug("started %s pid %d", rec.key, rec.pid)
        return rec

    def signal(self, node: str, component: str, sig: signal.Signals) -> bool:
        """Send a signal to a live component; False if it is not running."""
        rec = self.record(node, component)
        if rec is None or not record_alive(rec):
            return False
        try:
            os.kill(rec.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def wait_exit(self, rec: ProcessRecord, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:  # checked at least once, also with timeout 0
            self._reap(rec.key)
            if record_gone(rec):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def stop(self, node: str, component: str, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; waits until the process is gone."""
        rec = self.record(node, component)
        if rec is None or not record_alive(rec):
            return
        # A frozen process cannot handle SIGTERM until it is continued.
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, signal.SIGCONT)
            os.kill(rec.pid, signal.SIGTERM)
        if not self.wait_exit(rec, timeout):
            log.warning("%s did not exit %.0fs after SIGTERM; sending SIGKILL", rec.key, timeout)
            self.kill(node, component)

    def kill(self, node: str, component: str, timeout: float = 10.0) -> None:
        rec = self.record(node, component)
        if rec is None or not record_alive(rec):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, signal.SIGKILL)
        if not self.wait_exit(rec, timeout):
            raise ClusterError(
                f"{rec.key} (pid {rec.pid}) survived SIGKILL for {timeout:.0f}s; check `ps -p {rec.pid}`"
            )

    def stop_all(self, timeout: float = 5.0, order: list[str] | None = None) -> None:
        """Stop every recorded process: in `order` of components first, then the rest."""
        with self._exclusive():
            self._stop_all_locked(timeout, order)

    def _stop_all_locked(self, timeout: float, order: list[str] | None) -> None:
        recs = [r for r in self._records.values() if record_alive(r)]
        rank = {c: i for i, c in enumerate(order or [])}
        recs.sort(key=lambda r: rank.get(r.component, len(rank)))
        groups: dict[int, list[ProcessRecord]] = {}
        for r in recs:
            groups.setdefault(rank.get(r.component, len(rank)), []).append(r)
        for _, group in sorted(groups.items()):
            for r in group:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(r.pid, signal.SIGCONT)
                    os.kill(r.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            survivors = [r for r in group if not self.wait_exit(r, max(0.0, deadline - time.monotonic()))]
            # SIGKILL every survivor at once, then wait: one at a time, each kill would wait for
            # the previous process to finish exiting (hundreds of ms for a Go binary under load).
            for r in survivors:
                with contextlib.suppress(ProcessLookupError):
                    if not record_gone(r):  # never a pid that has been reused meanwhile
                        os.kill(r.pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5.0
            for r in survivors:
                self.wait_exit(r, max(0.0, kill_deadline - time.monotonic()))
        self._records.clear()
        self._popen.clear()
        self._save()


def _ancestors(pid: int) -> set[int]:
    """pid and every parent up to init."""
    seen: set[int] = set()
    while pid > 0 and pid not in seen:
        seen.add(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        ppid = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "0")
        pid = int(ppid)
    return seen


def _processes_naming(marker: str, spared: set[int]) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker + "/" in cmdline or cmdline.rstrip().endswith(marker):
            found.append(int(entry.name))
    return found


def sweep(run_dir: Path, timeout: float = 5.0, passes: int = 2) -> list[int]:
    """Kill any process whose command line names this run directory.

    The state file is the first line of defence; this catches what a run crashed before recording
    (a process started between Popen and the state write). A process in the middle of exec shows
    an empty command line for a moment, so the scan is repeated once after a short pause.
    """
    marker = str(run_dir)
    victims: list[int] = []
    # A shell or pytest that started this process may name the run directory in its own
    # arguments; killing our own ancestors would end the run that is cleaning up.
    spared = _ancestors(os.getpid())
    for n in range(passes):
        if n:
            time.sleep(0.05)
        found = [p for p in _processes_naming(marker, spared) if p not in victims]
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        victims += found
    deadline = time.monotonic() + timeout
    while victims and time.monotonic() < deadline:
        victims = [p for p in victims if not pid_gone(p)]
        time.sleep(0.05)
    return victims
