"""A real suite run becomes a real Allure report that a real browser shows, with no secrets in it.

tests/integration/report_suite/suite_report.py runs in a pytest of its own, with --alluredir,
on this session's cluster (same settings, --keep-cluster: the subprocess reuses it). Then the
Allure 2 command line from harness/report/npm turns the results into HTML twice (the second run
carries the first one's history), headless Chromium opens the single-file report, and every
file of results and report is scanned for the cluster's keys and client certificates.

Needs `make setup` (npm ci --prefix harness/report/npm) and Debian's chromium. Screenshots and
the report land in reports/report-test/. Run on a cluster of its own, e.g.
    pytest tests/integration/test_report.py -p no:cacheprovider --kq-set name=rp-pt --kq-set address_block=90
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import config as kqconfig
from harness.config import ClusterConfig
from harness.providers.local import LocalCluster
from harness.report import redact
from harness.report.generate import NPM_DIR, allure_command, check_java, generate
from harness.report.junit import read_results
from harness.report.progress import ProgressReader

REPO = Path(__file__).resolve().parents[2]
SUITE = Path(__file__).resolve().parent / "report_suite" / "suite_report.py"
BROWSER_SCRIPT = Path(__file__).resolve().parent / "report_browser.cjs"
ARTIFACTS = REPO / "reports" / "report-test"
CHROMIUM = "/usr/bin/chromium"
SCENARIO = "test_kill_apiserver_under_traffic"
FAILING = "test_status_snapshot_with_an_impossible_budget"
LEAKY = "test_credentials_printed_and_attached_are_redacted"

pytestmark = pytest.mark.timeout(900)


def require_tools() -> None:
    """The report tools are part of `make setup`: missing ones fail the test with the fix."""
    allure_command()
    check_java()
    if not (NPM_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail("playwright-core is missing: run `npm ci --prefix harness/report/npm` (part of `make setup`)")
    if not Path(CHROMIUM).is_file() or shutil.which("node") is None:
        pytest.fail("headless Chromium and Node are needed: apt-get install chromium nodejs")


def suite_argv(cfg: ClusterConfig, results: Path, junit: Path, progress: Path) -> list[str]:
    argv = [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider", f"--rootdir={REPO}"]
    argv += [f"--alluredir={results}", "--clean-alluredir", f"--junitxml={junit}", f"--kq-progress={progress}"]
    argv.append("--keep-cluster")
    # Every setting spelled out, so the subprocess builds exactly this session's config and
    # reuses its cluster instead of starting another one.
    for key, value in kqconfig.flatten(cfg.to_dict()).items():
        argv += ["--kq-set", f"{key}={value}"]
    return argv


def run_suite(cluster: LocalCluster, results: Path, junit: Path, progress: Path) -> subprocess.CompletedProcess[str]:
    # One watchdog per cluster: the subprocess brings its own while it runs.
    if cluster.watchdog is not None:
        cluster.watchdog.stop()
    try:
        return subprocess.run(
            suite_argv(cluster.cfg, results, junit, progress),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        cluster.start_watchdog()


def secret_needles(cluster: LocalCluster) -> list[bytes]:
    """Base64 lines of every certificate and key of the cluster's PKI, client ones included."""
    needles: list[bytes] = []
    for path in sorted(cluster.pki.dir.rglob("*")):
        if path.is_file() and path.suffix in (".crt", ".key", ".pem", ".pub"):
            needles += redact.pem_body_lines(path.read_bytes())
    return needles


def leaves(node: dict[str, object]) -> list[str]:
    """Test names under a node of Allure's category tree (category > message > tests)."""
    children = node.get("children")
    if not isinstance(children, list):
        return [str(node.get("name"))]
    return [name for child in children for name in leaves(child)]


def browse(single_file: Path, shots: Path) -> dict[str, object]:
    env = {**os.environ, "NODE_PATH": str(NPM_DIR / "node_modules"), "CHROMIUM": CHROMIUM}
    proc = subprocess.run(
        ["node", str(BROWSER_SCRIPT), str(single_file), SCENARIO, FAILING, str(shots)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"browser script failed:\n{proc.stderr[-3000:]}"
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_a_suite_run_becomes_a_report_that_chromium_shows_without_secrets(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    require_tools()
    results, progress = tmp_path / "allure-results", tmp_path / "progress.jsonl"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out, junit = ARTIFACTS / "allure-report", ARTIFACTS / "junit.xml"
    shutil.rmtree(out, ignore_errors=True)
    junit.unlink(missing_ok=True)

    proc = run_suite(cluster, results, junit, progress)
    # One test fails on purpose (an impossible budget); anything else failing is a real failure.
    assert proc.returncode == 1, proc.stdout[-5000:] + proc.stderr[-2000:]
    summaries = {s.name: s for s in read_results(results)}
    assert {n: s.status for n, s in summaries.items()} == {SCENARIO: "passed", FAILING: "failed", LEAKY: "passed"}, (
        proc.stdout[-5000:]
    )

    # The scenario's story was attached by the hooks: timeline plot, per-second CSV, journal,
    # members before/after, leader changes, logs around the fault, verdict tables.
    attached = dict(summaries[SCENARIO].attachments)
    for name in (
        "timeline",
        "timeline per second",
        "fault journal (table)",
        "etcd members before/after",
        "leader changes",
        "logs around: SIGKILL kube-apiserver on cp1",
        "budgets vs measured (table)",
    ):
        assert name in attached, f"{name!r} not attached; got {sorted(attached)}"
    png = (results / attached["timeline"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    logs = (results / attached["logs around: SIGKILL kube-apiserver on cp1"]).read_text()
    assert "==== cp1/kube-apiserver" in logs and "==== lb/haproxy" in logs
    assert "kubequake start" in logs, "the restart after heal lies inside the excerpt window"
    journal = (results / attached["fault journal (table)"]).read_text()
    assert "SIGKILL kube-apiserver on cp1" in journal and "healed" in journal

    # Progress events of the run: every test, its phases, its verdicts.
    events = list(ProgressReader(progress).poll())
    assert events[0].kind == "session" and events[0].get("total") == 3 and events[-1].kind == "finish"
    steps = [e.get("title") for e in events if e.kind == "step" and SCENARIO in e.get("nodeid")]
    named = [s for s in steps if not s.startswith("wait: ")]  # named windows show as steps of their own
    assert named[:2] == ["steady state before", "inject"] and "steady state after" in named
    assert "wait: settle before inject (1.0s)" in steps
    result = next(e for e in events if e.kind == "result" and FAILING in e.get("nodeid"))
    assert result.get("outcome") == "failed" and result.get("verdicts")[0]["name"] == "status snapshot"

    # Two generations: the second carries the first one's history, so trends show.
    generate(results, out, junit=junit)
    rep = generate(results, out, junit=junit)
    assert rep.history_files >= 1
    trend = json.loads((out / "history" / "history-trend.json").read_text())
    assert len(trend) == 2 and trend[0]["buildOrder"] == 2
    assert rep.single_file is not None and rep.single_file.is_file()
    assert junit.is_file() and 'tests="3"' in junit.read_text()

    env = {e["name"]: e["values"][0] for e in json.loads((out / "widgets" / "environment.json").read_text())}
    assert env["Kubernetes"] == cluster.bins.versions["kubernetes"]
    assert env["etcd"] == cluster.bins.versions["etcd"] and env["Provider"] == "local"
    categories = json.loads((out / "data" / "categories.json").read_text())
    by_name = {c["name"]: leaves(c) for c in categories["children"]}
    assert by_name.get("SLO missed") == [FAILING], by_name

    # No key or certificate anywhere: results, the report directory, the single file, JUnit.
    needles = secret_needles(cluster)
    assert len(needles) > 20
    leaked = redact.scan([results, out, rep.single_file, junit], needles)
    assert not leaked, "key material in the report:\n" + "\n".join(map(str, leaked[:20]))
    leaky = dict(summaries[LEAKY].attachments)
    assert (
        "admin credentials" in leaky and "[private key redacted]" in (results / leaky["admin credentials"]).read_text()
    )

    # A person's view: headless Chromium on the single file.
    seen = browse(rep.single_file, ARTIFACTS)
    assert seen["external"] == [], f"the report loaded something from outside: {seen['external']}"
    overview = str(seen["overview"])
    assert "Kubernetes" in overview and cluster.bins.versions["kubernetes"] in overview
    for name in (SCENARIO, FAILING, LEAKY):
        assert name in str(seen["suites"])
    image = seen["image"]
    assert isinstance(image, dict) and image["width"] == 1200, f"the timeline did not render: {image}"
    assert FAILING in str(seen["categories"])
    for shot in ("overview.png", "scenario.png"):
        assert (ARTIFACTS / shot).stat().st_size > 10_000
