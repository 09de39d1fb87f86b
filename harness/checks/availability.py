"""API availability as clients see it, sampled at 20 Hz per target, as intervals of unavailability.

Each target (every apiserver directly, and the API through the LB) gets its own thread and a
keep-alive session, as real clients keep connections open: a dead backend then shows up as a
reset on an existing connection, not only as a refused new one. A sample is an authenticated
GET of a namespace, which the apiserver answers with a quorum read from etcd, so the sample
fails when etcd cannot serve, not only when the apiserver process is gone.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

import requests

from harness.checks.budgets import Budgets
from harness.errors import HarnessError
from harness.net.tls import TLSClient
from harness.verdicts import Verdict

log = logging.getLogger(__name__)

SAMPLE_PATH = "/api/v1/namespaces/kube-system"


@dataclass(frozen=True)
class Sample:
    t: float  # wall clock, aligned with the fault journal
    ok: bool
    latency_s: float
    error: str


@dataclass(frozen=True)
class Outage:
    start: float
    end: float | None  # None: still down when sampling stopped
    failed_samples: int
    first_error: str

    def duration(self, until: float) -> float:
        return (self.end if self.end is not None else until) - self.start


@dataclass
class TargetSeries:
    name: str
    url: str
    samples: list[Sample] = field(default_factory=list)

    def outages(self) -> list[Outage]:
        """Runs of failed samples; an outage ends at the first success after it."""
        out: list[Outage] = []
        start: float | None = None
        count = 0
        first = ""
        for s in self.samples:
            if not s.ok:
                if start is None:
                    start, count, first = s.t, 0, s.error
                count += 1
            elif start is not None:
                out.append(Outage(start, s.t, count, first))
                start = None
        if start is not None:
            out.append(Outage(start, None, count, first))
        return out

    def longest_outage_s(self) -> float | None:
        """Longest run of failed samples; None when nothing was sampled (no verdict possible)."""
        if not self.samples:
            return None
        until = self.samples[-1].t
        return max((o.duration(until) for o in self.outages()), default=0.0)

    def failures(self, start: float = 0.0, end: float = float("inf")) -> int:
        return sum(1 for s in self.samples if start <= s.t <= end and not s.ok)

    def count(self, start: float = 0.0, end: float = float("inf")) -> int:
        return sum(1 for s in self.samples if start <= s.t <= end)

    def first_success_after(self, t: float) -> float | None:
        return next((s.t for s in self.samples if s.t >= t and s.ok), None)

    def check_baseline(self, before: float) -> None:
        """A series whose samples already failed before the fault measures the harness, not the cluster."""
        base = [s for s in self.samples if s.t < before]
        if not base or not all(s.ok for s in base):
            errors = sorted({s.error for s in base if not s.ok})
            raise HarnessError(
                f"availability samples of {self.name} ({self.url}) were not all successful before the fault "
                f"({sum(s.ok for s in base)}/{len(base)} ok, errors {errors}); the measurement would be meaningless"
            )

    def resolution_s(self) -> float:
        """Median spacing of samples: the precision of every interval measured from them."""
        gaps = sorted(b.t - a.t for a, b in zip(self.samples, self.samples[1:], strict=False))
        return gaps[len(gaps) // 2] if gaps else 0.0


def _classify(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if "Connection refused" in text:
        return "connection refused"
    if "reset" in text.lower() or "RemoteDisconnected" in text or "EOF" in text:
        return "connection reset"
    return type(exc).__name__


class AvailabilitySampler:
    """Samples several targets in background threads; stops at `max_duration_s` at the latest."""

    def __init__(
        self,
        targets: dict[str, str],
        tls: TLSClient,
        interval_s: float = 0.05,
        timeout_s: float = 1.0,
        max_duration_s: float = 600.0,
        fresh_connections: frozenset[str] = frozenset({"lb"}),
    ) -> None:
        # Through a TCP-mode LB a kept-alive connection is pinned to one backend and would never
        # meet a dead one; new clients arrive on new connections, spread over every backend.
        self.fresh_connections = fresh_connections
        self.series = {name: TargetSeries(name, url) for name, url in targets.items()}
        self.tls = tls
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.max_duration_s = max_duration_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> AvailabilitySampler:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        for s in self.series.values():
            t = threading.Thread(target=self._run, args=(s,), name=f"availability-{s.name}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout_s + 2)
        self._threads.clear()

    def _run(self, series: TargetSeries) -> None:
        deadline = time.monotonic() + self.max_duration_s
        session = requests.Session()
        # REQUESTS_CA_BUNDLE and proxy variables from the environment would silently override the
        # cluster CA (every sample an SSLError) or route loopback traffic through a proxy.
        session.trust_env = False
        session.verify = str(self.tls.ca)
        session.cert = (str(self.tls.cert), str(self.tls.key))
        url = series.url + SAMPLE_PATH
        next_at = time.monotonic()
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                t0 = time.time()
                m0 = time.monotonic()
                try:
                    if series.name in self.fresh_connections:
                        session.close()
                    r = session.get(url, timeout=self.timeout_s)
                    ok = r.status_code == 200
                    err = "" if ok else f"HTTP {r.status_code}"
                except requests.RequestException as exc:
                    ok, err = False, _classify(exc)
                    # A broken pooled connection must not poison the next sample.
                    session.close()
                series.samples.append(Sample(t0, ok, time.monotonic() - m0, err))
                next_at += self.interval_s
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_at = time.monotonic()
        finally:
            session.close()


def lb_outage_verdict(lb: TargetSeries, budgets: Budgets) -> Verdict:
    """The verdict every disruptive scenario gives: the longest outage clients saw through the LB."""
    return budgets.within(
        "api_unavailability_s",
        "API unavailability via LB",
        lb.longest_outage_s(),
        what="longest client-visible outage through the LB",
        missing=f"the availability sampler took no sample of {lb.url}",
    )
