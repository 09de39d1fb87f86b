"""The cluster's status as one typed snapshot; `kubequake status --json` is its stable contract.

Scripts depend on the JSON shape: nodes[], etcd.members[], etcd.quorum, apiservers[],
load_balancer, leaders, workers[], versions. Fields are only ever added, never renamed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

from harness.checks.etcd import EtcdClient, EtcdEndpoint
from harness.checks.http import probe, wait_until
from harness.checks.leaders import LEASED_COMPONENTS, leading_instances, read_lease
from harness.errors import HarnessError
from harness.kube import api_client
from harness.providers.base import Cluster, Component, Node
from harness.providers.local import LocalCluster, LocalNode

SCHEMA_VERSION = 1


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
    if not isinstance(cluster, LocalCluster):
        return {"kubernetes": _server_version(cluster)}
    versions = dict(cluster.bins.versions)
    out = {
        "kubernetes": versions.get("kubernetes", ""),
        "etcd": versions.get("etcd", ""),
        "kwok": versions.get("kwok", ""),
        "haproxy": haproxy_version(),
    }
    return out


def _server_version(cluster: Cluster) -> str:
    r = probe(f"{cluster.lb_url()}/version", cluster.admin_tls(), timeout=2.0)
    m = re.search(r'"gitVersion":\s*"([^"]+)"', r.body) if r.ok else None
    return m.group(1) if m else "unknown"


def haproxy_version() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, timeout=5, check=False).stdout
        m = re.search(r"version (\S+)", out)
        if m:
            return m.group(1)
    return "unknown"


def _component_status(n: Node, c: Component) -> ComponentStatus:
    if isinstance(n, LocalNode):
        return ComponentStatus(str(n.state(c)), n.pid(c))
    try:
        return ComponentStatus("running" if n.running(c) else "stopped", None)
    except HarnessError as exc:
        return ComponentStatus(f"unknown ({exc})", None)


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
    workers: list[WorkerRow] = []
    if lb_ready and cluster.cfg.workers and isinstance(cluster, LocalCluster):
        from harness.providers.workers import ready_workers, worker_names

        with contextlib.suppress(Exception):
            ready_names = set(ready_workers(cluster))
            workers = [WorkerRow(w, w in ready_names) for w in worker_names(cluster.cfg.workers)]
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
    )
    return dataclasses.replace(st, healthy=not problems(st, cluster.cfg.leader_election.enabled))


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
