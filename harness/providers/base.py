"""The provider contract: what every way of getting an HA cluster (local, vagrant, existing) offers.

Faults and checks speak only this interface, so the same scenario runs against real processes
on loopback, Vagrant VMs or a staging cluster.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.errors import HarnessError
from harness.net.tls import TLSClient
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


class Capability(enum.StrEnum):
    """What a provider can do beyond the common contract, declared by each cluster it makes.

    Code outside the providers asks `cluster.capabilities`, never the concrete class, so a new
    provider that lacks something is told so (a scenario needing it is skipped with the reason)
    instead of silently losing a check.
    """

    # node.power_off()/power_on(): every process of a node dies at once and its address goes silent.
    POWER_OFF = "power-off"
    # node.partition()/heal_partition(): drop a node's traffic to and from peer addresses.
    PARTITION = "partition"
    # node.freeze()/thaw(): a component stops answering without exiting (the gray failure).
    FREEZE = "freeze"
    # cluster.worker_names(): worker Nodes whose Ready condition is part of the steady state.
    WORKER_READINESS = "worker-readiness"
    # cluster.log_path(): component logs as files on this machine, for excerpts around faults.
    COMPONENT_LOGS = "component-logs"
    # cluster.component_versions(): etcd, HAProxy and node-agent versions beside the API's own.
    COMPONENT_VERSIONS = "component-versions"
    # cluster.variant(): a sibling cluster with other settings (e.g. a 5-member etcd).
    VARIANT_CLUSTERS = "variant-clusters"
    # The harness may destroy and recreate the cluster to repair it between scenarios.
    REBUILD = "rebuild"
    # cluster.certificate_files(): the control plane's certificate files, as kubeadm names them.
    CERTIFICATE_FILES = "certificate-files"


class UnsupportedCapability(HarnessError):
    """Something was asked of a provider that does not declare the capability for it."""

    def __init__(self, provider: str, capability: Capability, what: str = "") -> None:
        self.provider = provider
        self.capability = capability
        super().__init__(
            f"the {provider} provider does not offer {capability.value}"
            + (f" ({what})" if what else "")
            + "; the local provider offers every capability"
        )


def require(cluster: Cluster, capability: Capability, what: str = "") -> None:
    """Raise UnsupportedCapability unless the cluster declares `capability`."""
    if capability not in cluster.capabilities:
        raise UnsupportedCapability(cluster.name, capability, what)


CONTROL_PLANE_COMPONENTS = (Component.ETCD, Component.APISERVER, Component.CONTROLLER_MANAGER, Component.SCHEDULER)


@dataclass(frozen=True)
class ProcessInfo:
    """A component's state as its node reports it: "running", "stopped", "frozen", ... and its pid if known."""

    state: str
    pid: int | None = None


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
    def process(self, component: Component) -> ProcessInfo: ...
    # Capability.POWER_OFF. A real machine that is off never answers; blackhole=False (processes
    # gone, address still answering with resets) exists only where that can be emulated.
    def power_off(self, blackhole: bool = True) -> None: ...
    def power_on(self, timeout: float = 90.0) -> None: ...
    # Peers are addresses; one_way drops only what this node sends.
    def partition(self, peers: Sequence[str], one_way: bool = False) -> None: ...
    def heal_partition(self, peers: Sequence[str] | None = None) -> None: ...
    # Packets this node's partition rules have dropped so far; None when none of its rules is
    # installed. How a partition is confirmed applied (rules present and matching) and healed.
    def partition_drops(self) -> int | None: ...


class Provider(Protocol):
    name: str

    # The lifecycle, the same on every provider (harness/providers/registry.py drives it):
    # create brings the cluster up and is idempotent (a cluster that already runs with these
    # settings is reused); attach uses a cluster that already runs and never owns it (raises
    # ClusterNotRunningError when none does); detach lets go and leaves it running; destroy tears
    # down what create brought up (safe twice; a provider that cannot create only detaches).
    def create(self, timeout: float = 180.0) -> None: ...
    def attach(self, timeout: float = 60.0) -> None: ...
    def detach(self) -> None: ...
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
    def capabilities(self) -> frozenset[Capability]: ...
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

    # Each of these belongs to a capability and raises UnsupportedCapability where it is not declared.
    def worker_names(self) -> list[str]: ...  # WORKER_READINESS
    def log_path(self, node: str, component: Component) -> Path: ...  # COMPONENT_LOGS
    def component_versions(self) -> dict[str, str]: ...  # COMPONENT_VERSIONS
    # VARIANT_CLUSTERS: a new, not yet created cluster of the same provider with `settings` changed,
    # named and placed by `index` so that it never shares a name or an address with this one.
    def variant(self, settings: Mapping[str, object], index: int) -> Cluster: ...
    # The SLOs the cluster's owners declared with it (an inventory's [slo]); {} where none were.
    def declared_objectives(self) -> Mapping[str, object]: ...
    # CERTIFICATE_FILES: kind (kubeadm's grouping) -> certificate files on this machine.
    def certificate_files(self) -> dict[str, list[Path]]: ...
