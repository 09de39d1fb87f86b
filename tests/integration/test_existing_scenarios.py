"""The resilience scenarios run through the `existing` provider, over real SSH, against real components.

The session's local cluster is described by an inventory (`kubequake inventory`) as a cluster
kubequake did not create: every node is the loopback OpenSSH server the test starts, its
components are driven by `kubequake ctl` commands run over SSH, power by the inventory's power
commands, partitions by its partition commands, and TLS comes from the kubeconfig. A pytest
subprocess then runs real scenario suites with `--provider existing`: the same path a staging
run takes, down to the wrong-cluster checks and the opt-in guard.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from harness.net.kube import api_client
from harness.providers.base import Component
from harness.providers.existing import CONTROL_PLANE_LABEL
from harness.providers.local import LocalCluster
from harness.providers.netfilter import Netfilter
from harness.status import wait_healthy
from tests.integration.sshd_server import SSHServer, sshd, sshd_prepared

__all__ = ["sshd", "sshd_prepared"]  # fixtures, imported for pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(1200)

SCENARIOS = [
    "scenarios/test_etcd_quorum.py::test_kill_follower_writes_continue",
    "scenarios/test_control_plane_failover.py::test_kill_one_apiserver_lb_routes_around",
    "scenarios/test_control_plane_failover.py::test_power_off_lease_holder",
    "scenarios/test_partition.py",
]


@pytest.fixture
def registered_control_planes(cluster: LocalCluster) -> Iterator[None]:
    """Node objects for the control planes, as their kubelets would register them on a kubeadm cluster.

    The local control planes run no kubelet, and apiservers on loopback addresses publish no
    `kubernetes` endpoints, so without these the wrong-cluster check (rightly) finds no API
    evidence of the inventory's control planes.
    """
    with api_client(cluster.lb_url(), cluster.admin_tls()) as api:
        core = client.CoreV1Api(api)
        made = []
        try:
            for n in cluster.control_planes():
                core.create_node(
                    client.V1Node(
                        metadata=client.V1ObjectMeta(name=n.name, labels={CONTROL_PLANE_LABEL: ""}),
                        spec=client.V1NodeSpec(taints=[client.V1Taint(key=CONTROL_PLANE_LABEL, effect="NoSchedule")]),
                        status=client.V1NodeStatus(
                            addresses=[client.V1NodeAddress(type="InternalIP", address=n.address)]
                        ),
                    )
                )
                made.append(n.name)
            yield
        finally:
            for name in made:
                core.delete_node(name, _request_timeout=10)


def write_inventory(cluster: LocalCluster, sshd: SSHServer, path: Path, *, allow: bool) -> Path:
    argv = [sys.executable, "-m", "harness.cli", "inventory", "--set", f"name={cluster.cfg.name}"]
    argv += ["--out", str(path), "--ssh-port", str(sshd.port), "--ssh-user", sshd.user]
    argv += ["--ssh-key", str(sshd.client_key), *(["--allow-disruptive"] if allow else [])]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"inventory: {path}\n")
    return path


def run_suite(
    cluster: LocalCluster, inventory: Path, tmp: Path, tests: list[str], timeout: float
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    junit = tmp / "junit.xml"
    argv = [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider", f"--rootdir={REPO}"]
    argv += ["--provider", "existing", "--inventory", str(inventory), f"--junitxml={junit}"]
    argv += [f"--alluredir={tmp / 'allure'}"]
    # The harness's own files for the attached cluster (TLS copies, journal) stay in tmp.
    env = {**os.environ, "KUBEQUAKE_RUN_ROOT": str(tmp / "runs")}
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    outcomes: dict[str, str] = {}
    if junit.is_file():
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = case.get("name", "")
            kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
            outcomes[name] = kinds[0] if kinds else "passed"
    return proc, outcomes


@pytest.mark.usefixtures("registered_control_planes")
def test_scenarios_pass_through_the_existing_provider(cluster: LocalCluster, sshd: SSHServer, tmp_path: Path) -> None:
    inventory = write_inventory(cluster, sshd, tmp_path / "inventory.toml", allow=True)
    proc, outcomes = run_suite(cluster, inventory, tmp_path, SCENARIOS, timeout=1000)
    detail = f"\nstdout:\n{proc.stdout[-6000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, detail
    assert outcomes == {
        "test_kill_follower_writes_continue": "passed",
        "test_kill_one_apiserver_lb_routes_around": "passed",
        "test_power_off_lease_holder": "passed",
        "test_isolate_etcd_leader": "passed",
    }, detail
    # Everything the faults did through SSH is undone: no partition or black-hole rule is left,
    # and no copy of the cluster's credentials outlives the session.
    assert Netfilter(cluster.cfg.name).rules() == []
    assert not (tmp_path / "runs" / "existing" / cluster.cfg.name / "tls").exists()


@pytest.mark.usefixtures("registered_control_planes")
def test_faults_are_refused_without_the_opt_in(cluster: LocalCluster, sshd: SSHServer, tmp_path: Path) -> None:
    inventory = write_inventory(cluster, sshd, tmp_path / "inventory.toml", allow=False)
    proc, outcomes = run_suite(cluster, inventory, tmp_path, [SCENARIOS[0]], timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert outcomes == {"test_kill_follower_writes_continue": "failure"}
    assert "disruptive actions are off" in proc.stdout
    # The refused fault never reached the cluster: every etcd member still runs.
    assert all(n.running(n.components()[0]) for n in cluster.control_planes())


@pytest.mark.usefixtures("registered_control_planes")
def test_the_gate_checks_an_existing_cluster_and_fails_it_when_it_should(
    cluster: LocalCluster, sshd: SSHServer, tmp_path: Path
) -> None:
    inventory = write_inventory(cluster, sshd, tmp_path / "inventory.toml", allow=False)

    def gate(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "harness.cli", "gate", "--inventory", str(inventory), *extra]
        argv += ["--junit", str(tmp_path / "gate.xml"), "--alluredir", str(tmp_path / "allure")]
        env = {**os.environ, "KUBEQUAKE_RUN_ROOT": str(tmp_path / "runs")}
        return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, env=env, check=False)

    # status reads the existing cluster through the same provider: components over SSH commands.
    status = subprocess.run(
        [sys.executable, "-m", "harness.cli", "status", "--json", "--inventory", str(inventory)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBEQUAKE_RUN_ROOT": str(tmp_path / "runs")},
        check=False,
    )
    assert status.returncode == 0, status.stdout[-3000:] + status.stderr[-2000:]
    data = json.loads(status.stdout)
    assert (data["provider"], data["healthy"], data["etcd"]["quorum"]) == ("existing", True, True)
    assert {n["name"]: sorted(n["components"]) for n in data["nodes"]} == {
        "lb": ["haproxy"],
        **{
            n.name: sorted(["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"])
            for n in cluster.control_planes()
        },
    }
    assert set(data["leaders"].values()) <= {n.name for n in cluster.control_planes()}

    healthy = gate()
    assert healthy.returncode == 0, healthy.stdout[-4000:] + healthy.stderr[-2000:]
    assert "gate PASSED" in healthy.stdout
    assert f"existing cluster from {inventory}, attached (never torn down)" in healthy.stdout
    # The local leaf certificates are valid for a year: a 400-day threshold must fail them, by name.
    strict = gate("--min-cert-days", "400")
    assert strict.returncode == 1, strict.stdout[-4000:]
    assert "served by cp1:6443" in strict.stdout and "renew them before the upgrade" in strict.stdout
    # Faults on a cluster whose inventory does not opt in are refused before any suite runs.
    refused = gate("--disruptive")
    assert refused.returncode == 2
    assert "does not set allow_disruptive = true" in refused.stderr


@pytest.mark.usefixtures("registered_control_planes")
def test_heal_undoes_what_a_killed_run_left_on_an_existing_cluster(
    cluster: LocalCluster, sshd: SSHServer, tmp_path: Path
) -> None:
    inventory = write_inventory(cluster, sshd, tmp_path / "inventory.toml", allow=True)
    env = {**os.environ, "KUBEQUAKE_RUN_ROOT": str(tmp_path / "runs")}
    journal = tmp_path / "runs" / "existing" / cluster.cfg.name / "faults.jsonl"
    argv = [sys.executable, "-m", "pytest", SCENARIOS[0], "-q", "-p", "no:cacheprovider", f"--rootdir={REPO}"]
    argv += ["--provider", "existing", "--inventory", str(inventory)]
    run = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        # The run is killed (no teardown at all) as soon as its fault is in force.
        deadline = time.monotonic() + 180
        while '"status": "applied"' not in (journal.read_text() if journal.is_file() else ""):
            assert run.poll() is None, "the scenario ended before its fault was applied"
            assert time.monotonic() < deadline, "no fault was applied within 180s"
            time.sleep(0.2)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(30)
    down = [n.name for n in cluster.control_planes() if not n.running(Component.ETCD)]
    assert len(down) == 1, f"expected the killed follower still down, got {down}"
    heal = subprocess.run(
        [sys.executable, "-m", "harness.cli", "heal", "--inventory", str(inventory)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert heal.returncode == 0, heal.stdout + heal.stderr
    assert f"healed: SIGKILL etcd on {down[0]}" in heal.stdout
    assert all(n.running(Component.ETCD) for n in cluster.control_planes())
    wait_healthy(cluster, timeout=120)
