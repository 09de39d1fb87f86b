"""The one contract every transport offers: run an argv on a node with a timeout.

Local subprocesses and SSH share it so faults and checks never care where a node lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from harness.errors import TransportError


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def check(self) -> CommandResult:
        """Return self, or raise naming the command, exit status and stderr."""
        if not self.ok:
            raise TransportError(
                f"command {' '.join(self.argv)!r} exited {self.exit_status}: {self.stderr.strip()[-500:]}"
            )
        return self


class Transport(Protocol):
    def run(self, argv: list[str], timeout: float) -> CommandResult: ...
