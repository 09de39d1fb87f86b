"""`kubequake gate` on real local clusters: green on a healthy one, red naming the defect on broken ones.

Each case runs the real CLI in a subprocess on its own cluster (own name, own address block), which
the gate brings up and tears down itself; the verdict table, exit code, JUnit and Allure results are
read back. A gate that passed a cluster with expiring certificates, an even etcd membership or an
unchecked load balancer would be worse than no gate, so those cases must fail, and fail only there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.config import default_run_root

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(600)

# Every check the gate runs on a 3-node cluster, by name as the table shows it.
EVERY_CHECK = [
    "kube-apiserver version",
    "kube-controller-manager version",
    "kube-scheduler version",
    "kubectl client version",
    "etcd version",
    "skew: kube-apiservers within one minor of each other",
    "skew: kube-controller-manager vs kube-apiservers",
    "skew: kube-scheduler vs kube-apiservers",
    "skew: kubectl vs kube-apiservers",
    "etcd members healthy",
    "etcd member count is odd",
    "etcd quorum",
    "etcd has exactly one leader",
    "certificates: kube-apiserver serving",
    "certificates: etcd server",
    "certificates: etcd peer",
    "certificates: front-proxy client",
    "certificates: apiserver etcd client",
    "certificates: apiserver kubelet client",
    "certificates: admin client",
    "certificates: kube-controller-manager client",
    "certificates: kube-scheduler client",
    "certificates: certificate authorities",
    "leader election: kube-controller-manager",
    "leader election: kube-scheduler",
    "load balancer health-checks every apiserver",
    "at least two health-checked apiservers UP behind the load balancer",
    "API ready through the load balancer",
    "rollout, history and undo in a scratch namespace",
]


class GateRun:
    def __init__(self, proc: subprocess.CompletedProcess[str], junit: Path, allure: Path) -> None:
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.out = proc.stdout + proc.stderr
        self.junit = junit
        self.allure = allure

    def rows(self) -> dict[str, tuple[str, str, str]]:
        """check name -> (PASS/FAIL, group, whole line) from the verdict table."""
        rows: dict[str, tuple[str, str, str]] = {}
        for line in self.stdout.splitlines():
            if line.startswith(("PASS ", "FAIL ")):
                for name in EVERY_CHECK:
                    if f"  {name}  " in line:
                        group = line[4:].strip().split("  ")[0]
                        rows[name] = (line[:4], group, line)
        return rows

    def failed_groups(self) -> set[str]:
        return {group for result, group, _ in self.rows().values() if result == "FAIL"}


def run_gate(tmp_path: Path, name: str, block: int, *settings: str) -> GateRun:
    junit, allure = tmp_path / "gate-junit.xml", tmp_path / "allure-results"
    argv = [sys.executable, "-m", "harness.cli", "gate", "--set", f"name={name}", "--set", f"address_block={block}"]
    for s in settings:
        argv += ["--set", s]
    argv += ["--junit", str(junit), "--alluredir", str(allure)]
    proc = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=540, env=dict(os.environ), check=False
    )
    return GateRun(proc, junit, allure)


def days_left(line: str, cert: str) -> float:
    m = re.search(rf"{re.escape(cert)} \((\d+\.\d) days left", line)
    assert m is not None, f"{cert} not named as expiring in: {line}"
    return float(m.group(1))


def assert_torn_down(name: str, out: str) -> None:
    assert "brought up for the gate, torn down after" in out, out[-3000:]
    assert not (default_run_root() / name).exists(), f"the gate left {name}'s run directory behind"


def test_gate_passes_a_healthy_cluster_listing_every_check(tmp_path: Path) -> None:
    run = run_gate(tmp_path, "gt-ok", 201, "workers=1")
    assert run.rc == 0, f"expected the gate to pass (exit 0), got {run.rc}:\n{run.out[-4000:]}"
    rows = run.rows()
    assert sorted(rows) == sorted(EVERY_CHECK), run.stdout
    assert all(result == "PASS" for result, _, _ in rows.values()), run.stdout
    assert f"gate PASSED: {len(EVERY_CHECK)} passed, 0 failed" in run.stdout
    assert "Traceback" not in run.out
    assert_torn_down("gt-ok", run.out)
    suite = ET.parse(run.junit).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == str(len(EVERY_CHECK)) and suite.get("failures") == "0"
    assert len(list(run.allure.glob("*-result.json"))) == len(EVERY_CHECK)


def test_gate_fails_on_certificates_about_to_expire(tmp_path: Path) -> None:
    run = run_gate(tmp_path, "gt-cert", 202, "workers=1", "pki.cert_validity_days=10")
    assert run.rc == 1, f"expected the gate to fail (exit 1), got {run.rc}:\n{run.out[-4000:]}"
    assert run.failed_groups() == {"certificates"}, run.stdout
    rows = run.rows()
    line = rows["certificates: kube-apiserver serving"][2]
    assert "expiring within 30 days" in line
    for cert in ("apiserver-cp1.crt", "apiserver-cp2.crt", "apiserver-cp3.crt", "served by cp1:6443"):
        assert days_left(line, cert) <= 10, line
    assert days_left(rows["certificates: etcd peer"][2], "etcd/cp1-peer.crt") <= 10
    assert days_left(rows["certificates: etcd server"][2], "served by cp2:2379") <= 10
    assert days_left(rows["certificates: admin client"][2], "admin.crt") <= 10
    assert days_left(rows["certificates: front-proxy client"][2], "front-proxy-client.crt") <= 10
    # The CAs keep their ten years: the gate names only what actually expires.
    assert rows["certificates: certificate authorities"][0] == "PASS"
    suite = ET.parse(run.junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "9"
    assert_torn_down("gt-cert", run.out)


def test_gate_fails_on_an_even_etcd_membership(tmp_path: Path) -> None:
    run = run_gate(tmp_path, "gt-even", 203, "workers=1", "control_planes=2")
    assert run.rc == 1, f"expected the gate to fail (exit 1), got {run.rc}:\n{run.out[-4000:]}"
    assert run.failed_groups() == {"etcd"}, run.stdout
    result, _, line = run.rows()["etcd member count is odd"]
    assert result == "FAIL" and "etcd has 2 members, an even count: quorum needs 2 of 2" in line, line
    assert_torn_down("gt-even", run.out)


def test_gate_fails_on_a_load_balancer_without_health_checks(tmp_path: Path) -> None:
    run = run_gate(tmp_path, "gt-nochk", 204, "workers=1", "load_balancer.health_checks=false")
    assert run.rc == 1, f"expected the gate to fail (exit 1), got {run.rc}:\n{run.out[-4000:]}"
    assert run.failed_groups() == {"load balancer"}, run.stdout
    rows = run.rows()
    line = rows["load balancer health-checks every apiserver"][2]
    assert "load balancer 127.0.204.10:6443 sends to cp1, cp2, cp3 without health checks ('no check')" in line
    assert rows["at least two health-checked apiservers UP behind the load balancer"][0] == "FAIL"
    assert_torn_down("gt-nochk", run.out)


def test_gate_refuses_an_unknown_setting_with_exit_2(tmp_path: Path) -> None:
    run = run_gate(tmp_path, "gt-bad", 205, "etcd.no_such_knob=1")
    assert run.rc == 2, run.out
    assert "kubequake gate: error: unknown setting 'etcd.no_such_knob' (from --set)" in run.out
    assert "Traceback" not in run.out
    assert not run.junit.exists(), "a gate that could not run must not leave a verdict file"
    assert not (default_run_root() / "gt-bad").exists()
