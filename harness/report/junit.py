"""JUnit XML from allure-results, for CI systems that read only JUnit.

pytest's own --junitxml is preferred when a run wrote one; this covers results that were
produced without it (or merged from several runs), so `kubequake report` always leaves a
junit.xml beside the HTML. A test that ran more than once (a rerun) counts by its latest result.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResultSummary:
    """One test's outcome as Allure recorded it."""

    name: str
    full_name: str
    suite: str
    status: str  # passed | failed | broken | skipped | unknown
    message: str
    trace: str
    start_ms: int
    stop_ms: int
    history_id: str
    attachments: tuple[tuple[str, str], ...]  # (name, source file) anywhere in the test, steps included

    @property
    def seconds(self) -> float:
        return max(0, self.stop_ms - self.start_ms) / 1000


def _attachments(node: dict[str, Any]) -> list[tuple[str, str]]:
    out = [(str(a.get("name", "")), str(a.get("source", ""))) for a in node.get("attachments") or []]
    for step in node.get("steps") or []:
        out += _attachments(step)
    return out


def read_results(results: Path) -> list[ResultSummary]:
    """The latest result of each test in an allure-results directory, in start order."""
    latest: dict[str, ResultSummary] = {}
    for path in sorted(results.glob("*-result.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable Allure result %s: %s", path, exc)
            continue
        labels = {lab.get("name"): lab.get("value") for lab in data.get("labels") or []}
        details = data.get("statusDetails") or {}
        r = ResultSummary(
            name=str(data.get("name", path.stem)),
            full_name=str(data.get("fullName", data.get("name", path.stem))),
            suite=str(labels.get("suite") or labels.get("parentSuite") or labels.get("package") or "kubequake"),
            status=str(data.get("status", "unknown")),
            message=str(details.get("message") or ""),
            trace=str(details.get("trace") or ""),
            start_ms=int(data.get("start") or 0),
            stop_ms=int(data.get("stop") or 0),
            history_id=str(data.get("historyId") or data.get("fullName") or path.stem),
            attachments=tuple(_attachments(data)),
        )
        old = latest.get(r.history_id)
        if old is None or r.stop_ms >= old.stop_ms:
            latest[r.history_id] = r
    return sorted(latest.values(), key=lambda r: (r.start_ms, r.full_name))


def to_junit(results: list[ResultSummary]) -> str:
    suites: dict[str, list[ResultSummary]] = {}
    for r in results:
        suites.setdefault(r.suite, []).append(r)
    root = ET.Element("testsuites", name="kubequake")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for suite, items in suites.items():
        counts = {
            "tests": len(items),
            "failures": sum(r.status == "failed" for r in items),
            "errors": sum(r.status in ("broken", "unknown") for r in items),
            "skipped": sum(r.status == "skipped" for r in items),
        }
        seconds = sum(r.seconds for r in items)
        attrs = {"name": suite, "time": f"{seconds:.3f}", **{k: str(v) for k, v in counts.items()}}
        el = ET.SubElement(root, "testsuite", attrs)
        for r in items:
            classname = r.full_name.rsplit("#", 1)[0] if "#" in r.full_name else suite
            case = ET.SubElement(el, "testcase", name=r.name, classname=classname, time=f"{r.seconds:.3f}")
            first = r.message.splitlines()[0] if r.message else ""
            if r.status == "failed":
                ET.SubElement(case, "failure", message=first).text = r.message + ("\n\n" + r.trace if r.trace else "")
            elif r.status in ("broken", "unknown"):
                ET.SubElement(case, "error", message=first or r.status).text = r.message + (
                    "\n\n" + r.trace if r.trace else ""
                )
            elif r.status == "skipped":
                ET.SubElement(case, "skipped", message=first)
        for k, v in counts.items():
            totals[k] += v
        total_time += seconds
    root.attrib.update({k: str(v) for k, v in totals.items()}, time=f"{total_time:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(results: Path, path: Path) -> int:
    """Write JUnit XML for the results; return the number of test cases."""
    summaries = read_results(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_junit(summaries))
    return len(summaries)
