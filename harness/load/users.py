"""Locust users that exercise the Kubernetes API the way controllers and people do.

- ReaderUser: gets and lists of namespaced ConfigMaps, Pods and Deployments (quorum reads).
- WriterUser: creates, updates (with resourceVersion preconditions) and deletes ConfigMaps with
  unique names and content: the write path to etcd. Every write is recorded before it is sent and
  again with its outcome, which is what the acknowledged-write ledger is built from.
- WatchUser: a watch on ConfigMaps, recording every (re)start, the gap since the previous watch
  ended and why it ended.

All HTTP goes through Locust's FastHttpSession (geventhttpclient: far less CPU per request than
requests, which matters on a 2-core machine that also runs the cluster) with TLS verified
against the cluster CA and a client certificate; there is no switch to turn verification off.
Every request reports through Locust's request event, so Locust's own statistics, the web UI and
the harness's per-request records all see the same requests.

This module imports locust and so runs gevent-patched: only Locust processes import it.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import geventhttpclient.client as ghc
from locust import User, constant, constant_throughput, task
from locust.contrib.fasthttp import FastHttpSession, FastResponse
from locust.env import Environment
from locust.event import EventHook

from harness.load.api import CONTENT_KEY, SEED_CONFIGMAPS, SEED_DEPLOYMENT, TRAFFIC_LABEL
from harness.load.errors import LoadError
from harness.load.records import (
    RecordWriter,
    WatchEvent,
    WatchRecord,
    WriteOp,
    WritePhase,
    WriteRecord,
    classify,
    describe,
    process_tag,
)
from harness.load.settings import TrafficSettings

log = logging.getLogger(__name__)

# Methods a client may send again by itself when a connection closes before any answer: the safe
# ones, as Go's net/http (so client-go and kubectl) replays them. geventhttpclient also replays PUT
# and DELETE there; a DELETE the API applied whose answer was lost with a killed apiserver would
# then be sent again through another one, answered 404, and recorded as rejected, turning a
# write whose fate is unknown into a false "lost" in the ledger.
REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def _replay_only_safe_methods() -> None:
    hook = getattr(ghc, "_may_retry_after_send_error", None)
    if not callable(hook):
        raise LoadError(
            "geventhttpclient no longer has _may_retry_after_send_error, the hook that keeps it from "
            "sending a PUT or DELETE twice; install the version pyproject.toml pins (make venv)"
        )
    ghc._may_retry_after_send_error = lambda method: method.upper() in REPLAYABLE_METHODS


_replay_only_safe_methods()

_DEFAULTS = TrafficSettings()
# Pause after a failed watch start or list: a dead LB must not turn the watcher into a busy loop.
WATCH_RETRY_BACKOFF_S = 0.2


@dataclass(frozen=True)
class LoadOptions:
    """The locustfile's --kq-* options as read by each user when it starts.

    Read at user start, not at import: a Locust worker receives the master's options only with
    its first spawn message.
    """

    ca: Path
    cert: Path
    key: Path
    namespace: str
    records_dir: Path | None
    run_tag: str
    rate_per_user: float
    objects_per_writer: int
    request_timeout_s: float
    connect_timeout_s: float
    watch_timeout_s: int
    max_requests: int

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace | None) -> LoadOptions:
        def opt(name: str, default: Any) -> Any:
            v = getattr(ns, name, None) if ns is not None else None
            return default if v is None or v == "" else v

        run_dir = opt("kq_run_dir", "")
        pki = Path(run_dir) / "pki" if run_dir else None
        ca = opt("kq_ca", str(pki / "ca.crt") if pki else "")
        cert = opt("kq_cert", str(pki / "traffic.crt") if pki else "")
        key = opt("kq_key", str(pki / "traffic.key") if pki else "")
        records = opt("kq_records_dir", "")
        return cls(
            ca=Path(ca),
            cert=Path(cert),
            key=Path(key),
            namespace=str(opt("kq_namespace", "kq-load")),
            records_dir=Path(records) if records else None,
            run_tag=str(opt("kq_run_tag", "manual")),
            rate_per_user=float(opt("kq_rate_per_user", _DEFAULTS.rate_per_user or 0)),
            objects_per_writer=int(opt("kq_objects_per_writer", _DEFAULTS.objects_per_writer)),
            request_timeout_s=float(opt("kq_request_timeout", _DEFAULTS.request_timeout_s)),
            connect_timeout_s=float(opt("kq_connect_timeout", _DEFAULTS.connect_timeout_s)),
            watch_timeout_s=int(opt("kq_watch_timeout", _DEFAULTS.watch_timeout_s)),
            max_requests=int(opt("kq_max_requests", _DEFAULTS.max_requests)),
        )

    def missing_tls(self) -> list[str]:
        return [
            f"{what} {p or '(not set)'}"
            for what, p in (("--kq-ca", self.ca), ("--kq-cert", self.cert), ("--kq-key", self.key))
            if not str(p) or str(p) == "." or not p.is_file()
        ]


class ProcessRecorder:
    """This process's record file, opened when the test starts and closed when Locust quits."""

    def __init__(self) -> None:
        self._writer: RecordWriter | None = None
        self._lock = threading.Lock()
        self.requests = 0

    def open(self, records_dir: Path | None, role: str) -> None:
        with self._lock:
            if self._writer is not None or records_dir is None:
                return
            tag = process_tag().replace(":", "-")
            self._writer = RecordWriter(records_dir / f"{role}-{tag}.jsonl")
            log.info("recording traffic to %s", self._writer.path)

    def write(self, rec: Any) -> None:
        w = self._writer
        if w is not None:
            w.write(rec)

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


RECORDER = ProcessRecorder()


def tls_context_factory(ca: Path, cert: Path, key: Path) -> Callable[..., ssl.SSLContext]:
    """An SSLContext factory trusting only the cluster CA and presenting the client certificate."""

    def factory(*_args: object, **_kwargs: object) -> ssl.SSLContext:
        # geventhttpclient offers its bundled public CA list as `cafile`; the API's serving
        # certificate is signed by the cluster CA, so that is the only one trusted here.
        ctx = gevent.ssl.create_default_context(cafile=str(ca))
        ctx.load_cert_chain(str(cert), str(key))
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx  # type: ignore[no-any-return]

    return factory


def api_session(
    base_url: str,
    request_event: EventHook,
    user: User | None,
    ssl_context_factory: Callable[..., ssl.SSLContext] | None,
    *,
    read_timeout_s: float,
    connect_timeout_s: float,
) -> FastHttpSession:
    """The HTTP session every user sends through: one connection, no retries, no redirects."""
    return FastHttpSession(
        base_url=base_url,
        request_event=request_event,
        user=user,
        insecure=False,
        ssl_context_factory=ssl_context_factory,
        network_timeout=read_timeout_s,
        connection_timeout=connect_timeout_s,
        # Retries would hide exactly the failures a chaos run measures (replays of safe methods
        # on a closed connection aside, see REPLAYABLE_METHODS).
        max_retries=0,
        max_redirects=0,
        concurrency=1,
    )


class ApiUser(User):
    """A user with an HTTPS session to the API through the LB, paced by --kq-rate-per-user."""

    abstract = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.opts = LoadOptions.from_namespace(environment.parsed_options)
        missing = self.opts.missing_tls()
        if missing:
            raise ValueError(
                f"traffic TLS files missing: {', '.join(missing)}; pass --kq-run-dir or --kq-ca/--kq-cert/--kq-key"
            )
        self.client = api_session(
            str(self.host),
            environment.events.request,
            self,
            tls_context_factory(self.opts.ca, self.opts.cert, self.opts.key),
            read_timeout_s=self.read_timeout_s(),
            connect_timeout_s=self.opts.connect_timeout_s,
        )
        rate = self.opts.rate_per_user
        self._pacer = constant_throughput(rate) if rate > 0 else constant(0)
        self.ns_path = f"/api/v1/namespaces/{self.opts.namespace}"

    def wait_time(self) -> float:
        return float(self._pacer(self))

    def read_timeout_s(self) -> float:
        """Longest silence on a connection before the request counts as timed out."""
        return self.opts.request_timeout_s


class ReaderUser(ApiUser):
    """Reads like a dashboard or a controller's cache refresh: gets and lists, quorum reads."""

    weight = 3

    @task(3)
    def list_configmaps(self) -> None:
        self.client.get(f"{self.ns_path}/configmaps?limit=50", name="LIST configmaps")

    @task(3)
    def get_configmap(self) -> None:
        self.client.get(f"{self.ns_path}/configmaps/{random.choice(SEED_CONFIGMAPS)}", name="GET configmap")

    @task(2)
    def list_pods(self) -> None:
        self.client.get(f"{self.ns_path}/pods?limit=50", name="LIST pods")

    @task(1)
    def list_deployments(self) -> None:
        self.client.get(f"/apis/apps/v1/namespaces/{self.opts.namespace}/deployments?limit=50", name="LIST deployments")

    @task(1)
    def get_deployment(self) -> None:
        self.client.get(
            f"/apis/apps/v1/namespaces/{self.opts.namespace}/deployments/{SEED_DEPLOYMENT}", name="GET deployment"
        )


def _status(resp: FastResponse) -> int:
    try:
        return int(resp.status_code or 0)
    except (TypeError, ValueError):
        return 0


def _json(resp: FastResponse) -> dict[str, Any]:
    try:
        body = json.loads(resp.content or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class WriterUser(ApiUser):
    """Creates, updates and deletes its own ConfigMaps, recording each write for the ledger.

    Each writer owns its names, so operations on one name are strictly sequential. After any
    write whose outcome is unknown (no 2xx, no 4xx) the writer abandons that name for good: a
    late-applied request can then never race a later acknowledged one, and the ledger's "maybe"
    is always the last operation on its name. Updates and deletes carry the last acknowledged
    resourceVersion as a precondition, so they can never silently overwrite a state the writer
    did not see.
    """

    weight = 1

    def on_start(self) -> None:
        self.writer_id = f"w{uuid.uuid4().hex[:8]}"
        self.seq = 0
        self.counter = 0
        self.live: dict[str, str] = {}  # name -> last acknowledged resourceVersion
        self.deleted: list[str] = []  # acknowledged deletes that may be re-created
        self.cm_path = f"{self.ns_path}/configmaps"

    def _new_name(self) -> str:
        self.counter += 1
        return f"kq-{self.opts.run_tag}-{self.writer_id}-{self.counter}"

    def _content(self, name: str) -> str:
        return f"{name}#{self.seq}#{uuid.uuid4().hex[:12]}"

    @task
    def write(self) -> None:
        want = self.opts.objects_per_writer
        roll = random.random()
        if self.deleted and (len(self.live) < want and roll < 0.3):
            self._create(self.deleted.pop(random.randrange(len(self.deleted))))
        elif len(self.live) < want:
            self._create(self._new_name())
        elif roll < 0.7:
            self._update(random.choice(list(self.live)))
        else:
            self._delete(random.choice(list(self.live)))

    def _body(self, name: str, content: str, rv: str = "") -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": {TRAFFIC_LABEL: self.opts.run_tag}}
        if rv:
            meta["resourceVersion"] = rv
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {CONTENT_KEY: content}}

    def _create(self, name: str) -> None:
        self.seq += 1
        content = self._content(name)
        self._send(WriteOp.CREATE, name, content, "", "POST", self.cm_path, self._body(name, content))

    def _update(self, name: str) -> None:
        self.seq += 1
        content = self._content(name)
        rv = self.live[name]
        self._send(WriteOp.UPDATE, name, content, rv, "PUT", f"{self.cm_path}/{name}", self._body(name, content, rv))

    def _delete(self, name: str) -> None:
        self.seq += 1
        rv = self.live[name]
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"resourceVersion": rv}}
        self._send(WriteOp.DELETE, name, "", rv, "DELETE", f"{self.cm_path}/{name}", body)

    def _record(
        self, phase: WritePhase, op: WriteOp, name: str, content: str, rv: str, status: int = 0, error: str = ""
    ) -> None:
        RECORDER.write(
            WriteRecord(
                self.writer_id, self.seq, phase, op, self.opts.namespace, name, content, rv, time.time(), status, error
            )
        )

    def _send(
        self, op: WriteOp, name: str, content: str, rv: str, method: str, path: str, body: dict[str, Any]
    ) -> None:
        # Recorded before sending: if this process dies mid-request, the attempt still stands as
        # a "maybe" in the ledger instead of vanishing.
        self._record(WritePhase.ATTEMPT, op, name, content, rv)
        resp = self.client.request(method, path, json=body, name=f"{op.upper()} configmap")
        status = _status(resp)
        if 200 <= status < 300:
            # A delete answers with a Status or the deleted object; the precondition rv is what counts.
            new_rv = (
                rv if op is WriteOp.DELETE else str((_json(resp).get("metadata") or {}).get("resourceVersion") or "")
            )
            self._record(WritePhase.ACK, op, name, content, new_rv, status)
            if op is WriteOp.DELETE:
                self.live.pop(name, None)
                self.deleted.append(name)
            else:
                self.live[name] = new_rv
            return
        err = getattr(resp, "error", None)
        error = describe(err) if isinstance(err, BaseException) else f"HTTP {status}"
        phase = WritePhase.REJECTED if 400 <= status < 500 else WritePhase.MAYBE
        self._record(phase, op, name, content, rv, status, error)
        if phase is WritePhase.REJECTED and status in (404, 409):
            log.warning(
                "%s of %s was rejected with HTTP %d although the writer held its latest acknowledged state",
                op,
                name,
                status,
            )
        self.live.pop(name, None)
        if name in self.deleted:
            self.deleted.remove(name)


class WatchUser(ApiUser):
    """Watches ConfigMaps in the traffic namespace and records gaps and restarts.

    A gap is the time from one watch ending (normally at timeoutSeconds, or broken by a fault)
    to the next watch starting successfully; the restart counter counts every new watch after
    the first. A broken stream is also reported as a failed request, so it shows in the timeline.
    """

    fixed_count = 1

    def on_start(self) -> None:
        self.watcher_id = f"watch-{uuid.uuid4().hex[:8]}"
        self.rv: str | None = None
        self.last_end: float | None = None
        self.restarts = 0
        self.source = process_tag()

    def wait_time(self) -> float:
        # The task blocks for a whole watch; only a failed start pauses, with its own backoff.
        return 0.0

    def read_timeout_s(self) -> float:
        # A quiet namespace sends no events for a whole watch (bookmarks come about once a
        # minute), so silence up to the watch's own timeoutSeconds is normal, not a failure.
        return self.opts.watch_timeout_s + self.opts.request_timeout_s

    def _sync(self) -> bool:
        resp = self.client.get(f"{self.ns_path}/configmaps?limit=1", name="LIST configmaps (watch sync)")
        if _status(resp) != 200:
            gevent.sleep(WATCH_RETRY_BACKOFF_S)
            return False
        self.rv = str((_json(resp).get("metadata") or {}).get("resourceVersion") or "") or None
        return self.rv is not None

    @task
    def watch(self) -> None:
        if self.rv is None and not self._sync():
            return
        w = self.opts.watch_timeout_s
        path = (
            f"{self.ns_path}/configmaps?watch=1&allowWatchBookmarks=true&timeoutSeconds={w}&resourceVersion={self.rv}"
        )
        resp = self.client.request(
            "GET",
            path,
            name="WATCH configmaps",
            stream=True,
            headers={"Accept-Encoding": "identity", "Accept": "application/json"},
        )
        status = _status(resp)
        if status != 200:
            if status == 410:
                self.rv = None  # resourceVersion compacted away: list again, then watch
            gevent.sleep(WATCH_RETRY_BACKOFF_S)
            return
        started = time.time()
        gap = None if self.last_end is None else started - self.last_end
        RECORDER.write(WatchRecord(self.watcher_id, WatchEvent.START, started, self.restarts, gap, source=self.source))
        reason, events, error = self._consume(resp, started + w + self.opts.request_timeout_s + 5)
        ended = time.time()
        RECORDER.write(
            WatchRecord(self.watcher_id, WatchEvent.END, ended, self.restarts, None, reason, events, self.source)
        )
        self.last_end = ended
        self.restarts += 1
        if error is not None:
            self.environment.events.request.fire(
                request_type="WATCH",
                name="WATCH configmaps (stream)",
                response_time=(ended - started) * 1000,
                response_length=0,
                exception=error,
                context={"kq_no_latency": True},
                response=None,
                start_time=started,
                url=path,
            )

    def _consume(self, resp: FastResponse, deadline: float) -> tuple[str, int, BaseException | None]:
        """Read watch events until the server ends the stream, it breaks, or the deadline passes."""
        raw = getattr(resp, "_response", None)
        if raw is None:
            return "no stream", 0, None
        events = 0
        try:
            # Bounded by the server's timeoutSeconds, the client's read timeout and the deadline.
            while time.time() < deadline:
                line = raw.readline(b"\n")
                if not line:
                    return "expired", events, None
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                obj = ev.get("object") or {}
                if ev.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        self.rv = None
                        return "resourceVersion expired (410)", events, None
                    return f"watch error event: {obj.get('message', '')}", events, None
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    self.rv = str(rv)
                events += 1
            return "client deadline", events, None
        except Exception as exc:  # every way a stream can break is a result here
            kind = classify(exc, 0)
            return f"broken: {kind}: {describe(exc)}", events, exc
        finally:
            # An unfinished stream must not go back to the connection pool.
            raw.release()
