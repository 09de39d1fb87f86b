"""A small typed HTTPS client for the Kubernetes API: one endpoint, one client identity, JSON in and out.

Plain `requests` with the cluster CA and a client certificate, a timeout on every call and no
retries, so it behaves the same in the pytest process and inside a gevent-patched Locust
process. It also spares callers on `kubequake up`'s path the kubernetes client's import, which
costs about a CPU second while the apiservers are starting on the same cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import requests

from harness.net.tls import TLSClient


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: dict[str, Any]
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class ApiHttp:
    """HTTPS to one API endpoint with one client identity; TLS always verified."""

    def __init__(self, url: str, tls: TLSClient, timeout: float = 10.0, connect_timeout: float = 3.0) -> None:
        self.url = url.rstrip("/")
        self.tls = tls
        self.timeout = (connect_timeout, timeout)
        self._session = requests.Session()
        # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE would otherwise replace the cluster CA, and proxy
        # variables could route the API's loopback address through a proxy.
        self._session.trust_env = False
        self._verify = str(tls.ca)
        self._cert = (str(tls.cert), str(tls.key))
        # Never retry silently: a retried request hides the failure a chaos run is measuring.
        self._session.mount("https://", requests.adapters.HTTPAdapter(max_retries=0))

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> ApiResponse:
        resp = self._session.request(
            method,
            f"{self.url}{path}",
            json=body,
            params=params,
            timeout=self.timeout,
            headers={"Accept": "application/json"},
            verify=self._verify,
            cert=self._cert,
        )
        try:
            parsed = resp.json() if resp.content else {}
        except ValueError:
            parsed = {}
        return ApiResponse(resp.status_code, parsed if isinstance(parsed, dict) else {}, resp.text[:2000])
