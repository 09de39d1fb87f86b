"""The Vagrant cluster's topology: one YAML file read by the Vagrantfile and by the harness.

YAML because Ruby's standard library parses it too, so the Vagrantfile needs no gem and both
sides see the same machines, roles and addresses. The harness validates more strictly than the
Vagrantfile: a bad value is reported here, before any VM is created, naming the file, the key,
the value and what is allowed.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import ConfigError
from harness.providers.base import Role

log = logging.getLogger(__name__)

TOPOLOGY_ENV = "KUBEQUAKE_TOPOLOGY"
DEFAULT_TOPOLOGY = Path(__file__).resolve().parents[1] / "data" / "vagrant-topology.yaml"
PROVIDERS = ("virtualbox", "libvirt")
CNIS = ("flannel",)

# Node names become Kubernetes Node names and VM host names: an RFC 1123 label.
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_K8S_VERSION = re.compile(r"^v\d+\.\d+\.\d+$")
_PLAIN_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
# kubeadm's preflight checks refuse control-plane machines below these.
MIN_CONTROL_PLANE_CPUS = 2
MIN_CONTROL_PLANE_MEMORY_MB = 1700


class NodeRole(enum.StrEnum):
    LOAD_BALANCER = "load-balancer"
    CONTROL_PLANE = "control-plane"
    WORKER = "worker"

    @property
    def role(self) -> Role:
        return {
            NodeRole.LOAD_BALANCER: Role.LOAD_BALANCER,
            NodeRole.CONTROL_PLANE: Role.CONTROL_PLANE,
            NodeRole.WORKER: Role.WORKERS,
        }[self]


@dataclass(frozen=True)
class TopologyNode:
    name: str
    role: NodeRole
    ip: str
    cpus: int
    memory_mb: int


@dataclass(frozen=True)
class Network:
    vip: str
    api_port: int
    pod_cidr: str
    service_cidr: str


@dataclass(frozen=True)
class Cni:
    name: str
    version: str


@dataclass(frozen=True)
class Topology:
    name: str
    provider: str
    box: str
    box_version: str
    kubernetes_version: str
    containerd_version: str
    runc_version: str
    cni: Cni
    network: Network
    nodes: tuple[TopologyNode, ...]
    source: str = ""

    def by_role(self, role: NodeRole) -> list[TopologyNode]:
        return [n for n in self.nodes if n.role is role]

    def load_balancers(self) -> list[TopologyNode]:
        return self.by_role(NodeRole.LOAD_BALANCER)

    def control_planes(self) -> list[TopologyNode]:
        return self.by_role(NodeRole.CONTROL_PLANE)

    def workers(self) -> list[TopologyNode]:
        return self.by_role(NodeRole.WORKER)

    @property
    def init_node(self) -> TopologyNode:
        """The control-plane node that runs `kubeadm init`; the others join through the VIP."""
        return self.control_planes()[0]

    def node(self, name: str) -> TopologyNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ConfigError(
            f"topology {self.source or self.name}: no node {name!r}; it has {', '.join(n.name for n in self.nodes)}"
        )

    @property
    def api_url(self) -> str:
        return f"https://{self.network.vip}:{self.network.api_port}"


def topology_path(path: Path | None = None) -> Path:
    """The explicit path, else $KUBEQUAKE_TOPOLOGY, else the file shipped with the harness."""
    if path is not None:
        return path
    env = os.environ.get(TOPOLOGY_ENV)
    return Path(env) if env else DEFAULT_TOPOLOGY


def load_topology(path: Path | None = None) -> Topology:
    path = topology_path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"topology file {path} does not exist; pass an existing file or unset ${TOPOLOGY_ENV}"
        ) from None
    except OSError as exc:
        raise ConfigError(f"topology file {path} cannot be read ({exc.strerror}); check the path") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"topology file {path} is not valid YAML: {exc}") from None
    return parse_topology(data, str(path))


class _Reader:
    """Typed access to one mapping of the YAML document, with errors naming file and key."""

    def __init__(self, data: object, source: str, prefix: str = "") -> None:
        if not isinstance(data, Mapping):
            where = prefix.rstrip(".") or "the document"
            raise ConfigError(f"topology {source}: {where} must be a mapping, got {type(data).__name__}")
        self.data = data
        self.source = source
        self.prefix = prefix

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"topology {self.source}: {self.prefix}{key}: {message}")

    def raw(self, key: str) -> object:
        if key not in self.data:
            raise self.fail(key, "missing; see harness/data/vagrant-topology.yaml for every key")
        return self.data[key]

    def text(self, key: str, default: str | None = None) -> str:
        if default is not None and key not in self.data:
            return default
        value = self.raw(key)
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {value!r}")
        return value

    def number(self, key: str) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected a whole number, got {value!r}")
        return value

    def section(self, key: str) -> _Reader:
        return _Reader(self.raw(key), self.source, f"{self.prefix}{key}.")


def _ipv4(reader: _Reader, key: str) -> ipaddress.IPv4Address:
    raw = reader.text(key)
    try:
        return ipaddress.IPv4Address(raw)
    except ValueError:
        raise reader.fail(key, f"{raw!r} is not an IPv4 address") from None


def _cidr(reader: _Reader, key: str) -> ipaddress.IPv4Network:
    raw = reader.text(key)
    try:
        return ipaddress.IPv4Network(raw, strict=True)
    except ValueError as exc:
        raise reader.fail(key, f"{raw!r} is not an IPv4 network ({exc})") from None


def parse_topology(data: object, source: str = "<memory>") -> Topology:
    top = _Reader(data, source)
    name = top.text("name")
    if not _NAME.match(name):
        raise top.fail("name", f"{name!r}: use lowercase letters, digits and '-'")
    provider = top.text("provider")
    if provider not in PROVIDERS:
        raise top.fail("provider", f"{provider!r}: choose one of {', '.join(PROVIDERS)}")
    box = top.text("box")
    if not box:
        raise top.fail("box", "must name a Vagrant box, e.g. debian/bookworm64")
    k8s = top.text("kubernetes_version")
    if not _K8S_VERSION.match(k8s):
        raise top.fail("kubernetes_version", f"{k8s!r}: pin a release as vMAJOR.MINOR.PATCH, e.g. v1.36.3")
    versions = {}
    for key in ("containerd_version", "runc_version"):
        versions[key] = top.text(key)
        if not _PLAIN_VERSION.match(versions[key]):
            raise top.fail(key, f"{versions[key]!r}: pin a release as MAJOR.MINOR.PATCH without a leading v")

    cni_r = top.section("cni")
    cni = Cni(cni_r.text("name"), cni_r.text("version"))
    if cni.name not in CNIS:
        raise cni_r.fail("name", f"{cni.name!r}: the provisioning scripts install {', '.join(CNIS)}")
    if not _K8S_VERSION.match(cni.version):
        raise cni_r.fail("version", f"{cni.version!r}: pin a release tag as vMAJOR.MINOR.PATCH")

    net_r = top.section("network")
    vip = _ipv4(net_r, "vip")
    api_port = net_r.number("api_port")
    if not 1 <= api_port <= 65535:
        raise net_r.fail("api_port", f"{api_port} is not a TCP port (1-65535)")
    pod_cidr = _cidr(net_r, "pod_cidr")
    service_cidr = _cidr(net_r, "service_cidr")
    if pod_cidr.overlaps(service_cidr):
        raise net_r.fail("pod_cidr", f"{pod_cidr} overlaps service_cidr {service_cidr}; choose disjoint ranges")
    # Vagrant gives private networks a /24 by default and VRRP needs the VIP on the nodes' link.
    subnet = ipaddress.IPv4Network(f"{vip}/24", strict=False)

    raw_nodes = top.raw("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise top.fail("nodes", "expected a non-empty list of {name, role, ip, cpus, memory_mb}")
    nodes: list[TopologyNode] = []
    seen_names: dict[str, int] = {}
    seen_ips: dict[str, str] = {str(vip): "network.vip"}
    for i, raw in enumerate(raw_nodes):
        r = _Reader(raw, source, f"nodes[{i}].")
        node_name = r.text("name")
        if not _NAME.match(node_name):
            raise r.fail("name", f"{node_name!r}: use lowercase letters, digits and '-' (it becomes a host name)")
        if node_name in seen_names:
            raise r.fail("name", f"{node_name!r} is already nodes[{seen_names[node_name]}]; names must be unique")
        seen_names[node_name] = i
        role_raw = r.text("role")
        try:
            role = NodeRole(role_raw)
        except ValueError:
            raise r.fail("role", f"{role_raw!r}: choose one of {', '.join(x.value for x in NodeRole)}") from None
        ip = _ipv4(r, "ip")
        if str(ip) in seen_ips:
            raise r.fail("ip", f"{ip} is already used by {seen_ips[str(ip)]}; every node needs its own address")
        seen_ips[str(ip)] = node_name
        if ip not in subnet:
            raise r.fail("ip", f"{ip} is outside {subnet}, the VIP's network; keepalived needs one shared link")
        for cidr, key in ((pod_cidr, "pod_cidr"), (service_cidr, "service_cidr")):
            if ip in cidr:
                raise r.fail("ip", f"{ip} lies inside network.{key} {cidr}; pick node addresses outside it")
        cpus = r.number("cpus")
        memory = r.number("memory_mb")
        if cpus < 1 or memory < 256:
            raise r.fail("cpus", f"cpus={cpus}, memory_mb={memory}: need at least 1 CPU and 256 MB")
        if role is NodeRole.CONTROL_PLANE and (cpus < MIN_CONTROL_PLANE_CPUS or memory < MIN_CONTROL_PLANE_MEMORY_MB):
            raise r.fail(
                "cpus",
                f"control-plane {node_name} has cpus={cpus}, memory_mb={memory}; kubeadm's preflight needs "
                f"at least {MIN_CONTROL_PLANE_CPUS} CPUs and {MIN_CONTROL_PLANE_MEMORY_MB} MB",
            )
        nodes.append(TopologyNode(node_name, role, str(ip), cpus, memory))
    for cidr, key in ((pod_cidr, "pod_cidr"), (service_cidr, "service_cidr")):
        if vip in cidr:
            raise net_r.fail("vip", f"{vip} lies inside network.{key} {cidr}")

    topo = Topology(
        name=name,
        provider=provider,
        box=box,
        box_version=top.text("box_version", default=""),
        kubernetes_version=k8s,
        containerd_version=versions["containerd_version"],
        runc_version=versions["runc_version"],
        cni=cni,
        network=Network(str(vip), api_port, str(pod_cidr), str(service_cidr)),
        nodes=tuple(nodes),
        source=source,
    )
    _check_roles(topo, top)
    return topo


def _check_roles(topo: Topology, top: _Reader) -> None:
    cps = len(topo.control_planes())
    lbs = len(topo.load_balancers())
    if cps == 0:
        raise top.fail("nodes", "no control-plane node; list at least one (3 or 5 for a real HA cluster)")
    if lbs == 0:
        raise top.fail("nodes", "no load-balancer node; the VIP needs HAProxy and keepalived on one or two nodes")
    if cps % 2 == 0:
        log.warning(
            "topology %s has %d control-plane nodes: an even etcd membership tolerates no more failures than %d; "
            "allowed on purpose to reproduce that misconfiguration",
            topo.source,
            cps,
            cps - 1,
        )
    if lbs == 1:
        log.warning("topology %s has one load-balancer node: the VIP has no failover partner", topo.source)
