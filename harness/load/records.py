"""The JSON-lines record format between the Locust processes and the harness.

Each Locust process (standalone, master or worker) appends one line per event to its own file in
the run's record directory: a finished request, a step of a write (attempt before sending, then
ack / maybe / rejected), a watch start or end, a worker report seen by the master. One file per
process means no two writers share a file; a line is written whole with one `write` call so a
process killed with SIGKILL leaves at most one torn last line, which the reader skips.

Standard library only: this module is imported both by gevent-patched Locust processes and by
the pytest process that reads the records back.
"""

from __future__ import annotations

import enum
import errno
import json
import logging
import os
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".jsonl"


class FailureKind(enum.StrEnum):
    """Why a request failed, as a client sees it."""

    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_RESET = "connection_reset"
    TIMEOUT = "timeout"
    HTTP_5XX = "http_5xx"
    HTTP_429 = "http_429"
    OTHER = "other"


_ERRNO_KINDS = {
    errno.ECONNREFUSED: FailureKind.CONNECTION_REFUSED,
    errno.ECONNRESET: FailureKind.CONNECTION_RESET,
    errno.EPIPE: FailureKind.CONNECTION_RESET,
    errno.ECONNABORTED: FailureKind.CONNECTION_RESET,
    errno.ETIMEDOUT: FailureKind.TIMEOUT,
}


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    # Bounded: exception chains are short, and `seen` stops a cycle.
    while cur is not None and id(cur) not in seen and len(seen) < 16:
        seen.add(id(cur))
        yield cur
        # Client libraries wrap the real error: geventhttpclient's RetriesExceeded keeps it in
        # `original`, urllib3's MaxRetryError in `reason`.
        wrapped = getattr(cur, "original", None) or getattr(cur, "reason", None)
        cur = wrapped if isinstance(wrapped, BaseException) else (cur.__cause__ or cur.__context__)


def describe(exception: BaseException) -> str:
    """The exception and what it wraps, innermost last: `RetriesExceeded: ... <- TimeoutError: timed out`."""
    return " <- ".join(f"{type(e).__name__}: {e}" for e in _exception_chain(exception))[:400]


def classify(exception: BaseException | None, status: int) -> FailureKind | None:
    """The failure kind of one request, or None when it succeeded.

    An HTTP status decides when there is one; otherwise the exception (and what caused it) is
    matched by type, errno and, for client libraries whose types we do not import (gevent,
    geventhttpclient), by type name.
    """
    if exception is None and status < 400:
        return None
    if status == 429:
        return FailureKind.HTTP_429
    if 500 <= status <= 599:
        return FailureKind.HTTP_5XX
    if status >= 400:
        return FailureKind.OTHER
    assert exception is not None
    for exc in _exception_chain(exception):
        if isinstance(exc, ConnectionRefusedError):
            return FailureKind.CONNECTION_REFUSED
        if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
            return FailureKind.CONNECTION_RESET
        if isinstance(exc, TimeoutError):
            return FailureKind.TIMEOUT
        if isinstance(exc, OSError) and exc.errno in _ERRNO_KINDS:
            return _ERRNO_KINDS[exc.errno]
        name = type(exc).__name__
        if "Timeout" in name:
            return FailureKind.TIMEOUT
        # geventhttpclient's HTTPConnectionClosed and http.client's RemoteDisconnected: the peer
        # closed the connection before answering, which a client sees exactly like a reset.
        text = str(exc)
        if name in ("HTTPConnectionClosed", "RemoteDisconnected") or "connection closed" in text.lower():
            return FailureKind.CONNECTION_RESET
        # The peer closed mid-response (geventhttpclient: "Incomplete response."; http.client:
        # IncompleteRead): the backend died with the request in flight.
        if name in ("HTTPParseError", "IncompleteRead", "ChunkedEncodingError") and (
            "ncomplete" in text or "closed" in text or name != "HTTPParseError"
        ):
            return FailureKind.CONNECTION_RESET
        # A TCP load balancer accepts the connection, then closes it when its backend refuses:
        # the client sees EOF in the middle of the TLS handshake.
        if (
            name in ("SSLEOFError", "SSLZeroReturnError")
            or "EOF occurred in violation" in text
            or "UNEXPECTED_EOF" in text
        ):
            return FailureKind.CONNECTION_RESET
    return FailureKind.OTHER


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One finished request. Times are wall-clock seconds (time.time()), so they line up with
    the fault journal written by another process."""

    start: float
    end: float
    method: str
    name: str
    ok: bool
    kind: FailureKind | None
    status: int
    latency_ms: float
    # False for a broken watch stream: its "latency" is the stream's lifetime, which would
    # swamp every percentile, but the break is still a failure the client saw.
    counts_latency: bool = True
    source: str = ""
    error: str = ""


class WriteOp(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class WritePhase(enum.StrEnum):
    """A write is recorded before it is sent (ATTEMPT) and again when its fate is known.

    ACK: the API answered 2xx, so the write happened. REJECTED: the API answered 4xx, so it did
    not. MAYBE: no answer, a 5xx, a timeout or a reset: it may or may not have been applied. An
    ATTEMPT with no later line (the process was stopped mid-request) counts as MAYBE too.
    """

    ATTEMPT = "attempt"
    ACK = "ack"
    MAYBE = "maybe"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class WriteRecord:
    writer: str
    seq: int
    phase: WritePhase
    op: WriteOp
    namespace: str
    name: str
    content: str
    # ATTEMPT: the precondition sent (empty for a create); ACK: what the API returned.
    resource_version: str
    time: float
    status: int = 0
    error: str = ""


class WatchEvent(enum.StrEnum):
    START = "start"
    END = "end"


@dataclass(frozen=True, slots=True)
class WatchRecord:
    """A watch (re)started successfully, or ended. `gap_s` on a START is the time since the
    previous watch of the same watcher ended: how long that client was blind."""

    watcher: str
    event: WatchEvent
    time: float
    restart: int
    gap_s: float | None = None
    reason: str = ""
    events_seen: int = 0
    source: str = ""


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """What a Locust master heard from one worker: its id, pid and cumulative request count."""

    client_id: str
    pid: int
    requests: int
    time: float


Record = RequestRecord | WriteRecord | WatchRecord | WorkerReport


def encode(rec: Record) -> str:
    """One JSON line (with trailing newline) for a record."""
    d: dict[str, Any]
    if isinstance(rec, RequestRecord):
        d = {
            "k": "request",
            "start": rec.start,
            "end": rec.end,
            "method": rec.method,
            "name": rec.name,
            "ok": rec.ok,
            "kind": rec.kind.value if rec.kind else None,
            "status": rec.status,
            "latency_ms": round(rec.latency_ms, 3),
            "lat": rec.counts_latency,
            "src": rec.source,
        }
        if rec.error:
            d["error"] = rec.error[:300]
    elif isinstance(rec, WriteRecord):
        d = {
            "k": "write",
            "writer": rec.writer,
            "seq": rec.seq,
            "phase": rec.phase.value,
            "op": rec.op.value,
            "ns": rec.namespace,
            "name": rec.name,
            "content": rec.content,
            "rv": rec.resource_version,
            "time": rec.time,
            "status": rec.status,
        }
        if rec.error:
            d["error"] = rec.error[:300]
    elif isinstance(rec, WatchRecord):
        d = {
            "k": "watch",
            "watcher": rec.watcher,
            "event": rec.event.value,
            "time": rec.time,
            "restart": rec.restart,
            "gap_s": rec.gap_s,
            "reason": rec.reason[:300],
            "events": rec.events_seen,
            "src": rec.source,
        }
    else:
        d = {"k": "worker", "client": rec.client_id, "pid": rec.pid, "requests": rec.requests, "time": rec.time}
    return json.dumps(d, separators=(",", ":")) + "\n"


def decode(line: str) -> Record | None:
    """The record on one line, or None for a blank, torn or unknown line."""
    try:
        d = json.loads(line)
        k = d["k"]
        if k == "request":
            return RequestRecord(
                start=float(d["start"]),
                end=float(d["end"]),
                method=str(d["method"]),
                name=str(d["name"]),
                ok=bool(d["ok"]),
                kind=FailureKind(d["kind"]) if d["kind"] else None,
                status=int(d["status"]),
                latency_ms=float(d["latency_ms"]),
                counts_latency=bool(d.get("lat", True)),
                source=str(d.get("src", "")),
                error=str(d.get("error", "")),
            )
        if k == "write":
            return WriteRecord(
                writer=str(d["writer"]),
                seq=int(d["seq"]),
                phase=WritePhase(d["phase"]),
                op=WriteOp(d["op"]),
                namespace=str(d["ns"]),
                name=str(d["name"]),
                content=str(d["content"]),
                resource_version=str(d["rv"]),
                time=float(d["time"]),
                status=int(d.get("status", 0)),
                error=str(d.get("error", "")),
            )
        if k == "watch":
            gap = d.get("gap_s")
            return WatchRecord(
                watcher=str(d["watcher"]),
                event=WatchEvent(d["event"]),
                time=float(d["time"]),
                restart=int(d["restart"]),
                gap_s=None if gap is None else float(gap),
                reason=str(d.get("reason", "")),
                events_seen=int(d.get("events", 0)),
                source=str(d.get("src", "")),
            )
        if k == "worker":
            return WorkerReport(str(d["client"]), int(d["pid"]), int(d["requests"]), float(d["time"]))
    except (ValueError, KeyError, TypeError):
        return None
    return None


class RecordWriter:
    """Appends records to one file, a whole line per write() so a SIGKILL tears at most one line.

    Thread-safe (a lock around each write), which also makes it safe under gevent.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Unbuffered binary append: every record reaches the kernel at once, so the harness can
        # read a live run and a killed process loses nothing it reported.
        self._f: IO[bytes] | None = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def write(self, rec: Record) -> None:
        data = encode(rec).encode()
        with self._lock:
            if self._f is not None:
                self._f.write(data)

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None


def process_tag() -> str:
    """host:pid, naming the process that produced a record."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class RecordSet:
    """Every record of a run, split by type and sorted by time."""

    requests: list[RequestRecord] = field(default_factory=list)
    writes: list[WriteRecord] = field(default_factory=list)
    watches: list[WatchRecord] = field(default_factory=list)
    worker_reports: list[WorkerReport] = field(default_factory=list)
    skipped_lines: int = 0

    def add(self, records: Iterable[Record | None]) -> None:
        for rec in records:
            if isinstance(rec, RequestRecord):
                self.requests.append(rec)
            elif isinstance(rec, WriteRecord):
                self.writes.append(rec)
            elif isinstance(rec, WatchRecord):
                self.watches.append(rec)
            elif isinstance(rec, WorkerReport):
                self.worker_reports.append(rec)
            else:
                self.skipped_lines += 1

    def sort(self) -> None:
        self.requests.sort(key=lambda r: r.end)
        self.writes.sort(key=lambda r: (r.writer, r.seq, r.time))
        self.watches.sort(key=lambda r: r.time)
        self.worker_reports.sort(key=lambda r: r.time)


def read_dir(directory: Path) -> RecordSet:
    """Read every record file of a run directory (safe while processes are still writing)."""
    out = RecordSet()
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob(f"*{RECORD_SUFFIX}")):
        try:
            text = path.read_text(errors="replace")
        except OSError as exc:
            log.warning("cannot read traffic records %s: %s", path, exc)
            continue
        out.add(decode(line) for line in text.splitlines() if line.strip())
    out.sort()
    if out.skipped_lines:
        log.info(
            "skipped %d unreadable record lines in %s (a torn last line of a killed process)",
            out.skipped_lines,
            directory,
        )
    return out
