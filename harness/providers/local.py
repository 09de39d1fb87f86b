"""The `local` provider: a real HA control plane as processes on loopback addresses.

Each control-plane node is etcd, kube-apiserver, kube-controller-manager and kube-scheduler bound
to its own 127.0.X.Y address; HAProxy on the LB address fronts the apiservers; KWOK turns Node
objects into Ready simulated workers. The layout mirrors kubeadm's stacked-etcd topology, so a
fault here means what it means on a real cluster: an apiserver talks to its own etcd member,
controllers talk to their own node's apiserver, clients go through the LB.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from harness import binaries as binmod
from harness import config
from harness import pki as pkimod
from harness.config import ClusterConfig
from harness.errors import (
    ClusterError,
    ClusterNotRunningError,
    ClusterRunningError,
    FaultError,
    HarnessError,
    PortInUseError,
    TimeoutExpired,
)
from harness.net.http import loopback_session, probe
from harness.net.tls import TLSClient
from harness.net.wait import wait_until
from harness.providers.base import CONTROL_PLANE_COMPONENTS, Capability, Component, ProcessInfo, Role
from harness.providers.cgroups import node_cgroup, remove_cluster_cgroups
from harness.providers.haproxy import Backend, haproxy_version, render_haproxy_config, stats_over_socket
from harness.providers.netfilter import Netfilter, drop_between, drop_to, partition_rule_of
from harness.providers.process import ComponentState, ProcessSpec, Supervisor, proc_state_letter, sweep
from harness.providers.watchdog import Watchdog, hold, release
from harness.providers.workers import KWOK_ANNOTATION, ensure_workers, wait_workers_ready, worker_names
from harness.transport.base import CommandResult
from harness.transport.local import LocalTransport

log = logging.getLogger(__name__)

KCM_PORT = 10257
SCHEDULER_PORT = 10259
ETCD_METRICS_PORT = 2381
SERVICE_CIDR = "10.96.0.0/12"
# Each waiter keeps one connection alive for its probes: with a fresh TLS handshake per probe,
# polling at 0.1 s had a dozen waiters spend much of a core of a 2-core machine while the
# components they wait for needed it to start (0.25 s was the compromise then).
READY_POLL_S = 0.1
# How long the other etcd members wait for the first one to serve before starting regardless.
ETCD_LEAD_WAIT_S = 5.0


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: Role
    address: str
    components: tuple[Component, ...]


def topology(cfg: ClusterConfig) -> list[NodeSpec]:
    nodes = [NodeSpec("lb", Role.LOAD_BALANCER, cfg.lb_address, (Component.HAPROXY,))]
    for i, name in enumerate(cfg.node_names(), start=1):
        nodes.append(NodeSpec(name, Role.CONTROL_PLANE, cfg.node_address(i), CONTROL_PLANE_COMPONENTS))
    # KWOK is a client of the API only; its "node" owns no address of its own. Without workers
    # there is no KWOK at all, rather than a component that is never started and reads "stopped".
    if cfg.workers:
        nodes.append(NodeSpec("workers", Role.WORKERS, cfg.lb_address, (Component.KWOK,)))
    return nodes


def port_owner(address: str, port: int) -> str:
    """Best effort: which process listens on address:port (for error messages)."""
    want = f"{_hex_addr(address)}:{port:04X}"
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[1] in (want, f"00000000:{port:04X}") and parts[3] == "0A":
                inodes.add(parts[9])
    if not inodes:
        return "an unknown process"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    comm = (proc / "comm").read_text().strip()
                    return f"{comm} (pid {proc.name})"
    return "an unknown process"


def _hex_addr(address: str) -> str:
    return "".join(f"{int(o):02X}" for o in reversed(address.split(".")))


def check_port_free(address: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            owner = port_owner(address, port)
            raise PortInUseError(
                f"{address}:{port} ({what}) is already in use by {owner}. Stop it, or pick another "
                f"address block with --set address_block=N"
            ) from None


class LocalNode:
    """One node of the local cluster: its processes and its address (a harness.providers.base.Node)."""

    def __init__(self, cluster: LocalCluster, spec: NodeSpec) -> None:
        self.cluster = cluster
        self.spec = spec
        self.name = spec.name
        self.role = spec.role
        self.address = spec.address
        self._transport = LocalTransport()

    def __repr__(self) -> str:
        return f"LocalNode({self.name}@{self.address})"

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        return self._transport.run(argv, timeout)

    def components(self) -> list[Component]:
        return list(self.spec.components)

    def state(self, component: Component) -> ComponentState:
        return self.cluster.supervisor.state(self.name, component)

    def pid(self, component: Component) -> int | None:
        return self.cluster.supervisor.pid(self.name, component)

    def running(self, component: Component) -> bool:
        return self.state(component) is ComponentState.RUNNING

    def start(self, component: Component, timeout: float = 60.0) -> None:
        sup = self.cluster.supervisor
        try:
            if sup.state(self.name, component) in (ComponentState.RUNNING, ComponentState.FROZEN):
                return
            sup.start(self.cluster.process_spec(self.name, component))
        finally:
            # Released once the process runs: released before, the watchdog could see it stopped
            # and not held, and take the heal for an exit of its own. Released even if the start
            # failed, so that the watchdog retries it as kubelet would.
            release(self.cluster.run_dir, self.name, component)
        self.cluster.wait_component_ready(self, component, timeout)

    def stop(self, component: Component, timeout: float = 10.0) -> None:
        # Held first: the node's watchdog (its kubelet) must not bring it straight back.
        hold(self.cluster.run_dir, self.name, component)
        self.cluster.supervisor.stop(self.name, component, timeout)

    def kill(self, component: Component) -> None:
        hold(self.cluster.run_dir, self.name, component)
        self.cluster.supervisor.kill(self.name, component)

    def freeze(self, component: Component, timeout: float = 5.0) -> None:
        """SIGSTOP, and return only once the kernel shows the process stopped.

        A signal is delivered asynchronously (all threads of a Go process must stop), so without
        the wait a fault's "applied at" could precede the moment the component really froze.
        """
        if not self.cluster.supervisor.signal(self.name, component, signal.SIGSTOP):
            raise ClusterError(f"cannot freeze {self.name}/{component}: it is not running")
        self._wait_state(component, ComponentState.FROZEN, timeout, "freeze")

    def thaw(self, component: Component, timeout: float = 5.0) -> None:
        if self.cluster.supervisor.signal(self.name, component, signal.SIGCONT):
            self._wait_state(component, ComponentState.RUNNING, timeout, "thaw")

    def _wait_state(self, component: Component, want: ComponentState, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while (state := self.state(component)) is not want:
            if state is ComponentState.EXITED or time.monotonic() >= deadline:
                raise ClusterError(
                    f"{what} of {self.name}/{component}: it is {state}, not {want}, after {timeout:.0f}s"
                )
            time.sleep(0.005)

    def process(self, component: Component) -> ProcessInfo:
        return ProcessInfo(str(self.state(component)), self.pid(component))

    def power_off(self, blackhole: bool = True) -> None:
        """All of the node's processes die at once, as on a pulled plug; data stays on disk.

        With `blackhole`, the node's address also goes silent (DROP, not REJECT): killing the
        processes alone would answer every client with an instant reset, while a powered-off
        machine answers nothing, so clients and health checks wait for their timeouts.
        """
        if blackhole:
            Netfilter(self.cluster.cfg.name).add(drop_to(self.address))
        for component in self.spec.components:
            hold(self.cluster.run_dir, self.name, component)
        for component in self.spec.components:
            self.cluster.supervisor.signal(self.name, component, signal.SIGKILL)
        for component in self.spec.components:
            self.cluster.supervisor.kill(self.name, component)

    def power_on(self, timeout: float = 90.0) -> None:
        """Lift any black hole, boot the components in their start-up order and wait for each."""
        deadline = time.monotonic() + timeout
        Netfilter(self.cluster.cfg.name).delete(drop_to(self.address))
        for component in self.spec.components:
            self.start(component, timeout=max(1.0, deadline - time.monotonic()))

    # -- partitions --------------------------------------------------------------------------
    def _partition_rules(self, peers: Sequence[str], one_way: bool) -> list[list[str]]:
        rules = []
        for peer in peers:
            rules.append(drop_between(self.address, peer))
            if not one_way:
                rules.append(drop_between(peer, self.address))
        return rules

    def partition(self, peers: Sequence[str], one_way: bool = False) -> None:
        """Drop what this node sends to the peer addresses (and, unless one_way, what they send it).

        Matching on addresses works on loopback because each node's connections leave from its
        own address (source NAT on its cgroup); the harness, in no node's cgroup, still reaches
        every address, so observation goes on.
        """
        if not peers:
            raise FaultError(f"{self.name}: a partition needs at least one peer address")
        if self.address in peers:
            raise FaultError(f"{self.name}: cannot partition a node from its own address {self.address}")
        nf = Netfilter(self.cluster.cfg.name)
        if not nf.node_sources():
            raise FaultError(
                "partitions need each node's own source address (iptables source NAT on the node's cgroup), "
                "which this cluster could not set up: run as root on a machine with cgroup v2 and iptables"
            )
        for rule in self._partition_rules(peers, one_way):
            nf.add(rule)

    def partition_drops(self) -> int | None:
        counted = [
            n for rule, n in Netfilter(self.cluster.cfg.name).counted_rules() if partition_rule_of(rule, self.address)
        ]
        return sum(counted) if counted else None

    def heal_partition(self, peers: Sequence[str] | None = None) -> None:
        """Remove the rules for `peers` (both directions), or for every other node when None."""
        if peers is None:
            peers = [n.address for n in self.cluster.nodes() if n.name != self.name]
        nf = Netfilter(self.cluster.cfg.name)
        for rule in self._partition_rules(peers, one_way=False):
            nf.delete(rule)


def detached_watchdog_pid(run_dir: Path) -> int | None:
    """The pid of the watchdog process `kubequake up` left for this cluster, if it still runs."""
    try:
        pid = int((run_dir / "watchdog.pid").read_text())
        alive = proc_state_letter(pid) not in (None, "Z", "X")
        return pid if alive and "watchdog" in Path(f"/proc/{pid}/cmdline").read_text() else None
    except (OSError, ValueError):
        return None


class LocalCluster:
    """A local HA cluster: create (idempotent), destroy (safe twice), status, nodes, kubeconfig."""

    name = "local"
    # Everything: kubequake runs every process of this cluster itself.
    capabilities = frozenset(Capability)

    def __init__(self, cfg: ClusterConfig, bins: binmod.BinarySet | None = None, *, detached: bool = False) -> None:
        self.cfg = cfg
        self.run_dir = cfg.run_dir
        self._bins = bins
        self.detached = detached
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.supervisor = Supervisor(self.run_dir / "processes.json", die_with_parent=not detached)
        self._nodes = {s.name: LocalNode(self, s) for s in topology(cfg)}
        self._pki: pkimod.ClusterPKI | None = None
        self._signals_installed = False
        self._stop_requested = threading.Event()
        self.watchdog: Watchdog | None = None

    # -- files -------------------------------------------------------------------------------
    @property
    def bins(self) -> binmod.BinarySet:
        if self._bins is None:
            self._bins = binmod.locate()
        return self._bins

    @property
    def pki(self) -> pkimod.ClusterPKI:
        if self._pki is None:
            addrs = {n: self.cfg.node_address(i) for i, n in enumerate(self.cfg.node_names(), start=1)}
            self._pki = pkimod.ensure_pki(
                self.run_dir / "pki", addrs, self.cfg.lb_address, validity_days=self.cfg.pki.cert_validity_days
            )
        return self._pki

    @property
    def state_file(self) -> Path:
        return self.run_dir / "cluster.json"

    def kubeconfig(self) -> Path:
        return self.run_dir / "admin.conf"

    def admin_tls(self) -> TLSClient:
        return TLSClient(self.pki.ca.cert, self.pki.admin.cert, self.pki.admin.key)

    def etcd_tls(self) -> TLSClient:
        return TLSClient(self.pki.etcd_ca.cert, self.pki.etcd_client.cert, self.pki.etcd_client.key)

    def traffic_tls(self) -> TLSClient:
        return TLSClient(self.pki.ca.cert, self.pki.traffic.cert, self.pki.traffic.key)

    def lb_url(self) -> str:
        return f"https://{self.cfg.lb_address}:{self.cfg.load_balancer.port}"

    def apiserver_url(self, node: str) -> str:
        return f"https://{self._nodes[node].address}:{self.cfg.apiserver.port}"

    def etcd_url(self, node: str) -> str:
        return f"https://{self._nodes[node].address}:{self.cfg.etcd.client_port}"

    def log_path(self, node: str, component: Component) -> Path:
        return self.run_dir / node / "logs" / f"{component}.log"

    # -- topology ----------------------------------------------------------------------------
    def worker_names(self) -> list[str]:
        return worker_names(self.cfg.workers)

    def component_versions(self) -> dict[str, str]:
        versions = dict(self.bins.versions)
        return {
            "kubernetes": versions.get("kubernetes", ""),
            "etcd": versions.get("etcd", ""),
            "kwok": versions.get("kwok", ""),
            "haproxy": haproxy_version(),
        }

    def variant(self, settings: Mapping[str, object], index: int) -> LocalCluster:
        values = {k: v for k, v in config.flatten(self.cfg.to_dict()).items() if k in config.known_keys()}
        values.update(settings)
        values["name"] = f"{self.cfg.name}-v{index}"
        # Variants sit 100 blocks above their base so neither ever shares an address.
        values["address_block"] = (self.cfg.address_block + 100 + index) % 256
        return LocalCluster(config.build(values), self._bins)

    def declared_objectives(self) -> Mapping[str, object]:
        return {}  # a local cluster's SLOs are the run's: kubequake.toml [slo] and --set slo.*

    def certificate_files(self) -> dict[str, list[Path]]:
        p, cps = self.pki, self.control_planes()
        return {
            "kube-apiserver serving": [p.apiserver[n.name].cert for n in cps],
            "etcd server": [p.etcd_server[n.name].cert for n in cps],
            "etcd peer": [p.etcd_peer[n.name].cert for n in cps],
            "front-proxy client": [p.front_proxy_client.cert],
            "apiserver etcd client": [p.etcd_client.cert],
            "apiserver kubelet client": [p.apiserver_kubelet_client.cert],
            "admin client": [p.admin.cert],
            "kube-controller-manager client": [p.controller_manager.cert],
            "kube-scheduler client": [p.scheduler.cert],
            "certificate authorities": [p.ca.cert, p.etcd_ca.cert, p.front_proxy_ca.cert],
        }

    def nodes(self) -> list[LocalNode]:
        return list(self._nodes.values())

    def node(self, name: str) -> LocalNode:
        try:
            return self._nodes[name]
        except KeyError:
            raise ClusterError(f"no node {name!r}; this cluster has {', '.join(self._nodes)}") from None

    def control_planes(self) -> list[LocalNode]:
        return [n for n in self._nodes.values() if n.role is Role.CONTROL_PLANE]

    # -- process specs -----------------------------------------------------------------------
    def process_spec(self, node: str, component: Component) -> ProcessSpec:
        spec = self._nodes[node].spec
        argv = {
            Component.ETCD: self._etcd_argv,
            Component.APISERVER: self._apiserver_argv,
            Component.CONTROLLER_MANAGER: self._kcm_argv,
            Component.SCHEDULER: self._scheduler_argv,
            Component.HAPROXY: self._haproxy_argv,
            Component.KWOK: self._kwok_argv,
        }[component](spec)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.run_dir)}
        cg = node_cgroup(self.cfg.name, node)
        return ProcessSpec(node, component, argv, self.log_path(node, component), env, cg.procs_file() if cg else None)

    def _etcd_argv(self, spec: NodeSpec) -> list[str]:
        e = self.cfg.etcd
        p = self.pki
        peers = ",".join(f"{n.name}=https://{n.address}:{e.peer_port}" for n in self.control_planes())
        a = spec.address
        return [
            str(self.bins["etcd"]),
            f"--name={spec.name}",
            f"--data-dir={self.run_dir / spec.name / 'etcd'}",
            f"--listen-client-urls=https://{a}:{e.client_port}",
            f"--advertise-client-urls=https://{a}:{e.client_port}",
            f"--listen-peer-urls=https://{a}:{e.peer_port}",
            f"--initial-advertise-peer-urls=https://{a}:{e.peer_port}",
            f"--listen-metrics-urls=http://{a}:{ETCD_METRICS_PORT}",
            f"--initial-cluster={peers}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token=kubequake-{self.cfg.name}",
            f"--cert-file={p.etcd_server[spec.name].cert}",
            f"--key-file={p.etcd_server[spec.name].key}",
            f"--trusted-ca-file={p.etcd_ca.cert}",
            "--client-cert-auth=true",
            f"--peer-cert-file={p.etcd_peer[spec.name].cert}",
            f"--peer-key-file={p.etcd_peer[spec.name].key}",
            f"--peer-trusted-ca-file={p.etcd_ca.cert}",
            "--peer-client-cert-auth=true",
            f"--heartbeat-interval={e.heartbeat_ms}",
            f"--election-timeout={e.election_timeout_ms}",
            "--snapshot-count=10000",
            "--log-level=info",
        ]

    def _apiserver_argv(self, spec: NodeSpec) -> list[str]:
        p = self.pki
        a = spec.address
        if self.cfg.apiserver.etcd_servers == "local":
            etcd = self.etcd_url(spec.name)
        else:
            etcd = ",".join(self.etcd_url(n.name) for n in self.control_planes())
        return [
            str(self.bins["kube-apiserver"]),
            f"--advertise-address={a}",
            f"--bind-address={a}",
            f"--secure-port={self.cfg.apiserver.port}",
            f"--etcd-servers={etcd}",
            f"--etcd-cafile={p.etcd_ca.cert}",
            f"--etcd-certfile={p.etcd_client.cert}",
            f"--etcd-keyfile={p.etcd_client.key}",
            f"--tls-cert-file={p.apiserver[spec.name].cert}",
            f"--tls-private-key-file={p.apiserver[spec.name].key}",
            f"--client-ca-file={p.ca.cert}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--kubelet-client-certificate={p.apiserver_kubelet_client.cert}",
            f"--kubelet-client-key={p.apiserver_kubelet_client.key}",
            f"--proxy-client-cert-file={p.front_proxy_client.cert}",
            f"--proxy-client-key-file={p.front_proxy_client.key}",
            f"--requestheader-client-ca-file={p.front_proxy_ca.cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User",
            f"--cert-dir={self.run_dir / spec.name / 'apiserver-certs'}",
            "--profiling=false",
        ]

    def _leader_election_flags(self) -> list[str]:
        le = self.cfg.leader_election
        if not le.enabled:
            return ["--leader-elect=false"]
        return [
            "--leader-elect=true",
            f"--leader-elect-lease-duration={le.lease_duration_s}s",
            f"--leader-elect-renew-deadline={le.renew_deadline_s}s",
            f"--leader-elect-retry-period={le.retry_period_s}s",
        ]

    def _component_kubeconfig(self, spec: NodeSpec, who: str, user: pkimod.CertPair) -> Path:
        # kubeadm points controllers at their own node's apiserver, not at the LB: losing the
        # local apiserver is then what costs a controller its lease, as on a real node.
        return self.pki.kubeconfig(
            self.run_dir / spec.name / f"{who}.conf", self.apiserver_url(spec.name), user, f"system:{who}"
        )

    def _kcm_argv(self, spec: NodeSpec) -> list[str]:
        p = self.pki
        kc = self._component_kubeconfig(spec, "kube-controller-manager", p.controller_manager)
        return [
            str(self.bins["kube-controller-manager"]),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            f"--bind-address={spec.address}",
            f"--secure-port={KCM_PORT}",
            f"--tls-cert-file={p.apiserver[spec.name].cert}",
            f"--tls-private-key-file={p.apiserver[spec.name].key}",
            f"--client-ca-file={p.ca.cert}",
            f"--requestheader-client-ca-file={p.front_proxy_ca.cert}",
            f"--root-ca-file={p.ca.cert}",
            f"--service-account-private-key-file={p.sa_key}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={p.ca.cert}",
            f"--cluster-signing-key-file={p.ca.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,bootstrapsigner,tokencleaner",
            *self._leader_election_flags(),
            "--profiling=false",
        ]

    def _scheduler_argv(self, spec: NodeSpec) -> list[str]:
        p = self.pki
        kc = self._component_kubeconfig(spec, "kube-scheduler", p.scheduler)
        return [
            str(self.bins["kube-scheduler"]),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            f"--bind-address={spec.address}",
            f"--secure-port={SCHEDULER_PORT}",
            f"--tls-cert-file={p.apiserver[spec.name].cert}",
            f"--tls-private-key-file={p.apiserver[spec.name].key}",
            f"--client-ca-file={p.ca.cert}",
            f"--requestheader-client-ca-file={p.front_proxy_ca.cert}",
            *self._leader_election_flags(),
            "--profiling=false",
        ]

    def haproxy_config_path(self) -> Path:
        return self.run_dir / "lb" / "haproxy.cfg"

    def haproxy_stats_socket(self) -> Path:
        return self.run_dir / "lb" / "haproxy.sock"

    def lb_stats_csv(self, timeout: float = 5.0) -> str:
        return stats_over_socket(self.haproxy_stats_socket(), timeout=timeout)

    def metrics_url(self, node: str, component: Component) -> str | None:
        port = {Component.CONTROLLER_MANAGER: KCM_PORT, Component.SCHEDULER: SCHEDULER_PORT}.get(component)
        if port is None:
            return None
        return f"https://{self.node(node).address}:{port}/metrics"

    def _haproxy_argv(self, spec: NodeSpec) -> list[str]:
        backends = [Backend(n.name, n.address, self.cfg.apiserver.port) for n in self.control_planes()]
        path = self.haproxy_config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            render_haproxy_config(
                self.cfg,
                backends,
                pid_file=self.run_dir / "lb" / "haproxy.pid",
                ca_file=self.pki.ca.cert,
                stats_socket=self.haproxy_stats_socket(),
            )
        )
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        return [haproxy, "-db", "-f", str(path)]

    def _kwok_argv(self, spec: NodeSpec) -> list[str]:
        p = self.pki
        kc = p.kubeconfig(self.run_dir / "workers" / "kwok.conf", self.lb_url(), p.kwok, "kubequake-kwok")
        stages = self.bins.stage_dir
        if stages is None:
            raise ClusterError("KWOK stage definitions are missing; rebuild with `kubequake binaries`")
        files = [
            stages / "node" / "fast" / "node-initialize.yaml",
            stages / "node" / "heartbeat" / "node-heartbeat.yaml",
            *sorted((stages / "pod" / "fast").glob("*.yaml")),
        ]
        files = [f for f in files if f.is_file() and f.name != "kustomization.yaml"]
        return [
            str(self.bins["kwok"]),
            f"--kubeconfig={kc}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            *(f"--config={f}" for f in files),
        ]

    # -- readiness ---------------------------------------------------------------------------
    def component_health_url(self, node: LocalNode, component: Component) -> tuple[str, TLSClient | None]:
        a = node.address
        if component is Component.ETCD:
            return f"http://{a}:{ETCD_METRICS_PORT}/health", None
        if component is Component.APISERVER:
            return f"https://{a}:{self.cfg.apiserver.port}/readyz", self.admin_tls()
        if component is Component.CONTROLLER_MANAGER:
            return f"https://{a}:{KCM_PORT}/healthz", self.admin_tls()
        if component is Component.SCHEDULER:
            return f"https://{a}:{SCHEDULER_PORT}/healthz", self.admin_tls()
        if component is Component.HAPROXY:
            return f"{self.lb_url()}/readyz", self.admin_tls()
        raise ClusterError(f"{component} has no health endpoint")

    def component_ready(
        self, node: LocalNode, component: Component, timeout: float = 2.0, session: requests.Session | None = None
    ) -> tuple[bool, str]:
        state = node.state(component)
        if state is not ComponentState.RUNNING:
            return False, f"{node.name}/{component} is {state}"
        if component is Component.KWOK:
            return True, "running"
        url, tls = self.component_health_url(node, component)
        r = probe(url, tls, timeout=timeout, session=session)
        if component is Component.ETCD and r.ok:
            return '"health":"true"' in r.body, r.body.strip()
        return r.ok, f"{url}: {r.status} {r.error or r.body[:200]}"

    def wait_component_ready(
        self, node: LocalNode, component: Component, timeout: float, cancelled: threading.Event | None = None
    ) -> float:
        """Wait until the component answers its health check; fail at once if it exits or the wait is cancelled."""
        # A fatal state ends the wait as "done" and is raised afterwards, with the component's log tail.
        fatal: list[str] = []

        def check() -> tuple[bool, str]:
            if cancelled is not None and cancelled.is_set():
                fatal.append(f"start-up of {node.name}/{component} was cancelled")
                return True, fatal[-1]
            if node.state(component) is ComponentState.EXITED:
                fatal.append(
                    f"{node.name}/{component} exited during start-up; see {self.log_path(node.name, component)}"
                )
                return True, fatal[-1]
            return self.component_ready(node, component, session=session)

        try:
            with loopback_session() as session:
                took = wait_until(f"{node.name}/{component} ready", check, timeout, interval=READY_POLL_S)
        except TimeoutExpired as exc:
            raise ClusterError(f"{exc}\n{self._log_tail(node.name, component)}") from None
        if fatal:
            raise ClusterError(f"{fatal[0]}\n{self._log_tail(node.name, component)}")
        return took

    def _log_tail(self, node: str, component: Component, lines: int = 12) -> str:
        path = self.log_path(node, component)
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"last lines of {path}:\n" + "\n".join("  " + t[:300] for t in text)

    # -- lifecycle ---------------------------------------------------------------------------
    def running(self) -> bool:
        return any(
            self.supervisor.state(r.node, r.component) in (ComponentState.RUNNING, ComponentState.FROZEN)
            for r in self.supervisor.records()
        )

    def _recorded_config(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        cfg = data.get("config")
        return cfg if isinstance(cfg, dict) else None

    def create(self, timeout: float = 180.0) -> None:
        """Bring the cluster up, or reuse it if it already runs with the same settings."""
        if self.running():
            if self._recorded_config() == self.cfg.to_dict() and self.healthy_quick():
                log.info("cluster %s already running with the same settings; reusing it", self.cfg.name)
                self.install_signal_handlers()
                self.start_watchdog()
                return
            raise ClusterRunningError(
                f"cluster {self.cfg.name!r} is already running from {self.run_dir} with other settings or unhealthy; "
                f"it was left untouched. Stop it first with `kubequake down --set name={self.cfg.name}`, "
                "or choose another --set name=... and --set address_block=..."
            )
        self.destroy()  # a crashed run's leftovers go before anything new starts
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._check_ports()
            _ = self.bins
        except HarnessError:
            self.destroy()  # nothing was started; leave no empty run directory behind either
            raise
        started = time.monotonic()
        self.install_signal_handlers()
        with self._sigterm_interrupts_startup():
            try:
                self._start_all(timeout)
                self._raise_if_stop_requested()
            except BaseException:
                log.error("start-up failed; stopping everything that was started")
                self.destroy()
                raise
        self.state_file.write_text(
            json.dumps(
                {
                    "config": self.cfg.to_dict(),
                    "detached": self.detached,
                    "owner_pid": os.getpid(),
                    "created_at": time.time(),
                    "versions": self.bins.versions,
                },
                indent=2,
            )
        )
        log.info("cluster %s ready in %.1fs", self.cfg.name, time.monotonic() - started)
        self.start_watchdog()

    def start_watchdog(self) -> None:
        """Restart components that exit by themselves, as kubelet does, while this process owns the cluster."""
        if self.watchdog is None:
            self.watchdog = Watchdog(self)
        self.watchdog.start()

    def attach(self, timeout: float = 60.0) -> None:
        """Use the cluster as it runs, never owned: what this process starts in it outlives this process.

        Components a fault stops and its undo restarts belong to the cluster, not to this process:
        they must not die with it (no parent-death signal), and nothing is torn down at exit.
        """
        if not self.running():
            raise ClusterNotRunningError(
                f"cluster {self.cfg.name!r} is not running (nothing runs from {self.run_dir}); start it with "
                f"`kubequake up --set name={self.cfg.name}`"
            )
        recorded = self._recorded_config()
        if recorded is not None:
            ran, asked = config.flatten(recorded), config.flatten(self.cfg.to_dict())
            other = [f"{k}={ran.get(k)}" for k in sorted(asked) if k != "run_root" and ran.get(k) != asked[k]]
            if other:
                raise ClusterRunningError(
                    f"cluster {self.cfg.name!r} is already running with other settings ({', '.join(other)}); it "
                    f"was left untouched. Use it as it is (drop the --set flags), stop it first with `kubequake down "
                    f"--set name={self.cfg.name}`, or choose another --set name=... and --set address_block=..."
                )
        self.detached = True
        self.supervisor.die_with_parent = False
        # One kubelet per node: the watchdog process `kubequake up` started keeps restarting what
        # exits by itself; a second one here would race it for the same restarts.
        if detached_watchdog_pid(self.run_dir) is None:
            self.start_watchdog()

    def detach(self) -> None:
        """Let go of the cluster and leave it running (and its own watchdog process, if any)."""
        if self.watchdog is not None:
            self.watchdog.stop()

    def _check_ports(self) -> None:
        e = self.cfg.etcd
        checks = [
            (self.cfg.lb_address, self.cfg.load_balancer.port, "HAProxy"),
            (self.cfg.lb_address, self.cfg.load_balancer.stats_port, "HAProxy stats"),
        ]
        for n in self.control_planes():
            checks += [
                (n.address, e.client_port, f"etcd client on {n.name}"),
                (n.address, e.peer_port, f"etcd peer on {n.name}"),
                (n.address, ETCD_METRICS_PORT, f"etcd metrics on {n.name}"),
                (n.address, self.cfg.apiserver.port, f"kube-apiserver on {n.name}"),
                (n.address, KCM_PORT, f"kube-controller-manager on {n.name}"),
                (n.address, SCHEDULER_PORT, f"kube-scheduler on {n.name}"),
            ]
        for addr, port, what in checks:
            check_port_free(addr, port, what)

    def _start_parallel(
        self,
        members: list[tuple[LocalNode, Component]],
        deadline: float,
        meanwhile: Callable[[], None] | None = None,
        started: Sequence[tuple[LocalNode, Component]] = (),
    ) -> None:
        """Start every (node, component) of one start-up step and wait until all are ready.

        `meanwhile` runs in the calling thread while the step's members come up, so API work
        that needs only what earlier steps started overlaps with this step's wait. `started`
        are members of the step that already run: waited for, not started again.
        """
        self._raise_if_stop_requested()
        for n, component in members:
            self.supervisor.start(self.process_spec(n.name, component))
        members = [*started, *members]
        errors: list[BaseException] = []
        # Set when this step ends for any reason (failure, Ctrl-C): waiters stop polling instead of
        # probing a cluster that is being torn down until their deadline.
        cancelled = threading.Event()

        def wait(n: LocalNode, component: Component) -> None:
            try:
                self.wait_component_ready(n, component, max(1.0, deadline - time.monotonic()), cancelled)
            except BaseException as exc:  # collected and re-raised below
                errors.append(exc)
                cancelled.set()  # one member failing fails the step; the others need not wait it out

        threads = [threading.Thread(target=wait, args=m, daemon=True) for m in members]
        try:
            for t in threads:
                t.start()
            if meanwhile is not None:
                meanwhile()
            self._raise_if_stop_requested()
            give_up = deadline + 5
            for t in threads:
                # Short joins: a SIGTERM during start-up is noticed within 0.1 s.
                while t.is_alive() and time.monotonic() < give_up:
                    t.join(0.1)
                    self._raise_if_stop_requested()
        finally:
            cancelled.set()
        if errors:
            raise errors[0]

    def _node_sources(self) -> None:
        """Give each node's connections its own source address (see providers/netfilter.py for why)."""
        sources = {}
        for n in self.nodes():
            cg = node_cgroup(self.cfg.name, n.name)
            if cg is None:
                log.warning("no writable cgroup v2 hierarchy: partition faults will be unavailable")
                return
            sources[n.name] = (cg.relpath, n.address)
        try:
            Netfilter(self.cfg.name).setup_node_sources(sources)
        except HarnessError as exc:
            log.warning("per-node source addresses not set up (%s): partition faults will be unavailable", exc)

    def _start_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._node_sources()
        cps = self.control_planes()
        self.start_etcd_members(deadline)
        self._start_parallel([(n, Component.APISERVER) for n in cps], deadline)
        self._admin_kubeconfig()
        # HAProxy only once every apiserver is ready: a backend that fails its first checks is
        # marked DOWN and needs `rise` more intervals to come back.
        self._start_parallel([(self.node("lb"), Component.HAPROXY)], deadline)
        # Controllers need only their own node's apiserver, KWOK only the LB: one step for all of
        # them, with the worker Node objects registered through the LB while they come up.
        step = [(n, c) for c in (Component.CONTROLLER_MANAGER, Component.SCHEDULER) for n in cps]
        if not self.cfg.workers:
            self._start_parallel(step, deadline)
            return
        step.append((self.node("workers"), Component.KWOK))
        self._start_parallel(step, deadline, meanwhile=lambda: ensure_workers(self, self.cfg.workers))
        wait_workers_ready(self, self.cfg.workers, max(1.0, deadline - time.monotonic()))

    def start_etcd_members(self, deadline: float, lead_first: bool = True) -> None:
        """Start a new cluster's etcd members and wait until every one is healthy.

        One step: none can serve until a majority has joined. With `lead_first` the first
        member starts a moment ahead (see _start_etcd_lead) and the others as soon as it
        serves; without, all start at once (benchmarks/etcd_bootstrap.py compares the two).
        """
        cps = self.control_planes()
        if not lead_first:
            self._start_parallel([(n, Component.ETCD) for n in cps], deadline)
            return
        self._start_etcd_lead(cps[0], deadline)
        self._start_parallel([(n, Component.ETCD) for n in cps[1:]], deadline, started=[(cps[0], Component.ETCD)])

    def _start_etcd_lead(self, node: LocalNode, deadline: float) -> None:
        """Start one etcd member and wait (briefly) until it serves its peers.

        A new member first asks its peers whether it was bootstrapped already, with a 1 s
        timeout per peer. Started all at once, every member finds the others' peer ports bound
        but not yet answering (they are all in that same check), so each waits out the timeout
        for every peer: 2 s of nothing for three members. Started after one that already
        serves, a member gets its answer from it at once (peers are asked in address order and
        the lead has the lowest address), and the lead, asking peers whose ports are not bound
        yet, is refused at once. Its metrics port opens right after its peer port serves.
        """
        self._raise_if_stop_requested()
        self.supervisor.start(self.process_spec(node.name, Component.ETCD))
        url = f"http://{node.address}:{ETCD_METRICS_PORT}/health"
        give_up = min(deadline, time.monotonic() + ETCD_LEAD_WAIT_S)
        with loopback_session() as session:
            while time.monotonic() < give_up and node.state(Component.ETCD) is ComponentState.RUNNING:
                self._raise_if_stop_requested()
                if probe(url, None, timeout=0.5, session=session).status is not None:
                    break  # any answer, "no leader" included: it serves
                time.sleep(0.01)
        # Past the wait the others start anyway: the step's own readiness wait reports a lead
        # that failed, and a slow lead only costs the bootstrap timeout it was meant to save.

    def _admin_kubeconfig(self) -> Path:
        p = self.pki
        return p.kubeconfig(self.kubeconfig(), self.lb_url(), p.admin, "kubernetes-admin")

    def healthy_quick(self) -> bool:
        return all(self.component_ready(n, c)[0] for n in self.nodes() for c in n.components())

    def destroy(self) -> None:
        """Stop every process of this cluster and remove its run directory; safe to call twice."""
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.run_dir.is_dir():
            # Held first: the watchdog of an owner in another process (`up --foreground`) must not
            # restart what this `down` stops, in the moment before the run directory is gone.
            for n in self.nodes():
                for c in n.components():
                    hold(self.run_dir, n.name, c)
        # The run directory is deleted right after, so nothing is gained by a graceful shutdown:
        # etcd alone takes over 5 s to finish one while apiservers hold watches on it. Every
        # process gets SIGTERM and, without waiting for it, SIGKILL.
        self.supervisor.stop_all(timeout=0.0)
        left = sweep(self.run_dir)
        Netfilter(self.cfg.name).teardown()
        remove_cluster_cgroups(self.cfg.name)
        if left:
            raise ClusterError(f"processes {left} of {self.run_dir} survived SIGKILL; check `ps -p {left[0]}`")
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self._pki = None

    # -- interruption ------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """Owned clusters stop on interpreter exit and on SIGTERM, like on Ctrl-C."""
        if self.detached or self._signals_installed:
            return
        self._signals_installed = True
        atexit.register(self._atexit)
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGTERM)

            def on_term(signum: int, frame: object) -> None:
                # Turning SIGTERM into KeyboardInterrupt lets every finally block (fault undo,
                # fixture teardown) run in order before the cluster goes.
                # SIG_DFL and SIG_IGN are plain ints, so `callable` leaves only real handlers.
                if callable(previous):
                    previous(signum, frame)  # type: ignore[arg-type]
                raise KeyboardInterrupt(f"signal {signum}")

            signal.signal(signal.SIGTERM, on_term)

    @contextlib.contextmanager
    def _sigterm_interrupts_startup(self) -> Iterator[None]:
        """While starting, SIGTERM stops what was started even for a detached cluster.

        Owned clusters have the permanent handler above. A detached `kubequake up` killed halfway
        through start-up would otherwise leave half a cluster running with nobody to stop it.
        """
        if not self.detached or threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_term(signum: int, frame: object) -> None:
            # Only a flag: an exception raised from a signal handler can land inside logging's or
            # a pool's lock and leave it held, and the start-up threads would then wait forever.
            # Start-up checks the flag at safe points and unwinds from there.
            self._stop_requested.set()

        self._stop_requested.clear()
        previous = signal.signal(signal.SIGTERM, on_term)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

    def _raise_if_stop_requested(self) -> None:
        if self._stop_requested.is_set():
            raise KeyboardInterrupt("SIGTERM during start-up")

    def _atexit(self) -> None:
        with contextlib.suppress(HarnessError, OSError):
            if self.run_dir.exists():
                self.destroy()


if TYPE_CHECKING:
    from harness.providers.base import Cluster, Node

    # mypy proves the local provider keeps to the contracts scenarios and faults are written against.
    def _is_cluster(c: LocalCluster) -> Cluster:
        return c

    def _is_node(n: LocalNode) -> Node:
        return n
