"""Sustained API requests per second the harness drives through the LB, and what it costs.

For each load shape the benchmark starts Locust traffic through the local cluster's HAProxy,
lets it warm up, then measures over a steady window:
- sustained rps: requests completed per wall second (and successes per second);
- harness CPU overhead: CPU seconds used by the Locust processes per wall second (1.0 = one core);
- steady-state failure ratio (must be 0).
Whole-machine CPU utilisation over the same window is printed for context: the cluster runs on
the same 2 cores, so load generator and apiservers compete.

    .venv/bin/python benchmarks/traffic_throughput.py --set name=ld-bench --set address_block=82

Reuses a running cluster with the same settings, otherwise starts one and stops it at the end
(--keep leaves it running). Writes the figures, with the date, machine and host load, to
benchmarks/results/traffic_throughput.json (--json PATH to write elsewhere).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.result_file import Figure, ResultRecorder, add_json_option, rounded  # noqa: E402
from harness import binaries  # noqa: E402
from harness import config as kqconfig  # noqa: E402
from harness.load.settings import TrafficSettings  # noqa: E402
from harness.load.traffic import Traffic  # noqa: E402
from harness.providers.local import LocalCluster  # noqa: E402

log = logging.getLogger("benchmarks.traffic_throughput")


@dataclass(frozen=True)
class Shape:
    name: str
    settings: TrafficSettings


@dataclass(frozen=True)
class Result:
    shape: str
    seconds: float
    rps: float
    success_rps: float
    requests: int
    failures: int
    failure_ratio: float
    harness_cpu: float  # CPU seconds per wall second, all Locust processes
    machine_cpu: float  # fraction of all cores busy, whole machine
    p50_ms: float | None
    p99_ms: float | None


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def measure(cluster: LocalCluster, shape: Shape, warmup_s: float, window_s: float) -> Result:
    with Traffic.start(cluster, shape.settings) as t:
        time.sleep(warmup_s)
        cpu0, busy0, wall0 = t.cpu_seconds(), machine_busy(), time.time()
        time.sleep(window_s)
        cpu1, busy1, wall1 = t.cpu_seconds(), machine_busy(), time.time()
    tl = t.timeline((wall0, wall1))
    t.cleanup()
    span = wall1 - wall0
    return Result(
        shape=shape.name,
        seconds=span,
        rps=tl.requests / span,
        success_rps=tl.successes / span,
        requests=tl.requests,
        failures=tl.failures,
        failure_ratio=tl.failure_ratio,
        harness_cpu=(cpu1 - cpu0) / span,
        machine_cpu=(busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
        p50_ms=tl.latency_percentile(50),
        p99_ms=tl.latency_percentile(99),
    )


def shapes(quick: bool) -> list[Shape]:
    unpaced = TrafficSettings(rate_per_user=None, watchers=1)
    out = [
        Shape("paced 10 users x 5 rps (scenario default)", TrafficSettings(users=10)),
        Shape("unpaced 8 users, 1 process", replace(unpaced, users=8)),
        Shape("unpaced 16 users, 1 process", replace(unpaced, users=16)),
        Shape("unpaced 16 users, 2 workers", replace(unpaced, users=16, workers=2, start_timeout_s=60)),
    ]
    return out[:2] if quick else out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    p.add_argument("--window", type=float, default=20.0, help="seconds measured per shape")
    p.add_argument("--quick", action="store_true", help="only the first two shapes")
    p.add_argument("--keep", action="store_true", help="leave a cluster started here running")
    add_json_option(p, "traffic_throughput")
    args = p.parse_args(argv)
    recorder = ResultRecorder("traffic_throughput", argv=[sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = kqconfig.load(None, kqconfig.parse_set(args.sets))
    cluster = LocalCluster(cfg, binaries.ensure(), detached=True)
    was_running = cluster.running()
    cluster.create()
    results = []
    try:
        for shape in shapes(args.quick):
            r = measure(cluster, shape, args.warmup, args.window)
            results.append(r)
            print(
                f"{r.shape:45s} {r.rps:7.1f} rps ({r.success_rps:7.1f} ok/s)  failures {r.failure_ratio:.4f}  "
                f"harness CPU {r.harness_cpu:4.2f} core  machine CPU {r.machine_cpu:4.0%}  "
                f"p50 {r.p50_ms or 0:5.1f} ms  p99 {r.p99_ms or 0:6.1f} ms",
                flush=True,
            )
    finally:
        if not was_running and not args.keep:
            cluster.destroy()
    best = max(results, key=lambda r: r.rps)
    print(
        f"\nsustained through the LB: {best.rps:.0f} rps ({best.shape}); harness CPU {best.harness_cpu:.2f} core "
        f"({best.harness_cpu / best.rps * 1000:.2f} ms CPU per request); steady-state failure ratio "
        f"{max(r.failure_ratio for r in results):.4f}"
    )
    details = {
        "cluster": {"name": cfg.name, "control_planes": cfg.control_planes, "workers": cfg.workers},
        "warmup_s": args.warmup,
        "window_s": args.window,
        "shapes": [asdict(r) for r in results],
    }
    print(f"results: {recorder.write(args.json, throughput_figures(results), details)}")
    return 0 if all(r.failure_ratio == 0 for r in results) else 1


def slug(shape: str) -> str:
    """'unpaced 16 users, 2 workers' -> 'unpaced_16_users_2_workers'."""
    return re.sub(r"[^a-z0-9]+", "_", shape.split("(")[0].lower()).strip("_")


def throughput_figures(results: list[Result]) -> dict[str, Figure]:
    out: dict[str, Figure] = {}
    for r in results:
        k = slug(r.shape)
        out[f"{k}_rps"] = Figure(rounded(r.rps, 1), "rps", f"{r.shape}: requests completed per second")
        out[f"{k}_failures"] = Figure(r.failures, "failures", f"{r.shape}: failed requests in the window")
        out[f"{k}_harness_cpu"] = Figure(rounded(r.harness_cpu, 3), "core", f"{r.shape}: Locust CPU per wall second")
        out[f"{k}_machine_cpu"] = Figure(rounded(r.machine_cpu * 100, 1), "%", f"{r.shape}: whole machine busy")
        for q, v in (("p50", r.p50_ms), ("p99", r.p99_ms)):
            if v is not None:
                out[f"{k}_{q}"] = Figure(rounded(v, 1), "ms", f"{r.shape}: {q} latency")
    best = max(results, key=lambda r: r.rps)
    out["best_rps"] = Figure(rounded(best.rps, 1), "rps", f"highest sustained rate: {best.shape}")
    out["best_harness_cpu"] = Figure(rounded(best.harness_cpu, 3), "core", "Locust CPU at the highest rate")
    out["best_cpu_per_request"] = Figure(
        rounded(best.harness_cpu / best.rps * 1000, 3), "ms", "Locust CPU per request at the highest rate"
    )
    out["failures"] = Figure(sum(r.failures for r in results), "failures", "failed requests, every shape")
    return out


if __name__ == "__main__":
    sys.exit(main())
