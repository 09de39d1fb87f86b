"""SLO verdicts of a scenario: what clients saw during and after a fault, against one budget table.

Five verdicts, each with the number measured, the budget and a message naming both:
- error ratio during the fault window;
- longest client-visible unavailability: the longest time between two successful requests,
  anywhere from the fault's start until the end of the after-heal window;
- p99 latency during the fault window, and after heal;
- time to steady throughput after heal: from heal until successes per second stay at or above
  a fraction of the pre-fault baseline, with no failures, for `steady_hold_s` seconds.

A verdict on nothing fails: no request in the fault window, no baseline before the fault or no
traffic after heal each fail with a message saying what is missing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from harness.checks.budgets import MARGIN_S, Budgets, Verdict
from harness.config import ClusterConfig
from harness.load.errors import LoadError
from harness.load.timeline import Timeline, Window, WindowLike

# Seconds of traffic at the start of a run not used as baseline: users are still being spawned.
RAMP_UP_S = 2.0


@dataclass(frozen=True)
class SloBudget:
    """The limits a scenario's clients may see. Latencies in milliseconds, times in seconds."""

    max_error_ratio_during_fault: float
    max_unavailability_s: float
    max_p99_during_fault_ms: float
    max_p99_after_heal_ms: float
    max_time_to_steady_s: float
    # Throughput counts as steady again at this fraction of the pre-fault baseline...
    steady_fraction: float = 0.8
    # ...held for this many consecutive seconds without a failure.
    steady_hold_s: int = 3
    # How long after heal the "after" verdicts look.
    after_heal_window_s: float = 30.0

    def __post_init__(self) -> None:
        for name in (
            "max_error_ratio_during_fault",
            "max_unavailability_s",
            "max_p99_during_fault_ms",
            "max_p99_after_heal_ms",
            "max_time_to_steady_s",
            "after_heal_window_s",
        ):
            if not getattr(self, name) >= 0:
                raise LoadError(f"SloBudget.{name}={getattr(self, name)!r} must be >= 0")
        if not 0 < self.steady_fraction <= 1:
            raise LoadError(f"SloBudget.steady_fraction={self.steady_fraction!r} must be in (0, 1]")
        if self.steady_hold_s < 1:
            raise LoadError(f"SloBudget.steady_hold_s={self.steady_hold_s!r} must be at least 1")


def budget_table(cfg: ClusterConfig | None = None) -> Mapping[str, SloBudget]:
    """The one SLO budget table, per scenario, derived from the cluster's configured timings.

    Unavailability budgets move with the configuration, as harness.checks.budgets does: an etcd
    leader loss is bounded by re-election (two election timeouts plus margin); a dead apiserver
    behind an LB without redispatch by the checks marking it down (fall x inter plus margin).
    Error ratios and latencies are what a client of a 3-node control plane may see on a small
    machine; upstream e2e allows 60 s for recovery after an etcd failure.
    """
    b = Budgets.for_config(cfg or ClusterConfig())
    lb_down = b.api_unavailability_via_lb_s
    return MappingProxyType(
        {
            "steady-state": SloBudget(
                max_error_ratio_during_fault=0.0,
                max_unavailability_s=MARGIN_S,
                max_p99_during_fault_ms=1000,
                max_p99_after_heal_ms=1000,
                max_time_to_steady_s=5.0,
            ),
            "apiserver-kill": SloBudget(
                max_error_ratio_during_fault=0.35,
                max_unavailability_s=lb_down,
                max_p99_during_fault_ms=5000,
                max_p99_after_heal_ms=1000,
                max_time_to_steady_s=lb_down + 10.0,
            ),
            # In the stacked topology the apiserver beside a lost etcd member keeps taking requests
            # until the LB's checks mark it down, and holds each until its etcd client gives up:
            # a request sent in that window may take up to the mark-down time.
            "etcd-leader-kill": SloBudget(
                max_error_ratio_during_fault=0.20,
                max_unavailability_s=b.etcd_reelection_s + MARGIN_S,
                max_p99_during_fault_ms=lb_down * 1000,
                max_p99_after_heal_ms=1000,
                max_time_to_steady_s=20.0,
            ),
            "etcd-member-loss": SloBudget(
                max_error_ratio_during_fault=0.35,
                max_unavailability_s=max(lb_down, b.etcd_reelection_s) + MARGIN_S,
                max_p99_during_fault_ms=lb_down * 1000,
                max_p99_after_heal_ms=1000,
                max_time_to_steady_s=b.etcd_recovery_s / 2,
            ),
            # A partitioned node's apiserver still accepts requests but its etcd member cannot
            # answer: clients it holds wait until the LB takes it out or their own deadline (the
            # Locust users' 10 s request timeout) ends the wait. A gray failure, unlike a kill.
            "etcd-partition": SloBudget(
                max_error_ratio_during_fault=0.35,
                max_unavailability_s=max(lb_down, b.etcd_reelection_s) + MARGIN_S,
                max_p99_during_fault_ms=10000,
                max_p99_after_heal_ms=1000,
                max_time_to_steady_s=b.etcd_recovery_s / 2,
            ),
            "control-plane-node-loss": SloBudget(
                max_error_ratio_during_fault=0.35,
                max_unavailability_s=max(lb_down, b.etcd_reelection_s) + MARGIN_S,
                max_p99_during_fault_ms=10000,
                max_p99_after_heal_ms=1500,
                max_time_to_steady_s=b.etcd_recovery_s,
            ),
            "lb-failover": SloBudget(
                max_error_ratio_during_fault=0.50,
                max_unavailability_s=15.0,
                max_p99_during_fault_ms=10000,
                max_p99_after_heal_ms=1000,
                max_time_to_steady_s=30.0,
            ),
        }
    )


def budget_for(scenario: str, cfg: ClusterConfig | None = None) -> SloBudget:
    table = budget_table(cfg)
    try:
        return table[scenario]
    except KeyError:
        raise LoadError(f"no SLO budget for scenario {scenario!r}; known: {', '.join(sorted(table))}") from None


@dataclass(frozen=True)
class SloReport:
    fault: Window
    verdicts: tuple[Verdict, ...]

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def failed(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.passed]

    def __getitem__(self, name: str) -> Verdict:
        for v in self.verdicts:
            if v.name == name:
                return v
        raise KeyError(f"no verdict {name!r}; have {', '.join(v.name for v in self.verdicts)}")

    @property
    def message(self) -> str:
        return "\n".join(v.line() for v in self.verdicts)


def _verdict(name: str, measured: float, budget: float, unit: str, what: str, detail: str = "") -> Verdict:
    if not math.isfinite(measured):
        return Verdict(name, None, budget, unit, False, f"{what}: never ({detail})")
    passed = measured <= budget
    num = f"{measured:.3f}" if unit == "" else f"{measured:.2f}{unit}"
    bud = f"{budget:.3f}" if unit == "" else f"{budget:g}{unit}"
    extra = f" ({detail})" if detail else ""
    return Verdict(
        name, measured, budget, unit, passed, f"{what} {num}{extra} {'within' if passed else 'exceeds'} budget {bud}"
    )


def slowest(timeline: Timeline, since: float, label: str, n: int = 3) -> str:
    """The n slowest requests, when each was sent relative to `since` (e.g. "after heal").

    A percentile over budget says that some requests were slow; which ones, and when they were
    sent, is what tells a hung recovery (all sent in the same second) from a slow cluster.
    """
    recs = sorted((r for r in timeline.selected() if r.counts_latency), key=lambda r: -r.latency_ms)[:n]
    parts = []
    for r in recs:
        outcome = f"HTTP {r.status}" if r.status else (str(r.kind) if r.kind else "no answer")
        parts.append(f"{r.latency_ms:.0f}ms {r.method} {r.name} sent {r.start - since:+.1f}s {label}, {outcome}")
    return "slowest: " + "; ".join(parts) if parts else ""


def _missing(name: str, budget: float, unit: str, why: str) -> Verdict:
    return Verdict(name, None, budget, unit, False, f"no verdict possible: {why}")


def evaluate(
    timeline: Timeline,
    fault: WindowLike,
    budget: SloBudget,
    baseline: WindowLike | None = None,
) -> SloReport:
    """Judge one fault window of a run's timeline against a budget."""
    fw = Window.of(fault)
    run_end = timeline.records[-1].end if timeline.records else fw.end
    run_start = timeline.records[0].start if timeline.records else fw.start
    after = Window(fw.end, max(fw.end, min(run_end, fw.end + budget.after_heal_window_s)))
    verdicts: list[Verdict] = []

    during = timeline.window(fw)
    if during.requests == 0:
        verdicts.append(
            _missing(
                "error_ratio_during_fault",
                budget.max_error_ratio_during_fault,
                "",
                f"no request finished during the fault window ({fw.seconds:.1f}s); was traffic running?",
            )
        )
    else:
        kinds = ", ".join(f"{k}={n}" for k, n in sorted(during.failures_by_kind().items()))
        verdicts.append(
            _verdict(
                "error_ratio_during_fault",
                during.failure_ratio,
                budget.max_error_ratio_during_fault,
                "",
                "error ratio during the fault",
                f"{during.failures} of {during.requests} requests failed{': ' + kinds if kinds else ''}",
            )
        )

    gap = timeline.window(Window(fw.start, max(fw.start, after.end))).longest_success_gap()
    if gap is None:
        verdicts.append(_missing("longest_unavailability", budget.max_unavailability_s, "s", "no requests at all"))
    else:
        verdicts.append(
            _verdict(
                "longest_unavailability",
                gap.seconds,
                budget.max_unavailability_s,
                "s",
                "longest time without a successful request",
                f"from {gap.start:.2f} to {gap.end:.2f}, {gap.failures} failures in it",
            )
        )

    # Requests sent during the fault, however late they finished: a request that hung through it
    # is exactly what this percentile is for.
    during_tl = timeline.issued_in(fw, finished_by=after.end)
    p99_during = during_tl.latency_percentile(99)
    if p99_during is None:
        verdicts.append(
            _missing(
                "p99_during_fault", budget.max_p99_during_fault_ms, "ms", "no latency samples during the fault window"
            )
        )
    else:
        verdicts.append(
            _verdict(
                "p99_during_fault",
                p99_during,
                budget.max_p99_during_fault_ms,
                "ms",
                "p99 latency during the fault",
                f"{during.requests} requests"
                + (
                    f"; {slowest(during_tl, fw.start, 'after the fault began')}"
                    if p99_during > budget.max_p99_during_fault_ms
                    else ""
                ),
            )
        )

    after_tl = timeline.issued_in(after)
    p99_after = after_tl.latency_percentile(99)
    if p99_after is None:
        verdicts.append(
            _missing(
                "p99_after_heal",
                budget.max_p99_after_heal_ms,
                "ms",
                "no traffic after heal; keep traffic running past recovery",
            )
        )
    else:
        verdicts.append(
            _verdict(
                "p99_after_heal",
                p99_after,
                budget.max_p99_after_heal_ms,
                "ms",
                f"p99 latency in the {after.seconds:.0f}s after heal",
                f"{after_tl.requests} requests"
                + (f"; {slowest(after_tl, fw.end, 'after heal')}" if p99_after > budget.max_p99_after_heal_ms else ""),
            )
        )

    verdicts.append(_time_to_steady(timeline, fw, budget, baseline, run_start, run_end))
    return SloReport(fw, tuple(verdicts))


def _time_to_steady(
    timeline: Timeline,
    fw: Window,
    budget: SloBudget,
    baseline: WindowLike | None,
    run_start: float,
    run_end: float,
) -> Verdict:
    name = "time_to_steady_throughput"
    bw = Window.of(baseline) if baseline is not None else Window(min(fw.start, run_start + RAMP_UP_S), fw.start)
    # Whole seconds only: a partial first or last second would read as a throughput dip.
    base_rows = [r for r in timeline.window(bw).rows() if r.t >= bw.start and r.t + 1 <= bw.end]
    if len(base_rows) < 2:
        return _missing(
            name,
            budget.max_time_to_steady_s,
            "s",
            f"only {len(base_rows)} whole seconds of traffic before the fault; start traffic earlier",
        )
    base = statistics.median(r.successes for r in base_rows)
    if base <= 0:
        return _missing(name, budget.max_time_to_steady_s, "s", "no successful requests before the fault")
    floor = budget.steady_fraction * base
    rows = [r for r in timeline.window(Window(fw.end, max(fw.end, run_end))).rows() if r.t + 1 <= run_end]
    hold = budget.steady_hold_s
    for i in range(max(0, len(rows) - hold + 1)):
        window = rows[i : i + hold]
        if all(r.successes >= floor and r.failed == 0 for r in window):
            took = max(0.0, window[0].t - fw.end)
            return _verdict(
                name,
                took,
                budget.max_time_to_steady_s,
                "s",
                "time to steady throughput after heal",
                f"baseline {base:g}/s, steady at >= {floor:.1f}/s for {hold}s",
            )
    return _verdict(
        name,
        math.inf,
        budget.max_time_to_steady_s,
        "s",
        "time to steady throughput after heal",
        f"never reached {floor:.1f} successes/s ({budget.steady_fraction:.0%} of baseline {base:g}/s) "
        f"for {hold}s in the {max(0.0, run_end - fw.end):.0f}s of traffic after heal",
    )
