"""etcd bootstrap of a new cluster: all members at once versus the first member a moment ahead.

A new etcd member first asks its peers whether it was bootstrapped already, with a 1 s timeout
per peer. Members started together can find each other's peer ports bound but not yet
answering, and then wait out that timeout for every peer. How often that happens depends on
how long a member takes between binding its ports and serving them, which grows with disk
latency. This script starts the etcd members of a fresh cluster (real etcd, loopback only)
both ways, alternating, and prints the time until every member reports healthy.

    .venv/bin/python benchmarks/etcd_bootstrap.py [--runs 10] [--members 3] [--io-pressure]

`--io-pressure` writes and fsyncs a scratch file next to the cluster's run directory while
measuring (bounded: at most --io-mib per round, removed afterwards), standing in for a busy
disk such as a CI machine running other suites. Prints figures; never asserts. Writes them, with
the date, machine and host load, to benchmarks/results/etcd_bootstrap.json (--json PATH to write
elsewhere).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.result_file import Figure, ResultRecorder, add_json_option, rounded  # noqa: E402
from harness import binaries  # noqa: E402
from harness import config as kqconfig  # noqa: E402
from harness.providers.local import LocalCluster  # noqa: E402

STALL_S = 1.5  # the bootstrap check's 1 s timeout per peer shows as start-up above this
IO_CHUNK = 8 * 2**20


def io_pressure(scratch: Path, stop: threading.Event, limit_mib: int) -> None:
    """Rewrite and fsync one scratch file until told to stop (each round at most limit_mib)."""
    chunk = os.urandom(IO_CHUNK)
    try:
        while not stop.is_set():
            with scratch.open("wb") as f:
                for _ in range(max(1, limit_mib * 2**20 // IO_CHUNK)):
                    if stop.is_set():
                        break
                    f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
    finally:
        scratch.unlink(missing_ok=True)


def one_start(cluster: LocalCluster, lead_first: bool, timeout: float) -> float:
    cluster.destroy()
    cluster.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _ = cluster.pki  # certificates first: only etcd's own start-up is timed
    start = time.monotonic()
    cluster.start_etcd_members(start + timeout, lead_first=lead_first)
    return time.monotonic() - start


def summary(label: str, times: list[float]) -> str:
    stalls = sum(t > STALL_S for t in times)
    return (
        f"{label:<24} median {statistics.median(times):.2f} s, mean {statistics.mean(times):.2f} s, "
        f"max {max(times):.2f} s, runs over {STALL_S:.1f} s: {stalls}/{len(times)}"
    )


def kind_figures(key: str, label: str, times: list[float]) -> dict[str, Figure]:
    if not times:
        return {}
    return {
        f"{key}_median": Figure(rounded(statistics.median(times)), "s", f"{label}: median time to all healthy"),
        f"{key}_mean": Figure(rounded(statistics.mean(times)), "s", f"{label}: mean time to all healthy"),
        f"{key}_max": Figure(rounded(max(times)), "s", f"{label}: slowest start"),
        f"{key}_stalls": Figure(sum(t > STALL_S for t in times), "starts", f"{label}: starts over {STALL_S} s"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10, help="starts of each kind (default 10)")
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--name", default="kqetcd")
    p.add_argument("--address-block", type=int, default=64, help="loopback block 127.0.N.x")
    p.add_argument("--io-pressure", action="store_true", help="write and fsync a scratch file meanwhile")
    p.add_argument("--io-mib", type=int, default=512, help="size of the scratch file (default 512 MiB)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds one start may take")
    add_json_option(p, "etcd_bootstrap")
    args = p.parse_args()
    recorder = ResultRecorder("etcd_bootstrap")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    cfg = kqconfig.build(
        {"name": args.name, "address_block": args.address_block, "control_planes": args.members, "workers": 0}
    )
    cluster = LocalCluster(cfg, binaries.locate(), detached=True)
    where = f"127.0.{args.address_block}.x"
    print(f"etcd {binaries.ETCD_VERSION}, {args.members} members on {where}, {args.runs} runs each")
    print(f"I/O pressure: {'on, ' + str(args.io_mib) + ' MiB scratch file' if args.io_pressure else 'off'}\n")
    times: dict[bool, list[float]] = {True: [], False: []}
    stop = threading.Event()
    writer = None
    if args.io_pressure:
        scratch = cfg.run_dir.parent / f".{args.name}-io-pressure"
        writer = threading.Thread(target=io_pressure, args=(scratch, stop, args.io_mib), daemon=True)
        writer.start()
    try:
        for i in range(1, args.runs + 1):
            # Alternated, so that whatever else the machine does hits both kinds alike.
            for lead_first in (False, True):
                t = one_start(cluster, lead_first, args.timeout)
                times[lead_first].append(t)
                kind = "first member ahead" if lead_first else "all at once"
                print(f"run {i:>2} {kind:<20} {t:.2f} s   (load {os.getloadavg()[0]:.1f})")
    finally:
        stop.set()
        if writer is not None:
            writer.join(timeout=30)
        cluster.destroy()
    print()
    print(summary("all members at once:", times[False]))
    print(summary("first member ahead:", times[True]))
    figures: dict[str, Figure] = {"runs": Figure(args.runs, "runs", "starts of each kind")}
    for lead_first, key, label in ((False, "all_at_once", "all members at once"), (True, "lead_first", "first ahead")):
        figures |= kind_figures(key, label, times[lead_first])
    details = {
        "etcd": binaries.ETCD_VERSION,
        "settings": {"members": args.members, "io_pressure": args.io_pressure, "io_mib": args.io_mib},
        "stall_threshold_s": STALL_S,
        "times_s": {"all_at_once": times[False], "lead_first": times[True]},
    }
    print(f"\nresults: {recorder.write(args.json, figures, details)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
