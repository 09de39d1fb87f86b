"""Each local node is a cgroup (v2): the kernel's notion of "these processes are one machine".

On loopback every connection leaves from 127.0.0.1 whatever node opened it, so a packet's
source address cannot tell nodes apart. The cgroup of the sending process can: iptables'
`-m cgroup --path` matches it, which is what lets a partition cut cp1 off from cp2 while both
share one network stack. Without a writable cgroup v2 hierarchy the cluster still runs, but
partition faults are refused with a message saying why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT_NAME = "kubequake"


def cgroup2_mount() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup or /sys/fs/cgroup/unified)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "cgroup2":
                return Path(parts[1])
    return None


@dataclass(frozen=True)
class NodeCgroup:
    mount: Path
    cluster: str
    node: str

    @property
    def relpath(self) -> str:
        """The path iptables' cgroup match expects: relative to the v2 root."""
        return f"{ROOT_NAME}/{self.cluster}/{self.node}"

    @property
    def path(self) -> Path:
        return self.mount / self.relpath

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []


def node_cgroup(cluster: str, node: str) -> NodeCgroup | None:
    """The node's cgroup if this machine lets us create one, else None."""
    mount = cgroup2_mount()
    if mount is None or not os.access(mount, os.W_OK):
        return None
    cg = NodeCgroup(mount, cluster, node)
    try:
        cg.create()
    except OSError as exc:
        log.warning("cannot create cgroup %s (%s); partition faults will be unavailable", cg.path, exc)
        return None
    return cg


def join_cgroup(procs_file: str) -> None:
    """Run in a child between fork and exec: move itself into the node's cgroup."""
    with open(procs_file, "w") as fh:
        fh.write("0")  # "0" means the writing process itself


def remove_cluster_cgroups(cluster: str, timeout: float = 5.0) -> None:
    """Remove the cluster's cgroups; they are empty once its processes are gone."""
    mount = cgroup2_mount()
    if mount is None:
        return
    base = mount / ROOT_NAME / cluster
    if not base.is_dir():
        return
    deadline = time.monotonic() + timeout
    for child in sorted(base.iterdir()):
        if child.is_dir():
            while True:
                try:
                    child.rmdir()
                    break
                except OSError:
                    # A process that was just killed leaves its cgroup a moment later.
                    if time.monotonic() > deadline:
                        log.warning("cgroup %s still busy; left in place", child)
                        break
                    time.sleep(0.05)
    with contextlib.suppress(OSError):
        base.rmdir()
    with contextlib.suppress(OSError):
        (mount / ROOT_NAME).rmdir()
