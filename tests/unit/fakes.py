"""Fakes shared by the unit tests of pure logic (never used where cluster behaviour is claimed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.providers.base import Capability, UnsupportedCapability


@dataclass
class FakeFault:
    name: str
    log: list[str]
    members: set[str] = field(default_factory=set)
    fail_apply: bool = False
    fail_heal: bool = False
    unsupported: bool = False
    unseen: str = ""
    kind: ClassVar[str] = "fake"

    @property
    def target(self) -> str:
        return self.name

    def describe(self) -> str:
        return f"fake {self.name}"

    def params(self) -> dict[str, Any]:
        return {"name": self.name}

    def impaired_etcd_members(self) -> set[str]:
        return self.members

    def check_supported(self) -> None:
        if self.unsupported:
            raise UnsupportedCapability("fake", Capability.POWER_OFF, self.describe())

    def confirm_applied(self, timeout: float) -> str:
        return self.unseen

    def confirm_healed(self, timeout: float) -> str:
        return ""

    def apply(self) -> None:
        self.log.append(f"apply {self.name}")
        if self.fail_apply:
            raise RuntimeError("half applied")

    def heal(self) -> None:
        self.log.append(f"heal {self.name}")
        if self.fail_heal:
            raise RuntimeError("stuck")
