"""`kubequake ctl`: one action on one component or node of a running local cluster, from any process.

Inventories of real machines describe each operation as a command template run over SSH
(`ssh cp1 systemctl stop kube-scheduler`). With this command a local cluster answers the same
shape of command (`ssh localhost kubequake ctl cp1 stop kube-scheduler`), so the remote code path
can be driven end to end on loopback.

The acting process need not own the cluster: everything an action changes is shared through the
run directory (the process state file under its file lock, the held markers the owner's watchdog
obeys) or kept in iptables chains named after the cluster.

Checking the request (`build_request`) is pure and happens before the cluster is attached, so a
malformed template is reported the same way whether or not a cluster runs.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import ClusterError, ConfigError
from harness.providers.base import Component

if TYPE_CHECKING:
    from harness.providers.local import LocalCluster, LocalNode

log = logging.getLogger(__name__)

COMPONENT_ACTIONS = ("start", "stop", "kill", "freeze", "thaw", "running", "ready")
NODE_ACTIONS = ("power-off", "power-on", "partition", "heal-partition", "partition-drops")
ACTIONS = COMPONENT_ACTIONS + NODE_ACTIONS

DEFAULT_TIMEOUTS_S = {"start": 90.0, "stop": 10.0, "power-on": 90.0}

# The options each action takes. Any other option is refused rather than ignored: a template that
# passes --blackhole to `kill` expects something this command would not do, and should fail
# when it is written, not mislead a run.
_ACTION_OPTIONS: dict[str, frozenset[str]] = {
    "start": frozenset({"--timeout"}),
    "stop": frozenset({"--timeout"}),
    "power-on": frozenset({"--timeout"}),
    "power-off": frozenset({"--blackhole"}),
    "partition": frozenset({"--peers", "--one-way"}),
    "heal-partition": frozenset({"--peers"}),
}


@dataclass(frozen=True)
class CtlRequest:
    """A checked `ctl` command line: what to do, to which node and component."""

    node: str
    action: str
    component: Component | None = None
    peers: tuple[str, ...] | None = None
    one_way: bool = False
    blackhole: bool = False
    timeout: float | None = None

    @property
    def target(self) -> str:
        return f"{self.node}/{self.component}" if self.component is not None else self.node


@dataclass(frozen=True)
class CtlResult:
    """`ok` becomes exit 0 or 1; `output` (the state or readiness detail) goes to stdout."""

    ok: bool = True
    output: str | None = None


def parse_peers(text: str) -> tuple[str, ...]:
    """`--peers 127.0.40.11,127.0.40.12` -> the addresses, normalised, in order, without repeats."""
    peers: list[str] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise ConfigError(
                f"--peers {text!r} has an empty address; give comma-separated IPv4 addresses, "
                "e.g. --peers 127.0.40.11,127.0.40.12"
            )
        try:
            # IPv4 only: partitions are iptables (not ip6tables) rules on /32 addresses.
            address = str(ipaddress.IPv4Address(item))
        except ValueError:
            raise ConfigError(
                f"--peers: {item!r} is not an IPv4 address; give comma-separated addresses, "
                "e.g. --peers 127.0.40.11,127.0.40.12"
            ) from None
        if address not in peers:
            peers.append(address)
    return tuple(peers)


def build_request(
    node: str,
    action: str,
    component: str | None = None,
    *,
    peers: str | None = None,
    one_way: bool = False,
    blackhole: bool = False,
    timeout: float | None = None,
) -> CtlRequest:
    """Check a command line without touching any cluster; raise ConfigError naming the fix."""
    if action not in ACTIONS:
        raise ConfigError(f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
    if not node.strip():
        raise ConfigError("an empty node name; give a node of the cluster, e.g. cp1 (see `kubequake status`)")
    usage = f"kubequake ctl {node} {action}"
    comp: Component | None = None
    if action in COMPONENT_ACTIONS:
        if component is None:
            raise ConfigError(
                f"{action} needs a component: `{usage} COMPONENT`, one of {', '.join(map(str, Component))}"
            )
        try:
            comp = Component(component)
        except ValueError:
            raise ConfigError(
                f"unknown component {component!r}; choose one of {', '.join(map(str, Component))}"
            ) from None
    elif component is not None:
        raise ConfigError(f"{action} acts on the whole node and takes no component: drop {component!r}, `{usage}`")

    given = {
        opt
        for opt, present in (
            ("--peers", peers is not None),
            ("--one-way", one_way),
            ("--blackhole", blackhole),
            ("--timeout", timeout is not None),
        )
        if present
    }
    allowed = _ACTION_OPTIONS.get(action, frozenset())
    for opt in sorted(given - allowed):
        takes = [a for a, opts in _ACTION_OPTIONS.items() if opt in opts]
        raise ConfigError(f"{opt} does not apply to {action} (only to {', '.join(takes)}); drop it")

    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"--timeout {timeout:g}: give a number of seconds above 0")
    parsed_peers = parse_peers(peers) if peers is not None else None
    if action == "partition" and parsed_peers is None:
        raise ConfigError(f"partition needs the addresses to cut this node off from: `{usage} --peers ADDR[,ADDR...]`")
    return CtlRequest(
        node=node,
        action=action,
        component=comp,
        peers=parsed_peers,
        one_way=one_way,
        blackhole=blackhole,
        timeout=timeout if timeout is not None else DEFAULT_TIMEOUTS_S.get(action),
    )


def _component_of(node: LocalNode, req: CtlRequest) -> Component:
    assert req.component is not None  # build_request guarantees it for component actions
    runs = node.components()
    if req.component not in runs:
        raise ClusterError(
            f"{node.name} does not run {req.component}; it runs {', '.join(map(str, runs))} "
            f"(`kubequake status` lists every node's components)"
        )
    return req.component


def _refuse_shared_address(cluster: LocalCluster, node: LocalNode, what: str) -> None:
    # KWOK's "workers" node has no address of its own and reports the LB's: rules on that address
    # would silence the load balancer too, far beyond what the caller named.
    sharing = [n.name for n in cluster.nodes() if n.address == node.address and n.name != node.name]
    if sharing:
        raise ClusterError(
            f"{what} of {node.name} would act on {node.address}, which {node.name} shares with "
            f"{', '.join(sharing)}; act on a node with an address of its own"
        )


def _timeout(req: CtlRequest) -> float:
    assert req.timeout is not None  # build_request fills in the default for timed actions
    return req.timeout


def execute(cluster: LocalCluster, req: CtlRequest) -> CtlResult:
    """Carry out a checked request on an attached cluster; HarnessError on anything refused."""
    node = cluster.node(req.node)
    started = time.monotonic()
    result = CtlResult()
    match req.action:
        case "start":
            node.start(_component_of(node, req), timeout=_timeout(req))
        case "stop":
            node.stop(_component_of(node, req), timeout=_timeout(req))
        case "kill":
            node.kill(_component_of(node, req))
        case "freeze":
            node.freeze(_component_of(node, req))
        case "thaw":
            node.thaw(_component_of(node, req))
        case "running":
            comp = _component_of(node, req)
            result = CtlResult(node.running(comp), str(node.state(comp)))
        case "ready":
            ok, detail = cluster.component_ready(node, _component_of(node, req))
            result = CtlResult(ok, detail)
        case "power-off":
            if req.blackhole:
                _refuse_shared_address(cluster, node, "a black hole")
            node.power_off(blackhole=req.blackhole)
        case "power-on":
            node.power_on(timeout=_timeout(req))
        case "partition":
            assert req.peers is not None  # build_request refuses a partition without peers
            _refuse_shared_address(cluster, node, "a partition")
            _warn_unknown_peers(cluster, req.peers)
            node.partition(req.peers, one_way=req.one_way)
        case "heal-partition":
            node.heal_partition(req.peers)
        case "partition-drops":
            # How a partition made through a command template is confirmed: "none" when no rule
            # of this node is installed, else the packets its rules have dropped.
            drops = node.partition_drops()
            result = CtlResult(True, "none" if drops is None else str(drops))
        case _:  # pragma: no cover - build_request accepts only ACTIONS
            raise ConfigError(f"unknown action {req.action!r}; choose one of {', '.join(ACTIONS)}")
    log.debug("ctl %s %s done in %.2fs", req.action, req.target, time.monotonic() - started)
    return result


def _warn_unknown_peers(cluster: LocalCluster, peers: Sequence[str]) -> None:
    # Allowed (a partition from any address is well defined), but on a local cluster it is most
    # likely a typo that would cut nothing; said on stderr so the caller's stdout stays clean.
    known = {n.address for n in cluster.nodes()}
    unknown = [p for p in peers if p not in known]
    if unknown:
        log.warning(
            "--peers %s: no node of cluster %s has that address (nodes: %s); the rules cut nothing there",
            ",".join(unknown),
            cluster.cfg.name,
            ", ".join(f"{n.name}={n.address}" for n in cluster.nodes()),
        )
