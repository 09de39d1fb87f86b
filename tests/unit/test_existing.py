"""The existing provider's inventory, its opt-in and its wrong-cluster protection.

The API is replaced by a fixed set of facts (a fake ClusterView) and SSH by a recording
transport: what is under test is the comparison and the refusals, not Kubernetes.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness import slo
from harness.errors import ClusterError, ConfigError, FaultError
from harness.providers.base import Component, Role
from harness.providers.existing import (
    ApiNode,
    ExistingCluster,
    Inventory,
    inventory_problems,
    load_inventory,
    parse_inventory,
)
from harness.providers.remote import RunsAs
from harness.transport.base import CommandResult

INVENTORY = textwrap.dedent(
    """\
    cluster = "staging-eu1"
    kubeconfig = "staging.conf"
    allow_disruptive = true

    [ssh]
    user = "ops"
    key = "keys/ops_ed25519"
    sudo = true
    known_hosts = "known_hosts"

    [control_plane]
    runs_as = "static-pod"

    [[nodes]]
    name = "lb1"
    role = "load-balancer"
    host = "10.0.0.5"

    [[nodes]]
    name = "cp1"
    role = "control-plane"
    host = "cp1.staging.example"
    address = "10.0.0.11"
    [nodes.power]
    off = ["virsh", "destroy", "cp1"]
    on = ["virsh", "start", "cp1"]

    [[nodes]]
    name = "cp2"
    role = "control-plane"
    host = "10.0.0.12"
    user = "admin"
    port = 2222

    [[nodes]]
    name = "cp3"
    role = "control-plane"
    host = "10.0.0.13"
    runs_as = "systemd"
    [nodes.units]
    etcd = "etcd-member.service"

    [[nodes]]
    name = "w1"
    role = "worker"
    host = "10.0.0.21"
    """
)


def inventory(tmp_path: Path, text: str = INVENTORY) -> Inventory:
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    return load_inventory(path)


class FakeView:
    def __init__(self, nodes: list[ApiNode], uid: str = "uid-1", apiservers: tuple[str, ...] = ()) -> None:
        self._nodes = nodes
        self.uid = uid
        self.apiservers = apiservers
        self.calls = 0

    def nodes(self) -> list[ApiNode]:
        self.calls += 1
        return list(self._nodes)

    def kube_system_uid(self) -> str:
        return self.uid

    def apiserver_addresses(self) -> list[str]:
        return list(self.apiservers)


def matching_view() -> FakeView:
    return FakeView(
        [
            ApiNode("cp1", ("10.0.0.11",), True),
            ApiNode("cp2", ("10.0.0.12",), True),
            ApiNode("cp3", ("10.0.0.13",), True),
            ApiNode("w1", ("10.0.0.21",), False),
        ]
    )


class RecordingTransport:
    def __init__(self, stdout: str = "") -> None:
        self.calls: list[list[str]] = []
        self.stdout = stdout

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        self.calls.append(argv)
        return CommandResult(tuple(argv), 0, self.stdout, "", 0.0)

    def connect(self, deadline_s: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def attach(inv: Inventory, view: FakeView, **kw: Any) -> tuple[ExistingCluster, dict[str, RecordingTransport]]:
    c = ExistingCluster(inv, view=view, check_ssh_addresses=False, **kw)
    fakes = {}
    for n in c.nodes():
        fakes[n.name] = RecordingTransport()
        n.transport = fakes[n.name]
    return c, fakes


# -- the inventory ----------------------------------------------------------------------------
def test_inventory_resolves_paths_defaults_and_overrides(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    assert inv.cluster == "staging-eu1"
    assert inv.kubeconfig == tmp_path / "staging.conf"
    assert inv.allow_disruptive is True
    cp1 = inv.node("cp1")
    assert cp1.role is Role.CONTROL_PLANE
    assert cp1.address == "10.0.0.11"
    assert (cp1.ssh.host, cp1.ssh.user, cp1.ssh.port) == ("cp1.staging.example", "ops", 22)
    assert cp1.ssh.key_file == tmp_path / "keys" / "ops_ed25519"
    assert cp1.ssh.known_hosts == tmp_path / "known_hosts"
    assert cp1.ssh.host_key_checking is True
    assert cp1.power is not None and cp1.power.off == ("virsh", "destroy", "cp1")
    cp2 = inv.node("cp2")
    assert (cp2.address, cp2.ssh.user, cp2.ssh.port, cp2.power) == ("10.0.0.12", "admin", 2222, None)
    cp3 = inv.node("cp3")
    assert cp3.runs_as is RunsAs.SYSTEMD
    assert cp3.units == {Component.ETCD: "etcd-member.service"}
    assert inv.node("lb1").role is Role.LOAD_BALANCER
    assert inv.node("w1").role is Role.WORKERS


def test_component_control_follows_how_each_node_runs_its_control_plane(tmp_path: Path) -> None:
    c, _ = attach(inventory(tmp_path), matching_view())
    assert c.node("cp1").control(Component.ETCD).runs_as is RunsAs.STATIC_POD
    etcd3 = c.node("cp3").control(Component.ETCD)
    assert (etcd3.runs_as, etcd3.unit) == (RunsAs.SYSTEMD, "etcd-member.service")
    assert c.node("cp3").control(Component.APISERVER).unit == "kube-apiserver.service"
    assert c.node("lb1").components() == [Component.HAPROXY, Component.KEEPALIVED]
    assert c.kubeconfig() == tmp_path / "staging.conf"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('cluster = "staging-eu1"\n', ""), r"inventory .*: cluster: missing"),
        (lambda t: t.replace('role = "worker"', 'role = "minion"'), r"nodes\[4\].role: 'minion': choose one of"),
        (lambda t: t.replace('name = "cp2"', 'name = "cp1"'), r"nodes\[2\].name: 'cp1' is listed twice"),
        (lambda t: t.replace('runs_as = "systemd"', 'runs_as = "docker"'), r"nodes\[3\].runs_as: 'docker'"),
        (lambda t: t.replace('etcd = "etcd-member.service"', 'etcdd = "x"'), r"units.etcdd: not a component"),
        (lambda t: t.replace('off = ["virsh", "destroy", "cp1"]', 'off = "virsh destroy cp1"'), r"power.off: expected"),
        (lambda t: t.replace("allow_disruptive = true", 'allow_disruptive = "yes"'), r"allow_disruptive: expected"),
        (lambda t: t.replace('role = "control-plane"', 'role = "worker"'), r"no control-plane node"),
        (lambda t: t.replace("port = 2222", "port = -1"), r"nodes\[2\].port: expected a positive number"),
    ],
)
def test_inventory_errors_name_the_key(tmp_path: Path, edit: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        inventory(tmp_path, edit(INVENTORY))


def test_inventory_slo_overrides_the_defaults_and_bad_keys_name_the_fix(tmp_path: Path) -> None:
    inv = inventory(
        tmp_path, INVENTORY + "\n[slo]\nlease_handover_s = 45\n[slo.apiserver-kill]\nmax_p99_after_heal_ms = 2000\n"
    )
    objectives = slo.load(Path("/dev/null"), inventory=inv.slo)
    assert objectives.lease_handover_s == 45
    assert objectives.client("apiserver-kill").max_p99_after_heal_ms == 2000
    unknown = r"unknown SLO 'slo.lease_handover' \(from inventory .*\); did you mean slo.lease_handover_s"
    with pytest.raises(ConfigError, match=unknown):
        inventory(tmp_path, INVENTORY + "\n[slo]\nlease_handover = 45\n")
    with pytest.raises(ConfigError, match=r"slo.lease_handover_s \(from inventory .*must be 0 or more"):
        inventory(tmp_path, INVENTORY + "\n[slo]\nlease_handover_s = -3\n")


def test_unreadable_inventories(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist; see harness/providers/real-clusters.md"):
        load_inventory(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("cluster = \n")
    with pytest.raises(ConfigError, match=r"is not valid TOML"):
        load_inventory(bad)
    with pytest.raises(ConfigError, match=r"expected \[\[nodes\]\] tables"):
        parse_inventory({"cluster": "x", "kubeconfig": "k"})


# -- wrong-cluster protection -------------------------------------------------------------------
def test_a_matching_inventory_has_no_problems(tmp_path: Path) -> None:
    assert inventory_problems(inventory(tmp_path), matching_view()) == []


def test_every_mismatch_is_reported_at_once(tmp_path: Path) -> None:
    inv = inventory(tmp_path, INVENTORY.replace('name = "w1"', 'name = "w9"'))
    view = FakeView(
        [
            ApiNode("cp1", ("10.9.9.11",), True),  # another cluster's address
            ApiNode("cp2", ("10.0.0.12",), False),  # not a control plane there
            ApiNode("cp3", ("10.0.0.13",), True),
            ApiNode("cp4", ("10.0.0.14",), True),  # a control plane the inventory does not list
            ApiNode("w1", ("10.0.0.21",), False),
        ]
    )
    problems = inventory_problems(inv, view)
    assert problems == [
        "node cp1: the inventory says address 10.0.0.11, the API reports 10.9.9.11",
        "node cp2 is a control plane in the inventory but has no node-role.kubernetes.io/control-plane label",
        "node w9 is in the inventory but the API has no such node (it has cp1, cp2, cp3, cp4, w1)",
        "control-plane node cp4 (10.0.0.14) is missing from the inventory; list every control plane, "
        "or quorum guards count wrong",
    ]


def test_a_pinned_kube_system_uid_must_match(tmp_path: Path) -> None:
    inv = inventory(tmp_path, 'kube_system_uid = "uid-prod"\n' + INVENTORY)
    problems = inventory_problems(inv, matching_view())
    assert problems == [
        "the API's kube-system namespace has UID uid-1, the inventory pins uid-prod: "
        "the kubeconfig points at another cluster"
    ]


def test_faults_are_refused_without_opt_in_and_nothing_runs(tmp_path: Path) -> None:
    inv = inventory(tmp_path, INVENTORY.replace("allow_disruptive = true", "allow_disruptive = false"))
    c, fakes = attach(inv, matching_view())
    with pytest.raises(FaultError, match=r"refused to kill etcd on cp1 of existing cluster 'staging-eu1'"):
        c.node("cp1").kill(Component.ETCD)
    with pytest.raises(FaultError, match=r"disruptive actions are off"):
        c.node("w1").partition(["10.0.0.11"])
    assert all(f.calls == [] for f in fakes.values())
    # The caller's explicit opt-in wins over the inventory's default.
    c2, _ = attach(inv, matching_view(), allow_disruptive=True)
    assert c2.allow_disruptive


def test_faults_are_refused_on_the_wrong_cluster(tmp_path: Path) -> None:
    view = matching_view()
    view._nodes[0] = ApiNode("cp1", ("192.0.2.1",), True)
    c, fakes = attach(inventory(tmp_path), view)
    with pytest.raises(FaultError, match=r"wrong-cluster protection") as info:
        c.node("cp2").stop(Component.KUBELET)
    assert "node cp1: the inventory says address 10.0.0.11, the API reports 192.0.2.1" in str(info.value)
    assert fakes["cp2"].calls == []
    with pytest.raises(ClusterError, match=r"does not match the cluster"):
        c.create()


def test_faults_run_once_opted_in_and_verified_and_the_check_is_cached(tmp_path: Path) -> None:
    view = matching_view()
    c, fakes = attach(inventory(tmp_path), view)
    c.create()
    c.node("w1").stop(Component.KUBELET)
    c.node("cp3").freeze(Component.ETCD)
    assert fakes["w1"].calls == [["systemctl", "stop", "kubelet.service"]]
    assert fakes["cp3"].calls == [["systemctl", "freeze", "etcd-member.service"]]
    assert view.calls == 1  # create() checked; the faults reused the answer


def test_ssh_hosts_must_carry_the_address_the_api_reports(tmp_path: Path) -> None:
    c = ExistingCluster(inventory(tmp_path), view=matching_view(), check_ssh_addresses=True)
    # What `ip -o route get ADDRESS` prints on each host: "local" only where the address is its own.
    route_output = {
        "lb1": "local 10.0.0.5 dev lo table local src 10.0.0.5 uid 0 \\    cache <local> \n",
        "cp1": "local 10.0.0.11 dev lo table local src 10.0.0.11 uid 0 \\    cache <local> \n",
        "cp2": "local 10.0.0.12 dev lo table local src 10.0.0.12 uid 0 \\    cache <local> \n",
        # cp3's SSH host is a different machine than the API's cp3: the address is a neighbour's
        "cp3": "10.0.0.13 dev eth0 src 10.0.0.99 uid 0 \\    cache \n",
        "w1": "local 10.0.0.21 dev lo table local src 10.0.0.21 uid 0 \\    cache <local> \n",
    }
    for n in c.nodes():
        n.transport = RecordingTransport(route_output[n.name])
    problems = c.verify()
    assert problems == [
        "node cp3: SSH host ops@10.0.0.13:22 does not carry 10.0.0.13 (`ip route get 10.0.0.13` there says: "
        "10.0.0.13 dev eth0 src 10.0.0.99 uid 0 \\    cache); the inventory's host is another machine"
    ]
    assert c.node("cp1").transport.calls == [["ip", "-o", "route", "get", "10.0.0.11"]]  # type: ignore[attr-defined]


def test_a_control_plane_without_a_node_object_is_confirmed_by_the_apiserver_endpoints(tmp_path: Path) -> None:
    view = matching_view()
    view._nodes = [n for n in view._nodes if n.name != "cp3"]
    view.apiservers = ("10.0.0.11", "10.0.0.12", "10.0.0.13")
    c = ExistingCluster(inventory(tmp_path), view=view, check_ssh_addresses=False)
    assert c.verify() == []
    view.apiservers = ("10.0.0.11", "10.0.0.12", "10.0.0.14")
    problems = c.verify(refresh=True)
    assert problems == [
        "node cp3 is in the inventory but the API has no such node (it has cp1, cp2, w1) and no apiserver serves "
        "at 10.0.0.13 (they serve at 10.0.0.11, 10.0.0.12, 10.0.0.14)",
        "an apiserver serves at 10.0.0.14, but no control plane of the inventory has that address; list every "
        "control plane, or quorum guards count wrong",
    ]


def test_power_runs_the_inventory_commands_on_this_machine(tmp_path: Path) -> None:
    marker = tmp_path / "power.log"
    text = INVENTORY.replace(
        'off = ["virsh", "destroy", "cp1"]', f'off = ["sh", "-c", "echo off >> {marker}"]'
    ).replace('on = ["virsh", "start", "cp1"]', 'on = ["sh", "-c", "echo on-failed >&2; exit 4"]')
    c, _ = attach(inventory(tmp_path, text), matching_view())
    c.node("cp1").power_off()
    assert marker.read_text() == "off\n"
    with pytest.raises(FaultError, match=r"cp1: power on command failed: .*exited 4: on-failed"):
        c.node("cp1").power_on(timeout=5)
    with pytest.raises(FaultError, match=r"cp2: no power control is configured"):
        c.node("cp2").power_off()


def test_destroy_only_disconnects(tmp_path: Path) -> None:
    c, fakes = attach(inventory(tmp_path), matching_view())
    c.destroy()
    c.destroy()
    assert all(f.calls == [] for f in fakes.values())
