"""Plain-text and HTML tables for report attachments: fault journal, etcd members, leaders, verdicts.

Text tables are what people paste into a retrospective's notes, so they are fixed-width and
readable without the report; times are wall-clock (the same clock as the journal and the
traffic timeline) with an offset from the scenario's start.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.faults.journal import FaultRecord
    from harness.status import ClusterStatus
    from harness.verdicts import Verdict


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A fixed-width table with a rule under the header; the last column is not padded."""
    cols = len(headers)
    widths = [max([len(headers[i])] + [len(r[i]) for r in rows]) for i in range(cols)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(widths[i]) if i < cols - 1 else c for i, c in enumerate(cells)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def clock(t: float | None, t0: float | None = None) -> str:
    """Wall-clock time of day with milliseconds, and the offset from t0 when given."""
    if t is None:
        return "-"
    text = time.strftime("%H:%M:%S", time.localtime(t)) + f".{int((t % 1) * 1000):03d}"
    return text if t0 is None else f"{text} (+{t - t0:.1f}s)"


def fault_journal(records: Sequence[FaultRecord], t0: float | None = None) -> str:
    """One row per fault: what, where, applied, healed, how long, and how it ended."""
    if not records:
        return "no faults were injected"
    rows = []
    for i, r in enumerate(records, 1):
        took = "-" if r.duration_s is None else f"{r.duration_s:.1f}s"
        rows.append(
            [
                str(i),
                r.description,
                r.target,
                clock(r.applied_at, t0),
                clock(r.healed_at, t0),
                took,
                r.status + (f": {r.error}" if r.error else ""),
            ]
        )
    return render(["#", "fault", "target", "applied", "healed", "lasted", "status"], rows)


@dataclass(frozen=True)
class LeaderChange:
    """Who led before and after a scenario: etcd's Raft leader or a lease holder."""

    role: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def line(self) -> str:
        arrow = "->" if self.changed else "=="
        note = " (changed)" if self.changed else ""
        return f"{self.role}: {self.before or 'none'} {arrow} {self.after or 'none'}{note}"


def leader_changes(before: ClusterStatus | None, after: ClusterStatus | None) -> list[LeaderChange]:
    """etcd leader and each leased component's holder, before vs after."""
    if before is None and after is None:
        return []
    roles = ["etcd", *sorted({*(before.leaders if before else {}), *(after.leaders if after else {})})]

    def holder(st: ClusterStatus | None, role: str) -> str | None:
        if st is None:
            return None
        return st.etcd.leader if role == "etcd" else st.leaders.get(role)

    return [LeaderChange(role, holder(before, role), holder(after, role)) for role in roles]


def member_table(before: ClusterStatus | None, after: ClusterStatus | None) -> str:
    """etcd members before and after side by side, then the leader changes and apiserver readiness."""
    if before is None and after is None:
        return "no cluster status was collected"
    names: list[str] = []
    for st in (before, after):
        for m in st.etcd.members if st else []:
            if m.name not in names:
                names.append(m.name)

    def cells(st: ClusterStatus | None, name: str) -> list[str]:
        m = next((m for m in st.etcd.members if m.name == name), None) if st else None
        if m is None:
            return ["-", "-", "-", "-"]
        health = "healthy" if m.healthy else ("UNHEALTHY" + (f" ({m.error[:60]})" if m.error else ""))
        return [health, "leader" if m.leader else "", str(m.raft_term), str(m.raft_index)]

    rows = [[n, *cells(before, n), *cells(after, n)] for n in names]
    head = ["member", "before", "role", "term", "index", "after", "role", "term", "index"]
    parts = ["etcd members", render(head, rows)]
    for label, st in (("before", before), ("after", after)):
        if st is not None:
            quorum = "yes" if st.etcd.quorum else "NO"
            healthy = sum(m.healthy for m in st.etcd.members)
            parts.append(f"quorum {label}: {quorum} ({healthy}/{st.etcd.size} healthy)")
    parts += ["", "leaders", *(c.line() for c in leader_changes(before, after))]
    ready = []
    for label, st in (("before", before), ("after", after)):
        if st is not None:
            states = (f"{a.node}={'ready' if a.ready else 'NOT READY'}" for a in st.apiservers)
            ready.append(f"{label}: " + ", ".join(states))
    if ready:
        parts += ["", "apiservers", *ready]
    return "\n".join(parts)


def _num(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.2f}{unit}"


def verdicts_text(verdicts: Sequence[Verdict]) -> str:
    if not verdicts:
        return "no verdicts"
    rows = [
        [v.outcome.value, v.name, _num(v.measured, v.unit), _num(v.slo, v.unit), _num(v.expected, v.unit), v.message]
        for v in verdicts
    ]
    return render(["result", "verdict", "measured", "SLO", "expected", "detail"], rows)


def verdicts_html(verdicts: Sequence[Verdict]) -> str:
    """The verdict table as a small self-contained HTML page (Allure shows it inline)."""
    style = (
        "body{font:13px sans-serif;margin:8px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
        ".PASS{background:#e6f4ea}.FAIL{background:#fce8e6;font-weight:bold}"
        ".INCONCLUSIVE,.ERROR{background:#fef7e0;font-style:italic}"
    )
    rows = []
    for v in verdicts:
        result = v.outcome.value
        cells = [result, v.name, _num(v.measured, v.unit), _num(v.slo, v.unit), _num(v.expected, v.unit), v.message]
        rows.append(f'<tr class="{result}">' + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("result", "verdict", "measured", "SLO", "expected", "detail"))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>"
        f"<table><tr>{head}</tr>{''.join(rows)}</table></body></html>"
    )


def key_verdict(verdicts: Sequence[Verdict]) -> Verdict | None:
    """The verdict that best summarises a scenario in one line.

    A failed measured verdict first (what went over budget), then any failed one, then the
    first measured one with a budget (the number the scenario exists to measure).
    """
    failed = [v for v in verdicts if not v.passed]
    for group in (
        [v for v in failed if v.measured is not None and v.slo is not None],
        failed,
        [v for v in verdicts if v.measured is not None and v.slo is not None and v.unit == "s"],
        [v for v in verdicts if v.measured is not None and v.slo is not None],
        list(verdicts),
    ):
        if group:
            return group[0]
    return None
