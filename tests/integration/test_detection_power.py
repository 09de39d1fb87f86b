"""Detection power: scenarios run against deliberately misconfigured clusters must FAIL, naming the defect.

A harness that stays green on a broken cluster is worse than none. Each case runs the real CLI
(`kubequake run --set ...`) on its own cluster, in its own address block, and reads its verdicts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(600)

CASES = [
    pytest.param(
        ["load_balancer.health_checks=false"],
        "scenarios/test_control_plane_failover.py::test_kill_one_apiserver_lb_routes_around",
        ["FAIL LB marks the dead apiserver down", "FAIL no errors once routed around"],
        id="lb-without-health-checks",
    ),
    pytest.param(
        ["leader_election.enabled=false"],
        "scenarios/test_control_plane_failover.py::test_power_off_lease_holder",
        ["FAIL one kube-controller-manager holds the leader lease", "Leader election is off or broken"],
        id="leader-election-off",
    ),
    pytest.param(
        ["control_planes=4", "workers=1"],
        "scenarios/test_etcd_quorum.py::test_tolerates_losing_a_minority[session]",
        # Observed, not computed: two of four members really go down and writes stop.
        ["FAIL writes continue with 2 of 4 down", "an even membership adds a member without adding tolerance"],
        id="even-etcd-membership",
    ),
    # Slow but working clusters: each fails its SLO and the verdict names the setting that makes it slow.
    pytest.param(
        ["leader_election.lease_duration_s=60", "leader_election.renew_deadline_s=40"],
        "scenarios/test_control_plane_failover.py::test_power_off_lease_holder",
        ["FAIL kube-controller-manager lease handover", "leader_election.lease_duration_s=60", "makes it slow"],
        id="lease-60s",
    ),
    pytest.param(
        ["etcd.election_timeout_ms=5000"],
        "scenarios/test_etcd_quorum.py::test_kill_leader_new_leader_within_budget",
        ["FAIL etcd re-election", "etcd.election_timeout_ms=5000", "makes it slow"],
        id="etcd-election-5000ms",
    ),
    pytest.param(
        ["load_balancer.check_interval_ms=10000"],
        "scenarios/test_control_plane_failover.py::test_kill_one_apiserver_lb_routes_around",
        ["FAIL LB marks the dead apiserver down", "load_balancer.check_interval_ms=10000", "makes it slow"],
        id="haproxy-checks-10s",
    ),
]


@pytest.mark.parametrize(("settings", "target", "expected"), CASES)
def test_misconfigured_cluster_fails_the_matching_scenario(
    settings: list[str], target: str, expected: list[str], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    block = 150 + [c.id for c in CASES].index(request.node.callspec.id)
    name = f"dp-{request.node.callspec.id}"[:40]
    argv = [sys.executable, "-m", "harness.cli", "run", "--set", f"name={name}", "--set", f"address_block={block}"]
    for s in settings:
        argv += ["--set", s]
    # `run` writes reports into the current directory by default: the checkout's reports/ stay the user's.
    argv += ["--alluredir", str(tmp_path / "allure-results"), "--junit", str(tmp_path / "junit.xml")]
    argv += [target, "-p", "no:cacheprovider", "-o", "log_cli=true", "--log-cli-level=INFO", "-q"]
    proc = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=540, env=dict(os.environ), check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"expected the scenario to fail (exit 1), got {proc.returncode}:\n{out[-3000:]}"
    for text in expected:
        assert text in out, f"missing {text!r} in the scenario's verdicts:\n{out[-3000:]}"
    assert "Traceback" not in out.split("FAILURES")[0], out[-3000:]
