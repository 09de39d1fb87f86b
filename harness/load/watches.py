"""What the watch users saw: restarts, gaps between watches, and why watches ended."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.load.records import WatchEvent, WatchRecord
from harness.load.timeline import Window, WindowLike


@dataclass(frozen=True)
class WatchGap:
    watcher: str
    ended: float  # when the previous watch ended
    restarted: float  # when the next one started successfully
    previous_end_reason: str

    @property
    def seconds(self) -> float:
        return self.restarted - self.ended


@dataclass(frozen=True)
class WatchSummary:
    watchers: int
    starts: int
    restarts: int
    broken: int  # watches that ended with an error rather than at their timeout
    gaps: tuple[WatchGap, ...]

    @property
    def longest_gap_s(self) -> float:
        return max((g.seconds for g in self.gaps), default=0.0)

    def within(self, w: WindowLike) -> WatchSummary:
        """Gaps that overlap a window (e.g. a fault window)."""
        win = Window.of(w)
        gaps = tuple(g for g in self.gaps if g.restarted > win.start and g.ended < win.end)
        return WatchSummary(
            self.watchers,
            self.starts,
            len(gaps),
            sum(1 for g in gaps if g.previous_end_reason.startswith("broken")),
            gaps,
        )


def summarize(records: Iterable[WatchRecord]) -> WatchSummary:
    recs = sorted(records, key=lambda r: r.time)
    last_end: dict[str, WatchRecord] = {}
    gaps: list[WatchGap] = []
    starts = broken = 0
    watchers: set[str] = set()
    for r in recs:
        watchers.add(r.watcher)
        if r.event is WatchEvent.END:
            last_end[r.watcher] = r
            if r.reason.startswith("broken"):
                broken += 1
            continue
        starts += 1
        prev = last_end.pop(r.watcher, None)
        if prev is not None:
            gaps.append(WatchGap(r.watcher, prev.time, r.time, prev.reason))
    return WatchSummary(len(watchers), starts, len(gaps), broken, tuple(gaps))
