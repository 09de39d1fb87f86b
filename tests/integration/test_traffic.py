"""Locust traffic through the LB of a real local cluster: timeline, ledger, faults, distribution.

Every test here runs real Locust processes against real apiservers through HAProxy; the unit
tests cover the pure logic. A cluster of this suite's own is required, e.g.
    pytest tests/integration/test_traffic.py -p no:cacheprovider --kq-set name=ld-pt --kq-set address_block=80
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from kubernetes import client

from harness.fixtures.traffic import traffic, traffic_settings  # noqa: F401 - fixtures used by name
from harness.load.errors import LoadError
from harness.load.ledger import Ledger
from harness.load.records import WriteOp, WritePhase, read_dir
from harness.load.runner import LOCUSTFILE, PACKAGE_ROOT, free_loopback_port
from harness.load.settings import TrafficSettings
from harness.load.timeline import Window
from harness.load.traffic import Traffic
from harness.net.tls import TLSClient
from harness.net.wait import wait_until
from harness.providers.base import Component
from harness.providers.local import LocalCluster
from harness.slo import Objectives
from tests.certs import self_signed_ca

pytestmark = pytest.mark.timeout(300)


def locust_processes() -> list[int]:
    """Pids of live Locust processes started from this test process (children or orphans of it)."""
    me = str(os.getpid())
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat[stat.rfind(")") + 2 :].split()[:2]
        if b"locust" in b" ".join(cmd[:3]) and ppid == me and state not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def self_signed(tmp: Path, cn: str) -> TLSClient:
    """A key and certificate no cluster CA ever signed (also usable as a bogus CA bundle)."""
    cert_path, key_path = self_signed_ca(tmp, cn)
    return TLSClient(cert_path, cert_path, key_path)


def signed_by_cluster_ca(cluster: LocalCluster, tmp: Path, cn: str) -> TLSClient:
    """A valid client certificate of the cluster CA for a user that RBAC grants nothing."""
    ca_cert = x509.load_pem_x509_certificate(cluster.pki.ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(cluster.pki.ca.key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{cn}.crt", tmp / f"{cn}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return TLSClient(cluster.pki.ca.cert, cert_path, key_path)


def assert_timeline_matches_records(t: Traffic, window: Window) -> None:
    """The per-second timeline says exactly what the per-request events say, second by second."""
    recs = [r for r in t.records().requests if window.start <= r.end < window.end]
    rows = t.timeline(window).rows()
    assert sum(r.requests for r in rows) == len(recs)
    assert sum(r.failed for r in rows) == sum(1 for r in recs if not r.ok)
    for row in rows:
        in_second = [r for r in recs if int(r.end) == row.t]
        assert row.requests == len(in_second), row
        kinds: dict[str, int] = {}
        for r in in_second:
            if not r.ok:
                assert r.kind is not None
                kinds[r.kind.value] = kinds.get(r.kind.value, 0) + 1
        assert {k.value: n for k, n in row.failures.items()} == kinds, row


# -- steady state ------------------------------------------------------------------------------------
def test_steady_state_traffic_has_no_failures_and_a_clean_ledger(
    traffic: Traffic,  # noqa: F811 - the fixture imported above
    kube: client.ApiClient,
) -> None:
    time.sleep(12)
    traffic.stop()
    tl = traffic.timeline()
    assert tl.requests > 100, f"only {tl.requests} requests in 12 s"
    assert tl.failure_ratio == 0, tl.failures_by_kind()
    names = {r.name for r in traffic.records().requests}
    assert {"LIST configmaps", "GET configmap", "LIST pods", "GET deployment", "CREATE configmap"} <= names
    assert {"UPDATE configmap", "WATCH configmaps"} <= names
    verdict = traffic.ledger.verify(kube)
    assert verdict.passed, verdict.message
    assert verdict.acknowledged_writes > 10
    # Without failures, the only MAYBE possible is a write still in flight when the load was
    # stopped (an attempt with no outcome, see harness/load/ledger.py): sent in the last moment
    # before the stop, at most one per user. A MAYBE from earlier in the run would be a defect.
    assert traffic.stopped_at is not None
    maybes = [op for op in traffic.ledger.operations if op.outcome is WritePhase.MAYBE]
    assert len(maybes) <= traffic.settings.users, maybes
    assert all(op.status == 0 and op.time >= traffic.stopped_at - 1.0 for op in maybes), (traffic.stopped_at, maybes)
    assert traffic.watches().starts >= 1
    assert all(e.returncode is not None and not e.killed for e in traffic.exits), traffic.exits
    # No fault at all: a quiet second in the middle must meet the steady-state budget.
    quiet = tl.records[0].end + 5
    report = traffic.slo(Objectives().client("steady-state"), (quiet, quiet + 1))
    assert report.passed, report.message


def test_watches_restart_at_their_timeout_with_short_gaps_in_a_quiet_namespace(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    # No writers: the watch sees no events for its whole timeoutSeconds, which is longer than the
    # request timeout. That silence is normal for a watch and must not count as a failure.
    quiet = TrafficSettings(
        users=1, watchers=1, reader_weight=0, writer_weight=0, watch_timeout_s=2, request_timeout_s=1
    )
    with Traffic.start(cluster, quiet, records_dir=tmp_path) as t:
        time.sleep(7)
    w = t.watches()
    assert w.watchers == 1 and w.restarts >= 2 and w.broken == 0, w
    assert all(g.previous_end_reason == "expired" for g in w.gaps), w.gaps
    assert w.longest_gap_s < 1.0, w.gaps
    assert t.timeline().failures == 0, [r.error for r in t.records().requests if not r.ok]
    t.cleanup()


# -- a fault: one apiserver killed and restarted -----------------------------------------------------
def test_traffic_while_one_apiserver_is_killed(cluster: LocalCluster, kube: client.ApiClient, tmp_path: Path) -> None:
    cp1 = cluster.node("cp1")
    with Traffic.start(cluster, TrafficSettings(users=10, watchers=2), records_dir=tmp_path) as t:
        time.sleep(6)  # a baseline for the time-to-steady verdict
        applied = time.time()
        cp1.kill(Component.APISERVER)
        try:
            time.sleep(6)
        finally:
            cp1.start(Component.APISERVER)
        healed = time.time()
        time.sleep(8)
    fault = Window(applied, healed)
    before = t.timeline((t.started_at or applied, applied))
    assert before.requests > 50 and before.failures == 0, before.failures_by_kind()
    # Whatever the LB did with the dead backend, the timeline must say what the requests said.
    around = Window(applied - 2, healed + 6)
    assert_timeline_matches_records(t, around)
    during = t.timeline(Window(applied, healed + 6))
    failed = [r for r in t.records().requests if not r.ok]
    assert all(applied - 0.5 <= r.end for r in failed), "failures before the apiserver was killed"
    assert during.failures == len([r for r in failed if applied <= r.end < healed + 6])
    report = t.slo(Objectives().client("apiserver-kill"), fault)
    assert all(v.measured is not None for v in report.verdicts), report.message
    assert report["error_ratio_during_fault"].passed, report.message
    assert report["longest_unavailability"].passed, report.message
    verdict = t.ledger.verify(kube)
    assert verdict.passed, verdict.message
    t.cleanup()
    wait_until("cluster healthy again", lambda: (cluster.healthy_quick(), "components not all ready"), 60)


# -- the ledger's verdict can fail ----------------------------------------------------------------
def test_objects_changed_behind_the_ledgers_back_are_lost_or_resurrected(
    cluster: LocalCluster, kube: client.ApiClient, tmp_path: Path
) -> None:
    settings = TrafficSettings(
        users=3, watchers=0, reader_weight=0, writer_weight=1, rate_per_user=10, objects_per_writer=3
    )
    with Traffic.start(cluster, settings, records_dir=tmp_path) as t:
        time.sleep(5)
    ledger = t.ledger
    assert ledger.verify(kube).passed
    by_object = ledger.by_object()
    present = [
        k for k, ops in by_object.items() if ops[-1].outcome is WritePhase.ACK and ops[-1].op is not WriteOp.DELETE
    ]
    deleted = [k for k, ops in by_object.items() if ops[-1].outcome is WritePhase.ACK and ops[-1].op is WriteOp.DELETE]
    assert present and deleted, "the writers produced no acknowledged create and delete to tamper with"
    core = client.CoreV1Api(kube)
    (ns, lost), (ns2, back) = present[0], deleted[0]
    core.delete_namespaced_config_map(lost, ns)
    core.create_namespaced_config_map(
        ns2, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=back), data={"content": "resurrected"})
    )
    verdict = ledger.verify(kube)
    assert not verdict.passed
    assert verdict.lost_names == [lost]
    assert verdict.resurrected_names == [back]
    assert f"LOST {ns}/{lost}" in verdict.message and f"RESURRECTED {ns2}/{back}" in verdict.message
    # The same verdict through plain HTTPS with the traffic identity.
    assert Ledger.from_dir(tmp_path).verify(url=cluster.lb_url(), tls=cluster.traffic_tls()).lost_names == [lost]
    t.cleanup()


# -- bad input: a clear error before any load starts -----------------------------------------------
def test_unreachable_lb_is_refused_before_load_starts(cluster: LocalCluster) -> None:
    # .99 of this suite's block: a loopback address nothing listens on.
    url = f"https://127.0.{cluster.cfg.address_block}.99:6443"
    with pytest.raises(LoadError, match=r"cannot reach the API at .*connection refused"):
        Traffic.start(url=url, tls=cluster.traffic_tls())
    assert locust_processes() == []


def test_wrong_credentials_are_refused_before_load_starts(cluster: LocalCluster, tmp_path: Path) -> None:
    stranger = self_signed(tmp_path, "stranger")
    wrong_client = TLSClient(cluster.traffic_tls().ca, stranger.cert, stranger.key)
    with pytest.raises(LoadError, match=r"rejected client certificate|401 Unauthorized"):
        Traffic.start(url=cluster.lb_url(), tls=wrong_client)
    wrong_ca = TLSClient(stranger.ca, cluster.traffic_tls().cert, cluster.traffic_tls().key)
    with pytest.raises(LoadError, match="not signed by CA"):
        Traffic.start(url=cluster.lb_url(), tls=wrong_ca)
    nobody = signed_by_cluster_ca(cluster, tmp_path, "kq-nobody")
    with pytest.raises(LoadError, match=r"may not read namespace .*403 Forbidden"):
        Traffic.start(url=cluster.lb_url(), tls=nobody)
    missing = TLSClient(tmp_path / "nope.crt", stranger.cert, stranger.key)
    with pytest.raises(LoadError, match="does not exist"):
        Traffic.start(url=cluster.lb_url(), tls=missing)
    assert locust_processes() == []


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (TrafficSettings(users=0), "users"),
        (TrafficSettings(rate_per_user=-1.0), "rate_per_user"),
        (TrafficSettings(rate_per_user=0.0), "rate_per_user"),
        (TrafficSettings(spawn_rate=-5), "spawn_rate"),
        (TrafficSettings(writer_weight=-1), "writer_weight"),
        (TrafficSettings(users=1, watchers=1), "users"),
        (TrafficSettings(reader_weight=0, writer_weight=0, watchers=0), "reader_weight"),
        (TrafficSettings(max_requests=0), "max_requests"),
        (TrafficSettings(max_duration_s=float("inf")), "max_duration_s"),
        (TrafficSettings(namespace="Not_A_Name"), "namespace"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_contacted(settings: TrafficSettings, field: str) -> None:
    # The URL is unreachable on purpose: validation must come first and name the field.
    with pytest.raises(LoadError, match=rf"TrafficSettings\.{field}="):
        Traffic.start(settings=settings, url="https://127.0.80.99:1", tls=TLSClient(Path("a"), Path("b"), Path("c")))


# -- load always stops -------------------------------------------------------------------------------
def test_load_stops_by_itself_at_max_requests_and_max_duration(cluster: LocalCluster, tmp_path: Path) -> None:
    capped = TrafficSettings(users=2, watchers=0, rate_per_user=None, max_requests=300)
    t = Traffic.start(cluster, capped, records_dir=tmp_path / "count")
    try:
        wait_until("locust quits at max_requests", lambda: (not t.run.alive(), "still running"), 30)
        n = len(t.records().requests)
        # The limit is polled every 0.2 s, so a few more requests than the cap may complete.
        assert 300 <= n < 300 + 2 * 400, n
    finally:
        t.stop()
        t.cleanup()
    timed = TrafficSettings(users=2, watchers=0, max_duration_s=3)
    started = time.monotonic()
    t = Traffic.start(cluster, timed, records_dir=tmp_path / "time")
    try:
        wait_until("locust quits at max_duration", lambda: (not t.run.alive(), "still running"), 30)
        assert time.monotonic() - started < 15
    finally:
        t.stop()
        t.cleanup()
    assert locust_processes() == []


def test_records_in_a_temporary_directory_stay_readable_and_leave_nothing_behind(cluster: LocalCluster) -> None:
    capped = TrafficSettings(users=2, watchers=0, rate_per_user=None, max_requests=200)
    t = Traffic.start(cluster, capped)
    records_dir = t.records_dir
    try:
        assert records_dir.is_dir() and records_dir.name.startswith("kq-traffic-")
        wait_until("locust quits at max_requests", lambda: (not t.run.alive(), "still running"), 30)
    finally:
        t.stop()
        t.cleanup()
    assert not records_dir.exists(), f"{records_dir} left behind"
    # Read into memory before the directory went: the verdict inputs are all still there.
    assert t.timeline().successes >= 200
    assert t.ledger.acknowledged(), "no acknowledged writes in the ledger after cleanup"
    assert locust_processes() == []


def test_load_stops_when_the_test_crashes(cluster: LocalCluster, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="scenario crashed"), Traffic.start(cluster, records_dir=tmp_path) as t:
        pids = [p.pid for p in t.run.processes]
        raise RuntimeError("scenario crashed")
    assert not t.run.alive()
    assert not any(pid_alive(p) for p in pids if p is not None)
    assert locust_processes() == []
    t.cleanup()


def test_traffic_started_from_a_short_lived_thread_outlives_that_thread(cluster: LocalCluster, tmp_path: Path) -> None:
    # PR_SET_PDEATHSIG follows the forking thread: started from a pool thread, Locust must not
    # die when that thread ends.
    with ThreadPoolExecutor(max_workers=1) as pool:
        t = pool.submit(Traffic.start, cluster, TrafficSettings(users=2, watchers=0), records_dir=tmp_path).result(60)
    try:
        n = len(t.records().requests)
        time.sleep(2)
        assert t.run.alive() and len(t.records().requests) > n
    finally:
        t.stop()
        t.cleanup()


def test_no_orphan_locust_when_the_harness_is_killed(
    cluster: LocalCluster, kube: client.ApiClient, tmp_path: Path
) -> None:
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from harness.load.traffic import Traffic
        from harness.load.settings import TrafficSettings
        from harness.net.tls import TLSClient
        tls = TLSClient(Path({str(cluster.traffic_tls().ca)!r}), Path({str(cluster.traffic_tls().cert)!r}),
                        Path({str(cluster.traffic_tls().key)!r}))
        t = Traffic.start(url={cluster.lb_url()!r}, tls=tls, records_dir=Path({str(tmp_path)!r}),
                          settings=TrafficSettings(users=2, watchers=0))
        print(t.run.processes[0].pid, t.namespace, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=str(PACKAGE_ROOT)
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    pid_text, namespace = proc.stdout.split()
    locust_pid = int(pid_text)
    wait_until(f"orphaned locust pid {locust_pid} gone", lambda: (not pid_alive(locust_pid), "alive"), 10)
    client.CoreV1Api(kube).delete_namespace(namespace)  # the killed harness could not clean up


# -- distributed mode and the standalone locustfile ---------------------------------------------------
def test_distributed_master_and_two_workers_on_loopback(cluster: LocalCluster, tmp_path: Path) -> None:
    settings = TrafficSettings(users=6, watchers=1, workers=2, start_timeout_s=60)
    with Traffic.start(cluster, settings, records_dir=tmp_path) as t:
        roles = [p.role for p in t.run.processes]
        assert roles == ["master", "worker1", "worker2"]
        master = t.run.argv()["master"]
        assert "--master-bind-host=127.0.0.1" in master and f"--master-bind-port={t.run.master_port}" in master
        assert "--master-host=127.0.0.1" in t.run.argv()["worker1"]
        time.sleep(6)
    rs = t.records()
    worker_pids = {p.pid for p in t.run.processes if p.role.startswith("worker")}
    sources = {int(r.source.rsplit(":", 1)[1]) for r in rs.requests}
    assert sources == worker_pids, "requests must come from both workers, and only from workers"
    reported = {r.client_id: r.requests for r in rs.worker_reports}
    assert len(reported) == 2 and all(n > 0 for n in reported.values()), reported
    assert {r.pid for r in rs.worker_reports} == worker_pids
    assert t.timeline().failure_ratio == 0
    t.cleanup()


def test_locust_users_verify_the_api_certificate(cluster: LocalCluster, tmp_path: Path) -> None:
    # Bypassing the harness's preflight on purpose: the users themselves must refuse a server
    # their CA did not sign. Verification is never switched off.
    stranger = self_signed(tmp_path, "stranger-ca")
    tls = cluster.traffic_tls()
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        f"--host={cluster.lb_url()}",
        f"--kq-ca={stranger.ca}",
        f"--kq-cert={tls.cert}",
        f"--kq-key={tls.key}",
        "--kq-skip-setup",
        f"--kq-records-dir={tmp_path / 'records'}",
        "--kq-watchers=0",
        "--headless",
        "-u",
        "2",
        "-r",
        "10",
        "--run-time",
        # Locust's run-time clock starts before its users' first request: on a loaded machine a
        # shorter run may end before any request is made, which would prove nothing.
        "8s",
        "--only-summary",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=str(PACKAGE_ROOT))
    reqs = read_dir(tmp_path / "records").requests
    assert reqs, done.stderr[-2000:]
    assert not any(r.ok for r in reqs)
    assert all("CERTIFICATE_VERIFY_FAILED" in r.error for r in reqs), {r.error for r in reqs}


def test_standalone_locustfile_headless_and_web_ui(
    cluster: LocalCluster, kube: client.ApiClient, tmp_path: Path
) -> None:
    base = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        f"--host={cluster.lb_url()}",
        f"--kq-run-dir={cluster.run_dir}",
        "--kq-namespace=kq-load-standalone",
        f"--kq-records-dir={tmp_path}",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    done = subprocess.run(
        [*base, "--headless", "-u", "3", "-r", "10", "--run-time", "4s", "--only-summary"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(PACKAGE_ROOT),
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Aggregated" in done.stdout + done.stderr
    rs = read_dir(tmp_path)
    assert rs.requests and all(r.ok for r in rs.requests)
    port = free_loopback_port()
    ui = subprocess.Popen(
        [*base, "--web-host=127.0.0.1", f"--web-port={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=str(PACKAGE_ROOT),
        env=env,
        start_new_session=True,
    )
    try:
        session = requests.Session()
        session.trust_env = False

        def serving() -> tuple[bool, str]:
            r = session.get(f"http://127.0.0.1:{port}/", timeout=2)
            return r.status_code == 200, f"HTTP {r.status_code}"

        wait_until("Locust web UI serving", serving, 30)
        opts = session.get(f"http://127.0.0.1:{port}/", timeout=2).text
        assert "kq_namespace" in opts or "kq-namespace" in opts
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(5)
    client.CoreV1Api(kube).delete_namespace("kq-load-standalone")
