"""Pure parts of the report: categories vs the harness's real messages, environment, history,
plots, tables, log excerpts, redaction, JUnit, progress events and the demo's verdict table."""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness.config import ClusterConfig
from harness.errors import BlastRadiusError, HarnessError
from harness.faults.journal import FaultRecord
from harness.load.records import FailureKind, RequestRecord
from harness.load.slo import evaluate
from harness.load.timeline import Timeline, Window
from harness.providers.local import LocalCluster
from harness.report import environment as envmod
from harness.report import logs, plots, redact, tables
from harness.report.junit import read_results, to_junit
from harness.report.progress import ProgressReader, ProgressWriter
from harness.scenario import ScenarioFailed, ScenarioInconclusive, ScenarioRun
from harness.slo import ClientObjectives
from harness.status import (
    ApiServerRow,
    ClusterStatus,
    EtcdMemberRow,
    EtcdStatus,
    LoadBalancerRow,
    problems,
)
from harness.verdicts import Outcome, Verdict, check, inconclusive, within

REPO = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0


# -- categories against the harness's own messages --------------------------------------------
@dataclass
class _Injector:
    recs: list[FaultRecord] = field(default_factory=list)

    def records(self) -> list[FaultRecord]:
        return self.recs


def allure_message(exc: BaseException) -> str:
    """The message allure-pytest records: the exception's qualified type and its text."""
    mod = type(exc).__module__
    name = type(exc).__qualname__ if mod == "builtins" else f"{mod}.{type(exc).__qualname__}"
    return f"{name}: {exc}"


def scenario_failure(*verdicts: Verdict) -> str:
    """The message of a real ScenarioRun.finish() with these verdicts."""
    return _finished(ScenarioFailed, verdicts)


def scenario_inconclusive(*verdicts: Verdict) -> str:
    """The message of a real ScenarioRun.finish() whose measurements could not all be made."""
    return _finished(ScenarioInconclusive, verdicts)


def _finished(raised: type[Exception], verdicts: tuple[Verdict, ...]) -> str:
    run = ScenarioRun("test_x", cluster=None, budgets=None, injector=_Injector())  # type: ignore[arg-type]
    for v in verdicts:
        run.verdict(v)
    with pytest.raises(raised) as info:
        run.finish()
    return allure_message(info.value)


def status(healthy_members: int, leader: str | None = "cp1") -> ClusterStatus:
    members = [
        EtcdMemberRow(f"cp{i}", i <= healthy_members, f"cp{i}" == leader, 3, 100, "" if i <= healthy_members else "x")
        for i in (1, 2, 3)
    ]
    return ClusterStatus(
        name="kq",
        provider="local",
        run_dir="/tmp/kq",
        nodes=[],
        etcd=EtcdStatus(members, healthy_members >= 2, leader, 3),
        apiservers=[ApiServerRow("cp1", True), ApiServerRow("cp2", healthy_members >= 2)],
        load_balancer=LoadBalancerRow("127.0.0.10", True),
        leaders={"kube-controller-manager": "cp2", "kube-scheduler": "cp3"},
        workers=[],
        versions={},
    )


def slo_over_budget() -> Verdict:
    recs = [
        RequestRecord(T0 + i / 20 - 0.01, T0 + i / 20, "GET", "x", not (200 <= i < 300), None, 200, 10.0)
        for i in range(600)
    ]
    recs = [
        r if r.ok else RequestRecord(r.start, r.end, "GET", "x", False, FailureKind.CONNECTION_RESET, 0, 1.0)
        for r in recs
    ]
    budget = ClientObjectives(0.0, 1.0, 1000, 1000, 60)
    rep = evaluate(Timeline.from_records(recs), Window(T0 + 10, T0 + 15), budget)
    return rep["longest_unavailability"]


def test_categories_sort_the_harness_own_failures() -> None:
    lost = check("no acknowledged write lost", False, "812 acknowledged writes checked on every member; lost: ['kq/1']")
    over = within("etcd re-election", 5.3, 4.0, what="first acknowledged write after killing the leader")
    never = within("etcd re-election", None, 4.0)
    slo = slo_over_budget()
    assert not slo.passed and "exceeds SLO" in slo.message
    no_quorum = "; ".join(problems(status(1, leader=None)))
    steady_after = Verdict(
        "steady state after",
        90.0,
        90.0,
        "s",
        Outcome.FAIL,
        f"cluster did not return to steady state: {no_quorum} (cluster kq healthy not reached within 90s)",
    )
    not_recovered = Verdict(
        "steady state after",
        90.0,
        90.0,
        "s",
        Outcome.FAIL,
        "cluster did not return to steady state: worker kwok-1 not Ready (...)",
    )
    blast = BlastRadiusError(
        "refusing SIGKILL etcd on cp2: it would leave 1 of 3 etcd members (quorum needs 2), "
        "losing quorum; mark the scenario @pytest.mark.quorum_loss if that is the point"
    )
    cases = {
        scenario_failure(over, lost): "data lost",
        scenario_failure(over): "SLO missed",
        scenario_failure(never): "SLO missed",
        scenario_failure(slo): "SLO missed",
        scenario_failure(steady_after): "quorum lost",
        scenario_failure(not_recovered): "did not recover",
        scenario_failure(check("raft term advanced", False, "term 3 -> 3")): "other verdict failed",
        allure_message(
            HarnessError("cluster not in steady state before the scenario: etcd has no quorum")
        ): "harness or environment error",
        allure_message(blast): "harness or environment error",
        scenario_inconclusive(within("x", 0.1, 1.0), inconclusive("API unavailability via LB", "no sample")): (
            "inconclusive"
        ),
        # A failed SLO beside a measurement that could not be made is still the cluster's failure.
        scenario_failure(over, inconclusive("API unavailability via LB", "no sample")): "SLO missed",
    }
    for message, expected in cases.items():
        status_ = "failed" if "ScenarioFailed" in message else "broken"
        assert envmod.categorize(message, status_) == expected, message
    # A passing verdict's wording never puts a failure in a category by itself.
    passing = within("etcd re-election", 1.2, 4.0).line()
    assert envmod.categorize(passing) is None


def test_categories_file_is_what_allure_reads(tmp_path: Path) -> None:
    path = envmod.write_categories(tmp_path)
    data = json.loads(path.read_text())
    assert [c["name"] for c in data][:5] == [
        "data lost",
        "inconclusive",
        "harness or environment error",
        "quorum lost",
        "SLO missed",
    ]
    for cat in data:
        # Allure matches the whole message (Java matches()): every pattern must span it all.
        assert cat["messageRegex"].startswith("(?s).*") and cat["messageRegex"].endswith(".*")
        assert set(cat["matchedStatuses"]) <= {"failed", "broken", "skipped", "passed", "unknown"}


# -- environment, executor, history -----------------------------------------------------------
def test_environment_of_a_cluster_names_versions_topology_and_machine(tmp_path: Path) -> None:
    cluster = LocalCluster(ClusterConfig(name="kq-env", address_block=77, run_root=str(tmp_path)))
    versions = {"kubernetes": "v1.33.1", "etcd": "3.6.1", "kwok": "v0.8.0", "haproxy": "2.6.12"}
    env = envmod.from_cluster(cluster, versions)
    props = envmod.parse_properties(envmod.write_environment(tmp_path, env).read_text())
    assert props["Kubernetes"] == "v1.33.1"
    assert props["etcd"] == "3.6.1"
    assert props["HAProxy"] == "2.6.12"
    assert props["KWOK"] == "v0.8.0"
    assert props["Provider"] == "local"
    assert props["Topology"].startswith("3 control planes (stacked etcd), 3 workers")
    assert "127.0.77.10" in props["Topology"]
    assert props["Machine"].endswith("GiB") and f"{os.cpu_count()} cores" in props["Machine"]
    assert props["etcd timings"] == "heartbeat 100ms, election timeout 1000ms"
    assert props["Load balancer"].startswith("check inter 2000ms fall 3 rise 2")


def test_properties_escape_what_java_would_misread() -> None:
    tricky = {"key with = and: colon": "value\nwith newline, tab\t, back\\slash and é", "x": " leading space"}
    text = envmod.render_properties(tricky)
    assert text.count("\n") == 2  # one line per property, the newline escaped
    assert envmod.parse_properties(text) == tricky


def test_history_is_carried_and_build_order_continues(tmp_path: Path) -> None:
    previous, results = tmp_path / "allure-report", tmp_path / "allure-results"
    assert envmod.carry_history(previous, results) == 0
    assert envmod.previous_build_order(previous) == 0
    (previous / "history").mkdir(parents=True)
    trend = [{"buildOrder": 7, "data": {"passed": 3}}, {"buildOrder": 6, "data": {"passed": 2}}, {"data": {}}]
    (previous / "history" / "history-trend.json").write_text(json.dumps(trend))
    (previous / "history" / "history.json").write_text("{}")
    (previous / "history" / "notes.txt").write_text("not history")
    assert envmod.carry_history(previous, results) == 2
    assert sorted(p.name for p in (results / "history").iterdir()) == ["history-trend.json", "history.json"]
    assert json.loads((results / "history" / "history-trend.json").read_text()) == trend
    assert envmod.previous_build_order(previous) == 7
    info = envmod.executor_info(8)
    assert info["buildOrder"] == 8 and "#8" in info["buildName"]


# -- plots -------------------------------------------------------------------------------------
def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    w, h = struct.unpack(">II", data[16:24])
    # Walk every chunk and check its CRC: a truncated or corrupt file fails here.
    pos = 8
    kinds = []
    while pos < len(data):
        n, k = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert zlib.crc32(k + body) == crc, f"bad CRC in chunk {k!r}"
        kinds.append(k)
        pos += 12 + n
    assert kinds[-1] == b"IEND"
    return w, h


def traffic_rows() -> list[Any]:
    recs = []
    for i in range(400):
        t = T0 + i / 20
        ok = not (100 <= i < 160)
        recs.append(RequestRecord(t - 0.02, t, "GET", "x", ok, None if ok else FailureKind.TIMEOUT, 200, 20.0))
    return Timeline.from_records(recs).rows()


def test_timeline_plot_is_a_valid_png_with_every_panel() -> None:
    from harness.checks.availability import Sample

    probes = {"lb": [Sample(T0 + i * 0.05, not (5.2 < i * 0.05 < 7.5), 0.01, "") for i in range(400)]}
    png = plots.scenario_timeline(
        faults=[plots.FaultWindow("SIGKILL etcd on cp1", T0 + 5, T0 + 8)],
        phases=[plots.PhaseSpan("inject", T0 + 4.9, T0 + 5.1), plots.PhaseSpan("observe", T0 + 5.1, None)],
        rows=traffic_rows(),
        probes=probes,
        title="test_kill_leader",
    )
    w, h = png_size(png)
    assert w == 1200 and h > 600  # four panels stacked


def test_timeline_plot_as_svg_names_the_fault_and_survives_empty_input() -> None:
    svg = plots.scenario_timeline(faults=[plots.FaultWindow("power off node cp2", T0, None)], fmt="svg")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert b"power off node cp2" in svg or b"power" in svg  # text is kept as text or glyph ids with a title
    png_size(plots.scenario_timeline())


def test_scenario_run_phases_become_plot_spans() -> None:
    from harness import report
    from harness.scenario import Phase

    run = ScenarioRun("x", cluster=None, budgets=None, injector=_Injector())  # type: ignore[arg-type]
    run.phases = [Phase("inject", T0, T0 + 1), Phase("observe", T0 + 1, None)]
    assert report.phase_spans(run) == [plots.PhaseSpan("inject", T0, T0 + 1), plots.PhaseSpan("observe", T0 + 1, None)]


# -- tables ------------------------------------------------------------------------------------
def fault(
    desc: str = "SIGKILL etcd on cp1", applied: float | None = T0 + 5, healed: float | None = T0 + 9
) -> FaultRecord:
    return FaultRecord(
        "kill",
        "cp1/etcd",
        desc,
        {"node": "cp1", "component": "etcd"},
        applied_at=applied,
        healed_at=healed,
        status="healed" if healed else "applied",
    )


def test_fault_journal_table_shows_when_and_how_long() -> None:
    text = tables.fault_journal([fault(), fault("power off node cp2", T0 + 20, None)], t0=T0)
    lines = text.splitlines()
    assert lines[0].split() == ["#", "fault", "target", "applied", "healed", "lasted", "status"]
    assert "(+5.0s)" in lines[2] and "(+9.0s)" in lines[2] and "4.0s" in lines[2] and "healed" in lines[2]
    assert "power off node cp2" in lines[3] and lines[3].rstrip().endswith("applied")
    assert tables.fault_journal([]) == "no faults were injected"


def test_member_table_and_leader_changes_before_after() -> None:
    before, after = status(3, leader="cp1"), status(3, leader="cp2")
    text = tables.member_table(before, after)
    assert "quorum before: yes (3/3 healthy)" in text
    assert "etcd: cp1 -> cp2 (changed)" in text
    assert "kube-scheduler: cp3 == cp3" in text
    broken = tables.member_table(before, status(1, leader=None))
    assert "quorum after: NO (1/3 healthy)" in broken and "UNHEALTHY" in broken and "etcd: cp1 -> none" in broken
    assert [c.role for c in tables.leader_changes(before, after) if c.changed] == ["etcd"]


def test_key_verdict_prefers_what_went_over_budget() -> None:
    ok_gap = within("write gap", 0.4, 4.0)
    over = within("lease handover", 30.0, 21.0)
    failed_check = check("members agree", False, "hashes differ")
    assert tables.key_verdict([ok_gap, failed_check, over]) == over
    assert tables.key_verdict([ok_gap, failed_check]) == failed_check
    assert tables.key_verdict([check("a", True, ""), ok_gap]) == ok_gap
    assert tables.key_verdict([]) is None
    html = tables.verdicts_html([over, check("x", True, "<b>")])
    assert '<tr class="FAIL">' in html and "&lt;b&gt;" in html


# -- log excerpts ------------------------------------------------------------------------------
def local(ts: float, fmt: str) -> str:
    return time.strftime(fmt, time.localtime(ts))


def test_each_log_format_is_placed_on_the_wall_clock() -> None:
    t = T0 + 0.25
    utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    assert logs.line_time(f'{{"level":"info","ts":"{utc}.250000Z","msg":"x"}}', T0) == pytest.approx(t)
    assert logs.line_time(f'{{"time":"{utc}.250000123Z","level":"INFO"}}', T0) == pytest.approx(t)
    klog = f"I{local(t, '%m%d %H:%M:%S')}.250000   123 leaderelection.go:258] attempting"
    assert logs.line_time(klog, T0) == pytest.approx(t)
    hap = f"127.0.0.1:36616 [{local(t, '%d/%b/%Y:%H:%M:%S')}.250] apiserver apiservers/cp1 1/0/16 2525"
    assert logs.line_time(hap, T0) == pytest.approx(t)
    assert logs.line_time(f"--- kubequake start {local(T0, '%Y-%m-%dT%H:%M:%S')} cp1/etcd", T0) == T0
    assert logs.line_time("\tgoroutine 1 [running]:", T0) is None


@dataclass
class _Node:
    name: str
    comps: list[str]

    def components(self) -> list[str]:
        return self.comps


@dataclass
class _LogCluster:
    root: Path

    def nodes(self) -> list[_Node]:
        cps = [
            _Node(f"cp{i}", ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]) for i in (1, 2, 3)
        ]
        return [_Node("lb", ["haproxy"]), *cps]

    def log_path(self, node: str, component: Any) -> Path:
        return self.root / node / "logs" / f"{component}.log"


def test_affected_logs_follow_the_fault() -> None:
    c = _LogCluster(Path("/nonexistent"))
    # etcd: its peers (the election) and its own node's apiserver, whose storage client and
    # /readyz decide what clients saw, and HAProxy, which follows that /readyz.
    assert logs.affected_logs(c, fault()) == [
        ("cp1", "etcd"),
        ("cp2", "etcd"),
        ("cp3", "etcd"),
        ("cp1", "kube-apiserver"),
        ("lb", "haproxy"),
    ]
    api = FaultRecord(
        "kill", "cp2/kube-apiserver", "SIGKILL kube-apiserver on cp2", {"node": "cp2", "component": "kube-apiserver"}
    )
    assert logs.affected_logs(c, api) == [("cp2", "kube-apiserver"), ("lb", "haproxy")]
    power = FaultRecord("power_off", "cp3", "power off node cp3", {"node": "cp3", "blackhole": True})
    got = logs.affected_logs(c, power)
    assert got[:4] == [
        ("cp3", "etcd"),
        ("cp3", "kube-apiserver"),
        ("cp3", "kube-controller-manager"),
        ("cp3", "kube-scheduler"),
    ]
    assert ("cp1", "etcd") in got and got[-1] == ("lb", "haproxy")


def test_excerpt_keeps_the_window_and_continuation_lines(tmp_path: Path) -> None:
    c = _LogCluster(tmp_path)
    path = c.log_path("cp2", "etcd")
    path.parent.mkdir(parents=True)
    lines = []
    for i in range(0, 60):
        utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(T0 + i))
        lines.append(f'{{"level":"info","ts":"{utc}.000000Z","msg":"tick {i}"}}')
        if i == 12:
            lines.append("  continuation of tick 12")
    path.write_text("\n".join(lines) + "\n")
    rec = fault(applied=T0 + 10, healed=T0 + 20)
    found = logs.excerpts_for(c, rec, seconds=2.0)
    assert [(e.node, e.component) for e in found] == [("cp2", "etcd")]  # only logs that exist
    body = found[0].lines
    assert '"msg":"tick 8"' in body[0] and '"msg":"tick 22"' in body[-1]
    assert "  continuation of tick 12" in body and found[0].matched == 16
    cut, matched = logs.excerpt(lines, T0, T0 + 59, max_lines=10)
    assert matched == 61 and len(cut) == 11 and "51 lines omitted" in cut[5]
    assert logs.excerpts_for(c, fault(applied=None, healed=None)) == []


# -- redaction ---------------------------------------------------------------------------------
def pem_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_redact_removes_pem_blocks_plain_escaped_and_base64() -> None:
    key = pem_key()
    body = redact.pem_body_lines(key.encode())
    assert body and all(len(b) >= 40 for b in body)
    for text in (
        f"log: {key} tail",
        json.dumps({"k": f"x {key} y"}),
        f"client-key-data: {base64.b64encode(key.encode()).decode()}",
        "cut: " + key[:120],
    ):
        clean = redact.redact(text)
        assert "PRIVATE KEY" not in clean and all(b.decode() not in clean for b in body), clean
    assert json.loads(redact.redact(json.dumps({"k": key.strip()})))["k"] == "[private key redacted]"


def test_sanitize_and_scan_catch_a_key_in_results_and_in_a_single_file_report(tmp_path: Path) -> None:
    key = pem_key()
    body = redact.pem_body_lines(key.encode())
    results = tmp_path / "results"
    results.mkdir()
    (results / "a-attachment.txt").write_text(f"stdout\n{key}\n")
    (results / "b-result.json").write_text(json.dumps({"statusDetails": {"message": key}}))
    (results / "c-attachment.png").write_bytes(b"\x89PNG not text")
    assert len(redact.scan([results], body)) >= 4  # the scanner sees the planted key
    changed = redact.sanitize_results(results)
    assert sorted(p.name for p in changed) == ["a-attachment.txt", "b-result.json"]
    assert redact.scan([results], body) == []
    json.loads((results / "b-result.json").read_text())  # still valid JSON
    # A single-file report inlines attachments as base64: the scan decodes them.
    single = tmp_path / "index.html"
    single.write_text(f"d('data/attachments/1.txt','{base64.b64encode(('x' * 50 + key).encode()).decode()}');")
    hits = redact.scan([single], body)
    assert hits and all(h.where == "inside a base64 payload" for h in hits)


# -- JUnit and progress ------------------------------------------------------------------------
def test_junit_from_allure_results(tmp_path: Path) -> None:
    def result(name: str, status_: str, stop: int, message: str = "") -> dict[str, Any]:
        return {
            "name": name,
            "status": status_,
            "fullName": f"scenarios.test_etcd#{name}",
            "historyId": name,
            "start": 1000,
            "stop": stop,
            "statusDetails": {"message": message, "trace": "tb"},
            "labels": [{"name": "suite", "value": "test_etcd"}],
            "steps": [{"name": "inject", "attachments": [{"name": "timeline", "source": "t.png"}]}],
        }

    items = [
        result("a", "passed", 3000),
        result("b", "failed", 2000, "ScenarioFailed: 1 verdict(s) failed"),
        result("c", "broken", 1500, "HarnessError: x"),
        result("d", "skipped", 1000),
        result("b", "passed", 1200),
    ]  # an older run of b: the newer failure counts
    for i, item in enumerate(items):
        (tmp_path / f"{i}-result.json").write_text(json.dumps(item))
    summaries = read_results(tmp_path)
    assert [s.name for s in summaries] == ["a", "b", "c", "d"]
    assert summaries[0].attachments == (("timeline", "t.png"),)
    root = ET.fromstring(to_junit(summaries))
    assert root.attrib["tests"] == "4" and root.attrib["failures"] == "1" and root.attrib["errors"] == "1"
    case_b = root.find(".//testcase[@name='b']")
    assert case_b is not None and case_b.find("failure") is not None
    assert case_b.attrib["classname"] == "scenarios.test_etcd" and case_b.attrib["time"] == "1.000"


def test_progress_reader_waits_for_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    reader = ProgressReader(path)
    assert list(reader.poll()) == []
    ProgressWriter(path).emit("test", nodeid="a::b", index=1)
    with path.open("a") as f:
        f.write('{"event": "step", "t": 1, "title": "inj')
    got = list(reader.poll())
    assert [(e.kind, e.get("nodeid")) for e in got] == [("test", "a::b")]
    with path.open("a") as f:
        f.write('ect"}\n')
    assert [e.get("title") for e in reader.poll()] == ["inject"]


def test_demo_verdict_table_shows_key_numbers_and_categories() -> None:
    from harness.demo import TestRow, verdict_table

    over = within("etcd re-election", 5.3, 4.0)
    rows = [
        TestRow(
            "s::test_kill_leader",
            "test_kill_leader",
            "failed",
            scenario_failure(over),
            30.0,
            [check("new leader elected", True, "cp1 -> cp2"), over],
        ),
        TestRow("s::test_follower", "test_follower", "passed", "", 20.0, [within("write gap", 0.31, 4.0)]),
        TestRow(
            "s::test_lb",
            "test_lb",
            "error",
            allure_message(HarnessError("cluster not in steady state before the scenario: x")),
            1.0,
            [],
        ),
    ]
    unmade = inconclusive("API unavailability via LB", "no sample", 10.0, "s")
    # Verdicts reach the table through a progress event (JSON), and come back with their outcome.
    sent = [Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) for v in (within("write gap", 0.2, 4.0), unmade)]
    assert [v.outcome for v in sent] == [Outcome.PASS, Outcome.INCONCLUSIVE]
    rows.append(TestRow("s::test_unmade", "test_unmade", "failed", scenario_inconclusive(*sent), 5.0, sent))
    text = verdict_table(rows).splitlines()
    assert text[5].split()[1] == "INCONCLUSIVE" and text[5].rstrip().endswith("inconclusive")
    assert text[0].split()[:2] == ["scenario", "result"]
    assert text[2].split()[1:7] == ["FAIL", "etcd", "re-election", "5.30s", "4.00s", "1/2"]
    assert text[2].rstrip().endswith("SLO missed")
    assert text[3].split()[1:6] == ["PASS", "write", "gap", "0.31s", "4.00s"]
    assert "ERROR" in text[4] and "cluster not in steady state before" in text[4]
    assert text[4].rstrip().endswith("harness or environment error")


# -- the pytest hooks, in a pytest of their own -----------------------------------------------
def test_hooks_attach_the_scenario_story_and_write_progress(tmp_path: Path) -> None:
    """A test with a `scenario` fixture gets its timeline and journal attached even when it breaks."""
    suite = tmp_path / "test_fake_scenario.py"
    suite.write_text(
        textwrap.dedent(
            """
        import time
        import pytest
        from harness import report
        from harness.faults.journal import FaultRecord
        from harness.scenario import ScenarioRun

        class Injector:
            def __init__(self):
                now = time.time()
                self.recs = [FaultRecord("kill", "cp1/etcd", "SIGKILL etcd on cp1", {"node": "cp1",
                             "component": "etcd"}, applied_at=now - 3, healed_at=now - 1, status="healed")]
            def records(self):
                return self.recs

        class Cluster:
            def nodes(self):
                return []
            def log_path(self, node, component):
                raise AssertionError("no logs expected")

        @pytest.fixture
        def scenario():
            return ScenarioRun("fake", Cluster(), None, Injector())

        def test_breaks_halfway(scenario):
            with scenario.phase("inject"):
                pass
            raise RuntimeError("probe crashed")
        """
        )
    )
    results, progress = tmp_path / "results", tmp_path / "progress.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(suite),
            "-q",
            "-p",
            "no:cacheprovider",
            f"--rootdir={tmp_path}",
            "-c",
            os.devnull,
            f"--alluredir={results}",
            f"--kq-progress={progress}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (summary,) = read_results(results)
    names = [n for n, _ in summary.attachments]
    assert summary.status == "broken" and "timeline" in names and "fault journal (table)" in names
    png = next(src for n, src in summary.attachments if n == "timeline")
    png_size((results / png).read_bytes())
    assert (results / "categories.json").is_file() and (results / "environment.properties").is_file()
    events = list(ProgressReader(progress).poll())
    assert [e.kind for e in events] == ["session", "test", "step", "result", "finish"]
    assert events[2].get("title") == "inject" and events[3].get("outcome") == "failed"
    assert "probe crashed" in events[3].get("message")
