"""The vagrant provider's pure parts: topology validation, Vagrant output parsing, CLI deadlines,
and how component faults map to commands on a real node.

The Vagrant outputs under vagrant_output/ were produced by Vagrant 2.3.4 (Debian bookworm):
status with the vagrant-libvirt provider, errors with an unusable VirtualBox provider and an
unknown machine, and ssh-config from a provider plugin that reports running machines.
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import binaries
from harness.errors import ClusterError, ConfigError, FaultError
from harness.providers.base import Component, Role
from harness.providers.remote import (
    PARKED_DIR,
    PARTITION_CHAIN,
    ComponentControl,
    RemoteNode,
    RunsAs,
    controls_for,
    partition_rules,
)
from harness.providers.topology import DEFAULT_TOPOLOGY, NodeRole, load_topology, parse_topology
from harness.providers.vagrant import (
    VagrantCLI,
    VagrantError,
    parse_machine_readable,
    parse_ssh_config,
    parse_status,
)
from harness.transport.base import CommandResult

OUTPUT = Path(__file__).parent / "vagrant_output"


def output(name: str) -> str:
    return (OUTPUT / name).read_text()


# -- topology ---------------------------------------------------------------------------------
def default_data() -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    assert isinstance(data, dict)
    return data


def test_default_topology_is_two_lbs_three_control_planes_and_workers() -> None:
    t = load_topology(DEFAULT_TOPOLOGY)
    assert [n.name for n in t.load_balancers()] == ["lb1", "lb2"]
    assert [n.name for n in t.control_planes()] == ["cp1", "cp2", "cp3"]
    assert len(t.workers()) >= 2
    assert t.init_node.name == "cp1"
    assert t.api_url == f"https://{t.network.vip}:6443"
    assert t.node("cp2").role is NodeRole.CONTROL_PLANE
    assert t.node("lb1").role.role is Role.LOAD_BALANCER
    assert t.node("w1").role.role is Role.WORKERS


def test_vagrant_cluster_runs_the_kubernetes_release_the_local_cluster_builds() -> None:
    assert load_topology(DEFAULT_TOPOLOGY).kubernetes_version == binaries.KUBERNETES_VERSION


def test_the_vagrant_cluster_keeps_the_cluster_contract(tmp_path: Path) -> None:
    from harness.providers.vagrant import VagrantCluster

    t = load_topology(DEFAULT_TOPOLOGY)
    c = VagrantCluster(t, root=tmp_path, run_dir=tmp_path / "run", cli=VagrantCLI(tmp_path, executable=["true"]))
    # Clients go through the VIP; each node is reached on its private address, as kubeadm binds it.
    assert c.lb_url() == t.api_url
    assert c.apiserver_url("cp2") == f"https://{t.node('cp2').ip}:6443"
    assert c.etcd_url("cp3") == f"https://{t.node('cp3').ip}:2379"
    assert [n.name for n in c.control_planes()] == ["cp1", "cp2", "cp3"]
    assert [n.name for n in c.load_balancers()] == ["lb1", "lb2"]
    # Budgets follow kubeadm's defaults, with the topology's member count.
    assert (c.cfg.control_planes, c.cfg.workers, c.cfg.leader_election.lease_duration_s) == (3, 0, 15)
    assert c.metrics_url("cp1", Component.SCHEDULER) is None  # bound to the node's loopback


def test_topology_path_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = default_data()
    data["name"] = "other"
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("KUBEQUAKE_TOPOLOGY", str(path))
    t = load_topology()
    assert t.name == "other"
    assert t.source == str(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("box"), r"box: missing"),
        (lambda d: d.update(provider="vmware"), r"provider: 'vmware': choose one of virtualbox, libvirt"),
        (lambda d: d.update(kubernetes_version="1.36"), r"kubernetes_version: '1.36': pin a release"),
        (lambda d: d["nodes"][1].update(name="lb1"), r"nodes\[1\].name: 'lb1' is already nodes\[0\]"),
        (lambda d: d["nodes"][3].update(ip="192.168.56.21"), r"nodes\[3\].ip: 192.168.56.21 is already used by cp1"),
        (
            lambda d: d["nodes"][0].update(ip="192.168.56.10"),
            r"nodes\[0\].ip: 192.168.56.10 is already used by network",
        ),
        (lambda d: d["nodes"][0].update(ip="10.0.0.5"), r"outside 192.168.56.0/24, the VIP's network"),
        (lambda d: d["nodes"][0].update(role="master"), r"nodes\[0\].role: 'master': choose one of"),
        (lambda d: d["nodes"][2].update(memory_mb=1024), r"control-plane cp1 has cpus=2, memory_mb=1024"),
        (lambda d: d["nodes"][2].update(cpus="two"), r"nodes\[2\].cpus: expected a whole number, got 'two'"),
        (lambda d: d["nodes"][4].update(name="CP_3"), r"'CP_3': use lowercase letters"),
        (lambda d: d["network"].update(pod_cidr="10.96.0.0/16"), r"overlaps service_cidr"),
        (lambda d: d["network"].update(vip="192.168.56.300"), r"network.vip: '192.168.56.300' is not an IPv4"),
        (lambda d: d.update(nodes=[n for n in d["nodes"] if n["role"] != "load-balancer"]), r"no load-balancer"),
        (lambda d: d.update(nodes=[n for n in d["nodes"] if n["role"] != "control-plane"]), r"no control-plane"),
        (lambda d: d["cni"].update(name="weave"), r"cni.name: 'weave'"),
    ],
)
def test_topology_errors_name_the_key_and_the_value(mutate: Any, message: str) -> None:
    data = default_data()
    mutate(data)
    with pytest.raises(ConfigError, match=message) as info:
        parse_topology(data, "t.yaml")
    assert str(info.value).startswith("topology t.yaml: ")


def test_even_control_planes_and_a_single_lb_are_allowed_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    data = default_data()
    data["nodes"] = [n for n in data["nodes"] if n["name"] not in ("cp3", "lb2")]
    with caplog.at_level(logging.WARNING):
        t = parse_topology(data, "t.yaml")
    assert len(t.control_planes()) == 2
    assert "even etcd membership" in caplog.text
    assert "no failover partner" in caplog.text


def test_unreadable_topology_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_topology(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML"):
        load_topology(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(ConfigError, match=r"the document must be a mapping"):
        load_topology(bad)


# -- vagrant output ---------------------------------------------------------------------------
def test_machine_readable_fields_are_unescaped() -> None:
    recs = parse_machine_readable(
        "1795627038,cp1,state-human-long,one%!(VAGRANT_COMMA) two\\nthree\nnot a record line\n1795627038,,ui,info,a,b\n"
    )
    assert [(r.target, r.kind, r.data) for r in recs] == [
        ("cp1", "state-human-long", ("one, two\nthree",)),
        ("", "ui", ("info", "a", "b")),
    ]
    assert recs[0].timestamp == 1795627038


def test_status_of_a_libvirt_environment_in_vagrantfile_order() -> None:
    st = parse_status(output("status-libvirt-not-created.txt"))
    assert [(s.name, s.state, s.provider) for s in st] == [
        ("lb1", "not_created", "libvirt"),
        ("cp1", "not_created", "libvirt"),
    ]
    assert not st[0].created and not st[0].running
    assert "Libvirt domain is not created" in st[0].description


def test_status_error_exit_becomes_a_vagrant_error_with_its_class() -> None:
    with pytest.raises(VagrantError, match=r"ProviderNotUsable: The provider 'virtualbox'") as info:
        parse_status(output("status-virtualbox-unusable.txt"))
    assert info.value.error_class == "Vagrant::Errors::ProviderNotUsable"
    assert isinstance(info.value, ClusterError)
    with pytest.raises(VagrantError, match=r"MachineNotFound: The machine with the name 'nope'"):
        parse_status(output("status-machine-not-found.txt"))


def test_ssh_config_blocks_feed_ssh_targets() -> None:
    cfgs = parse_ssh_config(output("ssh-config-two-machines.txt"))
    assert sorted(cfgs) == ["cp1", "lb1"]
    cp1 = cfgs["cp1"]
    assert (cp1.hostname, cp1.port, cp1.user) == ("127.0.0.1", 2222, "vagrant")
    assert cp1.identity_files == (Path("/home/a b/.vagrant.d/insecure_private_key"),)
    assert cp1.strict_host_key_checking is False
    target = cp1.target()
    assert target.key_file == Path("/home/a b/.vagrant.d/insecure_private_key")
    assert target.host_key_checking is False
    assert str(target) == "vagrant@127.0.0.1:2222"


def test_plain_ssh_config_text_is_parsed_too() -> None:
    text = textwrap.dedent(
        """\
        Host cp2
          HostName 192.168.121.7
          User vagrant
          Port 22
          StrictHostKeyChecking no
          IdentityFile /root/.vagrant/machines/cp2/libvirt/private_key
        """
    )
    cfg = parse_ssh_config(text)["cp2"]
    assert (cfg.hostname, cfg.port) == ("192.168.121.7", 22)


def test_ssh_config_of_a_stopped_machine_is_an_error() -> None:
    with pytest.raises(VagrantError, match=r"SSHNotReady") as info:
        parse_ssh_config(output("ssh-config-not-ready.txt"))
    assert "`vagrant ssh-config` failed" in str(info.value)


# -- the command line's deadlines --------------------------------------------------------------
FAKE_VAGRANT = textwrap.dedent(
    """\
    import os, sys, time
    open(os.environ["FAKE_LOG"], "a").write(" ".join(sys.argv[1:]) + "\\n")
    mode = os.environ.get("FAKE_MODE", "ok")
    if mode == "hang":
        print("1,,ui,info,starting", flush=True)
        child = os.fork()
        time.sleep(600)
    if mode == "error":
        print("1,,error-exit,Vagrant::Errors::VagrantfileSyntaxError,There is a syntax error%!(VAGRANT_COMMA) here")
        sys.exit(1)
    if mode == "fail":
        print("boom", file=sys.stderr)
        sys.exit(3)
    print("1,cp1,provider-name,libvirt")
    print("1,cp1,state,running")
    """
)


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VagrantCLI:
    (tmp_path / "Vagrantfile").write_text("# not read by the fake\n")
    script = tmp_path / "fake_vagrant.py"
    script.write_text(FAKE_VAGRANT)
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls.log"))
    return VagrantCLI(tmp_path, executable=[sys.executable, str(script)], provider="libvirt")


def calls(cli: VagrantCLI) -> list[str]:
    return (cli.root / "calls.log").read_text().splitlines()


def test_cli_passes_machine_readable_and_the_provider(fake_cli: VagrantCLI) -> None:
    st = fake_cli.status(["cp1"])
    assert [(s.name, s.state) for s in st] == [("cp1", "running")]
    fake_cli.up(["cp1"], provision=False)
    fake_cli.halt(["cp1"], force=True)
    fake_cli.destroy()
    assert calls(fake_cli) == [
        "status cp1 --machine-readable",
        "up cp1 --provider=libvirt --no-provision --no-parallel --machine-readable",
        "halt cp1 --force --machine-readable",
        "destroy --force --machine-readable",
    ]
    assert fake_cli.env["VAGRANT_CHECKPOINT_DISABLE"] == "1"
    assert fake_cli.env["VAGRANT_DEFAULT_PROVIDER"] == "libvirt"


def test_cli_timeout_interrupts_vagrant_and_everything_it_started(
    fake_cli: VagrantCLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "hang")
    fake_cli.env["FAKE_MODE"] = "hang"
    started = time.monotonic()
    with pytest.raises(
        VagrantError,
        match=r"`vagrant up --provider=libvirt --no-parallel` did not finish within 1s and was interrupted",
    ):
        fake_cli.up(timeout=1)
    assert time.monotonic() - started < 15
    # The fake forked a child; the whole process group must be gone.
    time.sleep(0.2)
    leftovers = [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _cmdline(p).endswith(str(fake_cli.root / "fake_vagrant.py"))
    ]
    assert leftovers == []


def _cmdline(proc: Path) -> str:
    try:
        return proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def test_cli_error_exit_and_nonzero_exit_are_errors(fake_cli: VagrantCLI) -> None:
    fake_cli.env["FAKE_MODE"] = "error"
    with pytest.raises(VagrantError, match=r"VagrantfileSyntaxError: There is a syntax error, here"):
        fake_cli.status()
    fake_cli.env["FAKE_MODE"] = "fail"
    with pytest.raises(VagrantError, match=r"`vagrant halt` exited 3: boom"):
        fake_cli.halt()


def test_cli_without_a_vagrantfile_says_where_it_looked(tmp_path: Path) -> None:
    cli = VagrantCLI(tmp_path, executable=["true"])
    with pytest.raises(ClusterError, match=rf"no Vagrantfile in {tmp_path}"):
        cli.status()


def test_topology_file_is_handed_to_the_vagrantfile(tmp_path: Path) -> None:
    cli = VagrantCLI(tmp_path, topology_file=tmp_path / "t.yaml", executable=["true"])
    assert cli.env["KUBEQUAKE_TOPOLOGY"] == str(tmp_path / "t.yaml")
    assert os.environ.get("KUBEQUAKE_TOPOLOGY") != str(tmp_path / "t.yaml")


# -- component control on a real node, with a recording transport ------------------------------
class ScriptedTransport:
    """Answers commands by their first words; records every argv."""

    def __init__(self, answers: dict[str, CommandResult | list[CommandResult]] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}
        self.closed = 0

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        assert timeout > 0
        self.calls.append(argv)
        for n in (3, 2, 1):
            key = " ".join(argv[:n])
            if key in self.answers:
                a = self.answers[key]
                if isinstance(a, list):
                    return a.pop(0) if len(a) > 1 else a[0]
                return a
        return CommandResult(tuple(argv), 0, "", "", 0.0)

    def connect(self, deadline_s: float | None = None) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


def ok(stdout: str = "") -> CommandResult:
    return CommandResult((), 0, stdout, "", 0.0)


def fail(stderr: str = "", status: int = 1) -> CommandResult:
    return CommandResult((), status, "", stderr, 0.0)


def cp_node(t: ScriptedTransport, **kw: Any) -> RemoteNode:
    return RemoteNode("cp1", Role.CONTROL_PLANE, "192.168.56.21", t, controls_for(Role.CONTROL_PLANE), **kw)


def test_components_by_role() -> None:
    assert [c.component for c in controls_for(Role.LOAD_BALANCER)] == [Component.HAPROXY, Component.KEEPALIVED]
    cp = {c.component: c for c in controls_for(Role.CONTROL_PLANE)}
    assert cp[Component.ETCD].runs_as is RunsAs.STATIC_POD
    assert cp[Component.KUBELET] == ComponentControl(Component.KUBELET, RunsAs.SYSTEMD, "kubelet.service")
    sysd = {c.component: c for c in controls_for(Role.CONTROL_PLANE, RunsAs.SYSTEMD, {Component.ETCD: "etcd-main"})}
    assert sysd[Component.ETCD].unit == "etcd-main"
    assert sysd[Component.APISERVER].unit == "kube-apiserver.service"
    assert [c.component for c in controls_for(Role.WORKERS)] == [Component.KUBELET, Component.CONTAINERD]


def test_kill_static_pod_sends_sigkill_to_the_container_process() -> None:
    t = ScriptedTransport({"crictl ps": ok("abc123\n"), "crictl inspect": ok('{"info": {"pid": 4242}}')})
    cp_node(t).kill(Component.APISERVER)
    assert t.calls[0][:5] == ["crictl", "ps", "-q", "--name", "^kube-apiserver$"]
    assert "--state" in t.calls[0]
    assert t.calls[1] == ["crictl", "inspect", "abc123"]
    assert t.calls[2] == ["kill", "-KILL", "4242"]


def test_freeze_and_thaw_static_pod_signal_stop_and_cont() -> None:
    t = ScriptedTransport({"crictl ps": ok("abc\n"), "crictl inspect": ok('{"info": {"pid": 77}}')})
    n = cp_node(t)
    n.freeze(Component.ETCD)
    n.thaw(Component.ETCD)
    assert [c for c in t.calls if c[0] == "kill"] == [["kill", "-STOP", "77"], ["kill", "-CONT", "77"]]


def test_kill_without_a_running_container_is_a_fault_error() -> None:
    t = ScriptedTransport({"crictl ps": ok("")})
    with pytest.raises(FaultError, match=r"cp1: no running etcd container"):
        cp_node(t).kill(Component.ETCD)


def test_stop_static_pod_parks_its_manifest_and_waits_for_the_container_to_go() -> None:
    t = ScriptedTransport({"sh -c": ok("0 1\n"), "crictl ps": [ok("abc\n"), ok("")]})
    cp_node(t).stop(Component.SCHEDULER)
    assert ["mkdir", "-p", PARKED_DIR] in t.calls
    assert [
        "mv",
        "/etc/kubernetes/manifests/kube-scheduler.yaml",
        f"{PARKED_DIR}/kube-scheduler.yaml",
    ] in t.calls
    assert sum(c[:2] == ["crictl", "ps"] for c in t.calls) == 2


def test_start_static_pod_restores_the_parked_manifest_and_waits_for_health() -> None:
    t = ScriptedTransport({"sh -c": ok("1 0\n"), "crictl ps": ok("abc\n"), "curl": ok("200")})
    cp_node(t).start(Component.SCHEDULER, timeout=5)
    assert ["mv", f"{PARKED_DIR}/kube-scheduler.yaml", "/etc/kubernetes/manifests/kube-scheduler.yaml"] in t.calls
    assert any(c[0] == "curl" and c[-1] == "https://127.0.0.1:10259/healthz" for c in t.calls)


def test_start_without_any_manifest_says_how_to_restore_it() -> None:
    t = ScriptedTransport({"sh -c": ok("1 1\n")})
    with pytest.raises(ClusterError, match=r"neither /etc/kubernetes/manifests/etcd.yaml nor"):
        cp_node(t).start(Component.ETCD, timeout=5)


def test_systemd_components_use_systemctl() -> None:
    t = ScriptedTransport({"systemctl is-active": ok("active\n")})
    n = cp_node(t)
    n.stop(Component.KUBELET)
    n.start(Component.KUBELET, timeout=5)
    n.kill(Component.CONTAINERD)
    n.freeze(Component.KUBELET)
    n.thaw(Component.KUBELET)
    assert [c for c in t.calls if c[0] == "systemctl"] == [
        ["systemctl", "stop", "kubelet.service"],
        ["systemctl", "start", "kubelet.service"],
        ["systemctl", "is-active", "kubelet.service"],
        ["systemctl", "kill", "--signal=SIGKILL", "containerd.service"],
        ["systemctl", "freeze", "kubelet.service"],
        ["systemctl", "thaw", "kubelet.service"],
    ]


def test_failed_systemctl_is_a_fault_error_with_its_stderr() -> None:
    t = ScriptedTransport({"systemctl stop": fail("Failed to stop kubelet.service: Access denied")})
    with pytest.raises(FaultError, match=r"cp1: stop kubelet.service failed: .*Access denied"):
        cp_node(t).stop(Component.KUBELET)


def test_unknown_component_lists_what_the_node_runs() -> None:
    lb = RemoteNode("lb1", Role.LOAD_BALANCER, "192.168.56.11", ScriptedTransport(), controls_for(Role.LOAD_BALANCER))
    with pytest.raises(ClusterError, match=r"lb1 runs no etcd; its components are haproxy, keepalived"):
        lb.kill(Component.ETCD)


def test_partition_drops_both_directions_in_its_own_chain_and_heals_completely() -> None:
    assert partition_rules(["10.0.0.2"], one_way=True) == [["-d", "10.0.0.2/32", "-j", "DROP"]]
    # In call order: -S chain (absent), -N, -C INPUT (absent), -I INPUT, -C OUTPUT, -I OUTPUT,
    # then for each of the four rules -C (absent) and -A.
    t = ScriptedTransport({"iptables -w 5": [fail(), ok(), fail(), ok(), fail(), ok(), *([fail(), ok()] * 4)]})
    n = cp_node(t)
    n.partition(["192.168.56.22", "192.168.56.23"])
    ipt = [c[3:] for c in t.calls]
    assert ipt[0] == ["-S", PARTITION_CHAIN]
    assert ipt[1] == ["-N", PARTITION_CHAIN]
    assert ["-I", "INPUT", "1", "-j", PARTITION_CHAIN] in ipt
    assert ["-I", "OUTPUT", "1", "-j", PARTITION_CHAIN] in ipt
    appended = [c[1:] for c in ipt if c[0] == "-A"]
    assert appended == [
        ["KQ-PARTITION", "-d", "192.168.56.22/32", "-j", "DROP"],
        ["KQ-PARTITION", "-s", "192.168.56.22/32", "-j", "DROP"],
        ["KQ-PARTITION", "-d", "192.168.56.23/32", "-j", "DROP"],
        ["KQ-PARTITION", "-s", "192.168.56.23/32", "-j", "DROP"],
    ]
    t.calls.clear()
    # -D INPUT twice (the second finds none), the same for OUTPUT, then -S, -F, -X.
    t.answers = {"iptables -w 5": [ok(), fail(), ok(), fail(), ok(), ok(), ok()]}
    n.heal_partition()
    ipt = [c[3:] for c in t.calls]
    assert ipt == [
        ["-D", "INPUT", "-j", PARTITION_CHAIN],
        ["-D", "INPUT", "-j", PARTITION_CHAIN],
        ["-D", "OUTPUT", "-j", PARTITION_CHAIN],
        ["-D", "OUTPUT", "-j", PARTITION_CHAIN],
        ["-S", PARTITION_CHAIN],
        ["-F", PARTITION_CHAIN],
        ["-X", PARTITION_CHAIN],
    ]


def test_heal_never_loops_forever_on_a_misbehaving_iptables() -> None:
    t = ScriptedTransport({"iptables -w 5": ok()})
    with pytest.raises(FaultError, match=r"keeps succeeding"):
        cp_node(t).heal_partition(["192.168.56.22"])


def test_partition_refuses_nonsense() -> None:
    n = cp_node(ScriptedTransport())
    with pytest.raises(FaultError, match=r"at least one peer"):
        n.partition([])
    with pytest.raises(FaultError, match=r"from its own address 192.168.56.21"):
        n.partition(["192.168.56.21"])


def test_power_without_a_power_control_is_refused() -> None:
    with pytest.raises(FaultError, match=r"cp1: no power control is configured"):
        cp_node(ScriptedTransport()).power_off()


class RecordingPower:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def power_off(self, node: str) -> None:
        self.calls.append(("off", node))

    def power_on(self, node: str, timeout: float) -> None:
        self.calls.append(("on", node))


def test_power_cycle_reconnects_and_waits_for_every_component() -> None:
    t = ScriptedTransport({"systemctl is-active": ok("active\n")})
    power = RecordingPower()
    w = RemoteNode("w1", Role.WORKERS, "192.168.56.31", t, controls_for(Role.WORKERS), power=power)
    w.power_off()
    w.power_on(timeout=10)
    assert power.calls == [("off", "w1"), ("on", "w1")]
    assert t.closed == 2
    assert [c[-1] for c in t.calls if c[:2] == ["systemctl", "is-active"]] == ["kubelet.service", "containerd.service"]


def test_guard_is_asked_before_every_disruptive_action_but_never_before_healing() -> None:
    seen: list[str] = []

    def refuse(what: str) -> None:
        seen.append(what)
        raise FaultError(f"refused: {what}")

    t = ScriptedTransport({"systemctl is-active": ok("active\n"), "iptables -w 5": fail()})
    n = cp_node(t, guard=refuse, power=RecordingPower())
    for action in (
        lambda: n.kill(Component.ETCD),
        lambda: n.stop(Component.KUBELET),
        lambda: n.freeze(Component.KUBELET),
        lambda: n.power_off(),
        lambda: n.partition(["192.168.56.22"]),
    ):
        with pytest.raises(FaultError, match=r"refused"):
            action()
    assert seen == [
        "kill etcd on cp1",
        "stop kubelet on cp1",
        "freeze kubelet on cp1",
        "power off on cp1",
        "partition from 192.168.56.22 on cp1",
    ]
    assert t.calls == []
    n.start(Component.KUBELET, timeout=5)
    n.thaw(Component.KUBELET)
    n.heal_partition()


def test_cli_logs_output_to_a_file_whose_directory_it_creates(fake_cli: VagrantCLI, tmp_path: Path) -> None:
    fake_cli.log_file = tmp_path / "not" / "yet" / "vagrant.log"
    assert [s.name for s in fake_cli.status()] == ["cp1"]
    assert "1,cp1,state,running" in fake_cli.log_file.read_text()
