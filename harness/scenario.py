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
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from harness import report
from harness.checks.budgets import Budgets
from harness.errors import FaultError, HarnessError, TimeoutExpired
from harness.faults.base import Fault, FaultInjector
from harness.faults.journal import FaultRecord
from harness.net.wait import wait_until
from harness.slo import Prediction
from harness.status import ClusterStatus, collect, problems, wait_healthy
from harness.verdicts import Outcome, Verdict, check, inconclusive, outcome_of, overall
from harness.windows import POST_HEAL_TRAFFIC, Wait, Window

if TYPE_CHECKING:
    from harness.providers.base import Cluster

log = logging.getLogger(__name__)


class ScenarioFailed(AssertionError):
    """One or more verdicts failed; the message lists them all."""


class ScenarioStopped(Exception):
    """Raised by ScenarioRun.stop(): the scenario ends here and is judged on the verdicts so far."""


class ScenarioInconclusive(Exception):
    """The scenario's measurements could not be made; neither a pass nor the cluster's failure.

    Deliberately not an AssertionError: Allure files it as broken (category "inconclusive") and
    JUnit as an error, so no dashboard counts it as a pass or as a regression of the cluster.
    """


def outcome_of_exception(exc: BaseException) -> Outcome:
    """The outcome a test that ended with `exc` has: FAIL for failed verdicts (assertions), INCONCLUSIVE
    for measurements not made, ERROR for anything else (the harness or the environment broke)."""
    if isinstance(exc, ScenarioInconclusive):
        return Outcome.INCONCLUSIVE
    if isinstance(exc, AssertionError):
        return Outcome.FAIL
    return Outcome.ERROR


# Client traffic before a fault must reach this fraction of the rate the load aims for: with less,
# "errors during the fault" and "time to steady throughput" compare against a baseline that is not there.
MIN_BASELINE_RATE_FRACTION = 0.5
# Whole seconds of traffic the baseline guard looks at, ending a second before the fault.
BASELINE_GUARD_S = 3


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
    # How long after heal requests may wait for etcd connections still in backoff (set by a
    # scenario that loses etcd quorum; harness.slo.etcd_reconnect_window); None: not applicable.
    reconnect_window: Prediction | None = None
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
        self.guard_baseline(baseline)
        try:
            with self.phase("inject"):
                for f in faults:
                    handle.records.append(self.inject(f))
                handle.confirm_applied()
            with self.phase(observe):
                yield handle
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._heal_block(handle, error)
            self.confirmation_verdicts(handle)

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

    def guard_baseline(self, sampler: Any = None) -> None:
        """Before any fault: the probes work and clients reach the minimum rate, or the scenario is inconclusive.

        Nothing is injected then: a fault measured against probes that already fail, or against a
        trickle of traffic, would only measure the harness.
        """
        problems: list[str] = []
        if sampler is not None:
            for series in sampler.series.values():
                try:
                    series.check_baseline(time.time())
                except HarnessError as exc:
                    problems.append(str(exc))
        if self.traffic is not None:
            problems += self._traffic_shortfall()
        if problems:
            for why in problems:
                self.verdict(inconclusive("baseline before the fault", why))
            self.stop("baseline before the fault not met: " + "; ".join(problems))

    def _traffic_shortfall(self) -> list[str]:
        settings = self.traffic.settings
        if settings.rate_per_user is None:
            return []  # unpaced load has no target rate to fall short of
        target = max(0, settings.users - settings.watchers) * settings.rate_per_user
        end = int(time.time()) - 1
        rows = [r for r in self.traffic.timeline((end - BASELINE_GUARD_S, end)).rows() if r.t + 1 <= end]
        rate = sum(r.successes for r in rows) / BASELINE_GUARD_S
        floor = MIN_BASELINE_RATE_FRACTION * target
        if rate >= floor:
            return []
        return [
            f"clients reached {rate:.1f} successful requests/s in the {BASELINE_GUARD_S}s before the fault, under the "
            f"minimum {floor:.1f}/s ({MIN_BASELINE_RATE_FRACTION:.0%} of the {target:g}/s the load aims for); "
            "the load generator or the API was not keeping up"
        ]

    def confirmation_verdicts(self, handle: FaultHandle) -> None:
        """One verdict per fault: seen in effect and gone after heal, or inconclusive saying what was not seen."""
        for rec in handle.records:
            name = f"fault seen applied and healed: {rec.description}"
            if rec.confirmed_applied is False or rec.confirmed_healed is False:
                self.verdict(inconclusive(name, rec.confirmation))
            elif rec.confirmed_applied and rec.confirmed_healed:
                self.verdict(check(name, True, rec.confirmation))

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
    def inject(self, fault: Any) -> FaultRecord:
        """Apply one fault (prefer `run.fault(...)`, which also guards the baseline and heals)."""
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
                Verdict(
                    "steady state after",
                    time.monotonic() - start,
                    self.budgets.steady_state_s,
                    "s",
                    outcome_of(ok),
                    msg,
                )
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
                grace = self.reconnect_window.value if self.reconnect_window is not None else 0.0
                remaining = window[1] + grace + POST_HEAL_TRAFFIC.seconds - time.time()
                if remaining > 0:
                    self._spend(POST_HEAL_TRAFFIC, remaining)
            self.traffic.stop()
            if window is not None and self.slo_budget is not None:
                outage = self.budgets.expected.get("api_unavailability_s")
                judged = self.traffic.slo(self.slo_budget, window, outage=outage, reconnect=self.reconnect_window)
                for v in judged.verdicts:
                    if self.slo_include is None or v.name in self.slo_include:
                        self.verdict(dataclasses.replace(v, name=f"clients: {v.name}"))
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
            name = "clients: no acknowledged write lost"
            if ledger.acknowledged_writes == 0 and ledger.acknowledged_deletes == 0:
                self.verdict(inconclusive(name, f"no write was acknowledged, so none could be lost ({ledger.message})"))
            else:
                self.verdict(check(name, ledger.passed, ledger.message))

    def finish(self) -> None:
        """Attach the verdict table and fail with every failed verdict named; runs once."""
        __tracebackhide__ = True
        if self.finished:
            return
        self.finished = True
        self.client_verdicts()
        table = "\n".join(v.line() for v in self.verdicts)
        report.attach_text("budgets vs measured", table)
        report.attach_json("verdicts", [v.to_dict() for v in self.verdicts])
        report.attach_json("fault journal", [r.__dict__ for r in self.injector.records()])
        if self.measurements:
            report.attach_json("measurements", self.measurements)
        result = overall(v.outcome for v in self.verdicts)
        if result is Outcome.FAIL:
            failed = [v for v in self.verdicts if v.outcome is Outcome.FAIL]
            others = "\n".join(v.line() for v in self.verdicts if not v.passed)
            raise ScenarioFailed(f"{len(failed)} verdict(s) failed:\n{others}")
        if not self.verdicts:
            raise ScenarioInconclusive(f"inconclusive: {self.name} reached no verdict; nothing passes on no data")
        if result is not Outcome.PASS:
            unmade = [v for v in self.verdicts if not v.passed]
            raise ScenarioInconclusive(
                f"inconclusive: {len(unmade)} measurement(s) could not be made:\n" + "\n".join(v.line() for v in unmade)
            )
