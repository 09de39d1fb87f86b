"""The local provider against real etcd, kube-apiserver, controllers, HAProxy and KWOK."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from kubernetes import client

from harness import binaries
from harness.checks.etcd import EtcdClient, EtcdEndpoint
from harness.net.http import probe
from harness.net.wait import wait_until
from harness.providers.base import Component
from harness.providers.haproxy import parse_stats_csv, stats_over_socket
from harness.providers.local import LocalCluster
from harness.providers.process import ComponentState
from harness.status import collect, wait_healthy

pytestmark = pytest.mark.timeout(300)


def backend_status(cluster: LocalCluster) -> dict[str, str]:
    rows = parse_stats_csv(stats_over_socket(cluster.haproxy_stats_socket()))
    return {r.server: r.status for r in rows if r.proxy == "apiservers"}


def test_every_component_is_ready_and_reports_the_pinned_versions(cluster: LocalCluster) -> None:
    st = collect(cluster)
    assert st.healthy, json.dumps(st.to_dict(), indent=1)
    assert [m.name for m in st.etcd.members] == ["cp1", "cp2", "cp3"]
    assert sum(m.leader for m in st.etcd.members) == 1
    assert st.etcd.quorum
    assert all(a.ready for a in st.apiservers) and len(st.apiservers) == 3
    assert st.load_balancer.ready
    assert st.leaders["kube-controller-manager"] in ("cp1", "cp2", "cp3")
    assert st.leaders["kube-scheduler"] in ("cp1", "cp2", "cp3")
    assert [w.name for w in st.workers if w.ready] == ["worker1", "worker2", "worker3"]
    assert st.versions["kubernetes"] == binaries.KUBERNETES_VERSION
    # Each apiserver's /version must tell the truth about the build, not v0.0.0-master.
    for n in cluster.control_planes():
        r = probe(f"{cluster.apiserver_url(n.name)}/version", cluster.admin_tls())
        assert json.loads(r.body)["gitVersion"] == binaries.KUBERNETES_VERSION


def test_kubectl_reports_the_real_release_through_the_lb(cluster: LocalCluster) -> None:
    out = subprocess.run(
        [str(cluster.bins["kubectl"]), "--kubeconfig", str(cluster.kubeconfig()), "version", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    data = json.loads(out.stdout)
    assert data["clientVersion"]["gitVersion"] == binaries.KUBERNETES_VERSION
    assert data["serverVersion"]["gitVersion"] == binaries.KUBERNETES_VERSION


def test_api_through_the_lb_reads_and_writes(kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    name = f"kq-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        core.create_namespaced_config_map(
            name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"k": "v"})
        )
        assert core.read_namespaced_config_map("c", name).data == {"k": "v"}
    finally:
        core.delete_namespace(name)


def test_deployment_becomes_ready_on_kwok_workers(kube: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    ns = f"kq-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        labels = {"app": "web"}
        dep = client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=3,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.25")]),
                ),
            ),
        )
        apps.create_namespaced_deployment(ns, dep)

        def ready() -> tuple[bool, str]:
            d = apps.read_namespaced_deployment("web", ns)
            return (d.status.ready_replicas or 0) == 3, f"ready={d.status.ready_replicas}"

        wait_until("deployment web ready", ready, timeout=60)
    finally:
        core.delete_namespace(ns)


def test_lb_routes_around_a_killed_apiserver(cluster: LocalCluster) -> None:
    cp1 = cluster.node("cp1")
    lb = cluster.cfg.load_balancer
    assert backend_status(cluster)["cp1"].startswith("UP")
    cp1.kill(Component.APISERVER)
    try:
        assert cp1.state(Component.APISERVER) is ComponentState.EXITED
        # HAProxy needs `fall` failed checks `inter` apart to mark it down; allow one more interval.
        budget = (lb.fall + 1) * lb.check_interval_ms / 1000 + 2
        took = wait_until(
            "HAProxy marks cp1 DOWN",
            lambda: (backend_status(cluster)["cp1"].startswith("DOWN"), str(backend_status(cluster))),
            timeout=budget,
        )
        assert took <= budget
        # Once marked down, every request through the LB must succeed.
        results = [probe(f"{cluster.lb_url()}/readyz", cluster.admin_tls(), timeout=2).ok for _ in range(30)]
        assert all(results), f"{results.count(False)} of 30 requests through the LB failed after cp1 was marked down"
    finally:
        cp1.start(Component.APISERVER)
    wait_until(
        "HAProxy marks cp1 UP",
        lambda: (backend_status(cluster)["cp1"].startswith("UP"), str(backend_status(cluster))),
        timeout=30,
    )


def test_a_powered_off_node_rejoins_with_its_data(cluster: LocalCluster, etcd: EtcdClient) -> None:
    cp2 = cluster.node("cp2")
    before = f"before-{uuid.uuid4().hex}"
    assert etcd.put("kubequake/test/before", before).ok
    cp2.power_off()
    try:
        for c in cp2.components():
            assert cp2.state(c) is ComponentState.EXITED
        # The other two members are a majority: writes go on while cp2 is off.
        survivors = [
            EtcdEndpoint(n.name, cluster.etcd_url(n.name)) for n in cluster.control_planes() if n.name != "cp2"
        ]
        during = f"during-{uuid.uuid4().hex}"
        w = wait_until(
            "a write while cp2 is off",
            lambda: (etcd.put("kubequake/test/during", during, survivors[0]).ok, ""),
            timeout=15,
        )
        assert w < 15
    finally:
        cp2.power_on()
    for c in cp2.components():
        assert cp2.state(c) is ComponentState.RUNNING
    mine = EtcdEndpoint("cp2", cluster.etcd_url("cp2"))
    # Serializable reads answer from cp2's own copy: both the old and the caught-up write are there.
    wait_until(
        "cp2 caught up", lambda: (etcd.get("kubequake/test/during", mine, serializable=True) == during, ""), timeout=30
    )
    assert etcd.get("kubequake/test/before", mine, serializable=True) == before
    wait_healthy(cluster, timeout=60)


def test_freeze_and_thaw_keep_the_same_process(cluster: LocalCluster) -> None:
    cp3 = cluster.node("cp3")
    pid = cp3.pid(Component.SCHEDULER)
    cp3.freeze(Component.SCHEDULER)
    try:
        assert cp3.state(Component.SCHEDULER) is ComponentState.FROZEN
    finally:
        cp3.thaw(Component.SCHEDULER)
    assert cp3.state(Component.SCHEDULER) is ComponentState.RUNNING
    assert cp3.pid(Component.SCHEDULER) == pid
    time.sleep(0.1)
