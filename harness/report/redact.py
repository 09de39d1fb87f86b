"""Keep key material out of reports: redact PEM blocks, and find what slipped through.

Reports are shared in retrospectives and uploaded by CI, so nothing that authenticates to a
cluster may reach them. Every text the harness attaches passes through `redact`; before HTML is
generated, `sanitize_results` rewrites any result file that still holds a PEM block (pytest's
captured output, a log line) and `scan` lets tests prove that nothing is left.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# A PEM block, also inside JSON where its newlines are the two characters "\n" (no quote or
# backslash-escaped quote ever occurs inside PEM, so the replacement keeps JSON valid).
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]{1,40})-----.*?-----END \1-----", re.DOTALL)
# A PEM header left without its end (a truncated log line): redact to the end of the base64 run.
PEM_TRUNCATED = re.compile(r"-----BEGIN ([A-Z0-9 ]{1,40})-----(?:\\n|[\sA-Za-z0-9+/=])*")
# base64 of "-----BEGIN": kubeconfigs embed credentials this way (client-key-data: LS0tLS1CRUdJTi...).
PEM_AS_BASE64 = re.compile(r"LS0tLS1CRUdJTi[A-Za-z0-9+/=]*")

SECRET_MARKERS = (b"PRIVATE KEY", b"-----BEGIN CERTIFICATE")
# Files that are text and may be rewritten in place; everything else (PNG) is only scanned.
TEXT_SUFFIXES = frozenset({".json", ".txt", ".log", ".csv", ".html", ".htm", ".xml", ".properties", ".svg", ".tsv"})


def redact(text: str) -> str:
    """The text with every PEM block (certificate or key) replaced by a short note."""
    text = PEM_BLOCK.sub(lambda m: f"[{m.group(1).lower()} redacted]", text)
    text = PEM_TRUNCATED.sub(lambda m: f"[{m.group(1).lower()} redacted]", text)
    return PEM_AS_BASE64.sub("[base64 PEM redacted]", text)


def sanitize_results(results: Path) -> list[Path]:
    """Redact PEM blocks in place in every text file under `results`; return the files changed."""
    changed: list[Path] = []
    for path in sorted(results.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES:
            continue
        raw = path.read_bytes()
        if b"-----BEGIN " not in raw and b"LS0tLS1CRUdJTi" not in raw:
            continue
        text = raw.decode("utf-8", errors="surrogateescape")
        clean = redact(text)
        if clean != text:
            path.write_bytes(clean.encode("utf-8", errors="surrogateescape"))
            changed.append(path)
    return changed


def pem_body_lines(pem: bytes, min_len: int = 40) -> list[bytes]:
    """The base64 lines of a PEM file's bodies: what a leak of it would contain.

    Short lines (the tail of a body) are left out: they are too short to be unique.
    """
    out: list[bytes] = []
    for line in pem.splitlines():
        line = line.strip()
        if line and not line.startswith(b"-----") and len(line) >= min_len and b":" not in line:
            out.append(line)
    return out


@dataclass(frozen=True)
class Finding:
    """One secret found in a report: the file, the needle and where (directly or base64-decoded)."""

    path: Path
    needle: str
    where: str

    def __str__(self) -> str:
        return f"{self.path}: {self.needle} ({self.where})"


# A data: URI or a quoted string long enough to hold a key: a single-file report inlines every
# data file and attachment as d('data/...', '<base64>').
_EMBEDDED_BASE64 = re.compile(rb"(?:base64,|[\"'])([A-Za-z0-9+/]{64,}={0,2})")


def _decoded_blobs(data: bytes) -> Iterator[bytes]:
    """Payloads embedded as base64 (a single-file report inlines every attachment that way)."""
    for m in _EMBEDDED_BASE64.finditer(data):
        blob = m.group(1)
        try:
            yield base64.b64decode(blob + b"=" * (-len(blob) % 4), validate=False)
        except (binascii.Error, ValueError):
            continue


def scan_bytes(data: bytes, needles: Iterable[bytes]) -> list[tuple[bytes, str]]:
    """Needles found in `data`, directly or inside base64 payloads embedded in it (one level)."""
    wanted = [*SECRET_MARKERS, *needles]
    hits: list[tuple[bytes, str]] = [(n, "plain") for n in wanted if n in data]
    for blob in _decoded_blobs(data):
        hits += [(n, "inside a base64 payload") for n in wanted if n in blob]
    return hits


def scan(paths: Iterable[Path], needles: Iterable[bytes] = ()) -> list[Finding]:
    """Every occurrence of a secret marker or of a given needle in the files under `paths`."""
    wanted = list(needles)
    findings: list[Finding] = []
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            for needle, where in scan_bytes(path.read_bytes(), wanted):
                shown = needle.decode(errors="replace")
                findings.append(Finding(path, shown if len(shown) <= 24 else shown[:20] + "...", where))
    return findings
