"""A scenario's run: its phases, its faults, its windows, its measurements and its verdicts.

Every scenario follows one sequence: steady state before, inject, observe, heal, steady state
after, verdicts. `run.fault(...)` is the inject/observe/heal part as one `with` block; named
windows and waits (harness.windows) are the only time a scenario spends on purpose. This object
records each phase with wall-clock times (aligned with the fault journal and the traffic
timeline), keeps the verdicts, and fails the test once, at the end, with every failed verdict
named, so a report shows all that went wrong, not only the first. The end is not the test's to
remember: the pytest hooks call `finish()` when the test body returns or calls `stop()`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from harness import report
from harness.checks.budgets import Budgets, Verdict
from harness.errors import FaultError, HarnessError, TimeoutExpired
from harness.faults.base import Fault, FaultInjector
from harness.faults.journal import FaultRecord
from harness.net.wait import wait_until
from harness.status import ClusterStatus, collect, problems, wait_healthy
from harness.windows import POST_HEAL_TRAFFIC, Wait, Window

if TYPE_CHECKING:
    from harness.providers.base import Cluster

log = logging.getLogger(__name__)


class ScenarioFailed(AssertionError):
    """One or more verdicts failed; the message lists them all."""


class ScenarioStopped(Exception):
    """Raised by ScenarioRun.stop(): the scenario ends here and is judged on the verdicts so far."""


@dataclass
class Phase:
    name: str
    started: float
    ended: float | None = None
    error: str = ""


@dataclass
class FaultHandle:
    """The faults of one `with run.fault(...)` block: their journal records and when healing began.

    Every block passes through confirm_applied() before its observation and confirm_healed()
    after its heal: what a scenario requires of a fault's effect is decided there, once, and
    reaches every scenario without a change to any of them.
    """

    records: list[FaultRecord] = field(default_factory=list)
    healing_from: float | None = None

    @property
    def record(self) -> FaultRecord:
        """The block's only fault; a block of several faults names them through `records`."""
        if len(self.records) != 1:
            raise HarnessError(f"the fault block holds {len(self.records)} faults; read .records instead of .record")
        return self.records[0]

    @property
    def applied_at(self) -> float:
        """When the last fault took effect: from then on every fault of the block was in force."""
        times = [r.applied_at for r in self.records if r.applied_at is not None]
        if not times:
            raise HarnessError("no fault of this block was applied, so it has no start")
        return max(times)

    @property
    def healed_at(self) -> float:
        """When the first heal finished: until then every fault of the block was in force."""
        times = [r.healed_at for r in self.records if r.healed_at is not None]
        if not times or len(times) < len(self.records):
            raise HarnessError("the fault block has not healed yet; read healed_at after the block")
        return min(times)

    @property
    def heal_started(self) -> float:
        """When the heal phase began: recovery is measured from here."""
        if self.healing_from is None:
            raise HarnessError("the fault block has not started healing yet; read heal_started after the block")
        return self.healing_from

    @property
    def target(self) -> str:
        return ", ".join(r.target for r in self.records)

    def confirm_applied(self) -> None:
        """Every fault in force before the observation starts, as the injector's journal records it."""
        for rec in self.records:
            if rec.status != "applied" or rec.applied_at is None:
                raise FaultError(
                    f"{rec.description}: journal says {rec.status!r} right after inject, not 'applied'; "
                    "the observation would measure a fault that is not there"
                )

    def confirm_healed(self) -> None:
        """Every fault undone before the scenario goes on, as the injector's journal records it."""
        for rec in self.records:
            if rec.status not in ("healed", "apply_failed") or rec.healed_at is None:
                raise FaultError(
                    f"{rec.description}: journal says {rec.status!r} after heal, not 'healed'; "
                    "run `kubequake heal` before more scenarios"
                )


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
    # Why the scenario ended early (stop()), and whether finish() ran: it runs once, whoever calls it.
    stopped: str = ""
    finished: bool = False

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

    # -- the experiment -----------------------------------------------------------------------
    @contextlib.contextmanager
    def fault(self, *faults: Fault, baseline: Any = None, observe: str = "observe") -> Iterator[FaultHandle]:
        """Inject `faults` in order (phase "inject"), run the block (phase `observe`), heal newest-first.

        With `baseline` (an AvailabilitySampler) the probes must have worked before the first fault.
        Healing runs however the block ends; an exception from the block propagates after it, and
        a heal that fails then is logged (the journal keeps it for the fixture's final heal_all).
        """
        handle = FaultHandle()
        error: BaseException | None = None
        try:
            with self.phase("inject"):
                for i, f in enumerate(faults):
                    handle.records.append(self.inject(f, baseline=baseline if i == 0 else None))
                handle.confirm_applied()
            with self.phase(observe):
                yield handle
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._heal_block(handle, error)

    def _heal_block(self, handle: FaultHandle, error: BaseException | None) -> None:
        with self.phase("heal") as p:
            handle.healing_from = p.started
            failures = []
            for rec in reversed(handle.records):
                try:
                    self.heal(rec)
                except FaultError as exc:
                    failures.append(str(exc))
            if failures:
                message = "; ".join(failures)
                if error is None:
                    raise FaultError(message)
                # The block's own error is the story; this one is in the journal and heal_all retries it.
                log.error("[%s] %s (while %s propagates)", self.name, message, type(error).__name__)
                p.error = f"FaultError: {message}"
                return
            handle.confirm_healed()

    def wait(self, window: Window) -> None:
        """Spend a named window (harness.windows); the log and the report say which and why."""
        self._spend(window, window.seconds)

    def _spend(self, window: Window, seconds: float) -> None:
        log.info("[%s] wait: %s, %.1fs (%s)", self.name, window.name, seconds, window.why)
        with report.step(f"wait: {window.name} ({seconds:.1f}s)"):
            time.sleep(seconds)

    def wait_for(
        self,
        wait: Wait,
        check: Callable[[], tuple[bool, str]],
        what: str = "",
        retry_on: tuple[type[BaseException], ...] = (),
    ) -> float | None:
        """Poll `check` until the named wait's deadline: seconds until it held, or None if it never did.

        A condition that never holds is the cluster's failure, judged by a verdict on None; a bug
        in the check still raises (see harness.net.wait).
        """
        timeout = wait.timeout(self.budgets)
        try:
            return wait_until(what or wait.name, check, timeout=timeout, interval=wait.interval_s, retry_on=retry_on)
        except TimeoutExpired as exc:
            log.info("[%s] %s", self.name, exc)
            return None

    def stop(self, reason: str) -> NoReturn:
        """End the scenario here: nothing after this runs, and it is judged on the verdicts so far."""
        self.stopped = reason
        log.info("[%s] stopped early: %s", self.name, reason)
        raise ScenarioStopped(reason)

    def stopped_by(self, error: BaseException) -> bool:
        """Whether the test body ended through stop() rather than failing."""
        return isinstance(error, ScenarioStopped)

    # -- steps a scenario calls itself ----------------------------------------------------------
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
                # Counted from the last heal: the scenario's own checks since then already used some of it.
                remaining = window[1] + POST_HEAL_TRAFFIC.seconds - time.time()
                if remaining > 0:
                    self._spend(POST_HEAL_TRAFFIC, remaining)
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
        """Attach the verdict table and fail with every failed verdict named; runs once."""
        __tracebackhide__ = True
        if self.finished:
            return
        self.finished = True
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
