"""Run commands on this machine: the transport of the local provider's nodes."""

from __future__ import annotations

import subprocess
import time

from harness.errors import TransportError
from harness.transport.base import CommandResult


class LocalTransport:
    def run(self, argv: list[str], timeout: float) -> CommandResult:
        if not argv:
            raise TransportError("empty command: pass an argv list with the program first")
        start = time.monotonic()
        try:
            proc = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError:
            raise TransportError(f"{argv[0]!r} is not installed or not on PATH; run `make setup`") from None
        except subprocess.TimeoutExpired as exc:
            raise TransportError(f"command {' '.join(argv)!r} did not finish within {timeout:.1f}s") from exc
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
