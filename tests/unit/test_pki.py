"""Unit tests for harness.pki: layout, SANs, subjects, chains, modes, reuse and reissue."""

from __future__ import annotations

import ipaddress
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness import pki
from harness.errors import ClusterError
from harness.pki import CertPair, ClusterPKI, cert_info, ensure_pki, remaining_validity

NODES = {"cp1": "127.0.7.11", "cp2": "127.0.7.12", "cp3": "127.0.7.13"}
LB = "127.0.7.10"


@pytest.fixture
def made(tmp_path: Path) -> ClusterPKI:
    return ensure_pki(tmp_path / "pki", NODES, LB)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def verify_signed_by(leaf: Path, ca: Path) -> None:
    """Check the leaf's signature with the CA's public key; raises InvalidSignature otherwise."""
    cert, ca_cert = load(leaf), load(ca)
    public = ca_cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    assert cert.issuer == ca_cert.subject


def spki(obj: x509.Certificate | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return obj.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def all_pairs(p: ClusterPKI) -> dict[str, CertPair]:
    pairs = {
        "ca": p.ca,
        "etcd_ca": p.etcd_ca,
        "front_proxy_ca": p.front_proxy_ca,
        "front_proxy_client": p.front_proxy_client,
        "etcd_client": p.etcd_client,
        "apiserver_kubelet_client": p.apiserver_kubelet_client,
        "admin": p.admin,
        "controller_manager": p.controller_manager,
        "scheduler": p.scheduler,
        "kwok": p.kwok,
        "traffic": p.traffic,
    }
    for node in p.apiserver:
        pairs[f"apiserver/{node}"] = p.apiserver[node]
        pairs[f"etcd_server/{node}"] = p.etcd_server[node]
        pairs[f"etcd_peer/{node}"] = p.etcd_peer[node]
    return pairs


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(f.relative_to(root)): (f.stat().st_mtime_ns, f.read_bytes()) for f in root.rglob("*") if f.is_file()}


def test_layout_matches_kubeadm_style_names(made: ClusterPKI, tmp_path: Path) -> None:
    root = tmp_path / "pki"
    expected = {
        "ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "front-proxy-client.crt",
        "front-proxy-client.key", "sa.key", "sa.pub", "etcd/ca.crt", "etcd/ca.key", "apiserver-etcd-client.crt",
        "apiserver-etcd-client.key", "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key", "admin.crt",
        "admin.key", "controller-manager.crt", "controller-manager.key", "scheduler.crt", "scheduler.key",
        "kwok.crt", "kwok.key", "traffic.crt", "traffic.key",
    }  # fmt: skip
    for node in NODES:
        expected |= {f"etcd/{node}-server.crt", f"etcd/{node}-server.key", f"etcd/{node}-peer.crt"}
        expected |= {f"etcd/{node}-peer.key", f"apiserver-{node}.crt", f"apiserver-{node}.key"}
    assert set(snapshot(root)) == expected
    assert made.dir == root.absolute()
    assert made.ca == CertPair(root / "ca.crt", root / "ca.key")
    assert made.etcd_server["cp2"] == CertPair(root / "etcd/cp2-server.crt", root / "etcd/cp2-server.key")
    assert made.etcd_peer["cp3"].cert == root / "etcd/cp3-peer.crt"
    assert made.apiserver["cp1"].key == root / "apiserver-cp1.key"
    assert made.etcd_client.cert == root / "apiserver-etcd-client.crt"
    assert (made.sa_key, made.sa_pub) == (root / "sa.key", root / "sa.pub")
    assert all(path.is_absolute() for pair in all_pairs(made).values() for path in (pair.cert, pair.key))


def test_file_and_directory_modes(made: ClusterPKI) -> None:
    for d in (made.dir, made.dir / "etcd"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for name, pair in all_pairs(made).items():
        assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600, name
        assert stat.S_IMODE(pair.cert.stat().st_mode) == 0o644, name
    assert stat.S_IMODE(made.sa_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(made.sa_pub.stat().st_mode) == 0o644
    # No temporary files left behind by the atomic writes.
    assert not [f for f in made.dir.rglob(".*") if f.is_file()]


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_modes_do_not_depend_on_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        p = ensure_pki(tmp_path / "pki", {"cp1": "127.0.7.11"}, LB)
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.admin.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.admin.cert.stat().st_mode) == 0o644
    assert stat.S_IMODE(p.dir.stat().st_mode) == 0o700


def test_existing_directory_is_tightened_to_0700(tmp_path: Path) -> None:
    root = tmp_path / "pki"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    ensure_pki(root, {"cp1": "127.0.7.11"}, LB)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_apiserver_sans_cover_every_way_to_reach_it(made: ClusterPKI) -> None:
    for node, pair in made.apiserver.items():
        info = cert_info(pair.cert)
        assert info.subject_cn == "kube-apiserver"
        assert set(NODES.values()) <= set(info.ip_sans), node
        assert {LB, "127.0.0.1", "10.96.0.1"} <= set(info.ip_sans)
        assert "::1" not in info.ip_sans
        assert {
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            node,
        } <= set(info.dns_sans)
        assert info.key_usages == ["serverAuth"]
        assert not info.is_ca
        assert info.issuer_cn == "kubequake-ca"


def test_etcd_server_and_peer_sans_are_per_node(made: ClusterPKI) -> None:
    for node, address in NODES.items():
        for pair in (made.etcd_server[node], made.etcd_peer[node]):
            info = cert_info(pair.cert)
            assert set(info.ip_sans) == {address, "127.0.0.1"}
            assert set(info.dns_sans) == {node, "localhost"}
            assert set(info.key_usages) == {"serverAuth", "clientAuth"}
            assert info.issuer_cn == "kubequake-etcd-ca"
            # A member's certificate must not be valid for another member's address.
            others = set(NODES.values()) - {address}
            assert not others & set(info.ip_sans)


@pytest.mark.parametrize(
    ("attr", "cn", "orgs", "issuer"),
    [
        ("etcd_client", "kube-apiserver-etcd-client", [], "kubequake-etcd-ca"),
        ("front_proxy_client", "front-proxy-client", [], "kubequake-front-proxy-ca"),
        ("apiserver_kubelet_client", "kube-apiserver-kubelet-client", ["kubeadm:cluster-admins"], "kubequake-ca"),
        ("admin", "kubernetes-admin", ["system:masters"], "kubequake-ca"),
        ("controller_manager", "system:kube-controller-manager", [], "kubequake-ca"),
        ("scheduler", "system:kube-scheduler", [], "kubequake-ca"),
        ("kwok", "kubequake-kwok", ["system:masters"], "kubequake-ca"),
        ("traffic", "kubequake-traffic", ["system:masters"], "kubequake-ca"),
    ],
)
def test_client_certificate_subjects(made: ClusterPKI, attr: str, cn: str, orgs: list[str], issuer: str) -> None:
    pair: CertPair = getattr(made, attr)
    info = cert_info(pair.cert)
    assert info.subject_cn == cn
    assert info.organizations == orgs
    assert info.issuer_cn == issuer
    assert info.key_usages == ["clientAuth"]
    assert not info.is_ca
    assert info.dns_sans == [] and info.ip_sans == []


def test_ca_extensions(made: ClusterPKI) -> None:
    for pair, cn in (
        (made.ca, "kubequake-ca"),
        (made.etcd_ca, "kubequake-etcd-ca"),
        (made.front_proxy_ca, "kubequake-front-proxy-ca"),
    ):
        cert = load(pair.cert)
        info = cert_info(pair.cert)
        assert info.is_ca and info.subject_cn == cn and info.issuer_cn == cn
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign and ku.digital_signature
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
        verify_signed_by(pair.cert, pair.cert)  # self-signed
        assert remaining_validity(pair.cert) > timedelta(days=3649)


def test_leaf_extensions_and_authority_key_id(made: ClusterPKI) -> None:
    ca_ski = load(made.ca.cert).extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    for pair in (made.admin, made.apiserver["cp1"]):
        cert = load(pair.cert)
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert not bc.ca
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == ca_ski.digest
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    serials = {load(pair.cert).serial_number for pair in all_pairs(made).values()}
    assert len(serials) == len(all_pairs(made))


def test_issuer_chain(made: ClusterPKI) -> None:
    cluster_leaves = [made.admin, made.controller_manager, made.scheduler, made.kwok, made.traffic]
    cluster_leaves += [made.apiserver_kubelet_client, *made.apiserver.values()]
    etcd_leaves = [made.etcd_client, *made.etcd_server.values(), *made.etcd_peer.values()]
    for pair in cluster_leaves:
        verify_signed_by(pair.cert, made.ca.cert)
        with pytest.raises(InvalidSignature):
            verify_signed_by(pair.cert, made.etcd_ca.cert)
    for pair in etcd_leaves:
        verify_signed_by(pair.cert, made.etcd_ca.cert)
        # etcd must not accept a cluster-CA client, and the API must not be served with an etcd cert.
        with pytest.raises(InvalidSignature):
            verify_signed_by(pair.cert, made.ca.cert)
    verify_signed_by(made.front_proxy_client.cert, made.front_proxy_ca.cert)
    with pytest.raises(InvalidSignature):
        verify_signed_by(made.front_proxy_client.cert, made.ca.cert)


def test_every_certificate_matches_its_key(made: ClusterPKI) -> None:
    for name, pair in all_pairs(made).items():
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey), name
        assert isinstance(key.curve, ec.SECP256R1)
        assert spki(key) == spki(load(pair.cert)), name
    # Distinct keys per certificate.
    assert len({pair.key.read_bytes() for pair in all_pairs(made).values()}) == len(all_pairs(made))


def test_service_account_key_pair(made: ClusterPKI) -> None:
    key = serialization.load_pem_private_key(made.sa_key.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    pub = serialization.load_pem_public_key(made.sa_pub.read_bytes())
    assert isinstance(pub, rsa.RSAPublicKey)
    assert pub.public_numbers() == key.public_key().public_numbers()


def test_second_call_reuses_everything_unchanged(made: ClusterPKI, tmp_path: Path) -> None:
    before = snapshot(made.dir)
    again = ensure_pki(tmp_path / "pki", NODES, LB)
    assert again == made
    assert snapshot(made.dir) == before


def test_missing_sa_pub_is_rewritten_from_the_existing_key(made: ClusterPKI) -> None:
    key_bytes = made.sa_key.read_bytes()
    pub_bytes = made.sa_pub.read_bytes()
    made.sa_pub.unlink()
    ensure_pki(made.dir, NODES, LB)
    assert made.sa_key.read_bytes() == key_bytes
    assert made.sa_pub.read_bytes() == pub_bytes


def test_new_node_reissues_apiserver_certs_and_keeps_cas(made: ClusterPKI) -> None:
    before = snapshot(made.dir)
    nodes = {**NODES, "cp4": "127.0.7.14"}
    grown = ensure_pki(made.dir, nodes, LB)
    after = snapshot(made.dir)

    for kept in ("ca.crt", "ca.key", "etcd/ca.crt", "etcd/ca.key", "front-proxy-ca.crt", "sa.key", "sa.pub"):
        assert after[kept] == before[kept], kept
    # Another member's etcd certificates only name that member, so they stay.
    for node in NODES:
        assert after[f"etcd/{node}-server.crt"] == before[f"etcd/{node}-server.crt"]
        assert after[f"etcd/{node}-peer.key"] == before[f"etcd/{node}-peer.key"]
    assert after["admin.crt"] == before["admin.crt"]

    assert set(grown.apiserver) == set(nodes)
    for node, pair in grown.apiserver.items():
        if node in NODES:
            assert after[f"apiserver-{node}.crt"][1] != before[f"apiserver-{node}.crt"][1]
            assert after[f"apiserver-{node}.key"][1] != before[f"apiserver-{node}.key"][1]
        assert "127.0.7.14" in cert_info(pair.cert).ip_sans
        verify_signed_by(pair.cert, made.ca.cert)
    assert cert_info(grown.etcd_server["cp4"].cert).ip_sans == ["127.0.7.14", "127.0.0.1"]
    verify_signed_by(grown.etcd_peer["cp4"].cert, made.etcd_ca.cert)


def test_removing_a_node_keeps_certificates_that_still_cover(made: ClusterPKI) -> None:
    before = snapshot(made.dir)
    ensure_pki(made.dir, {"cp1": NODES["cp1"], "cp2": NODES["cp2"]}, LB)
    assert snapshot(made.dir) == before


def test_moved_load_balancer_reissues_only_apiserver_certs(made: ClusterPKI) -> None:
    before = snapshot(made.dir)
    ensure_pki(made.dir, NODES, "127.0.7.20")
    after = snapshot(made.dir)
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {f"apiserver-{n}.{ext}" for n in NODES for ext in ("crt", "key")}
    assert "127.0.7.20" in cert_info(made.apiserver["cp2"].cert).ip_sans


def test_short_validity_is_honoured_and_backdated(tmp_path: Path) -> None:
    start = datetime.now(UTC)
    p = ensure_pki(tmp_path / "pki", NODES, LB, validity_days=1)
    for pair in (p.admin, p.apiserver["cp1"], p.etcd_peer["cp3"]):
        left = remaining_validity(pair.cert)
        assert timedelta(hours=23) < left < timedelta(days=1, hours=1)
        info = cert_info(pair.cert)
        assert info.not_before <= start - timedelta(minutes=59)
        assert info.not_before.tzinfo is not None and info.not_after.tzinfo is not None
    # CAs keep their own, longer lifetime.
    assert remaining_validity(p.ca.cert) > timedelta(days=3000)


def test_changing_validity_reissues_leaves_but_not_cas(tmp_path: Path) -> None:
    short = ensure_pki(tmp_path / "pki", NODES, LB, validity_days=1)
    ca_before = short.ca.cert.read_bytes()
    assert remaining_validity(short.admin.cert) < timedelta(days=2)
    ensure_pki(tmp_path / "pki", NODES, LB, validity_days=365)
    assert remaining_validity(short.admin.cert) > timedelta(days=364)
    assert short.ca.cert.read_bytes() == ca_before


def test_expired_leaf_is_reissued(made: ClusterPKI, monkeypatch: pytest.MonkeyPatch) -> None:
    old = made.admin.cert.read_bytes()
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=400)
    monkeypatch.setattr(pki, "_now", lambda: later)
    ensure_pki(made.dir, NODES, LB)
    assert made.admin.cert.read_bytes() != old
    assert remaining_validity(made.admin.cert, now=later) > timedelta(days=364)


def test_expired_ca_is_replaced_and_leaves_follow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = ensure_pki(tmp_path / "pki", NODES, LB, validity_days=1, ca_validity_days=2)
    old_ca = p.ca.cert.read_bytes()
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    monkeypatch.setattr(pki, "_now", lambda: later)
    ensure_pki(tmp_path / "pki", NODES, LB, validity_days=1, ca_validity_days=2)
    assert p.ca.cert.read_bytes() != old_ca
    verify_signed_by(p.admin.cert, p.ca.cert)


def test_leaf_never_outlives_its_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = ensure_pki(tmp_path / "pki", NODES, LB, validity_days=5, ca_validity_days=10)
    ca_end = cert_info(p.ca.cert).not_after
    # A week on the leaves have expired and the CA has three days left: reissued leaves stop with the CA.
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    monkeypatch.setattr(pki, "_now", lambda: later)
    ensure_pki(tmp_path / "pki", NODES, LB, validity_days=5, ca_validity_days=10)
    assert cert_info(p.ca.cert).not_after == ca_end
    assert cert_info(p.admin.cert).not_after == ca_end
    assert cert_info(p.apiserver["cp1"].cert).not_after == ca_end
    # The clamped lifetime counts as the requested one, so the next run reuses it.
    before = snapshot(p.dir)
    ensure_pki(tmp_path / "pki", NODES, LB, validity_days=5, ca_validity_days=10)
    assert snapshot(p.dir) == before


def test_damaged_or_foreign_leaves_are_reissued(made: ClusterPKI, tmp_path: Path) -> None:
    made.kwok.cert.write_text("not a certificate")
    made.scheduler.key.unlink()
    # A leaf signed by some other CA with the right name and SANs must still be replaced.
    other = ensure_pki(tmp_path / "other", NODES, LB)
    made.traffic.cert.write_bytes(other.traffic.cert.read_bytes())
    made.traffic.key.write_bytes(other.traffic.key.read_bytes())
    # A key that does not belong to its certificate.
    made.admin.key.write_bytes(other.admin.key.read_bytes())

    ensure_pki(made.dir, NODES, LB)
    for pair in (made.kwok, made.scheduler, made.traffic, made.admin):
        verify_signed_by(pair.cert, made.ca.cert)
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert spki(key) == spki(load(pair.cert))
        assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600


def test_loose_key_mode_is_tightened_on_reuse(made: ClusterPKI) -> None:
    made.admin.key.chmod(0o644)
    content = made.admin.key.read_bytes()
    ensure_pki(made.dir, NODES, LB)
    assert stat.S_IMODE(made.admin.key.stat().st_mode) == 0o600
    assert made.admin.key.read_bytes() == content


def test_damaged_ca_stops_the_run(made: ClusterPKI) -> None:
    made.etcd_ca.cert.write_text("garbage")
    with pytest.raises(ClusterError, match=r"etcd/ca\.crt"):
        ensure_pki(made.dir, NODES, LB)


def test_ca_without_key_stops_the_run(made: ClusterPKI) -> None:
    made.ca.key.unlink()
    with pytest.raises(ClusterError, match=r"ca\.key does not;"):
        ensure_pki(made.dir, NODES, LB)


def test_ca_with_foreign_key_stops_the_run(made: ClusterPKI) -> None:
    made.ca.key.write_bytes(made.etcd_ca.key.read_bytes())
    with pytest.raises(ClusterError, match="key does not match"):
        ensure_pki(made.dir, NODES, LB)


def test_ca_key_alone_is_an_interrupted_first_run(made: ClusterPKI) -> None:
    made.front_proxy_ca.cert.unlink()
    ensure_pki(made.dir, NODES, LB)
    verify_signed_by(made.front_proxy_client.cert, made.front_proxy_ca.cert)


@pytest.mark.parametrize(
    ("nodes", "lb", "kwargs", "match"),
    [
        ({}, LB, {}, "no control-plane nodes"),
        ({"CP1": "127.0.7.11"}, LB, {}, "not a lowercase DNS label"),
        ({"../cp1": "127.0.7.11"}, LB, {}, "not a lowercase DNS label"),
        ({"cp1": "127.0.7.300"}, LB, {}, "address of node cp1"),
        ({"cp1": "127.0.7.11"}, "lb.example", {}, "load balancer address"),
        ({"cp1": "127.0.7.11"}, LB, {"validity_days": 0}, "validity_days=0"),
        ({"cp1": "127.0.7.11"}, LB, {"validity_days": 30, "ca_validity_days": 10}, "must outlive"),
    ],
)
def test_bad_inputs_are_refused(
    tmp_path: Path, nodes: dict[str, str], lb: str, kwargs: dict[str, int], match: str
) -> None:
    with pytest.raises(ClusterError, match=match):
        ensure_pki(tmp_path / "pki", nodes, lb, **kwargs)
    assert not (tmp_path / "pki").exists()


def test_kubeconfig_points_at_the_files(made: ClusterPKI, tmp_path: Path) -> None:
    path = made.kubeconfig(tmp_path / "conf" / "admin.conf", "https://127.0.7.10:6443", made.admin, "kubernetes-admin")
    assert path == tmp_path / "conf" / "admin.conf"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["apiVersion"] == "v1"
    assert config["kind"] == "Config"
    assert config["current-context"] == "kubequake"
    (cluster,) = config["clusters"]
    assert cluster["name"] == "kubequake"
    assert cluster["cluster"]["server"] == "https://127.0.7.10:6443"
    assert cluster["cluster"]["certificate-authority"] == str(made.ca.cert)
    (user,) = config["users"]
    assert user["name"] == "kubernetes-admin"
    assert user["user"]["client-certificate"] == str(made.admin.cert)
    assert user["user"]["client-key"] == str(made.admin.key)
    (context,) = config["contexts"]
    assert context == {"name": "kubequake", "context": {"cluster": "kubequake", "user": "kubernetes-admin"}}
    for ref in (cluster["cluster"]["certificate-authority"], user["user"]["client-certificate"]):
        assert Path(ref).is_absolute() and Path(ref).is_file()
    # Rewriting in place replaces the file rather than appending.
    made.kubeconfig(path, "https://127.0.7.11:6443", made.scheduler, "scheduler")
    assert yaml.safe_load(path.read_text())["users"][0]["user"]["client-key"] == str(made.scheduler.key)


def test_kubeconfig_refuses_a_client_from_another_ca(made: ClusterPKI, tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="not signed by the cluster CA"):
        made.kubeconfig(tmp_path / "bad.conf", "https://127.0.7.10:6443", made.etcd_client, "etcd")
    assert not (tmp_path / "bad.conf").exists()


def test_relative_dest_gives_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    p = ensure_pki(Path("rel"), {"cp1": "127.0.7.11"}, LB)
    assert p.dir == tmp_path / "rel"
    assert p.admin.cert.is_absolute()
    config = yaml.safe_load(p.kubeconfig(Path("k.conf"), "https://x:1", p.admin, "a").read_text())
    assert Path(config["clusters"][0]["cluster"]["certificate-authority"]).is_absolute()


def test_cert_info_and_remaining_validity(made: ClusterPKI) -> None:
    info = cert_info(made.apiserver["cp1"].cert)
    assert all(isinstance(ipaddress.ip_address(ip), ipaddress.IPv4Address) for ip in info.ip_sans)
    at = info.not_after - timedelta(hours=5)
    assert remaining_validity(made.apiserver["cp1"].cert, now=at) == timedelta(hours=5)
    assert remaining_validity(made.apiserver["cp1"].cert, now=info.not_after + timedelta(days=1)) < timedelta(0)
    with pytest.raises(ValueError, match="timezone"):
        remaining_validity(made.admin.cert, now=datetime(2030, 1, 1))


def test_cert_info_on_missing_or_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="does not exist"):
        cert_info(tmp_path / "nope.crt")
    bad = tmp_path / "bad.crt"
    bad.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ClusterError, match="not a PEM certificate"):
        cert_info(bad)


def test_generation_is_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    ensure_pki(tmp_path / "pki", NODES, LB)
    first = time.perf_counter() - start
    start = time.perf_counter()
    ensure_pki(tmp_path / "pki", NODES, LB)
    second = time.perf_counter() - start
    assert first < 1.0, f"generating the PKI for 3 nodes took {first:.2f}s"
    assert second < 1.0, f"checking the PKI for 3 nodes took {second:.2f}s"
