"""The traffic client never sends a write twice by itself.

A write whose connection closes before any answer (the apiserver behind the LB was killed after
applying it) has an unknown fate and must reach the ledger as "maybe". geventhttpclient would send
a PUT or DELETE again on a new connection; through another apiserver that second copy is answered
404 or 409 and recorded as rejected, and the ledger then reports a write that happened as lost.
The server here reads each request in full and closes without answering, like that apiserver.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class ClosingServer:
    """Counts the requests it reads per method and answers none of them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.seen: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2.0)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                if not head:
                    continue
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    (
                        int(v)
                        for k, _, v in (h.partition(":") for h in lines[1:])
                        if k.strip().lower() == "content-length"
                    ),
                    0,
                )
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                self.seen[lines[0].split(" ", 1)[0]] += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def server() -> Iterator[ClosingServer]:
    srv = ClosingServer()
    yield srv
    srv.close()


def test_writes_are_sent_once_when_the_connection_closes_unanswered(server: ClosingServer) -> None:
    methods = ["DELETE", "PUT", "POST", "PATCH", "GET"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "integration" / "replay_probe.py"), server.url, *methods],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    # Every request failed without an answer: that is what makes the ledger count it as "maybe".
    assert all(v.startswith("error") for v in outcome.values()), outcome
    assert {m: server.seen[m] for m in ("DELETE", "PUT", "POST", "PATCH")} == dict.fromkeys(
        ("DELETE", "PUT", "POST", "PATCH"), 1
    ), server.seen
    # Safe methods are still replayed on a fresh connection, as Go clients replay them (bounded by
    # geventhttpclient at its pool size + 1 further sends): the restriction is to writes only.
    assert 2 <= server.seen["GET"] <= 3, server.seen
