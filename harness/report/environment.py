"""What Allure shows around the results: environment, categories, executor, and history.

- environment.properties: the versions and topology a run measured, so a retrospective knows
  which Kubernetes, etcd, HAProxy and KWOK, which provider and timings, on which machine.
- categories.json: failures grouped by what went wrong, matched against the harness's own
  messages (verdict lines, HarnessError texts), so "data lost" never hides among timeouts.
- executor.json: who ran it and the build order that Allure's trend charts use.
- history: the previous report's history/ copied into the new results, so trends show.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.providers.base import Capability

if TYPE_CHECKING:
    from harness.providers.base import Cluster

log = logging.getLogger(__name__)

ENVIRONMENT_FILE = "environment.properties"
CATEGORIES_FILE = "categories.json"
EXECUTOR_FILE = "executor.json"
HISTORY_DIR = "history"


# -- environment -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportEnvironment:
    """The facts of one run, in the order the report lists them."""

    kubernetes: str = "unknown"
    etcd: str = "unknown"
    haproxy: str = "unknown"
    kwok: str = "unknown"
    provider: str = "unknown"
    topology: str = "unknown"
    machine: str = field(default_factory=lambda: machine_summary())
    extra: Mapping[str, str] = field(default_factory=dict)

    def properties(self) -> dict[str, str]:
        out = {
            "Kubernetes": self.kubernetes,
            "etcd": self.etcd,
            "HAProxy": self.haproxy,
            "KWOK": self.kwok,
            "Provider": self.provider,
            "Topology": self.topology,
            "Machine": self.machine,
            "Python": platform.python_version(),
        }
        out.update(self.extra)
        return out


def machine_summary() -> str:
    """OS, kernel, architecture, cores and memory: enough to compare two runs' timings fairly."""
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB"
                break
    except (OSError, ValueError, IndexError):
        pass
    return f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count() or '?'} cores{mem}"


def from_cluster(cluster: Cluster, versions: Mapping[str, str] | None = None) -> ReportEnvironment:
    """The environment of any provider's cluster: versions as the cluster reports them, its shape, its settings.

    `versions` defaults to what harness.status reads (the pinned builds where kubequake runs the
    components, the API's /version elsewhere). The timings are the ones the cluster is configured
    (or, for a cluster kubequake did not make, declared) with.
    """
    if versions is None:
        from harness.status import component_versions

        versions = component_versions(cluster)
    cfg = cluster.cfg
    e, le, lb = cfg.etcd, cfg.leader_election, cfg.load_balancer
    workers = len(cluster.worker_names()) if Capability.WORKER_READINESS in cluster.capabilities else 0
    topology = (
        f"{len(cluster.control_planes())} control planes (stacked etcd), {workers} workers, "
        f"API through the load balancer at {cluster.lb_url()}"
    )
    checks = "no health checks"
    if lb.health_checks:
        checks = f"check inter {lb.check_interval_ms}ms fall {lb.fall} rise {lb.rise}"
    extra = {
        "Cluster": cfg.name,
        "etcd timings": f"heartbeat {e.heartbeat_ms}ms, election timeout {e.election_timeout_ms}ms",
        "Leader election": (
            f"lease {le.lease_duration_s}s, renew deadline {le.renew_deadline_s}s, retry {le.retry_period_s}s"
            if le.enabled
            else "disabled"
        ),
        "Load balancer": f"{checks}, retries {lb.retries}, redispatch {'on' if lb.redispatch else 'off'}",
        "apiserver etcd servers": cfg.apiserver.etcd_servers,
    }
    return ReportEnvironment(
        kubernetes=versions.get("kubernetes") or "unknown",
        etcd=versions.get("etcd") or "unknown",
        haproxy=versions.get("haproxy") or "unknown",
        kwok=versions.get("kwok") or "unknown",
        provider=cluster.name,
        topology=topology,
        extra=extra,
    )


def _escape(text: str, key: bool) -> str:
    """Java .properties escaping (Allure reads the file with java.util.Properties)."""
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch in "=:#!" or (ch == " " and (key or i == 0)):
            out.append("\\" + ch)
        elif ord(ch) > 0x7E or ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else ch)
        else:
            out.append(ch)
    return "".join(out)


def render_properties(props: Mapping[str, str]) -> str:
    return "".join(f"{_escape(k, key=True)}={_escape(v, key=False)}\n" for k, v in props.items())


def parse_properties(text: str) -> dict[str, str]:
    """The subset of .properties that render_properties writes (for tests and merging)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "!")):
            continue
        key_chars: list[str] = []
        i = 0
        while i < len(line):
            ch = line[i]
            if ch == "\\" and i + 1 < len(line):
                key_chars.append(line[i : i + 2])
                i += 2
                continue
            if ch in "=:":
                break
            key_chars.append(ch)
            i += 1
        out[_unescape("".join(key_chars))] = _unescape(line[i + 1 :])
    return out


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and i + 5 < len(text) + 1:
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def write_environment(results: Path, env: ReportEnvironment) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    path = results / ENVIRONMENT_FILE
    path.write_text(render_properties(env.properties()))
    return path


# -- categories ------------------------------------------------------------------------------
# Allure matches each regex against a failure's whole message (Java `matches`), so every pattern
# is (?s).*...*; the first category that matches wins, hence the order: the worst news first.
# Every pattern quotes the harness's own wording: verdict lines (harness.verdicts,
# harness.load.slo, the scenarios), status problems (harness.status) and HarnessError texts.
CATEGORIES: list[dict[str, Any]] = [
    {
        "name": "data lost",
        "description": "An acknowledged write is missing (or a deleted object came back): the one verdict "
        "that must never fail.",
        "matchedStatuses": ["failed", "broken"],
        "messageRegex": r"(?s).*(FAIL no acknowledged write lost|acknowledged writes? lost|lost: \[['\"]"
        r"|\b[1-9][0-9]* lost, |\bLOST |\bRESURRECTED ).*",
    },
    {
        "name": "inconclusive",
        "description": "A measurement could not be made: no samples, probes failing before the fault, too "
        "little baseline traffic, a fault nobody saw applied. Neither a pass nor the cluster's failure: "
        "the message says what was missing.",
        "matchedStatuses": ["broken"],
        "messageRegex": r"(?s).*\binconclusive: .*",
    },
    {
        "name": "harness or environment error",
        "description": "The harness could not measure: the cluster was not healthy before the fault, a "
        "component or binary was missing, a guard refused a fault. Fix the environment, not the cluster.",
        "matchedStatuses": ["broken", "failed", "skipped"],
        "messageRegex": r"(?s).*(not in steady state before|could not bring up the cluster|could not start traffic"
        r"|\b(harness\.[a-z_.]*\.)?(HarnessError|ConfigError|BinaryError|ClusterError|PortInUseError"
        r"|ClusterRunningError|TransportError|FaultError|BlastRadiusError|LoadError|LedgerError|ReportError"
        r"|AllureNotInstalled)\b|measurement would be meaningless).*",
    },
    {
        "name": "quorum lost",
        "description": "etcd lost its majority (or never regained it): writes cannot be served.",
        "matchedStatuses": ["failed", "broken"],
        "messageRegex": r"(?s).*(etcd has no quorum|etcd has no leader|FAIL quorum regained|no etcd leader"
        r"|a new etcd leader not reached).*",
    },
    {
        "name": "SLO missed",
        "description": "Recovery happened, but slower than the user's SLO (or never within the observation); "
        "when the configuration itself predicts the miss, the message names the setting.",
        "matchedStatuses": ["failed", "broken"],
        "messageRegex": r"(?s).*(over the [0-9.]+[a-z]* SLO|exceeds SLO|never happened within the observation"
        r"|: never \().*",
    },
    {
        "name": "did not recover",
        "description": "After healing, the cluster stayed degraded (a component, member, lease or worker did "
        "not come back), or a state it should reach was not reached in time.",
        "matchedStatuses": ["failed", "broken"],
        "messageRegex": r"(?s).*(did not return to steady state|not reached within).*",
    },
    {
        "name": "other verdict failed",
        "description": "A scenario's check failed; the message lists each failed verdict.",
        "matchedStatuses": ["failed"],
        "messageRegex": r"(?s).*verdict\(s\) failed.*",
    },
]


def write_categories(results: Path) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    path = results / CATEGORIES_FILE
    path.write_text(json.dumps(CATEGORIES, indent=2))
    return path


def categorize(message: str, status: str = "failed") -> str | None:
    """The category Allure will put a failure in (first match wins), for tests and terminal output."""
    import re

    for cat in CATEGORIES:
        if status in cat["matchedStatuses"] and re.fullmatch(cat["messageRegex"], message):
            return str(cat["name"])
    return None


# -- executor and history --------------------------------------------------------------------
def previous_build_order(report: Path) -> int:
    """The highest build order in the previous report's trend (0 if there is none)."""
    trend = report / HISTORY_DIR / "history-trend.json"
    try:
        items = json.loads(trend.read_text())
    except (OSError, ValueError):
        return 0
    orders = [i.get("buildOrder") for i in items if isinstance(i, dict)]
    return max((o for o in orders if isinstance(o, int)), default=0)


def executor_info(build_order: int, report_url: str = "") -> dict[str, Any]:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return {
        "name": "kubequake" + (" (CI)" if ci else f" on {socket.gethostname()}"),
        "type": "kubequake",
        "buildName": f"kubequake run #{build_order} ({stamp})",
        "buildOrder": build_order,
        "reportName": "kubequake resilience report",
        "reportUrl": report_url,
    }


def write_executor(results: Path, info: Mapping[str, Any]) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    path = results / EXECUTOR_FILE
    path.write_text(json.dumps(dict(info), indent=2))
    return path


def carry_history(previous_report: Path, results: Path) -> int:
    """Copy the previous report's history/ into the results; return how many files were copied.

    Allure reads <results>/history/ to draw trends and to mark flaky and newly failed tests;
    without it every report starts from zero.
    """
    src = previous_report / HISTORY_DIR
    if not src.is_dir():
        return 0
    dst = results / HISTORY_DIR
    dst.mkdir(parents=True, exist_ok=True)
    copied = 0
    for f in sorted(src.glob("*.json")):
        shutil.copy2(f, dst / f.name)
        copied += 1
    log.debug("carried %d history files from %s into %s", copied, src, dst)
    return copied
