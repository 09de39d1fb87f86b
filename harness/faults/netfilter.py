"""iptables rules of one cluster, kept in a chain of its own so undo can never miss one.

All of a cluster's DROP rules live in `KQ-<cluster>`, jumped to from OUTPUT (every loopback
packet passes OUTPUT). Healing deletes a fault's own rules; tearing the cluster down flushes
and deletes the chain, so even a crashed run's rules go with one `kubequake down`.
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

    def ensure_chain(self) -> None:
        if not self._ipt("-S", self.chain, check=False):
            self._ipt("-N", self.chain)
        if not self._ipt("-C", "OUTPUT", "-j", self.chain, check=False):
            self._ipt("-I", "OUTPUT", "1", "-j", self.chain)

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

    def teardown(self) -> None:
        """Remove the chain and its jump; safe when neither exists or iptables is absent."""
        if shutil.which(self.binary) is None:
            return
        while self._ipt("-D", "OUTPUT", "-j", self.chain, check=False):
            pass
        if self._ipt("-S", self.chain, check=False):
            self._ipt("-F", self.chain, check=False)
            self._ipt("-X", self.chain, check=False)


def drop_to(address: str) -> list[str]:
    return ["-d", f"{address}/32", "-j", "DROP"]


def drop_from_cgroup_to(cgroup_path: str, address: str) -> list[str]:
    return ["-d", f"{address}/32", "-m", "cgroup", "--path", cgroup_path, "-j", "DROP"]
