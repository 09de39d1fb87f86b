"""Clusters on real machines: command-driven components, the inventory's access tables, kubeconfig TLS.

SSH is a recording transport and the kubeconfig a file written here: what is under test is
how templates are rendered, what the inventory accepts and refuses, and where TLS comes from.
"""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest

from harness.errors import ClusterError, ConfigError
from harness.providers.attached import parse_kubeconfig
from harness.providers.base import Component, Role
from harness.providers.existing import ExistingCluster, load_inventory, parse_inventory
from harness.providers.remote import CommandTemplates, RemoteNode, RunsAs, controls_for
from harness.transport.base import CommandResult

CTL = ["kq", "ctl", "{node}"]
COMMAND_INVENTORY = textwrap.dedent(
    """\
    cluster = "lab"
    kubeconfig = "lab.conf"
    allow_disruptive = true

    [commands]
    start = ["kq", "ctl", "{node}", "start", "{component}"]
    stop = ["kq", "ctl", "{node}", "stop", "{component}"]
    kill = ["kq", "ctl", "{node}", "kill", "{component}"]
    freeze = ["kq", "ctl", "{node}", "freeze", "{component}"]
    thaw = ["kq", "ctl", "{node}", "thaw", "{component}"]
    running = ["kq", "ctl", "{node}", "running", "{component}"]
    partition = ["kq", "ctl", "{node}", "partition", "--peers", "{peers}", "{one_way_flag}"]

    [etcd]
    client_port = 12379
    ca = "pki/etcd-ca.crt"
    cert = "pki/etcd.crt"
    key = "pki/etcd.key"

    [load_balancer]
    stats_url = "http://{address}:9000/stats;csv"

    [metrics]
    "kube-scheduler" = "https://{address}:10259/metrics"

    [settings.leader_election]
    lease_duration_s = 30
    renew_deadline_s = 20

    [[nodes]]
    name = "lb"
    role = "load-balancer"
    host = "127.0.0.1"
    address = "127.0.9.10"
    runs_as = "command"
    components = ["haproxy"]

    [[nodes]]
    name = "cp1"
    role = "control-plane"
    host = "127.0.0.1"
    address = "127.0.9.11"
    runs_as = "command"
    components = ["etcd", "kube-apiserver"]
    [nodes.commands]
    kill = ["pkill", "-KILL", "-f", "{component} --name={node}"]

    [[nodes]]
    name = "cp2"
    role = "control-plane"
    host = "127.0.0.1"
    address = "127.0.9.12"
    """
)


class Recording:
    def __init__(self, exit_status: int = 0, stdout: str = "") -> None:
        self.calls: list[list[str]] = []
        self.exit_status = exit_status
        self.stdout = stdout

    def run(self, argv: list[str], timeout: float) -> CommandResult:
        self.calls.append(argv)
        return CommandResult(tuple(argv), self.exit_status, self.stdout, "", 0.0)

    def connect(self, deadline_s: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    return path


# -- templates -----------------------------------------------------------------------------------
def test_templates_fill_placeholders_and_the_one_way_flag() -> None:
    t = CommandTemplates({"partition": ("ctl", "{node}@{address}", "--peers", "{peers}", "{one_way_flag}")})
    both = t.render("partition", node="cp1", address="10.0.0.11", peers=["10.0.0.12", "10.0.0.13"])
    assert both == ["ctl", "cp1@10.0.0.11", "--peers", "10.0.0.12,10.0.0.13"]
    one = t.render("partition", node="cp1", address="10.0.0.11", peers=["10.0.0.12"], one_way=True)
    assert one == ["ctl", "cp1@10.0.0.11", "--peers", "10.0.0.12", "--one-way"]
    with pytest.raises(ClusterError, match=r"cp1: the inventory gives no `kill` command for etcd"):
        t.render("kill", node="cp1", address="10.0.0.11", component="etcd")


def test_a_command_node_runs_every_action_through_its_templates() -> None:
    actions = {a: ("ctl", "{node}", a, "{component}") for a in ("start", "stop", "kill", "freeze", "thaw", "running")}
    commands = CommandTemplates(actions)
    controls = controls_for(Role.CONTROL_PLANE, RunsAs.COMMAND, components=[Component.ETCD], commands=commands)
    fake = Recording()
    node = RemoteNode("cp1", Role.CONTROL_PLANE, "10.0.0.11", fake, controls)
    node.kill(Component.ETCD)
    node.freeze(Component.ETCD)
    node.thaw(Component.ETCD)
    node.stop(Component.ETCD)
    node.start(Component.ETCD, timeout=5)
    assert node.running(Component.ETCD) is True
    assert fake.calls == [
        ["ctl", "cp1", "kill", "etcd"],
        ["ctl", "cp1", "freeze", "etcd"],
        ["ctl", "cp1", "thaw", "etcd"],
        ["ctl", "cp1", "stop", "etcd"],
        ["ctl", "cp1", "start", "etcd"],
        ["ctl", "cp1", "running", "etcd"],  # readiness: no `ready` template, so `running`
        ["ctl", "cp1", "running", "etcd"],
    ]
    assert node.components() == [Component.ETCD]
    fake.exit_status = 1
    assert node.running(Component.ETCD) is False


def test_command_mode_without_commands_is_refused() -> None:
    with pytest.raises(ClusterError, match=r"runs by command, but no commands are given; add a \[commands\] table"):
        controls_for(Role.CONTROL_PLANE, RunsAs.COMMAND)


# -- the inventory ---------------------------------------------------------------------------------
def test_inventory_reads_commands_components_access_and_settings(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, COMMAND_INVENTORY))
    lb, cp1, cp2 = inv.nodes
    assert lb.components == (Component.HAPROXY,) and lb.runs_as is RunsAs.COMMAND
    assert cp1.commands is not None and cp1.commands.actions["kill"] == (
        "pkill",
        "-KILL",
        "-f",
        "{component} --name={node}",
    )
    assert cp1.commands.actions["stop"] == ("kq", "ctl", "{node}", "stop", "{component}")  # inherited
    assert cp2.runs_as is RunsAs.STATIC_POD and cp2.components is None
    assert inv.access.etcd.client_port == 12379
    assert inv.access.etcd.ca == tmp_path / "pki" / "etcd-ca.crt"
    assert inv.access.lb_stats_url == "http://{address}:9000/stats;csv"
    assert dict(inv.access.metrics) == {Component.SCHEDULER: "https://{address}:10259/metrics"}
    c = ExistingCluster(inv, check_ssh_addresses=False, run_dir=tmp_path / "run")
    # Budgets come from the declared settings, the member count from the inventory.
    assert (c.cfg.control_planes, c.cfg.workers, c.cfg.leader_election.lease_duration_s) == (2, 0, 30)
    assert c.etcd_url("cp1") == "https://127.0.9.11:12379"
    assert c.apiserver_url("cp2") == "https://127.0.9.12:6443"
    assert c.metrics_url("cp1", Component.SCHEDULER) == "https://127.0.9.11:10259/metrics"
    assert c.metrics_url("cp1", Component.CONTROLLER_MANAGER) is None
    assert c.etcd_tls().cert == tmp_path / "pki" / "etcd.crt"
    assert [n.name for n in c.control_planes()] == ["cp1", "cp2"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('thaw = ["kq", "ctl", "{node}", "thaw", "{component}"]\n', "", r"nodes\[0\]\.runs_as: command needs .* thaw"),
        ('components = ["haproxy"]', 'components = ["haproxy", "nginx"]', r"'nginx' is not a component"),
        ("[commands]\n", '[commands]\nreboot = ["reboot"]\n', r"commands\.reboot: not a command; choose from start"),
        ('cert = "pki/etcd.crt"\n', "", r"give all of etcd\.ca, etcd\.cert and etcd\.key, or none"),
        (
            "lease_duration_s = 30",
            "lease_duration_s = 5",
            r"inventory .*: leader_election.lease_duration_s=5 must exceed",
        ),
        (
            "[settings.leader_election]",
            "[settings]\nname = 'x'\n[settings.leader_election]",
            r"settings\.name: not a setting",
        ),
        ("[load_balancer]", '[api]\nlb_url = "http://10.0.0.5:6443"\n[load_balancer]', r"api\.lb_url: .* not an https"),
    ],
)
def test_bad_inventory_tables_name_the_key_and_the_fix(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in COMMAND_INVENTORY
    with pytest.raises(ConfigError, match=message):
        load_inventory(write(tmp_path, COMMAND_INVENTORY.replace(old, new, 1)))


# -- TLS from the kubeconfig -----------------------------------------------------------------------
def kubeconfig(tmp_path: Path, user: str) -> Path:
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nCA\n").decode()
    path = tmp_path / "admin.conf"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: admin@lab\n"
        f"clusters: [{{name: lab, cluster: {{server: 'https://10.0.0.10:6443/', certificate-authority-data: {ca}}}}}]\n"
        "contexts: [{name: admin@lab, context: {cluster: lab, user: admin}}]\n"
        f"users: [{{name: admin, user: {user}}}]\n"
    )
    return path


def test_client_certificate_kubeconfigs_give_the_tls_files(tmp_path: Path) -> None:
    (tmp_path / "admin.crt").write_bytes(b"CERT")
    key = base64.b64encode(b"KEY").decode()
    creds = parse_kubeconfig(kubeconfig(tmp_path, f"{{client-certificate: admin.crt, client-key-data: {key}}}"))
    assert (creds.server, creds.cert_pem, creds.key_pem) == ("https://10.0.0.10:6443", b"CERT", b"KEY")
    assert creds.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    inv = parse_inventory(
        {
            "cluster": "lab",
            "kubeconfig": "admin.conf",
            "nodes": [{"name": "cp1", "role": "control-plane", "host": "h"}],
        },
        "inv.toml",
        tmp_path,
    )
    c = ExistingCluster(inv, check_ssh_addresses=False, run_dir=tmp_path / "run")
    tls = c.admin_tls()
    assert c.lb_url() == "https://10.0.0.10:6443"
    assert tls.key.read_bytes() == b"KEY" and oct(tls.key.stat().st_mode & 0o777) == "0o600"
    assert c.traffic_tls() == tls
    c.destroy()  # nothing kept of the credentials once detached
    assert not (tmp_path / "run" / "tls").exists()
    assert c.admin_tls().key.read_bytes() == b"KEY"  # written again on the next use
    c.destroy()


def test_token_kubeconfigs_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"the user has no client-certificate .*\(it signs in with token\).*"
        r'credentials = "control-plane" under \[api\]',
    ):
        parse_kubeconfig(kubeconfig(tmp_path, "{token: abc}"))


def token_inventory(tmp_path: Path, api: dict[str, str]) -> ExistingCluster:
    kubeconfig(tmp_path, "{exec: {apiVersion: client.authentication.k8s.io/v1, command: sso-login}}")
    inv = parse_inventory(
        {
            "cluster": "lab",
            "kubeconfig": "admin.conf",
            "api": api,
            "nodes": [
                {"name": "cp1", "role": "control-plane", "host": "h1"},
                {"name": "cp2", "role": "control-plane", "host": "h2"},
            ],
        },
        "inv.toml",
        tmp_path,
    )
    return ExistingCluster(inv, check_ssh_addresses=False, run_dir=tmp_path / "run")


def admin_conf(cert: str = "client-certificate-data: Q0VSVA==") -> str:
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nNODE-CA\n").decode()
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: kubernetes-admin@kubernetes\n"
        "clusters: [{name: kubernetes, cluster: "
        f"{{server: 'https://10.0.0.5:6443', certificate-authority-data: {ca}}}}}]\n"
        "contexts: [{name: kubernetes-admin@kubernetes, context: {cluster: kubernetes, user: kubernetes-admin}}]\n"
        f"users: [{{name: kubernetes-admin, user: {{{cert}, client-key-data: S0VZ}}}}]\n"
    )


def test_control_plane_credentials_are_read_over_ssh_from_the_first_that_has_them(tmp_path: Path) -> None:
    c = token_inventory(tmp_path, {"credentials": "control-plane"})
    first, second = c.node("cp1"), c.node("cp2")
    first.transport = missing = Recording(exit_status=1)
    second.transport = found = Recording(stdout=admin_conf())
    tls = c.admin_tls()
    assert missing.calls == [["cat", "/etc/kubernetes/admin.conf"]] == found.calls
    assert (tls.cert.read_bytes(), tls.key.read_bytes()) == (b"CERT", b"KEY")
    assert b"NODE-CA" in tls.ca.read_bytes()
    # The endpoint stays the one the user's kubeconfig names (and the wrong-cluster check used).
    assert c.lb_url() == "https://10.0.0.10:6443"
    c.destroy()
    assert not (tmp_path / "run" / "tls").exists()


def test_control_plane_credentials_fail_with_the_fix(tmp_path: Path) -> None:
    c = token_inventory(tmp_path, {"credentials": "control-plane", "admin_kubeconfig": "/etc/kq/admin.conf"})
    for name in ("cp1", "cp2"):
        c.node(name).transport = Recording(exit_status=1)
    with pytest.raises(
        ClusterError, match=r"cannot read /etc/kq/admin.conf on any control plane .*set admin_kubeconfig"
    ):
        c.admin_tls()
    # A kubeconfig that names files names them on the node: never read a same-named file here.
    c.node("cp1").transport = Recording(stdout=admin_conf("client-certificate: /etc/kubernetes/pki/admin.crt"))
    with pytest.raises(ConfigError, match=r"client-certificate names a file \(/etc/kubernetes/pki/admin.crt\) on that"):
        c.admin_tls()


@pytest.mark.parametrize(
    ("api", "message"),
    [
        ({"credentials": "token"}, r"api\.credentials: 'token': choose kubeconfig .* or control-plane"),
        ({"admin_kubeconfig": "admin.conf"}, r"api\.admin_kubeconfig: 'admin.conf': give the absolute path"),
    ],
)
def test_bad_credentials_settings_name_the_fix(tmp_path: Path, api: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        token_inventory(tmp_path, api)


def test_haproxy_stats_are_read_on_the_load_balancer_node(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, COMMAND_INVENTORY))
    c = ExistingCluster(inv, check_ssh_addresses=False, run_dir=tmp_path / "run")
    lb = c.node("lb")
    lb.transport = fake = Recording(stdout="# pxname,svname,status\napiservers,cp1,UP\n")
    assert c.lb_stats_csv(timeout=3).startswith("# pxname")
    assert fake.calls == [["curl", "-fsS", "--max-time", "3", "http://127.0.9.10:9000/stats;csv"]]
    fake.exit_status, fake.stdout = 7, ""
    with pytest.raises(ClusterError, match=r"cannot read HAProxy stats: lb: curl .* exited 7"):
        c.lb_stats_csv()
