"""Progress events of a pytest run as JSON lines, for a live display in another process.

`kubequake`'s pytest hooks write one line per event (session start with the number of tests,
test start, each step, test result with its verdicts, session end) to the file named by
--kq-progress; the demo tails it to show where a long run is and to print the verdict table at
the end without parsing pytest's output.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Event:
    kind: str  # session | test | step | result | finish
    data: dict[str, Any]
    t: float

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


class ProgressWriter:
    """Appends events; each write is one O_APPEND line, so a reader never sees half a line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, kind: str, **data: Any) -> None:
        line = json.dumps({"event": kind, "t": time.time(), **data}, default=str) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@dataclass
class ProgressReader:
    """Reads the events appended since the last call (a line still being written waits)."""

    path: Path
    _offset: int = 0
    _partial: bytes = field(default=b"", repr=False)

    def poll(self) -> Iterator[Event]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            kind = str(obj.pop("event", "?"))
            t = float(obj.pop("t", 0.0))
            yield Event(kind, obj, t)
