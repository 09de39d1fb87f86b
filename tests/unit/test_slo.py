"""SLO verdicts from a synthetic timeline: numbers measured, budgets applied, verdicts that fail."""

from __future__ import annotations

import dataclasses
import math

import pytest

from harness.config import ClusterConfig, LoadBalancerSettings
from harness.errors import ConfigError
from harness.load.records import FailureKind, RequestRecord
from harness.load.slo import evaluate
from harness.load.timeline import Timeline, Window
from harness.slo import ClientObjectives, Objectives, etcd_reconnect_window, expectations

T0 = 1_800_000_000.0
RATE = 20  # requests per second, as paced users produce them


def paced(start: float, end: float, ok: bool = True, ms: float = 10.0, rate: int = RATE) -> list[RequestRecord]:
    n = round((end - start) * rate)
    out = []
    for i in range(n):
        t = start + (i + 0.5) / rate
        kind = None if ok else FailureKind.CONNECTION_RESET
        out.append(RequestRecord(t - ms / 1000, t, "GET", "x", ok, kind, 200 if ok else 0, ms))
    return out


def outage_run() -> tuple[Timeline, Window]:
    """10 s steady, fault at +10 s: 3 s of resets then slow successes, heal at +16 s, 14 s after."""
    recs = (
        paced(T0, T0 + 10)
        + paced(T0 + 10, T0 + 13, ok=False, ms=2)
        + paced(T0 + 13, T0 + 16, ms=400)
        + paced(T0 + 16, T0 + 18, ms=50, rate=10)  # throughput still half after heal
        + paced(T0 + 18, T0 + 30, ms=20)
    )
    return Timeline.from_records(recs), Window(T0 + 10, T0 + 16)


LOOSE = ClientObjectives(
    max_error_ratio_during_fault=0.6,
    max_unavailability_s=5.0,
    max_p99_during_fault_ms=1000,
    max_p99_after_heal_ms=100,
    max_time_to_steady_s=5.0,
)


def test_every_verdict_measures_the_number_and_passes_a_loose_budget() -> None:
    tl, fault = outage_run()
    report = evaluate(tl, fault, LOOSE)
    assert report.passed, report.message
    assert report["error_ratio_during_fault"].measured == pytest.approx(0.5)
    assert report["longest_unavailability"].measured == pytest.approx(3.05, abs=0.01)
    assert report["p99_during_fault"].measured == 400
    assert report["p99_after_heal"].measured == 50
    # Throughput is back to >= 80% of 20/s from +18 s: 2 s after heal.
    assert report["time_to_steady_throughput"].measured == pytest.approx(2.0)
    assert "60 of 120 requests failed: connection_reset=60" in report["error_ratio_during_fault"].message


def test_tight_budgets_fail_with_messages_naming_measured_and_budget() -> None:
    tl, fault = outage_run()
    tight = ClientObjectives(
        max_error_ratio_during_fault=0.1,
        max_unavailability_s=1.0,
        max_p99_during_fault_ms=100,
        max_p99_after_heal_ms=20,
        max_time_to_steady_s=1.0,
    )
    report = evaluate(tl, fault, tight)
    assert not report.passed
    assert {v.name for v in report.failed()} == {
        "error_ratio_during_fault",
        "longest_unavailability",
        "p99_during_fault",
        "p99_after_heal",
        "time_to_steady_throughput",
    }
    msg = report["longest_unavailability"].message
    assert "3.05s" in msg and "exceeds SLO 1s" in msg
    assert "0.500" in report["error_ratio_during_fault"].message
    assert report["p99_during_fault"].line().startswith("FAIL p99_during_fault: measured 400.00ms")
    # A percentile over budget names the requests behind it and when they were sent.
    after = report["p99_after_heal"].message
    assert "slowest: 50ms GET x sent +0.0s after heal, HTTP 200" in after, after
    assert "slowest: 400ms GET x sent +2.6s after the fault began, HTTP 200" in report["p99_during_fault"].message


def test_a_hung_request_after_heal_is_named_with_when_it_was_sent() -> None:
    tl, fault = outage_run()
    # Four users' requests sent 3.5 s after heal hang 5.5 s: enough to carry the p99 of 260.
    hung = [RequestRecord(T0 + 19.5, T0 + 25.0, "PUT", "configmap", True, None, 200, 5500.0)] * 4
    report = evaluate(Timeline.from_records(sorted([*tl.records, *hung], key=lambda r: r.end)), fault, LOOSE)
    v = report["p99_after_heal"]
    assert not v.passed
    assert "slowest: 5500ms PUT configmap sent +3.5s after heal, HTTP 200; 5500ms PUT" in v.message, v.message
    # Within budget the message stays short.
    assert "slowest" not in evaluate(tl, fault, LOOSE)["p99_after_heal"].message


def test_steady_state_run_passes_the_steady_state_budget() -> None:
    tl = Timeline.from_records(paced(T0, T0 + 20))
    report = evaluate(tl, (T0 + 8, T0 + 12), Objectives().client("steady-state"))
    assert report.passed, report.message
    assert report["error_ratio_during_fault"].measured == 0


def test_throughput_that_never_recovers_fails_time_to_steady() -> None:
    recs = paced(T0, T0 + 10) + paced(T0 + 10, T0 + 30, rate=5)
    report = evaluate(Timeline.from_records(recs), (T0 + 10, T0 + 12), LOOSE)
    v = report["time_to_steady_throughput"]
    assert not v.passed and v.measured is None and "never reached 16.0 successes/s" in v.message


def test_a_verdict_on_nothing_fails() -> None:
    tl = Timeline.from_records(paced(T0, T0 + 10))
    report = evaluate(tl, (T0 + 20, T0 + 25), LOOSE)  # the fault came after traffic stopped
    assert not report["error_ratio_during_fault"].passed
    assert "no request finished during the fault window" in report["error_ratio_during_fault"].message
    assert not report["p99_after_heal"].passed
    no_baseline = evaluate(Timeline.from_records(paced(T0, T0 + 10)), (T0, T0 + 2), LOOSE)
    assert "before the fault" in no_baseline["time_to_steady_throughput"].message
    assert not no_baseline.passed


def test_total_outage_until_the_end_is_unavailability_not_a_pass() -> None:
    recs = paced(T0, T0 + 10) + paced(T0 + 10, T0 + 20, ok=False)
    report = evaluate(Timeline.from_records(recs), (T0 + 10, T0 + 15), LOOSE)
    assert report["longest_unavailability"].measured == pytest.approx(10.0, abs=0.06)
    assert not report.passed


def test_client_slos_are_absolute_and_the_configuration_only_predicts() -> None:
    base = Objectives().client("apiserver-kill")
    slow_checks = dataclasses.replace(ClusterConfig(), load_balancer=LoadBalancerSettings(check_interval_ms=10000))
    # A slow configuration does not loosen the SLO the user set...
    assert Objectives().client("apiserver-kill") == base
    # ...its prediction is shown beside the measurement, and a miss names the setting.
    outage = expectations(slow_checks)["api_unavailability_s"]
    recs = paced(T0, T0 + 10) + paced(T0 + 30, T0 + 60)
    v = evaluate(Timeline.from_records(recs), (T0 + 10, T0 + 30), base, outage=outage)["longest_unavailability"]
    assert not v.passed and v.expected == pytest.approx(outage.value)
    assert "load_balancer.check_interval_ms=10000" in v.message and "makes it slow" in v.message
    assert set(Objectives().clients) >= {"steady-state", "apiserver-kill", "etcd-leader-kill"}
    with pytest.raises(ConfigError, match="known: "):
        Objectives().client("no-such-scenario")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_error_ratio_during_fault", -0.1),
        ("max_unavailability_s", math.nan),
        ("steady_fraction", 0.0),
        ("steady_hold_s", 0),
    ],
)
def test_bad_budgets_are_refused(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(LOOSE, **{field: value})


def test_p99_after_heal_counts_only_requests_sent_after_the_heal() -> None:
    """A request that hung during the fault and finished after the heal belongs to the fault."""
    fault = Window(T0 + 10, T0 + 16)
    hung = [RequestRecord(T0 + 15, T0 + 21, "GET", "x", True, None, 200, 6000.0) for _ in range(20)]
    recs = paced(T0, T0 + 10) + paced(T0 + 10, T0 + 16) + paced(T0 + 16, T0 + 40) + hung
    budget = Objectives().client("etcd-leader-kill")
    after = evaluate(Timeline.from_records(recs), fault, budget)["p99_after_heal"]
    assert after.passed and after.measured is not None and after.measured < 100, after.message
    # The same slow requests sent after the heal do count against it.
    late = [dataclasses.replace(r, start=T0 + 17, end=T0 + 23) for r in hung]
    after = evaluate(Timeline.from_records(recs[:-20] + late), fault, budget)["p99_after_heal"]
    assert not after.passed and "exceeds SLO" in after.message


def test_p99_during_the_fault_includes_requests_that_hung_past_the_heal() -> None:
    fault = Window(T0 + 10, T0 + 16)
    hung = [RequestRecord(T0 + 15, T0 + 27, "GET", "x", True, None, 200, 12000.0) for _ in range(20)]
    recs = paced(T0, T0 + 10) + paced(T0 + 10, T0 + 16) + paced(T0 + 16, T0 + 40) + hung
    during = evaluate(Timeline.from_records(recs), fault, Objectives().client("etcd-leader-kill"))["p99_during_fault"]
    assert during.measured == pytest.approx(12000.0), during.message
    assert not during.passed


def test_requests_held_by_etcd_reconnect_backoff_are_judged_in_a_window_of_their_own() -> None:
    """After quorum loss, requests sent while an apiserver's etcd connections wait out their backoff
    may wait for the next attempt (measured: up to ~7 s, 200 OK); p99 after heal starts after that window."""
    fault = Window(T0 + 10, T0 + 26)  # members down for 16 s
    window = etcd_reconnect_window(16.0)
    assert window.value == pytest.approx(1.2 * (1 + 0.75 * 16))
    held = [RequestRecord(T0 + 29, T0 + 35, "GET", "x", True, None, 200, 6000.0) for _ in range(10)]
    recs = paced(T0, T0 + 10) + paced(T0 + 26, T0 + 70) + held
    budget = Objectives().client("etcd-member-loss")
    report = evaluate(Timeline.from_records(recs), fault, budget, reconnect=window)
    assert report["p99_after_heal"].passed, report["p99_after_heal"].message
    assert "etcd reconnect window" in report["p99_after_heal"].message
    held_verdict = report["longest_request_in_reconnect_window"]
    assert held_verdict.passed and held_verdict.measured == pytest.approx(6000.0)
    assert held_verdict.expected == pytest.approx(window.value * 1000)
    # Without the finding, the same run fails p99 after heal on those ten requests...
    assert not evaluate(Timeline.from_records(recs), fault, budget)["p99_after_heal"].passed
    # ...and a request held past the window is the cluster's failure either way.
    hung = [RequestRecord(T0 + 29, T0 + 89, "GET", "x", True, None, 200, 60000.0)]
    report = evaluate(Timeline.from_records(recs + hung), fault, budget, reconnect=window)
    assert not report["longest_request_in_reconnect_window"].passed
