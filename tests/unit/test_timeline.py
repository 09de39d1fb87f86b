"""The per-second timeline, failure classification and the record format (pure logic)."""

from __future__ import annotations

import errno
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.load.records import (
    FailureKind,
    RecordWriter,
    RequestRecord,
    WatchEvent,
    WatchRecord,
    WorkerReport,
    WriteOp,
    WritePhase,
    WriteRecord,
    classify,
    decode,
    encode,
    read_dir,
)
from harness.load.timeline import Timeline, Window, percentile
from harness.load.watches import summarize

T0 = 1_800_000_000.0  # a whole wall-clock second


def req(
    end: float, ok: bool = True, kind: FailureKind | None = None, ms: float = 10.0, lat: bool = True
) -> RequestRecord:
    if not ok and kind is None:
        kind = FailureKind.CONNECTION_RESET
    return RequestRecord(
        end - ms / 1000, end, "GET", "LIST configmaps", ok, None if ok else kind, 200 if ok else 0, ms, lat
    )


def paced(
    start: float, end: float, rate: float, ok: bool = True, kind: FailureKind | None = None
) -> list[RequestRecord]:
    n = round((end - start) * rate)
    return [req(start + (i + 0.5) / rate, ok, kind) for i in range(n)]


# -- percentiles and rows ------------------------------------------------------------------------
def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7
    assert percentile([], 50) is None


def test_rows_are_whole_wall_clock_seconds_with_empty_seconds_kept() -> None:
    recs = [
        req(T0 + 0.2, ms=5),
        req(T0 + 0.9, ms=15),
        req(T0 + 3.5, ok=False, kind=FailureKind.HTTP_5XX, ms=30),
        req(T0 + 3.6, ok=False, kind=FailureKind.TIMEOUT, ms=10_000),
    ]
    rows = Timeline.from_records(recs).rows()
    assert [r.t for r in rows] == [int(T0), int(T0) + 1, int(T0) + 2, int(T0) + 3]
    assert [r.requests for r in rows] == [2, 0, 0, 2]
    assert rows[0].successes == 2 and rows[0].failed == 0
    assert rows[0].p50_ms == 5 and rows[0].p99_ms == 15
    assert rows[1].p99_ms is None  # nothing finished: no latency, not zero latency
    assert rows[3].failures == {FailureKind.HTTP_5XX: 1, FailureKind.TIMEOUT: 1}
    assert rows[3].failure_ratio == 1.0
    assert rows[3].to_dict()["timeout"] == 1 and rows[3].to_dict()["http_429"] == 0


def test_a_request_belongs_to_the_second_it_finished_in() -> None:
    # Started in second 0, timed out in second 10: the client learned of it at 10.
    r = RequestRecord(T0 + 0.1, T0 + 10.1, "GET", "x", False, FailureKind.TIMEOUT, 0, 10_000.0)
    rows = Timeline.from_records([req(T0 + 0.5), r]).rows()
    assert rows[0].failed == 0 and rows[10].failures == {FailureKind.TIMEOUT: 1}


def test_broken_watch_streams_count_as_failures_but_not_as_latency() -> None:
    stream = req(T0 + 0.5, ok=False, ms=30_000, lat=False)
    tl = Timeline.from_records([req(T0 + 0.4, ms=12), stream])
    assert tl.failures == 1
    assert tl.latency_percentile(99) == 12
    assert tl.rows()[0].p99_ms == 12


def test_window_selects_by_end_time_and_keeps_empty_seconds_of_the_span() -> None:
    recs = paced(T0, T0 + 10, 10)
    fault = Window(T0 + 3, T0 + 6)
    w = Timeline.from_records(recs).window(fault)
    assert w.requests == 30
    rows = w.rows()
    assert [r.t for r in rows] == [int(T0) + 3, int(T0) + 4, int(T0) + 5]
    # A window with no traffic still has its seconds, as zeros.
    empty = Timeline.from_records(recs).window((T0 + 20, T0 + 22))
    assert [r.requests for r in empty.rows()] == [0, 0] and empty.failure_ratio == 0.0


def test_window_of_a_journaled_fault_and_refusal_of_an_unhealed_one() -> None:
    @dataclass
    class Fault:
        applied_at: float | None
        healed_at: float | None

    assert Window.of(Fault(T0, T0 + 4)) == Window(T0, T0 + 4)
    assert Window.of((T0, T0 + 1)).seconds == 1
    with pytest.raises(ValueError, match="no window"):
        Window.of(Fault(T0, None))
    with pytest.raises(ValueError, match="before its start"):
        Window(T0 + 1, T0)


def test_totals_and_failures_by_kind() -> None:
    recs = paced(T0, T0 + 2, 10) + paced(T0 + 2, T0 + 3, 4, ok=False, kind=FailureKind.CONNECTION_REFUSED)
    tl = Timeline.from_records(recs)
    assert (tl.requests, tl.successes, tl.failures) == (24, 20, 4)
    assert tl.failures_by_kind() == {FailureKind.CONNECTION_REFUSED: 4}
    assert tl.failure_ratio == pytest.approx(4 / 24)


# -- unavailability -------------------------------------------------------------------------------
def test_longest_success_gap_spans_an_outage_and_counts_its_failures() -> None:
    recs = paced(T0, T0 + 5, 10) + paced(T0 + 5, T0 + 8, 10, ok=False) + paced(T0 + 8, T0 + 12, 10)
    gap = Timeline.from_records(recs).longest_success_gap()
    assert gap is not None
    assert gap.seconds == pytest.approx(3.1, abs=0.01)  # last success before to first after
    assert gap.failures == 30


def test_gap_overlapping_a_window_is_found_from_outside_it() -> None:
    recs = paced(T0, T0 + 5, 10) + paced(T0 + 9, T0 + 12, 10)  # 4 s where nothing finished
    gap = Timeline.from_records(recs).window((T0 + 6, T0 + 7)).longest_success_gap()
    assert gap is not None and gap.seconds == pytest.approx(4.1, abs=0.01) and gap.failures == 0
    # A window that does not touch the gap does not report it.
    other = Timeline.from_records(recs).window((T0 + 10, T0 + 11)).longest_success_gap()
    assert other is not None and other.seconds < 0.2


def test_failures_until_the_end_of_the_run_count_as_unavailability() -> None:
    recs = paced(T0, T0 + 2, 10) + paced(T0 + 2, T0 + 7, 10, ok=False)
    gap = Timeline.from_records(recs).longest_success_gap()
    assert gap is not None and gap.seconds == pytest.approx(5.0, abs=0.06)
    assert Timeline.from_records(paced(T0, T0 + 3, 5, ok=False)).longest_success_gap() is not None
    assert Timeline.from_records([]).longest_success_gap() is None


def test_longest_dark_run_counts_seconds_with_failures_and_no_success() -> None:
    recs = paced(T0, T0 + 3, 10) + paced(T0 + 3, T0 + 6, 10, ok=False) + paced(T0 + 6, T0 + 8, 10)
    assert Timeline.from_records(recs).longest_dark_run() == 3
    assert Timeline.from_records(paced(T0, T0 + 3, 10)).longest_dark_run() == 0


# -- classification --------------------------------------------------------------------------------
class HTTPConnectionClosed(Exception):
    """Stands in for geventhttpclient's exception of the same name (matched by name)."""


class HTTPParseError(Exception):
    """Stands in for geventhttpclient's parse error, raised when a response is cut off."""


class Timeout(BaseException):
    """Stands in for gevent.Timeout, which is not an OSError."""


@pytest.mark.parametrize(
    ("exc", "status", "kind"),
    [
        (None, 200, None),
        (None, 201, None),
        (RuntimeError("bad status"), 503, FailureKind.HTTP_5XX),
        (RuntimeError("bad status"), 500, FailureKind.HTTP_5XX),
        (RuntimeError("bad status"), 429, FailureKind.HTTP_429),
        (RuntimeError("bad status"), 404, FailureKind.OTHER),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), 0, FailureKind.CONNECTION_REFUSED),
        (ConnectionResetError(errno.ECONNRESET, "reset"), 0, FailureKind.CONNECTION_RESET),
        (BrokenPipeError(errno.EPIPE, "pipe"), 0, FailureKind.CONNECTION_RESET),
        (TimeoutError("timed out"), 0, FailureKind.TIMEOUT),
        (Timeout("5 seconds"), 0, FailureKind.TIMEOUT),
        (OSError(errno.ETIMEDOUT, "timed out"), 0, FailureKind.TIMEOUT),
        (HTTPConnectionClosed("connection closed."), 0, FailureKind.CONNECTION_RESET),
        (HTTPParseError("Incomplete response."), 0, FailureKind.CONNECTION_RESET),
        (HTTPParseError("invalid header"), 0, FailureKind.OTHER),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), 0, FailureKind.CONNECTION_RESET),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), 0, FailureKind.OTHER),
        (ValueError("something else"), 0, FailureKind.OTHER),
    ],
)
def test_classify(exc: BaseException | None, status: int, kind: FailureKind | None) -> None:
    assert classify(exc, status) is kind


class RetriesExceeded(Exception):
    """Like geventhttpclient's: the real error is in `original`, not in the cause chain."""

    def __init__(self, url: str, original: BaseException) -> None:
        super().__init__(url)
        self.original = original


def test_classify_unwraps_client_library_wrappers() -> None:
    assert classify(RetriesExceeded("https://lb", TimeoutError("timed out")), 0) is FailureKind.TIMEOUT
    assert classify(RetriesExceeded("https://lb", ConnectionResetError()), 0) is FailureKind.CONNECTION_RESET


def test_classify_follows_the_cause_chain() -> None:
    try:
        try:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("request failed") from inner
    except RuntimeError as outer:
        assert classify(outer, 0) is FailureKind.CONNECTION_REFUSED


# -- records ---------------------------------------------------------------------------------------
def test_every_record_type_round_trips() -> None:
    recs = [
        RequestRecord(T0, T0 + 0.01, "GET", "LIST pods", False, FailureKind.HTTP_429, 429, 10.0, True, "h:1", "busy"),
        WriteRecord("w1", 3, WritePhase.ACK, WriteOp.UPDATE, "ns", "cm", "c#3", "123", T0, 200),
        WatchRecord("watch-1", WatchEvent.START, T0, 2, 0.25, "", 0, "h:1"),
        WorkerReport("client-a", 42, 1000, T0),
    ]
    for r in recs:
        assert decode(encode(r)) == r


def test_read_dir_skips_a_torn_last_line(tmp_path: Path) -> None:
    w = RecordWriter(tmp_path / "local-h-1.jsonl")
    w.write(req(T0 + 0.5))
    w.write(req(T0 + 0.7))
    w.close()
    with open(tmp_path / "local-h-1.jsonl", "a") as f:
        f.write('{"k":"request","start":1')  # a process killed mid-write
    rs = read_dir(tmp_path)
    assert len(rs.requests) == 2 and rs.skipped_lines == 1
    assert read_dir(tmp_path / "missing").requests == []


def test_watch_gaps_and_restarts() -> None:
    recs = [
        WatchRecord("a", WatchEvent.START, T0, 0),
        WatchRecord("a", WatchEvent.END, T0 + 30, 0, reason="expired"),
        WatchRecord("a", WatchEvent.START, T0 + 30.01, 1, 0.01),
        WatchRecord("a", WatchEvent.END, T0 + 40, 1, reason="broken: connection_reset: ..."),
        WatchRecord("a", WatchEvent.START, T0 + 43, 2, 3.0),
    ]
    s = summarize(recs)
    assert (s.watchers, s.starts, s.restarts, s.broken) == (1, 3, 2, 1)
    assert s.longest_gap_s == pytest.approx(3.0)
    during = s.within((T0 + 39, T0 + 44))
    assert during.restarts == 1 and during.longest_gap_s == pytest.approx(3.0)
