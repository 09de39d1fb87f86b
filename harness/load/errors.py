"""Errors of the traffic harness, under the one HarnessError root."""

from __future__ import annotations

from harness.errors import HarnessError


class LoadError(HarnessError):
    """Traffic could not be started, stopped or read, or its settings are wrong."""


class LedgerError(LoadError):
    """The acknowledged-write ledger cannot give a verdict (e.g. it recorded nothing)."""
