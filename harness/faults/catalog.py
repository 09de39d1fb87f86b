"""The faults kubequake can inject, each with its undo, and rebuilt from the journal for `heal`.

Every fault goes through the provider-neutral node interface (harness.providers.base.Node):
the local provider signals processes and writes iptables rules for loopback addresses, the
vagrant and existing providers act on real machines over SSH (crictl, systemd, iptables) and
power VMs through the hypervisor or the inventory's commands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import FaultError
from harness.providers.base import Component

if TYPE_CHECKING:
    from harness.providers.base import Cluster

log = logging.getLogger(__name__)

RESTART_TIMEOUT_S = 90.0


def _etcd_if(node: str, component: Component) -> set[str]:
    return {node} if component is Component.ETCD else set()


@dataclass
class KillComponent:
    """SIGKILL one component: a crash. Undo restarts it and waits until it is ready."""

    cluster: Cluster
    node: str
    component: Component
    kind: ClassVar[str] = "kill"

    @property
    def target(self) -> str:
        return f"{self.node}/{self.component}"

    def describe(self) -> str:
        return f"SIGKILL {self.component} on {self.node}"

    def params(self) -> dict[str, Any]:
        return {"node": self.node, "component": str(self.component)}

    def impaired_etcd_members(self) -> set[str]:
        return _etcd_if(self.node, self.component)

    def apply(self) -> None:
        n = self.cluster.node(self.node)
        if not n.running(self.component):
            raise FaultError(f"cannot kill {self.target}: it is not running; heal the cluster first")
        n.kill(self.component)

    def heal(self) -> None:
        n = self.cluster.node(self.node)
        n.thaw(self.component)
        n.start(self.component, timeout=RESTART_TIMEOUT_S)


@dataclass
class StopComponent(KillComponent):
    """SIGTERM: a graceful shutdown, e.g. a drained node."""

    kind: ClassVar[str] = "stop"

    def describe(self) -> str:
        return f"stop (SIGTERM) {self.component} on {self.node}"

    def apply(self) -> None:
        n = self.cluster.node(self.node)
        if not n.running(self.component):
            raise FaultError(f"cannot stop {self.target}: it is not running; heal the cluster first")
        n.stop(self.component)


@dataclass
class FreezeComponent(KillComponent):
    """SIGSTOP: the gray failure. The port still accepts connections, nothing answers."""

    kind: ClassVar[str] = "freeze"

    def describe(self) -> str:
        return f"freeze (SIGSTOP) {self.component} on {self.node}"

    def apply(self) -> None:
        self.cluster.node(self.node).freeze(self.component)

    def heal(self) -> None:
        n = self.cluster.node(self.node)
        n.thaw(self.component)
        if not n.running(self.component):
            n.start(self.component, timeout=RESTART_TIMEOUT_S)


@dataclass
class PowerOffNode:
    """All of a node's processes die at once and its address goes silent.

    On real machines the hypervisor (or the inventory's power command) pulls the plug. Locally
    the processes are killed and, with `blackhole`, the address DROPs packets: killing alone
    would answer every client with an instant reset, while a powered-off machine answers
    nothing, so clients and health checks wait for their timeouts.
    """

    cluster: Cluster
    node: str
    blackhole: bool = True
    kind: ClassVar[str] = "power_off"

    @property
    def target(self) -> str:
        return self.node

    def describe(self) -> str:
        return f"power off node {self.node}" + (" (address black-holed)" if self.blackhole else "")

    def params(self) -> dict[str, Any]:
        return {"node": self.node, "blackhole": self.blackhole}

    def impaired_etcd_members(self) -> set[str]:
        n = self.cluster.node(self.node)
        return {self.node} if Component.ETCD in n.components() else set()

    def apply(self) -> None:
        from harness.providers.local import LocalNode

        n = self.cluster.node(self.node)
        if isinstance(n, LocalNode):
            n.power_off(blackhole=self.blackhole)
        else:
            n.power_off()

    def heal(self) -> None:
        self.cluster.node(self.node).power_on(timeout=RESTART_TIMEOUT_S)


@dataclass
class PartitionNode:
    """Cut a node off from its peers: symmetric, or one-way (only the packets it sends are dropped).

    `peers` (node names) defaults to every other control-plane node. The rules match the peers'
    addresses on the node itself, so the harness, reaching nodes by another path (loopback
    outside any node cgroup, Vagrant's NAT port, a management address), keeps observing.
    """

    cluster: Cluster
    node: str
    peers: list[str] = field(default_factory=list)
    one_way: bool = False
    kind: ClassVar[str] = "partition"

    def __post_init__(self) -> None:
        if not self.peers:
            self.peers = [n.name for n in self.cluster.control_planes() if n.name != self.node]

    @property
    def target(self) -> str:
        return self.node

    def describe(self) -> str:
        how = "one-way (its outbound dropped)" if self.one_way else "symmetric"
        return f"partition {self.node} from {', '.join(self.peers)} ({how})"

    def params(self) -> dict[str, Any]:
        return {"node": self.node, "peers": self.peers, "one_way": self.one_way}

    def impaired_etcd_members(self) -> set[str]:
        # The isolated member is cut off from the majority: for quorum arithmetic it is gone.
        return {self.node}

    def _peer_addresses(self) -> list[str]:
        return [self.cluster.node(p).address for p in self.peers]

    def apply(self) -> None:
        # Established connections are unaffected until they next send; DROP makes them time out,
        # exactly like a cable pulled between machines.
        self.cluster.node(self.node).partition(self._peer_addresses(), one_way=self.one_way)

    def heal(self) -> None:
        self.cluster.node(self.node).heal_partition(self._peer_addresses())


def kill_load_balancer(cluster: Cluster) -> KillComponent:
    """Kill the HAProxy of the (first) load-balancer node."""
    from harness.providers.base import Role

    lb = next((n for n in cluster.nodes() if n.role is Role.LOAD_BALANCER), None)
    if lb is None:
        raise FaultError("this cluster lists no load-balancer node; add it to the inventory to fault the LB")
    return KillComponent(cluster, lb.name, Component.HAPROXY)


def from_record(cluster: Cluster, kind: str, params: dict[str, Any]) -> Any:
    """Rebuild a journaled fault so its undo can run in a new process (`kubequake heal`)."""
    if kind in ("kill", "stop", "freeze"):
        cls = {"kill": KillComponent, "stop": StopComponent, "freeze": FreezeComponent}[kind]
        return cls(cluster, params["node"], Component(params["component"]))
    if kind == "power_off":
        return PowerOffNode(cluster, params["node"], bool(params.get("blackhole", True)))
    if kind == "partition":
        return PartitionNode(cluster, params["node"], list(params["peers"]), bool(params.get("one_way", False)))
    raise FaultError(f"journal names an unknown fault kind {kind!r}; heal it by hand or `kubequake down`")
