"""Unit tests of the HAProxy config renderer and stats parsing.

Every rendered config is also run through `haproxy -c -dW` (check only, warnings are errors),
so a config that HAProxy would refuse or warn about fails here, not at cluster creation.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.config import ClusterConfig, build
from harness.errors import ClusterError, ConfigError
from harness.providers.haproxy import (
    MAX_STATS_SOCKET_PATH,
    Backend,
    backends_for,
    parse_stats_csv,
    render_haproxy_config,
    stats_over_socket,
)
from tests.certs import self_signed_ca

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").is_file() else None)
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy binary not installed (apt-get install haproxy)")


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real self-signed CA: `verify required ca-file` makes HAProxy load it at parse time."""
    cert_path, _ = self_signed_ca(tmp_path_factory.mktemp("pki"), "kubequake-test-ca")
    return cert_path


Render = Callable[..., str]


@pytest.fixture
def render(tmp_path: Path, ca_file: Path) -> Render:
    def _render(cfg: ClusterConfig, backends: list[Backend] | None = None) -> str:
        return render_haproxy_config(
            cfg,
            backends_for(cfg) if backends is None else backends,
            pid_file=tmp_path / "haproxy.pid",
            ca_file=ca_file,
            stats_socket=tmp_path / "haproxy.sock",
        )

    return _render


def haproxy_check(text: str, directory: Path) -> None:
    """Fail unless `haproxy -c` accepts `text` without a single warning."""
    assert HAPROXY is not None
    path = directory / "haproxy.cfg"
    path.write_text(text)
    result = subprocess.run(
        [HAPROXY, "-c", "-dW", "-f", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"haproxy -c rejected the config:\n{output}\n--- config ---\n{text}"
    assert "[WARNING]" not in output and "[ALERT]" not in output, output


def server_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("server ")]


# --- rendering -------------------------------------------------------------------------------


@pytest.mark.parametrize(("control_planes", "block"), [(3, 0), (5, 42)])
def test_server_line_per_backend_with_tls_readyz_check(
    render: Render, ca_file: Path, control_planes: int, block: int
) -> None:
    cfg = build(
        {
            "control_planes": control_planes,
            "address_block": block,
            "load_balancer.check_interval_ms": 750,
            "load_balancer.fall": 4,
            "load_balancer.rise": 5,
            "apiserver.port": 7443,
        }
    )
    text = render(cfg)

    expected = [
        f"server cp{i} 127.0.{block}.{10 + i}:7443 check check-ssl verify required ca-file '{ca_file}' "
        f"inter 750ms fall 4 rise 5"
        for i in range(1, control_planes + 1)
    ]
    assert server_lines(text) == expected
    assert "    option httpchk\n" in text
    assert "    http-check send meth GET uri /readyz\n" in text
    assert "    http-check expect status 200\n" in text
    assert "default-server on-marked-down shutdown-sessions" in text
    assert f"    bind 127.0.{block}.10:6443\n" in text


def test_defaults_render_config_defaults(render: Render, ca_file: Path) -> None:
    text = render(build({}))
    assert server_lines(text)[0] == (
        f"server cp1 127.0.0.11:6443 check check-ssl verify required ca-file '{ca_file}' inter 2000ms fall 3 rise 2"
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"load_balancer.health_checks": "false"},
        {"load_balancer.retries": "3", "load_balancer.redispatch": "true"},
        {"load_balancer.redispatch": "true"},
        {"control_planes": "5", "address_block": "7"},
        {"control_planes": "1"},
    ],
)
def test_ssl_hello_check_never_rendered(render: Render, overrides: dict[str, str]) -> None:
    # Go's TLS stack rejects the SSLv3 hello that check sends: every apiserver would be DOWN.
    assert "ssl-hello-chk" not in render(build(overrides))


def test_health_checks_off_renders_plain_servers(render: Render) -> None:
    text = render(build({"load_balancer.health_checks": "false"}))
    assert server_lines(text) == [
        "server cp1 127.0.0.11:6443",
        "server cp2 127.0.0.12:6443",
        "server cp3 127.0.0.13:6443",
    ]
    assert not re.search(r"\scheck\b", text)
    for word in ("httpchk", "http-check", "check-ssl", "ca-file", "on-marked-down", "inter "):
        assert word not in text


def test_retries_zero_is_explicit(render: Render) -> None:
    text = render(build({}))
    assert "    retries 0\n" in text
    assert "redispatch" not in text


def test_retries_and_redispatch(render: Render) -> None:
    text = render(build({"load_balancer.retries": "3", "load_balancer.redispatch": "true"}))
    assert "    retries 3\n" in text
    assert "retries 0" not in text
    assert "    option redispatch\n" in text
    assert "never triggers" not in text


def test_redispatch_without_retries_is_rendered_and_flagged(render: Render) -> None:
    text = render(build({"load_balancer.redispatch": "true"}))
    assert "    retries 0\n" in text
    assert "    option redispatch\n" in text
    assert "with retries 0 it never triggers" in text


def test_retries_without_redispatch(render: Render) -> None:
    text = render(build({"load_balancer.retries": "2"}))
    assert "    retries 2\n" in text
    assert "redispatch" not in text


def test_global_defaults_and_timeouts(render: Render, tmp_path: Path) -> None:
    text = render(build({}))
    for line in (
        f"pidfile '{tmp_path / 'haproxy.pid'}'",
        f"stats socket '{tmp_path / 'haproxy.sock'}' mode 600 level admin",
        "maxconn 4096",
        "mode tcp",
        "option tcplog",
        "log global",
        "timeout connect 5s",
        "timeout client 1h",
        "timeout server 1h",
        "timeout tunnel 1h",
        "default_backend apiservers",
        "balance roundrobin",
    ):
        assert f"    {line}\n" in text, line
    # HAProxy runs in the foreground as a supervised child.
    assert not re.search(r"^\s*daemon\b", text, re.MULTILINE)
    assert not re.search(r"^\s*master-worker\b", text, re.MULTILINE)


def test_stats_frontend(render: Render) -> None:
    text = render(build({"address_block": "3", "load_balancer.stats_port": "9000"}))
    stats = text[text.index("frontend stats") :]
    for line in ("mode http", "bind 127.0.3.10:9000", "stats enable", "stats uri /stats", "stats refresh 1s"):
        assert f"    {line}\n" in stats, line


@needs_haproxy
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"control_planes": "5", "address_block": "9"},
        {"control_planes": "1"},
        {"load_balancer.health_checks": "false"},
        {"load_balancer.retries": "3", "load_balancer.redispatch": "true"},
        {"load_balancer.redispatch": "true"},
        {"load_balancer.check_interval_ms": "100", "load_balancer.fall": "1", "load_balancer.rise": "1"},
    ],
)
def test_haproxy_accepts_rendered_config(render: Render, tmp_path: Path, overrides: dict[str, str]) -> None:
    haproxy_check(render(build(overrides)), tmp_path)


@needs_haproxy
def test_haproxy_accepts_paths_with_spaces(tmp_path: Path, ca_file: Path) -> None:
    run = tmp_path / "run dir"
    run.mkdir()
    ca = run / "ca $HOME.crt"
    ca.write_bytes(ca_file.read_bytes())
    cfg = build({})
    text = render_haproxy_config(
        cfg, backends_for(cfg), pid_file=run / "haproxy.pid", ca_file=ca, stats_socket=run / "s.sock"
    )
    haproxy_check(text, tmp_path)


@needs_haproxy
def test_haproxy_check_can_fail(render: Render, tmp_path: Path) -> None:
    # Guards the check above: a broken config must not pass.
    with pytest.raises(AssertionError, match="rejected"):
        haproxy_check(render(build({})) + "    no-such-keyword 1\n", tmp_path)


def test_empty_backends_rejected(render: Render) -> None:
    with pytest.raises(ConfigError, match="at least one apiserver backend") as exc:
        render(build({}), [])
    assert "backends_for" in str(exc.value)


@pytest.mark.parametrize(
    ("backends", "match"),
    [
        ([Backend("cp1", "127.0.0.11", 6443), Backend("cp1", "127.0.0.12", 6443)], "appears twice"),
        ([Backend("cp 1", "127.0.0.11", 6443)], "backend name 'cp 1'"),
        ([Backend("cp1", "node1", 6443)], "not an IP address"),
        ([Backend("cp1", "127.0.0.11", 0)], "not a TCP port"),
        ([Backend("cp1", "127.0.0.11", 70000)], "not a TCP port"),
        ([Backend("cp1", "127.0.0.10", 6443)], "loop"),
    ],
)
def test_bad_backends_rejected(render: Render, backends: list[Backend], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        render(build({}), backends)


def test_lb_and_stats_port_clash_rejected(render: Render) -> None:
    with pytest.raises(ConfigError, match="stats_port"):
        render(build({"load_balancer.stats_port": "6443"}))


def test_long_stats_socket_path_rejected(tmp_path: Path, ca_file: Path) -> None:
    cfg = build({})
    long_sock = Path("/" + "d" * MAX_STATS_SOCKET_PATH) / "haproxy.sock"
    with pytest.raises(ConfigError, match="shorter run_root"):
        render_haproxy_config(cfg, backends_for(cfg), pid_file=tmp_path / "p", ca_file=ca_file, stats_socket=long_sock)
    ok_sock = Path("/" + "d" * (MAX_STATS_SOCKET_PATH - 1))
    assert "stats socket" in render_haproxy_config(
        cfg, backends_for(cfg), pid_file=tmp_path / "p", ca_file=ca_file, stats_socket=ok_sock
    )


@pytest.mark.parametrize("bad", ["it's.crt", "a\nb.crt"])
def test_unquotable_paths_rejected(tmp_path: Path, bad: str) -> None:
    cfg = build({})
    with pytest.raises(ConfigError, match="CA file"):
        render_haproxy_config(
            cfg, backends_for(cfg), pid_file=tmp_path / "p", ca_file=tmp_path / bad, stats_socket=tmp_path / "s"
        )


def test_backends_for_matches_node_addresses() -> None:
    cfg = build({"control_planes": "5", "address_block": "12", "apiserver.port": "7443"})
    assert backends_for(cfg) == [Backend(f"cp{i}", f"127.0.12.{10 + i}", 7443) for i in range(1, 6)]


# --- stats CSV -------------------------------------------------------------------------------

# `show stat` from HAProxy 2.6, cut after the first 40 columns. Every line ends with a comma,
# as HAProxy's do. cp2 is DOWN (connection refused), cp3 has failed one check and is falling,
# with a check in progress.
STATS_CSV = """\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,\
act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,\
check_status,check_code,check_duration,hrsp_1xx,
apiserver,FRONTEND,,,4,9,4096,57,81234,1934567,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,1,0,6,,,,,
apiservers,cp1,0,0,2,5,,21,30211,702345,,0,,0,0,0,0,UP,1,1,0,0,0,312,0,,1,3,1,,21,,2,0,,3,L7OK,200,4,,
apiservers,cp2,0,0,0,4,,19,27002,611020,,0,,3,0,0,0,DOWN,1,0,0,5,1,7,7,,1,3,2,,19,,2,0,,3,L4CON,,0,,
apiservers,cp3,0,0,2,4,,17,24021,621202,,0,,0,0,0,0,UP 2/3,1,1,0,1,0,312,0,,1,3,3,,17,,2,0,,2,* L7STS,503,3,,
apiservers,BACKEND,0,0,4,9,,57,81234,1934567,0,0,,3,0,0,0,UP,2,2,0,,1,312,0,,1,3,0,,57,,1,1,,6,,,,,
stats,FRONTEND,,,0,1,4096,12,4800,96000,0,0,0,,,,,OPEN,,,,,,,,,1,4,0,,,,0,1,0,1,,,,0,

"""

# Health checks off: servers show "no check" and have no check status or downtime.
STATS_CSV_NO_CHECK = """\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,\
act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,\
check_status,check_code,check_duration,hrsp_1xx,
apiservers,cp1,0,0,1,2,,5,7000,91000,,0,,0,0,0,0,no check,1,1,0,,,,,,1,3,1,,5,,2,0,,1,,,,,
apiservers,cp2,0,0,0,2,,4,6000,81000,,0,,2,0,0,0,no check,1,1,0,,,,,,1,3,2,,4,,2,0,,1,,,,,
"""


def test_sample_csv_is_well_formed() -> None:
    # Guards the samples themselves: a miscounted row would make the tests below meaningless.
    for sample in (STATS_CSV, STATS_CSV_NO_CHECK):
        rows = [line for line in sample.splitlines() if line]
        assert all(len(row.split(",")) == len(rows[0].split(",")) for row in rows)


def test_parse_stats_servers_only() -> None:
    states = parse_stats_csv(STATS_CSV)
    assert [(s.proxy, s.server, s.status) for s in states] == [
        ("apiservers", "cp1", "UP"),
        ("apiservers", "cp2", "DOWN"),
        ("apiservers", "cp3", "UP 2/3"),
    ]
    cp1, cp2, cp3 = states
    assert cp1.check_status == "L7OK" and cp1.check_code == 200 and not cp1.check_in_progress
    assert cp1.is_up and not cp1.is_aggregate
    assert (cp1.current_sessions, cp1.total_sessions, cp1.weight) == (2, 21, 1)
    assert (cp2.check_status, cp2.check_code, cp2.chkfail, cp2.chkdown) == ("L4CON", None, 5, 1)
    assert (cp2.downtime_s, cp2.last_change_s) == (7, 7)
    assert not cp2.is_up
    # The in-progress marker is split off the status.
    assert (cp3.check_status, cp3.check_in_progress, cp3.check_code) == ("L7STS", True, 503)
    assert cp3.is_up and cp3.chkfail == 1


def test_parse_stats_with_aggregates() -> None:
    states = parse_stats_csv(STATS_CSV, include_aggregates=True)
    assert [(s.proxy, s.server) for s in states] == [
        ("apiserver", "FRONTEND"),
        ("apiservers", "cp1"),
        ("apiservers", "cp2"),
        ("apiservers", "cp3"),
        ("apiservers", "BACKEND"),
        ("stats", "FRONTEND"),
    ]
    backend = states[4]
    assert backend.is_aggregate and backend.status == "UP" and backend.weight == 2
    assert backend.chkdown == 1 and backend.check_status is None
    assert states[0].status == "OPEN" and states[0].is_up


def test_parse_stats_no_check_servers() -> None:
    states = parse_stats_csv(STATS_CSV_NO_CHECK)
    assert [s.status for s in states] == ["no check", "no check"]
    assert all(s.is_up for s in states)
    assert all(s.check_status is None and s.downtime_s is None and s.chkfail is None for s in states)


def test_parse_stats_without_type_column_uses_names() -> None:
    text = "# pxname,svname,status,downtime,\napiservers,cp1,UP,0,\napiservers,BACKEND,UP,0,\n"
    assert [s.server for s in parse_stats_csv(text)] == ["cp1"]
    assert [s.server for s in parse_stats_csv(text, include_aggregates=True)] == ["cp1", "BACKEND"]


def test_parse_stats_quoted_field_with_comma() -> None:
    text = '# pxname,svname,status,type,check_status,\napiservers,"cp,1",DOWN,2,L6RSP,\n'
    (state,) = parse_stats_csv(text)
    assert (state.server, state.status, state.check_status) == ("cp,1", "DOWN", "L6RSP")


@pytest.mark.parametrize("reply", ["", "Unknown command. Please enter one of the following commands only :\n"])
def test_parse_stats_rejects_non_stats_reply(reply: str) -> None:
    with pytest.raises(ClusterError, match="no '# pxname"):
        parse_stats_csv(reply)


# --- stats socket ----------------------------------------------------------------------------


@pytest.fixture
def unix_server(tmp_path: Path) -> Iterator[Callable[[Callable[[socket.socket], None]], Path]]:
    """Serve one connection on a UNIX socket with `handler`, in a thread."""
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def start(handler: Callable[[socket.socket], None]) -> Path:
        path = tmp_path / "s.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        listener.settimeout(5)
        listeners.append(listener)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                handler(conn)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return path

    yield start
    for thread in threads:
        thread.join(timeout=5)
    for listener in listeners:
        listener.close()


def test_stats_over_socket_sends_show_stat(
    unix_server: Callable[[Callable[[socket.socket], None]], Path],
) -> None:
    received: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        data = b""
        while not data.endswith(b"\n"):
            data += conn.recv(1024)
        received.append(data)
        # HAProxy streams the reply, then closes: send it in pieces.
        payload = STATS_CSV.encode()
        for i in range(0, len(payload), 100):
            conn.sendall(payload[i : i + 100])

    text = stats_over_socket(unix_server(handler), timeout=5)
    assert received == [b"show stat\n"]
    assert text == STATS_CSV
    assert len(parse_stats_csv(text)) == 3


def test_stats_over_socket_timeout_bounds_whole_exchange(
    unix_server: Callable[[Callable[[socket.socket], None]], Path],
) -> None:
    def handler(conn: socket.socket) -> None:
        # Trickle bytes without ever closing: per-read timeouts alone would never fire.
        for _ in range(30):
            try:
                conn.sendall(b"#")
            except OSError:
                return
            time.sleep(0.05)

    path = unix_server(handler)
    start = time.monotonic()
    with pytest.raises(ClusterError, match=r"within 0\.5s"):
        stats_over_socket(path, timeout=0.5)
    assert time.monotonic() - start < 1.2


def test_stats_over_socket_missing(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="does not exist"):
        stats_over_socket(tmp_path / "nope.sock", timeout=0.5)


def test_stats_over_socket_stale_file(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))  # the file stays after close, with nothing listening
    with pytest.raises(ClusterError, match="no longer running"):
        stats_over_socket(path, timeout=0.5)
