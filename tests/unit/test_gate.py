"""The gate's pure logic: version skew policy, verdict table, JUnit writer, exit codes, the pki setting."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness import config
from harness.checks.skew import (
    Version,
    VersionError,
    apiserver_skew,
    control_plane_skew,
    kubectl_skew,
    parse_version,
    skew_verdicts,
)
from harness.cli import main
from harness.errors import ConfigError
from harness.gate import (
    EXIT_COULD_NOT_RUN,
    EXIT_FAIL,
    EXIT_PASS,
    CheckOutcome,
    GateReport,
    certificate_verdict,
    gate_exit_code,
    junit_xml,
    verdict_table,
)
from harness.verdicts import Outcome, Verdict, check, inconclusive

ROOT = Path(__file__).resolve().parents[2]


def v(text: str) -> Version:
    return parse_version(text)


# -- versions and skew ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("v1.36.3", (1, 36, 3)), ("1.35.0-rc.1+abc", (1, 35, 0)), ("v1.36", (1, 36, 0)), ("v3.6.8", (3, 6, 8))],
)
def test_parse_version(text: str, expected: tuple[int, int, int]) -> None:
    got = parse_version(text)
    assert (got.major, got.minor, got.patch) == expected
    assert str(got) == text


@pytest.mark.parametrize("text", ["", "latest", "one.two", "v1"])
def test_parse_version_refuses_non_versions(text: str) -> None:
    with pytest.raises(VersionError, match="not a Kubernetes version"):
        parse_version(text)


def test_apiservers_within_one_minor_pass() -> None:
    assert apiserver_skew({"cp1": v("v1.36.3"), "cp2": v("v1.36.0")}).passed
    verdict = apiserver_skew({"cp1": v("v1.35.9"), "cp2": v("v1.36.3")})
    assert verdict.passed and verdict.measured == 1


def test_apiservers_two_minors_apart_fail_naming_both() -> None:
    verdict = apiserver_skew({"cp1": v("v1.34.2"), "cp2": v("v1.36.3"), "cp3": v("v1.35.0")})
    assert not verdict.passed
    assert verdict.measured == 2
    assert "cp2 (v1.36.3)" in verdict.message and "cp1 (v1.34.2)" in verdict.message


def test_apiservers_of_different_majors_fail() -> None:
    assert not apiserver_skew({"cp1": v("v1.36.0"), "cp2": v("v2.0.0")}).passed


def test_no_apiserver_version_fails() -> None:
    verdict = apiserver_skew({})
    assert not verdict.passed and "no kube-apiserver version" in verdict.message


def test_controller_manager_newer_than_oldest_apiserver_fails() -> None:
    apis = {"cp1": v("v1.35.4"), "cp2": v("v1.36.3")}
    verdict = control_plane_skew("kube-controller-manager", {"cp2": v("v1.36.3")}, apis)
    assert not verdict.passed
    assert "kube-controller-manager on cp2 (v1.36.3) is newer than the oldest kube-apiserver" in verdict.message
    assert "cp1" in verdict.message


def test_scheduler_one_minor_older_passes_two_fail() -> None:
    apis = {"cp1": v("v1.36.3")}
    assert control_plane_skew("kube-scheduler", {"cp1": v("v1.35.1")}, apis).passed
    verdict = control_plane_skew("kube-scheduler", {"cp1": v("v1.34.1"), "cp2": v("v1.36.0")}, apis)
    assert not verdict.passed
    assert "kube-scheduler on cp1 (v1.34.1) is 2 minor versions older" in verdict.message
    assert "cp2" not in verdict.message.split(";")[0]


def test_control_plane_skew_without_versions_fails() -> None:
    assert not control_plane_skew("kube-scheduler", {}, {"cp1": v("v1.36.3")}).passed
    assert not control_plane_skew("kube-scheduler", {"cp1": v("v1.36.3")}, {}).passed


def test_kubectl_within_one_minor_either_way() -> None:
    apis = {"cp1": v("v1.36.3"), "cp2": v("v1.36.1")}
    assert kubectl_skew(v("v1.37.0"), apis).passed
    assert kubectl_skew(v("v1.35.0"), apis).passed
    far = kubectl_skew(v("v1.38.0"), apis)
    assert not far.passed and far.measured == 2 and "kubectl v1.38.0" in far.message
    assert not kubectl_skew(None, apis).passed


def test_skew_verdicts_cover_every_rule() -> None:
    same = {"cp1": v("v1.36.3")}
    verdicts = skew_verdicts(same, same, same, v("v1.36.3"))
    assert [x.passed for x in verdicts] == [True, True, True, True]
    assert len({x.name for x in verdicts}) == 4


# -- certificates ---------------------------------------------------------------------------------


def test_certificate_verdict_names_every_short_certificate() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    expiry = {"apiserver-cp1.crt": now + timedelta(days=9), "apiserver-cp2.crt": now + timedelta(days=90)}
    remaining = {k: (t - now).total_seconds() / 86400 for k, t in expiry.items()}
    verdict = certificate_verdict("kube-apiserver serving", remaining, {}, 30, expiry)
    assert not verdict.passed
    assert verdict.measured == pytest.approx(9)
    assert "apiserver-cp1.crt (9.0 days left" in verdict.message
    assert "apiserver-cp2.crt" not in verdict.message


def test_certificate_verdict_passes_and_fails_on_unreadable() -> None:
    expiry = {"admin.crt": datetime(2031, 1, 1, tzinfo=UTC)}
    assert certificate_verdict("admin client", {"admin.crt": 300.0}, {}, 30, expiry).passed
    broken = certificate_verdict("admin client", {"admin.crt": 300.0}, {"served by cp1:6443": "refused"}, 30, expiry)
    assert not broken.passed and "served by cp1:6443: cannot read (refused)" in broken.message
    assert not certificate_verdict("admin client", {}, {}, 30, {}).passed


# -- output and exit codes ------------------------------------------------------------------------


def outcomes() -> list[CheckOutcome]:
    return [
        CheckOutcome(
            "etcd", Verdict("etcd member count is odd", 2, None, "", Outcome.FAIL, "etcd has 2 members"), 0.25
        ),
        CheckOutcome(
            "certificates", Verdict("certificates: admin", 364.5, 30, "d", Outcome.PASS, "1 certificate"), 0.5
        ),
        CheckOutcome("load balancer", check("API ready through the load balancer", True, "200 ok"), 0.1),
    ]


def test_verdict_table_lists_every_check_with_its_message() -> None:
    lines = verdict_table(outcomes()).splitlines()
    assert lines[0].split() == ["result", "group", "check", "measured", "threshold", "message"]
    assert set(lines[1]) <= {"-", " "}
    assert len(lines) == 2 + 3
    assert lines[2].startswith("FAIL") and lines[2].endswith("etcd has 2 members")
    assert "364.50d" in lines[3] and "30d" in lines[3]
    # Columns line up: each row's check name starts at the same offset as the header's.
    offset = lines[0].index("check")
    assert lines[2][offset:].startswith("etcd member count is odd")
    assert lines[4][offset:].startswith("API ready")


def test_junit_has_one_testcase_per_check_and_failures_with_messages() -> None:
    rep = GateReport("gt-x", "brought up for the gate", outcomes())
    root = ET.fromstring(junit_xml(rep))
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "0"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [o.verdict.name for o in outcomes()]
    assert cases[0].get("classname") == "kubequake.gate.etcd"
    failure = cases[0].find("failure")
    assert failure is not None and failure.get("message") == "etcd has 2 members"
    assert all(c.find("failure") is None for c in cases[1:])
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props == {"cluster": "gt-x", "cluster_origin": "brought up for the gate"}


def test_junit_reports_incomplete_gate_as_error() -> None:
    rep = GateReport("gt-x", "reused", outcomes()[1:], incomplete=["pytest exited 4"])
    suite = ET.fromstring(junit_xml(rep)).find("testsuite")
    assert suite is not None and suite.get("errors") == "1"
    err = suite.find("testcase/error")
    assert err is not None and err.get("message") == "pytest exited 4"


def test_exit_codes() -> None:
    passing = outcomes()[1:]
    assert gate_exit_code(passing) == EXIT_PASS == 0
    assert gate_exit_code(outcomes()) == EXIT_FAIL == 1
    assert gate_exit_code(passing, ["could not run the suites"]) == EXIT_COULD_NOT_RUN == 2
    # A gate that checked nothing must not let an upgrade through.
    assert gate_exit_code([]) == EXIT_COULD_NOT_RUN
    assert GateReport("x", "y", outcomes()).exit_code == 1
    unmade = CheckOutcome("resilience", inconclusive("resilience suites", "2 scenarios skipped"), 1.0)
    broken = CheckOutcome("etcd", Verdict("etcd could be checked", None, None, "", Outcome.ERROR, "KeyError"), 0.1)
    # Not the cluster's failure, and not a pass either: the gate could not say.
    assert gate_exit_code([*passing, unmade]) == EXIT_COULD_NOT_RUN
    assert gate_exit_code([*passing, broken]) == EXIT_COULD_NOT_RUN
    # A broken SLO is the news, whatever else could not be measured.
    assert gate_exit_code([*outcomes(), unmade, broken]) == EXIT_FAIL


def test_junit_tells_failures_from_checks_that_could_not_be_made() -> None:
    unmade = CheckOutcome("resilience", inconclusive("resilience suites", "2 scenarios skipped"), 1.0)
    xml = junit_xml(GateReport("x", "y", [*outcomes(), unmade])).decode()
    assert 'failures="1"' in xml and 'errors="1"' in xml
    assert 'type="GateCheckInconclusive"' in xml and 'type="GateCheckFailed"' in xml


# -- config and CLI input -------------------------------------------------------------------------


def test_pki_cert_validity_setting() -> None:
    assert config.build({}).pki.cert_validity_days == 365
    assert config.build({"pki.cert_validity_days": "10"}).pki.cert_validity_days == 10
    for bad in ("0", "3651"):
        with pytest.raises(ConfigError, match=r"pki.cert_validity_days=\d+: choose 1 to 3650"):
            config.build({"pki.cert_validity_days": bad})


def test_gate_refuses_unknown_setting_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["gate", "--set", "name=gt-unit", "--set", "address_block=201", "--set", "no_such_key=1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "kubequake gate: error: unknown setting 'no_such_key'" in err
    assert "Traceback" not in err


def test_gate_refuses_non_positive_cert_days(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["gate", "--set", "name=gt-unit", "--min-cert-days", "0"])
    assert rc == 2
    assert "--min-cert-days 0" in capsys.readouterr().err


def test_allure_replay_writes_one_result_per_check(tmp_path: Path) -> None:
    # A subprocess: the replay is a pytest session of its own and must not nest inside this one.
    code = (
        "import pickle, sys\n"
        "from harness.gate_suite import write_allure_results\n"
        "sys.exit(write_allure_results(pickle.loads(sys.stdin.buffer.read()), __import__('pathlib').Path(sys.argv[1])))"
    )
    import pickle

    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        input=pickle.dumps(outcomes()),
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr.decode()[-2000:]
    results = [json.loads(p.read_text()) for p in tmp_path.glob("*-result.json")]
    status = {r["name"]: r["status"] for r in results}
    assert status == {
        "test_gate_check[etcd: etcd member count is odd]": "failed",
        "test_gate_check[certificates: certificates: admin]": "passed",
        "test_gate_check[load balancer: API ready through the load balancer]": "passed",
    }
    failed = next(r for r in results if r["status"] == "failed")
    assert "etcd has 2 members" in failed["statusDetails"]["message"]


SUITE = """
import pytest
from harness.scenario import ScenarioFailed, ScenarioInconclusive


def test_passes():
    pass


def test_fails():
    raise ScenarioFailed("1 verdict(s) failed")


def test_inconclusive():
    raise ScenarioInconclusive("inconclusive: no sample")


def test_harness_broke():
    raise KeyError("probe")


def test_skipped():
    pytest.skip("needs power-off")
"""


def run_suites(tmp_path: Path, keep: list[str]) -> dict[str, object]:
    suite = tmp_path / "test_suite_outcomes.py"
    body = SUITE.split("\n\n\ndef ")
    suite.write_text(body[0] + "".join(f"\n\n\ndef {t}" for t in body[1:] if t.split("(")[0] in keep))
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from harness.gate_suite import run_resilience_suites\n"
        "o = run_resilience_suites(['-p', 'no:cacheprovider', '-q'], Path(sys.argv[2]), [sys.argv[1]])\n"
        "print(json.dumps({'outcome': o.verdict.outcome.value, 'message': o.verdict.message}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(suite), str(tmp_path / "allure")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("keep", "outcome"),
    [
        (["test_passes"], "PASS"),
        (["test_passes", "test_fails", "test_inconclusive", "test_harness_broke", "test_skipped"], "FAIL"),
        (["test_passes", "test_inconclusive", "test_harness_broke"], "ERROR"),
        (["test_passes", "test_inconclusive"], "INCONCLUSIVE"),
        # A required scenario that was skipped keeps the gate from passing (exit 2).
        (["test_passes", "test_skipped"], "INCONCLUSIVE"),
    ],
)
def test_the_suites_outcome_counts_every_scenario_outcome(tmp_path: Path, keep: list[str], outcome: str) -> None:
    result = run_suites(tmp_path, keep)
    assert result["outcome"] == outcome, result
    if "test_skipped" in keep and outcome != "FAIL":
        assert "test_skipped" in str(result["message"])
