"""`kubequake ctl` against the real session cluster: each action run in its own process, as over SSH.

The CLI runs in a subprocess that does not own the cluster, so these tests also check what ctl
relies on: state shared through the run directory, held markers the owner's watchdog obeys, and
iptables chains named after the cluster. Every test restores what it breaks in a finally block,
in-process, so the shared cluster stays healthy for the tests after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.providers.base import Component
from harness.providers.local import LocalCluster
from harness.providers.netfilter import Netfilter
from harness.providers.process import ComponentState
from harness.status import wait_healthy

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)

# Python start-up and imports dominate a ctl call; `start` adds the wait for readiness.
CTL_TIMEOUT_S = 120.0
HEALTHY_TIMEOUT_S = 60.0


def kq_ctl(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    sets = ["--set", f"name={cluster.cfg.name}", "--set", f"address_block={cluster.cfg.address_block}"]
    if cluster.cfg.run_root:
        sets += ["--set", f"run_root={cluster.cfg.run_root}"]
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "ctl", *sets, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CTL_TIMEOUT_S,
        env=dict(os.environ),
        check=False,
    )
    assert "Traceback" not in res.stderr, f"kubequake ctl {' '.join(args)} showed a traceback:\n{res.stderr}"
    return res


def ok(res: subprocess.CompletedProcess[str]) -> None:
    """Exit 0 and, as for every action but the queries, nothing printed: templates expect silence."""
    assert res.returncode == 0, f"exit {res.returncode}: {res.stdout}{res.stderr}"
    assert res.stdout == "" and res.stderr == "", res.stdout + res.stderr


def test_kill_then_start_a_scheduler(cluster: LocalCluster) -> None:
    node = cluster.node("cp2")
    sched = Component.SCHEDULER
    try:
        ok(kq_ctl(cluster, "cp2", "kill", "kube-scheduler"))
        assert node.state(sched) is ComponentState.EXITED

        running = kq_ctl(cluster, "cp2", "running", "kube-scheduler")
        assert (running.returncode, running.stdout) == (1, "exited\n"), running.stderr
        ready = kq_ctl(cluster, "cp2", "ready", "kube-scheduler")
        assert (ready.returncode, ready.stdout) == (1, "cp2/kube-scheduler is exited\n"), ready.stderr

        # The kill was done by another process: the owner's watchdog (this session's) must still
        # leave the component down, as it does for a fault, and not restart it after its backoff.
        time.sleep(1.5)
        assert node.state(sched) is ComponentState.EXITED

        ok(kq_ctl(cluster, "cp2", "start", "kube-scheduler", "--timeout", "60"))
        assert node.state(sched) is ComponentState.RUNNING
        running = kq_ctl(cluster, "cp2", "running", "kube-scheduler")
        assert (running.returncode, running.stdout) == (0, "running\n"), running.stderr
        ready = kq_ctl(cluster, "cp2", "ready", "kube-scheduler")
        assert ready.returncode == 0, ready.stdout + ready.stderr
        assert "/healthz: 200" in ready.stdout
    finally:
        node.start(sched, timeout=60)
    wait_healthy(cluster, timeout=HEALTHY_TIMEOUT_S)


def test_stop_then_start_a_controller_manager(cluster: LocalCluster) -> None:
    node = cluster.node("cp3")
    kcm = Component.CONTROLLER_MANAGER
    try:
        ok(kq_ctl(cluster, "cp3", "stop", "kube-controller-manager", "--timeout", "10"))
        assert node.state(kcm) is ComponentState.EXITED
        ok(kq_ctl(cluster, "cp3", "start", "kube-controller-manager"))
        assert node.state(kcm) is ComponentState.RUNNING
    finally:
        node.start(kcm, timeout=60)
    wait_healthy(cluster, timeout=HEALTHY_TIMEOUT_S)


def test_freeze_then_thaw_a_scheduler(cluster: LocalCluster) -> None:
    node = cluster.node("cp3")
    sched = Component.SCHEDULER
    try:
        ok(kq_ctl(cluster, "cp3", "freeze", "kube-scheduler"))
        assert node.state(sched) is ComponentState.FROZEN
        running = kq_ctl(cluster, "cp3", "running", "kube-scheduler")
        assert (running.returncode, running.stdout) == (1, "frozen\n"), running.stderr

        ok(kq_ctl(cluster, "cp3", "thaw", "kube-scheduler"))
        assert node.state(sched) is ComponentState.RUNNING
        running = kq_ctl(cluster, "cp3", "running", "kube-scheduler")
        assert (running.returncode, running.stdout) == (0, "running\n"), running.stderr
    finally:
        node.thaw(sched)
    wait_healthy(cluster, timeout=HEALTHY_TIMEOUT_S)


def test_partition_and_heal_between_two_control_planes(cluster: LocalCluster) -> None:
    cp1, cp2 = cluster.node("cp1"), cluster.node("cp2")
    nf = Netfilter(cluster.cfg.name)
    before = nf.rules()
    out_rule = f"-A {nf.chain} -s {cp1.address}/32 -d {cp2.address}/32 -j DROP"
    in_rule = f"-A {nf.chain} -s {cp2.address}/32 -d {cp1.address}/32 -j DROP"
    try:
        ok(kq_ctl(cluster, "cp1", "partition", "--peers", cp2.address))
        rules = nf.rules()
        assert out_rule in rules and in_rule in rules, rules

        ok(kq_ctl(cluster, "cp1", "heal-partition", "--peers", cp2.address))
        assert nf.rules() == before

        ok(kq_ctl(cluster, "cp1", "partition", "--peers", cp2.address, "--one-way"))
        rules = nf.rules()
        assert out_rule in rules and in_rule not in rules, rules

        # Without --peers, heal-partition lifts the node's partitions from every other node.
        ok(kq_ctl(cluster, "cp1", "heal-partition"))
        assert nf.rules() == before
    finally:
        cp1.heal_partition()
    wait_healthy(cluster, timeout=HEALTHY_TIMEOUT_S)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cp9", "power-on"], "no node 'cp9'"),
        (["cp1", "kill", "haproxy"], "cp1 does not run haproxy"),
        (["cp1", "kill"], "kill needs a component"),
        (["cp1", "partition"], "partition needs the addresses"),
        (["cp1", "partition", "--peers", "127.0.0.256"], "'127.0.0.256' is not an IPv4 address"),
    ],
)
def test_refused_requests_exit_2_and_change_nothing(cluster: LocalCluster, args: list[str], message: str) -> None:
    rules = Netfilter(cluster.cfg.name).rules()
    states = {(n.name, c): n.state(c) for n in cluster.nodes() for c in n.components()}
    res = kq_ctl(cluster, *args)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("kubequake ctl: error: ") and message in res.stderr, res.stderr
    assert Netfilter(cluster.cfg.name).rules() == rules
    assert {(n.name, c): n.state(c) for n in cluster.nodes() for c in n.components()} == states


def test_partition_from_the_own_address_exits_2(cluster: LocalCluster) -> None:
    cp1 = cluster.node("cp1")
    res = kq_ctl(cluster, "cp1", "partition", "--peers", cp1.address)
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"cannot partition a node from its own address {cp1.address}" in res.stderr
