"""The load balancer: kill HAProxy on the (first) LB node; direct endpoints are unaffected.

With one LB the API through it is down until HAProxy is back. With an LB pair (HAProxy plus
keepalived holding a virtual IP, as in the Vagrant topology) the VIP must move to the other LB,
so the API through it stays available within the client-visible outage budget.
"""

from __future__ import annotations

import time

import pytest

from harness import report
from harness.checks.availability import AvailabilitySampler
from harness.checks.budgets import check, within
from harness.faults.catalog import kill_load_balancer
from harness.providers.base import Cluster, Role
from harness.scenario import ScenarioRun

pytestmark = [pytest.mark.disruptive, pytest.mark.lb]


@pytest.mark.slo("lb-failover", only=["p99_after_heal", "time_to_steady_throughput"])
def test_kill_haproxy_and_recover(scenario: ScenarioRun, cluster: Cluster) -> None:
    run = scenario
    run.steady_state_before()
    targets = {"lb": cluster.lb_url(), **{n.name: cluster.apiserver_url(n.name) for n in cluster.control_planes()}}
    with AvailabilitySampler(targets, cluster.admin_tls()) as api:
        report.observe(api)
        time.sleep(1.0)
        with run.phase("inject"):
            rec = run.inject(kill_load_balancer(cluster), baseline=api)
        with run.phase("observe"):
            time.sleep(4.0)
        with run.phase("heal") as heal:
            run.heal(rec)
        time.sleep(2.0)
    assert rec.applied_at is not None and rec.healed_at is not None
    lb = api.series["lb"]
    window = (rec.applied_at + 0.5, heal.started)
    if len([n for n in cluster.nodes() if n.role is Role.LOAD_BALANCER]) >= 2:
        run.verdict(
            within(
                "API via the VIP survives one LB",
                lb.longest_outage_s(),
                run.budgets.api_unavailability_via_lb_s,
                what=f"longest outage through the VIP while {rec.target} was dead (keepalived failover)",
            )
        )
    else:
        down = lb.count(*window) > 0 and lb.failures(*window) == lb.count(*window)
        run.verdict(
            check(
                "API via LB down while HAProxy is dead",
                down,
                f"{lb.failures(*window)}/{lb.count(*window)} requests through the LB failed",
            )
        )
    direct_failures = {n: api.series[n].failures(rec.applied_at, rec.healed_at) for n in targets if n != "lb"}
    run.verdict(
        check(
            "apiservers unaffected",
            not any(direct_failures.values()),
            f"direct requests failing per apiserver while only the LB was down: {direct_failures}",
        )
    )
    back = lb.first_success_after(heal.started)
    run.verdict(
        within(
            "LB recovery",
            None if back is None else back - heal.started,
            run.budgets.lb_mark_down_s,
            what="first successful request through the LB after restarting HAProxy",
        )
    )
    run.steady_state_after()
    run.finish()
