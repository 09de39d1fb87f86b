"""wait_until retries what a recovering cluster produces and lets a harness bug through at once.

The clock is a fake one: each test states exactly how many checks fit before the deadline.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import requests
import urllib3.exceptions

from harness.errors import ClusterError, TimeoutExpired, TransportError
from harness.net.wait import is_transient, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    # Only the wait module's view of time is replaced; pytest's own clock keeps running.
    monkeypatch.setattr("harness.net.wait.time", SimpleNamespace(monotonic=fake.monotonic, sleep=fake.sleep))
    return fake


def script(*steps: tuple[bool, str] | BaseException) -> tuple[Callable[[], tuple[bool, str]], list[int]]:
    """A check that plays `steps` in order (the last one forever) and counts its calls."""
    calls = [0]

    def check() -> tuple[bool, str]:
        step = steps[min(calls[0], len(steps) - 1)]
        calls[0] += 1
        if isinstance(step, BaseException):
            raise step
        return step

    return check, calls


def test_returns_the_seconds_waited_once_the_check_passes(clock: FakeClock) -> None:
    check, calls = script((False, "1/3 up"), (False, "2/3 up"), (True, "3/3 up"))
    assert wait_until("members up", check, timeout=10, interval=0.5) == pytest.approx(1.0)
    assert calls[0] == 3


def test_deadline_raises_with_the_last_state_seen(clock: FakeClock) -> None:
    check, calls = script((False, "1/3 up"), (False, "2/3 up"))
    with pytest.raises(TimeoutExpired, match=r"members up not reached within 2s; last state: 2/3 up"):
        wait_until("members up", check, timeout=2, interval=0.5)
    # Checks at 0, 0.5, 1.0, 1.5 and one on the deadline itself, never past it.
    assert calls[0] == 5
    assert clock.now == 1002.0


def test_the_last_sleep_is_cut_to_land_on_the_deadline(clock: FakeClock) -> None:
    check, _ = script((False, "no"))
    with pytest.raises(TimeoutExpired):
        wait_until("x", check, timeout=1.0, interval=0.75)
    assert clock.sleeps == [0.75, 0.25]


@pytest.mark.parametrize(
    "error",
    [
        requests.ConnectionError("Connection refused"),
        requests.ReadTimeout("read timed out"),
        requests.HTTPError("503 Service Unavailable"),
        urllib3.exceptions.MaxRetryError(None, "/api", "NewConnectionError"),  # type: ignore[arg-type]
        urllib3.exceptions.ProtocolError("Connection aborted."),
        TransportError("ssh: connection reset"),
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        TimeoutError("timed out"),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        OSError(errno.ENETUNREACH, "Network is unreachable"),
    ],
    ids=lambda e: type(e).__name__ + (f"-{errno.errorcode[e.errno]}" if isinstance(e, OSError) and e.errno else ""),
)
def test_connection_and_transport_errors_are_retried(clock: FakeClock, error: BaseException) -> None:
    check, calls = script(error, error, (True, "up"))
    assert wait_until("api up", check, timeout=5, interval=0.25) == pytest.approx(0.5)
    assert calls[0] == 3


def test_a_transient_error_at_the_deadline_is_the_last_state(clock: FakeClock) -> None:
    check, _ = script((False, "starting"), requests.ConnectionError("Connection refused"))
    with pytest.raises(TimeoutExpired, match=r"last state: ConnectionError: Connection refused"):
        wait_until("api up", check, timeout=1, interval=0.5)


@pytest.mark.parametrize(
    "error",
    [
        KeyError("cp1"),
        AttributeError("'NoneType' object has no attribute 'status'"),
        AssertionError("spec is None"),
        TypeError("unsupported operand"),
        ValueError("invalid literal for int()"),
        FileNotFoundError(errno.ENOENT, "No such file or directory"),
        PermissionError(errno.EACCES, "Permission denied"),
        ClusterError("cp9 is not a node of this cluster"),
        TimeoutExpired("an inner wait ran out"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_any_other_exception_propagates_at_once(clock: FakeClock, error: Exception) -> None:
    check, calls = script(error, (True, "never reached"))
    with pytest.raises(type(error)) as raised:
        wait_until("cluster healthy", check, timeout=60)
    assert raised.value is error
    assert calls[0] == 1
    assert clock.now == 1000.0, "a harness bug must not cost the whole timeout"
    assert any("wait 'cluster healthy'" in note for note in raised.value.__notes__)


def test_a_bug_after_some_retries_still_propagates(clock: FakeClock) -> None:
    check, calls = script((False, "1/3"), requests.ConnectionError("refused"), KeyError("members"))
    with pytest.raises(KeyError):
        wait_until("members", check, timeout=60, interval=1)
    assert calls[0] == 3


def test_retry_on_adds_the_errors_the_caller_expects(clock: FakeClock) -> None:
    class ApiException(Exception):  # stands in for kubernetes.client.ApiException: no network import here
        pass

    check, calls = script(ApiException("(503) Service Unavailable"), (True, "ok"))
    assert wait_until("lease read", check, timeout=5, interval=0.5, retry_on=(ApiException,)) == pytest.approx(0.5)
    assert calls[0] == 2

    check, calls = script(ApiException("(503) Service Unavailable"), (True, "ok"))
    with pytest.raises(ApiException):
        wait_until("lease read", check, timeout=5, interval=0.5)
    assert calls[0] == 1


def test_retry_on_keeps_the_last_state_for_the_deadline(clock: FakeClock) -> None:
    check, _ = script(ClusterError("stats socket gone"))
    with pytest.raises(TimeoutExpired, match=r"last state: ClusterError: stats socket gone"):
        wait_until("LB marks cp1 down", check, timeout=1, retry_on=(ClusterError,))


def test_interrupts_are_never_swallowed(clock: FakeClock) -> None:
    check, calls = script(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        wait_until("x", check, timeout=60, retry_on=(Exception,))
    assert calls[0] == 1


def test_is_transient_tells_network_errnos_from_file_errnos() -> None:
    assert is_transient(OSError(errno.ETIMEDOUT, "Connection timed out"))
    assert not is_transient(OSError(errno.ENOENT, "No such file or directory"))
    assert not is_transient(OSError("no errno at all"))
    assert is_transient(OSError(errno.ENOENT, "gone"), retry_on=(FileNotFoundError, OSError))
