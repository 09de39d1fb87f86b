"""The file every benchmark writes: benchmarks/results/<script>.json.

README's performance figures are formatted from these files (tests/unit/test_readme_figures.py
holds them to it), so each file says what was measured and under which conditions: when (UTC),
on what machine, how busy the host was at the start and at the end, at which git revision,
with which command line, and the figures themselves as numbers with units. Everything else a
script wants to keep (every run's raw values) goes under "details".

A figure is `{"value": number, "unit": text, "what": one line}`. Units are the ones README
writes after a number: s, ms, min, KiB, MiB, GiB, x, rps, core, %, runs, starts, failures,
false alarms, scenarios, and `load` (the host's 1-minute load average).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCHMARKS_DIR = Path(__file__).resolve().parent
ROOT = BENCHMARKS_DIR.parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
GIT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    what: str


@dataclass(frozen=True)
class Machine:
    cores: int
    memory_bytes: int
    memory_gib: float
    kernel: str
    cpu_model: str
    os: str

    @classmethod
    def this(cls) -> Machine:
        mem = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return cls(
            cores=os.cpu_count() or 0,
            memory_bytes=mem,
            memory_gib=round(mem / 2**30, 1),
            kernel=platform.release(),
            cpu_model=_cpu_model(),
            os=_os_name(),
        )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


@dataclass(frozen=True)
class HostLoad:
    """The load averages of /proc/loadavg: runnable and waiting tasks over 1, 5 and 15 minutes."""

    one_min: float
    five_min: float
    fifteen_min: float

    @classmethod
    def now(cls) -> HostLoad:
        one, five, fifteen = os.getloadavg()
        return cls(round(one, 2), round(five, 2), round(fifteen, 2))


@dataclass(frozen=True)
class GitRevision:
    """The commit measured; `dirty` says the working tree differed from it (uncommitted changes)."""

    revision: str
    dirty: bool | None

    @classmethod
    def of(cls, root: Path) -> GitRevision:
        try:
            head = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_S,
                check=False,
            )
            status = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return cls("unknown", None)
        if head.returncode != 0:
            return cls("unknown", None)
        return cls(head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None)


def command_line(argv: Sequence[str]) -> str:
    """The command as typed from the repository root, e.g. `.venv/bin/python benchmarks/x.py --runs 3`."""
    return shlex.join([_from_root(sys.executable), *([_from_root(argv[0]), *argv[1:]] if argv else [])])


def _from_root(path: str) -> str:
    # abspath, not resolve: the venv's python is a symlink, and the typed name is the one to show.
    try:
        return str(Path(os.path.abspath(path)).relative_to(ROOT))
    except ValueError:
        return path


def default_path(script: str) -> Path:
    return RESULTS_DIR / f"{script}.json"


def add_json_option(parser: argparse.ArgumentParser, script: str) -> None:
    """--json PATH, defaulting to the script's committed result file."""
    parser.add_argument(
        "--json",
        type=Path,
        default=default_path(script),
        metavar="PATH",
        help=f"where to write the results (default: {default_path(script).relative_to(ROOT)})",
    )


@dataclass
class ResultRecorder:
    """Opened when a benchmark starts (date, machine, load, revision), written when it ends."""

    script: str
    argv: list[str] = field(default_factory=lambda: list(sys.argv))
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_monotonic: float = field(default_factory=time.monotonic)
    load_start: HostLoad = field(default_factory=HostLoad.now)
    machine: Machine = field(default_factory=Machine.this)
    git: GitRevision = field(default_factory=lambda: GitRevision.of(ROOT))

    def document(self, figures: Mapping[str, Figure], details: Mapping[str, Any]) -> dict[str, Any]:
        load_end = HostLoad.now()
        all_figures = {
            **{name: asdict(f) for name, f in figures.items()},
            # The host's own figures, so README can cite how busy the machine was.
            "host_load_start": asdict(Figure(self.load_start.one_min, "load", "1-minute load average at the start")),
            "host_load_end": asdict(Figure(load_end.one_min, "load", "1-minute load average at the end")),
        }
        return {
            "script": f"benchmarks/{self.script}.py",
            "date": self.started.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "duration_s": round(time.monotonic() - self.started_monotonic, 1),
            "machine": asdict(self.machine),
            "load": {"start": asdict(self.load_start), "end": asdict(load_end)},
            "git": asdict(self.git),
            "command": command_line(self.argv),
            "figures": all_figures,
            "details": details,
        }

    def write(self, path: Path, figures: Mapping[str, Figure], details: Mapping[str, Any]) -> Path:
        """Write atomically: a benchmark interrupted while writing never leaves half a file."""
        doc = self.document(figures, details)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        tmp.replace(path)
        return path


def rounded(value: float, digits: int = 4) -> float:
    """Figures keep a few more digits than README shows, never float noise."""
    return round(value, digits)
