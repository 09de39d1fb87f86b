"""iptables rules of one cluster, kept in chains of its own so undo can never miss one.

Loopback has a catch: a connection opened by any local process leaves from 127.0.0.1, so
packets do not say which node sent them, and the return path of a connection would slip past
a rule on the destination address. Each node therefore gets a source NAT rule (nat table,
matched on the node's cgroup) that makes its connections leave from its own address, as on a
real machine. After that every packet in INPUT carries node addresses on both ends, and a
partition is two plain DROP rules per pair of nodes.

All of a cluster's DROP rules live in `KQ-<cluster>`, jumped to from OUTPUT (a black-holed
destination) and INPUT (partitions, seen after the source NAT). Healing deletes a fault's own
rules; tearing the cluster down flushes and deletes every chain, so even a crashed run's
rules go with one `kubequake down`.
"""

from __future__ import annotations

import hashlib
import logging
import shutil

from harness.errors import FaultError, TransportError
from harness.transport.base import Transport
from harness.transport.local import LocalTransport

log = logging.getLogger(__name__)

IPTABLES_TIMEOUT_S = 10.0


def chain_name(cluster: str) -> str:
    name = f"KQ-{cluster}"
    # iptables chain names are limited to 28 characters.
    if len(name) > 28:
        name = "KQ-" + cluster[:16] + "-" + hashlib.sha1(cluster.encode()).hexdigest()[:8]
    return name


class Netfilter:
    def __init__(self, cluster: str, transport: Transport | None = None) -> None:
        self.chain = chain_name(cluster)
        self.transport = transport or LocalTransport()
        self.binary = shutil.which("iptables") or "iptables"

    def _ipt(self, *args: str, check: bool = True) -> bool:
        try:
            res = self.transport.run([self.binary, "-w", "5", *args], timeout=IPTABLES_TIMEOUT_S)
        except TransportError as exc:
            raise FaultError(f"iptables is not usable ({exc}); install the iptables package and run as root") from None
        if check and not res.ok:
            raise FaultError(
                f"iptables {' '.join(args)} failed: {res.stderr.strip()}; network faults need root and iptables"
            )
        return res.ok

    def ensure_chain(self, table: str = "filter", hooks: tuple[str, ...] = ("OUTPUT", "INPUT")) -> None:
        t = ["-t", table]
        if not self._ipt(*t, "-S", self.chain, check=False):
            self._ipt(*t, "-N", self.chain)
        for hook in hooks:
            if not self._ipt(*t, "-C", hook, "-j", self.chain, check=False):
                self._ipt(*t, "-I", hook, "1", "-j", self.chain)

    def setup_node_sources(self, nodes: dict[str, tuple[str, str]]) -> None:
        """Source NAT per node: {node: (cgroup path, address)}. Replaces any earlier set."""
        self.ensure_chain("nat", ("POSTROUTING",))
        self._ipt("-t", "nat", "-F", self.chain)
        for cgroup_path, address in nodes.values():
            self._ipt(
                "-t",
                "nat",
                "-A",
                self.chain,
                "-m",
                "cgroup",
                "--path",
                cgroup_path,
                "-j",
                "SNAT",
                "--to-source",
                address,
            )

    def node_sources(self) -> list[str]:
        res = self.transport.run([self.binary, "-w", "5", "-t", "nat", "-S", self.chain], timeout=IPTABLES_TIMEOUT_S)
        return [line for line in res.stdout.splitlines() if line.startswith("-A ")] if res.ok else []

    def add(self, rule: list[str]) -> None:
        self.ensure_chain()
        self._ipt("-A", self.chain, *rule)
        log.debug("iptables +%s %s", self.chain, " ".join(rule))

    def delete(self, rule: list[str]) -> None:
        # Deleting a rule that is already gone is a healed fault, not an error.
        while self._ipt("-D", self.chain, *rule, check=False):
            pass

    def rules(self) -> list[str]:
        res = self.transport.run([self.binary, "-w", "5", "-S", self.chain], timeout=IPTABLES_TIMEOUT_S)
        if not res.ok:
            return []
        return [line for line in res.stdout.splitlines() if line.startswith("-A ")]

    def counted_rules(self) -> list[tuple[str, int]]:
        """Every rule of the chain with the packets it has matched so far."""
        res = self.transport.run([self.binary, "-w", "5", "-v", "-S", self.chain], timeout=IPTABLES_TIMEOUT_S)
        return parse_counted_rules(res.stdout) if res.ok else []

    def teardown(self) -> None:
        """Remove the chains and their jumps; safe when none exists or iptables is absent."""
        if shutil.which(self.binary) is None:
            return
        for table, hooks in (("filter", ("OUTPUT", "INPUT")), ("nat", ("POSTROUTING",))):
            t = ["-t", table]
            for hook in hooks:
                while self._ipt(*t, "-D", hook, "-j", self.chain, check=False):
                    pass
            if self._ipt(*t, "-S", self.chain, check=False):
                self._ipt(*t, "-F", self.chain, check=False)
                self._ipt(*t, "-X", self.chain, check=False)


def parse_counted_rules(text: str) -> list[tuple[str, int]]:
    """`iptables -v -S` lines ("-A CHAIN ... -c PACKETS BYTES") as (rule, packets)."""
    out = []
    for line in text.splitlines():
        if not line.startswith("-A "):
            continue
        words = line.split()
        packets = 0
        if "-c" in words:
            i = words.index("-c")
            packets = int(words[i + 1]) if i + 1 < len(words) and words[i + 1].isdigit() else 0
            words = words[:i] + words[i + 3 :]
        out.append((" ".join(words), packets))
    return out


def partition_rule_of(rule: str, address: str) -> bool:
    """Whether an `iptables -S` rule is one of drop_between's with `address` on either end."""
    words = rule.split()
    ends = {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-s", "-d")}
    return "-s" in words and "-d" in words and f"{address}/32" in ends and words[-2:] == ["-j", "DROP"]


def drop_to(address: str) -> list[str]:
    return ["-d", f"{address}/32", "-j", "DROP"]


def drop_between(source: str, destination: str) -> list[str]:
    return ["-s", f"{source}/32", "-d", f"{destination}/32", "-j", "DROP"]
