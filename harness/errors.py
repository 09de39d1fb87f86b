"""The one error root of kubequake and its specific subclasses.

Every message names the object, the operation and the value seen, and says what to do next,
so the CLI can print it as it is and exit with a code instead of showing a traceback.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Root of every error kubequake raises on purpose."""

    exit_code = 2


class ConfigError(HarnessError):
    """A configuration file, key or value is wrong."""


class BinaryError(HarnessError):
    """A required binary is missing or could not be built."""


class ClusterError(HarnessError):
    """The cluster could not be created, reached or torn down."""


class PortInUseError(ClusterError):
    """An address and port the cluster needs is already taken."""


class ClusterRunningError(ClusterError):
    """A cluster with the same name is already running."""


class ClusterNotRunningError(ClusterError):
    """A cluster was to be attached to, but it does not run."""


class TimeoutExpired(HarnessError):
    """A wait ran out of time; the message carries the last state seen."""


class TransportError(HarnessError):
    """A command on a node could not be run."""


class FaultError(HarnessError):
    """A fault could not be applied or undone, or a guard refused it."""


class BlastRadiusError(FaultError):
    """A fault exceeds what the scenario declared it may break."""
