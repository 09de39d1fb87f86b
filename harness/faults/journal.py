"""The fault journal: one JSON line per event, on disk the moment it happens.

A fault is written as `applied` before its effect starts and as `healed` (or `heal_failed`)
after its undo, so a crashed or interrupted run leaves exactly the list of faults still in
force; `kubequake heal` reads it and undoes them newest-first. Reports read the same file
for the fault windows shaded on the traffic timeline.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FaultRecord:
    """What was broken, where, when, and whether it was undone."""

    kind: str
    target: str
    description: str
    params: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    applied_at: float | None = None
    healed_at: float | None = None
    status: str = "pending"  # pending -> applied -> healed | heal_failed | apply_failed
    error: str = ""
    scenario: str = ""
    # Whether the fault was seen in effect after apply, and gone after heal (None: not checked),
    # with what was (not) seen: a verdict on a fault nobody saw applied is inconclusive.
    confirmed_applied: bool | None = None
    confirmed_healed: bool | None = None
    confirmation: str = ""

    @property
    def window(self) -> tuple[float, float | None]:
        return (self.applied_at or 0.0, self.healed_at)

    @property
    def duration_s(self) -> float | None:
        if self.applied_at is None or self.healed_at is None:
            return None
        return self.healed_at - self.applied_at


class Journal:
    """Append-only JSON lines; the latest line of each fault id is its state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: FaultRecord) -> None:
        line = json.dumps({**asdict(record), "logged_at": time.time()}, sort_keys=True)
        # One write of one line with O_APPEND: concurrent writers never interleave within a line.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> list[FaultRecord]:
        latest: dict[str, FaultRecord] = {}
        order: list[str] = []
        if not self.path.is_file():
            return []
        for line in self.path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash: the one before it still holds
            data.pop("logged_at", None)
            rec = FaultRecord(**data)
            if rec.id not in latest:
                order.append(rec.id)
            latest[rec.id] = rec
        return [latest[i] for i in order]

    def unhealed(self) -> list[FaultRecord]:
        """Faults in force or of unknown state, newest first: the order to undo them in."""
        return [r for r in reversed(self.records()) if r.status in ("pending", "applied", "heal_failed")]
