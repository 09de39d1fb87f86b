"""Partition: isolate the etcd leader. The majority elects a new one, the minority cannot commit,
and after healing no member has diverged."""

from __future__ import annotations

import uuid

import pytest

from harness import windows
from harness.checks.etcd import EtcdClient, EtcdEndpoint, WriteProbe, hash_agreement, no_acknowledged_write_lost
from harness.faults.catalog import PartitionNode
from harness.providers.base import Cluster
from harness.scenario import ScenarioRun
from harness.verdicts import check

pytestmark = [pytest.mark.disruptive, pytest.mark.partition, pytest.mark.etcd]


@pytest.mark.slo("etcd-partition")
@pytest.mark.requires("partition")
def test_isolate_etcd_leader(scenario: ScenarioRun, cluster: Cluster, etcd: EtcdClient) -> None:
    """The etcd leader cut off from its peers: the majority goes on, the minority cannot commit.

    Hypothesis: the majority elects a new leader and resumes writes within the re-election SLO
    plus the election timeout the isolated leader needs to notice; a write through the isolated
    member is never acknowledged (no split brain); after healing it catches up and no member has
    diverged.

    Fault: the leader's node cut off from the other control-plane nodes (both directions), held
    until the majority has a new leader, one write through the isolated member was tried, and the
    "hold before heal" window.

    Measured: the majority's leader; the time from the partition to the first acknowledged write of
    a probe writing to the majority every 0.05s; the answer to the write through the isolated
    member; after healing, key-space hashes, every acknowledged write on each member, and whether
    the refused write was applied later; what clients through the LB saw.

    SLO: the majority elects a new leader; first majority write within the etcd re-election
    SLO; the isolated member's write is refused; members agree; no
    acknowledged write lost; steady state after; clients within the etcd-partition SLO.
    """
    run = scenario
    run.steady_state_before()
    leader = etcd.leader()
    assert leader, "no etcd leader in steady state"
    majority = [EtcdEndpoint(n.name, cluster.etcd_url(n.name)) for n in cluster.control_planes() if n.name != leader]
    isolated = EtcdEndpoint(leader, cluster.etcd_url(leader))
    prefix = f"kubequake/probe/{uuid.uuid4().hex[:8]}"
    with WriteProbe(etcd, majority, prefix, interval_s=0.05, timeout_s=0.5) as probe:
        run.wait(windows.SETTLE)
        with run.fault(PartitionNode(cluster, leader)) as cut:
            majority_client = EtcdClient(majority, etcd.tls, timeout=1.0)
            elected = run.wait_for(
                windows.NEW_ETCD_LEADER,
                lambda: (majority_client.leader() not in (None, leader), str(majority_client.leader())),
                what="the majority elects a new leader",
            )
            new_leader = None if elected is None else majority_client.leader()
            minority_write = etcd.put(f"{prefix}/minority", "must-not-commit", isolated, timeout=2.0)
            run.wait(windows.HOLD_BEFORE_HEAL)
            resumed = probe.first_success_after(cut.applied_at)
        run.wait(windows.AFTER_HEAL)
    run.verdict(
        check(
            "majority elects a new leader",
            new_leader not in (None, leader),
            f"leader {leader} isolated; majority leader now {new_leader}",
        )
    )
    run.verdict(
        run.budgets.within(
            "etcd_reelection_s",
            "majority write availability",
            None if resumed is None else resumed - cut.applied_at,
            what="first acknowledged write on the majority side after the partition",
        )
    )
    run.verdict(
        check(
            "isolated member cannot commit",
            not minority_write.ok,
            "a write through the isolated former leader was "
            + ("ACKNOWLEDGED: split brain" if minority_write.ok else f"refused ({minority_write.error[:120]})"),
        )
    )
    run.steady_state_after()
    with run.phase("verify: no divergence"):
        # A member still behind is judged below: what it lacks shows as lost acknowledged writes.
        run.wait_for(
            windows.MEMBER_CATCH_UP,
            lambda: (etcd.get(probe.acked[-1].key, isolated, serializable=True) == probe.acked[-1].value, ""),
            what="isolated member caught up",
        )
        agree, hashes, revision = hash_agreement(etcd)
        run.verdict(check("no divergence after heal", agree, f"hashes at revision {revision}: {hashes}"))
        run.verdict(no_acknowledged_write_lost(probe))
        # The refused write was never acknowledged, so etcd may still apply it once the partition
        # heals (its proposal can outlive the client's timeout): that is allowed, not divergence.
        stray = etcd.get(f"{prefix}/minority", majority[0])
        run.measure("unacknowledged minority write after heal", "applied later" if stray else "absent")
