"""The per-second timeline of what clients saw, aligned to wall-clock time.

Built from the per-request records of every Locust process. A request belongs to the second in
which it finished (when the client learned its outcome: a request that hangs for 10 s and then
times out shows as a timeout 10 s later, as the client experienced it). Seconds are whole
`time.time()` seconds, so fault windows journaled by another process line up without any
conversion. Empty seconds inside the span are kept as rows of zeros: a second in which nothing
finished is exactly what an outage looks like.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, runtime_checkable

from harness.load.records import FailureKind, RequestRecord


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


@runtime_checkable
class HasWindow(Protocol):
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...


@runtime_checkable
class JournaledFault(Protocol):
    """A fault journal record (harness.faults.journal.FaultRecord): applied at, healed at."""

    @property
    def applied_at(self) -> float | None: ...
    @property
    def healed_at(self) -> float | None: ...


@dataclass(frozen=True)
class Window:
    """A wall-clock interval [start, end), e.g. a fault from the journal: applied at, healed at."""

    start: float
    end: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end)) or self.end < self.start:
            raise ValueError(f"window end {self.end} is before its start {self.start}")

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @classmethod
    def of(cls, w: Window | HasWindow | JournaledFault | tuple[float, float]) -> Window:
        """A window from a Window, a (start, end) tuple, anything with start/end, or a journaled
        fault (applied_at, healed_at). A fault that was never applied or never healed has no window."""
        if isinstance(w, Window):
            return w
        if isinstance(w, tuple):
            return cls(float(w[0]), float(w[1]))
        if isinstance(w, JournaledFault):
            if w.applied_at is None or w.healed_at is None:
                raise ValueError(f"fault {w!r} has no window: applied_at={w.applied_at}, healed_at={w.healed_at}")
            return cls(float(w.applied_at), float(w.healed_at))
        return cls(float(w.start), float(w.end))


# Everything a window can be given as; a fault journal record works directly.
WindowLike: TypeAlias = Window | HasWindow | JournaledFault | tuple[float, float]


@dataclass(frozen=True)
class Second:
    """One wall-clock second of traffic."""

    t: int
    requests: int
    successes: int
    failures: Mapping[FailureKind, int]
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def failure_ratio(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "t": self.t,
            "requests": self.requests,
            "successes": self.successes,
            "failures": self.failed,
        }
        for kind in FailureKind:
            d[kind.value] = self.failures.get(kind, 0)
        d.update(p50_ms=self.p50_ms, p95_ms=self.p95_ms, p99_ms=self.p99_ms)
        return d


@dataclass(frozen=True)
class Gap:
    """The longest stretch with no successful request: client-visible unavailability."""

    start: float
    end: float
    failures: int

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Timeline:
    """Requests of a run, viewed through a wall-clock span.

    All records are kept even when the span is narrower, so questions that look across the
    span's edges (the success just before an outage began) get the right answer.
    """

    records: tuple[RequestRecord, ...]
    span: Window | None = None
    _ends: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self._ends) != len(self.records):
            recs = tuple(sorted(self.records, key=lambda r: r.end))
            object.__setattr__(self, "records", recs)
            object.__setattr__(self, "_ends", tuple(r.end for r in recs))

    @classmethod
    def from_records(cls, records: Iterable[RequestRecord], span: Window | None = None) -> Timeline:
        return cls(tuple(records), span)

    # -- spans -------------------------------------------------------------------------------
    @property
    def start(self) -> float | None:
        if self.span is not None:
            return self.span.start
        return self.records[0].end if self.records else None

    @property
    def end(self) -> float | None:
        if self.span is not None:
            return self.span.end
        return self.records[-1].end if self.records else None

    def window(self, w: WindowLike) -> Timeline:
        """The same run seen through another wall-clock window (e.g. a fault window)."""
        return Timeline(self.records, Window.of(w), self._ends)

    def issued_in(self, w: WindowLike, finished_by: float | None = None) -> Timeline:
        """Only the requests *sent* inside the window, finished by `finished_by` (default: its end).

        A request sent during a fault that hangs and finishes after the heal belongs to the
        fault: judging "latency after heal" by finish time would charge it to the recovery, and
        judging "latency during the fault" by finish time would lose it.
        """
        win = Window.of(w)
        until = win.end if finished_by is None else finished_by
        picked = tuple(r for r in self.records if win.start <= r.start < win.end and r.end <= until)
        return Timeline(picked, Window(win.start, max(win.end, until)))

    def after(self, t: float, seconds: float | None = None) -> Timeline:
        end = self.records[-1].end if self.records else t
        return self.window(Window(t, max(t, end if seconds is None else t + seconds)))

    def before(self, t: float) -> Timeline:
        start = self.records[0].end if self.records else t
        return self.window(Window(min(start, t), t))

    def selected(self) -> Sequence[RequestRecord]:
        """The records that finished inside the span."""
        if self.span is None:
            return self.records
        lo = bisect.bisect_left(self._ends, self.span.start)
        hi = bisect.bisect_left(self._ends, self.span.end)
        return self.records[lo:hi]

    # -- totals ------------------------------------------------------------------------------
    @property
    def requests(self) -> int:
        return len(self.selected())

    @property
    def successes(self) -> int:
        return sum(1 for r in self.selected() if r.ok)

    @property
    def failures(self) -> int:
        return self.requests - self.successes

    @property
    def failure_ratio(self) -> float:
        n = self.requests
        return self.failures / n if n else 0.0

    def failures_by_kind(self) -> dict[FailureKind, int]:
        out: dict[FailureKind, int] = {}
        for r in self.selected():
            if not r.ok:
                kind = r.kind or FailureKind.OTHER
                out[kind] = out.get(kind, 0) + 1
        return out

    def latency_percentile(self, q: float) -> float | None:
        return percentile(sorted(r.latency_ms for r in self.selected() if r.counts_latency), q)

    # -- per second --------------------------------------------------------------------------
    def rows(self) -> list[Second]:
        """One row per wall-clock second of the span, empty seconds included."""
        sel = self.selected()
        if self.span is not None:
            first, last = math.floor(self.span.start), math.ceil(self.span.end) - 1
        elif sel:
            first, last = math.floor(sel[0].end), math.floor(sel[-1].end)
        else:
            return []
        buckets: dict[int, list[RequestRecord]] = {}
        for r in sel:
            buckets.setdefault(math.floor(r.end), []).append(r)
        out = []
        # Bounded by the span, which is bounded by the run's max duration.
        for t in range(first, last + 1):
            recs = buckets.get(t, [])
            fails: dict[FailureKind, int] = {}
            for r in recs:
                if not r.ok:
                    kind = r.kind or FailureKind.OTHER
                    fails[kind] = fails.get(kind, 0) + 1
            lat = sorted(r.latency_ms for r in recs if r.counts_latency)
            out.append(
                Second(
                    t,
                    len(recs),
                    sum(1 for r in recs if r.ok),
                    fails,
                    percentile(lat, 50),
                    percentile(lat, 95),
                    percentile(lat, 99),
                )
            )
        return out

    def longest_dark_run(self) -> int:
        """Longest run of consecutive seconds with failures and not one success."""
        best = cur = 0
        for row in self.rows():
            cur = cur + 1 if row.failed and not row.successes else 0
            best = max(best, cur)
        return best

    def longest_success_gap(self) -> Gap | None:
        """The longest time between two successful requests that overlaps the span.

        A gap is measured from one success to the next, over all records: traffic is paced, so a
        stretch with no success means clients could not get through. A stretch at the start or
        end of the run counts only when failures fill it (otherwise it is just ramp-up or the
        end of the run). None when there were no requests at all.
        """
        recs = self.records
        if not recs:
            return None
        lo = self.span.start if self.span else recs[0].end
        hi = self.span.end if self.span else recs[-1].end
        succ = [r.end for r in recs if r.ok]
        fails = [r.end for r in recs if not r.ok]
        edges: list[tuple[float, float]] = []
        if not succ:
            edges.append((recs[0].start, recs[-1].end))
        else:
            if fails and fails[0] < succ[0]:
                edges.append((min(r.start for r in recs if not r.ok), succ[0]))
            edges.extend(itertools.pairwise(succ))
            if fails and fails[-1] > succ[-1]:
                edges.append((succ[-1], fails[-1]))
        best: Gap | None = None
        for a, b in edges:
            if b <= lo or a >= hi:
                continue
            if best is None or b - a > best.seconds:
                n = bisect.bisect_left(fails, b) - bisect.bisect_right(fails, a)
                best = Gap(a, b, n)
        return best

    def to_dicts(self) -> list[dict[str, object]]:
        return [row.to_dict() for row in self.rows()]
