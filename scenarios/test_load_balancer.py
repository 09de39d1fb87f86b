"""The load balancer: kill HAProxy on the (first) LB node; direct endpoints are unaffected.

With one LB the API through it is down until HAProxy is back. With an LB pair (HAProxy plus
keepalived holding a virtual IP, as in the Vagrant topology) the VIP must move to the other LB,
so the API through it stays available within the client-visible outage SLO.
"""

from __future__ import annotations

import pytest

from harness import report, windows
from harness.checks.availability import AvailabilitySampler
from harness.faults.catalog import kill_load_balancer
from harness.providers.base import Cluster, Role
from harness.scenario import ScenarioRun
from harness.verdicts import check, inconclusive

pytestmark = [pytest.mark.disruptive, pytest.mark.lb]


@pytest.mark.slo("lb-failover", only=["p99_after_heal", "time_to_steady_throughput"])
def test_kill_haproxy_and_recover(scenario: ScenarioRun, cluster: Cluster) -> None:
    """HAProxy dies: only the path through it breaks, and it comes back when HAProxy does.

    Hypothesis: with one LB the API through it is down while HAProxy is dead (with an LB pair the
    VIP moves and it stays up), every apiserver answers directly throughout, and the first request
    through the LB succeeds within the mark-down SLO of HAProxy's restart.

    Fault: SIGKILL of HAProxy on the first LB node, held for the "observe with HAProxy dead"
    window, then HAProxy restarted.

    Measured: requests through the LB and straight to each apiserver (20 Hz samples each) while
    HAProxy is dead; with an LB pair, the longest outage through the VIP; the time from the restart
    to the first successful request through the LB; clients' p99 and time to steady throughput
    after heal.

    SLO: one LB: every request through it fails while it is dead; LB pair: outage through the VIP
    within the LB's mark-down SLO; no direct request to an apiserver fails; LB recovery within
    the mark-down SLO; steady state after; clients after heal within the lb-failover SLO.
    """
    run = scenario
    run.steady_state_before()
    targets = {"lb": cluster.lb_url(), **{n.name: cluster.apiserver_url(n.name) for n in cluster.control_planes()}}
    with AvailabilitySampler(targets, cluster.admin_tls()) as api:
        report.observe(api)
        run.wait(windows.SETTLE)
        with run.fault(kill_load_balancer(cluster), baseline=api) as dead:
            run.wait(windows.LB_DEAD)
        run.wait(windows.RECOVERY_AFTER_HEAL)
    heal_started = dead.heal_started
    lb = api.series["lb"]
    window = (dead.applied_at + 0.5, heal_started)
    if len([n for n in cluster.nodes() if n.role is Role.LOAD_BALANCER]) >= 2:
        run.verdict(
            run.budgets.within(
                "api_unavailability_s",
                "API via the VIP survives one LB",
                lb.longest_outage_s(),
                what=f"longest outage through the VIP while {dead.target} was dead (keepalived failover)",
                missing=f"the availability sampler took no sample of {lb.url}",
            )
        )
    else:
        name = "API via LB down while HAProxy is dead"
        if lb.count(*window) == 0:
            run.verdict(
                inconclusive(name, f"the availability sampler took no sample of {lb.url} while HAProxy was dead")
            )
        else:
            run.verdict(
                check(
                    name,
                    lb.failures(*window) == lb.count(*window),
                    f"{lb.failures(*window)}/{lb.count(*window)} requests through the LB failed",
                )
            )
    direct_failures = {n: api.series[n].failures(dead.applied_at, dead.healed_at) for n in targets if n != "lb"}
    run.verdict(
        check(
            "apiservers unaffected",
            not any(direct_failures.values()),
            f"direct requests failing per apiserver while only the LB was down: {direct_failures}",
        )
    )
    back = lb.first_success_after(heal_started)
    run.verdict(
        run.budgets.within(
            "lb_mark_down_s",
            "LB recovery",
            None if back is None else back - heal_started,
            what="first successful request through the LB after restarting HAProxy",
        )
    )
    run.steady_state_after()
