"""Cluster configuration: kubequake.toml plus `--set key=value` overrides, validated up front.

The keys are deliberately the knobs users turn to reproduce common HA misconfigurations
(an even etcd membership, leader election off, LB health checks off), so every value is
checked here with a message that names the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

log = logging.getLogger(__name__)

CONFIG_FILE_NAME = "kubequake.toml"


@dataclass(frozen=True)
class EtcdSettings:
    heartbeat_ms: int = 100
    election_timeout_ms: int = 1000
    client_port: int = 2379
    peer_port: int = 2380


@dataclass(frozen=True)
class LeaderElectionSettings:
    enabled: bool = True
    lease_duration_s: int = 15
    renew_deadline_s: int = 10
    retry_period_s: int = 2


@dataclass(frozen=True)
class LoadBalancerSettings:
    health_checks: bool = True
    check_interval_ms: int = 2000
    fall: int = 3
    rise: int = 2
    # HAProxy's retry-on-connect-failure and redispatch: both are legitimate cluster
    # configurations that change what clients see when a backend dies.
    retries: int = 0
    redispatch: bool = False
    port: int = 6443
    stats_port: int = 8404


@dataclass(frozen=True)
class ApiServerSettings:
    port: int = 6443
    # kubeadm's stacked topology: each apiserver talks to its own node's etcd member only.
    # "all" lists every member, which changes how an etcd fault shows through the API.
    etcd_servers: str = "local"


@dataclass(frozen=True)
class PkiSettings:
    # Lifetime of every leaf certificate (CAs keep their own ten years). Short on purpose lets
    # the pre-upgrade gate be shown to fail on certificates about to expire.
    cert_validity_days: int = 365


@dataclass(frozen=True)
class ClusterConfig:
    """Everything needed to render a local HA cluster."""

    name: str = "kubequake"
    control_planes: int = 3
    workers: int = 3
    # Third octet of the loopback block: 127.0.<block>.10 is the LB, .11.. the control planes.
    # Parallel runs take different blocks so they never share an address or port.
    address_block: int = 0
    run_root: str = ""
    etcd: EtcdSettings = field(default_factory=EtcdSettings)
    leader_election: LeaderElectionSettings = field(default_factory=LeaderElectionSettings)
    load_balancer: LoadBalancerSettings = field(default_factory=LoadBalancerSettings)
    apiserver: ApiServerSettings = field(default_factory=ApiServerSettings)
    pki: PkiSettings = field(default_factory=PkiSettings)

    @property
    def lb_address(self) -> str:
        return f"127.0.{self.address_block}.10"

    def node_address(self, index: int) -> str:
        """Address of control-plane node `index` (1-based)."""
        return f"127.0.{self.address_block}.{10 + index}"

    def node_names(self) -> list[str]:
        return [f"cp{i}" for i in range(1, self.control_planes + 1)]

    @property
    def run_dir(self) -> Path:
        root = Path(self.run_root) if self.run_root else default_run_root()
        return root / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_run_root() -> Path:
    env = os.environ.get("KUBEQUAKE_RUN_ROOT")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "kubequake"


_SECTIONS: dict[str, type[Any]] = {
    "etcd": EtcdSettings,
    "leader_election": LeaderElectionSettings,
    "load_balancer": LoadBalancerSettings,
    "apiserver": ApiServerSettings,
    "pki": PkiSettings,
}


def known_keys() -> list[str]:
    keys = [f.name for f in dataclasses.fields(ClusterConfig) if f.name not in _SECTIONS]
    for section, cls in _SECTIONS.items():
        keys += [f"{section}.{f.name}" for f in dataclasses.fields(cls)]
    return sorted(keys)


def _coerce(key: str, raw: Any, target: Any) -> Any:
    """Turn a TOML value or a --set string into the field's type, or say why not."""
    if isinstance(target, bool):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return raw.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{key}: expected true or false, got {raw!r}")
    if isinstance(target, int):
        if isinstance(raw, bool):
            raise ConfigError(f"{key}: expected a whole number, got {raw!r}")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            return int(raw.strip(), 10)
        raise ConfigError(f"{key}: expected a whole number, got {raw!r}")
    if isinstance(target, str):
        if isinstance(raw, (str, int)) and not isinstance(raw, bool):
            return str(raw)
        raise ConfigError(f"{key}: expected a string, got {raw!r}")
    raise ConfigError(f"{key}: unsupported setting type")  # pragma: no cover - guarded by known_keys


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def parse_set(items: list[str]) -> dict[str, str]:
    """Parse `--set key=value` items, rejecting malformed ones with the fix."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set control_planes=5")
        out[key.strip()] = value.strip()
    return out


def read_file(path: Path | None) -> tuple[Path | None, dict[str, Any]]:
    """The config file given (or ./kubequake.toml when there is one) and its TOML, or (None, {})."""
    if path is None and Path(CONFIG_FILE_NAME).is_file():
        path = Path(CONFIG_FILE_NAME)
    if path is None:
        return None, {}
    try:
        with open(path, "rb") as fh:
            return path, tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass an existing file to --config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read ({exc.strerror}); check the path and permissions"
        ) from None


def load(path: Path | None = None, overrides: dict[str, Any] | None = None) -> ClusterConfig:
    """Read the config file (if any) and apply overrides; validate the result."""
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    path, data = read_file(path)
    if path is not None:
        for k, v in _cluster_keys(flatten(data)).items():
            values[k] = v
            source[k] = str(path)
    for k, v in _cluster_keys(overrides or {}).items():
        values[k] = v
        source[k] = "--set"
    return build(values, source)


def _cluster_keys(values: dict[str, Any]) -> dict[str, Any]:
    # `slo.*` keys are the user's objectives, read by harness.slo from the same file and --set
    # flags: they say how the cluster is judged, not how it is built.
    return {k: v for k, v in values.items() if not k.startswith("slo.")}


def build(values: dict[str, Any], source: dict[str, str] | None = None) -> ClusterConfig:
    source = source or {}
    keys = set(known_keys())
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    defaults = ClusterConfig()
    for key, raw in values.items():
        where = f" (from {source[key]})" if key in source else ""
        if key not in keys:
            close = [k for k in sorted(keys) if k.split(".")[-1] == key.split(".")[-1]]
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(sorted(keys))}"
            raise ConfigError(f"unknown setting {key!r}{where}{hint}")
        section, _, name = key.rpartition(".")
        if section:
            target = getattr(getattr(defaults, section), name)
            sections[section][name] = _coerce(key + where, raw, target)
        else:
            top[key] = _coerce(key + where, raw, getattr(defaults, key))
    built = {s: _SECTIONS[s](**v) for s, v in sections.items()}
    cfg = ClusterConfig(**top, **built)
    validate(cfg)
    return cfg


def validate(cfg: ClusterConfig) -> None:
    """Reject values no cluster can run with; warn on ones that run but are unsafe."""
    if not cfg.name or not all((c.isascii() and c.isalnum()) or c in "-_" for c in cfg.name):
        raise ConfigError(f"name {cfg.name!r}: use letters, digits, '-' and '_' only")
    if not 1 <= cfg.control_planes <= 7:
        raise ConfigError(f"control_planes={cfg.control_planes}: choose 1 to 7 (3 or 5 for a real HA cluster)")
    if cfg.control_planes % 2 == 0:
        log.warning(
            "control_planes=%d is even: etcd needs %d of %d for quorum, so it tolerates no more failures "
            "than %d members would; allowed on purpose to reproduce that misconfiguration",
            cfg.control_planes,
            cfg.control_planes // 2 + 1,
            cfg.control_planes,
            cfg.control_planes - 1,
        )
    if not 0 <= cfg.workers <= 500:
        raise ConfigError(f"workers={cfg.workers}: choose 0 to 500 simulated worker nodes")
    if not 0 <= cfg.address_block <= 255:
        raise ConfigError(f"address_block={cfg.address_block}: choose 0 to 255 (the third octet of 127.0.X.Y)")
    ipaddress.ip_address(cfg.lb_address)
    e = cfg.etcd
    if e.heartbeat_ms < 10:
        raise ConfigError(f"etcd.heartbeat_ms={e.heartbeat_ms}: must be at least 10")
    if e.election_timeout_ms < 5 * e.heartbeat_ms:
        raise ConfigError(
            f"etcd.election_timeout_ms={e.election_timeout_ms} must be at least 5x etcd.heartbeat_ms "
            f"({5 * e.heartbeat_ms}); etcd refuses smaller ratios"
        )
    if e.election_timeout_ms > 50000:
        raise ConfigError(f"etcd.election_timeout_ms={e.election_timeout_ms}: etcd allows at most 50000")
    le = cfg.leader_election
    if le.enabled:
        if min(le.lease_duration_s, le.renew_deadline_s, le.retry_period_s) < 1:
            raise ConfigError("leader_election durations must be at least 1 second")
        if not le.lease_duration_s > le.renew_deadline_s:
            raise ConfigError(
                f"leader_election.lease_duration_s={le.lease_duration_s} must exceed "
                f"leader_election.renew_deadline_s={le.renew_deadline_s}"
            )
        # client-go's leader elector refuses renewDeadline <= 1.2 x retryPeriod (jitter factor).
        if not le.renew_deadline_s > 1.2 * le.retry_period_s:
            raise ConfigError(
                f"leader_election.renew_deadline_s={le.renew_deadline_s} must exceed 1.2 x "
                f"leader_election.retry_period_s={le.retry_period_s} (client-go refuses to start otherwise)"
            )
    lb = cfg.load_balancer
    if lb.check_interval_ms < 100:
        raise ConfigError(f"load_balancer.check_interval_ms={lb.check_interval_ms}: must be at least 100")
    if lb.fall < 1 or lb.rise < 1:
        raise ConfigError("load_balancer.fall and load_balancer.rise must be at least 1")
    if not 0 <= lb.retries <= 10:
        raise ConfigError(f"load_balancer.retries={lb.retries}: choose 0 to 10")
    for key, port in (
        ("etcd.client_port", e.client_port),
        ("etcd.peer_port", e.peer_port),
        ("apiserver.port", cfg.apiserver.port),
        ("load_balancer.port", lb.port),
        ("load_balancer.stats_port", lb.stats_port),
    ):
        if not 1 <= port <= 65535:
            raise ConfigError(f"{key}={port}: not a TCP port (1-65535)")
    node_ports = {
        "etcd.client_port": e.client_port,
        "etcd.peer_port": e.peer_port,
        "apiserver.port": cfg.apiserver.port,
    }
    if len(set(node_ports.values())) != len(node_ports):
        raise ConfigError(f"{node_ports} collide on each node's address: give each a different port")
    if lb.port == lb.stats_port:
        raise ConfigError("load_balancer.port and load_balancer.stats_port must differ")
    if not 1 <= cfg.pki.cert_validity_days <= 3650:
        raise ConfigError(
            f"pki.cert_validity_days={cfg.pki.cert_validity_days}: choose 1 to 3650 (the CAs are valid for 3650)"
        )
    if cfg.apiserver.etcd_servers not in ("local", "all"):
        raise ConfigError(f"apiserver.etcd_servers={cfg.apiserver.etcd_servers!r}: choose 'local' or 'all'")
