"""The pre-upgrade conformance gate: non-disruptive checks of a running HA cluster, each a Verdict.

An upgrade should start only from a cluster that is already sound: components within the version
skew policy, etcd healthy with an odd membership and one leader, certificates that outlive the
upgrade window, leader election working, apiservers behind a load balancer that health-checks
them, and the rollout/undo path the upgrade relies on. Each check measures something and says
which defect it found; a check that cannot measure fails (a gate that cannot see is not a pass).

This module is pytest-free: the CLI runs it, prints the table and writes JUnit; the Allure side
and the disruptive suites live in harness/gate_suite.py.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import requests
from cryptography import x509

from harness import pki as pkimod
from harness.checks.budgets import Budgets
from harness.checks.etcd import EtcdEndpoint
from harness.checks.leaders import LEASED_COMPONENTS, leading_instances, read_lease
from harness.checks.skew import Version, parse_version, skew_verdicts
from harness.net.http import loopback_session, probe
from harness.net.tls import TLSClient
from harness.providers.base import Capability, Cluster, Component
from harness.providers.haproxy import parse_stats_csv
from harness.slo import Objectives
from harness.status import etcd_client, leaders_by_lease
from harness.transport.local import LocalTransport
from harness.verdicts import Outcome, Verdict, check, outcome_of

log = logging.getLogger(__name__)

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_COULD_NOT_RUN = 2

DEFAULT_MIN_CERT_DAYS = 30.0
HTTP_TIMEOUT_S = 5.0
_BUILD_INFO = re.compile(r'^kubernetes_build_info\{[^}]*git_version="([^"]+)"', re.MULTILINE)
SCRATCH_IMAGES = ("registry.invalid/gate:1.0", "registry.invalid/gate:1.1")


@dataclass(frozen=True)
class GateOptions:
    min_cert_days: float = DEFAULT_MIN_CERT_DAYS
    # The user's SLOs (harness.slo); the defaults when none were given.
    objectives: Objectives = field(default_factory=Objectives)


@dataclass(frozen=True)
class CheckOutcome:
    """One verdict of the gate with the group it belongs to and how long it took to measure."""

    group: str
    verdict: Verdict
    seconds: float

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    @property
    def outcome(self) -> Outcome:
        return self.verdict.outcome


@dataclass
class GateReport:
    cluster: str
    # How the gate got its cluster: "reused the running cluster" or "brought up for the gate".
    cluster_origin: str
    outcomes: list[CheckOutcome] = field(default_factory=list)
    # Parts of the gate that could not run at all (not failures of the cluster); they make exit 2.
    incomplete: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckOutcome]:
        """Checks the cluster failed (FAIL), not the ones that could not be made."""
        return [o for o in self.outcomes if o.outcome is Outcome.FAIL]

    @property
    def unmade(self) -> list[CheckOutcome]:
        """Checks whose measurement could not be made (INCONCLUSIVE) or whose harness broke (ERROR)."""
        return [o for o in self.outcomes if o.outcome in (Outcome.INCONCLUSIVE, Outcome.ERROR)]

    @property
    def exit_code(self) -> int:
        return gate_exit_code(self.outcomes, self.incomplete)


def gate_exit_code(outcomes: Sequence[CheckOutcome], incomplete: Sequence[str] = ()) -> int:
    """0 only when every required check passed; 1 on any FAIL; 2 on ERROR, INCONCLUSIVE or a part not run.

    A FAIL wins over everything else: the cluster broke an SLO, whatever else could not be
    measured. An empty gate is not a pass: a gate that checked nothing must not let an upgrade through.
    """
    if any(o.outcome is Outcome.FAIL for o in outcomes):
        return EXIT_FAIL
    if incomplete or not outcomes or any(o.outcome is not Outcome.PASS for o in outcomes):
        return EXIT_COULD_NOT_RUN
    return EXIT_PASS


# -- output ---------------------------------------------------------------------------------------


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"
    return f"{text}{unit}"


def verdict_table(outcomes: Sequence[CheckOutcome]) -> str:
    """Fixed-width table: result, group, check, measured, threshold, then the message unpadded."""
    headers = ("result", "group", "check", "measured", "threshold", "message")
    rows = [
        (
            o.outcome.value,
            o.group,
            o.verdict.name,
            _number(o.verdict.measured, o.verdict.unit),
            _number(o.verdict.slo, o.verdict.unit),
            o.verdict.message,
        )
        for o in outcomes
    ]
    widths = [max([len(headers[i])] + [len(r[i]) for r in rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        last = len(cells) - 1
        return "  ".join(c if i == last else c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def junit_xml(report: GateReport, timestamp: datetime | None = None) -> bytes:
    """JUnit XML with one testcase per check; a failed check carries its message as the failure."""
    total = sum(o.seconds for o in report.outcomes)
    suite = ET.Element(
        "testsuite",
        {
            "name": "kubequake gate",
            "tests": str(len(report.outcomes)),
            "failures": str(len(report.failed)),
            "errors": str(len(report.unmade) + len(report.incomplete)),
            "skipped": "0",
            "time": f"{total:.3f}",
            "timestamp": (timestamp or datetime.now(UTC)).isoformat(timespec="seconds"),
            "hostname": socket.gethostname(),
        },
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "cluster", "value": report.cluster})
    ET.SubElement(props, "property", {"name": "cluster_origin", "value": report.cluster_origin})
    for o in report.outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            {"classname": f"kubequake.gate.{o.group}", "name": o.verdict.name, "time": f"{o.seconds:.3f}"},
        )
        if o.outcome is Outcome.FAIL:
            failure = ET.SubElement(case, "failure", {"message": o.verdict.message, "type": "GateCheckFailed"})
            failure.text = o.verdict.line()
        elif not o.passed:
            # Not the cluster's failure: the check could not be made, or the harness broke.
            kind = "GateCheckInconclusive" if o.outcome is Outcome.INCONCLUSIVE else "GateCheckError"
            error = ET.SubElement(case, "error", {"message": o.verdict.message, "type": kind})
            error.text = o.verdict.line()
        out = ET.SubElement(case, "system-out")
        out.text = o.verdict.line()
    for what in report.incomplete:
        case = ET.SubElement(suite, "testcase", {"classname": "kubequake.gate", "name": "gate completeness"})
        err = ET.SubElement(case, "error", {"message": what, "type": "GateIncomplete"})
        err.text = what
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def write_junit(report: GateReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(junit_xml(report))
    return path


# -- running checks -------------------------------------------------------------------------------

CheckFn = Callable[[Cluster, GateOptions], list[Verdict]]


def _run_group(group: str, fn: CheckFn, cluster: Cluster, opts: GateOptions) -> list[CheckOutcome]:
    """Run one group of checks; an exception becomes an ERROR verdict naming it.

    Deliberately broad: a gate must list every check, so one probe that blows up fails its own
    group instead of hiding the groups after it. An exception is the harness's or the
    environment's problem until a check says otherwise, so it is ERROR (exit 2), never a FAIL.
    """
    start = time.monotonic()
    try:
        verdicts = fn(cluster, opts)
    except Exception as exc:
        log.warning("gate group %s could not be checked", group, exc_info=True)
        msg = f"{type(exc).__name__}: {exc}"[:600]
        verdicts = [Verdict(f"{group} could be checked", None, None, "", Outcome.ERROR, msg)]
    took = (time.monotonic() - start) / max(len(verdicts), 1)
    for v in verdicts:
        log.info("%s", v.line())
    return [CheckOutcome(group, v, took) for v in verdicts]


def run_gate(cluster: Cluster, opts: GateOptions, origin: str) -> GateReport:
    """Every non-disruptive check, in the order an operator reads them."""
    report = GateReport(cluster.cfg.name, origin)
    groups: list[tuple[str, CheckFn]] = [
        ("versions", version_checks),
        ("etcd", etcd_checks),
        ("certificates", certificate_checks),
        ("leader election", leader_election_checks),
        ("load balancer", load_balancer_checks),
        ("rollout", rollout_checks),
    ]
    for group, fn in groups:
        log.info("gate: %s", group)
        report.outcomes += _run_group(group, fn, cluster, opts)
    return report


# -- versions and skew ----------------------------------------------------------------------------


def _get(url: str, tls: TLSClient) -> requests.Response:
    with loopback_session() as session:
        resp = session.get(url, verify=str(tls.ca), cert=(str(tls.cert), str(tls.key)), timeout=HTTP_TIMEOUT_S)
    resp.raise_for_status()
    return resp


def _read_versions(
    what: str, sources: dict[str, Callable[[], str]]
) -> tuple[dict[str, Version], dict[str, str], Verdict]:
    """Read a version from each source; the verdict says which answered and which did not."""
    versions: dict[str, Version] = {}
    errors: dict[str, str] = {}
    for who, read in sources.items():
        try:
            versions[who] = parse_version(read())
        except Exception as exc:  # each source fails on its own; the verdict names it
            errors[who] = f"{type(exc).__name__}: {exc}"[:200]
    seen = ", ".join(f"{who} {v}" for who, v in versions.items())
    if errors:
        msg = "; ".join(f"{who}: cannot read the version ({err})" for who, err in errors.items())
        verdict = Verdict(
            f"{what} version",
            len(versions),
            len(sources),
            "",
            Outcome.FAIL,
            msg + (f"; read: {seen}" if seen else ""),
        )
    else:
        verdict = Verdict(f"{what} version", len(versions), len(sources), "", Outcome.PASS, seen)
    return versions, errors, verdict


def _static_pod_version(cluster: Cluster, component: Component, node: str) -> str:
    from kubernetes import client

    from harness.net.kube import api_client

    with api_client(cluster.lb_url(), cluster.admin_tls(), timeout=HTTP_TIMEOUT_S) as api:
        pods = client.CoreV1Api(api).list_namespaced_pod(
            "kube-system", label_selector=f"component={component.value}", _request_timeout=HTTP_TIMEOUT_S
        )
    for pod in pods.items:
        if pod.spec and pod.spec.node_name == node and pod.spec.containers:
            image = str(pod.spec.containers[0].image)
            return image.rsplit(":", 1)[-1] if ":" in image else image
    raise ValueError(
        f"no metrics URL for {component} (add it under [metrics] in the inventory) and no {component} pod on {node}"
    )


def version_checks(cluster: Cluster, opts: GateOptions) -> list[Verdict]:
    tls = cluster.admin_tls()
    cps = cluster.control_planes()

    def api_version(node: str) -> Callable[[], str]:
        return lambda: str(_get(f"{cluster.apiserver_url(node)}/version", tls).json()["gitVersion"])

    def build_info(node: str, component: Component) -> Callable[[], str]:
        # kube-controller-manager and kube-scheduler serve no /version; their build is in /metrics.
        # Where those are out of reach (kubeadm binds them to the node's loopback), the tag of
        # the static pod's image says which build the kubelet runs.
        url = cluster.metrics_url(node, component)

        def read() -> str:
            if url is None:
                return _static_pod_version(cluster, component, node)
            m = _BUILD_INFO.search(_get(url, tls).text)
            if m is None:
                raise ValueError("no kubernetes_build_info in /metrics")
            return m.group(1)

        return read

    def etcd_version(node: str) -> Callable[[], str]:
        etls = cluster.etcd_tls()
        return lambda: "v" + str(_get(f"{cluster.etcd_url(node)}/version", etls).json()["etcdserver"])

    def kubectl_version() -> str:
        res = LocalTransport().run([str(cluster.bins["kubectl"]), "version", "--client", "-o", "json"], 30)
        res.check()
        return str(json.loads(res.stdout)["clientVersion"]["gitVersion"])

    apis, _, v_api = _read_versions("kube-apiserver", {n.name: api_version(n.name) for n in cps})
    kcm, sched = Component.CONTROLLER_MANAGER, Component.SCHEDULER
    kcms, _, v_kcm = _read_versions("kube-controller-manager", {n.name: build_info(n.name, kcm) for n in cps})
    scheds, _, v_sched = _read_versions("kube-scheduler", {n.name: build_info(n.name, sched) for n in cps})
    kubectl, _, v_kubectl = _read_versions("kubectl client", {"kubectl": kubectl_version})
    etcds, _, v_etcd = _read_versions("etcd", {n.name: etcd_version(n.name) for n in cps})
    mixed = {str(v) for v in etcds.values()}
    if len(mixed) > 1:
        # Mixed etcd versions are a state upgrades pass through, never one to start an upgrade from.
        v_etcd = Verdict(
            v_etcd.name,
            v_etcd.measured,
            v_etcd.slo,
            "",
            Outcome.FAIL,
            f"etcd members run different versions ({v_etcd.message}); finish the etcd upgrade first",
        )
    return [
        v_api,
        v_kcm,
        v_sched,
        v_kubectl,
        v_etcd,
        *skew_verdicts(apis, kcms, scheds, kubectl.get("kubectl")),
    ]


# -- etcd -----------------------------------------------------------------------------------------


def etcd_checks(cluster: Cluster, opts: GateOptions) -> list[Verdict]:
    ec = etcd_client(cluster, timeout=HTTP_TIMEOUT_S)
    statuses = {s.name: s for s in ec.statuses()}
    # The membership as etcd itself records it, not as the harness configured it: a member added
    # or removed behind the harness's back changes the quorum arithmetic.
    members = ec.members() or sorted(statuses)
    n = len(members)
    quorum = n // 2 + 1
    healthy: dict[str, bool] = {}
    why: dict[str, str] = {}
    for m in members:
        st = statuses.get(m)
        if st is None:
            healthy[m], why[m] = False, "listed by etcd but not reachable at any endpoint the cluster knows"
        elif not st.reachable:
            healthy[m], why[m] = False, st.error or "unreachable"
        else:
            healthy[m] = ec.health(EtcdEndpoint(st.name, st.url))
            if not healthy[m]:
                why[m] = "no linearizable read through it"
    n_healthy = sum(healthy.values())
    out: list[Verdict] = []
    if n_healthy == n and n:
        out.append(
            Verdict(
                "etcd members healthy",
                n_healthy,
                n,
                "",
                Outcome.PASS,
                f"all {n} members healthy: {', '.join(members)}",
            )
        )
    else:
        bad = "; ".join(f"member {m}: {why[m]}" for m in members if not healthy[m])
        out.append(
            Verdict("etcd members healthy", n_healthy, n, "", Outcome.FAIL, f"{n_healthy}/{n} members healthy; {bad}")
        )
    if n % 2 == 1:
        out.append(
            Verdict("etcd member count is odd", n, None, "", Outcome.PASS, f"{n} members tolerate {n - quorum} failed")
        )
    else:
        out.append(
            Verdict(
                "etcd member count is odd",
                n,
                None,
                "",
                Outcome.FAIL,
                f"etcd has {n} members, an even count: quorum needs {quorum} of {n}, so it tolerates {n - quorum} "
                f"failed, no more than {n - 1} members would, with one more member to lose; "
                "run an odd number of members (3 or 5)",
            )
        )
    out.append(
        Verdict(
            "etcd quorum",
            n_healthy,
            quorum,
            "",
            outcome_of(n > 0 and n_healthy >= quorum),
            f"{n_healthy} of {n} members healthy, quorum is {quorum}"
            + ("" if n_healthy >= quorum else "; etcd cannot commit writes, restore members before anything else"),
        )
    )
    claimers = sorted(s.name for s in statuses.values() if s.is_leader)
    leader_ids = {s.leader_id for s in statuses.values() if s.reachable and s.leader_id not in ("", "0")}
    one = len(claimers) == 1 and len(leader_ids) == 1
    out.append(
        Verdict(
            "etcd has exactly one leader",
            len(claimers),
            1,
            "",
            outcome_of(one),
            f"leader {claimers[0]}, agreed by every reachable member"
            if one
            else f"members claiming leadership: {claimers or 'none'}; leader ids seen by members: "
            f"{sorted(leader_ids) or 'none'}",
        )
    )
    return out


# -- certificates ---------------------------------------------------------------------------------


def served_certificate(address: str, port: int, tls: TLSClient, timeout: float = HTTP_TIMEOUT_S) -> x509.Certificate:
    """The certificate a TLS endpoint actually presents (what clients see, whatever is on disk)."""
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    ctx.check_hostname = False  # only the expiry is read; the CA verification still applies
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    with (
        socket.create_connection((address, port), timeout=timeout) as sock,
        ctx.wrap_socket(sock, server_hostname=address) as tls_sock,
    ):
        der = tls_sock.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError(f"{address}:{port} presented no certificate")
    return x509.load_der_x509_certificate(der)


@dataclass(frozen=True)
class CertSource:
    """A certificate the cluster uses: a file on disk, or what an endpoint serves."""

    label: str
    path: Path | None = None
    endpoint: tuple[str, int, TLSClient] | None = None

    def not_after(self) -> datetime:
        if self.path is not None:
            return pkimod.cert_info(self.path).not_after
        assert self.endpoint is not None
        address, port, tls = self.endpoint
        return served_certificate(address, port, tls).not_valid_after_utc


def certificate_sources(cluster: Cluster) -> list[tuple[str, list[CertSource]]]:
    """Every serving and client certificate of the control plane, grouped as kubeadm names them.

    The kwok and traffic client certificates are the harness's own, not the cluster's, so they
    are left out: an upgrade does not depend on them. On clusters kubequake did not create the
    files live on the machines; there the certificates are read where they are served, plus the
    client certificates the harness was given (kubeconfig, etcd client).
    """
    cps = cluster.control_planes()
    admin, etls = cluster.admin_tls(), cluster.etcd_tls()
    # The ports the cluster serves on, as its URLs say (a kubeadm cluster may not use kubequake's).
    api_port = (urlparse(cluster.apiserver_url(cps[0].name)).port if cps else None) or cluster.cfg.apiserver.port
    etcd_port = (urlparse(cluster.etcd_url(cps[0].name)).port if cps else None) or cluster.cfg.etcd.client_port
    peer_port = cluster.cfg.etcd.peer_port
    served = [
        (
            "kube-apiserver serving",
            [CertSource(f"served by {n.name}:{api_port}", endpoint=(n.address, api_port, admin)) for n in cps],
        ),
        (
            "etcd server",
            [CertSource(f"served by {n.name}:{etcd_port}", endpoint=(n.address, etcd_port, etls)) for n in cps],
        ),
        (
            "etcd peer",
            [CertSource(f"served by {n.name}:{peer_port}", endpoint=(n.address, peer_port, etls)) for n in cps],
        ),
    ]
    if Capability.CERTIFICATE_FILES not in cluster.capabilities:
        return [
            *served,
            ("apiserver etcd client", [CertSource("etcd client given to kubequake", path=etls.cert)]),
            ("admin client", [CertSource("kubeconfig client certificate", path=admin.cert)]),
            (
                "certificate authorities",
                [CertSource("kubeconfig CA", path=admin.ca), CertSource("etcd CA", path=etls.ca)],
            ),
        ]
    files = cluster.certificate_files()

    def named(path: Path) -> CertSource:
        # kubeadm's names: files of the etcd PKI are shown under etcd/.
        return CertSource(f"etcd/{path.name}" if path.parent.name == "etcd" else path.name, path=path)

    by_kind = {kind: [named(f) for f in paths] for kind, paths in files.items()}
    served_kinds = {kind for kind, _ in served}
    return [
        *[(kind, by_kind.pop(kind, []) + sources) for kind, sources in served],
        *[(kind, sources) for kind, sources in by_kind.items() if kind not in served_kinds],
    ]


def certificate_verdict(
    kind: str, remaining: dict[str, float], errors: dict[str, str], min_days: float, expiry: dict[str, datetime]
) -> Verdict:
    """One kind of certificate: the soonest expiry against the threshold, naming every short one."""
    name = f"certificates: {kind}"
    if not remaining and not errors:
        return Verdict(name, None, min_days, "d", Outcome.FAIL, "no certificate of this kind found")
    soonest = min(remaining.values()) if remaining else None
    short = {k: d for k, d in remaining.items() if d < min_days}
    parts: list[str] = []
    if short:
        listed = ", ".join(
            f"{k} ({d:.1f} days left, expires {expiry[k]:%Y-%m-%d %H:%M} UTC)" for k, d in sorted(short.items())
        )
        parts.append(f"expiring within {min_days:g} days: {listed}; renew them before the upgrade")
    parts += [f"{k}: cannot read ({e})" for k, e in errors.items()]
    if parts:
        return Verdict(name, soonest, min_days, "d", Outcome.FAIL, "; ".join(parts))
    first = min(remaining, key=lambda k: remaining[k])
    return Verdict(
        name,
        soonest,
        min_days,
        "d",
        Outcome.PASS,
        f"{len(remaining)} certificate{'s' if len(remaining) != 1 else ''} valid for at least {min_days:g} days "
        f"(soonest: {first}, {remaining[first]:.0f} days)",
    )


def certificate_checks(cluster: Cluster, opts: GateOptions) -> list[Verdict]:
    now = datetime.now(UTC)
    out: list[Verdict] = []
    for kind, sources in certificate_sources(cluster):
        remaining: dict[str, float] = {}
        expiry: dict[str, datetime] = {}
        errors: dict[str, str] = {}
        for src in sources:
            try:
                expiry[src.label] = src.not_after()
            except Exception as exc:  # one unreadable certificate fails its kind, naming it
                errors[src.label] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            remaining[src.label] = (expiry[src.label] - now).total_seconds() / 86400
        out.append(certificate_verdict(kind, remaining, errors, opts.min_cert_days, expiry))
    return out


# -- leader election ------------------------------------------------------------------------------


def leader_election_checks(cluster: Cluster, opts: GateOptions) -> list[Verdict]:
    from harness.net.kube import api_client

    tls = cluster.admin_tls()
    out: list[Verdict] = []
    with api_client(cluster.lb_url(), tls, timeout=HTTP_TIMEOUT_S) as api:
        for lease_name in LEASED_COMPONENTS:
            name = f"leader election: {lease_name}"
            urls = {}
            for n in cluster.control_planes():
                url = cluster.metrics_url(n.name, Component(lease_name))
                if url is not None:
                    urls[n.name] = url
            # Without reachable metrics, the fresh Lease's holder is the one instance that leads.
            leaders = (
                leading_instances(urls, tls, lease_name, timeout=HTTP_TIMEOUT_S)
                if urls
                else leaders_by_lease(cluster, lease_name, frozenset())
            )
            lease = read_lease(api, lease_name)
            if lease is None:
                out.append(
                    Verdict(
                        name,
                        None,
                        None,
                        "s",
                        Outcome.FAIL,
                        f"no Lease kube-system/{lease_name}: leader election is off (--leader-elect=false) or never "
                        f"succeeded; instances reporting leadership: {leaders or 'none'}",
                    )
                )
                continue
            age = time.time() - lease.renew_time if lease.renew_time is not None else None
            problems: list[str] = []
            if not lease.holder:
                problems.append("the Lease has no holder")
            if age is None or age > lease.lease_duration_s:
                seen = "never" if age is None else f"{age:.1f}s ago"
                problems.append(
                    f"the Lease was last renewed {seen}, beyond its {lease.lease_duration_s}s duration: "
                    "no instance is renewing it"
                )
            if len(leaders) != 1:
                problems.append(
                    f"{len(leaders)} instances report themselves leader ({', '.join(leaders) or 'none'}); exactly "
                    "one must (more is split brain, none means leader election is off)"
                )
            where = leaders[0] if len(leaders) == 1 else "?"
            base = (
                f"held by {lease.holder or '-'} on {where}, "
                + ("never renewed" if age is None else f"renewed {age:.1f}s ago")
                + f" (lease {lease.lease_duration_s}s, {lease.transitions} transitions)"
            )
            out.append(
                Verdict(
                    name,
                    age,
                    float(lease.lease_duration_s),
                    "s",
                    outcome_of(not problems),
                    base if not problems else "; ".join(problems) + f"; {base}",
                )
            )
    return out


# -- load balancer --------------------------------------------------------------------------------


def load_balancer_checks(cluster: Cluster, opts: GateOptions) -> list[Verdict]:
    lb = f"load balancer {urlparse(cluster.lb_url()).netloc}"
    # Server rows only: the stats frontend has none, so every server is an apiserver backend.
    servers = parse_stats_csv(cluster.lb_stats_csv(timeout=HTTP_TIMEOUT_S))
    unchecked = sorted(s.server for s in servers if s.status == "no check" or s.check_status is None)
    # is_up counts a "no check" server as UP (HAProxy sends to it); the gate wants a check that says UP.
    checked_up = sorted(s.server for s in servers if s.server not in unchecked and s.is_up)
    table = ", ".join(f"{s.server}={s.status}/{s.check_status or 'no check'}" for s in servers)
    out: list[Verdict] = []
    if not servers:
        out.append(check("load balancer health-checks every apiserver", False, f"{lb} lists no backend servers"))
    elif unchecked:
        out.append(
            Verdict(
                "load balancer health-checks every apiserver",
                len(servers) - len(unchecked),
                len(servers),
                "",
                Outcome.FAIL,
                f"{lb} sends to {', '.join(unchecked)} without health checks ('no check'): a dead apiserver keeps "
                "receiving requests; enable `check` (TLS GET /readyz) on every server",
            )
        )
    else:
        out.append(
            Verdict(
                "load balancer health-checks every apiserver",
                len(servers),
                len(servers),
                "",
                Outcome.PASS,
                f"{lb}: {table}",
            )
        )
    out.append(
        Verdict(
            "at least two health-checked apiservers UP behind the load balancer",
            len(checked_up),
            2,
            "",
            outcome_of(len(checked_up) >= 2),
            f"{lb}: {len(checked_up)} health-checked and UP ({', '.join(checked_up) or 'none'}); {table}"
            + ("" if len(checked_up) >= 2 else "; an HA control plane needs at least two"),
        )
    )
    ready = probe(f"{cluster.lb_url()}/readyz", cluster.admin_tls(), timeout=HTTP_TIMEOUT_S)
    out.append(
        check(
            "API ready through the load balancer",
            ready.ok,
            f"GET {ready.url}: {ready.status} {ready.error or ready.body.strip()[:100]}",
        )
    )
    return out


# -- rollout / undo -------------------------------------------------------------------------------


def rollout_checks(cluster: Cluster, opts: GateOptions) -> list[Verdict]:
    from kubernetes import client

    from harness.checks.rollout import DeploymentWorkflow, Kubectl
    from harness.net.kube import api_client

    budget = Budgets.for_config(cluster.cfg, opts.objectives).rollout_completion_s
    namespace = f"kq-gate-{uuid.uuid4().hex[:8]}"
    steps: list[str] = []
    start = time.monotonic()
    with api_client(cluster.lb_url(), cluster.admin_tls(), timeout=HTTP_TIMEOUT_S * 2) as api:
        core = client.CoreV1Api(api)
        core.create_namespace(
            client.V1Namespace(
                metadata=client.V1ObjectMeta(
                    name=namespace, labels={"kubequake.io/created-by": "kubequake", "kubequake.io/test": "gate"}
                )
            )
        )
        try:
            k = Kubectl(cluster.bins["kubectl"], cluster.kubeconfig(), cluster.run_dir / "gate")
            wf = DeploymentWorkflow(k, api, namespace, name="gate-web")
            wf.create(SCRATCH_IMAGES[0], replicas=2)
            steps.append(f"create {wf.rollout_status(budget):.1f}s")
            wf.set_image(SCRATCH_IMAGES[1])
            steps.append(f"set image {wf.rollout_status(budget):.1f}s")
            history = [r.number for r in wf.history()]
            steps.append(f"history {history}")
            wf.undo()
            steps.append(f"undo {wf.rollout_status(budget):.1f}s")
            image, revision = wf.api_image(), wf.api_revision()
            ready, state = wf.api_ready()
        finally:
            try:
                core.delete_namespace(namespace, _request_timeout=HTTP_TIMEOUT_S * 2)
            except Exception as exc:  # cleanup must not replace the verdict; it is logged for the operator
                log.warning("could not delete the gate's scratch namespace %s: %s", namespace, exc)
    took = time.monotonic() - start
    problems = []
    if history != [1, 2]:
        problems.append(f"rollout history lists revisions {history}, expected [1, 2]")
    if image != SCRATCH_IMAGES[0]:
        problems.append(f"after undo the image is {image}, expected {SCRATCH_IMAGES[0]}")
    if revision != 3:
        problems.append(f"after undo the revision is {revision}, expected 3")
    if not ready:
        problems.append(f"replicas not all updated and ready after undo: {state}")
    summary = f"namespace {namespace} (deleted): " + ", ".join(steps)
    return [
        Verdict(
            "rollout, history and undo in a scratch namespace",
            took,
            3 * budget,
            "s",
            outcome_of(not problems),
            "; ".join(problems) + f"; {summary}" if problems else summary,
        )
    ]
