"""The `existing` provider: a cluster kubequake did not create, described by a kubeconfig and an inventory.

The inventory (TOML) lists the machines to reach over SSH, their roles, and how the control plane
runs there (kubeadm static pods, or systemd units). Two guards stand before every fault:

- opt-in: disruptive actions are refused unless the inventory (or the caller) allows them;
- wrong-cluster protection: the inventory must match what the API behind the kubeconfig reports
  (node names, their addresses, which nodes are control planes, optionally the kube-system UID),
  and each SSH host must carry the address the API reports for it. A kubeconfig pointing at
  production next to a staging inventory is refused before anything breaks.

`destroy()` never touches the cluster: it only closes connections.
"""

from __future__ import annotations

import logging
import os
import threading
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness import config as kqconfig
from harness import slo as slomod
from harness.errors import ClusterError, ConfigError, FaultError, HarnessError, TransportError
from harness.providers.attached import Access, AttachedCluster, Credentials, EtcdAccess
from harness.providers.base import Cluster, Component, Node, Role
from harness.providers.remote import (
    COMPONENT_ACTIONS,
    NODE_ACTIONS,
    CommandTemplates,
    RemoteNode,
    RunsAs,
    controls_for,
)
from harness.transport.local import LocalTransport
from harness.transport.ssh import SSHTarget, SSHTransport

log = logging.getLogger(__name__)

API_TIMEOUT_S = 10.0
SSH_CHECK_TIMEOUT_S = 15.0
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
_ROLES = {"control-plane": Role.CONTROL_PLANE, "worker": Role.WORKERS, "load-balancer": Role.LOAD_BALANCER}


# -- the inventory ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerCommands:
    """Commands run on the harness's machine to cut and restore a node's power (IPMI, virsh, a cloud CLI)."""

    off: tuple[str, ...]
    on: tuple[str, ...]
    timeout_s: float = 120.0


@dataclass(frozen=True)
class InventoryNode:
    name: str
    role: Role
    # What the API reports as the node's InternalIP; for load balancers, the address it serves on.
    address: str
    ssh: SSHTarget
    runs_as: RunsAs = RunsAs.STATIC_POD
    units: Mapping[Component, str] = field(default_factory=dict)
    power: PowerCommands | None = None
    # Exactly these components, instead of the role's usual ones (e.g. an LB without keepalived).
    components: tuple[Component, ...] | None = None
    commands: CommandTemplates | None = None


@dataclass(frozen=True)
class Inventory:
    cluster: str
    kubeconfig: Path
    nodes: tuple[InventoryNode, ...]
    context: str = ""
    allow_disruptive: bool = False
    kube_system_uid: str = ""
    sudo: bool = True
    connect_timeout_s: float = 10.0
    connect_deadline_s: float = 30.0
    source: str = ""
    access: Access = field(default_factory=Access)
    # kubequake.toml settings the configuration predicts timings from (lease durations, LB checks...).
    settings: Mapping[str, Any] = field(default_factory=dict)
    # The owners' SLOs for this cluster ([slo], as in kubequake.toml): checked on load.
    slo: Mapping[str, Any] = field(default_factory=dict)

    def node(self, name: str) -> InventoryNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ClusterError(
            f"inventory {self.source}: no node {name!r}; it lists {', '.join(n.name for n in self.nodes)}"
        )


class _Table:
    """Typed reads from one TOML table, with errors naming file, key and value."""

    def __init__(self, data: Mapping[str, Any], source: str, prefix: str = "") -> None:
        self.data = data
        self.source = source
        self.prefix = prefix

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"inventory {self.source}: {self.prefix}{key}: {message}")

    def text(self, key: str, default: str | None = None) -> str:
        if key not in self.data:
            if default is None:
                raise self.fail(key, "missing")
            return default
        value = self.data[key]
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self.fail(key, f"expected a positive number, got {value!r}")
        return float(value)

    def argv(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.fail(
                key, f'expected a command as a list of strings, e.g. ["virsh", "destroy", "cp1"], got {value!r}'
            )
        return tuple(value)

    def components(self, key: str) -> tuple[Component, ...] | None:
        if key not in self.data:
            return None
        value = self.data[key]
        names = ", ".join(c.value for c in Component)
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"expected a list of components ({names}), got {value!r}")
        out = []
        for v in value:
            try:
                out.append(Component(v))
            except ValueError:
                raise self.fail(key, f"{v!r} is not a component; choose from {names}") from None
        return tuple(out)

    def commands(self, key: str, inherited: CommandTemplates | None) -> CommandTemplates | None:
        if key not in self.data:
            return inherited
        t = self.table(key)
        allowed = (*COMPONENT_ACTIONS, "ready", *NODE_ACTIONS)
        actions = dict(inherited.actions) if inherited else {}
        for action in t.data:
            if action not in allowed:
                raise t.fail(action, f"not a command; choose from {', '.join(allowed)}")
            actions[action] = t.argv(action)
        return CommandTemplates(actions)

    def table(self, key: str) -> _Table:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table, got {value!r}")
        return _Table(value, self.source, f"{self.prefix}{key}.")


def _path(raw: str, base: Path) -> Path:
    p = Path(os.path.expanduser(raw))
    return p if p.is_absolute() else base / p


def _runs_as(t: _Table, key: str, default: RunsAs) -> RunsAs:
    raw = t.text(key, default.value)
    try:
        return RunsAs(raw)
    except ValueError:
        raise t.fail(key, f"{raw!r}: choose static-pod (kubeadm) or systemd") from None


def _units(t: _Table) -> dict[Component, str]:
    out: dict[Component, str] = {}
    for key, value in t.data.items():
        try:
            component = Component(key)
        except ValueError:
            raise t.fail(key, f"not a component; choose from {', '.join(c.value for c in Component)}") from None
        if not isinstance(value, str) or not value:
            raise t.fail(key, f"expected a systemd unit name, got {value!r}")
        out[component] = value
    return out


def load_inventory(path: Path) -> Inventory:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"inventory {path} does not exist; see harness/providers/real-clusters.md for its format"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"inventory {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"inventory {path} cannot be read ({exc.strerror})") from None
    return parse_inventory(data, str(path), path.resolve().parent)


def parse_inventory(data: Mapping[str, Any], source: str = "<memory>", base: Path | None = None) -> Inventory:
    """Build an Inventory; relative paths are relative to the inventory file's directory."""
    base = base or Path.cwd()
    top = _Table(data, source)
    ssh = top.table("ssh")
    cp = top.table("control_plane")
    default_runs_as = _runs_as(cp, "runs_as", RunsAs.STATIC_POD)
    default_units = _units(cp.table("units"))
    default_user = ssh.text("user", "root")
    default_key = ssh.text("key", "")
    default_port = int(ssh.number("port", 22))
    host_key_checking = ssh.flag("host_key_checking", True)
    known_hosts = ssh.text("known_hosts", "")
    default_commands = top.commands("commands", None)

    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise top.fail("nodes", "expected [[nodes]] tables, one per machine (name, role, host)")
    nodes: list[InventoryNode] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_nodes):
        if not isinstance(raw, dict):
            raise top.fail(f"nodes[{i}]", "expected a table")
        t = _Table(raw, source, f"nodes[{i}].")
        name = t.text("name")
        if name in seen:
            raise t.fail("name", f"{name!r} is listed twice")
        seen.add(name)
        role_raw = t.text("role")
        if role_raw not in _ROLES:
            raise t.fail("role", f"{role_raw!r}: choose one of {', '.join(_ROLES)}")
        host = t.text("host")
        key = t.text("key", default_key)
        target = SSHTarget(
            host=host,
            port=int(t.number("port", default_port)),
            user=t.text("user", default_user),
            key_file=_path(key, base) if key else None,
            host_key_checking=host_key_checking,
            known_hosts=_path(known_hosts, base) if known_hosts else None,
        )
        power = None
        if "power" in raw:
            pt = t.table("power")
            power = PowerCommands(pt.argv("off"), pt.argv("on"), pt.number("timeout_s", 120.0))
        nodes.append(
            InventoryNode(
                name=name,
                role=_ROLES[role_raw],
                address=t.text("address", host),
                ssh=target,
                runs_as=_runs_as(t, "runs_as", default_runs_as),
                units={**default_units, **_units(t.table("units"))},
                power=power,
                components=t.components("components"),
                commands=t.commands("commands", default_commands),
            )
        )
        runs_as = nodes[-1].runs_as
        commands = nodes[-1].commands
        if runs_as is RunsAs.COMMAND:
            missing = [a for a in COMPONENT_ACTIONS if commands is None or not commands.has(a)]
            if missing:
                raise t.fail(
                    "runs_as",
                    f"command needs start, stop, kill, freeze, thaw and running commands; {', '.join(missing)} "
                    "missing from [commands] (or this node's commands table)",
                )
    if not any(n.role is Role.CONTROL_PLANE for n in nodes):
        raise top.fail("nodes", "no control-plane node; list every control-plane machine so quorum faults add up")
    inv = Inventory(
        cluster=top.text("cluster"),
        kubeconfig=_path(top.text("kubeconfig"), base),
        nodes=tuple(nodes),
        context=top.text("context", ""),
        allow_disruptive=top.flag("allow_disruptive", False),
        kube_system_uid=top.text("kube_system_uid", ""),
        sudo=ssh.flag("sudo", True),
        connect_timeout_s=ssh.number("connect_timeout_s", 10.0),
        connect_deadline_s=ssh.number("connect_deadline_s", 30.0),
        source=source,
        access=_access(top, base),
        settings=_settings(top),
        slo=_slo(top, source),
    )
    existing_config(inv)  # the settings must make a valid configuration, checked before any use
    return inv


def _access(top: _Table, base: Path) -> Access:
    api = top.table("api")
    etcd = top.table("etcd")
    lb = top.table("load_balancer")
    files = {k: etcd.text(k, "") for k in ("ca", "cert", "key")}
    if any(files.values()) and not all(files.values()):
        raise etcd.fail("ca", "give all of etcd.ca, etcd.cert and etcd.key, or none (then they are fetched by SSH)")
    metrics = {}
    mt = top.table("metrics")
    for key in mt.data:
        try:
            component = Component(key)
        except ValueError:
            raise mt.fail(key, "not a component; use kube-controller-manager or kube-scheduler") from None
        metrics[component] = mt.text(key)
    lb_url = api.text("lb_url", "")
    if lb_url and not lb_url.startswith("https://"):
        raise api.fail("lb_url", f"{lb_url!r} is not an https:// URL")
    raw = api.text("credentials", Credentials.KUBECONFIG.value)
    try:
        credentials = Credentials(raw)
    except ValueError:
        raise api.fail(
            "credentials",
            f"{raw!r}: choose kubeconfig (its client certificate) or control-plane (admin_kubeconfig read over SSH)",
        ) from None
    admin_kubeconfig = api.text("admin_kubeconfig", Access.admin_kubeconfig)
    if not admin_kubeconfig.startswith("/"):
        raise api.fail("admin_kubeconfig", f"{admin_kubeconfig!r}: give the absolute path on the control planes")
    return Access(
        lb_url=lb_url,
        credentials=credentials,
        admin_kubeconfig=admin_kubeconfig,
        apiserver_port=int(api.number("apiserver_port", 6443)),
        etcd=EtcdAccess(
            client_port=int(etcd.number("client_port", 2379)),
            ca=_path(files["ca"], base) if files["ca"] else None,
            cert=_path(files["cert"], base) if files["cert"] else None,
            key=_path(files["key"], base) if files["key"] else None,
        ),
        lb_stats_url=lb.text("stats_url", Access.lb_stats_url),
        metrics=metrics,
    )


def _settings(top: _Table) -> dict[str, Any]:
    t = top.table("settings")
    flat = kqconfig.flatten(dict(t.data))
    known = kqconfig.known_keys()
    for key in flat:
        if key not in known or key in ("name", "control_planes", "workers", "address_block", "run_root"):
            raise t.fail(
                key,
                "not a setting of an existing cluster; see kubequake.toml's etcd, leader_election, "
                "load_balancer and apiserver sections",
            )
    return flat


def _slo(top: _Table, source: str) -> dict[str, Any]:
    data = dict(top.table("slo").data)
    slomod.load(Path("/dev/null"), inventory=data, inventory_source=f"inventory {source}")
    return data


# -- what the API says ------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiNode:
    name: str
    internal_ips: tuple[str, ...]
    control_plane: bool


class ClusterView(Protocol):
    """The facts the wrong-cluster check compares the inventory with."""

    def nodes(self) -> list[ApiNode]: ...
    def kube_system_uid(self) -> str: ...
    def apiserver_addresses(self) -> list[str]: ...


class KubeClusterView:
    """The facts, read through the inventory's kubeconfig with a timeout on every call."""

    def __init__(self, kubeconfig: Path, context: str = "", timeout: float = API_TIMEOUT_S) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.timeout = timeout

    def _core(self) -> Any:
        from kubernetes import client, config

        if not self.kubeconfig.is_file():
            raise ClusterError(f"kubeconfig {self.kubeconfig} does not exist; fix `kubeconfig` in the inventory")
        cfg = client.Configuration()
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(self.kubeconfig), context=self.context or None, client_configuration=cfg
            )
        # The kubernetes client raises plain exceptions for unreadable or inconsistent files.
        except Exception as exc:
            raise ClusterError(f"kubeconfig {self.kubeconfig} (context {self.context or 'current'}): {exc}") from None
        # urllib3's silent retries would turn one refused connection into minutes of waiting.
        cfg.retries = 0
        return client.CoreV1Api(client.ApiClient(cfg))

    def _call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        try:
            return fn(self._core())
        except HarnessError:
            raise
        # Network, TLS and API errors all mean the same here: the facts cannot be read.
        except Exception as exc:
            raise ClusterError(
                f"cannot {what} through {self.kubeconfig} within {self.timeout:.0f}s: {exc}; check the kubeconfig, "
                "its context and that the API answers"
            ) from None

    def nodes(self) -> list[ApiNode]:
        items = self._call("list nodes", lambda core: core.list_node(_request_timeout=self.timeout).items)
        out = []
        for n in items:
            addresses = (n.status.addresses or []) if n.status else []
            labels = n.metadata.labels or {}
            out.append(
                ApiNode(
                    n.metadata.name,
                    tuple(a.address for a in addresses if a.type == "InternalIP"),
                    CONTROL_PLANE_LABEL in labels,
                )
            )
        return out

    def apiserver_addresses(self) -> list[str]:
        """Where the apiservers say they serve: each one keeps its address in the `kubernetes` Service's endpoints."""

        from kubernetes.client import ApiException

        def read(core: Any) -> Any:
            try:
                return core.read_namespaced_endpoints("kubernetes", "default", _request_timeout=self.timeout)
            except ApiException as exc:
                # Apiservers advertising loopback addresses publish none: no endpoints, no addresses.
                if exc.status == 404:
                    return None
                raise

        ep = self._call("read the kubernetes service's endpoints", read)
        if ep is None:
            return []
        return sorted({a.ip for subset in ep.subsets or [] for a in subset.addresses or []})

    def kube_system_uid(self) -> str:
        ns = self._call(
            "read namespace kube-system", lambda core: core.read_namespace("kube-system", _request_timeout=self.timeout)
        )
        return str(ns.metadata.uid)


def inventory_problems(inv: Inventory, view: ClusterView) -> list[str]:
    """Every way the inventory disagrees with the API; empty when it describes this cluster."""
    problems: list[str] = []
    if inv.kube_system_uid:
        uid = view.kube_system_uid()
        if uid != inv.kube_system_uid:
            problems.append(
                f"the API's kube-system namespace has UID {uid}, the inventory pins {inv.kube_system_uid}: "
                "the kubeconfig points at another cluster"
            )
    api = {n.name: n for n in view.nodes()}
    listed = {n.name: n for n in inv.nodes if n.role is not Role.LOAD_BALANCER}
    # Control planes that run no kubelet (systemd-run control planes, "the hard way") have no
    # Node object; their apiservers still publish their addresses in the `kubernetes` endpoints.
    unregistered = [n for n in listed.values() if n.role is Role.CONTROL_PLANE and n.name not in api]
    apiservers = view.apiserver_addresses() if unregistered else []
    for n in listed.values():
        a = api.get(n.name)
        if a is None and n in unregistered and n.address in apiservers:
            continue
        if a is None:
            problems.append(
                f"node {n.name} is in the inventory but the API has no such node "
                f"(it has {', '.join(sorted(api)) or 'none'})"
                + (
                    f" and no apiserver serves at {n.address} (they serve at {', '.join(apiservers) or 'none'})"
                    if n in unregistered
                    else ""
                )
            )
            continue
        if n.address not in a.internal_ips:
            problems.append(
                f"node {n.name}: the inventory says address {n.address}, the API reports "
                f"{', '.join(a.internal_ips) or 'no InternalIP'}"
            )
        if n.role is Role.CONTROL_PLANE and not a.control_plane:
            problems.append(f"node {n.name} is a control plane in the inventory but has no {CONTROL_PLANE_LABEL} label")
        if n.role is Role.WORKERS and a.control_plane:
            problems.append(f"node {n.name} is a worker in the inventory but the API labels it control-plane")
    if unregistered:
        covered = {n.address for n in listed.values() if n.role is Role.CONTROL_PLANE}
        for address in apiservers:
            if address not in covered:
                problems.append(
                    f"an apiserver serves at {address}, but no control plane of the inventory has that address; "
                    "list every control plane, or quorum guards count wrong"
                )
    for a in api.values():
        if a.control_plane and a.name not in listed:
            problems.append(
                f"control-plane node {a.name} ({', '.join(a.internal_ips)}) is missing from the inventory; list every "
                "control plane, or quorum guards count wrong"
            )
    return problems


# -- power --------------------------------------------------------------------------------------
class CommandPower:
    """Power through the inventory's commands, run here (not on the node, which is going away)."""

    def __init__(self, commands: Mapping[str, PowerCommands]) -> None:
        self.commands = commands
        self.transport = LocalTransport()

    def _run(self, node: str, which: str, timeout: float | None = None) -> None:
        cmds = self.commands.get(node)
        if cmds is None:
            raise FaultError(f"{node}: no power commands in the inventory; add [nodes.power] off/on for it")
        argv = list(cmds.off if which == "off" else cmds.on)
        try:
            self.transport.run(argv, timeout or cmds.timeout_s).check()
        except TransportError as exc:
            raise FaultError(f"{node}: power {which} command failed: {exc}") from None

    def power_off(self, node: str) -> None:
        self._run(node, "off")

    def power_on(self, node: str, timeout: float) -> None:
        self._run(node, "on", timeout)


def existing_config(inv: Inventory) -> kqconfig.ClusterConfig:
    """The settings budgets are judged by: the inventory's [settings] over kubeadm's defaults."""
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "-" for c in inv.cluster) or "existing"
    values = {
        **inv.settings,
        "name": name,
        "control_planes": sum(n.role is Role.CONTROL_PLANE for n in inv.nodes),
        # Workers of an existing cluster are its own; kubequake simulates none there.
        "workers": 0,
    }
    try:
        return kqconfig.build(values)
    except ConfigError as exc:
        raise ConfigError(f"inventory {inv.source}: {exc}") from None


# -- the provider -------------------------------------------------------------------------------
class ExistingNode(RemoteNode):
    """A machine of a cluster kubequake did not create; every fault passes the cluster's guards."""


class ExistingCluster(AttachedCluster):
    """Attach to a cluster: create verifies, destroy only disconnects, faults need opt-in and a match."""

    name = "existing"

    def __init__(
        self,
        inventory: Inventory,
        *,
        view: ClusterView | None = None,
        allow_disruptive: bool | None = None,
        check_ssh_addresses: bool = True,
        run_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.inventory = inventory
        self.view = view or KubeClusterView(inventory.kubeconfig, inventory.context)
        self.allow_disruptive = inventory.allow_disruptive if allow_disruptive is None else allow_disruptive
        self.check_ssh_addresses = check_ssh_addresses
        self.access = inventory.access
        self.cfg = existing_config(inventory)
        # The harness's own files for this cluster (journal, TLS copies, traffic records).
        self.run_dir = run_dir or kqconfig.default_run_root() / "existing" / self.cfg.name
        self._problems: list[str] | None = None
        self._lock = threading.Lock()
        power = CommandPower({n.name: n.power for n in inventory.nodes if n.power is not None})
        self._nodes: dict[str, ExistingNode] = {}
        for n in inventory.nodes:
            transport = SSHTransport(
                n.ssh,
                connect_timeout=inventory.connect_timeout_s,
                connect_deadline=inventory.connect_deadline_s,
                sudo=inventory.sudo,
            )
            self._nodes[n.name] = ExistingNode(
                n.name,
                n.role,
                n.address,
                transport,
                controls_for(n.role, n.runs_as, n.units, components=n.components, commands=n.commands),
                power=power if n.power is not None else None,
                guard=self.guard,
                commands=n.commands,
            )

    def declared_objectives(self) -> Mapping[str, object]:
        return self.inventory.slo

    def kubeconfig_context(self) -> str:
        return self.inventory.context

    def nodes(self) -> list[ExistingNode]:
        return list(self._nodes.values())

    def node(self, name: str) -> ExistingNode:
        try:
            return self._nodes[name]
        except KeyError:
            raise ClusterError(
                f"no node {name!r} in inventory {self.inventory.source}; it lists {', '.join(self._nodes)}"
            ) from None

    def kubeconfig(self) -> Path:
        return self.inventory.kubeconfig

    # -- wrong-cluster protection ----------------------------------------------------------------
    def ssh_address_problems(self) -> list[str]:
        problems = []
        for node in self._nodes.values():
            # `ip route get` answers "local ..." exactly when the address is this host's own,
            # including loopback ranges that no interface lists one by one.
            try:
                res = node.run(["ip", "-o", "route", "get", node.address], SSH_CHECK_TIMEOUT_S)
            except TransportError as exc:
                problems.append(f"node {node.name}: cannot check its addresses over SSH: {exc}")
                continue
            if not res.stdout.startswith("local "):
                found = res.stdout.strip() or res.stderr.strip() or f"exit {res.exit_status}"
                problems.append(
                    f"node {node.name}: SSH host {self.inventory.node(node.name).ssh} does not carry {node.address} "
                    f"(`ip route get {node.address}` there says: {found[:160]}); the inventory's host is another "
                    "machine"
                )
        return problems

    def verify(self, refresh: bool = False) -> list[str]:
        """All mismatches between inventory, API and SSH hosts (cached: the check costs a round of SSH)."""
        with self._lock:
            if self._problems is None or refresh:
                problems = inventory_problems(self.inventory, self.view)
                if self.check_ssh_addresses:
                    problems += self.ssh_address_problems()
                self._problems = problems
            return list(self._problems)

    def guard(self, what: str) -> None:
        """Raise FaultError unless disruptive actions are allowed and the inventory matches the cluster."""
        if not self.allow_disruptive:
            raise FaultError(
                f"refused to {what} of existing cluster {self.inventory.cluster!r}: disruptive actions are off. "
                f"Set allow_disruptive = true in {self.inventory.source} (or pass the opt-in flag) once the "
                "cluster's owners agree"
            )
        problems = self.verify()
        if problems:
            raise FaultError(
                f"refused to {what}: inventory {self.inventory.source} does not match the cluster behind "
                f"{self.inventory.kubeconfig} (wrong-cluster protection):\n  - " + "\n  - ".join(problems)
            )

    # -- lifecycle -------------------------------------------------------------------------------
    def create(self, timeout: float = 180.0) -> None:
        """kubequake brings no existing cluster up: creating one is attaching to it."""
        self.attach(timeout)

    def attach(self, timeout: float = 60.0) -> None:
        """The API must answer and the inventory must describe it. Nothing is changed."""
        problems = self.verify(refresh=True)
        if problems:
            raise ClusterError(
                f"inventory {self.inventory.source} does not match the cluster behind {self.inventory.kubeconfig}:"
                "\n  - " + "\n  - ".join(problems)
            )
        if self.access.credentials is Credentials.CONTROL_PLANE:
            self.confirm_credentials()
        log.info("attached to existing cluster %s (%d nodes)", self.inventory.cluster, len(self._nodes))

    def confirm_credentials(self) -> None:
        """Credentials read from a control plane must reach the cluster the kubeconfig was checked against."""
        from kubernetes import client

        from harness.net.kube import api_client

        want = self.view.kube_system_uid()
        try:
            with api_client(self.lb_url(), self.admin_tls(), timeout=API_TIMEOUT_S) as api:
                meta = client.CoreV1Api(api).read_namespace("kube-system", _request_timeout=API_TIMEOUT_S).metadata
                got = str(meta.uid) if meta else ""
        except HarnessError:
            self.forget_credentials()
            raise
        # TLS, HTTP and API errors all mean the same here: these credentials do not work.
        except Exception as exc:
            self.forget_credentials()
            raise ClusterError(
                f"the credentials in {self.access.admin_kubeconfig} on the control planes do not work at "
                f"{self.lb_url()}: {exc}; point admin_kubeconfig under [api] at this cluster's admin kubeconfig"
            ) from None
        if got != want:
            self.forget_credentials()
            raise ClusterError(
                f"{self.access.admin_kubeconfig} on the control planes reaches a cluster whose kube-system UID is "
                f"{got}, not {want} as through {self.inventory.kubeconfig}: the nodes and the kubeconfig belong "
                "to different clusters; fix the inventory"
            )

    def detach(self) -> None:
        """Disconnect and drop the credential copies; the cluster runs on as it did."""
        for node in self._nodes.values():
            node.transport.close()
        self.forget_credentials()

    def destroy(self) -> None:
        """An existing cluster is never torn down by kubequake: destroying it only detaches."""
        self.detach()


if TYPE_CHECKING:
    # mypy proves the provider and its nodes keep to the contracts in harness.providers.base.
    def _is_provider(c: ExistingCluster) -> Cluster:
        return c

    def _is_node(n: ExistingNode) -> Node:
        return n
