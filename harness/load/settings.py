"""Traffic settings: one typed value, validated before any load starts, rendered as Locust argv.

The same knobs exist as `--kq-*` options of the locustfile, so a run started by the harness and a
run started by a person on the command line are the same run. Standard library only (the
locustfile imports this module).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

from harness.load.errors import LoadError

# Kubernetes namespace names are DNS-1123 labels.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class TrafficSettings:
    """How much traffic, of which kind, for how long at most.

    Users are split between readers and writers by weight; `watchers` watch users come on top of
    that split (Locust's fixed_count), so `users` must leave room for them.
    """

    users: int = 6
    # Users started per second while ramping up.
    spawn_rate: float = 50.0
    # Requests per second each reader/writer aims for; None runs each user as fast as it can
    # (benchmarks). A fixed rate is what makes "a second with no successes" mean unavailability.
    rate_per_user: float | None = 5.0
    reader_weight: float = 3.0
    writer_weight: float = 1.0
    watchers: int = 1
    # Live ConfigMaps each writer keeps; it creates until it has this many, then updates/deletes.
    objects_per_writer: int = 8
    request_timeout_s: float = 10.0
    connect_timeout_s: float = 3.0
    # Server-side timeoutSeconds of each watch: a watch ends normally this often and restarts.
    watch_timeout_s: int = 30
    # Hard bounds: Locust quits at whichever comes first, and the harness kills it if it does not.
    max_duration_s: float = 900.0
    max_requests: int = 5_000_000
    # 0: one Locust process. N > 0: Locust's distributed mode, one master and N worker processes.
    workers: int = 0
    # Empty: a fresh namespace per run, kq-load-<id>.
    namespace: str = ""
    # How long start() waits for the first successful request, stop() for a graceful exit.
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 15.0

    def validate(self) -> TrafficSettings:
        """Return self, or raise LoadError naming the first bad field, its value and the rule."""

        def bad(name: str, rule: str) -> LoadError:
            return LoadError(f"TrafficSettings.{name}={getattr(self, name)!r}: {rule}; fix the value and retry")

        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise bad(f.name, "must be a finite number")
        if self.users < 1:
            raise bad("users", "must be at least 1 (no users means no traffic and no verdict)")
        if self.spawn_rate <= 0:
            raise bad("spawn_rate", "must be > 0 users per second")
        if self.rate_per_user is not None and self.rate_per_user <= 0:
            raise bad("rate_per_user", "must be > 0 requests per second per user, or None for unpaced")
        if self.reader_weight < 0 or self.writer_weight < 0:
            name = "reader_weight" if self.reader_weight < 0 else "writer_weight"
            raise bad(name, "must be >= 0")
        if self.watchers < 0:
            raise bad("watchers", "must be >= 0")
        weighted = self.reader_weight + self.writer_weight
        if weighted == 0 and self.watchers == 0:
            raise bad("reader_weight", "readers, writers and watchers are all zero: nothing would run")
        if weighted > 0 and self.users <= self.watchers:
            raise bad("users", f"must exceed watchers={self.watchers} to leave room for readers and writers")
        if weighted == 0 and self.users < self.watchers:
            raise bad("users", f"must be at least watchers={self.watchers}")
        if self.objects_per_writer < 1:
            raise bad("objects_per_writer", "must be at least 1")
        for name in ("request_timeout_s", "connect_timeout_s", "max_duration_s", "start_timeout_s", "stop_timeout_s"):
            if getattr(self, name) <= 0:
                raise bad(name, "must be > 0 seconds")
        if self.watch_timeout_s < 1:
            raise bad("watch_timeout_s", "must be at least 1 second")
        if self.max_requests < 1:
            raise bad("max_requests", "must be at least 1")
        if self.workers < 0:
            raise bad("workers", "must be >= 0 (0 runs one Locust process)")
        if self.namespace and not _NAMESPACE.match(self.namespace):
            raise bad("namespace", "must be a DNS-1123 label (lowercase letters, digits, '-')")
        return self

    def locust_options(self, *, records_dir: Path, namespace: str, run_tag: str) -> list[str]:
        """The locustfile's own --kq-* options for these settings (TLS and host come separately)."""
        return [
            f"--kq-namespace={namespace}",
            f"--kq-records-dir={records_dir}",
            f"--kq-run-tag={run_tag}",
            f"--kq-rate-per-user={self.rate_per_user or 0}",
            f"--kq-reader-weight={self.reader_weight}",
            f"--kq-writer-weight={self.writer_weight}",
            f"--kq-watchers={self.watchers}",
            f"--kq-objects-per-writer={self.objects_per_writer}",
            f"--kq-request-timeout={self.request_timeout_s}",
            f"--kq-connect-timeout={self.connect_timeout_s}",
            f"--kq-watch-timeout={self.watch_timeout_s}",
            f"--kq-max-requests={self.max_requests}",
        ]
