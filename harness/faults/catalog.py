"""The faults kubequake can inject, each with its undo, and rebuilt from the journal for `heal`.

Every fault goes through the provider-neutral node interface (harness.providers.base.Node):
the local provider signals processes and writes iptables rules for loopback addresses, the
vagrant and existing providers act on real machines over SSH (crictl, systemd, iptables) and
power VMs through the hypervisor or the inventory's commands.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlparse

from harness.errors import FaultError, HarnessError, TransportError
from harness.providers.base import Capability, Component, require

if TYPE_CHECKING:
    from harness.providers.base import Cluster

log = logging.getLogger(__name__)

RESTART_TIMEOUT_S = 90.0
# A listening port answers a connect at once; a black-holed address answers nothing in this time.
CONNECT_TIMEOUT_S = 1.0


def _etcd_if(node: str, component: Component) -> set[str]:
    return {node} if component is Component.ETCD else set()


def _poll(check: Callable[[], str], timeout: float, interval: float = 0.1) -> str:
    """ "" as soon as `check` sees what it looks for; else the last thing it reported at the deadline.

    A problem reaching the cluster is reported, not raised: an unconfirmed fault makes the
    verdict inconclusive, which is what a confirmation that could not be made means.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            missing = check()
        except HarnessError as exc:
            missing = f"could not look ({exc})"
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(interval)


def _port_of(cluster: Cluster, node: str, component: Component) -> tuple[str, int] | None:
    """Where a component answers, for the components the contract gives an address for."""
    url = {
        Component.APISERVER: lambda: cluster.apiserver_url(node),
        Component.ETCD: lambda: cluster.etcd_url(node),
    }.get(component)
    if url is None:
        return None
    parsed = urlparse(url())
    return (parsed.hostname or "", parsed.port or 443) if parsed.hostname else None


def _connect(where: tuple[str, int], timeout: float = CONNECT_TIMEOUT_S) -> str:
    """ "refused", "silent" (no answer within timeout) or "accepted"."""
    try:
        with socket.create_connection(where, timeout=timeout):
            return "accepted"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "silent"
    except OSError as exc:
        return f"error {exc.strerror or exc}"


@dataclass
class KillComponent:
    """SIGKILL one component: a crash. Undo restarts it and waits until it is ready."""

    cluster: Cluster
    node: str
    component: Component
    kind: ClassVar[str] = "kill"
    # The capability of the cluster this fault needs (None: every provider can).
    needs: ClassVar[Capability | None] = None

    @property
    def target(self) -> str:
        return f"{self.node}/{self.component}"

    def describe(self) -> str:
        return f"SIGKILL {self.component} on {self.node}"

    def params(self) -> dict[str, Any]:
        return {"node": self.node, "component": str(self.component)}

    def impaired_etcd_members(self) -> set[str]:
        return _etcd_if(self.node, self.component)

    def check_supported(self) -> None:
        if self.needs is not None:
            require(self.cluster, self.needs, self.describe())

    def apply(self) -> None:
        n = self.cluster.node(self.node)
        if not n.running(self.component):
            raise FaultError(f"cannot kill {self.target}: it is not running; heal the cluster first")
        n.kill(self.component)

    def heal(self) -> None:
        n = self.cluster.node(self.node)
        n.thaw(self.component)
        n.start(self.component, timeout=RESTART_TIMEOUT_S)

    def confirm_applied(self, timeout: float) -> str:
        n = self.cluster.node(self.node)
        where = _port_of(self.cluster, self.node, self.component)

        def gone() -> str:
            if n.running(self.component):
                return f"{self.target} still runs"
            if where is not None and (answer := _connect(where)) != "refused":
                return f"{self.target} is gone but {where[0]}:{where[1]} is {answer}, not refusing"
            return ""

        return _poll(gone, timeout)

    def confirm_healed(self, timeout: float) -> str:
        n = self.cluster.node(self.node)
        return _poll(lambda: "" if n.running(self.component) else f"{self.target} does not run", timeout)


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
    needs: ClassVar[Capability | None] = Capability.FREEZE

    def describe(self) -> str:
        return f"freeze (SIGSTOP) {self.component} on {self.node}"

    def apply(self) -> None:
        self.cluster.node(self.node).freeze(self.component)

    def confirm_applied(self, timeout: float) -> str:
        # A frozen process keeps its port: the kernel still completes handshakes, nothing answers.
        n = self.cluster.node(self.node)
        return _poll(lambda: f"{self.target} still runs, not frozen" if n.running(self.component) else "", timeout)

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

    def check_supported(self) -> None:
        require(self.cluster, Capability.POWER_OFF, self.describe())

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
        self.cluster.node(self.node).power_off(blackhole=self.blackhole)

    def heal(self) -> None:
        self.cluster.node(self.node).power_on(timeout=RESTART_TIMEOUT_S)

    def confirm_applied(self, timeout: float) -> str:
        n = self.cluster.node(self.node)
        ports = [w for c in n.components() if (w := _port_of(self.cluster, self.node, c)) is not None]
        want = "silent" if self.blackhole else "refused"

        def dark() -> str:
            try:
                alive = [str(c) for c in n.components() if n.running(c)]
            except TransportError:
                alive = []  # a machine that no longer answers its management connection is off
            if alive:
                return f"{', '.join(alive)} still run on {self.node}"
            answers = {f"{h}:{p}": a for h, p in ports if (a := _connect((h, p))) != want}
            return f"{self.node} answers {answers} where it should be {want}" if answers else ""

        return _poll(dark, timeout)

    def confirm_healed(self, timeout: float) -> str:
        n = self.cluster.node(self.node)
        return _poll(lambda: ", ".join(f"{c} does not run" for c in n.components() if not n.running(c)), timeout)


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

    def check_supported(self) -> None:
        require(self.cluster, Capability.PARTITION, self.describe())

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

    def confirm_applied(self, timeout: float) -> str:
        n = self.cluster.node(self.node)

        def dropping() -> str:
            drops = n.partition_drops()
            if drops is None:
                return f"no partition rule of {self.node} is installed"
            # Peers exchange heartbeats many times a second: a rule that matches nothing cuts nothing.
            return "" if drops > 0 else f"the partition rules of {self.node} matched no packet"

        return _poll(dropping, timeout)

    def confirm_healed(self, timeout: float) -> str:
        n = self.cluster.node(self.node)
        return _poll(
            lambda: "" if n.partition_drops() is None else f"partition rules of {self.node} are still installed",
            timeout,
        )


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
