"""The cluster's whole life against real processes: up, status, down, crashes, signals, bad input.

Every test brings up (or refuses to bring up) its own cluster with a name derived from the
session's (`--kq-set name=...`) and its own loopback block, so it never touches the session
cluster of the other integration tests nor anyone else's cluster on the machine. What "leaves
nothing" means is checked the way an operator would: /proc for processes and listening sockets,
`iptables -S` for rules, the filesystem for the run directory and the node cgroups.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import binaries
from harness import config as kqconfig
from harness.config import ClusterConfig
from harness.providers.base import Component
from harness.providers.cgroups import ROOT_NAME, cgroup2_mount
from harness.providers.haproxy import parse_stats_csv, stats_over_socket
from harness.providers.local import LocalCluster
from harness.providers.netfilter import Netfilter, drop_to
from harness.providers.process import Supervisor
from harness.pytest_plugin import BASE_CONFIG, worker_index
from harness.status import etcd_client, wait_healthy

pytestmark = pytest.mark.timeout(420)

# Blocks base+10.. keep clear of the session cluster (base) and of xdist workers (base+1..).
BLOCK_OFFSET = 10
SLOTS_PER_WORKER = 10
UP_TIMEOUT_S = 180


# --- observing the machine --------------------------------------------------------------------


def cluster_addresses(cfg: ClusterConfig) -> set[str]:
    return {cfg.lb_address, *(cfg.node_address(i) for i in range(1, cfg.control_planes + 1))}


def listeners(addresses: set[str]) -> list[str]:
    """Listening TCP sockets on any of these addresses, from /proc/net/tcp."""
    found: list[str] = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[3] != "0A":  # TCP_LISTEN
            continue
        hex_ip, hex_port = parts[1].split(":")
        ip = ".".join(str(int(hex_ip[i : i + 2], 16)) for i in (6, 4, 2, 0))
        if ip in addresses:
            found.append(f"{ip}:{int(hex_port, 16)}")
    return sorted(found)


def processes_naming(path: Path) -> list[str]:
    """Live processes (not zombies) whose command line names this directory."""
    marker = str(path)
    out: list[str] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmd and (marker + "/" in cmd or cmd.endswith(marker)):
            out.append(f"pid {entry.name}: {cmd[:160]}")
    return out


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def iptables_mentions(cfg: ClusterConfig) -> list[str]:
    """Rules in any table that name one of the cluster's addresses or its own chain."""
    iptables = shutil.which("iptables")
    assert iptables, "iptables is not installed (make system-packages installs it)"
    patterns = [re.compile(r"(?<![\d.])" + re.escape(a) + r"(?![\d])") for a in cluster_addresses(cfg)]
    patterns.append(re.compile(re.escape(Netfilter(cfg.name).chain) + r"\b"))
    hits: list[str] = []
    for table in ("filter", "nat", "mangle", "raw"):
        res = subprocess.run(
            [iptables, "-w", "5", "-t", table, "-S"], capture_output=True, text=True, timeout=15, check=False
        )
        assert res.returncode == 0, f"iptables -t {table} -S failed: {res.stderr}"
        hits += [f"{table}: {line}" for line in res.stdout.splitlines() if any(p.search(line) for p in patterns)]
    return hits


def leftover_cgroups(cfg: ClusterConfig) -> list[str]:
    mount = cgroup2_mount()
    if mount is None:
        return []
    base = mount / ROOT_NAME / cfg.name
    return [str(base)] if base.exists() else []


def assert_nothing_left(cfg: ClusterConfig, pids: list[int] | None = None) -> None:
    __tracebackhide__ = True
    assert processes_naming(cfg.run_dir) == [], "processes of the cluster still run"
    if pids:
        assert [p for p in pids if pid_alive(p)] == [], "recorded component pids still alive"
    assert listeners(cluster_addresses(cfg)) == [], "something still listens on the cluster's addresses"
    assert not cfg.run_dir.exists(), f"run directory {cfg.run_dir} is still there"
    assert iptables_mentions(cfg) == [], "iptables rules of the cluster are still there"
    assert leftover_cgroups(cfg) == [], "node cgroups of the cluster are still there"


def eventually(what: str, check: Callable[[], object], timeout: float, interval: float = 0.1) -> float:
    __tracebackhide__ = True
    start = time.monotonic()
    last: object = None
    while time.monotonic() - start < timeout:
        last = check()
        if last:
            return time.monotonic() - start
        time.sleep(interval)
    pytest.fail(f"{what} not reached within {timeout:.0f}s (last: {last!r})")


def recorded_pids(cfg: ClusterConfig) -> dict[str, int]:
    sup = Supervisor(cfg.run_dir / "processes.json", die_with_parent=False)
    return {r.key: r.pid for r in sup.records()}


# --- configurations and the CLI ---------------------------------------------------------------


@pytest.fixture
def make_config(request: pytest.FixtureRequest) -> Callable[..., ClusterConfig]:
    """A validated config named `<session name>-<suffix>` on its own address block."""
    base: ClusterConfig = request.config.stash[BASE_CONFIG]

    def make(suffix: str, slot: int, **settings: object) -> ClusterConfig:
        block = base.address_block + BLOCK_OFFSET + SLOTS_PER_WORKER * worker_index() + slot
        values = kqconfig.flatten(base.to_dict())
        values.update(name=f"{base.name}-{suffix}", address_block=block, **settings)
        return kqconfig.build(values)

    return make


def cli_sets(cfg: ClusterConfig) -> list[str]:
    """--set flags that reproduce `cfg` on the command line (every key that differs from the default)."""
    defaults = kqconfig.flatten(ClusterConfig().to_dict())
    out: list[str] = []
    for key, value in kqconfig.flatten(cfg.to_dict()).items():
        if value != defaults[key]:
            out += ["--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return out


def kubequake_argv() -> list[str]:
    script = Path(sys.executable).parent / "kubequake"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "harness.cli"]


@pytest.fixture
def cli_cwd(tmp_path: Path) -> Path:
    # Never inherit a kubequake.toml from wherever pytest was started.
    d = tmp_path / "cwd"
    d.mkdir()
    return d


def kq(
    cwd: Path, *args: str, timeout: float = UP_TIMEOUT_S + 30, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [*kubequake_argv(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    assert "Traceback" not in res.stderr, f"kubequake {' '.join(args)} showed a traceback:\n{res.stderr}"
    return res


def down(cwd: Path, cfg: ClusterConfig) -> subprocess.CompletedProcess[str]:
    return kq(cwd, "down", "--set", f"name={cfg.name}", timeout=60)


class LineReader:
    """Collects a child's output on a thread so waits for a line have a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self._stream = proc.stdout
        self._lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self._stream:
            self._lines.put(line)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.01, min(0.5, deadline - time.monotonic())))
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return True
        return False

    def drain(self) -> str:
        while True:
            try:
                self.seen.append(self._lines.get_nowait())
            except queue.Empty:
                return "".join(self.seen)


def spawn(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    def default_sigint() -> None:
        # A background shell starts children with SIGINT ignored; a user's Ctrl-C is not.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )


@pytest.fixture
def reaper() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)


# --- down leaves nothing ----------------------------------------------------------------------


def test_down_leaves_no_process_port_rule_cgroup_or_directory(make_config: Callable[..., ClusterConfig]) -> None:
    cfg = make_config("down", 0)
    cluster = LocalCluster(cfg, binaries.ensure(), detached=False)
    addresses = cluster_addresses(cfg)
    stray: subprocess.Popen[bytes] | None = None
    try:
        cluster.create(timeout=UP_TIMEOUT_S)
        pids = [r.pid for r in cluster.supervisor.records()]
        # The things looked for afterwards must really be there now, or their absence proves nothing.
        assert len(pids) == 4 * cfg.control_planes + 2
        assert all(pid_alive(p) for p in pids)
        listening = listeners(addresses)
        assert f"{cfg.lb_address}:{cfg.load_balancer.port}" in listening
        for i in range(1, cfg.control_planes + 1):
            a = cfg.node_address(i)
            assert {f"{a}:{cfg.etcd.client_port}", f"{a}:{cfg.etcd.peer_port}", f"{a}:{cfg.apiserver.port}"} <= set(
                listening
            )
        # What a crashed run leaves that the state file does not know: a process started but never
        # recorded, and a fault's firewall rule that was never healed.
        stray = subprocess.Popen(["tail", "-f", str(cluster.log_path("cp1", Component.ETCD))])
        Netfilter(cfg.name).add([*drop_to(cfg.node_address(cfg.control_planes)), "-p", "udp", "--dport", "9"])
        assert iptables_mentions(cfg), "the planted rule is not visible to iptables -S"
        assert processes_naming(cfg.run_dir)
    finally:
        cluster.destroy()
        if stray is not None:
            stray.wait(10)
    assert stray is not None
    assert stray.returncode == -signal.SIGKILL, "a process naming the run directory survived down"
    assert_nothing_left(cfg, pids)
    # destroy is safe twice, from the same handle and from a fresh one (another process's `down`).
    cluster.destroy()
    LocalCluster(cfg, detached=True).destroy()
    assert_nothing_left(cfg, pids)


# --- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("control_planes", "slot"), [(1, 1), (5, 2)], ids=["1cp", "5cp"])
def test_other_control_plane_counts_come_up_healthy(
    make_config: Callable[..., ClusterConfig], control_planes: int, slot: int
) -> None:
    cfg = make_config(f"cp{control_planes}", slot, control_planes=control_planes, workers=1)
    cluster = LocalCluster(cfg, binaries.ensure(), detached=False)
    try:
        cluster.create(timeout=UP_TIMEOUT_S + 60 * (control_planes > 3))
        st = wait_healthy(cluster, timeout=120)
        names = [f"cp{i}" for i in range(1, control_planes + 1)]
        # Membership as etcd itself reports it, not as the harness configured it.
        assert etcd_client(cluster).members() == names
        assert [m.name for m in st.etcd.members] == names
        assert all(m.healthy for m in st.etcd.members)
        assert sum(m.leader for m in st.etcd.members) == 1
        assert st.etcd.quorum and st.etcd.size == control_planes
        assert [a.node for a in st.apiservers if a.ready] == names
        assert st.leaders["kube-controller-manager"] in names
        assert st.leaders["kube-scheduler"] in names
        assert [(w.name, w.ready) for w in st.workers] == [("worker1", True)]
        assert st.load_balancer.ready
        backends = [
            r for r in parse_stats_csv(stats_over_socket(cluster.haproxy_stats_socket())) if r.proxy == "apiservers"
        ]
        assert sorted(r.server for r in backends) == names
        assert all(r.status.startswith("UP") for r in backends), backends
    finally:
        cluster.destroy()
    assert_nothing_left(cfg)


# --- a crashed owner ----------------------------------------------------------------------------

OWNER = """
import json, sys, time
from harness import binaries, config
from harness.providers.local import LocalCluster
cfg = config.build(json.loads(sys.argv[1]))
cluster = LocalCluster(cfg, binaries.locate(), detached=False)
cluster.create(timeout=float(sys.argv[2]))
print("READY", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("cleanup", ["down", "up"])
def test_a_sigkilled_owner_takes_its_cluster_along_and_the_next_run_cleans_up(
    make_config: Callable[..., ClusterConfig], cli_cwd: Path, reaper: list[subprocess.Popen[str]], cleanup: str
) -> None:
    cfg = make_config("crash", 3, workers=1)
    binaries.ensure()
    owner = spawn(
        [sys.executable, "-c", OWNER, json.dumps(kqconfig.flatten(cfg.to_dict())), str(UP_TIMEOUT_S)], cli_cwd
    )
    reaper.append(owner)
    out = LineReader(owner)
    try:
        assert out.wait_for("READY", UP_TIMEOUT_S + 10), f"the owner never got its cluster up:\n{out.drain()}"
        pids = recorded_pids(cfg)
        assert len(pids) == 4 * cfg.control_planes + 2 and all(pid_alive(p) for p in pids.values())
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        # PR_SET_PDEATHSIG: the kernel kills every component with its owner, no cleanup code runs.
        # A killed Go process keeps its sockets until its last thread has exited, so wait for both.
        eventually(
            "every component dead and its sockets closed after its owner was SIGKILLed",
            lambda: not [k for k, p in pids.items() if pid_alive(p)] and not listeners(cluster_addresses(cfg)),
            timeout=5,
        )
        # The crash left its run directory and state file: the next `down` or `up` clears them.
        assert (cfg.run_dir / "processes.json").is_file()
        if cleanup == "down":
            res = down(cli_cwd, cfg)
            assert res.returncode == 0, res.stderr
            assert "stopped and removed" in res.stdout
        else:
            res = kq(cli_cwd, "up", *cli_sets(cfg))
            assert res.returncode == 0, res.stderr
            new = recorded_pids(cfg)
            assert new and not set(new.values()) & set(pids.values())
            res = down(cli_cwd, cfg)
            assert res.returncode == 0, res.stderr
    finally:
        if owner.poll() is None:
            owner.kill()
        down(cli_cwd, cfg)
    assert_nothing_left(cfg)


# --- signals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_up_in_the_foreground_stops_everything_and_exits(
    make_config: Callable[..., ClusterConfig],
    cli_cwd: Path,
    reaper: list[subprocess.Popen[str]],
    sig: signal.Signals,
) -> None:
    cfg = make_config("fg", 4, workers=1)
    proc = spawn([*kubequake_argv(), "up", "--foreground", *cli_sets(cfg)], cli_cwd)
    reaper.append(proc)
    out = LineReader(proc)
    try:
        assert out.wait_for("running in the foreground", UP_TIMEOUT_S + 10), out.drain()
        pids = list(recorded_pids(cfg).values())
        assert len(pids) == 4 * cfg.control_planes + 2
        proc.send_signal(sig)
        rc = proc.wait(30)
        text = out.drain()
        assert rc == 0, f"exit code {rc} after {sig.name}:\n{text}"
        assert "stopping" in text
        assert "Traceback" not in text
        assert_nothing_left(cfg, pids)
    finally:
        if proc.poll() is None:
            proc.kill()
        down(cli_cwd, cfg)


def test_down_from_another_process_stops_a_foreground_cluster_for_good(
    make_config: Callable[..., ClusterConfig], cli_cwd: Path, reaper: list[subprocess.Popen[str]]
) -> None:
    # The foreground owner runs a watchdog that restarts components which exit by themselves;
    # components stopped by `down` must stay down, not be brought back before the directory goes.
    cfg = make_config("fg", 4, workers=1)
    proc = spawn([*kubequake_argv(), "up", "--foreground", *cli_sets(cfg)], cli_cwd)
    reaper.append(proc)
    out = LineReader(proc)
    try:
        assert out.wait_for("running in the foreground", UP_TIMEOUT_S + 10), out.drain()
        pids = list(recorded_pids(cfg).values())
        res = down(cli_cwd, cfg)
        assert res.returncode == 0, res.stderr
        time.sleep(4)  # several watchdog periods and its first restart backoff
        assert_nothing_left(cfg, pids)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        down(cli_cwd, cfg)
    assert_nothing_left(cfg)


def test_sigterm_during_a_detached_start_up_stops_what_was_started(
    make_config: Callable[..., ClusterConfig], cli_cwd: Path, reaper: list[subprocess.Popen[str]]
) -> None:
    cfg = make_config("fg", 4, workers=1)
    proc = spawn([*kubequake_argv(), "up", *cli_sets(cfg)], cli_cwd)
    reaper.append(proc)
    out = LineReader(proc)
    try:
        # Signal as soon as the first components run: the cluster is half started.
        eventually(
            "etcd started", lambda: any(k.endswith("/etcd") for k in recorded_pids(cfg)), timeout=60, interval=0.02
        )
        started = list(recorded_pids(cfg).values())
        assert proc.poll() is None, "start-up finished before the signal; nothing half-started to test"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        text = out.drain()
        assert rc == 130, f"exit code {rc}:\n{text}"
        assert "interrupted" in text and "Traceback" not in text
        assert_nothing_left(cfg, started)
    finally:
        if proc.poll() is None:
            proc.kill()
        down(cli_cwd, cfg)


# --- the detached CLI and its status contract ---------------------------------------------------


def test_detached_up_status_json_kubeconfig_logs_and_a_quick_down(
    make_config: Callable[..., ClusterConfig], cli_cwd: Path
) -> None:
    cfg = make_config("cli", 5, workers=2)
    try:
        res = kq(cli_cwd, "up", *cli_sets(cfg))
        assert res.returncode == 0, res.stderr
        assert f"kubeconfig: {cfg.run_dir / 'admin.conf'}" in res.stdout
        # The cluster outlives the command that started it.
        pids = recorded_pids(cfg)
        assert len(pids) == 4 * cfg.control_planes + 2 and all(pid_alive(p) for p in pids.values())

        # status --json needs only the name: the running cluster's recorded settings win.
        res = kq(cli_cwd, "status", "--json", "--set", f"name={cfg.name}", timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        check_status_contract(json.loads(res.stdout), cfg, pids)

        res = kq(cli_cwd, "kubeconfig", "--set", f"name={cfg.name}", timeout=30)
        assert res.returncode == 0, res.stderr
        path = Path(res.stdout.strip())
        assert path.is_file()
        assert f"server: https://{cfg.lb_address}:{cfg.load_balancer.port}" in path.read_text()

        res = kq(cli_cwd, "logs", "cp1", "etcd", "--tail", "5", "--set", f"name={cfg.name}", timeout=30)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert len(lines) == 5 and all(line.strip() for line in lines), res.stdout

        # A component that exits by itself comes back, as under a kubelet: `up` left a watchdog
        # process behind that outlives it, and `down` below must take it along.
        victim = pids["cp1/kube-scheduler"]
        os.kill(victim, signal.SIGKILL)

        def restarted() -> bool:
            pid = recorded_pids(cfg).get("cp1/kube-scheduler")
            return pid is not None and pid != victim and pid_alive(pid)

        eventually("cp1/kube-scheduler restarted by the detached watchdog", restarted, timeout=20)
        pids = recorded_pids(cfg)

        start = time.monotonic()
        res = down(cli_cwd, cfg)
        took = time.monotonic() - start
        assert res.returncode == 0, res.stderr
        assert took < 5.0, f"kubequake down took {took:.1f}s (limit 5 s)"
        assert_nothing_left(cfg, list(pids.values()))

        res = kq(cli_cwd, "status", "--json", "--set", f"name={cfg.name}", timeout=30)
        assert res.returncode == 1 and json.loads(res.stdout) == {"name": cfg.name, "running": False}
        assert not cfg.run_dir.exists(), "status of a stopped cluster created its run directory"
    finally:
        down(cli_cwd, cfg)


def check_status_contract(data: dict[str, object], cfg: ClusterConfig, pids: dict[str, int]) -> None:
    __tracebackhide__ = True
    cps = [f"cp{i}" for i in range(1, cfg.control_planes + 1)]
    nodes = data["nodes"]
    assert isinstance(nodes, list)
    by_name = {n["name"]: n for n in nodes}
    assert set(by_name) == {"lb", "workers", *cps}
    assert by_name["lb"]["role"] == "load-balancer" and by_name["lb"]["address"] == cfg.lb_address
    for i, name in enumerate(cps, start=1):
        n = by_name[name]
        assert n["role"] == "control-plane" and n["address"] == cfg.node_address(i)
        assert set(n["components"]) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
    for n in nodes:
        for comp, st in n["components"].items():
            assert set(st) >= {"state", "pid"}
            assert st["state"] == "running", f"{n['name']}/{comp}: {st}"
            assert st["pid"] == pids[f"{n['name']}/{comp}"]
    etcd = data["etcd"]
    assert isinstance(etcd, dict)
    assert [m["name"] for m in etcd["members"]] == cps
    for m in etcd["members"]:
        assert m["healthy"] is True and isinstance(m["leader"], bool)
    assert sum(m["leader"] for m in etcd["members"]) == 1
    assert etcd["quorum"] is True
    assert data["apiservers"] == [{"node": n, "ready": True} for n in cps]
    assert data["load_balancer"] == {"address": cfg.lb_address, "ready": True}
    leaders = data["leaders"]
    assert isinstance(leaders, dict)
    assert leaders["kube-controller-manager"] in cps and leaders["kube-scheduler"] in cps
    assert data["workers"] == [{"name": f"worker{i}", "ready": True} for i in range(1, cfg.workers + 1)]
    versions = data["versions"]
    assert isinstance(versions, dict)
    assert versions["kubernetes"] == binaries.KUBERNETES_VERSION
    assert versions["etcd"] == binaries.ETCD_VERSION
    assert versions["kwok"] == binaries.KWOK_VERSION
    assert re.fullmatch(r"\d+\.\d+\.\S+", str(versions["haproxy"])), versions


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["no_such_key=1"], "unknown setting 'no_such_key'"),
        (["heartbeat_ms=100"], "did you mean etcd.heartbeat_ms"),
        (["control_planes=three"], "control_planes"),
        (["control_planes=0"], "control_planes=0"),
        (["workers=-1"], "workers=-1"),
        (["etcd.election_timeout_ms=200"], "at least 5x etcd.heartbeat_ms"),
        (["leader_election.enabled=maybe"], "expected true or false"),
        (["control_planes"], "expected key=value"),
    ],
)
def test_bad_settings_are_refused_with_a_message(
    make_config: Callable[..., ClusterConfig], cli_cwd: Path, sets: list[str], expected: str
) -> None:
    cfg = make_config("bad", 8)
    args = ["up", "--set", f"name={cfg.name}", "--set", f"address_block={cfg.address_block}"]
    for s in sets:
        args += ["--set", s]
    res = kq(cli_cwd, *args, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert expected in res.stderr
    assert res.stderr.startswith("kubequake up: error:")
    assert not cfg.run_dir.exists()
    assert listeners(cluster_addresses(cfg)) == []


def test_missing_binaries_say_how_to_build_them(
    make_config: Callable[..., ClusterConfig], cli_cwd: Path, tmp_path: Path
) -> None:
    cfg = make_config("nobin", 8)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {**os.environ, "KUBEQUAKE_BIN_DIR": str(empty)}
    res = kq(cli_cwd, "up", *cli_sets(cfg), env=env, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "kubequake binaries" in res.stderr
    assert str(empty / "kube-apiserver") in res.stderr
    assert_nothing_left(cfg)


def test_a_component_that_dies_at_start_up_fails_up_at_once_with_its_log(
    make_config: Callable[..., ClusterConfig], cli_cwd: Path, tmp_path: Path
) -> None:
    cfg = make_config("dies", 8, workers=1)
    real = binaries.ensure()
    assert real.stage_dir is not None
    # The real binaries, except an apiserver that refuses to start, laid out as KUBEQUAKE_BIN_DIR expects.
    bin_dir = tmp_path / "bins" / "bin"
    bin_dir.mkdir(parents=True)
    (tmp_path / "bins" / "stages").symlink_to(real.stage_dir)
    for name, path in real.paths.items():
        (bin_dir / name).symlink_to(path)
    (bin_dir / "kube-apiserver").unlink()
    (bin_dir / "kube-apiserver").write_text("#!/bin/sh\necho 'E0000 fake apiserver: cannot start' >&2\nexit 1\n")
    (bin_dir / "kube-apiserver").chmod(0o755)
    env = {**os.environ, "KUBEQUAKE_BIN_DIR": str(bin_dir)}
    start = time.monotonic()
    res = kq(cli_cwd, "up", "--timeout", "120", *cli_sets(cfg), env=env)
    took = time.monotonic() - start
    try:
        assert res.returncode == 2, res.stdout + res.stderr
        assert "kube-apiserver exited during start-up" in res.stderr
        assert "fake apiserver: cannot start" in res.stderr, "the message lacks the component's last log lines"
        # Failing fast is the behaviour under test, not a performance figure: the wait must end when
        # the process does, not when the 120 s start-up timeout runs out.
        assert took < 60, f"up took {took:.0f}s to notice a component that exited at once"
        assert_nothing_left(cfg)
    finally:
        down(cli_cwd, cfg)


def test_a_taken_port_is_named_with_its_process_and_nothing_is_left_running(
    make_config: Callable[..., ClusterConfig], cli_cwd: Path
) -> None:
    cfg = make_config("port", 7, workers=1)
    binaries.ensure()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((cfg.lb_address, cfg.load_balancer.port))
        squatter.listen(1)
        res = kq(cli_cwd, "up", *cli_sets(cfg), timeout=60)
        assert res.returncode == 2, res.stdout + res.stderr
        where = f"{cfg.lb_address}:{cfg.load_balancer.port}"
        assert where in res.stderr
        assert f"pid {os.getpid()}" in res.stderr, "the message does not name the process holding the port"
        assert "address_block" in res.stderr, "the message does not say how to get out of the way"
        assert processes_naming(cfg.run_dir) == []
        assert listeners(cluster_addresses(cfg)) == [where]
    assert_nothing_left(cfg)


def test_even_etcd_membership_is_allowed_with_a_quorum_warning(
    make_config: Callable[..., ClusterConfig], cli_cwd: Path
) -> None:
    # No workers either: a cluster without KWOK is healthy too, not "kwok stopped".
    cfg = make_config("even", 7, control_planes=2, workers=0)
    try:
        res = kq(cli_cwd, "up", *cli_sets(cfg))
        assert res.returncode == 0, res.stderr
        output = res.stdout + res.stderr
        assert "control_planes=2 is even" in output and "quorum" in output
        res = kq(cli_cwd, "status", "--json", "--set", f"name={cfg.name}", timeout=60)
        data = json.loads(res.stdout)
        assert res.returncode == 0 and data["healthy"] is True, res.stdout
        assert [m["name"] for m in data["etcd"]["members"]] == ["cp1", "cp2"]
        assert data["etcd"]["quorum"] is True
        assert [n["name"] for n in data["nodes"]] == ["lb", "cp1", "cp2"]
        assert data["workers"] == []
    finally:
        down(cli_cwd, cfg)
    assert_nothing_left(cfg)


@pytest.fixture(scope="module")
def running_cli_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ClusterConfig, Path]]:
    """One detached cluster (via the CLI) shared by the tests that need something to collide with."""
    base: ClusterConfig = request.config.stash[BASE_CONFIG]
    values = kqconfig.flatten(base.to_dict())
    block = base.address_block + BLOCK_OFFSET + SLOTS_PER_WORKER * worker_index() + 6
    values.update(name=f"{base.name}-busy", address_block=block, workers=1)
    cfg = kqconfig.build(values)
    cwd = tmp_path_factory.mktemp("busy")
    try:
        res = kq(cwd, "up", *cli_sets(cfg))
        assert res.returncode == 0, res.stderr
        yield cfg, cwd
    finally:
        down(cwd, cfg)
    assert_nothing_left(cfg)


def test_a_second_up_with_other_settings_is_refused_and_the_first_is_untouched(
    running_cli_cluster: tuple[ClusterConfig, Path],
) -> None:
    cfg, cwd = running_cli_cluster
    before = recorded_pids(cfg)
    changed = dataclasses.replace(cfg, workers=cfg.workers + 1)
    res = kq(cwd, "up", *cli_sets(changed), timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "already running" in res.stderr
    assert f"kubequake down --set name={cfg.name}" in res.stderr
    assert recorded_pids(cfg) == before
    assert all(pid_alive(p) for p in before.values())
    res = kq(cwd, "status", "--set", f"name={cfg.name}", timeout=60)
    assert res.returncode == 0 and "HEALTHY" in res.stdout, res.stdout + res.stderr
    # The same settings again: reused as it is, not restarted.
    res = kq(cwd, "up", *cli_sets(cfg), timeout=60)
    assert res.returncode == 0, res.stderr
    assert recorded_pids(cfg) == before


def test_another_cluster_on_the_same_addresses_names_the_process_in_the_way(
    running_cli_cluster: tuple[ClusterConfig, Path], make_config: Callable[..., ClusterConfig]
) -> None:
    cfg, cwd = running_cli_cluster
    before = recorded_pids(cfg)
    intruder = dataclasses.replace(cfg, name=f"{cfg.name}-2")
    res = kq(cwd, "up", *cli_sets(intruder), timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"{cfg.lb_address}:{cfg.load_balancer.port}" in res.stderr
    assert f"haproxy (pid {before['lb/haproxy']})" in res.stderr
    assert not intruder.run_dir.exists()
    assert recorded_pids(cfg) == before and all(pid_alive(p) for p in before.values())


@pytest.mark.parametrize(
    ("node", "component", "expected"),
    [
        ("cp9", "etcd", "no node 'cp9'; this cluster has lb, cp1"),
        ("cp1", "kube-nothing", "unknown component 'kube-nothing'"),
        ("cp1", "kubelet", "cp1 does not run kubelet; it runs etcd"),
        ("lb", "etcd", "lb does not run etcd; it runs haproxy"),
    ],
)
def test_logs_of_an_unknown_node_or_component_is_an_error(
    running_cli_cluster: tuple[ClusterConfig, Path], node: str, component: str, expected: str
) -> None:
    cfg, cwd = running_cli_cluster
    res = kq(cwd, "logs", node, component, "--set", f"name={cfg.name}", timeout=30)
    assert res.returncode == 2, res.stdout + res.stderr
    assert expected in res.stderr
    assert res.stdout == ""
