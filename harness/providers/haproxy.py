"""HAProxy in front of the kube-apiservers: config rendering and stats reading.

The local HA cluster reaches its control plane through one HAProxy on the LB address. This
module renders that HAProxy's configuration from a `ClusterConfig` and reads back what HAProxy
believes about each apiserver (UP, DOWN, failed checks, downtime) through its stats socket, so
scenarios can assert on the load balancer's view as well as on the clients' view.

HAProxy runs in TCP mode: TLS passes through untouched and clients verify the apiservers'
own certificates, whose SANs include the LB address. The knobs in `LoadBalancerSettings`
(health checks, interval, fall/rise, retries, redispatch) are rendered literally, including
the unsafe ones, because reproducing a misconfigured load balancer is part of the point.
"""

from __future__ import annotations

import contextlib
import csv
import ipaddress
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.config import ClusterConfig
from harness.errors import ClusterError, ConfigError

__all__ = [
    "MAX_STATS_SOCKET_PATH",
    "Backend",
    "ServerState",
    "backends_for",
    "parse_stats_csv",
    "render_haproxy_config",
    "stats_over_socket",
]

# HAProxy binds a UNIX socket under a temporary name "<path>.<pid>.tmp" and renames it, and
# that temporary name must fit in sun_path (108 bytes with the NUL). With pid_max up to
# 4194304 the suffix takes up to 12 bytes, which leaves 95 for the path itself. `haproxy -c`
# does not catch this: it only fails when the process starts, so it is checked here.
MAX_STATS_SOCKET_PATH = 95

# What HAProxy accepts as a proxy or server name; anything else would either be rejected by
# HAProxy or split into extra config words.
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]+")

# `type` column of the stats CSV: 0 frontend, 1 backend, 2 server, 3 listener.
_TYPE_SERVER = "2"
_AGGREGATE_NAMES = frozenset({"FRONTEND", "BACKEND"})


@dataclass(frozen=True)
class Backend:
    """One kube-apiserver behind the load balancer."""

    name: str  # "cp1"
    address: str  # "127.0.0.11"
    port: int  # 6443


def backends_for(cfg: ClusterConfig) -> list[Backend]:
    """The apiserver backends of `cfg`: one per control-plane node, on its node address."""
    return [Backend(name, cfg.node_address(i), cfg.apiserver.port) for i, name in enumerate(cfg.node_names(), 1)]


def _quote_path(what: str, path: Path) -> str:
    """Quote a path as one HAProxy config word.

    Single quotes because HAProxy expands `${VAR}` and backslash escapes inside double quotes,
    and a run directory may contain spaces (e.g. under a home directory).
    """
    text = str(path)
    if not text or "'" in text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ConfigError(
            f"{what} {text!r}: HAProxy cannot take this path (empty, or contains a single quote or a control "
            "character); choose a run_root without such characters"
        )
    return f"'{text}'"


def _validate_backends(cfg: ClusterConfig, backends: list[Backend]) -> None:
    if not backends:
        raise ConfigError(
            "HAProxy needs at least one apiserver backend, got none; pass one Backend per control-plane node "
            "(see backends_for(cfg)) and check control_planes in the config"
        )
    seen: set[str] = set()
    for b in backends:
        if not _NAME_RE.fullmatch(b.name):
            raise ConfigError(f"backend name {b.name!r}: use letters, digits, '_', '.', ':' and '-' only (e.g. 'cp1')")
        if b.name in seen:
            raise ConfigError(f"backend name {b.name!r} appears twice; give every apiserver backend its own name")
        seen.add(b.name)
        try:
            ipaddress.ip_address(b.address)
        except ValueError:
            raise ConfigError(
                f"backend {b.name}: address {b.address!r} is not an IP address; use the node address, "
                f"e.g. {cfg.node_address(1)}"
            ) from None
        if not 1 <= b.port <= 65535:
            raise ConfigError(f"backend {b.name}: port {b.port} is not a TCP port (1-65535)")
        if (b.address, b.port) == (cfg.lb_address, cfg.load_balancer.port):
            raise ConfigError(
                f"backend {b.name} is {b.address}:{b.port}, the load balancer's own frontend; connections would "
                "loop through HAProxy; point it at the apiserver on its node address"
            )


def render_haproxy_config(
    cfg: ClusterConfig,
    backends: list[Backend],
    *,
    pid_file: Path,
    ca_file: Path,
    stats_socket: Path,
) -> str:
    """Render haproxy.cfg for the load balancer in front of `backends`.

    `ca_file` is the CA that signed the apiserver serving certificates; HAProxy loads it when
    the configuration is parsed, so it must exist before HAProxy (or `haproxy -c`) runs.

    `pid_file` is rendered as `pidfile`, but HAProxy only writes it in daemon or master-worker
    mode; this configuration runs HAProxy in the foreground as a supervised child, so the
    supervisor must take the pid from the child process it started, not from this file.
    """
    lb = cfg.load_balancer
    _validate_backends(cfg, backends)
    if lb.port == lb.stats_port:
        raise ConfigError(
            f"load_balancer.port and load_balancer.stats_port are both {lb.port}; the apiserver frontend and the "
            "stats page cannot share a port, set load_balancer.stats_port to another port (default 8404)"
        )
    if len(str(stats_socket).encode()) > MAX_STATS_SOCKET_PATH:
        raise ConfigError(
            f"stats socket path {str(stats_socket)!r} is {len(str(stats_socket).encode())} bytes; HAProxy can bind "
            f"UNIX sockets of at most {MAX_STATS_SOCKET_PATH} bytes, choose a shorter run_root "
            "(or set KUBEQUAKE_RUN_ROOT)"
        )
    pid_q = _quote_path("pid file", pid_file)
    ca_q = _quote_path("CA file", ca_file)
    sock_q = _quote_path("stats socket", stats_socket)

    lines: list[str] = [
        f"# HAProxy for cluster {cfg.name}: TCP passthrough to {len(backends)} kube-apiserver(s).",
        "# Generated by kubequake from the cluster config.",
        "",
        "global",
        # No `daemon`: HAProxy stays in the foreground as a child of the harness, which
        # watches it, collects its stderr and can kill or pause it as a fault.
        "    # Only written in daemon or master-worker mode; in the foreground the supervisor tracks the pid.",
        f"    pidfile {pid_q}",
        # level admin: faults disable/enable servers and read check state through this socket.
        f"    stats socket {sock_q} mode 600 level admin",
        "    log stderr format raw local0 info",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode tcp",
        "    log global",
        "    option tcplog",
        "    timeout connect 5s",
        # Watches are long-lived idle streams: short client/server timeouts would cut them and
        # show up as spurious watch restarts that no fault caused.
        "    timeout client 1h",
        "    timeout server 1h",
        "    timeout tunnel 1h",
    ]
    # HAProxy retries a failed connect 3 times by default; state the count either way so the
    # config shows what happens when a connect to a dead apiserver fails. retries 0 means the
    # first refused connect is the client's error.
    lines.append(f"    retries {lb.retries}")
    if lb.redispatch:
        if lb.retries == 0:
            lines.append("    # redispatch acts on the last retry, so with retries 0 it never triggers.")
        # Lets the last retry go to another server instead of the one that refused.
        lines.append("    option redispatch")

    lines += [
        "",
        "frontend apiserver",
        f"    bind {cfg.lb_address}:{lb.port}",
        "    default_backend apiservers",
        "",
        "backend apiservers",
        "    balance roundrobin",
    ]
    if lb.health_checks:
        lines += [
            # An HTTP check over TLS, not `option ssl-hello-chk`: that sends an SSLv3 hello,
            # which Go's TLS stack rejects, so every apiserver would be marked DOWN.
            # /readyz is readable anonymously (system:public-info-viewer), so no client cert.
            "    option httpchk",
            "    http-check send meth GET uri /readyz",
            "    http-check expect status 200",
            # Without this, connections already established to an apiserver that was marked
            # DOWN stay open (watches would hang on a dead or frozen backend until the 1h
            # timeout); cutting them makes clients reconnect through a healthy one.
            "    default-server on-marked-down shutdown-sessions",
        ]
        check = (
            f" check check-ssl verify required ca-file {ca_q} inter {lb.check_interval_ms}ms fall {lb.fall} "
            f"rise {lb.rise}"
        )
    else:
        lines.append("    # Health checks disabled on purpose: every server stays UP even when its apiserver is dead.")
        check = ""
    for b in backends:
        lines.append(f"    server {b.name} {b.address}:{b.port}{check}")

    lines += [
        "",
        # Loopback only, so no auth. The CSV form is served at /stats;csv.
        "frontend stats",
        "    mode http",
        f"    bind {cfg.lb_address}:{lb.stats_port}",
        # The page refreshes every second; logging it would bury the apiserver traffic log.
        "    http-request set-log-level silent",
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 1s",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class ServerState:
    """One row of HAProxy's stats: a server, or a FRONTEND/BACKEND aggregate."""

    proxy: str  # pxname, e.g. "apiservers"
    server: str  # svname, e.g. "cp1", or "FRONTEND"/"BACKEND"
    # "UP", "DOWN", "UP 1/3" / "DOWN 1/2" while rising or falling, "no check", "MAINT", "DRAIN",
    # "OPEN" for frontends.
    status: str
    weight: int | None
    # Latest check result without the in-progress marker, e.g. "L7OK", "L4CON", "L6RSP"; None without checks.
    check_status: str | None
    check_in_progress: bool
    check_code: int | None  # HTTP status of the latest check
    chkfail: int | None  # failed checks since start
    chkdown: int | None  # UP -> DOWN transitions since start
    last_change_s: int | None  # seconds since the last state change
    downtime_s: int | None  # total time DOWN; None for servers without checks
    current_sessions: int | None
    total_sessions: int | None

    @property
    def is_aggregate(self) -> bool:
        return self.server in _AGGREGATE_NAMES

    @property
    def is_up(self) -> bool:
        """Whether HAProxy sends new connections to this server."""
        # "UP 1/3" is still UP (falling but not yet DOWN); a server without checks is always used.
        return self.status == "no check" or self.status.split(" ", 1)[0] in ("UP", "OPEN")


def _int_or_none(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def parse_stats_csv(text: str, *, include_aggregates: bool = False) -> list[ServerState]:
    """Parse the CSV of `show stat` (or the /stats;csv page).

    Only server rows are returned unless `include_aggregates` is true, in which case the
    FRONTEND and BACKEND rows are kept too. Listener rows (`option socket-stats`) are never
    returned. Raises ClusterError if `text` has no stats header.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("# pxname,")), None)
    if start is None:
        excerpt = text.strip()[:200] or "<empty>"
        raise ClusterError(
            f"HAProxy stats: no '# pxname,...' header in the reply ({excerpt!r}); check that the stats socket "
            "belongs to HAProxy and was opened with `show stat`"
        )
    header = lines[start][2:].split(",")
    out: list[ServerState] = []
    for fields in csv.reader(line for line in lines[start + 1 :] if line.strip()):
        row = dict(zip(header, fields, strict=False))
        server = row.get("svname", "")
        kind = row.get("type")
        is_server = kind == _TYPE_SERVER if kind else server not in _AGGREGATE_NAMES
        if not is_server and not (include_aggregates and server in _AGGREGATE_NAMES):
            continue
        raw_check = row.get("check_status", "")
        in_progress = raw_check.startswith("* ")
        check_status = raw_check[2:] if in_progress else raw_check
        out.append(
            ServerState(
                proxy=row.get("pxname", ""),
                server=server,
                status=row.get("status", ""),
                weight=_int_or_none(row.get("weight")),
                check_status=check_status or None,
                check_in_progress=in_progress,
                check_code=_int_or_none(row.get("check_code")),
                chkfail=_int_or_none(row.get("chkfail")),
                chkdown=_int_or_none(row.get("chkdown")),
                last_change_s=_int_or_none(row.get("lastchg")),
                downtime_s=_int_or_none(row.get("downtime")),
                current_sessions=_int_or_none(row.get("scur")),
                total_sessions=_int_or_none(row.get("stot")),
            )
        )
    return out


def stats_over_socket(socket_path: Path, timeout: float = 2.0) -> str:
    """Send `show stat` over HAProxy's UNIX stats socket and return the CSV reply.

    `timeout` bounds the whole exchange, not each read, so a frozen HAProxy (e.g. SIGSTOPped
    as a fault) costs at most `timeout` seconds. Raises ClusterError on any failure.
    """
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(b"show stat\n")
            # Without `prompt`, HAProxy answers one command and closes the connection, so EOF
            # marks the end of the reply.
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except TimeoutError:
        raise ClusterError(
            f"HAProxy stats socket {socket_path}: no complete reply to 'show stat' within {timeout}s; "
            "HAProxy may be paused or overloaded, check the load balancer process"
        ) from None
    except FileNotFoundError:
        raise ClusterError(
            f"HAProxy stats socket {socket_path} does not exist; is the load balancer running for this cluster?"
        ) from None
    except ConnectionRefusedError:
        # The socket file outlives a killed HAProxy; nothing listens on it any more.
        raise ClusterError(
            f"HAProxy stats socket {socket_path} refuses connections: the file is left over from an HAProxy "
            "that is no longer running; restart the load balancer"
        ) from None
    except OSError as exc:
        raise ClusterError(
            f"HAProxy stats socket {socket_path}: 'show stat' failed ({exc}); "
            "check that HAProxy is running and owns this socket"
        ) from None
    return b"".join(chunks).decode("utf-8", errors="replace")


def haproxy_version() -> str:
    """The version `haproxy -v` reports on this machine, or "unknown"."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, timeout=5, check=False).stdout
        m = re.search(r"version (\S+)", out)
        if m:
            return m.group(1)
    return "unknown"
