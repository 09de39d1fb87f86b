"""The cluster's status as one typed snapshot; `kubequake status --json` is its stable contract.

Scripts depend on the JSON shape: nodes[], etcd.members[], etcd.quorum, apiservers[],
load_balancer, leaders, workers[], versions. Fields are only ever added, never renamed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.checks.etcd import EtcdClient, EtcdEndpoint
from harness.checks.leaders import LEASED_COMPONENTS, leading_instances, read_lease
from harness.errors import HarnessError
from harness.net.http import probe
from harness.net.kube import api_client
from harness.net.wait import wait_until
from harness.providers.base import Capability, Cluster, Component, Node

SCHEMA_VERSION = 1
WORKER_READ_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ComponentStatus:
    state: str
    pid: int | None


@dataclass(frozen=True)
class NodeStatus:
    name: str
    role: str
    address: str
    components: dict[str, ComponentStatus]


@dataclass(frozen=True)
class EtcdMemberRow:
    name: str
    healthy: bool
    leader: bool
    raft_term: int
    raft_index: int
    error: str = ""


@dataclass(frozen=True)
class EtcdStatus:
    members: list[EtcdMemberRow]
    quorum: bool
    leader: str | None
    size: int


@dataclass(frozen=True)
class ApiServerRow:
    node: str
    ready: bool


@dataclass(frozen=True)
class LoadBalancerRow:
    address: str
    ready: bool


@dataclass(frozen=True)
class WorkerRow:
    name: str
    ready: bool


@dataclass(frozen=True)
class ClusterStatus:
    name: str
    provider: str
    run_dir: str
    nodes: list[NodeStatus]
    etcd: EtcdStatus
    apiservers: list[ApiServerRow]
    load_balancer: LoadBalancerRow
    leaders: dict[str, str | None]
    workers: list[WorkerRow]
    versions: dict[str, str]
    schema_version: int = SCHEMA_VERSION
    healthy: bool = field(default=False)
    # Why worker readiness could not be read ("" when it was, or when the cluster has no workers).
    workers_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def etcd_client(cluster: Cluster, timeout: float = 2.0) -> EtcdClient:
    eps = [EtcdEndpoint(n.name, cluster.etcd_url(n.name)) for n in cluster.control_planes()]
    return EtcdClient(eps, cluster.etcd_tls(), timeout=timeout)


def etcd_status(cluster: Cluster) -> EtcdStatus:
    ec = etcd_client(cluster)
    rows = ec.statuses()
    healthy = {r.name: ec.health(EtcdEndpoint(r.name, r.url)) if r.reachable else False for r in rows}
    leader = next((r.name for r in rows if r.is_leader), None)
    size = len(rows)
    quorum = sum(healthy.values()) >= size // 2 + 1
    members = [EtcdMemberRow(r.name, healthy[r.name], r.is_leader, r.raft_term, r.raft_index, r.error) for r in rows]
    return EtcdStatus(members=members, quorum=quorum, leader=leader, size=size)


def lease_leaders(cluster: Cluster, skip: frozenset[str] = frozenset()) -> dict[str, str | None]:
    """Node of each lease's leader; `skip` leaves out nodes known to be dark (their probes would only time out).

    Each instance's own metrics say whether it leads; where they cannot be reached from here
    (kubeadm binds the controllers to the node's loopback), the Lease's holderIdentity
    (`<hostname>_<uuid>`) is matched against the node names instead.
    """
    tls = cluster.admin_tls()
    out: dict[str, str | None] = {}
    for lease in LEASED_COMPONENTS:
        component = Component(lease)
        urls = {}
        for n in cluster.control_planes():
            url = cluster.metrics_url(n.name, component)
            if url is not None and n.name not in skip:
                urls[n.name] = url
        leaders = leading_instances(urls, tls, lease) if urls else leaders_by_lease(cluster, lease, skip)
        out[lease] = leaders[0] if len(leaders) == 1 else (",".join(leaders) if leaders else None)
    return out


def leaders_by_lease(cluster: Cluster, lease: str, skip: frozenset[str]) -> list[str]:
    with contextlib.suppress(Exception), api_client(cluster.lb_url(), cluster.admin_tls(), timeout=2.0) as api:
        info = read_lease(api, lease)
        if info is None or not info.holder:
            return []
        if info.renew_time is not None and time.time() - info.renew_time > info.lease_duration_s:
            return []  # expired: nobody leads until another instance takes it
        host = info.holder.split("_", 1)[0]
        names = [n.name for n in cluster.control_planes() if n.name not in skip]
        return [name for name in names if name == host or host.startswith(name + ".")] or [host]
    return []


def component_versions(cluster: Cluster) -> dict[str, str]:
    if Capability.COMPONENT_VERSIONS in cluster.capabilities:
        return cluster.component_versions()
    return {"kubernetes": _server_version(cluster)}


def _server_version(cluster: Cluster) -> str:
    r = probe(f"{cluster.lb_url()}/version", cluster.admin_tls(), timeout=2.0)
    m = re.search(r'"gitVersion":\s*"([^"]+)"', r.body) if r.ok else None
    return m.group(1) if m else "unknown"


def _component_status(n: Node, c: Component) -> ComponentStatus:
    try:
        info = n.process(c)
    except HarnessError as exc:
        return ComponentStatus(f"unknown ({exc})", None)
    return ComponentStatus(info.state, info.pid)


def collect(cluster: Cluster) -> ClusterStatus:
    nodes = []
    for n in cluster.nodes():
        comps = {str(c): _component_status(n, c) for c in n.components()}
        nodes.append(NodeStatus(n.name, str(n.role), n.address, comps))
    tls = cluster.admin_tls()
    apiservers = []
    for n in cluster.control_planes():
        running = comps_running(nodes, n.name, Component.APISERVER)
        ready = running and probe(f"{cluster.apiserver_url(n.name)}/readyz", tls, timeout=2.0).ok
        apiservers.append(ApiServerRow(n.name, ready))
    lb_ready = probe(f"{cluster.lb_url()}/readyz", tls, timeout=2.0).ok
    workers, workers_error = _workers(cluster, lb_ready)
    etcd = etcd_status(cluster)
    leaders = lease_leaders(cluster)
    st = ClusterStatus(
        name=cluster.cfg.name,
        provider=cluster.name,
        run_dir=str(cluster.run_dir),
        nodes=nodes,
        etcd=etcd,
        apiservers=apiservers,
        load_balancer=LoadBalancerRow(urlparse(cluster.lb_url()).hostname or cluster.lb_url(), lb_ready),
        leaders=leaders,
        workers=workers,
        versions=component_versions(cluster),
        workers_error=workers_error,
    )
    return dataclasses.replace(st, healthy=not problems(st, cluster.cfg.leader_election.enabled))


def _workers(cluster: Cluster, lb_ready: bool) -> tuple[list[WorkerRow], str]:
    """Each expected worker Node's Ready condition, read through the LB; or why it could not be read.

    An unread readiness is a problem of its own, never an empty list that passes: steady state
    must not be declared on workers nobody looked at.
    """
    if Capability.WORKER_READINESS not in cluster.capabilities:
        return [], ""
    names = cluster.worker_names()
    if not names:
        return [], ""
    if not lb_ready:
        return [], "worker readiness not read: the API through the load balancer is not ready"
    try:
        with api_client(cluster.lb_url(), cluster.admin_tls(), timeout=WORKER_READ_TIMEOUT_S) as api:
            nodes = client.CoreV1Api(api).list_node(_request_timeout=WORKER_READ_TIMEOUT_S).items
    except (ApiException, OSError, urllib3.exceptions.HTTPError) as exc:
        return [], f"worker readiness not read: listing Nodes failed ({type(exc).__name__}: {str(exc)[:160]})"
    ready = {n.metadata.name for n in nodes if n.metadata and _node_ready(n)}
    return [WorkerRow(w, w in ready) for w in names], ""


def _node_ready(node: Any) -> bool:
    conditions = (node.status and node.status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def comps_running(nodes: list[NodeStatus], node: str, component: Component) -> bool:
    for n in nodes:
        if n.name == node:
            st = n.components.get(str(component))
            return st is not None and st.state == "running"
    return False


def problems(st: ClusterStatus, leader_election: bool = True) -> list[str]:
    """Everything that keeps the cluster from its steady state, each as one readable line."""
    out: list[str] = []
    for n in st.nodes:
        out += [f"{n.name}/{c} is {s.state}" for c, s in n.components.items() if s.state != "running"]
    if not st.etcd.quorum:
        out.append(f"etcd has no quorum ({sum(m.healthy for m in st.etcd.members)}/{st.etcd.size} healthy)")
    out += [
        f"etcd member {m.name} unhealthy: {m.error or 'no linearizable read'}" for m in st.etcd.members if not m.healthy
    ]
    if st.etcd.leader is None:
        out.append("etcd has no leader")
    out += [f"kube-apiserver on {a.node} not ready" for a in st.apiservers if not a.ready]
    if not st.load_balancer.ready:
        out.append(f"the API through the load balancer {st.load_balancer.address} is not ready")
    if leader_election:
        for lease, holder in st.leaders.items():
            if holder is None:
                out.append(f"no {lease} instance holds the leader lease")
            elif "," in holder:
                out.append(f"more than one {lease} instance claims leadership: {holder}")
    out += [f"worker {w.name} not Ready" for w in st.workers if not w.ready]
    if st.workers_error:
        out.append(st.workers_error)
    return out


def wait_healthy(cluster: Cluster, timeout: float) -> ClusterStatus:
    """Wait for the steady state; raise with what is still broken."""
    last: list[ClusterStatus] = []

    def check() -> tuple[bool, str]:
        st = collect(cluster)
        last[:] = [st]
        return st.healthy, "; ".join(problems(st, cluster.cfg.leader_election.enabled))

    wait_until(f"cluster {cluster.cfg.name} healthy", check, timeout, interval=0.5)
    return last[0]
