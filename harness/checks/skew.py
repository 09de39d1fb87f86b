"""Kubernetes' version skew policy, as a pre-upgrade gate checks it.

The rules are upstream's (kubernetes.io/releases/version-skew-policy): in an HA cluster the
kube-apiservers are within one minor version of each other; kube-controller-manager and
kube-scheduler are never newer than the oldest kube-apiserver and at most one minor older;
kubectl is within one minor version of every kube-apiserver. An upgrade that starts outside
these bounds goes through states upstream never tested, so the gate refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.verdicts import Outcome, Verdict

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")
# Minor versions of different majors are never within one of each other.
_MAJOR_WEIGHT = 10_000


class VersionError(HarnessError):
    """A component reported a version string that is not a Kubernetes version."""

    exit_code = 1


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int
    text: str = field(compare=False, default="")

    @property
    def minor_index(self) -> int:
        """A number whose differences count minor releases (majors are never within reach)."""
        return self.major * _MAJOR_WEIGHT + self.minor

    def __str__(self) -> str:
        return self.text or f"v{self.major}.{self.minor}.{self.patch}"


def parse_version(text: str) -> Version:
    """`v1.36.3`, `1.36.3-rc.0+abc`, `v1.36` -> Version; anything else raises VersionError."""
    m = _VERSION.match(text.strip())
    if m is None:
        raise VersionError(
            f"version {text!r} is not a Kubernetes version (expected vMAJOR.MINOR.PATCH, e.g. v1.36.3); "
            "check what the component's /version or kubernetes_build_info reports"
        )
    return Version(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), text.strip())


def _named(versions: Mapping[str, Version]) -> str:
    return ", ".join(f"{who} {v}" for who, v in sorted(versions.items()))


def apiserver_skew(apiservers: Mapping[str, Version]) -> Verdict:
    """All kube-apiservers within one minor version of each other."""
    name = "skew: kube-apiservers within one minor of each other"
    if not apiservers:
        return Verdict(name, None, 1, " minor", Outcome.INCONCLUSIVE, "no kube-apiserver version could be read")
    oldest = min(apiservers.items(), key=lambda kv: kv[1])
    newest = max(apiservers.items(), key=lambda kv: kv[1])
    spread = newest[1].minor_index - oldest[1].minor_index
    if spread <= 1:
        return Verdict(name, spread, 1, " minor", Outcome.PASS, f"kube-apiservers: {_named(apiservers)}")
    return Verdict(
        name,
        spread,
        1,
        " minor",
        Outcome.FAIL,
        f"kube-apiserver on {newest[0]} ({newest[1]}) is {spread} minor versions ahead of {oldest[0]} "
        f"({oldest[1]}); upgrade the older apiservers one minor at a time first",
    )


def control_plane_skew(component: str, instances: Mapping[str, Version], apiservers: Mapping[str, Version]) -> Verdict:
    """kube-controller-manager or kube-scheduler: not newer than the oldest apiserver, at most one minor older."""
    name = f"skew: {component} vs kube-apiservers"
    if not instances or not apiservers:
        missing = component if not instances else "kube-apiserver"
        return Verdict(name, None, 1, " minor", Outcome.INCONCLUSIVE, f"no {missing} version could be read")
    oldest_api = min(apiservers.items(), key=lambda kv: kv[1])
    problems: list[str] = []
    worst = 0
    for who, v in sorted(instances.items()):
        behind = oldest_api[1].minor_index - v.minor_index
        worst = max(worst, abs(behind))
        if behind < 0:
            problems.append(
                f"{component} on {who} ({v}) is newer than the oldest kube-apiserver ({oldest_api[1]} on "
                f"{oldest_api[0]}); upgrade every apiserver before it"
            )
        elif behind > 1:
            problems.append(
                f"{component} on {who} ({v}) is {behind} minor versions older than the oldest kube-apiserver "
                f"({oldest_api[1]} on {oldest_api[0]}); at most one is supported"
            )
    if problems:
        return Verdict(name, worst, 1, " minor", Outcome.FAIL, "; ".join(problems))
    return Verdict(name, worst, 1, " minor", Outcome.PASS, f"{component}: {_named(instances)}")


def kubectl_skew(kubectl: Version | None, apiservers: Mapping[str, Version]) -> Verdict:
    """kubectl within one minor version (older or newer) of every kube-apiserver."""
    name = "skew: kubectl vs kube-apiservers"
    if kubectl is None or not apiservers:
        missing = "kubectl" if kubectl is None else "kube-apiserver"
        return Verdict(name, None, 1, " minor", Outcome.INCONCLUSIVE, f"no {missing} version could be read")
    far = {who: abs(kubectl.minor_index - v.minor_index) for who, v in apiservers.items()}
    worst_node = max(far, key=lambda k: far[k])
    if far[worst_node] <= 1:
        return Verdict(name, far[worst_node], 1, " minor", Outcome.PASS, f"kubectl {kubectl}")
    return Verdict(
        name,
        far[worst_node],
        1,
        " minor",
        Outcome.FAIL,
        f"kubectl {kubectl} is {far[worst_node]} minor versions from kube-apiserver {apiservers[worst_node]} on "
        f"{worst_node}; use a kubectl within one minor of every apiserver",
    )


def skew_verdicts(
    apiservers: Mapping[str, Version],
    controller_managers: Mapping[str, Version],
    schedulers: Mapping[str, Version],
    kubectl: Version | None,
) -> list[Verdict]:
    return [
        apiserver_skew(apiservers),
        control_plane_skew("kube-controller-manager", controller_managers, apiservers),
        control_plane_skew("kube-scheduler", schedulers, apiservers),
        kubectl_skew(kubectl, apiservers),
    ]
