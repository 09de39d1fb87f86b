"""HTTP(S) sessions and one-shot probes against cluster components, TLS verified against the cluster's own CAs."""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

from harness.net.tls import TLSClient


def loopback_session() -> requests.Session:
    """A session that ignores proxy and CA-bundle variables from the environment.

    HTTPS_PROXY would send loopback traffic to a proxy, and REQUESTS_CA_BUNDLE would replace the
    cluster's CA; neither may decide where a probe goes or what it trusts.
    """
    session = requests.Session()
    session.trust_env = False
    return session


@dataclass(frozen=True)
class ProbeResult:
    url: str
    ok: bool
    status: int | None
    body: str
    error: str
    latency_s: float


def probe(
    url: str,
    tls: TLSClient | None,
    timeout: float = 2.0,
    anonymous: bool = False,
    session: requests.Session | None = None,
) -> ProbeResult:
    """GET a URL once; never raises for network errors, returns what happened.

    Waiters that probe again and again pass their own `session` (from loopback_session) so
    every probe after the first reuses one kept-alive connection instead of a new TLS handshake.
    """
    start = time.monotonic()
    kwargs: dict[str, object] = {"timeout": timeout}
    if url.startswith("https://"):
        if tls is None:
            raise ValueError(f"{url} needs a TLSClient")
        kwargs["verify"] = str(tls.ca)
        if not anonymous:
            kwargs["cert"] = (str(tls.cert), str(tls.key))
    try:
        if session is None:
            with loopback_session() as once:
                resp = once.get(url, **kwargs)  # type: ignore[arg-type]
        else:
            resp = session.get(url, **kwargs)  # type: ignore[arg-type]
    except requests.RequestException as exc:
        return ProbeResult(url, False, None, "", f"{type(exc).__name__}: {exc}", time.monotonic() - start)
    return ProbeResult(url, resp.status_code == 200, resp.status_code, resp.text[:2000], "", time.monotonic() - start)
