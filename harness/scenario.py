"""A scenario's run: its phases, its faults, its measurements and its verdicts.

Every scenario follows one sequence: steady state before, inject, observe, heal, steady state
after, verdicts. This object records each phase with wall-clock times (aligned with the fault
journal and the traffic timeline), keeps the verdicts, and fails the test once, at the end,
with every failed verdict named, so a report shows all that went wrong, not only the first.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness import report
from harness.checks.budgets import Budgets, Verdict
from harness.errors import HarnessError
from harness.faults.base import FaultInjector
from harness.faults.journal import FaultRecord
from harness.status import ClusterStatus, collect, problems, wait_healthy

if TYPE_CHECKING:
    from harness.providers.base import Cluster

log = logging.getLogger(__name__)


POST_HEAL_TRAFFIC_S = 12.0


class ScenarioFailed(AssertionError):
    """One or more verdicts failed; the message lists them all."""


@dataclass
class Phase:
    name: str
    started: float
    ended: float | None = None
    error: str = ""


@dataclass
class ScenarioRun:
    name: str
    cluster: Cluster
    budgets: Budgets
    injector: FaultInjector
    phases: list[Phase] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    before: ClusterStatus | None = None
    after: ClusterStatus | None = None
    # Client traffic through the LB for the whole scenario (harness.load.traffic.Traffic), the
    # SLO budget its verdicts use, and which of those verdicts apply (None: all of them).
    traffic: Any = None
    slo_budget: Any = None
    slo_include: frozenset[str] | None = None

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        p = Phase(name, time.time())
        self.phases.append(p)
        log.info("[%s] phase: %s", self.name, name)
        try:
            with report.step(name):
                yield p
        except BaseException as exc:
            p.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            p.ended = time.time()

    def inject(self, fault: Any, baseline: Any = None) -> FaultRecord:
        """Apply a fault; with `baseline` (an AvailabilitySampler) first prove the probes work."""
        if baseline is not None:
            for series in baseline.series.values():
                series.check_baseline(time.time())
        with report.step(f"inject: {fault.describe()}"):
            return self.injector.inject(fault)

    def heal(self, rec: FaultRecord | None = None) -> None:
        with report.step("heal " + (rec.description if rec else "all faults")):
            if rec is None:
                self.injector.heal_all()
            else:
                self.injector.heal(rec)

    def steady_state_before(self) -> ClusterStatus:
        with self.phase("steady state before"):
            try:
                self.before = wait_healthy(self.cluster, timeout=self.budgets.steady_state_s)
            except HarnessError as exc:
                # Not the scenario's failure: the cluster was broken before anything was injected.
                raise HarnessError(f"cluster not in steady state before the scenario: {exc}") from None
            report.attach_json("cluster before", self.before.to_dict())
            return self.before

    def steady_state_after(self) -> None:
        with self.phase("steady state after"):
            start = time.monotonic()
            try:
                self.after = wait_healthy(self.cluster, timeout=self.budgets.steady_state_s)
                ok, msg = True, f"cluster healthy again after {time.monotonic() - start:.1f}s"
            except HarnessError as exc:
                self.after = collect(self.cluster)
                ok, msg = False, f"cluster did not return to steady state: {'; '.join(problems(self.after))} ({exc})"
            report.attach_json("cluster after", self.after.to_dict())
            self.verdict(
                Verdict("steady state after", time.monotonic() - start, self.budgets.steady_state_s, "s", ok, msg)
            )

    def verdict(self, v: Verdict) -> Verdict:
        self.verdicts.append(v)
        log.info("[%s] %s", self.name, v.line())
        return v

    def measure(self, key: str, value: Any) -> None:
        self.measurements[key] = value

    def fault_window(self) -> tuple[float, float] | None:
        recs = [r for r in self.injector.records() if r.applied_at is not None]
        if not recs:
            return None
        start = min(r.applied_at for r in recs if r.applied_at is not None)
        return start, max((r.healed_at or time.time()) for r in recs)

    def client_verdicts(self) -> None:
        """What clients saw: SLO verdicts over the fault window and the acknowledged-write ledger."""
        if self.traffic is None:
            return
        with self.phase("verify: what clients saw"):
            window = self.fault_window()
            if window is not None:
                # Clients keep going past recovery: "after heal" verdicts need traffic to judge.
                remaining = window[1] + POST_HEAL_TRAFFIC_S - time.time()
                if remaining > 0:
                    time.sleep(remaining)
            self.traffic.stop()
            if window is not None and self.slo_budget is not None:
                for v in self.traffic.slo(self.slo_budget, window).verdicts:
                    if self.slo_include is None or v.name in self.slo_include:
                        self.verdict(Verdict(f"clients: {v.name}", v.measured, v.budget, v.unit, v.passed, v.message))
            cluster = self.cluster
            ledger = self.traffic.ledger.verify(url=cluster.lb_url(), tls=cluster.admin_tls())
            self.measure(
                "client_ledger",
                {
                    "checked": ledger.checked,
                    "acknowledged_writes": ledger.acknowledged_writes,
                    "acknowledged_deletes": ledger.acknowledged_deletes,
                    "maybe": ledger.maybe,
                },
            )
            self.verdict(Verdict("clients: no acknowledged write lost", None, None, "", ledger.passed, ledger.message))

    def finish(self) -> None:
        """Attach the verdict table and fail with every failed verdict named."""
        __tracebackhide__ = True
        self.client_verdicts()
        table = "\n".join(v.line() for v in self.verdicts)
        report.attach_text("budgets vs measured", table)
        report.attach_json("verdicts", [v.__dict__ for v in self.verdicts])
        report.attach_json("fault journal", [r.__dict__ for r in self.injector.records()])
        if self.measurements:
            report.attach_json("measurements", self.measurements)
        failed = [v for v in self.verdicts if not v.passed]
        if failed:
            raise ScenarioFailed(f"{len(failed)} verdict(s) failed:\n" + "\n".join(v.line() for v in failed))
        if not self.verdicts:
            raise ScenarioFailed(f"scenario {self.name} reached no verdict: a scenario must measure something")
