"""An `existing`-provider inventory that describes a running local cluster.

With it the very suites users run against staging clusters run, over real SSH, against the
local cluster: the existing provider's wrong-cluster checks, its command-driven components
(`kubequake ctl` on the node), power commands and the TLS it reads from a kubeconfig are all
exercised against real components. Every node is the SSH host given (the machine itself);
each node's own address is what the API and the checks see.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import ClusterConfig
from harness.providers.base import Component, Role
from harness.providers.local import KCM_PORT, SCHEDULER_PORT, LocalCluster
from harness.spawn import kubequake_command

# The settings an existing cluster's inventory may carry (see existing.py's [settings]).
SETTINGS_SECTIONS = ("etcd", "leader_election", "load_balancer", "apiserver")


@dataclass(frozen=True)
class SSHAccess:
    host: str = "127.0.0.1"
    port: int = 22
    user: str = "root"
    key: Path | None = None
    known_hosts: Path | None = None


def _ctl(cfg: ClusterConfig, *args: str) -> list[str]:
    # run_root explicitly: an SSH session does not inherit this process's environment.
    return [*kubequake_command(), "ctl", "--set", f"name={cfg.name}", "--set", f"run_root={cfg.run_dir.parent}", *args]


def inventory_for(cluster: LocalCluster, ssh: SSHAccess, *, allow_disruptive: bool = False) -> dict[str, Any]:
    """The inventory as data (see harness/providers/real-clusters.md for each key)."""
    cfg = cluster.cfg
    p = cluster.pki
    commands = {
        action: _ctl(cfg, "{node}", action, "{component}")
        for action in ("start", "stop", "kill", "freeze", "thaw", "running", "ready")
    }
    commands["partition"] = _ctl(cfg, "{node}", "partition", "--peers", "{peers}", "{one_way_flag}")
    commands["heal_partition"] = _ctl(cfg, "{node}", "heal-partition", "--peers", "{peers}")
    commands["partition_drops"] = _ctl(cfg, "{node}", "partition-drops")
    ssh_table: dict[str, Any] = {"user": ssh.user, "port": ssh.port, "sudo": False}
    if ssh.key is not None:
        ssh_table["key"] = str(ssh.key)
    if ssh.known_hosts is not None:
        ssh_table["known_hosts"] = str(ssh.known_hosts)
    else:
        ssh_table["host_key_checking"] = False
    nodes = []
    for n in cluster.nodes():
        if n.role is Role.WORKERS:
            continue  # KWOK's simulated workers are data in the API, not machines
        comps = [c.value for c in n.components() if c is not Component.KWOK]
        nodes.append(
            {
                "name": n.name,
                "role": "load-balancer" if n.role is Role.LOAD_BALANCER else "control-plane",
                "host": ssh.host,
                "address": n.address,
                "runs_as": "command",
                "components": comps,
                "power": {
                    "off": _ctl(cfg, n.name, "power-off", "--blackhole"),
                    "on": _ctl(cfg, n.name, "power-on"),
                    "timeout_s": 120,
                },
            }
        )
    return {
        "cluster": cfg.name,
        "kubeconfig": str(cluster.kubeconfig()),
        "allow_disruptive": allow_disruptive,
        "ssh": ssh_table,
        "commands": commands,
        "etcd": {
            "client_port": cfg.etcd.client_port,
            "ca": str(p.etcd_ca.cert),
            "cert": str(p.etcd_client.cert),
            "key": str(p.etcd_client.key),
        },
        "api": {"apiserver_port": cfg.apiserver.port},
        "load_balancer": {"stats_url": f"http://{{address}}:{cfg.load_balancer.stats_port}/stats;csv"},
        "metrics": {
            "kube-controller-manager": f"https://{{address}}:{KCM_PORT}/metrics",
            "kube-scheduler": f"https://{{address}}:{SCHEDULER_PORT}/metrics",
        },
        # The budgets are the local cluster's own, so verdicts compare like with like.
        "settings": {k: v for k, v in cfg.to_dict().items() if k in SETTINGS_SECTIONS},
        "nodes": nodes,
    }


# -- TOML ----------------------------------------------------------------------------------------
def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, Sequence):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def _table(lines: list[str], name: str, data: Mapping[str, Any], array: bool = False) -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    if name:
        lines.append("")
        lines.append(f"[[{name}]]" if array else f"[{name}]")
    for k, v in scalars.items():
        lines.append(f"{json.dumps(k) if not k.replace('_', '').isalnum() else k} = {_value(v)}")
    for k, v in tables.items():
        _table(lines, f"{name}.{k}" if name else k, v)


def to_toml(inv: Mapping[str, Any]) -> str:
    lines = ["# kubequake inventory of a local cluster, for the existing provider (see real-clusters.md)"]
    top = {k: v for k, v in inv.items() if k != "nodes"}
    _table(lines, "", top)
    for node in inv.get("nodes", []):
        _table(lines, "nodes", node, array=True)
    return "\n".join(lines) + "\n"
