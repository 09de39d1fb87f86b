"""Faults against the real local cluster: effect, undo order, guards, journal and `kubequake heal`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.checks.etcd import EtcdClient, EtcdEndpoint
from harness.errors import BlastRadiusError
from harness.faults.base import BlastRadius, FaultInjector, journal_path
from harness.faults.catalog import FreezeComponent, KillComponent, PartitionNode, PowerOffNode
from harness.faults.journal import Journal
from harness.net.wait import wait_until
from harness.providers.base import Component
from harness.providers.local import LocalCluster
from harness.providers.netfilter import Netfilter
from harness.providers.process import ComponentState
from harness.status import wait_healthy

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def injector(cluster: LocalCluster, allow_quorum_loss: bool = False) -> FaultInjector:
    radius = BlastRadius(cluster.cfg.control_planes, allow_quorum_loss=allow_quorum_loss)
    return FaultInjector(Journal(journal_path(cluster.run_dir)), radius, scenario="tests")


def connect_outcome(address: str, port: int, timeout: float = 1.5) -> str:
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((address, port))
        return "connected"
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    finally:
        s.close()


def test_faults_are_undone_newest_first_even_when_the_block_fails(cluster: LocalCluster) -> None:
    inj = injector(cluster)
    with pytest.raises(RuntimeError, match="scenario blew up"), inj:
        first = inj.inject(FreezeComponent(cluster, "cp3", Component.SCHEDULER))
        second = inj.inject(KillComponent(cluster, "cp2", Component.CONTROLLER_MANAGER))
        assert cluster.node("cp3").state(Component.SCHEDULER) is ComponentState.FROZEN
        assert cluster.node("cp2").state(Component.CONTROLLER_MANAGER) is ComponentState.EXITED
        raise RuntimeError("scenario blew up")
    assert first.status == second.status == "healed"
    # Each fault was seen in effect (frozen, process gone and its port refusing) and gone again.
    assert first.confirmed_applied and first.confirmed_healed, first.confirmation
    assert second.confirmed_applied and second.confirmed_healed, second.confirmation
    assert second.healed_at is not None and first.healed_at is not None
    assert second.healed_at <= first.healed_at, "the newest fault must be undone first"
    assert cluster.node("cp3").state(Component.SCHEDULER) is ComponentState.RUNNING
    assert cluster.node("cp2").state(Component.CONTROLLER_MANAGER) is ComponentState.RUNNING
    journaled = {r.id: r.status for r in Journal(journal_path(cluster.run_dir)).records()}
    assert journaled[first.id] == journaled[second.id] == "healed"


def test_guard_refuses_losing_quorum_without_the_marker(cluster: LocalCluster) -> None:
    with injector(cluster) as inj:
        inj.inject(KillComponent(cluster, "cp1", Component.ETCD))
        with pytest.raises(BlastRadiusError, match="quorum_loss"):
            inj.inject(KillComponent(cluster, "cp2", Component.ETCD))
        # The refused fault never touched its target.
        assert cluster.node("cp2").state(Component.ETCD) is ComponentState.RUNNING
    assert cluster.node("cp1").state(Component.ETCD) is ComponentState.RUNNING


def test_partition_isolates_the_node_and_heal_removes_every_rule(cluster: LocalCluster, etcd: EtcdClient) -> None:
    nf = Netfilter(cluster.cfg.name)
    with injector(cluster) as inj:
        rec = inj.inject(PartitionNode(cluster, "cp1"))
        rules = nf.rules()
        # Symmetric: cp1 -> cp2, cp1 -> cp3, cp2 -> cp1, cp3 -> cp1.
        assert len(rules) == 4, rules
        cp1 = cluster.node("cp1").address
        assert all(r.endswith("-j DROP") and f"{cp1}/32" in r for r in rules), rules
        # Each node's connections leave from its own address: that is what makes the return path match.
        assert len(nf.node_sources()) == len(cluster.nodes())
        isolated = EtcdEndpoint("cp1", cluster.etcd_url("cp1"))
        # The harness itself is outside every node cgroup: it still reaches cp1, which soon cannot
        # commit (in-flight raft traffic may land for a moment, as on a real network).
        wait_until(
            "cp1 cannot commit",
            lambda: (not etcd.put("kubequake/test/isolated", "x", isolated, timeout=1.0).ok, ""),
            timeout=10,
        )
        assert not any(etcd.put("kubequake/test/isolated", "x", isolated, timeout=1.0).ok for _ in range(3))
        # Confirmed by the rules' own packet counters: peer traffic was really being dropped.
        assert rec.confirmed_applied, rec.confirmation
        inj.heal(rec)
        assert nf.rules() == []
        assert rec.confirmed_healed, rec.confirmation
    wait_until(
        "cp1 commits again", lambda: (etcd.put("kubequake/test/isolated", "y", isolated, timeout=2).ok, ""), timeout=30
    )


def test_power_off_black_holes_the_address(cluster: LocalCluster) -> None:
    cp3 = cluster.node("cp3")
    port = cluster.cfg.apiserver.port
    assert connect_outcome(cp3.address, port) == "connected"
    with injector(cluster) as inj:
        rec = inj.inject(PowerOffNode(cluster, "cp3"))
        # A powered-off machine does not answer: no reset, the client waits for its timeout.
        assert connect_outcome(cp3.address, port) == "timeout"
        assert rec.confirmed_applied, rec.confirmation
        inj.heal(rec)
        assert rec.confirmed_healed, rec.confirmation
    assert connect_outcome(cp3.address, port) == "connected"
    assert Netfilter(cluster.cfg.name).rules() == []
    wait_healthy(cluster, timeout=60)


def test_kubequake_heal_undoes_what_a_crashed_run_left(cluster: LocalCluster) -> None:
    """A process injects faults and dies without healing; `kubequake heal` undoes them from the journal."""
    sets = ["--set", f"name={cluster.cfg.name}", "--set", f"address_block={cluster.cfg.address_block}"]
    script = textwrap.dedent(f"""
        import os
        from harness import config
        from harness.faults.base import BlastRadius, FaultInjector, journal_path
        from harness.faults.catalog import KillComponent, PartitionNode
        from harness.faults.journal import Journal
        from harness.providers.base import Component
        from harness.providers.local import LocalCluster
        cfg = config.build({{"name": {cluster.cfg.name!r}, "address_block": {cluster.cfg.address_block}}})
        c = LocalCluster(cfg, detached=True)
        inj = FaultInjector(Journal(journal_path(c.run_dir)), BlastRadius(3))
        inj.inject(KillComponent(c, "cp2", Component.APISERVER))
        inj.inject(PartitionNode(c, "cp3"))
        print("INJECTED", flush=True)
        os._exit(9)  # a crash: no finally, no heal
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 9 and "INJECTED" in proc.stdout, proc.stderr
    assert cluster.node("cp2").state(Component.APISERVER) is ComponentState.EXITED
    assert len(Netfilter(cluster.cfg.name).rules()) == 4
    time.sleep(1.5)  # the node watchdog must respect the fault: the apiserver stays down
    assert cluster.node("cp2").state(Component.APISERVER) is ComponentState.EXITED
    heal = subprocess.run(
        [sys.executable, "-m", "harness.cli", "heal", *sets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
        check=False,
    )
    assert heal.returncode == 0, heal.stdout + heal.stderr
    assert "healed: partition cp3" in heal.stdout and "healed: SIGKILL kube-apiserver on cp2" in heal.stdout
    assert heal.stdout.index("partition cp3") < heal.stdout.index("kube-apiserver on cp2"), "newest first"
    assert Netfilter(cluster.cfg.name).rules() == []
    assert cluster.node("cp2").state(Component.APISERVER) is ComponentState.RUNNING
    again = subprocess.run(
        [sys.executable, "-m", "harness.cli", "heal", *sets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0 and "no fault in force" in again.stdout
    wait_healthy(cluster, timeout=60)
