"""etcd quorum: lose a follower, the leader, then the majority; every acknowledged write survives."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from harness import report
from harness.checks.availability import AvailabilitySampler, lb_outage_verdict
from harness.checks.budgets import MARGIN_S, check, within
from harness.checks.etcd import EtcdClient, EtcdEndpoint, WriteProbe, hash_agreement
from harness.checks.http import wait_until
from harness.faults.catalog import KillComponent
from harness.providers.base import Cluster, Component
from harness.scenario import ScenarioRun
from harness.status import etcd_client

pytestmark = [pytest.mark.disruptive, pytest.mark.etcd]

OBSERVE_S = 4.0


def endpoints(cluster: Cluster, exclude: set[str] = frozenset()) -> list[EtcdEndpoint]:  # type: ignore[assignment]
    return [EtcdEndpoint(n.name, cluster.etcd_url(n.name)) for n in cluster.control_planes() if n.name not in exclude]


def current_leader(etcd: EtcdClient) -> str:
    leader = etcd.leader()
    assert leader, "etcd reports no leader in steady state"
    return leader


# The deadline the client asks for (the API's `timeout` parameter, as client-go sets it): without
# quorum the apiserver must answer with an error by then instead of holding the request.
API_WRITE_DEADLINE_S = 10.0


def api_write_without_quorum(cluster: Cluster, node: str) -> tuple[str | None, float | None]:
    """Create a ConfigMap through one apiserver: (error or None, seconds until it answered)."""
    tls = cluster.admin_tls()
    session = requests.Session()
    session.trust_env = False
    url = f"{cluster.apiserver_url(node)}/api/v1/namespaces/default/configmaps"
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "kq-quorum-"}, "data": {"k": "v"}}
    start = time.monotonic()
    try:
        resp = session.post(
            url,
            params={"timeout": f"{int(API_WRITE_DEADLINE_S)}s"},
            json=body,
            verify=str(tls.ca),
            cert=(str(tls.cert), str(tls.key)),
            timeout=API_WRITE_DEADLINE_S * 3,
        )
    except requests.RequestException as exc:
        return f"{type(exc).__name__}: {str(exc)[:120]}", None
    finally:
        session.close()
    took = time.monotonic() - start
    if resp.status_code >= 300:
        return f"HTTP {resp.status_code}: {resp.reason}", took
    return None, took


def verify_after(run: ScenarioRun, etcd: EtcdClient, probe: WriteProbe) -> None:
    """Steady state, then: members agree byte for byte and no acknowledged write is missing."""
    run.steady_state_after()
    with run.phase("verify: no divergence, nothing lost"):
        agree, hashes, rev = hash_agreement(etcd)
        run.measure("hashkv", {"revision": rev, "hashes": hashes})
        run.verdict(check("members agree", agree, f"hash of the key space at revision {rev}: {hashes}"))
        lost = probe.lost()
        run.measure("acknowledged_writes", len(probe.acked))
        run.verdict(
            check(
                "no acknowledged write lost",
                not lost and bool(probe.acked),
                f"{len(probe.acked)} acknowledged writes checked on every member; lost: {lost[:10]}",
            )
        )


@pytest.mark.slo("etcd-member-loss")
def test_kill_follower_writes_continue(scenario: ScenarioRun, cluster: Cluster, etcd: EtcdClient) -> None:
    run = scenario
    run.steady_state_before()
    leader = current_leader(etcd)
    follower = next(n.name for n in cluster.control_planes() if n.name != leader)
    prefix = f"kubequake/probe/{uuid.uuid4().hex[:8]}"
    with (
        WriteProbe(etcd, endpoints(cluster, {follower}), prefix) as probe,
        AvailabilitySampler({"lb": cluster.lb_url()}, cluster.admin_tls()) as api,
    ):
        report.observe(api)
        time.sleep(1.0)
        with run.phase("inject"):
            rec = run.inject(KillComponent(cluster, follower, Component.ETCD), baseline=api)
        with run.phase("observe"):
            time.sleep(OBSERVE_S)
        with run.phase("heal"):
            run.heal(rec)
        time.sleep(1.0)
    gap = probe.longest_gap_s(rec.applied_at or 0, rec.healed_at or time.time())
    run.verdict(
        within(
            "write gap while a follower is down",
            gap,
            run.budgets.etcd_reelection_s,
            what=f"longest pause between acknowledged writes with {follower} down",
        )
    )
    lb = api.series["lb"]
    run.verdict(lb_outage_verdict(lb, run.budgets.api_unavailability_via_lb_s))
    verify_after(run, etcd, probe)
    run.finish()


@pytest.mark.slo("etcd-leader-kill")
def test_kill_leader_new_leader_within_budget(scenario: ScenarioRun, cluster: Cluster, etcd: EtcdClient) -> None:
    run = scenario
    run.steady_state_before()
    leader = current_leader(etcd)
    term_before = max(s.raft_term for s in etcd.statuses() if s.reachable)
    survivors = endpoints(cluster, {leader})
    prefix = f"kubequake/probe/{uuid.uuid4().hex[:8]}"
    with WriteProbe(etcd, survivors, prefix, interval_s=0.05, timeout_s=0.5) as probe:
        time.sleep(1.0)
        with run.phase("inject"):
            rec = run.inject(KillComponent(cluster, leader, Component.ETCD))
        with run.phase("observe"):
            survivors_client = EtcdClient(survivors, etcd.tls, timeout=1.0)
            wait_until(
                "a new etcd leader",
                lambda: (survivors_client.leader() not in (None, leader), ""),
                timeout=run.budgets.etcd_recovery_s,
                interval=0.05,
            )
            new_leader = survivors_client.leader()
            time.sleep(2.0)
        resumed = probe.first_success_after(rec.applied_at or 0)
        with run.phase("heal"):
            run.heal(rec)
    assert rec.applied_at is not None
    run.measure("leader", {"before": leader, "after": new_leader, "term_before": term_before})
    run.verdict(
        check("new leader elected", new_leader not in (None, leader), f"leader moved from {leader} to {new_leader}")
    )
    run.verdict(
        within(
            "etcd re-election",
            None if resumed is None else resumed - rec.applied_at,
            run.budgets.etcd_reelection_s,
            what="first acknowledged write after killing the leader",
        )
    )
    verify_after(run, etcd, probe)
    term_after = max(s.raft_term for s in etcd.statuses() if s.reachable)
    run.verdict(check("raft term advanced", term_after > term_before, f"term {term_before} -> {term_after}"))
    run.finish()


@pytest.mark.slo("etcd-member-loss", only=["p99_after_heal", "time_to_steady_throughput"])
@pytest.mark.quorum_loss
def test_lose_quorum_writes_fail_then_recover(scenario: ScenarioRun, cluster: Cluster, etcd: EtcdClient) -> None:
    run = scenario
    run.steady_state_before()
    names = [n.name for n in cluster.control_planes()]
    victims = names[: len(names) - (len(names) // 2)]  # the smallest set whose loss breaks quorum
    keeper = next(n for n in names if n not in victims)
    prefix = f"kubequake/probe/{uuid.uuid4().hex[:8]}"
    with (
        WriteProbe(etcd, endpoints(cluster, set(victims)), prefix, timeout_s=1.0) as probe,
        AvailabilitySampler({"lb": cluster.lb_url()}, cluster.admin_tls()) as api,
    ):
        report.observe(api)
        time.sleep(1.0)
        with run.phase("inject"):
            recs = [
                run.inject(KillComponent(cluster, v, Component.ETCD), baseline=api if i == 0 else None)
                for i, v in enumerate(victims)
            ]
        with run.phase("observe"):
            time.sleep(2.0)
            write_err, write_took = api_write_without_quorum(cluster, keeper)
            time.sleep(2.0)
            lost_from = recs[-1].applied_at or 0.0
            # A write still in flight when healing starts may be acknowledged once quorum is back.
            observe_end = time.time() - probe.timeout_s
        with run.phase("heal") as heal_phase:
            for r in reversed(recs):
                run.heal(r)
        time.sleep(2.0)
    # Writes must fail while quorum is gone (an etcd that accepts them would be split-brained).
    ok_during = probe.successes(lost_from + 1.0, observe_end)
    run.verdict(
        check(
            "writes fail without quorum",
            ok_during == 0 and probe.failures(lost_from, observe_end) > 0,
            f"{ok_during} writes acknowledged and {probe.failures(lost_from, observe_end)} refused "
            f"with {len(victims)} of {len(names)} members down",
        )
    )
    run.verdict(
        check(
            "API write fails without quorum",
            write_err is not None,
            f"creating a ConfigMap through {keeper}'s apiserver: {write_err or 'SUCCEEDED without quorum'}",
        )
    )
    run.verdict(
        within(
            "API answers without hanging",
            write_took,
            API_WRITE_DEADLINE_S + MARGIN_S,
            what="the API's answer (an error) to a write without quorum",
        )
    )
    back = probe.first_success_after(heal_phase.started)
    run.verdict(
        within(
            "quorum regained",
            None if back is None else back - heal_phase.started,
            run.budgets.etcd_recovery_s,
            what="first acknowledged write after the members' restart began",
        )
    )
    verify_after(run, etcd, probe)
    run.finish()


@pytest.mark.parametrize(
    "size", ["session", pytest.param("five", marks=pytest.mark.cluster_settings(control_planes=5, workers=1))]
)
@pytest.mark.slo("etcd-member-loss")
def test_tolerates_losing_a_minority(scenario: ScenarioRun, size: str) -> None:
    """A cluster of n members must keep accepting writes with floor(n/2) of them down.

    That holds for odd n only: 4 members need 3 for quorum and so survive one loss, like 3 do. The
    membership is read from etcd itself, so a misconfigured cluster is judged by what it is.
    """
    run = scenario
    cluster = run.cluster
    etcd = etcd_client(cluster)
    run.steady_state_before()
    members = etcd.members()
    n = len(members)
    quorum = n // 2 + 1
    wanted = n // 2
    run.measure("membership", {"members": members, "quorum": quorum})
    run.verdict(
        check(
            f"{n} members tolerate losing {wanted}",
            n - wanted >= quorum,
            f"etcd reports {n} members ({', '.join(members)}); quorum is {quorum}, so it survives "
            f"{n - quorum} losses"
            + (
                ""
                if n % 2
                else f": an even membership adds a member without adding tolerance (as {n - 1} members would)"
            ),
        )
    )
    leader = etcd.leader()
    victims = [m for m in members if m != leader][: min(wanted, n - quorum)]
    prefix = f"kubequake/probe/{uuid.uuid4().hex[:8]}"
    with WriteProbe(etcd, endpoints(cluster, set(victims)), prefix) as probe:
        time.sleep(1.0)
        with run.phase("inject"):
            recs = [run.inject(KillComponent(cluster, v, Component.ETCD)) for v in victims]
        with run.phase("observe"):
            time.sleep(OBSERVE_S)
        with run.phase("heal"):
            for r in reversed(recs):
                run.heal(r)
        time.sleep(1.0)
    if recs:
        start, end = recs[-1].applied_at or 0.0, recs[-1].healed_at or time.time()
        run.verdict(
            within(
                f"writes continue with {len(victims)} of {n} down",
                probe.longest_gap_s(start, end),
                run.budgets.etcd_reelection_s,
                what="longest pause between acknowledged writes",
            )
        )
    verify_after(run, etcd, probe)
    run.finish()
