"""Errors of report generation, each saying what to install or run next."""

from __future__ import annotations

from harness.errors import HarnessError


class ReportError(HarnessError):
    """The HTML report could not be generated."""


class AllureNotInstalled(ReportError):
    """The Allure command line (or the Java it runs on) is missing."""
