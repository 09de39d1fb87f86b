"""The existing provider attached to a real API (the local cluster) with SSH to a loopback OpenSSH server.

The local cluster has no Node objects for its control planes (they run no kubelet), so the test
registers one, labelled the way kubeadm labels control planes, whose InternalIP is the loopback
address the sshd listens on. The inventory then describes a one-control-plane cluster that the
real API and the real SSH host either confirm or contradict.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from harness.errors import ClusterError, ConfigError, FaultError
from harness.net.kube import api_client
from harness.providers.base import Component
from harness.providers.existing import CONTROL_PLANE_LABEL, ExistingCluster, Inventory, parse_inventory
from harness.providers.local import LocalCluster
from tests.certs import self_signed_ca
from tests.integration.sshd_server import SSHServer, sshd, sshd_prepared

__all__ = ["sshd", "sshd_prepared"]  # fixtures, imported for pytest

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def control_plane_node(cluster: LocalCluster) -> Iterator[str]:
    name = f"kq-existing-{uuid.uuid4().hex[:6]}"
    with api_client(cluster.lb_url(), cluster.admin_tls()) as api:
        core = client.CoreV1Api(api)
        # Nodes accept their status on create (that is how the kubelet registers).
        core.create_node(
            client.V1Node(
                metadata=client.V1ObjectMeta(name=name, labels={CONTROL_PLANE_LABEL: ""}),
                status=client.V1NodeStatus(addresses=[client.V1NodeAddress(type="InternalIP", address="127.0.0.1")]),
            )
        )
        try:
            yield name
        finally:
            core.delete_node(name)


def kube_system_uid(cluster: LocalCluster) -> str:
    with api_client(cluster.lb_url(), cluster.admin_tls()) as api:
        return str(client.CoreV1Api(api).read_namespace("kube-system").metadata.uid)


def inventory(cluster: LocalCluster, sshd: SSHServer, node: str, tmp_path: Path, **top: object) -> Inventory:
    data: dict[str, object] = {
        "cluster": "local-as-existing",
        "kubeconfig": str(cluster.kubeconfig()),
        "ssh": {
            "user": sshd.user,
            "key": str(sshd.client_key),
            "port": sshd.port,
            "sudo": False,
            "host_key_checking": False,
            "connect_deadline_s": 10,
        },
        "nodes": [{"name": node, "role": "control-plane", "host": "127.0.0.1"}],
    }
    data.update(top)
    return parse_inventory(data, str(tmp_path / "inventory.toml"), tmp_path)


def test_attaches_when_api_and_ssh_host_confirm_the_inventory(
    cluster: LocalCluster, sshd: SSHServer, control_plane_node: str, tmp_path: Path
) -> None:
    inv = inventory(cluster, sshd, control_plane_node, tmp_path, kube_system_uid=kube_system_uid(cluster))
    existing = ExistingCluster(inv, allow_disruptive=True)
    try:
        existing.create()
        assert existing.verify() == []
        node = existing.node(control_plane_node)
        assert node.run(["echo", "reachable"], timeout=10).stdout == "reachable\n"
        # The guards let the fault through; this host runs no crictl, which the node then reports.
        with pytest.raises(ClusterError, match=rf"{control_plane_node}: crictl cannot list etcd containers"):
            node.freeze(Component.ETCD)
    finally:
        existing.destroy()


def test_refuses_a_kubeconfig_of_another_cluster(
    cluster: LocalCluster, sshd: SSHServer, control_plane_node: str, tmp_path: Path
) -> None:
    inv = inventory(cluster, sshd, control_plane_node, tmp_path, kube_system_uid="00000000-not-this-cluster")
    existing = ExistingCluster(inv, allow_disruptive=True)
    try:
        with pytest.raises(ClusterError, match=r"kube-system namespace has UID .* the kubeconfig points at another"):
            existing.create()
        with pytest.raises(FaultError, match=r"wrong-cluster protection"):
            existing.node(control_plane_node).kill(Component.APISERVER)
    finally:
        existing.destroy()


def test_refuses_an_inventory_whose_addresses_disagree(
    cluster: LocalCluster, sshd: SSHServer, control_plane_node: str, tmp_path: Path
) -> None:
    inv = inventory(cluster, sshd, control_plane_node, tmp_path)
    wrong = parse_inventory(
        {
            "cluster": "local-as-existing",
            "kubeconfig": str(cluster.kubeconfig()),
            "ssh": {
                "user": sshd.user,
                "key": str(sshd.client_key),
                "port": sshd.port,
                "sudo": False,
                "host_key_checking": False,
            },
            "nodes": [
                # A documentation address (RFC 5737): only looked up in the routing table, never contacted.
                {"name": control_plane_node, "role": "control-plane", "host": "127.0.0.1", "address": "192.0.2.1"}
            ],
        },
        inv.source,
        tmp_path,
    )
    existing = ExistingCluster(wrong, allow_disruptive=True)
    try:
        problems = existing.verify()
        assert len(problems) == 2, problems
        assert problems[0] == (
            f"node {control_plane_node}: the inventory says address 192.0.2.1, the API reports 127.0.0.1"
        )
        assert problems[1].startswith(
            f"node {control_plane_node}: SSH host {sshd.user}@127.0.0.1:{sshd.port} does not carry 192.0.2.1 "
            "(`ip route get 192.0.2.1` there says: "
        )
        assert problems[1].endswith("); the inventory's host is another machine")
        with pytest.raises(FaultError, match=r"refused to partition from 192.0.2.2 on"):
            existing.node(control_plane_node).partition(["192.0.2.2"])
    finally:
        existing.destroy()


def test_an_unreachable_api_is_a_clear_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    # A loopback port nothing listens on: refused at once, never a wait.
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    inv = parse_inventory(
        {
            "cluster": "nowhere",
            "kubeconfig": str(kubeconfig),
            "nodes": [{"name": "cp1", "role": "control-plane", "host": "127.0.0.1"}],
        },
        "inventory.toml",
        tmp_path,
    )
    with pytest.raises(
        ClusterError, match=rf"cannot list nodes through {kubeconfig} within 10s: .*check the kubeconfig"
    ):
        ExistingCluster(inv, check_ssh_addresses=False).create()


@pytest.fixture
def token_kubeconfig(cluster: LocalCluster, tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig whose user signs in with a bearer token (a ServiceAccount's), as SSO logins do.

    Its role reads only what the wrong-cluster check reads: the harness's own clients must not
    borrow this identity, they need a client certificate.
    """
    name = f"kq-reader-{uuid.uuid4().hex[:6]}"
    with api_client(cluster.lb_url(), cluster.admin_tls()) as api:
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        core.create_namespaced_service_account(
            "default", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
        rbac.create_cluster_role(
            client.V1ClusterRole(
                metadata=client.V1ObjectMeta(name=name),
                rules=[
                    client.V1PolicyRule(api_groups=[""], resources=["nodes", "namespaces"], verbs=["get", "list"]),
                    client.V1PolicyRule(api_groups=[""], resources=["endpoints"], verbs=["get"]),
                ],
            )
        )
        rbac.create_cluster_role_binding(
            client.V1ClusterRoleBinding(
                metadata=client.V1ObjectMeta(name=name),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=name),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace="default")],
            )
        )
        try:
            token = core.create_namespaced_service_account_token(
                name, "default", client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
            ).status.token
            cluster_entry = {"server": cluster.lb_url(), "certificate-authority": str(cluster.admin_tls().ca)}
            yield write_kubeconfig(tmp_path / "sso.conf", cluster_entry, {"token": token})
        finally:
            rbac.delete_cluster_role_binding(name)
            rbac.delete_cluster_role(name)
            core.delete_namespaced_service_account(name, "default")


def write_kubeconfig(path: Path, cluster: dict[str, str], user: dict[str, str]) -> Path:
    """A one-context kubeconfig (mode 0600) with these cluster and user entries."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "ctx",
                "clusters": [{"name": "c", "cluster": cluster}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "users": [{"name": "u", "user": user}],
            }
        )
    )
    path.chmod(0o600)
    return path


def embedded_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path) -> Path:
    """A kubeconfig with its certificates inline, the way kubeadm writes admin.conf."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return write_kubeconfig(
        path,
        {"server": server, "certificate-authority-data": b64(ca)},
        {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
    )


def test_a_token_kubeconfig_works_with_the_control_planes_credentials(
    cluster: LocalCluster, sshd: SSHServer, control_plane_node: str, token_kubeconfig: Path, tmp_path: Path
) -> None:
    # Refused as it stands, with the way out named.
    plain = ExistingCluster(
        inventory(cluster, sshd, control_plane_node, tmp_path, kubeconfig=str(token_kubeconfig)),
        run_dir=tmp_path / "plain",
    )
    try:
        plain.create()  # the wrong-cluster check itself runs through the token
        with pytest.raises(ConfigError, match=r"signs in with token.*credentials = \"control-plane\""):
            plain.admin_tls()
    finally:
        plain.destroy()

    tls = cluster.admin_tls()
    admin_conf = embedded_kubeconfig(tmp_path / "admin.conf", cluster.lb_url(), tls.ca, tls.cert, tls.key)
    api = {"credentials": "control-plane", "admin_kubeconfig": str(admin_conf)}
    existing = ExistingCluster(
        inventory(cluster, sshd, control_plane_node, tmp_path, kubeconfig=str(token_kubeconfig), api=api),
        run_dir=tmp_path / "fetched",
    )
    try:
        existing.create()  # reads admin.conf over SSH and confirms it reaches the same cluster
        fetched = existing.admin_tls()
        assert fetched.key.parent == tmp_path / "fetched" / "tls"
        assert fetched.cert.read_bytes() == tls.cert.read_bytes()
        with api_client(existing.lb_url(), fetched) as kapi:
            # An admin-only request: the token's role could not do this.
            assert client.CoreV1Api(kapi).list_namespaced_secret("kube-system", _request_timeout=10) is not None
    finally:
        existing.destroy()
    assert not (tmp_path / "fetched" / "tls").exists()


def test_control_plane_credentials_of_another_cluster_are_refused(
    cluster: LocalCluster, sshd: SSHServer, control_plane_node: str, token_kubeconfig: Path, tmp_path: Path
) -> None:
    ca, key = self_signed_ca(tmp_path, "other-cluster-ca")
    other = embedded_kubeconfig(tmp_path / "other.conf", cluster.lb_url(), ca, ca, key)
    api = {"credentials": "control-plane", "admin_kubeconfig": str(other)}
    existing = ExistingCluster(
        inventory(cluster, sshd, control_plane_node, tmp_path, kubeconfig=str(token_kubeconfig), api=api),
        run_dir=tmp_path / "other",
    )
    try:
        with pytest.raises(ClusterError, match=rf"the credentials in {other} on the control planes do not work at"):
            existing.create()
        assert not (tmp_path / "other" / "tls").exists()  # nothing of the wrong credentials kept
    finally:
        existing.destroy()
