"""A small real scenario suite that tests/integration/test_report.py runs in a pytest of its own.

Not collected by `pytest tests` (no test_ prefix): it is only ever run by path, with
--alluredir, on the session's cluster. Three tests, each there for what the report must show:
a passing fault scenario under Locust traffic with probes (timeline, journal, logs, members),
a scenario that fails on a budget (categories), and a test that tries hard to leak the
cluster's credentials into the report (redaction).
"""

from __future__ import annotations

import base64
import logging
import time

import pytest

from harness import report, windows
from harness.checks.availability import AvailabilitySampler
from harness.faults.catalog import KillComponent
from harness.load.settings import TrafficSettings
from harness.load.traffic import Traffic
from harness.providers.base import Component
from harness.providers.local import LocalCluster
from harness.scenario import ScenarioRun
from harness.status import collect
from harness.verdicts import check, within

pytestmark = [pytest.mark.disruptive, pytest.mark.control_plane]

# Light load: enough requests per second to draw, little CPU on a 2-core machine.
TRAFFIC = TrafficSettings(users=3, rate_per_user=4.0, watchers=1, max_duration_s=120.0)


def test_kill_apiserver_under_traffic(scenario: ScenarioRun, cluster: LocalCluster) -> None:
    run = scenario
    run.steady_state_before()
    victim = cluster.control_planes()[0].name
    traffic = Traffic.start(cluster, TRAFFIC)
    try:
        report.observe(traffic)
        targets = {"lb": cluster.lb_url(), victim: cluster.apiserver_url(victim)}
        with AvailabilitySampler(targets, cluster.admin_tls()) as api:
            report.observe(api)
            run.wait(windows.SETTLE)
            with run.fault(KillComponent(cluster, victim, Component.APISERVER), baseline=api) as killed:
                run.wait(windows.MEMBERS_DOWN)
            rec = killed.record
            run.wait(windows.RECOVERY_AFTER_HEAL)
        traffic.stop()
    finally:
        traffic.stop()
        traffic.cleanup()
    timeline = traffic.timeline()
    run.verdict(check("traffic flowed", timeline.successes > 0, f"{timeline.successes} of {timeline.requests} ok"))
    run.verdict(
        check(
            "direct endpoint down while killed",
            api.series[victim].failures(rec.applied_at or 0, rec.healed_at or time.time()) > 0,
            f"{api.series[victim].failures()} failed samples straight to {victim}",
        )
    )
    run.steady_state_after()
    run.finish()


def test_status_snapshot_with_an_impossible_budget(scenario: ScenarioRun, cluster: LocalCluster) -> None:
    """Fails on purpose: a real measurement against a budget of zero lands in 'SLO missed'."""
    run = scenario
    run.steady_state_before()
    start = time.monotonic()
    collect(cluster)
    run.verdict(within("status snapshot", time.monotonic() - start, 0.0, what="collecting the cluster status"))
    run.finish()


def test_credentials_printed_and_attached_are_redacted(cluster: LocalCluster) -> None:
    pki = cluster.pki
    key, cert = pki.admin.key.read_text(), pki.admin.cert.read_text()
    # Captured stdout and log records become attachments of allure-pytest's own.
    print(key)
    print(pki.traffic.key.read_text())
    logging.getLogger("suite_report").warning("client certificate in use:\n%s", cert)
    report.attach_text("admin credentials", key + cert)
    report.attach_json("kubeconfig", {"client-key-data": base64.b64encode(key.encode()).decode()})
    with report.step("etcd client key"):
        report.attach_text("etcd client", pki.etcd_client.key.read_text())
