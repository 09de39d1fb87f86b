"""Kubernetes API traffic through the load balancer: readers, writers and a watcher.

The harness runs this file as a Locust subprocess (see harness/load/runner.py); people can run
the very same file, with Locust's web UI:

    locust -f harness/load/locustfile.py --host https://127.0.81.10:6443 \\
        --kq-run-dir ~/.local/state/kubequake/<cluster-name>

or with explicit TLS files (--kq-ca, --kq-cert, --kq-key; the identity needs create/update/delete
on ConfigMaps and get/list on Pods and Deployments). Distributed mode works as usual:

    locust -f harness/load/locustfile.py --master --host ... --kq-run-dir ...
    locust -f harness/load/locustfile.py --worker --master-host 127.0.0.1

The --kq-* options given to the master reach the workers with their first spawn message.
With --kq-records-dir every process appends its requests, writes and watch events as JSON lines
to its own file there (the harness builds its timeline and ledger from those files).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

try:
    import harness.load.users  # noqa: F401 - only probing that the package is importable
except ImportError:  # pragma: no cover - a checkout used without `pip install -e .`
    # Locust imports this file by path; make the checkout's harness package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.load.api import TrafficApi
from harness.load.errors import LoadError
from harness.load.records import RequestRecord, WorkerReport, classify, describe, process_tag
from harness.load.settings import TrafficSettings
from harness.load.users import RECORDER, LoadOptions, ReaderUser, WatchUser, WriterUser
from harness.net.tls import TLSClient

__all__ = ["ReaderUser", "WatchUser", "WriterUser"]

log = logging.getLogger("kubequake.locustfile")
_DEFAULTS = TrafficSettings()
_SOURCE = process_tag()
MAX_REQUESTS_POLL_S = 0.2


def add_options(parser: LocustArgumentParser, **_: Any) -> None:
    # Added on the parser itself (not an argument group): only then does Locust's web UI show
    # them. Options read when users start (namespace, rate, timeouts) can be changed in the UI;
    # weights and paths are fixed at start-up, so the UI leaves them out.
    p = parser.add_argument
    fixed = {"include_in_web_ui": False}
    p("--kq-run-dir", default="", help="a local cluster's run directory (uses its pki/ca.crt, traffic.*)", **fixed)
    p("--kq-ca", default="", help="CA bundle that signed the API's serving certificate", **fixed)
    p("--kq-cert", default="", help="client certificate", **fixed)
    p("--kq-key", default="", help="client key", **fixed)
    p("--kq-namespace", default="kq-load", help="namespace for the traffic (created if missing)")
    p("--kq-records-dir", default="", help="append JSON-lines records of every request/write here", **fixed)
    p("--kq-run-tag", default="manual", help="label value marking this run's objects", **fixed)
    p(
        "--kq-rate-per-user",
        type=float,
        default=_DEFAULTS.rate_per_user or 0.0,
        help="requests per second per reader/writer; 0 = as fast as possible",
    )
    p("--kq-reader-weight", type=float, default=_DEFAULTS.reader_weight, help="weight of readers", **fixed)
    p("--kq-writer-weight", type=float, default=_DEFAULTS.writer_weight, help="weight of writers", **fixed)
    p("--kq-watchers", type=int, default=_DEFAULTS.watchers, help="watch users (fixed count)", **fixed)
    p("--kq-objects-per-writer", type=int, default=_DEFAULTS.objects_per_writer, help="live ConfigMaps per writer")
    p("--kq-request-timeout", type=float, default=_DEFAULTS.request_timeout_s, help="seconds")
    p("--kq-connect-timeout", type=float, default=_DEFAULTS.connect_timeout_s, help="seconds")
    p("--kq-watch-timeout", type=int, default=_DEFAULTS.watch_timeout_s, help="server-side timeoutSeconds of a watch")
    p("--kq-max-requests", type=int, default=_DEFAULTS.max_requests, help="quit after this many requests", **fixed)
    p("--kq-skip-setup", action="store_true", help="do not create the namespace and seed objects", **fixed)


def _role(environment: Environment) -> str:
    if isinstance(environment.runner, WorkerRunner):
        return "worker"
    if isinstance(environment.runner, MasterRunner):
        return "master"
    return "local"


def on_init(environment: Environment, **_: Any) -> None:
    ns = environment.parsed_options
    if ns is None or _role(environment) == "worker":
        # Workers spawn the classes the master dispatches; weights only matter on the master.
        return
    ReaderUser.weight = ns.kq_reader_weight
    WriterUser.weight = ns.kq_writer_weight
    WatchUser.fixed_count = max(0, ns.kq_watchers)
    WatchUser.weight = 0
    environment.user_classes[:] = [c for c in environment.user_classes if c.fixed_count > 0 or c.weight > 0]
    if not environment.user_classes:
        log.error("every kubequake user has weight 0 and --kq-watchers is 0: nothing to run")
        sys.exit(2)
    missing = LoadOptions.from_namespace(ns).missing_tls()
    if missing:
        log.error("TLS files missing: %s; pass --kq-run-dir DIR or --kq-ca/--kq-cert/--kq-key", ", ".join(missing))
        sys.exit(2)


def on_test_start(environment: Environment, **_: Any) -> None:
    # The record file is never closed early: Locust fires `quitting` before it stops the users,
    # so a close there would drop the records of writes still being sent. Every record goes
    # straight to the kernel (unbuffered), so process exit loses nothing.
    opts = LoadOptions.from_namespace(environment.parsed_options)
    role = _role(environment)
    RECORDER.open(opts.records_dir, role)
    if role == "worker":
        return
    if not getattr(environment.parsed_options, "kq_skip_setup", False):
        try:
            with TrafficApi(
                str(environment.host),
                TLSClient(opts.ca, opts.cert, opts.key),
                timeout=opts.request_timeout_s,
                connect_timeout=opts.connect_timeout_s,
            ) as api:
                api.ensure_namespace(opts.namespace, opts.run_tag)
                api.ensure_seed(opts.namespace, opts.run_tag)
        except (LoadError, OSError, ValueError) as exc:
            log.error("cannot set up namespace %s at %s: %s", opts.namespace, environment.host, exc)
    gevent.spawn(_enforce_max_requests, environment, opts.max_requests)


def _enforce_max_requests(environment: Environment, limit: int) -> None:
    runner = environment.runner
    # Ends with the process: the runner's quit kills this greenlet's process soon after.
    while runner is not None and runner.state not in ("stopped", "quitting"):
        if runner.stats.total.num_requests >= limit:
            log.warning("--kq-max-requests=%d reached; stopping", limit)
            runner.quit()
            return
        gevent.sleep(MAX_REQUESTS_POLL_S)


def on_request(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int = 0,
    exception: BaseException | None = None,
    context: dict[str, Any] | None = None,
    response: Any = None,
    start_time: float | None = None,
    **_: Any,
) -> None:
    end = time.time()
    status = 0
    if response is not None:
        try:
            status = int(getattr(response, "status_code", 0) or 0)
        except (TypeError, ValueError):
            status = 0
    ok = exception is None
    kind = None if ok else classify(exception, status)
    counts_latency = not (context or {}).get("kq_no_latency", False)
    start = start_time if start_time is not None else end - response_time / 1000
    RECORDER.requests += 1
    RECORDER.write(
        RequestRecord(
            start,
            end,
            request_type,
            name,
            ok,
            kind,
            status,
            float(response_time),
            counts_latency,
            _SOURCE,
            "" if ok or exception is None else describe(exception),
        )
    )


def on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["kq_pid"] = os.getpid()
    data["kq_requests"] = RECORDER.requests


def on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    RECORDER.write(
        WorkerReport(str(client_id), int(data.get("kq_pid", 0)), int(data.get("kq_requests", 0)), time.time())
    )


# Registered explicitly rather than by decorator so the hooks stay plain typed functions
# (Locust's EventHook is untyped).
_LISTENERS: list[tuple[Any, Callable[..., None]]] = [
    (events.init_command_line_parser, add_options),
    (events.init, on_init),
    (events.test_start, on_test_start),
    (events.request, on_request),
    (events.report_to_master, on_report_to_master),
    (events.worker_report, on_worker_report),
]
for _hook, _listener in _LISTENERS:
    _hook.add_listener(_listener)
