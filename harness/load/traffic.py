"""Traffic during a scenario: started before the fault, stopped after recovery, then judged.

    with Traffic.start(cluster, TrafficSettings(users=8)) as t:
        ...inject the fault, heal, wait for recovery...
    timeline = t.timeline()
    verdict = t.ledger.verify(kube)       # or url=..., tls=...
    report = t.slo(Objectives().client("apiserver-kill"), fault=(applied_at, healed_at))
    t.cleanup()                            # delete the traffic namespace

Leaving the with-block stops the load (also on an exception); reading the timeline and
verifying the ledger works afterwards because the namespace stays until cleanup(). Without a
records_dir, the records go to a temporary directory that cleanup() removes, after reading
them into memory: the timeline and ledger stay readable, nothing is left on disk.

Give the traffic about 5 s before the fault and keep it running well past recovery: the
time-to-steady verdict needs a pre-fault baseline (after 2 s of ramp-up) and a few seconds of
steady throughput after heal.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Protocol

from harness.load.api import TrafficApi, preflight
from harness.load.errors import LoadError
from harness.load.ledger import Ledger
from harness.load.records import RecordSet, read_dir
from harness.load.runner import LocustRun, ProcessExit
from harness.load.settings import TrafficSettings
from harness.load.slo import SloReport, evaluate
from harness.load.timeline import Timeline, WindowLike
from harness.load.watches import WatchSummary, summarize
from harness.net.tls import TLSClient
from harness.slo import ClientObjectives, Prediction

log = logging.getLogger(__name__)

START_POLL_S = 0.2


class TrafficTarget(Protocol):
    """Anything with an API URL behind the LB and a client identity for traffic (a cluster)."""

    def lb_url(self) -> str: ...
    def traffic_tls(self) -> TLSClient: ...


class Traffic:
    """Load against the API through the LB, owned from start() to stop()."""

    def __init__(
        self,
        url: str,
        tls: TLSClient,
        settings: TrafficSettings,
        records_dir: Path,
        namespace: str,
        run_tag: str,
        owns_records_dir: bool = False,
    ) -> None:
        self.url = url
        self.tls = tls
        self.settings = settings
        self.records_dir = records_dir
        self.namespace = namespace
        self.run_tag = run_tag
        self.run = LocustRun(url, tls, settings, records_dir=records_dir, namespace=namespace, run_tag=run_tag)
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.exits: list[ProcessExit] = []
        self._ledger: Ledger | None = None
        self._cleaned = False
        # A directory start() made itself is removed by cleanup(); one given by the caller is theirs.
        self._owns_records_dir = owns_records_dir
        self._final_records: RecordSet | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        target: TrafficTarget | None = None,
        settings: TrafficSettings | None = None,
        *,
        url: str | None = None,
        tls: TLSClient | None = None,
        records_dir: Path | None = None,
    ) -> Traffic:
        """Validate, preflight, create the namespace, start Locust and wait for the first success.

        Every bad input (settings, unreachable LB, wrong credentials) raises LoadError before any
        load starts. Give a target (the cluster) or url= and tls=.
        """
        settings = (settings or TrafficSettings()).validate()
        if target is not None:
            url, tls = target.lb_url(), target.traffic_tls()
        if url is None or tls is None:
            raise LoadError("Traffic.start needs a target (a cluster) or both url= and tls=")
        run_tag = uuid.uuid4().hex[:8]
        namespace = settings.namespace or f"kq-load-{run_tag}"
        preflight(url, tls, namespace, timeout=min(settings.request_timeout_s, 10.0))
        with TrafficApi(
            url, tls, timeout=settings.request_timeout_s, connect_timeout=settings.connect_timeout_s
        ) as api:
            api.ensure_namespace(namespace, run_tag)
            api.ensure_seed(namespace, run_tag)
        owned = records_dir is None
        if records_dir is None:
            records_dir = Path(tempfile.mkdtemp(prefix=f"kq-traffic-{run_tag}-"))
        t = cls(url, tls, settings, records_dir, namespace, run_tag, owns_records_dir=owned)
        try:
            t._launch()
        except BaseException:
            # The records directory stays: the error names the Locust logs in it.
            t.stop()
            raise
        return t

    def _launch(self) -> None:
        self.started_at = time.time()
        self.run.start()
        deadline = time.monotonic() + self.settings.start_timeout_s
        # Bounded by start_timeout_s: traffic counts as started once a request has succeeded.
        while time.monotonic() < deadline:
            early = self.run.exited_early()
            if early is not None:
                raise LoadError(
                    f"locust {early.role} exited with code {early.returncode()} before traffic started; "
                    f"log {early.log_path}:\n{early.log_tail()}"
                )
            if any(r.ok for r in read_dir(self.records_dir).requests):
                log.info("traffic flowing after %.1fs", time.time() - self.started_at)
                return
            time.sleep(START_POLL_S)
        tails = "\n".join(f"{p.role} ({p.log_path}):\n{p.log_tail()}" for p in self.run.processes)
        raise LoadError(
            f"no request through {self.url} succeeded within start_timeout_s="
            f"{self.settings.start_timeout_s:g}s; Locust logs:\n{tails}"
        )

    def stop(self) -> list[ProcessExit]:
        """Stop the load (idempotent); records stay readable."""
        if self.stopped_at is None:
            self.stopped_at = time.time()
            self.exits = self.run.stop()
        return self.exits

    def __enter__(self) -> Traffic:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def cleanup(self) -> None:
        """Delete the traffic namespace (after the ledger has been verified). Safe to call twice."""
        if self._cleaned:
            return
        self.stop()
        try:
            with TrafficApi(self.url, self.tls, timeout=self.settings.request_timeout_s) as api:
                api.delete_namespace(self.namespace)
        finally:
            self._remove_records_dir()
        self._cleaned = True

    def _remove_records_dir(self) -> None:
        """Keep the (final, load stopped) records in memory and remove the directory start() made."""
        if not self._owns_records_dir or self._final_records is not None:
            return
        self._final_records = read_dir(self.records_dir)
        shutil.rmtree(self.records_dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.stopped_at is None and self.run.alive()

    def cpu_seconds(self) -> float:
        """CPU seconds used by the Locust processes so far."""
        return self.run.cpu_seconds()

    # -- results -----------------------------------------------------------------------------
    def records(self) -> RecordSet:
        """Everything recorded so far (works while traffic runs, and after cleanup())."""
        if self._final_records is not None:
            return self._final_records
        return read_dir(self.records_dir)

    def timeline(self, window: WindowLike | None = None) -> Timeline:
        tl = Timeline.from_records(self.records().requests)
        return tl if window is None else tl.window(window)

    @property
    def ledger(self) -> Ledger:
        """The acknowledged-write ledger; final once traffic has stopped."""
        if self._ledger is not None:
            return self._ledger
        ledger = Ledger(self.records().writes)
        if self.stopped_at is not None:
            self._ledger = ledger
        return ledger

    def watches(self) -> WatchSummary:
        return summarize(self.records().watches)

    def slo(
        self,
        objectives: ClientObjectives,
        fault: WindowLike,
        baseline: WindowLike | None = None,
        outage: Prediction | None = None,
        reconnect: Prediction | None = None,
    ) -> SloReport:
        return evaluate(self.timeline(), fault, objectives, baseline, outage, reconnect)
