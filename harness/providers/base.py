"""The provider contract: what every way of getting an HA cluster (local, vagrant, existing) offers.

Faults and checks speak only this interface, so the same scenario runs against real processes
on loopback, Vagrant VMs or a staging cluster.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.transport.base import CommandResult

if TYPE_CHECKING:
    from harness.binaries import BinarySet
    from harness.config import ClusterConfig


class Role(enum.StrEnum):
    LOAD_BALANCER = "load-balancer"
    CONTROL_PLANE = "control-plane"
    WORKERS = "workers"


class Component(enum.StrEnum):
    ETCD = "etcd"
    APISERVER = "kube-apiserver"
    CONTROLLER_MANAGER = "kube-controller-manager"
    SCHEDULER = "kube-scheduler"
    HAPROXY = "haproxy"
    KWOK = "kwok"
    # Present on real machines only (vagrant, existing): node agents and the LB's VIP keeper.
    KUBELET = "kubelet"
    CONTAINERD = "containerd"
    KEEPALIVED = "keepalived"


CONTROL_PLANE_COMPONENTS = (Component.ETCD, Component.APISERVER, Component.CONTROLLER_MANAGER, Component.SCHEDULER)


@dataclass(frozen=True)
class TLSClient:
    """Files a client needs to talk TLS to a component: CA bundle plus client cert and key."""

    ca: Path
    cert: Path
    key: Path


class Node(Protocol):
    name: str
    role: Role
    address: str

    def run(self, argv: list[str], timeout: float) -> CommandResult: ...
    def components(self) -> list[Component]: ...
    def start(self, component: Component, timeout: float = 60.0) -> None: ...
    def stop(self, component: Component, timeout: float = 10.0) -> None: ...
    def kill(self, component: Component) -> None: ...
    def freeze(self, component: Component) -> None: ...
    def thaw(self, component: Component) -> None: ...
    def running(self, component: Component) -> bool: ...
    def power_off(self) -> None: ...
    def power_on(self, timeout: float = 90.0) -> None: ...
    # Peers are addresses; one_way drops only what this node sends.
    def partition(self, peers: Sequence[str], one_way: bool = False) -> None: ...
    def heal_partition(self, peers: Sequence[str] | None = None) -> None: ...


class Provider(Protocol):
    name: str

    def create(self, timeout: float = 180.0) -> None: ...
    def destroy(self) -> None: ...
    # Sequence, not list: each provider returns its own node type, and lists are invariant.
    def nodes(self) -> Sequence[Node]: ...
    def node(self, name: str) -> Node: ...
    def kubeconfig(self) -> Path: ...


class Cluster(Provider, Protocol):
    """What scenarios, checks and faults use of a cluster, whichever provider made it.

    `cfg` carries the settings budgets are derived from (lease durations, LB health checks,
    member count): the local provider's own, or what an inventory/topology declares for a
    cluster kubequake did not configure. `run_dir` is this harness's working directory for the
    cluster (journal, traffic records, manifests), never a directory on the cluster's machines.
    """

    cfg: ClusterConfig
    run_dir: Path

    @property
    def bins(self) -> BinarySet: ...
    def control_planes(self) -> Sequence[Node]: ...
    def lb_url(self) -> str: ...
    def apiserver_url(self, node: str) -> str: ...
    def etcd_url(self, node: str) -> str: ...
    def admin_tls(self) -> TLSClient: ...
    def etcd_tls(self) -> TLSClient: ...
    def traffic_tls(self) -> TLSClient: ...
    # HAProxy's `show stat` CSV for the LB in front of the apiservers.
    def lb_stats_csv(self, timeout: float = 5.0) -> str: ...
    # Where a component's Prometheus metrics answer for a node; None when unreachable from here.
    def metrics_url(self, node: str, component: Component) -> str | None: ...
