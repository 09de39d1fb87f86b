"""The files a client needs to talk TLS to a cluster component."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TLSClient:
    """Files a client needs to talk TLS to a component: CA bundle plus client cert and key."""

    ca: Path
    cert: Path
    key: Path
