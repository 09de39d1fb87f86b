"""What scenarios need of a cluster on real machines (vagrant, existing), beyond its nodes.

Clients, probes and Locust speak mutual TLS, so the kubeconfig's credentials are written out as
files once (mode 0600, in the harness's run directory). A kubeconfig whose user signs in with a
token or an exec plugin (OIDC, cloud logins) has no client certificate; for such clusters the
credentials can come from the control plane instead (kubeadm's admin.conf, read over SSH). The etcd
client certificate comes from the inventory or, for kubeadm clusters, from the first control plane
over SSH. HAProxy's view of the apiservers is read on the load-balancer node itself, where its
stats page listens.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from harness import binaries as binmod
from harness.config import ClusterConfig
from harness.errors import ClusterError, ConfigError, TransportError
from harness.net.tls import TLSClient
from harness.providers.base import Capability, Cluster, Component, Role, UnsupportedCapability
from harness.providers.remote import RemoteNode

log = logging.getLogger(__name__)

# kubeadm's layout: the healthcheck client is what its own etcd probes use.
KUBEADM_ETCD_PKI = {
    "ca": "/etc/kubernetes/pki/etcd/ca.crt",
    "cert": "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
    "key": "/etc/kubernetes/pki/etcd/healthcheck-client.key",
}
KUBEADM_ADMIN_KUBECONFIG = "/etc/kubernetes/admin.conf"
FETCH_TIMEOUT_S = 30.0


class Credentials(StrEnum):
    """Where the harness's own API clients get their client certificate."""

    KUBECONFIG = "kubeconfig"  # the inventory's kubeconfig
    CONTROL_PLANE = "control-plane"  # a kubeconfig on the control planes (admin_kubeconfig), read over SSH


@dataclass(frozen=True)
class EtcdAccess:
    client_port: int = 2379
    # Files on this machine; when unset they are fetched from the first control plane (kubeadm paths).
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class Access:
    """How the harness reaches a real cluster's endpoints (defaults fit kubeadm)."""

    # The LB in front of the apiservers; empty means the kubeconfig's server.
    lb_url: str = ""
    credentials: Credentials = Credentials.KUBECONFIG
    # With Credentials.CONTROL_PLANE: the kubeconfig to read on the first control plane that has it.
    admin_kubeconfig: str = KUBEADM_ADMIN_KUBECONFIG
    apiserver_port: int = 6443
    etcd: EtcdAccess = field(default_factory=EtcdAccess)
    # Fetched with curl on the load-balancer node ({address} is that node's address).
    lb_stats_url: str = "http://127.0.0.1:8404/stats;csv"
    # Metrics URL templates ({address}) per leased component, where reachable from here;
    # without them the Lease's holder names the leader.
    metrics: Mapping[Component, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KubeconfigCredentials:
    server: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _material(entry: Mapping[str, Any], key: str, base: Path | None, source: str, what: str) -> bytes:
    """`key`-data, or the file `key` names relative to `base`; base None: the file is on another machine."""
    data = entry.get(f"{key}-data")
    if isinstance(data, str) and data:
        try:
            return base64.b64decode(data)
        except ValueError:
            raise ConfigError(f"kubeconfig {source}: {key}-data is not base64") from None
    path = entry.get(key)
    if isinstance(path, str) and path:
        if base is None:
            raise ConfigError(
                f"kubeconfig {source}: {key} names a file ({path}) on that machine, not inline {key}-data; "
                "point admin_kubeconfig under [api] at a kubeconfig with embedded certificates"
            )
        p = Path(os.path.expanduser(path))
        p = p if p.is_absolute() else base / p
        try:
            return p.read_bytes()
        except OSError as exc:
            raise ConfigError(f"kubeconfig {source}: cannot read {key} {p} ({exc.strerror})") from None
    signs_in = next((k for k in ("token", "tokenFile", "exec", "auth-provider") if entry.get(k)), "")
    how = f" (it signs in with {signs_in})" if signs_in else ""
    raise ConfigError(
        f"kubeconfig {source}: the {what} has no {key} or {key}-data{how}. kubequake's clients speak mutual TLS; "
        'use a kubeconfig with a client certificate, or set credentials = "control-plane" under [api] in the '
        f"inventory to read the control plane's own ({KUBEADM_ADMIN_KUBECONFIG} on kubeadm clusters) over SSH"
    )


def _load_kubeconfig(text: str, source: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"kubeconfig {source} cannot be read as YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {source} is not a kubeconfig (expected a mapping)")
    return doc


def _read_kubeconfig(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"kubeconfig {path} does not exist; fix `kubeconfig` in the inventory") from None
    except OSError as exc:
        raise ConfigError(f"kubeconfig {path} cannot be read: {exc.strerror}") from None
    return _load_kubeconfig(text, str(path))


def _context(doc: Mapping[str, Any], source: str, context: str) -> tuple[str, Mapping[str, Any], Mapping[str, Any]]:
    """The server, cluster entry and user entry of `context` (or the current one)."""

    def named(kind: str, name: str) -> Mapping[str, Any]:
        for item in doc.get(kind) or []:
            if isinstance(item, dict) and item.get("name") == name:
                inner = item.get(kind[:-1])
                if isinstance(inner, dict):
                    return inner
        raise ConfigError(f"kubeconfig {source}: no {kind[:-1]} named {name!r}")

    ctx_name = context or doc.get("current-context") or ""
    if not ctx_name:
        raise ConfigError(f"kubeconfig {source} has no current-context; name one with `context` in the inventory")
    ctx = named("contexts", str(ctx_name))
    cluster = named("clusters", str(ctx.get("cluster", "")))
    user = named("users", str(ctx.get("user", "")))
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith("https://"):
        raise ConfigError(f"kubeconfig {source}: cluster server {server!r} is not an https:// URL")
    return server.rstrip("/"), cluster, user


def credentials_from(
    doc: Mapping[str, Any], source: str, base: Path | None, context: str = ""
) -> KubeconfigCredentials:
    """The server and TLS material of `context` (or the current one) in a parsed kubeconfig.

    Files it names are read relative to `base`; with base None only inline -data is accepted.
    """
    server, cluster, user = _context(doc, source, context)
    return KubeconfigCredentials(
        server=server,
        ca_pem=_material(cluster, "certificate-authority", base, source, "cluster"),
        cert_pem=_material(user, "client-certificate", base, source, "user"),
        key_pem=_material(user, "client-key", base, source, "user"),
    )


def parse_kubeconfig(path: Path, context: str = "") -> KubeconfigCredentials:
    """The server and TLS material of `context` (or the current one) in a client-certificate kubeconfig."""
    return credentials_from(_read_kubeconfig(path), str(path), path.resolve().parent, context)


def kubeconfig_server(path: Path, context: str = "") -> str:
    """The API server `context` (or the current one) points at, whatever its user signs in with."""
    return _context(_read_kubeconfig(path), str(path), context)[0]


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


class AttachedCluster:
    """The Cluster contract (harness.providers.base) for machines reached over SSH.

    Subclasses provide `nodes()`, `node()`, `kubeconfig()`, `kubeconfig_context()`, `cfg`,
    `run_dir` and `access`.
    """

    name: str
    cfg: ClusterConfig
    run_dir: Path
    access: Access

    def __init__(self) -> None:
        self._tls_lock = threading.Lock()
        self._creds: KubeconfigCredentials | None = None
        self._server: str | None = None
        self._admin: TLSClient | None = None
        self._etcd: TLSClient | None = None
        self._bins: binmod.BinarySet | None = None

    # Supplied by subclasses.
    def nodes(self) -> Sequence[RemoteNode]:
        raise NotImplementedError

    def node(self, name: str) -> RemoteNode:
        raise NotImplementedError

    def kubeconfig(self) -> Path:
        raise NotImplementedError

    def kubeconfig_context(self) -> str:
        return ""

    # -- capabilities ------------------------------------------------------------------------
    @property
    def capabilities(self) -> frozenset[Capability]:
        """Faults reach the machines over SSH; power only where every control plane has a power control.

        Logs, certificate files and component versions stay on the machines, and kubequake never
        makes (or rebuilds) a cluster it was only given.
        """
        caps = {Capability.PARTITION, Capability.FREEZE, Capability.WORKER_READINESS}
        cps = self.control_planes()
        if cps and all(n.has_power_control for n in cps):
            caps.add(Capability.POWER_OFF)
        return frozenset(caps)

    def worker_names(self) -> list[str]:
        return [n.name for n in self.nodes() if n.role is Role.WORKERS]

    def log_path(self, node: str, component: Component) -> Path:
        raise UnsupportedCapability(self.name, Capability.COMPONENT_LOGS, f"{node}/{component} logs stay on the node")

    def component_versions(self) -> dict[str, str]:
        raise UnsupportedCapability(self.name, Capability.COMPONENT_VERSIONS)

    def variant(self, settings: Mapping[str, object], index: int) -> Cluster:
        raise UnsupportedCapability(
            self.name, Capability.VARIANT_CLUSTERS, f"a cluster with {dict(settings)} is not made here"
        )

    def declared_objectives(self) -> Mapping[str, object]:
        return {}

    def certificate_files(self) -> dict[str, list[Path]]:
        raise UnsupportedCapability(self.name, Capability.CERTIFICATE_FILES, "the files live on the machines")

    # -- nodes -------------------------------------------------------------------------------
    def control_planes(self) -> list[RemoteNode]:
        return [n for n in self.nodes() if n.role is Role.CONTROL_PLANE]

    def load_balancers(self) -> list[RemoteNode]:
        return [n for n in self.nodes() if n.role is Role.LOAD_BALANCER]

    @property
    def bins(self) -> binmod.BinarySet:
        # kubectl and etcdctl run here, against the cluster: the pinned local builds.
        if self._bins is None:
            self._bins = binmod.ensure()
        return self._bins

    # -- endpoints ---------------------------------------------------------------------------
    def _credentials(self) -> KubeconfigCredentials:
        if self._creds is None:
            if self.access.credentials is Credentials.CONTROL_PLANE:
                self._creds = self._fetch_admin_kubeconfig()
            else:
                self._creds = parse_kubeconfig(self.kubeconfig(), self.kubeconfig_context())
        return self._creds

    def _fetch_admin_kubeconfig(self) -> KubeconfigCredentials:
        remote = self.access.admin_kubeconfig
        errors = []
        for cp in self.control_planes():
            try:
                res = cp.run(["cat", remote], FETCH_TIMEOUT_S)
            except TransportError as exc:
                errors.append(f"{cp.name}: {exc}")
                continue
            if not res.ok:
                errors.append(f"{cp.name}: exit {res.exit_status}: {res.stderr.strip()[-200:]}")
                continue
            source = f"{remote} on {cp.name}"
            return credentials_from(_load_kubeconfig(res.stdout, source), source, None)
        raise ClusterError(
            f"cannot read {remote} on any control plane ({'; '.join(errors) or 'none listed'}); "
            "set admin_kubeconfig under [api] in the inventory to where the control planes keep a "
            "client-certificate kubeconfig"
        )

    def lb_url(self) -> str:
        # The kubeconfig the user gave names the endpoint, whichever credentials the harness uses.
        if self.access.lb_url:
            return self.access.lb_url.rstrip("/")
        if self._server is None:
            self._server = kubeconfig_server(self.kubeconfig(), self.kubeconfig_context())
        return self._server

    def apiserver_url(self, node: str) -> str:
        return f"https://{self.node(node).address}:{self.access.apiserver_port}"

    def etcd_url(self, node: str) -> str:
        return f"https://{self.node(node).address}:{self.access.etcd.client_port}"

    def metrics_url(self, node: str, component: Component) -> str | None:
        template = self.access.metrics.get(component)
        return template.replace("{address}", self.node(node).address) if template else None

    # -- TLS ---------------------------------------------------------------------------------
    def admin_tls(self) -> TLSClient:
        with self._tls_lock:
            if self._admin is None:
                creds = self._credentials()
                d = self.run_dir / "tls"
                _write_private(d / "admin-ca.crt", creds.ca_pem)
                _write_private(d / "admin.crt", creds.cert_pem)
                _write_private(d / "admin.key", creds.key_pem)
                self._admin = TLSClient(d / "admin-ca.crt", d / "admin.crt", d / "admin.key")
            return self._admin

    def traffic_tls(self) -> TLSClient:
        # Without the cluster CA's key no separate identity can be issued; traffic uses the admin's.
        return self.admin_tls()

    def etcd_tls(self) -> TLSClient:
        with self._tls_lock:
            if self._etcd is None:
                e = self.access.etcd
                if e.ca and e.cert and e.key:
                    self._etcd = TLSClient(e.ca, e.cert, e.key)
                else:
                    self._etcd = self._fetch_etcd_tls()
            return self._etcd

    def _fetch_etcd_tls(self) -> TLSClient:
        cps = self.control_planes()
        if not cps:
            raise ClusterError("no control-plane node to fetch the etcd client certificate from")
        source = cps[0]
        d = self.run_dir / "tls"
        out = {}
        for key, remote in KUBEADM_ETCD_PKI.items():
            try:
                res = source.run(["cat", remote], FETCH_TIMEOUT_S)
            except TransportError as exc:
                raise ClusterError(f"cannot fetch {remote} from {source.name}: {exc}") from None
            if not res.ok or "-----BEGIN" not in res.stdout:
                raise ClusterError(
                    f"{source.name} has no readable {remote} (exit {res.exit_status}: {res.stderr.strip()[-200:]}); "
                    "for a cluster not made by kubeadm give etcd.ca, etcd.cert and etcd.key in the inventory"
                )
            out[key] = d / f"etcd-{key}.pem"
            _write_private(out[key], res.stdout.encode())
        return TLSClient(out["ca"], out["cert"], out["key"])

    def forget_credentials(self) -> None:
        """Remove the copies of the kubeconfig's and etcd's keys; they are written again when needed."""
        import shutil

        with self._tls_lock:
            shutil.rmtree(self.run_dir / "tls", ignore_errors=True)
            self._admin = None
            self._creds = None
            if self._etcd is not None and self._etcd.key.parent == self.run_dir / "tls":
                self._etcd = None

    # -- the load balancer -------------------------------------------------------------------
    def lb_stats_csv(self, timeout: float = 5.0) -> str:
        lbs = self.load_balancers()
        if not lbs:
            raise ClusterError("no load-balancer node is listed, so HAProxy's view cannot be read; add it")
        errors = []
        for lb in lbs:
            url = self.access.lb_stats_url.replace("{address}", lb.address)
            argv = ["curl", "-fsS", "--max-time", str(max(1, int(timeout))), url]
            try:
                res = lb.run(argv, timeout + 5)
            except TransportError as exc:
                errors.append(f"{lb.name}: {exc}")
                continue
            if res.ok and "pxname" in res.stdout:
                return res.stdout
            errors.append(f"{lb.name}: curl {url} exited {res.exit_status}: {res.stderr.strip()[-200:]}")
        raise ClusterError("cannot read HAProxy stats: " + "; ".join(errors))
