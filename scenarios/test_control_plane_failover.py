"""Control-plane failover: the lease holder's node goes dark; leases move, the API keeps serving."""

from __future__ import annotations

import time

import pytest
from kubernetes.client import ApiException

from harness import report, windows
from harness.checks.availability import AvailabilitySampler, lb_outage_verdict
from harness.checks.leaders import LeaseInfo, read_lease
from harness.errors import ClusterError
from harness.faults.catalog import KillComponent, PowerOffNode
from harness.net.kube import api_client
from harness.providers.base import Cluster, Component
from harness.providers.haproxy import parse_stats_csv
from harness.scenario import ScenarioRun
from harness.status import lease_leaders
from harness.verdicts import check

pytestmark = [pytest.mark.disruptive, pytest.mark.control_plane]


def lb_backends(cluster: Cluster) -> dict[str, str]:
    rows = parse_stats_csv(cluster.lb_stats_csv())
    return {r.server: r.status for r in rows if r.proxy == "apiservers"}


@pytest.mark.slo("control-plane-node-loss")
@pytest.mark.requires("power-off")
def test_power_off_lease_holder(scenario: ScenarioRun, cluster: Cluster) -> None:
    """The node holding the controller-manager lease dies; its leases move and the API keeps serving.

    Hypothesis: exactly one kube-controller-manager holds its lease; standbys take over every
    lease the dead node held (the scheduler's too, if it held that) within a lease duration plus
    their retry periods, and the API through the LB stays available apart from the LB's
    mark-down time. Without a single lease holder (leader election off or broken) every instance
    acts at once and nothing can hand over: the scenario stops there, on that failed verdict.

    Fault: power-off of the lease holder's node (every process killed, its address black-holed),
    held until each of its leases changed hands plus the "hold before heal" window.

    Measured: the lease holders before; for each lease the node held, the time from the power-off
    to its new acquire time; the longest outage of the API through the LB (20 Hz samples); what
    clients through the LB saw.

    SLO: one controller-manager lease holder; each handover within the lease handover SLO
    (the lease settings' prediction is shown beside it); LB outage within the LB's mark-down SLO;
    steady state after (the node rejoins); clients within the control-plane-node-loss SLO.
    """
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
        run.stop("no single kube-controller-manager lease holder: there is no handover to measure")
    mine = [lease for lease, node in leaders.items() if node == holder]
    with api_client(cluster.lb_url(), cluster.admin_tls(), timeout=2.0) as kapi:
        before = {lease: read_lease(kapi, lease) for lease in mine}
        with AvailabilitySampler({"lb": cluster.lb_url()}, cluster.admin_tls()) as api:
            report.observe(api)
            run.wait(windows.SETTLE)
            with run.fault(PowerOffNode(cluster, holder), baseline=api) as off:
                after: dict[str, LeaseInfo | None] = {}
                for lease in mine:
                    was = before[lease]

                    def changed(lease: str = lease, was: LeaseInfo | None = was) -> tuple[bool, str]:
                        now = read_lease(kapi, lease)
                        after[lease] = now
                        return bool(now and was and now.holder != was.holder), f"holder {now and now.holder}"

                    run.wait_for(
                        windows.LEASE_HANDOVER,
                        changed,
                        what=f"{lease} lease changes hands",
                        # A request the LB sent to the powered-off node's apiserver fails until
                        # HAProxy marks it down.
                        retry_on=(ApiException,),
                    )
                new_nodes = lease_leaders(cluster, skip=frozenset({holder}))
                run.wait(windows.HOLD_BEFORE_HEAL)
            run.wait(windows.AFTER_HEAL)
    applied_at = off.applied_at
    for lease in mine:
        got, was = after.get(lease), before[lease]
        moved = bool(got and was and got.holder != was.holder and got.acquire_time)
        took = (got.acquire_time - applied_at) if moved and got and got.acquire_time else None
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
            run.budgets.within(
                "lease_handover_s",
                f"{lease} lease handover",
                took,
                what=f"{lease} leadership moving off powered-off {holder} (to {new_nodes.get(lease)})",
            )
        )
    lb = api.series["lb"]
    run.measure("lb_samples", {"count": lb.count(), "failures": lb.failures(), "resolution_s": lb.resolution_s()})
    run.verdict(lb_outage_verdict(lb, run.budgets))
    run.steady_state_after()


@pytest.mark.slo("apiserver-kill")
def test_kill_one_apiserver_lb_routes_around(scenario: ScenarioRun, cluster: Cluster) -> None:
    """One apiserver dies; HAProxy takes it out of rotation and clients stop seeing errors.

    Hypothesis: HAProxy's health checks mark a dead apiserver down within fall x check interval,
    after which no request through the LB fails; before that, clients see a bounded number of
    errors.

    Fault: SIGKILL of kube-apiserver on the first control-plane node, held until HAProxy marks it
    down plus the "drain after mark-down" and "observe routed around" windows.

    Measured: the time from the kill until HAProxy's stats show the backend DOWN; failed requests
    through the LB over the whole fault (client-visible errors) and in the routed-around window;
    the longest outage of the API through the LB (20 Hz samples); what clients through the LB saw.

    SLO: mark-down within the LB's mark-down SLO; no failed request once routed around; LB
    outage within the mark-down SLO; steady state after; clients within the apiserver-kill
    SLO.
    """
    run = scenario
    run.steady_state_before()
    victim = cluster.control_planes()[0].name
    with AvailabilitySampler({"lb": cluster.lb_url()}, cluster.admin_tls()) as api:
        report.observe(api)
        run.wait(windows.SETTLE)
        with run.fault(KillComponent(cluster, victim, Component.APISERVER), baseline=api) as killed:
            waited = run.wait_for(
                windows.LB_MARK_DOWN,
                lambda: (lb_backends(cluster)[victim].startswith("DOWN"), ""),
                what=f"LB marks {victim} down",
                # Reading HAProxy's stats (a socket, or curl over SSH on real machines) may fail once.
                retry_on=(ClusterError,),
            )
            marked = None if waited is None else time.time() - killed.applied_at
            run.wait(windows.DRAIN_AFTER_MARK_DOWN)
            after_mark = time.time()
            run.wait(windows.ROUTED_AROUND)
    lb = api.series["lb"]
    errors = lb.failures(killed.applied_at, killed.healed_at)
    run.measure("client_visible_errors", errors)
    run.verdict(
        run.budgets.within(
            "lb_mark_down_s",
            "LB marks the dead apiserver down",
            marked,
            what=f"HAProxy health checks taking {victim} out of rotation",
        )
    )
    late = lb.failures(after_mark, killed.healed_at)
    run.verdict(
        check(
            "no errors once routed around",
            late == 0,
            f"{late} failed requests through the LB after {victim} was out of rotation "
            f"({errors} client-visible errors in the whole fault window)",
        )
    )
    run.verdict(lb_outage_verdict(lb, run.budgets))
    run.steady_state_after()
