"""Log excerpts around each fault: what the affected components said while it was in force.

Component logs use different clocks on the page: etcd and KWOK write JSON with UTC ISO times,
klog (kube-*) writes `I1125 17:40:41.694260` in local time without a year, HAProxy writes
`[25/Nov/2026:17:40:54.517]` in local time, and the supervisor marks each start with a local ISO
time. Every line is placed on the wall clock the fault journal uses; a line without a time of
its own (a stack trace, a continuation) belongs to the line before it.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from harness.report.redact import redact

# Logs can be large after a long run; an excerpt only ever needs the recent part.
MAX_READ_BYTES = 16 * 1024 * 1024
MAX_LINE_CHARS = 400

_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
_KLOG = re.compile(r"^[IWEF](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d+)?\s")
_HAPROXY = re.compile(r"\[(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(\.\d+)?\]")
_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}


def _local(y: int, mo: int, d: int, h: int, mi: int, s: int, frac: str | None) -> float:
    return time.mktime((y, mo, d, h, mi, s, 0, 0, -1)) + (float(frac) if frac else 0.0)


def _fraction(frac: str | None) -> float:
    # Go prints nanoseconds; float() takes any number of digits.
    return float(frac) if frac else 0.0


def line_time(line: str, near: float) -> float | None:
    """The wall-clock time a log line was written, or None if it carries none.

    `near` supplies the year for klog lines (which omit it): the year that puts the line
    closest to `near`.
    """
    m = _KLOG.match(line)
    if m:
        mo, d, h, mi, s = (int(x) for x in m.groups()[:5])
        year = time.localtime(near).tm_year
        try:
            candidates = [_local(y, mo, d, h, mi, s, m.group(6)) for y in (year - 1, year, year + 1)]
        except (OverflowError, ValueError):
            return None
        return min(candidates, key=lambda t: abs(t - near))
    m = _HAPROXY.search(line)
    if m and m.group(2) in _MONTHS:
        d, y, h, mi, s = int(m.group(1)), int(m.group(3)), int(m.group(4)), int(m.group(5)), int(m.group(6))
        return _local(y, _MONTHS[m.group(2)], d, h, mi, s, m.group(7))
    m = _ISO.search(line)
    if m:
        y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
        tz = m.group(8)
        if tz is None:
            return _local(y, mo, d, h, mi, s, m.group(7))
        try:
            base = datetime(y, mo, d, h, mi, s).replace(tzinfo=None)
        except ValueError:
            return None
        offset = 0 if tz == "Z" else (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 3600 + int(tz[-2:]) * 60)
        return calendar.timegm(base.timetuple()) - offset + _fraction(m.group(7))
    return None


def read_tail(path: Path, max_bytes: int = MAX_READ_BYTES) -> list[str]:
    """The last `max_bytes` of a log as lines (the first, possibly cut, line dropped)."""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        data = f.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[1:] if size > max_bytes and lines else lines


def excerpt(lines: Iterable[str], start: float, end: float, max_lines: int = 200) -> tuple[list[str], int]:
    """Lines written in [start, end]: the first and last max_lines/2 of them when there are more.

    Returns the lines (with an omission note in the middle if cut) and how many matched.
    """
    picked: list[str] = []
    current: float | None = None
    for line in lines:
        t = line_time(line, near=start)
        if t is not None:
            current = t
        if current is not None and start <= current <= end:
            picked.append(line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " ...")
    total = len(picked)
    if total > max_lines:
        half = max_lines // 2
        picked = [*picked[:half], f"... {total - 2 * half} lines omitted ...", *picked[-half:]]
    return picked, total


class LogNode(Protocol):
    @property
    def name(self) -> str: ...
    def components(self) -> Sequence[object]: ...


class LogSource(Protocol):
    """A cluster whose component logs are files (harness.providers.local.LocalCluster)."""

    def nodes(self) -> Sequence[LogNode]: ...
    def log_path(self, node: str, component: Any) -> Path: ...


class FaultLike(Protocol):
    @property
    def description(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def params(self) -> dict[str, object]: ...
    @property
    def applied_at(self) -> float | None: ...
    @property
    def healed_at(self) -> float | None: ...


# Components whose peers on other nodes react to the fault (elections, lease takeovers).
_PEER_AWARE = ("etcd", "kube-controller-manager", "kube-scheduler")
# Components behind the load balancer: HAProxy's log shows it marking them down and up.
_BEHIND_LB = ("kube-apiserver", "haproxy")
# Components whose clients are what API users see: after an etcd fault the apiserver on the same
# node (its storage client, watch caches and /readyz, which HAProxy checks) tells why requests
# failed or were slow, during the fault and in the recovery after it.
_SEEN_THROUGH = {"etcd": "kube-apiserver"}


def affected_logs(cluster: LogSource, fault: FaultLike) -> list[tuple[str, str]]:
    """(node, component) pairs whose logs tell the story of this fault, most relevant first.

    The target itself; for a component that elects a leader, the same component on the other
    nodes; for etcd, also the apiserver on its node; for a whole node (power off, partition),
    all of its components and etcd on its peers; and HAProxy whenever the API behind it is
    affected.
    """
    node = str(fault.params.get("node") or fault.target.split("/")[0])
    component = fault.params.get("component")
    if component is None and "/" in fault.target:
        component = fault.target.split("/", 1)[1]
    by_node = {n.name: [str(c) for c in n.components()] for n in cluster.nodes()}
    out: list[tuple[str, str]] = []

    def add(n: str, c: str) -> None:
        if c in by_node.get(n, []) and (n, c) not in out:
            out.append((n, c))

    if component is not None:
        comp = str(component)
        add(node, comp)
        if comp in _PEER_AWARE:
            for other in by_node:
                add(other, comp)
        if comp in _SEEN_THROUGH:
            add(node, _SEEN_THROUGH[comp])
        touches_lb = comp in _BEHIND_LB or comp in _SEEN_THROUGH
    else:
        for c in by_node.get(node, []):
            add(node, c)
        for other in by_node:
            add(other, "etcd")
        touches_lb = True
    if touches_lb:
        for other, comps in by_node.items():
            if "haproxy" in comps:
                add(other, "haproxy")
    return out


@dataclass(frozen=True)
class LogExcerpt:
    node: str
    component: str
    path: Path
    lines: list[str]
    matched: int

    def render(self) -> str:
        head = f"==== {self.node}/{self.component}: {self.matched} lines ({self.path})"
        return "\n".join([head, *(self.lines or ["(nothing written in this window)"])])


def excerpts_for(
    cluster: LogSource, fault: FaultLike, seconds: float = 10.0, max_lines: int = 200, now: float | None = None
) -> list[LogExcerpt]:
    """Excerpts of the affected components' logs from `seconds` before the fault to after its heal."""
    if fault.applied_at is None:
        return []
    start = fault.applied_at - seconds
    end = (fault.healed_at if fault.healed_at is not None else (now or time.time())) + seconds
    out = []
    for node, comp in affected_logs(cluster, fault):
        path = cluster.log_path(node, _component(cluster, node, comp))
        if not path.is_file():
            continue
        lines, matched = excerpt(read_tail(path), start, end, max_lines)
        out.append(LogExcerpt(node, comp, path, lines, matched))
    return out


def _component(cluster: LogSource, node: str, name: str) -> object:
    """The node's own component object (an enum for real clusters) whose name is `name`."""
    for n in cluster.nodes():
        if n.name == node:
            for c in n.components():
                if str(c) == name:
                    return c
    return name


def render_excerpts(fault: FaultLike, excerpts: Sequence[LogExcerpt], seconds: float) -> str:
    window = f"{seconds:g}s before it was applied to {seconds:g}s after it was healed"
    body = "\n\n".join(e.render() for e in excerpts) if excerpts else "no log files for the affected components"
    return redact(f"{fault.description} ({fault.target}): logs from {window}\n\n{body}\n")


def iter_fault_excerpts(
    cluster: LogSource, faults: Iterable[FaultLike], seconds: float = 10.0, max_lines: int = 200
) -> Iterator[tuple[FaultLike, str]]:
    """(fault, rendered excerpt text) for each fault that was applied."""
    for f in faults:
        if f.applied_at is None:
            continue
        yield f, render_excerpts(f, excerpts_for(cluster, f, seconds, max_lines), seconds)
