"""Official Kubernetes client objects built from the cluster's own TLS material."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from harness.net.tls import TLSClient

# Every API call made through these clients gets this timeout unless the caller passes its own
# `_request_timeout`; a hung apiserver must never hang the harness.
DEFAULT_TIMEOUT_S = 10.0


class _TimeoutApiClient(client.ApiClient):
    def __init__(self, configuration: client.Configuration, timeout: float) -> None:
        super().__init__(configuration)
        self._default_timeout = timeout

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = self._default_timeout
        return super().call_api(*args, **kwargs)


def api_client(url: str, tls: TLSClient, timeout: float = DEFAULT_TIMEOUT_S, retries: int = 0) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = url
    cfg.ssl_ca_cert = str(tls.ca)
    cfg.cert_file = str(tls.cert)
    cfg.key_file = str(tls.key)
    cfg.verify_ssl = True
    # urllib3's silent retries would hide exactly the failures a chaos run measures.
    cfg.retries = retries
    return _TimeoutApiClient(cfg, timeout)
