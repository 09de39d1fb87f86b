"""Waits with deadlines that raise with the last state seen, and never hide a harness bug.

A wait retries only what a recovering cluster is expected to produce: its check returning
False, or a connection/transport error (refused, reset, timed out, TLS cut short, a node
command that could not run) while a component is down. Any other exception is a bug in the
check or the harness and propagates at once: retried until the deadline it would read as
"the cluster never recovered", blaming the cluster for the harness's own mistake.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable

import requests
import urllib3.exceptions

from harness.errors import TimeoutExpired, TransportError

log = logging.getLogger(__name__)

# Exceptions that mean "could not talk to it (yet)", whatever the check was asking.
# urllib3's errors do not derive from OSError; the kubernetes client raises them unwrapped.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    TransportError,
    ConnectionError,
    TimeoutError,
    ssl.SSLError,
    socket.gaierror,
    socket.herror,
)

# A plain OSError from a socket call carries only an errno: these are the network's, while
# e.g. ENOENT or EACCES from opening a file stay harness bugs.
_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ENETRESET,
        errno.EADDRNOTAVAIL,
    }
)


def is_transient(exc: BaseException, retry_on: tuple[type[BaseException], ...] = ()) -> bool:
    """Whether a wait may retry after `exc`: a connection/transport error, or one the caller expects."""
    if isinstance(exc, (*retry_on, *TRANSIENT_ERRORS)):
        return True
    return isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS


def wait_until(
    what: str,
    check: Callable[[], tuple[bool, str]],
    timeout: float,
    interval: float = 0.25,
    retry_on: tuple[type[BaseException], ...] = (),
) -> float:
    """Poll `check` until it reports success; return seconds waited or raise with the last state.

    `check` returns (done, state): `state` describes what it saw and ends up in the TimeoutExpired
    message if the deadline passes. A connection/transport error (see TRANSIENT_ERRORS) or one of
    `retry_on` counts as "not yet" and its text becomes the last state; any other exception
    propagates at once, with a note naming the wait.
    """
    start = time.monotonic()
    deadline = start + timeout
    last = "not checked yet"
    while True:
        try:
            ok, last = check()
        except Exception as exc:
            if not is_transient(exc, retry_on):
                exc.add_note(f"raised by the check of wait {what!r} after {time.monotonic() - start:.1f}s")
                raise
            ok, last = False, f"{type(exc).__name__}: {exc}"
            log.debug("%s: not yet (%s)", what, last)
        if ok:
            return time.monotonic() - start
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutExpired(f"{what} not reached within {timeout:.0f}s; last state: {last}")
        # The last check lands on the deadline rather than up to `interval` after it.
        time.sleep(min(interval, deadline - now))
