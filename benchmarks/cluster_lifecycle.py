"""Cluster lifecycle figures: `up` to everything Ready, `down`, and the whole cluster's memory.

Measures the local HA cluster through the CLI exactly as users run it (`kubequake up`, detached,
then `kubequake down`), and next to it a single-control-plane cluster made by
`kwokctl create cluster --runtime binary` from the very same cached binaries, so the ratio says
what HA costs over one control plane rather than what two different builds cost. kwokctl's
apiserver is also configured more lightly than kubequake's (by default no admission plugins and
plain-HTTP etcd), so a third contender, kubequake itself with one control plane, gives the ratio
for the same configuration: the cost of HA alone.

Prints figures; never asserts (targets live in benchmarks/README.md, not in code):

    .venv/bin/python benchmarks/cluster_lifecycle.py [--runs 3] [--name kqbench] [--address-block 50]

Writes its figures, with the date, machine and host load, to benchmarks/results/cluster_lifecycle.json
(--json PATH to write elsewhere).

Everything binds to loopback only. kwokctl gets its own work directory, kubeconfig and config
file (bindAddress 127.0.0.1), local binary paths for every component, and its cluster is deleted
afterwards; the script refuses to run it if a dry run shows it would download anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.result_file import Figure, ResultRecorder, add_json_option, rounded  # noqa: E402
from harness import binaries  # noqa: E402
from harness import config as kqconfig  # noqa: E402

CMD_TIMEOUT_S = 300


# --- memory ------------------------------------------------------------------------------------


def proc_kib(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass
class MemorySample:
    """Memory of a set of processes while they run."""

    peak_rss_sum_kib: int = 0  # highest sum of VmRSS seen across samples
    hwm_sum_kib: int = 0  # sum of each process's own peak (VmHWM), read at the end
    last_rss_sum_kib: int = 0
    per_process_hwm_kib: dict[str, int] = field(default_factory=dict)


def sample_memory(pids: dict[str, int], seconds: float, interval: float = 0.2) -> MemorySample:
    out = MemorySample()
    deadline = time.monotonic() + seconds
    while True:
        total = sum(proc_kib(p, "VmRSS") for p in pids.values())
        out.peak_rss_sum_kib = max(out.peak_rss_sum_kib, total)
        out.last_rss_sum_kib = total
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    out.per_process_hwm_kib = {k: proc_kib(p, "VmHWM") for k, p in pids.items()}
    out.hwm_sum_kib = sum(out.per_process_hwm_kib.values())
    return out


def cpu_seconds(pids: dict[str, int]) -> float:
    """User+system CPU the processes have used so far: what `up` costs the machine in work."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids.values():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def load_average() -> float:
    return os.getloadavg()[0]


def wait_gone(pids: list[int], timeout: float) -> float | None:
    """Seconds until none of these pids runs any more (zombies count as gone), or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        alive = []
        for p in pids:
            try:
                stat = Path(f"/proc/{p}/stat").read_text()
            except OSError:
                continue
            if stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X"):
                alive.append(p)
        if not alive:
            return time.monotonic() - start
        time.sleep(0.02)
    return None


# --- the HA cluster through the CLI ------------------------------------------------------------


@dataclass
class Run:
    up_s: float | None = None
    down_s: float | None = None
    reported_ready_s: float | None = None
    cpu_at_ready_s: float | None = None  # CPU seconds all components used until everything was Ready
    harness_cpu_s: float | None = None  # CPU seconds of the `kubequake up` process itself
    load_before: float | None = None  # 1-minute load average when the run started
    memory: MemorySample | None = None
    error: str = ""
    notes: list[str] = field(default_factory=list)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def kubequake(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run the CLI; return its result, wall time and CPU time.

    The CPU time is the CLI process's own (and that of the short commands it waits for):
    components run in sessions of their own and are never waited for, so they do not count.
    """
    script = Path(sys.executable).parent / "kubequake"
    argv = [str(script)] if script.is_file() else [sys.executable, "-m", "harness.cli"]
    start, cpu = time.monotonic(), children_cpu_s()
    res = subprocess.run([*argv, *args], cwd=cwd, capture_output=True, text=True, timeout=CMD_TIMEOUT_S, check=False)
    return res, time.monotonic() - start, children_cpu_s() - cpu


def ha_run(cfg: kqconfig.ClusterConfig, settle_s: float, cwd: Path) -> Run:
    sets = ["--set", f"name={cfg.name}", "--set", f"address_block={cfg.address_block}"]
    sets += ["--set", f"control_planes={cfg.control_planes}", "--set", f"workers={cfg.workers}"]
    run = Run()
    kubequake("down", "--set", f"name={cfg.name}", cwd=cwd)  # a leftover of an interrupted run
    run.load_before = load_average()
    res, took, run.harness_cpu_s = kubequake("up", *sets, cwd=cwd)
    if res.returncode != 0:
        run.error = f"kubequake up exited {res.returncode}: {res.stderr.strip()[-800:]}"
        kubequake("down", "--set", f"name={cfg.name}", cwd=cwd)
        return run
    run.up_s = took
    m = re.search(r"ready in ([\d.]+)s", res.stdout)
    run.reported_ready_s = float(m.group(1)) if m else None
    state = json.loads((cfg.run_dir / "processes.json").read_text())["processes"]
    pids = {f"{p['node']}/{p['component']}": int(p["pid"]) for p in state}
    run.cpu_at_ready_s = cpu_seconds(pids)
    run.memory = sample_memory(pids, settle_s)
    res, run.down_s, _ = kubequake("down", "--set", f"name={cfg.name}", cwd=cwd)
    if res.returncode != 0:
        run.error = f"kubequake down exited {res.returncode}: {res.stderr.strip()[-800:]}"
    gone = wait_gone(list(pids.values()), 10)
    if gone is None or gone > 0.05:
        run.notes.append(f"processes still running after down returned (gone after {gone}s)")
    return run


# --- the single control plane by kwokctl -------------------------------------------------------


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class KwokctlRun(Run):
    create_s: float | None = None
    nodes_ready_s: float | None = None
    delete_returned_s: float | None = None
    apiserver_argv: list[str] = field(default_factory=list)


def lighter_than_kubequake(argv: list[str]) -> list[str]:
    """Where kwokctl's kube-apiserver does less start-up work than a kubequake one, from its argv."""
    flags = {name: value for name, _, value in (a.partition("=") for a in argv[1:])}
    out = []
    if flags.get("--admission-control") == "":
        out.append("no admission plugins (--admission-control=)")
    if flags.get("--etcd-servers", "").startswith("http://"):
        out.append("etcd over plain HTTP")
    if "--authorization-mode" not in flags:
        out.append("no RBAC (authorization mode left at AlwaysAllow)")
    return out


class Kwokctl:
    """kwokctl driven offline: local binaries, private work dir, kubeconfig and config, loopback only."""

    def __init__(self, kwokctl: Path, bins: binaries.BinarySet, name: str, workdir: Path) -> None:
        self.kwokctl = kwokctl
        self.bins = bins
        self.name = name
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.config = workdir / "kwokctl.yaml"
        self.env = {**os.environ, "KWOK_WORKDIR": str(workdir / "work")}
        self.env.pop("KUBECONFIG", None)

    def _write_config(self, peer_port: int) -> None:
        self.config.write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\n"
            "kind: KwokctlConfiguration\n"
            "options:\n"
            "  bindAddress: 127.0.0.1\n"
            f"  etcdPeerPort: {peer_port}\n"
            f"  cacheDir: {self.workdir / 'cache'}\n"
        )

    def _base(self) -> list[str]:
        return [str(self.kwokctl), "-c", str(self.config), "--name", self.name]

    def create_argv(self) -> list[str]:
        api, etcd, peer, kcm, sched, ctl = free_ports(6)
        self._write_config(peer)
        b = self.bins
        return [
            *self._base(),
            "create",
            "cluster",
            "--runtime",
            "binary",
            "--kubeconfig",
            str(self.kubeconfig),
            "--etcd-binary",
            str(b["etcd"]),
            "--kube-apiserver-binary",
            str(b["kube-apiserver"]),
            "--kube-controller-manager-binary",
            str(b["kube-controller-manager"]),
            "--kube-scheduler-binary",
            str(b["kube-scheduler"]),
            "--kwok-controller-binary",
            str(b["kwok"]),
            "--kube-apiserver-port",
            str(api),
            "--etcd-port",
            str(etcd),
            "--kube-controller-manager-port",
            str(kcm),
            "--kube-scheduler-port",
            str(sched),
            "--controller-port",
            str(ctl),
            "--wait",
            "120s",
        ]

    def run(self, argv: list[str], timeout: float = CMD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def offline_problem(self) -> str:
        """Why kwokctl cannot run offline here, or "" if a dry run shows only local files and loopback."""
        res = self.run([*self.create_argv(), "--dry-run"], timeout=60)
        text = res.stdout + res.stderr
        if res.returncode != 0:
            return f"`kwokctl create cluster --dry-run` exited {res.returncode}: {text.strip()[-600:]}"
        remote = [line for line in text.splitlines() if re.search(r"(Download|curl|wget|pull)\b.*https?://", line)]
        if remote:
            return "kwokctl would download: " + "; ".join(line.strip()[:200] for line in remote[:3])
        wildcard = [line for line in text.splitlines() if "0.0.0.0" in line and not line.startswith("#")]
        if wildcard:
            return "kwokctl would bind a wildcard address: " + wildcard[0][:200]
        shutil.rmtree(self.workdir / "work", ignore_errors=True)
        return ""

    def pids(self) -> dict[str, int]:
        d = self.workdir / "work" / "clusters" / self.name / "pids"
        out: dict[str, int] = {}
        for f in sorted(d.glob("*.pid")) if d.is_dir() else []:
            with contextlib.suppress(ValueError, OSError):
                out[f.stem] = int(f.read_text().strip())
        return out

    def delete(self) -> subprocess.CompletedProcess[str]:
        return self.run([*self._base(), "delete", "cluster", "--kubeconfig", str(self.kubeconfig)], timeout=120)


def kwokctl_run(k: Kwokctl, workers: int, settle_s: float) -> KwokctlRun:
    run = KwokctlRun()
    run.load_before = load_average()
    kubectl = str(k.bins["kubectl"])
    start = time.monotonic()
    res = k.run(k.create_argv())
    run.create_s = time.monotonic() - start
    try:
        if res.returncode != 0:
            run.error = f"kwokctl create cluster exited {res.returncode}: {(res.stdout + res.stderr).strip()[-800:]}"
            return run
        if workers:
            res = k.run([*k._base(), "scale", "node", "--replicas", str(workers)], timeout=120)
            if res.returncode != 0:
                run.error = f"kwokctl scale node exited {res.returncode}: {res.stderr.strip()[-400:]}"
                return run
            res = subprocess.run(
                [
                    kubectl,
                    "--kubeconfig",
                    str(k.kubeconfig),
                    "wait",
                    "--for=condition=Ready",
                    "node",
                    "--all",
                    "--timeout=120s",
                ],
                capture_output=True,
                text=True,
                timeout=150,
                check=False,
            )
            if res.returncode != 0:
                run.error = f"kwok nodes not Ready: {res.stderr.strip()[-400:]}"
                return run
        run.up_s = time.monotonic() - start
        run.cpu_at_ready_s = cpu_seconds(k.pids())
        with contextlib.suppress(OSError, KeyError):
            cmdline = Path(f"/proc/{k.pids()['kube-apiserver']}/cmdline").read_bytes()
            run.apiserver_argv = [a.decode() for a in cmdline.split(b"\0") if a]
        run.nodes_ready_s = run.up_s - run.create_s
        ready = subprocess.run(
            [kubectl, "--kubeconfig", str(k.kubeconfig), "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if ready.stdout.strip() != "ok":
            run.notes.append(f"/readyz answered {ready.stdout.strip()!r} {ready.stderr.strip()[:200]}")
        run.memory = sample_memory(k.pids(), settle_s)
    finally:
        pids = list(k.pids().values())
        start = time.monotonic()
        res = k.delete()
        run.delete_returned_s = time.monotonic() - start
        gone = wait_gone(pids, 30)
        run.down_s = None if gone is None else time.monotonic() - start
        if res.returncode != 0:
            run.notes.append(f"kwokctl delete cluster exited {res.returncode}: {res.stderr.strip()[-300:]}")
        if gone is None:
            run.notes.append(f"kwokctl's processes {pids} still ran 30 s after delete")
    return run


# --- report -------------------------------------------------------------------------------------


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt_s(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} s"


def fmt_mib(kib: int | None) -> str:
    return "n/a" if not kib else f"{kib / 1024:.0f} MiB"


def peak_kib(runs: Sequence[Run]) -> int | None:
    vals = [r.memory.hwm_sum_kib for r in runs if r.memory]
    return max(vals) if vals else None


def steady_kib(runs: Sequence[Run]) -> int | None:
    vals = [r.memory.last_rss_sum_kib for r in runs if r.memory]
    return int(statistics.median(vals)) if vals else None


def describe_cli_run(r: Run) -> str:
    return (
        f"up {fmt_s(r.up_s)} (reported ready {fmt_s(r.reported_ready_s)}), "
        f"down {fmt_s(r.down_s)}, peak {fmt_mib(r.memory.hwm_sum_kib if r.memory else None)}, "
        f"CPU to Ready {fmt_s(r.cpu_at_ready_s)} (+ CLI {fmt_s(r.harness_cpu_s)}), load before {r.load_before:.1f}"
        + (f"  ERROR {r.error}" if r.error else "")
        + "".join(f"  [{n}]" for n in r.notes)
    )


def spread(prefix: str, label: str, values: list[float | None], unit: str = "s") -> dict[str, Figure]:
    """Median, lowest and highest of the runs' values, as figures."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {}
    return {
        f"{prefix}_median": Figure(rounded(statistics.median(vals)), unit, f"{label}, median of the runs"),
        f"{prefix}_min": Figure(rounded(min(vals)), unit, f"{label}, fastest run"),
        f"{prefix}_max": Figure(rounded(max(vals)), unit, f"{label}, slowest run"),
    }


def contender_figures(prefix: str, label: str, runs: Sequence[Run]) -> dict[str, Figure]:
    out = {
        **spread(f"{prefix}_up", f"{label}: up to everything Ready", [r.up_s for r in runs]),
        **spread(f"{prefix}_down", f"{label}: down until every process is gone", [r.down_s for r in runs]),
        **spread(
            f"{prefix}_cpu_to_ready", f"{label}: CPU the components used until Ready", [r.cpu_at_ready_s for r in runs]
        ),
    }
    peak, steady = peak_kib(runs), steady_kib(runs)
    if peak:
        out[f"{prefix}_peak_memory"] = Figure(rounded(peak / 1024, 1), "MiB", f"{label}: sum of VmHWM, highest run")
    if steady:
        out[f"{prefix}_steady_memory"] = Figure(
            rounded(steady / 1024, 1), "MiB", f"{label}: sum of VmRSS after settling"
        )
    cli = median([r.harness_cpu_s for r in runs])
    if cli is not None:
        out[f"{prefix}_cli_cpu_median"] = Figure(rounded(cli), "s", f"{label}: CPU of the `kubequake up` process")
    reported = median([r.reported_ready_s for r in runs])
    if reported is not None:
        out[f"{prefix}_reported_ready_median"] = Figure(rounded(reported), "s", f"{label}: ready time the CLI reports")
    return out


def lifecycle_figures(
    runs: int, ha: Sequence[Run], single: Sequence[Run], kwokctl: Sequence[KwokctlRun]
) -> dict[str, Figure]:
    """What README may cite: medians, spreads and ratios of the runs that completed."""
    out = {"runs": Figure(runs, "runs", "runs of each contender")}
    out |= contender_figures("ha", "HA cluster", ha)
    out |= contender_figures("single", "kubequake, one control plane", single)
    out |= contender_figures("kwokctl", "kwokctl, one control plane", kwokctl)
    loads = [r.load_before for r in [*ha, *single, *kwokctl] if r.load_before is not None]
    if loads:
        out["load_before_runs_min"] = Figure(rounded(min(loads), 2), "load", "lowest 1-minute load before a run")
        out["load_before_runs_max"] = Figure(rounded(max(loads), 2), "load", "highest 1-minute load before a run")
    for other in ("single", "kwokctl"):
        for what, key, unit_key in (("up", "up_median", "up"), ("CPU to Ready", "cpu_to_ready_median", "cpu")):
            a, b = out.get(f"ha_{key}"), out.get(f"{other}_{key}")
            if a is not None and b is not None and b.value:
                out[f"ratio_{unit_key}_ha_{other}"] = Figure(
                    rounded(a.value / b.value, 3), "x", f"{what}, HA / {other}"
                )
        a, b = out.get("ha_peak_memory"), out.get(f"{other}_peak_memory")
        if a is not None and b is not None and b.value:
            out[f"ratio_memory_ha_{other}"] = Figure(rounded(a.value / b.value, 3), "x", f"peak memory, HA / {other}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--name", default="kqbench", help="cluster name for the HA cluster (kwokctl gets NAME-kwokctl)")
    p.add_argument("--address-block", type=int, default=50, help="loopback block 127.0.N.x of the HA cluster")
    p.add_argument("--control-planes", type=int, default=3)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--settle", type=float, default=10.0, help="seconds to sample memory after up")
    p.add_argument("--skip-kwokctl", action="store_true")
    p.add_argument(
        "--skip-single",
        action="store_true",
        help="skip kubequake's own single control plane (name NAME-1cp, address block + 1)",
    )
    add_json_option(p, "cluster_lifecycle")
    args = p.parse_args()
    recorder = ResultRecorder("cluster_lifecycle")

    bins = binaries.locate()  # cached binaries only: a benchmark never builds
    cfg = kqconfig.build(
        {
            "name": args.name,
            "address_block": args.address_block,
            "control_planes": args.control_planes,
            "workers": args.workers,
        }
    )
    print(f"machine: {os.cpu_count()} CPUs, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.1f} GiB")
    print(
        f"binaries (cached): kubernetes {binaries.KUBERNETES_VERSION}, etcd {binaries.ETCD_VERSION}, "
        f"kwok {binaries.KWOK_VERSION}"
    )
    single = None
    if not args.skip_single:
        single = kqconfig.build(
            {
                "name": f"{args.name}-1cp",
                "address_block": args.address_block + 1,
                "control_planes": 1,
                "workers": args.workers,
            }
        )
    print(f"HA cluster: {cfg.control_planes} control planes + LB + {cfg.workers} KWOK workers, {args.runs} runs\n")

    ha_runs: list[Run] = []
    one_runs: list[Run] = []
    kw_runs: list[KwokctlRun] = []
    kw_problem = ""
    with tempfile.TemporaryDirectory(prefix=f"{args.name}-") as tmp:
        cwd = Path(tmp) / "cwd"
        cwd.mkdir()
        kw: Kwokctl | None = None
        if not args.skip_kwokctl:
            kwokctl = bins.paths.get("kwokctl")
            if kwokctl is None:
                kw_problem = "kwokctl is not in the binary cache; build it with `kubequake binaries`"
            else:
                kw = Kwokctl(kwokctl, bins, f"{args.name}-kwokctl", Path(tmp) / "kwokctl")
                kw.workdir.mkdir()
                kw_problem = kw.offline_problem()
                if kw_problem:
                    kw = None
        for i in range(1, args.runs + 1):
            # Alternate the two so background load on the machine hits both alike.
            ha_runs.append(ha_run(cfg, args.settle, cwd))
            print(f"run {i} HA:      {describe_cli_run(ha_runs[-1])}")
            if single is not None:
                one_runs.append(ha_run(single, args.settle, cwd))
                print(f"run {i} 1 CP:    {describe_cli_run(one_runs[-1])}")
            if kw is not None:
                k = kwokctl_run(kw, cfg.workers, args.settle)
                kw_runs.append(k)
                print(
                    f"run {i} kwokctl: up {fmt_s(k.up_s)} (create {fmt_s(k.create_s)}, nodes "
                    f"{fmt_s(k.nodes_ready_s)}), delete {fmt_s(k.delete_returned_s)} (processes gone "
                    f"{fmt_s(k.down_s)}), peak {fmt_mib(k.memory.hwm_sum_kib if k.memory else None)}, "
                    f"CPU to Ready {fmt_s(k.cpu_at_ready_s)}, load before {k.load_before:.1f}"
                    + (f"  ERROR {k.error}" if k.error else "")
                    + "".join(f"  [{n}]" for n in k.notes)
                )
                if k.error and not kw_problem:
                    kw_problem = k.error

    ha_up, ha_down = median([r.up_s for r in ha_runs]), median([r.down_s for r in ha_runs])
    print("\n== summary (median of runs; memory: peak = sum of every process's VmHWM) ==")
    print(f"HA `kubequake up` to everything Ready : {fmt_s(ha_up)}   (target <= 30 s, aim 15 s)")
    print(f"HA `kubequake down`                   : {fmt_s(ha_down)}   (target <= 5 s)")
    print(
        f"HA peak memory of the whole cluster   : {fmt_mib(peak_kib(ha_runs))}   (target <= 3 GiB; "
        f"steady {fmt_mib(steady_kib(ha_runs))})"
    )
    ha_cpu = median([r.cpu_at_ready_s for r in ha_runs])
    print(f"HA CPU used by components until Ready : {fmt_s(ha_cpu)}   (less sensitive than wall time to other load)")
    print(f"HA CPU of the `kubequake up` process   : {fmt_s(median([r.harness_cpu_s for r in ha_runs]))}")
    if ha_runs and ha_runs[-1].memory:
        per = sorted(ha_runs[-1].memory.per_process_hwm_kib.items(), key=lambda kv: -kv[1])
        print("  per process (last run): " + ", ".join(f"{k} {v / 1024:.0f}" for k, v in per) + " MiB")
    one_up, one_cpu = median([r.up_s for r in one_runs]), median([r.cpu_at_ready_s for r in one_runs])
    if one_up is not None and single is not None:
        print(
            f"kubequake 1 control plane up          : {fmt_s(one_up)}   (same flags, TLS, admission and "
            f"RBAC as the HA cluster, LB and {single.workers} workers)"
        )
        print(f"kubequake 1 control plane peak memory : {fmt_mib(peak_kib(one_runs))}")
        print(f"kubequake 1 control plane CPU to Ready: {fmt_s(one_cpu)}")
        if ha_up is not None:
            print(f"ratio up   HA / same cluster, 1 CP    : {ha_up / one_up:.2f}x   (what HA alone costs)")
        if ha_cpu and one_cpu:
            print(f"ratio CPU to Ready HA / 1 CP          : {ha_cpu / one_cpu:.2f}x")
    kw_up = median([r.up_s for r in kw_runs])
    if kw_runs and kw_up is not None:
        kw_down = median([r.down_s for r in kw_runs])
        print(
            f"kwokctl single control plane up       : {fmt_s(kw_up)}   (create --wait "
            f"{fmt_s(median([r.create_s for r in kw_runs]))} + {cfg.workers} nodes Ready)"
        )
        print(
            f"kwokctl delete (until processes gone) : {fmt_s(kw_down)}   (command returns in "
            f"{fmt_s(median([r.delete_returned_s for r in kw_runs]))})"
        )
        print(
            f"kwokctl peak memory                   : {fmt_mib(peak_kib(kw_runs))}   (steady "
            f"{fmt_mib(steady_kib(kw_runs))})"
        )
        kw_cpu = median([r.cpu_at_ready_s for r in kw_runs])
        print(f"kwokctl CPU used until Ready          : {fmt_s(kw_cpu)}")
        lighter = next((lighter_than_kubequake(r.apiserver_argv) for r in kw_runs if r.apiserver_argv), [])
        if lighter:
            print(f"kwokctl's kube-apiserver runs with    : {'; '.join(lighter)}")
        if ha_up is not None:
            print(f"ratio up   HA / single                : {ha_up / kw_up:.2f}x   (target <= 1.5x)")
        if ha_cpu and kw_cpu:
            print(f"ratio CPU to Ready HA / single        : {ha_cpu / kw_cpu:.2f}x")
        ha_peak, kw_peak = peak_kib(ha_runs), peak_kib(kw_runs)
        if ha_peak and kw_peak:
            print(f"ratio RSS  HA / single                : {ha_peak / kw_peak:.2f}x")
    elif not args.skip_kwokctl:
        print(f"kwokctl comparison not measured: {kw_problem or 'no successful run'}")
    details = {
        "versions": {
            "kubernetes": binaries.KUBERNETES_VERSION,
            "etcd": binaries.ETCD_VERSION,
            "kwok": binaries.KWOK_VERSION,
        },
        "settings": {
            "runs": args.runs,
            "control_planes": cfg.control_planes,
            "workers": cfg.workers,
            "settle_s": args.settle,
        },
        "ha": [asdict(r) for r in ha_runs],
        "single_control_plane": [asdict(r) for r in one_runs],
        "kwokctl": [asdict(r) for r in kw_runs],
        "kwokctl_problem": kw_problem,
    }
    written = recorder.write(args.json, lifecycle_figures(args.runs, ha_runs, one_runs, kw_runs), details)
    print(f"\nresults: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
