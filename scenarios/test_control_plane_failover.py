"""Control-plane failover: the lease holder's node goes dark; leases move, the API keeps serving."""

from __future__ import annotations

import contextlib
import time

import pytest

from harness import report
from harness.checks.availability import AvailabilitySampler, lb_outage_verdict
from harness.checks.budgets import check, within
from harness.checks.http import wait_until
from harness.checks.leaders import LeaseInfo, read_lease
from harness.errors import HarnessError
from harness.faults.catalog import KillComponent, PowerOffNode
from harness.kube import api_client
from harness.providers.base import Cluster, Component
from harness.providers.haproxy import parse_stats_csv
from harness.scenario import ScenarioRun
from harness.status import lease_leaders

pytestmark = [pytest.mark.disruptive, pytest.mark.control_plane]


def lb_backends(cluster: Cluster) -> dict[str, str]:
    rows = parse_stats_csv(cluster.lb_stats_csv())
    return {r.server: r.status for r in rows if r.proxy == "apiservers"}


@pytest.mark.slo("control-plane-node-loss")
def test_power_off_lease_holder(scenario: ScenarioRun, cluster: Cluster) -> None:
    run = scenario
    run.steady_state_before()
    leaders = lease_leaders(cluster)
    holder = leaders["kube-controller-manager"]
    if not holder or "," in holder:
        # Judged from the cluster, not from its config: no single fresh lease holder means every
        # instance runs its controllers at once, and nothing can hand over.
        with api_client(cluster.lb_url(), cluster.admin_tls(), timeout=2.0) as kapi:
            held = read_lease(kapi, "kube-controller-manager")
        age = time.time() - held.renew_time if held and held.renew_time else None
        run.verdict(
            check(
                "one kube-controller-manager holds the leader lease",
                False,
                f"leaders by instance metrics: {leaders}; lease: "
                + (f"held by {held.holder!r}, renewed {age:.0f}s ago" if held and age is not None else "absent")
                + ". Leader election is off or broken: every instance acts at once",
            )
        )
        run.finish()
    assert holder is not None  # finish() above ends the scenario with its failed verdict
    mine = [lease for lease, node in leaders.items() if node == holder]
    with api_client(cluster.lb_url(), cluster.admin_tls(), timeout=2.0) as kapi:
        before = {lease: read_lease(kapi, lease) for lease in mine}
        with AvailabilitySampler({"lb": cluster.lb_url()}, cluster.admin_tls()) as api:
            report.observe(api)
            time.sleep(1.0)
            with run.phase("inject"):
                rec = run.inject(PowerOffNode(cluster, holder), baseline=api)
            assert rec.applied_at is not None
            with run.phase("observe"):
                after: dict[str, LeaseInfo | None] = {}
                for lease in mine:
                    was = before[lease]

                    def changed(lease: str = lease, was: LeaseInfo | None = was) -> tuple[bool, str]:
                        now = read_lease(kapi, lease)
                        after[lease] = now
                        return bool(now and was and now.holder != was.holder), f"holder {now and now.holder}"

                    with contextlib.suppress(HarnessError):
                        wait_until(
                            f"{lease} lease changes hands",
                            changed,
                            timeout=run.budgets.lease_handover_s + 15,
                            interval=0.2,
                        )
                new_nodes = lease_leaders(cluster, skip=frozenset({holder}))
                time.sleep(1.0)
            with run.phase("heal"):
                run.heal(rec)
            time.sleep(1.0)
    for lease in mine:
        got, was = after.get(lease), before[lease]
        moved = bool(got and was and got.holder != was.holder and got.acquire_time)
        took = (got.acquire_time - rec.applied_at) if moved and got and got.acquire_time else None
        run.measure(
            f"{lease} lease",
            {
                "from": holder,
                "to": new_nodes.get(lease),
                "holder_before": was and was.holder,
                "holder_after": got and got.holder,
                "transitions": got and got.transitions,
            },
        )
        run.verdict(
            within(
                f"{lease} lease handover",
                took,
                run.budgets.lease_handover_s,
                what=f"{lease} leadership moving off powered-off {holder} (to {new_nodes.get(lease)})",
            )
        )
    lb = api.series["lb"]
    run.measure("lb_samples", {"count": lb.count(), "failures": lb.failures(), "resolution_s": lb.resolution_s()})
    run.verdict(lb_outage_verdict(lb, run.budgets.api_unavailability_via_lb_s))
    run.steady_state_after()
    run.finish()


@pytest.mark.slo("apiserver-kill")
def test_kill_one_apiserver_lb_routes_around(scenario: ScenarioRun, cluster: Cluster) -> None:
    run = scenario
    run.steady_state_before()
    victim = cluster.control_planes()[0].name
    with AvailabilitySampler({"lb": cluster.lb_url()}, cluster.admin_tls()) as api:
        report.observe(api)
        time.sleep(1.0)
        with run.phase("inject"):
            rec = run.inject(KillComponent(cluster, victim, Component.APISERVER), baseline=api)
        assert rec.applied_at is not None
        with run.phase("observe"):
            marked: float | None = None
            try:
                wait_until(
                    f"LB marks {victim} down",
                    lambda: (lb_backends(cluster)[victim].startswith("DOWN"), ""),
                    timeout=run.budgets.lb_mark_down_s + 2,
                    interval=0.1,
                )
                marked = time.time() - rec.applied_at
            except HarnessError:
                marked = None
            time.sleep(3.0)
            after_mark = time.time()
            time.sleep(3.0)
        with run.phase("heal"):
            run.heal(rec)
    lb = api.series["lb"]
    errors = lb.failures(rec.applied_at, rec.healed_at or time.time())
    run.measure("client_visible_errors", errors)
    run.verdict(
        within(
            "LB marks the dead apiserver down",
            marked,
            run.budgets.lb_mark_down_s,
            what=f"HAProxy health checks taking {victim} out of rotation",
        )
    )
    late = lb.failures(after_mark, rec.healed_at or time.time())
    run.verdict(
        check(
            "no errors once routed around",
            late == 0,
            f"{late} failed requests through the LB after {victim} was out of rotation "
            f"({errors} client-visible errors in the whole fault window)",
        )
    )
    run.verdict(lb_outage_verdict(lb, run.budgets.api_unavailability_via_lb_s))
    run.steady_state_after()
    run.finish()
