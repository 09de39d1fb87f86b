"""The faults kubequake can inject, each with its undo, and rebuilt from the journal for `heal`.

Process faults (kill, stop, freeze), node power, partitions and the load balancer all go
through the provider's node interface; only the network rules need the local cluster's
cgroups (see providers/cgroups.py for why loopback partitions match on cgroups).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import FaultError
from harness.faults.netfilter import Netfilter, drop_between, drop_to
from harness.providers.base import Component
from harness.providers.process import ComponentState

if TYPE_CHECKING:
    from harness.providers.local import LocalCluster

log = logging.getLogger(__name__)

RESTART_TIMEOUT_S = 90.0


def _etcd_if(node: str, component: Component) -> set[str]:
    return {node} if component is Component.ETCD else set()


@dataclass
class KillComponent:
    """SIGKILL one component: a crash. Undo restarts it and waits until it is ready."""

    cluster: LocalCluster
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
        if n.state(self.component) is not ComponentState.RUNNING:
            raise FaultError(f"cannot kill {self.target}: it is {n.state(self.component)}, not running")
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
        if n.state(self.component) is not ComponentState.RUNNING:
            raise FaultError(f"cannot stop {self.target}: it is {n.state(self.component)}, not running")
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
        if n.state(self.component) is not ComponentState.RUNNING:
            n.start(self.component, timeout=RESTART_TIMEOUT_S)


@dataclass
class PowerOffNode:
    """All of a node's processes die at once and its address goes silent (DROP, not REJECT).

    Killing the processes alone would answer every client with an instant reset; a powered-off
    machine answers nothing, so clients and health checks wait for their timeouts.
    """

    cluster: LocalCluster
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

    def _rule(self) -> list[str]:
        return drop_to(self.cluster.node(self.node).address)

    def apply(self) -> None:
        n = self.cluster.node(self.node)
        if self.blackhole:
            Netfilter(self.cluster.cfg.name).add(self._rule())
        n.power_off()

    def heal(self) -> None:
        if self.blackhole:
            Netfilter(self.cluster.cfg.name).delete(self._rule())
        self.cluster.node(self.node).power_on(timeout=RESTART_TIMEOUT_S)


@dataclass
class PartitionNode:
    """Cut a node off from its peers: symmetric, or one-way (only the packets it sends are dropped).

    `peers` defaults to every other control-plane node and the load balancer's backends; the
    harness itself (not in any node cgroup) still reaches every address, so observation goes on.
    """

    cluster: LocalCluster
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

    def _rules(self) -> list[list[str]]:
        nf = Netfilter(self.cluster.cfg.name)
        if not nf.node_sources():
            raise FaultError(
                "partitions need each node's own source address (iptables source NAT on the node's cgroup), "
                "which this cluster could not set up: run as root on a machine with cgroup v2 and iptables"
            )
        me = self.cluster.node(self.node).address
        rules = []
        for peer in self.peers:
            peer_addr = self.cluster.node(peer).address
            rules.append(drop_between(me, peer_addr))
            if not self.one_way:
                rules.append(drop_between(peer_addr, me))
        return rules

    def apply(self) -> None:
        nf = Netfilter(self.cluster.cfg.name)
        for rule in self._rules():
            nf.add(rule)
        # Established connections are unaffected until they next send; DROP makes them time out,
        # exactly like a cable pulled between machines.

    def heal(self) -> None:
        nf = Netfilter(self.cluster.cfg.name)
        for rule in self._rules():
            nf.delete(rule)


def kill_load_balancer(cluster: LocalCluster) -> KillComponent:
    return KillComponent(cluster, "lb", Component.HAPROXY)


def from_record(cluster: LocalCluster, kind: str, params: dict[str, Any]) -> Any:
    """Rebuild a journaled fault so its undo can run in a new process (`kubequake heal`)."""
    if kind in ("kill", "stop", "freeze"):
        cls = {"kill": KillComponent, "stop": StopComponent, "freeze": FreezeComponent}[kind]
        return cls(cluster, params["node"], Component(params["component"]))
    if kind == "power_off":
        return PowerOffNode(cluster, params["node"], bool(params.get("blackhole", True)))
    if kind == "partition":
        return PartitionNode(cluster, params["node"], list(params["peers"]), bool(params.get("one_way", False)))
    raise FaultError(f"journal names an unknown fault kind {kind!r}; heal it by hand or `kubequake down`")
