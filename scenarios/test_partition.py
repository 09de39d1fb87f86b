"""Partition: isolate the etcd leader. The majority elects a new one, the minority cannot commit,
and after healing no member has diverged."""

from __future__ import annotations

import time
import uuid

import pytest

from harness.checks.budgets import check, within
from harness.checks.etcd import EtcdClient, EtcdEndpoint, WriteProbe, hash_agreement
from harness.checks.http import wait_until
from harness.faults.catalog import PartitionNode
from harness.providers.base import Cluster
from harness.scenario import ScenarioRun

pytestmark = [pytest.mark.disruptive, pytest.mark.partition, pytest.mark.etcd]


@pytest.mark.slo("etcd-partition")
def test_isolate_etcd_leader(scenario: ScenarioRun, cluster: Cluster, etcd: EtcdClient) -> None:
    run = scenario
    run.steady_state_before()
    leader = etcd.leader()
    assert leader, "no etcd leader in steady state"
    majority = [EtcdEndpoint(n.name, cluster.etcd_url(n.name)) for n in cluster.control_planes() if n.name != leader]
    isolated = EtcdEndpoint(leader, cluster.etcd_url(leader))
    prefix = f"kubequake/probe/{uuid.uuid4().hex[:8]}"
    with WriteProbe(etcd, majority, prefix, interval_s=0.05, timeout_s=0.5) as probe:
        time.sleep(1.0)
        with run.phase("inject"):
            rec = run.inject(PartitionNode(cluster, leader))
        assert rec.applied_at is not None
        with run.phase("observe"):
            majority_client = EtcdClient(majority, etcd.tls, timeout=1.0)
            try:
                wait_until(
                    "the majority elects a new leader",
                    lambda: (majority_client.leader() not in (None, leader), str(majority_client.leader())),
                    timeout=run.budgets.etcd_recovery_s,
                    interval=0.1,
                )
                new_leader = majority_client.leader()
            except Exception:
                new_leader = None
            minority_write = etcd.put(f"{prefix}/minority", "must-not-commit", isolated, timeout=2.0)
            time.sleep(1.0)
        resumed = probe.first_success_after(rec.applied_at)
        with run.phase("heal"):
            run.heal(rec)
        time.sleep(1.0)
    run.verdict(
        check(
            "majority elects a new leader",
            new_leader not in (None, leader),
            f"leader {leader} isolated; majority leader now {new_leader}",
        )
    )
    # The isolated member first has to notice it lost the majority (one election timeout).
    run.verdict(
        within(
            "majority write availability",
            None if resumed is None else resumed - rec.applied_at,
            run.budgets.etcd_reelection_s + cluster.cfg.etcd.election_timeout_ms / 1000,
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
        wait_until(
            "isolated member caught up",
            lambda: (etcd.get(probe.acked[-1].key, isolated, serializable=True) == probe.acked[-1].value, ""),
            timeout=30,
        )
        agree, hashes, revision = hash_agreement(etcd)
        run.verdict(check("no divergence after heal", agree, f"hashes at revision {revision}: {hashes}"))
        lost = probe.lost()
        run.verdict(
            check(
                "no acknowledged write lost",
                not lost and bool(probe.acked),
                f"{len(probe.acked)} acknowledged writes checked on every member; lost: {lost[:10]}",
            )
        )
        # The refused write was never acknowledged, so etcd may still apply it once the partition
        # heals (its proposal can outlive the client's timeout): that is allowed, not divergence.
        stray = etcd.get(f"{prefix}/minority", majority[0])
        run.measure("unacknowledged minority write after heal", "applied later" if stray else "absent")
    run.finish()
