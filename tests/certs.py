"""Certificates no cluster CA ever signed, for tests that need a stranger or a throwaway CA."""

from __future__ import annotations

from pathlib import Path

from harness.pki import CertPair, create_ca


def self_signed_ca(directory: Path, cn: str) -> tuple[Path, Path]:
    """Write `<cn>.crt` and `<cn>.key` (0600) into `directory`: a self-signed CA valid for a day."""
    pair = CertPair(directory / f"{cn}.crt", directory / f"{cn}.key")
    create_ca(pair, cn, validity_days=1)
    return pair.cert, pair.key
