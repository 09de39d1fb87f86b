"""Session records: which process uses which cluster, and whether it brought the cluster up.

Every command that uses a cluster (`kubequake run`, `gate`, `demo`, `up` while it starts one,
a pytest session) writes one record while it holds the cluster and removes it when it lets go.
A record whose process is gone is what a killed command left: `kubequake heal` reads it to find
the cluster, how to reach it again, and whether to tear it down (the dead process had brought it
up and would have torn it down) or only undo its faults (the cluster was already running).

Records live under the run root, in `.sessions/`, not in the cluster's run directory: creating a
local cluster first clears a crashed run's leftovers from that directory, and a record written
there before start-up would go with them, leaving a start-up killed halfway with no record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.providers.process import proc_start_ticks, proc_state_letter

log = logging.getLogger(__name__)

SESSIONS_DIR = ".sessions"


def sessions_dir(run_root: Path) -> Path:
    # Cluster names are letters, digits, '-' and '_': no cluster's run directory is called this.
    return run_root / SESSIONS_DIR


@dataclass(frozen=True)
class SessionRecord:
    """One process's hold on one cluster, as written to disk."""

    provider: str
    cluster: str
    run_dir: str
    # The pid and its kernel start time: a pid reused by another process is not taken for the owner.
    pid: int
    pid_start: int
    command: list[str]
    # The process brought the cluster up, and would tear it down when it ends.
    created: bool
    teardown: bool
    # How to reach the cluster again (harness.providers.registry.ProviderOptions, as plain data).
    options: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    # Where the record is on disk; not written into the file itself.
    path: str = ""

    @property
    def command_line(self) -> str:
        return " ".join(self.command)

    def alive(self) -> bool:
        """The process that wrote the record still runs (a zombie is gone for this purpose)."""
        if proc_state_letter(self.pid) in (None, "Z", "X"):
            return False
        return proc_start_ticks(self.pid) == self.pid_start


def describe_command(argv: list[str], interpreter_argv: list[str] | None = None) -> list[str]:
    """The command as a user would recognise it: `kubequake run ...`, `python -m pytest ...`.

    `interpreter_argv` (sys.orig_argv) tells `python -m MODULE` apart, where sys.argv[0] is only
    the module's file.
    """
    if not argv:
        return []
    orig = interpreter_argv or []
    if len(orig) >= 3 and orig[1] == "-m":
        return ["python", "-m", orig[2], *argv[1:]]
    if argv[0] == "-c":
        return ["python", "-c", *argv[1:]]
    return [Path(argv[0]).name, *argv[1:]]


def new_record(
    *,
    provider: str,
    cluster: str,
    run_dir: Path,
    created: bool,
    teardown: bool,
    options: dict[str, Any],
    command: list[str] | None = None,
) -> SessionRecord:
    pid = os.getpid()
    start = proc_start_ticks(pid)
    return SessionRecord(
        provider=provider,
        cluster=cluster,
        run_dir=str(run_dir),
        pid=pid,
        pid_start=start if start is not None else 0,
        command=describe_command(sys.argv, sys.orig_argv) if command is None else describe_command(command),
        created=created,
        teardown=teardown,
        options=options,
    )


def write(record: SessionRecord, run_root: Path) -> SessionRecord:
    """Write (or rewrite) a record atomically; returns it with its path set."""
    d = sessions_dir(run_root)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = Path(record.path) if record.path else d / f"{record.cluster}-{record.pid}-{record.id}.json"
    data = asdict(record)
    data.pop("path")
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    # Rename: a reader (heal) never sees half a record.
    tmp.replace(path)
    return SessionRecord(**{**data, "path": str(path)})


def remove(record: SessionRecord) -> None:
    if record.path:
        with contextlib.suppress(FileNotFoundError):
            Path(record.path).unlink()


def parse(text: str, path: Path) -> SessionRecord | None:
    """A record from its file's text, or None for a file that is not one (logged, never fatal)."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        data.pop("path", None)
        rec = SessionRecord(**data, path=str(path))
        if not (isinstance(rec.pid, int) and isinstance(rec.command, list) and isinstance(rec.options, dict)):
            raise TypeError("pid, command or options of the wrong type")
    except (ValueError, TypeError) as exc:
        log.warning("ignoring %s: not a session record (%s)", path, exc)
        return None
    return rec


def read_all(run_root: Path) -> list[SessionRecord]:
    """Every record under the run root, oldest first."""
    d = sessions_dir(run_root)
    if not d.is_dir():
        return []
    records = []
    for path in sorted(d.glob("*.json")):
        try:
            text = path.read_text()
        except OSError:
            continue  # removed meanwhile by the session that ended
        rec = parse(text, path)
        if rec is not None:
            records.append(rec)
    return sorted(records, key=lambda r: r.started_at)


def for_cluster(records: list[SessionRecord], provider: str, run_dir: Path) -> list[SessionRecord]:
    return [r for r in records if r.provider == provider and Path(r.run_dir) == run_dir]
