"""The cluster's PKI: CAs, serving and client certificates, service-account keys and kubeconfigs.

Lays out the same set of files kubeadm creates for a stacked-etcd HA control plane, so the
upstream binaries run with their ordinary flags against real TLS. Every certificate is
checked before it is reused: a run that adds a control plane or moves the load balancer gets
fresh leaf certificates whose SANs cover the new addresses, while the CAs (and so every
kubeconfig and client already trusting them) stay as they are.

Short lifetimes are supported on purpose (`validity_days=1`) so checks that gate on
certificate expiry can be exercised against a live cluster.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.errors import ClusterError

log = logging.getLogger(__name__)

# Certificates start an hour in the past so a component whose clock runs slightly behind
# the harness's does not reject a certificate that was issued a moment ago.
BACKDATE = timedelta(hours=1)
# First address of kube-apiserver's default --service-cluster-ip-range (10.96.0.0/12):
# in-cluster clients reach the API through the `kubernetes` Service on this address.
SERVICE_IP = "10.96.0.1"
KUBERNETES_DNS_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
KUBECONFIG_CLUSTER = "kubequake"
KUBECONFIG_CONTEXT = "kubequake"

CA_CN = "kubequake-ca"
ETCD_CA_CN = "kubequake-etcd-ca"
FRONT_PROXY_CA_CN = "kubequake-front-proxy-ca"

# x509 stores whole seconds; the tolerance only absorbs rounding, never a different lifetime.
_LIFETIME_TOLERANCE = timedelta(minutes=1)
_NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}
_SERVER = (ExtendedKeyUsageOID.SERVER_AUTH,)
_CLIENT = (ExtendedKeyUsageOID.CLIENT_AUTH,)
_SERVER_CLIENT = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)

_SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class CertInfo:
    """The parts of a certificate the harness and its checks look at."""

    subject_cn: str
    organizations: list[str]
    issuer_cn: str
    not_before: datetime
    not_after: datetime
    dns_sans: list[str]
    ip_sans: list[str]
    is_ca: bool
    # Extended key usages by their RFC 5280 names ("serverAuth", "clientAuth"); unknown ones as dotted OIDs.
    key_usages: list[str]


@dataclass(frozen=True)
class ClusterPKI:
    dir: Path
    ca: CertPair
    etcd_ca: CertPair
    front_proxy_ca: CertPair
    front_proxy_client: CertPair
    sa_key: Path
    sa_pub: Path
    etcd_server: dict[str, CertPair]
    etcd_peer: dict[str, CertPair]
    etcd_client: CertPair
    apiserver: dict[str, CertPair]
    apiserver_kubelet_client: CertPair
    admin: CertPair
    controller_manager: CertPair
    scheduler: CertPair
    kwok: CertPair
    traffic: CertPair

    def kubeconfig(self, path: Path, server: str, user: CertPair, user_name: str) -> Path:
        """Write a kubeconfig for `user` against `server` (e.g. "https://127.0.0.10:6443") and return its path.

        Credentials are referenced by absolute path rather than embedded, so a kubeconfig
        keeps working when leaf certificates are renewed in place.
        """
        user_cert = _read_cert(user.cert)
        ca_cert = _read_cert(self.ca.cert)
        if not _issued_by(user_cert, ca_cert):
            # The apiserver only trusts client certificates from the cluster CA; catching a
            # mix-up here beats a bare 401 from every request later.
            raise ClusterError(
                f"kubeconfig {path}: client certificate {user.cert} is not signed by the cluster CA {self.ca.cert}; "
                "use one of the cluster-CA client pairs (admin, controller_manager, scheduler, kwok, traffic)"
            )
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": KUBECONFIG_CLUSTER,
                    "cluster": {"server": server, "certificate-authority": str(self.ca.cert.absolute())},
                }
            ],
            "users": [
                {
                    "name": user_name,
                    "user": {
                        "client-certificate": str(user.cert.absolute()),
                        "client-key": str(user.key.absolute()),
                    },
                }
            ],
            "contexts": [{"name": KUBECONFIG_CONTEXT, "context": {"cluster": KUBECONFIG_CLUSTER, "user": user_name}}],
            "current-context": KUBECONFIG_CONTEXT,
            "preferences": {},
        }
        if not path.parent.is_dir():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # 0600 like a private key: a kubeconfig is enough to act as its user.
        _write_atomic(path, yaml.safe_dump(config, sort_keys=False).encode(), 0o600)
        log.debug("wrote kubeconfig %s for %s -> %s", path, user_name, server)
        return path


@dataclass(frozen=True)
class _LeafSpec:
    stem: str  # path under the PKI directory without ".crt"/".key", e.g. "etcd/cp1-server"
    cn: str
    orgs: tuple[str, ...]
    usages: tuple[x509.ObjectIdentifier, ...]
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class _CA:
    pair: CertPair
    cert: x509.Certificate
    key: _SigningKey


def ensure_pki(
    dest: Path,
    node_addresses: dict[str, str],
    lb_address: str,
    *,
    validity_days: int = 365,
    ca_validity_days: int = 3650,
) -> ClusterPKI:
    """Create everything under dest (idempotent: if a file set already exists and its SANs still cover
    node_addresses/lb_address, reuse it; otherwise regenerate leaves, keep CAs).

    `node_addresses` maps control-plane node names ("cp1") to their addresses. A leaf is
    reused only if it is signed by the current CA, matches its key, has the expected subject,
    usages and SANs, has not expired, and was issued for `validity_days`; anything else is
    reissued with a fresh key. CAs are reused unless expired; a CA whose files are damaged
    stops the run rather than being silently replaced, since everything trusting it would break.
    """
    _validate_inputs(node_addresses, lb_address, validity_days, ca_validity_days)
    root = dest.absolute()
    _ensure_dir(root)
    _ensure_dir(root / "etcd")
    now = _now()

    ca = _ensure_ca(_pair(root, "ca"), CA_CN, ca_validity_days, now)
    etcd_ca = _ensure_ca(_pair(root, "etcd/ca"), ETCD_CA_CN, ca_validity_days, now)
    front_proxy_ca = _ensure_ca(_pair(root, "front-proxy-ca"), FRONT_PROXY_CA_CN, ca_validity_days, now)
    sa_key, sa_pub = _ensure_sa_keys(root)

    every_address = tuple(node_addresses.values())
    leaves: list[tuple[_LeafSpec, _CA]] = []
    for node, address in node_addresses.items():
        etcd_dns = (node, "localhost")
        etcd_ips = (address, "127.0.0.1")
        leaves.append((_LeafSpec(f"etcd/{node}-server", node, (), _SERVER_CLIENT, etcd_dns, etcd_ips), etcd_ca))
        leaves.append((_LeafSpec(f"etcd/{node}-peer", node, (), _SERVER_CLIENT, etcd_dns, etcd_ips), etcd_ca))
        leaves.append(
            (
                _LeafSpec(
                    f"apiserver-{node}",
                    "kube-apiserver",
                    (),
                    _SERVER,
                    (*KUBERNETES_DNS_NAMES, "localhost", node),
                    (*every_address, lb_address, "127.0.0.1", SERVICE_IP),
                ),
                ca,
            )
        )
    clients = (
        (_LeafSpec("apiserver-etcd-client", "kube-apiserver-etcd-client", (), _CLIENT), etcd_ca),
        (_LeafSpec("front-proxy-client", "front-proxy-client", (), _CLIENT), front_proxy_ca),
        (
            _LeafSpec(
                "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("kubeadm:cluster-admins",), _CLIENT
            ),
            ca,
        ),
        (_LeafSpec("admin", "kubernetes-admin", ("system:masters",), _CLIENT), ca),
        (_LeafSpec("controller-manager", "system:kube-controller-manager", (), _CLIENT), ca),
        (_LeafSpec("scheduler", "system:kube-scheduler", (), _CLIENT), ca),
        (_LeafSpec("kwok", "kubequake-kwok", ("system:masters",), _CLIENT), ca),
        (_LeafSpec("traffic", "kubequake-traffic", ("system:masters",), _CLIENT), ca),
    )
    leaves.extend(clients)

    issued = 0
    for spec, issuer in leaves:
        pair = _pair(root, spec.stem)
        problem = _leaf_problem(spec, pair, issuer, validity_days, now)
        if problem is None:
            _fix_key_mode(pair.key)
            continue
        # A first run issues every leaf, which is not news; a reissue says why.
        log.log(logging.DEBUG if problem == "missing" else logging.INFO, "issuing %s (%s)", pair.cert, problem)
        _issue_leaf(spec, pair, issuer, validity_days, now)
        issued += 1
    log.info("PKI at %s: %d leaf certificates issued, %d reused", root, issued, len(leaves) - issued)

    def per_node(stem: str) -> dict[str, CertPair]:
        return {node: _pair(root, stem.format(node=node)) for node in node_addresses}

    return ClusterPKI(
        dir=root,
        ca=ca.pair,
        etcd_ca=etcd_ca.pair,
        front_proxy_ca=front_proxy_ca.pair,
        front_proxy_client=_pair(root, "front-proxy-client"),
        sa_key=sa_key,
        sa_pub=sa_pub,
        etcd_server=per_node("etcd/{node}-server"),
        etcd_peer=per_node("etcd/{node}-peer"),
        etcd_client=_pair(root, "apiserver-etcd-client"),
        apiserver=per_node("apiserver-{node}"),
        apiserver_kubelet_client=_pair(root, "apiserver-kubelet-client"),
        admin=_pair(root, "admin"),
        controller_manager=_pair(root, "controller-manager"),
        scheduler=_pair(root, "scheduler"),
        kwok=_pair(root, "kwok"),
        traffic=_pair(root, "traffic"),
    )


def cert_info(path: Path) -> CertInfo:
    """Read the certificate at `path` and return the fields checks care about."""
    cert = _read_cert(path)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_sans = [str(n) for n in sans.get_values_for_type(x509.DNSName)]
        ip_sans = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns_sans, ip_sans = [], []
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        usages = [_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku]
    except x509.ExtensionNotFound:
        usages = []
    return CertInfo(
        subject_cn=_name_attr(cert.subject, NameOID.COMMON_NAME),
        organizations=_name_attrs(cert.subject, NameOID.ORGANIZATION_NAME),
        issuer_cn=_name_attr(cert.issuer, NameOID.COMMON_NAME),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_sans=dns_sans,
        ip_sans=ip_sans,
        is_ca=is_ca,
        key_usages=usages,
    )


def remaining_validity(path: Path, now: datetime | None = None) -> timedelta:
    """Time until the certificate at `path` expires; negative once it has."""
    if now is not None and now.tzinfo is None:
        # A naive time would be compared as if it were UTC, silently off by the local offset.
        raise ValueError(f"remaining_validity: now={now!r} has no timezone; pass an aware datetime")
    return _read_cert(path).not_valid_after_utc - (now or datetime.now(UTC))


# --- inputs and files ------------------------------------------------------------------------


def _validate_inputs(
    node_addresses: dict[str, str], lb_address: str, validity_days: int, ca_validity_days: int
) -> None:
    if not node_addresses:
        raise ClusterError("PKI: no control-plane nodes given; pass at least one node name and address")
    for node, address in node_addresses.items():
        # Node names become file names and DNS SANs, so both sets of rules apply.
        if not _NODE_NAME.match(node):
            raise ClusterError(
                f"PKI: node name {node!r} is not a lowercase DNS label; use letters, digits and '-', e.g. 'cp1'"
            )
        _check_ip(f"address of node {node}", address)
    _check_ip("load balancer address", lb_address)
    if validity_days < 1:
        raise ClusterError(f"PKI: validity_days={validity_days}: certificates need at least 1 day")
    if ca_validity_days < validity_days:
        raise ClusterError(
            f"PKI: ca_validity_days={ca_validity_days} is shorter than validity_days={validity_days}; "
            "a CA must outlive the certificates it signs"
        )


def _check_ip(what: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ClusterError(f"PKI: {what} {value!r} is not an IP address") from None


def _now() -> datetime:
    # x509 times have whole-second precision; dropping microseconds keeps lifetimes exact.
    return datetime.now(UTC).replace(microsecond=0)


def _pair(root: Path, stem: str) -> CertPair:
    return CertPair(cert=root / f"{stem}.crt", key=root / f"{stem}.key")


def _ensure_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask and ignored for an existing directory.
    if path.stat().st_mode & 0o777 != 0o700:
        path.chmod(0o700)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` so readers see the old file or the new one, never a partial one.

    The temporary file is created with its final mode, so a private key is never readable by
    others, not even for the moment before a chmod. No fsync: these files are regenerated on
    the next run if a crash loses them, and fsyncing dozens of files would dominate the runtime.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            # os.open's mode passes through the umask; certificates must stay world-readable.
            os.fchmod(f.fileno(), mode)
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fix_key_mode(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode != 0o600:
        log.warning("private key %s had mode %o; setting 0600", path, mode)
        path.chmod(0o600)


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise ClusterError(f"certificate {path} does not exist; run cluster creation to generate the PKI") from None
    except ValueError as exc:
        raise ClusterError(
            f"certificate {path} is not a PEM certificate ({exc}); delete it to have it reissued"
        ) from None


def _read_key(path: Path) -> _SigningKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ClusterError(f"private key {path} cannot be loaded ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ClusterError(f"private key {path} is a {type(key).__name__}; expected an EC or RSA key")
    return key


def _key_pem(key: _SigningKey) -> bytes:
    # PKCS#8 ("PRIVATE KEY") is what Go's tls.X509KeyPair, etcd and OpenSSL all accept.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _spki(key: x509.Certificate | _SigningKey) -> bytes:
    public = key.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _name_attrs(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [v if isinstance(v, str) else v.decode() for v in (a.value for a in name.get_attributes_for_oid(oid))]


def _name_attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = _name_attrs(name, oid)
    return values[0] if values else ""


# --- CAs and keys ----------------------------------------------------------------------------


def _ensure_ca(pair: CertPair, cn: str, validity_days: int, now: datetime) -> _CA:
    if not pair.cert.exists():
        if pair.key.exists():
            # The key is written before the certificate, so a key alone is an interrupted
            # first generation: nothing can have been signed by it yet.
            log.warning("CA key %s has no certificate; regenerating the CA", pair.key)
        return _new_ca(pair, cn, validity_days, now)
    cert = _read_cert(pair.cert)
    if cert.not_valid_after_utc <= now:
        # Nothing can verify against an expired CA, so replacing it loses nothing; every leaf
        # it signed fails the issuer check below and is reissued.
        log.warning(
            "CA %s expired at %s; regenerating it and every certificate it signed", pair.cert, cert.not_valid_after_utc
        )
        return _new_ca(pair, cn, validity_days, now)
    if not pair.key.exists():
        raise ClusterError(
            f"CA certificate {pair.cert} exists but its key {pair.key} does not; restore the key, "
            f"or delete {pair.cert.parent} to start a new PKI (clients trusting the old CA will need the new one)"
        )
    key = _read_key(pair.key)
    problems = []
    if _spki(key) != _spki(cert):
        problems.append("key does not match certificate")
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        problems.append("certificate is not a CA")
    if _name_attr(cert.subject, NameOID.COMMON_NAME) != cn:
        problems.append(f"CN is {_name_attr(cert.subject, NameOID.COMMON_NAME)!r}, expected {cn!r}")
    if problems:
        raise ClusterError(
            f"CA {pair.cert}: {'; '.join(problems)}; delete {pair.cert} and {pair.key} to start a new CA "
            "(every certificate it signed is reissued)"
        )
    _fix_key_mode(pair.key)
    log.debug("reusing CA %s (expires %s)", pair.cert, cert.not_valid_after_utc)
    return _CA(pair, cert, key)


def create_ca(pair: CertPair, cn: str, validity_days: int) -> None:
    """A new self-signed CA at `pair` (key 0600), e.g. a stranger CA for tests of trust failures."""
    _new_ca(pair, cn, validity_days, datetime.now(UTC))


def _new_ca(pair: CertPair, cn: str, validity_days: int, now: datetime) -> _CA:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_atomic(pair.key, _key_pem(key), 0o600)
    _write_atomic(pair.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("created CA %s (CN %s, valid %d days)", pair.cert, cn, validity_days)
    return _CA(pair, cert, key)


def _ensure_sa_keys(root: Path) -> tuple[Path, Path]:
    """The service-account signing key pair: kept across runs like a CA, since tokens depend on it."""
    key_path, pub_path = root / "sa.key", root / "sa.pub"
    if key_path.exists():
        key = _read_key(key_path)
        _fix_key_mode(key_path)
    else:
        # RSA rather than EC: every consumer of service-account tokens (including OIDC
        # discovery clients) handles RS256, not all handle ES256.
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_atomic(key_path, _key_pem(key), 0o600)
        log.info("created service-account key %s", key_path)
    pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        current = pub_path.read_bytes()
    except FileNotFoundError:
        current = b""
    if current != pub_pem:
        _write_atomic(pub_path, pub_pem, 0o644)
        log.info("wrote service-account public key %s", pub_path)
    return key_path, pub_path


# --- leaves ----------------------------------------------------------------------------------


def _leaf_problem(spec: _LeafSpec, pair: CertPair, ca: _CA, validity_days: int, now: datetime) -> str | None:
    """Why the existing leaf at `pair` cannot be reused, or None if it can."""
    if not pair.cert.exists() or not pair.key.exists():
        return "missing"
    try:
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        return f"unreadable: {exc}"
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) or _spki(key) != _spki(cert):
        return "key does not match certificate"
    if not _issued_by(cert, ca.cert):
        return f"not signed by {ca.pair.cert}"
    if cert.not_valid_after_utc <= now:
        return f"expired at {cert.not_valid_after_utc}"
    expected_end = min(
        cert.not_valid_before_utc + BACKDATE + timedelta(days=validity_days), ca.cert.not_valid_after_utc
    )
    if abs(cert.not_valid_after_utc - expected_end) > _LIFETIME_TOLERANCE:
        return f"issued for a different lifetime than validity_days={validity_days}"
    if _name_attr(cert.subject, NameOID.COMMON_NAME) != spec.cn:
        return f"CN is not {spec.cn!r}"
    if sorted(_name_attrs(cert.subject, NameOID.ORGANIZATION_NAME)) != sorted(spec.orgs):
        return f"organizations are not {list(spec.orgs)}"
    try:
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        usages = set()
    if not set(spec.usages) <= usages:
        return "missing extended key usages"
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have_dns = {n.lower() for n in sans.get_values_for_type(x509.DNSName)}
        have_ips = set(sans.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        have_dns, have_ips = set(), set()
    missing = sorted({d.lower() for d in spec.dns} - have_dns) + sorted(
        str(ip) for ip in {ipaddress.ip_address(a) for a in spec.ips} - have_ips
    )
    if missing:
        return f"SANs do not cover {', '.join(missing)}"
    return None


def _issue_leaf(spec: _LeafSpec, pair: CertPair, ca: _CA, validity_days: int, now: datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in spec.orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, spec.cn))
    # A leaf never outlives its CA: its stated expiry would be a lie, and expiry checks read the leaf.
    not_after = min(now + timedelta(days=validity_days), ca.cert.not_valid_after_utc)
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(spec.usages)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    if spec.dns or spec.ips:
        # dict.fromkeys drops duplicates (e.g. a node address of 127.0.0.1) while keeping order.
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys(spec.dns)]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(spec.ips)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    # Key first: a crash between the two writes leaves a mismatched pair, which the next run reissues.
    _write_atomic(pair.key, _key_pem(key), 0o600)
    _write_atomic(pair.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
