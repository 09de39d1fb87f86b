"""Client verdicts of a scenario: what clients saw during and after a fault, against the user's SLOs.

Five verdicts, each with the number measured, the SLO (harness.slo.ClientObjectives, one
profile per kind of fault) and a message naming both:
- error ratio during the fault window;
- longest client-visible unavailability: the longest time between two successful requests,
  anywhere from the fault's start until the end of the after-heal window (with what the
  configuration predicts beside it, and the slow setting named when it predicts a miss);
- p99 latency during the fault window, and after heal;
- time to steady throughput after heal: from heal until successes per second stay at or above
  a fraction of the pre-fault baseline, with no failures, for `steady_hold_s` seconds.

A verdict on nothing is INCONCLUSIVE, never a pass: no request in the fault window, no baseline
before the fault or no traffic after heal each say what is missing.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

from harness.load.timeline import Timeline, Window, WindowLike
from harness.slo import MARGIN_S, ClientObjectives, Prediction, explain
from harness.verdicts import Outcome, Verdict, inconclusive, outcome_of

# Seconds of traffic at the start of a run not used as baseline: users are still being spawned.
RAMP_UP_S = 2.0


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


def _verdict(
    name: str,
    measured: float,
    budget: float,
    unit: str,
    what: str,
    detail: str = "",
    prediction: Prediction | None = None,
) -> Verdict:
    expected = prediction.value if prediction is not None else None
    why = explain(budget, prediction, unit)
    if not math.isfinite(measured):
        return Verdict(
            name,
            None,
            budget,
            unit,
            Outcome.FAIL,
            f"{what}: never ({detail})" + (f"; {why}" if why else ""),
            expected,
        )
    passed = measured <= budget
    num = f"{measured:.3f}" if unit == "" else f"{measured:.2f}{unit}"
    bud = f"{budget:.3f}" if unit == "" else f"{budget:g}{unit}"
    extra = f" ({detail})" if detail else ""
    verdict = f"{what} {num}{extra} {'within' if passed else 'exceeds'} SLO {bud}"
    return Verdict(
        name, measured, budget, unit, outcome_of(passed), verdict + ("" if passed or not why else f"; {why}"), expected
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
    return inconclusive(name, why, budget, unit)


def evaluate(
    timeline: Timeline,
    fault: WindowLike,
    budget: ClientObjectives,
    baseline: WindowLike | None = None,
    outage: Prediction | None = None,
    reconnect: Prediction | None = None,
) -> SloReport:
    """Judge one fault window of a run's timeline against the clients' SLOs.

    `outage` is what the cluster's configuration predicts for the longest unavailability
    (harness.slo.expectations' api_unavailability_s), shown beside the measurement.
    `reconnect` (harness.slo.etcd_reconnect_window) is how long after heal requests may still
    wait for an etcd connection in backoff: p99 after heal is judged from its end, and the
    requests sent inside it get a verdict of their own (none held past the window).
    """
    fw = Window.of(fault)
    run_end = timeline.records[-1].end if timeline.records else fw.end
    run_start = timeline.records[0].start if timeline.records else fw.start
    grace = reconnect.value if reconnect is not None else 0.0
    start = fw.end + grace
    after = Window(start, max(start, min(run_end, start + budget.after_heal_window_s)))
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
                outage,
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

    if reconnect is not None:
        verdicts.append(_held_in_reconnect_window(timeline, fw.end, reconnect))
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
                f"p99 latency in the {after.seconds:.0f}s after heal"
                + (f" (from {grace:.1f}s after it: the etcd reconnect window)" if grace else ""),
                f"{after_tl.requests} requests"
                + (f"; {slowest(after_tl, fw.end, 'after heal')}" if p99_after > budget.max_p99_after_heal_ms else ""),
            )
        )

    verdicts.append(_time_to_steady(timeline, fw, budget, baseline, run_start, run_end))
    return SloReport(fw, tuple(verdicts))


def _held_in_reconnect_window(timeline: Timeline, healed: float, reconnect: Prediction) -> Verdict:
    """Requests sent while etcd connections may still be in backoff may wait for one, never longer."""
    name = "longest_request_in_reconnect_window"
    limit_ms = (reconnect.value + MARGIN_S) * 1000
    # Every request sent in the window, however late it finished: the one held longest is the point.
    latencies = [
        r.latency_ms for r in timeline.records if healed <= r.start < healed + reconnect.value and r.counts_latency
    ]
    if not latencies:
        return _missing(name, limit_ms, "ms", "no request was sent in the reconnect window after heal")
    verdict = _verdict(
        name,
        max(latencies),
        limit_ms,
        "ms",
        f"slowest of {len(latencies)} requests sent in the {reconnect.value:.1f}s after heal "
        f"({reconnect.names()}: an apiserver may hold a request until its etcd connection's next attempt)",
    )
    return dataclasses.replace(verdict, expected=reconnect.value * 1000)


def _time_to_steady(
    timeline: Timeline,
    fw: Window,
    budget: ClientObjectives,
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
