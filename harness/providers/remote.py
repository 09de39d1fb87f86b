"""A real machine reached over a transport: its components are kubeadm static pods or systemd units.

Shared by the `vagrant` and `existing` providers. Each fault maps to what an operator would do on
the node itself, so the cluster reacts as it would to a real failure:

- static pods (etcd, kube-apiserver, controller-manager, scheduler under kubeadm): kill and freeze
  signal the container's main process found with crictl; stop parks the manifest outside
  /etc/kubernetes/manifests so the kubelet tears the pod down, and start puts it back.
- systemd units (kubelet, containerd, haproxy, keepalived, or control-plane components run by
  systemd): systemctl start/stop, `systemctl kill --signal=SIGKILL`, and freeze/thaw through the
  cgroup freezer (`systemctl freeze`).
- commands (anything else: k3s, containers, a supervisor of one's own): the inventory gives
  argv templates for start, stop, kill, freeze, thaw and running, run on the node over SSH.
- power goes through the provider (the hypervisor), partitions through iptables on the node
  (or through the inventory's partition commands).
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from harness.errors import ClusterError, FaultError, TimeoutExpired, TransportError
from harness.providers.base import Component, ProcessInfo, Role
from harness.providers.netfilter import parse_counted_rules
from harness.transport.base import CommandResult

log = logging.getLogger(__name__)

MANIFEST_DIR = "/etc/kubernetes/manifests"
# Outside the manifest directory on purpose: the kubelet must not see a parked manifest.
PARKED_DIR = "/etc/kubernetes/kubequake-parked"
PARTITION_CHAIN = "KQ-PARTITION"
COMMAND_TIMEOUT_S = 30.0
_POLL_S = 1.0
_MAX_DUPLICATE_RULES = 100

# Health endpoints as kubeadm binds them on every control-plane node (etcd metrics on
# loopback, controllers on loopback, the apiserver on all addresses).
HEALTH_URLS: dict[Component, str] = {
    Component.ETCD: "http://127.0.0.1:2381/health",
    Component.APISERVER: "https://127.0.0.1:6443/readyz",
    Component.CONTROLLER_MANAGER: "https://127.0.0.1:10257/healthz",
    Component.SCHEDULER: "https://127.0.0.1:10259/healthz",
}
STATIC_POD_COMPONENTS = tuple(HEALTH_URLS)
SYSTEMD_UNITS: dict[Component, str] = {
    Component.KUBELET: "kubelet.service",
    Component.CONTAINERD: "containerd.service",
    Component.HAPROXY: "haproxy.service",
    Component.KEEPALIVED: "keepalived.service",
    Component.ETCD: "etcd.service",
    Component.APISERVER: "kube-apiserver.service",
    Component.CONTROLLER_MANAGER: "kube-controller-manager.service",
    Component.SCHEDULER: "kube-scheduler.service",
}


class RunsAs(enum.StrEnum):
    STATIC_POD = "static-pod"
    SYSTEMD = "systemd"
    COMMAND = "command"


# A template element that is exactly this is replaced by "--one-way" or left out.
ONE_WAY_FLAG = "{one_way_flag}"
COMPONENT_ACTIONS = ("start", "stop", "kill", "freeze", "thaw", "running")
NODE_ACTIONS = ("partition", "heal_partition", "partition_drops")
_PLACEHOLDERS = ("{node}", "{component}", "{address}", "{peers}")


@dataclass(frozen=True)
class CommandTemplates:
    """argv templates run on the node for components that are neither static pods nor systemd units.

    Placeholders: {node}, {component}, {address} (the node's), {peers} (comma-separated
    addresses, partitions only) and the element {one_way_flag}. `running` exits 0 when the
    component runs; `ready` (optional, else `running`) exits 0 when it also answers.
    """

    actions: Mapping[str, tuple[str, ...]]

    def has(self, action: str) -> bool:
        return action in self.actions

    def render(
        self,
        action: str,
        *,
        node: str,
        address: str,
        component: str = "",
        peers: Sequence[str] = (),
        one_way: bool = False,
    ) -> list[str]:
        try:
            template = self.actions[action]
        except KeyError:
            raise ClusterError(
                f"{node}: the inventory gives no `{action}` command for {component or 'this node'}"
            ) from None
        values = {"{node}": node, "{component}": component, "{address}": address, "{peers}": ",".join(peers)}
        out = []
        for part in template:
            if part == ONE_WAY_FLAG:
                if one_way:
                    out.append("--one-way")
                continue
            for key, value in values.items():
                part = part.replace(key, value)
            out.append(part)
        return out


@dataclass(frozen=True)
class ComponentControl:
    """How one component runs on one node, and so how it is started, stopped and signalled."""

    component: Component
    runs_as: RunsAs
    unit: str = ""
    commands: CommandTemplates | None = None

    @property
    def manifest(self) -> str:
        return f"{MANIFEST_DIR}/{self.component.value}.yaml"

    @property
    def parked(self) -> str:
        return f"{PARKED_DIR}/{self.component.value}.yaml"


def role_components(role: Role) -> tuple[Component, ...]:
    if role is Role.LOAD_BALANCER:
        return (Component.HAPROXY, Component.KEEPALIVED)
    if role is Role.CONTROL_PLANE:
        return (*STATIC_POD_COMPONENTS, Component.KUBELET, Component.CONTAINERD)
    return (Component.KUBELET, Component.CONTAINERD)


def controls_for(
    role: Role,
    control_plane_runs_as: RunsAs = RunsAs.STATIC_POD,
    units: Mapping[Component, str] | None = None,
    *,
    components: Sequence[Component] | None = None,
    commands: CommandTemplates | None = None,
) -> list[ComponentControl]:
    """The components of a node of `role` (or exactly `components`); `units` overrides systemd unit names.

    With RunsAs.COMMAND every component of the node is driven by `commands`.
    """
    units = units or {}
    out = []
    for c in components if components is not None else role_components(role):
        if control_plane_runs_as is RunsAs.COMMAND:
            if commands is None:
                raise ClusterError(f"{c} runs by command, but no commands are given; add a [commands] table")
            out.append(ComponentControl(c, RunsAs.COMMAND, commands=commands))
        elif c in STATIC_POD_COMPONENTS and control_plane_runs_as is RunsAs.STATIC_POD:
            out.append(ComponentControl(c, RunsAs.STATIC_POD))
        else:
            out.append(ComponentControl(c, RunsAs.SYSTEMD, units.get(c, SYSTEMD_UNITS[c])))
    return out


class RemoteTransport(Protocol):
    def run(self, argv: list[str], timeout: float) -> CommandResult: ...
    def connect(self, deadline_s: float | None = None) -> None: ...
    def close(self) -> None: ...


class PowerControl(Protocol):
    """Power for a machine: the hypervisor for Vagrant VMs, configured commands for existing ones."""

    def power_off(self, node: str) -> None: ...
    def power_on(self, node: str, timeout: float) -> None: ...


def partition_rules(peers: Sequence[str], one_way: bool) -> list[list[str]]:
    """iptables rule specs (without -A/-D and chain) that cut this node off from `peers`."""
    rules = []
    for peer in peers:
        rules.append(["-d", f"{peer}/32", "-j", "DROP"])
        if not one_way:
            rules.append(["-s", f"{peer}/32", "-j", "DROP"])
    return rules


class RemoteNode:
    """A Node (harness.providers.base) on a real machine."""

    def __init__(
        self,
        name: str,
        role: Role,
        address: str,
        transport: RemoteTransport,
        controls: Sequence[ComponentControl],
        *,
        power: PowerControl | None = None,
        guard: Callable[[str], None] | None = None,
        ssh_deadline_s: float = 120.0,
        commands: CommandTemplates | None = None,
    ) -> None:
        self.name = name
        self.role = role
        self.address = address
        self.transport = transport
        self._controls = {c.component: c for c in controls}
        self._power = power
        # Called with a description before every disruptive action; raises to refuse it.
        self._guard = guard
        self.ssh_deadline_s = ssh_deadline_s
        # Node-level commands (partitions) when iptables on the node is not the way to cut it off.
        self.commands = commands

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}@{self.address})"

    # -- plumbing ----------------------------------------------------------------------------
    def run(self, argv: list[str], timeout: float) -> CommandResult:
        return self.transport.run(argv, timeout)

    def _must(self, argv: list[str], what: str, timeout: float = COMMAND_TIMEOUT_S) -> CommandResult:
        res = self.run(argv, timeout)
        if not res.ok:
            raise FaultError(
                f"{self.name}: {what} failed: `{' '.join(argv)}` exited {res.exit_status}: "
                f"{(res.stderr or res.stdout).strip()[-400:]}"
            )
        return res

    def _command(self, ctl: ComponentControl, action: str) -> list[str]:
        assert ctl.commands is not None  # controls_for guarantees it for RunsAs.COMMAND
        return ctl.commands.render(action, node=self.name, address=self.address, component=ctl.component.value)

    def _check(self, what: str) -> None:
        if self._guard is not None:
            self._guard(f"{what} on {self.name}")

    def components(self) -> list[Component]:
        return list(self._controls)

    def control(self, component: Component) -> ComponentControl:
        try:
            return self._controls[component]
        except KeyError:
            have = ", ".join(c.value for c in self._controls) or "none"
            raise ClusterError(f"{self.name} runs no {component}; its components are {have}") from None

    # -- static pods -------------------------------------------------------------------------
    def container_ids(self, component: Component, running_only: bool = True) -> list[str]:
        argv = ["crictl", "ps", "-q", "--name", f"^{component.value}$"]
        argv += ["--label", "io.kubernetes.pod.namespace=kube-system"]
        if running_only:
            argv += ["--state", "running"]
        res = self.run(argv, COMMAND_TIMEOUT_S)
        if not res.ok:
            raise ClusterError(
                f"{self.name}: crictl cannot list {component} containers ({res.stderr.strip()[-300:]}); "
                "check that crictl is installed and /etc/crictl.yaml points at the containerd socket"
            )
        return res.stdout.split()

    def container_pid(self, component: Component) -> int:
        ids = self.container_ids(component)
        if not ids:
            raise FaultError(f"{self.name}: no running {component} container; start it before faulting it")
        res = self.run(["crictl", "inspect", ids[0]], COMMAND_TIMEOUT_S)
        try:
            pid = int(json.loads(res.stdout)["info"]["pid"])
        except (ValueError, KeyError, TypeError):
            raise ClusterError(
                f"{self.name}: `crictl inspect {ids[0]}` gave no process id (exit {res.exit_status}: "
                f"{(res.stderr or res.stdout).strip()[:200]})"
            ) from None
        if pid <= 1:
            raise ClusterError(f"{self.name}: {component} container {ids[0]} reports pid {pid}; it is not running")
        return pid

    def _manifest_state(self, ctl: ComponentControl) -> tuple[bool, bool]:
        res = self.run(
            ["sh", "-c", 'test -e "$1"; a=$?; test -e "$2"; b=$?; echo "$a $b"', "sh", ctl.manifest, ctl.parked],
            COMMAND_TIMEOUT_S,
        )
        try:
            active, parked = (int(x) == 0 for x in res.stdout.split())
        except ValueError:
            raise ClusterError(f"{self.name}: cannot check {ctl.manifest}: {res.stderr.strip()[-200:]}") from None
        return active, parked

    # -- component control -------------------------------------------------------------------
    def start(self, component: Component, timeout: float = 60.0) -> None:
        # Starting heals; it is never refused, so an undo cannot be blocked by a guard.
        ctl = self.control(component)
        deadline = time.monotonic() + timeout
        if ctl.runs_as is RunsAs.STATIC_POD:
            active, parked = self._manifest_state(ctl)
            if not active:
                if not parked:
                    raise ClusterError(
                        f"{self.name}: neither {ctl.manifest} nor {ctl.parked} exists; restore the manifest "
                        "(kubeadm init phase control-plane / etcd local) before starting it"
                    )
                self._must(["mv", ctl.parked, ctl.manifest], f"restore the {component} manifest")
        elif ctl.runs_as is RunsAs.COMMAND:
            self._must(self._command(ctl, "start"), f"start {component}", timeout=max(1.0, timeout) + 5)
        else:
            self._must(["systemctl", "start", ctl.unit], f"start {ctl.unit}", timeout=max(1.0, timeout))
        self.wait_ready(component, max(1.0, deadline - time.monotonic()))

    def stop(self, component: Component, timeout: float = 10.0) -> None:
        ctl = self.control(component)
        self._check(f"stop {component}")
        if ctl.runs_as is RunsAs.COMMAND:
            self._must(self._command(ctl, "stop"), f"stop {component}", timeout=max(1.0, timeout) + 5)
            return
        if ctl.runs_as is RunsAs.SYSTEMD:
            self._must(["systemctl", "stop", ctl.unit], f"stop {ctl.unit}", timeout=max(1.0, timeout) + 5)
            return
        active, _ = self._manifest_state(ctl)
        if active:
            self._must(["mkdir", "-p", PARKED_DIR], "create the parked-manifest directory")
            self._must(["mv", ctl.manifest, ctl.parked], f"park the {component} manifest")
        # The kubelet notices a removed manifest within its file-check period (20 s by default)
        # and then stops the pod; wait for that, since a stop that has not happened is no fault.
        deadline = time.monotonic() + max(timeout, 60.0)
        while self.container_ids(component):
            if time.monotonic() >= deadline:
                raise TimeoutExpired(
                    f"{self.name}: {component} still runs {max(timeout, 60.0):.0f}s after its manifest was parked; "
                    "is the kubelet running (systemctl status kubelet)?"
                )
            time.sleep(_POLL_S)

    def kill(self, component: Component) -> None:
        ctl = self.control(component)
        self._check(f"kill {component}")
        if ctl.runs_as is RunsAs.COMMAND:
            self._must(self._command(ctl, "kill"), f"kill {component}")
            return
        if ctl.runs_as is RunsAs.SYSTEMD:
            self._must(["systemctl", "kill", "--signal=SIGKILL", ctl.unit], f"SIGKILL {ctl.unit}")
            return
        pid = self.container_pid(component)
        self._must(["kill", "-KILL", str(pid)], f"SIGKILL {component} (pid {pid})")

    def freeze(self, component: Component) -> None:
        ctl = self.control(component)
        self._check(f"freeze {component}")
        if ctl.runs_as is RunsAs.COMMAND:
            self._must(self._command(ctl, "freeze"), f"freeze {component}")
            return
        if ctl.runs_as is RunsAs.SYSTEMD:
            self._must(["systemctl", "freeze", ctl.unit], f"freeze {ctl.unit}")
            return
        pid = self.container_pid(component)
        self._must(["kill", "-STOP", str(pid)], f"SIGSTOP {component} (pid {pid})")

    def thaw(self, component: Component) -> None:
        ctl = self.control(component)
        if ctl.runs_as is RunsAs.COMMAND:
            self._must(self._command(ctl, "thaw"), f"thaw {component}")
            return
        if ctl.runs_as is RunsAs.SYSTEMD:
            self._must(["systemctl", "thaw", ctl.unit], f"thaw {ctl.unit}")
            return
        pid = self.container_pid(component)
        self._must(["kill", "-CONT", str(pid)], f"SIGCONT {component} (pid {pid})")

    # -- readiness ---------------------------------------------------------------------------
    def running(self, component: Component) -> bool:
        """The component's process runs (it may not answer yet); False when stopped, killed or frozen."""
        ctl = self.control(component)
        if ctl.runs_as is RunsAs.COMMAND:
            return self.run(self._command(ctl, "running"), COMMAND_TIMEOUT_S).ok
        if ctl.runs_as is RunsAs.SYSTEMD:
            return self.run(["systemctl", "is-active", ctl.unit], COMMAND_TIMEOUT_S).stdout.strip() == "active"
        return bool(self.container_ids(component))

    def component_ready(self, component: Component) -> tuple[bool, str]:
        ctl = self.control(component)
        if ctl.runs_as is RunsAs.COMMAND:
            assert ctl.commands is not None
            action = "ready" if ctl.commands.has("ready") else "running"
            res = self.run(self._command(ctl, action), COMMAND_TIMEOUT_S)
            return res.ok, (res.stdout or res.stderr).strip()[-200:] or f"`{action}` exited {res.exit_status}"
        if ctl.runs_as is RunsAs.SYSTEMD:
            res = self.run(["systemctl", "is-active", ctl.unit], COMMAND_TIMEOUT_S)
            state = res.stdout.strip() or res.stderr.strip()
            return state == "active", f"{ctl.unit} is {state}"
        if not self.container_ids(component):
            return False, f"no running {component} container"
        url = HEALTH_URLS[component]
        res = self.run(["curl", "-sk", "--max-time", "3", "-o", "/dev/null", "-w", "%{http_code}", url], 10.0)
        if res.exit_status == 127:
            # No curl on this node: a running container is the best evidence there is.
            return True, "container running (curl missing, health not probed)"
        return res.stdout.strip() == "200", f"{url}: HTTP {res.stdout.strip() or res.exit_status}"

    def wait_ready(self, component: Component, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = "not checked"
        while True:
            try:
                ok, state = self.component_ready(component)
            except (ClusterError, TransportError) as exc:
                ok, state = False, str(exc)
            if ok:
                return
            if time.monotonic() >= deadline:
                raise TimeoutExpired(f"{self.name}/{component} not ready within {timeout:.0f}s; last state: {state}")
            time.sleep(_POLL_S)

    # -- power -------------------------------------------------------------------------------
    def _power_control(self) -> PowerControl:
        if self._power is None:
            raise FaultError(
                f"{self.name}: no power control is configured; for an existing cluster add power.off and "
                "power.on commands to its inventory entry"
            )
        return self._power

    @property
    def has_power_control(self) -> bool:
        return self._power is not None

    def process(self, component: Component) -> ProcessInfo:
        # Remote nodes report a process as running or not; its pid is the machine's business.
        return ProcessInfo("running" if self.running(component) else "stopped")

    def power_off(self, blackhole: bool = True) -> None:
        if not blackhole:
            raise FaultError(
                f"{self.name}: a real machine that is powered off never answers; power-off without "
                "black-holing its address exists only on the local provider"
            )
        power = self._power_control()
        self._check("power off")
        power.power_off(self.name)
        # The old connection points at a machine that is gone; the next command reconnects.
        self.transport.close()

    def power_on(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        self._power_control().power_on(self.name, timeout)
        self.transport.close()
        self.transport.connect(max(1.0, deadline - time.monotonic()))
        for component in self.components():
            self.wait_ready(component, max(1.0, deadline - time.monotonic()))

    # -- partitions --------------------------------------------------------------------------
    def _iptables(self, *args: str) -> CommandResult:
        return self.run(["iptables", "-w", "5", *args], COMMAND_TIMEOUT_S)

    def _ensure_chain(self) -> None:
        if not self._iptables("-S", PARTITION_CHAIN).ok:
            res = self._iptables("-N", PARTITION_CHAIN)
            if not res.ok:
                raise FaultError(
                    f"{self.name}: cannot create iptables chain {PARTITION_CHAIN}: {res.stderr.strip()}; "
                    "partitions need iptables and root (sudo) on the node"
                )
        for hook in ("INPUT", "OUTPUT"):
            if not self._iptables("-C", hook, "-j", PARTITION_CHAIN).ok:
                self._must(["iptables", "-w", "5", "-I", hook, "1", "-j", PARTITION_CHAIN], f"hook {hook}")

    def partition(self, peers: Sequence[str], one_way: bool = False) -> None:
        """Drop this node's traffic to (and, unless one_way, from) the peer addresses.

        The harness reaches the node through another path (Vagrant's NAT port or a management
        address), so observation and healing keep working while the peers are cut off.
        """
        if not peers:
            raise FaultError(f"{self.name}: a partition needs at least one peer address")
        if self.address in peers:
            raise FaultError(f"{self.name}: cannot partition a node from its own address {self.address}")
        self._check(f"partition from {', '.join(peers)}")
        if self.commands is not None and self.commands.has("partition"):
            argv = self.commands.render("partition", node=self.name, address=self.address, peers=peers, one_way=one_way)
            self._must(argv, "partition")
            return
        self._ensure_chain()
        for rule in partition_rules(peers, one_way):
            if not self._iptables("-C", PARTITION_CHAIN, *rule).ok:
                self._must(["iptables", "-w", "5", "-A", PARTITION_CHAIN, *rule], "add a partition rule")

    def heal_partition(self, peers: Sequence[str] | None = None) -> None:
        """Remove the rules for `peers`, or every partition rule and the chain when None."""
        if self.commands is not None and self.commands.has("heal_partition"):
            argv = self.commands.render("heal_partition", node=self.name, address=self.address, peers=peers or ())
            self._must(argv, "heal the partition")
            return
        if peers is not None:
            for rule in partition_rules(peers, one_way=False):
                self._delete_all("-D", PARTITION_CHAIN, *rule)
            return
        for hook in ("INPUT", "OUTPUT"):
            self._delete_all("-D", hook, "-j", PARTITION_CHAIN)
        if self._iptables("-S", PARTITION_CHAIN).ok:
            self._iptables("-F", PARTITION_CHAIN)
            self._iptables("-X", PARTITION_CHAIN)

    def _delete_all(self, *args: str) -> None:
        # A rule may have been added more than once (a crashed run re-applied); delete every
        # copy, but never loop forever on an iptables that claims success without deleting.
        for _ in range(_MAX_DUPLICATE_RULES):
            if not self._iptables(*args).ok:
                return
        raise FaultError(f"{self.name}: `iptables {' '.join(args)}` keeps succeeding; inspect the node's rules by hand")

    def partition_drops(self) -> int | None:
        if self.commands is not None and self.commands.has("partition"):
            return self._partition_drops_by_command()
        res = self._iptables("-v", "-S", PARTITION_CHAIN)
        counted = parse_counted_rules(res.stdout) if res.ok else []
        return sum(n for _, n in counted) if counted else None

    def _partition_drops_by_command(self) -> int | None:
        # A partition made by the inventory's own command lives where that command put it: only
        # its companion command can say whether it drops anything.
        if self.commands is None or not self.commands.has("partition_drops"):
            raise ClusterError(
                f"{self.name}: the inventory's partition command cannot be confirmed without a partition_drops "
                "command; add one that prints the packets the node's partition rules dropped, or 'none'"
            )
        argv = self.commands.render("partition_drops", node=self.name, address=self.address)
        out = self._must(argv, "count partition drops").stdout.strip()
        if out == "none":
            return None
        if not out.isdigit():
            raise ClusterError(f"{self.name}: partition_drops printed {out[:80]!r}; it must print a number or 'none'")
        return int(out)

    def partition_rules(self) -> list[str]:
        res = self._iptables("-S", PARTITION_CHAIN)
        return [line for line in res.stdout.splitlines() if line.startswith("-A ")] if res.ok else []
