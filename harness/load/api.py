"""What traffic asks of the Kubernetes API: preflight, the traffic namespace, ledger reads.

Built on harness.net.api's client, so it behaves the same in the pytest process and inside a
gevent-patched Locust process (which uses it to set up the namespace when run standalone).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import requests

from harness.load.errors import LoadError
from harness.net.api import ApiHttp, ApiResponse
from harness.net.tls import TLSClient

log = logging.getLogger(__name__)

TRAFFIC_LABEL = "kubequake.io/traffic"
CREATED_BY_LABEL = "kubequake.io/created-by"
CONTENT_KEY = "content"
SEED_CONFIGMAPS = ("kq-seed-0", "kq-seed-1", "kq-seed-2")
SEED_DEPLOYMENT = "kq-seed"
MAX_LIST_PAGES = 1000


@dataclass(frozen=True)
class StoredObject:
    """A ConfigMap as read back: the ledger's content key and its resourceVersion."""

    name: str
    content: str | None
    resource_version: str


class TrafficApi(ApiHttp):
    """The API client with what traffic needs: its namespace, seed objects and the ledger's reads."""

    # -- the traffic namespace ----------------------------------------------------------------
    def ensure_namespace(self, namespace: str, run_tag: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {CREATED_BY_LABEL: "kubequake-traffic", TRAFFIC_LABEL: run_tag}},
        }
        r = self.request("POST", "/api/v1/namespaces", body)
        if not (r.ok or r.status == 409):
            raise LoadError(f"creating namespace {namespace} through {self.url} failed: HTTP {r.status} {r.text[:300]}")

    def ensure_seed(self, namespace: str, run_tag: str, deployment_replicas: int = 2) -> None:
        """Objects for readers to get and list, so reads hit real data from the first second."""
        labels = {TRAFFIC_LABEL: run_tag, "app": SEED_DEPLOYMENT}
        for name in SEED_CONFIGMAPS:
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "labels": labels},
                "data": {CONTENT_KEY: f"seed {name}"},
            }
            r = self.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body)
            if not (r.ok or r.status == 409):
                raise LoadError(f"creating seed ConfigMap {namespace}/{name} failed: HTTP {r.status} {r.text[:300]}")
        dep = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": SEED_DEPLOYMENT, "labels": labels},
            "spec": {
                "replicas": deployment_replicas,
                "selector": {"matchLabels": {"app": SEED_DEPLOYMENT}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
                },
            },
        }
        r = self.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", dep)
        if not (r.ok or r.status == 409):
            raise LoadError(
                f"creating seed Deployment {namespace}/{SEED_DEPLOYMENT} failed: HTTP {r.status} {r.text[:300]}"
            )

    def delete_namespace(self, namespace: str) -> None:
        r = self.request("DELETE", f"/api/v1/namespaces/{namespace}")
        if not (r.ok or r.status == 404):
            raise LoadError(f"deleting namespace {namespace} failed: HTTP {r.status} {r.text[:300]}")

    # -- reads for the ledger (ObjectReader) -------------------------------------------------------
    def list_configmaps(self, namespace: str) -> dict[str, StoredObject]:
        out: dict[str, StoredObject] = {}
        token = ""
        for _ in range(MAX_LIST_PAGES):
            params = {"limit": "500"}
            if token:
                params["continue"] = token
            r = self.request("GET", f"/api/v1/namespaces/{namespace}/configmaps", params=params)
            if not r.ok:
                raise LoadError(f"listing ConfigMaps in {namespace} failed: HTTP {r.status} {r.text[:300]}")
            for item in r.body.get("items") or []:
                obj = _stored(item)
                out[obj.name] = obj
            token = str((r.body.get("metadata") or {}).get("continue") or "")
            if not token:
                return out
        raise LoadError(f"listing ConfigMaps in {namespace} did not finish within {MAX_LIST_PAGES} pages")

    def get_configmap(self, namespace: str, name: str) -> StoredObject | None:
        r = self.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        if r.status == 404:
            return None
        if not r.ok:
            raise LoadError(f"reading ConfigMap {namespace}/{name} failed: HTTP {r.status} {r.text[:300]}")
        return _stored(r.body)


def _stored(item: dict[str, Any]) -> StoredObject:
    meta = item.get("metadata") or {}
    data = item.get("data") or {}
    content = data.get(CONTENT_KEY)
    return StoredObject(
        str(meta.get("name", "")), None if content is None else str(content), str(meta.get("resourceVersion", ""))
    )


def preflight(url: str, tls: TLSClient, namespace: str, timeout: float = 5.0) -> None:
    """Fail fast, before any load starts, on an unreachable LB, wrong credentials or missing files.

    Each failure names what was tried and what to check; nothing here retries, because an LB that
    does not answer now would only turn into thousands of identical failed requests later.
    """
    for what, path in (("CA bundle", tls.ca), ("client certificate", tls.cert), ("client key", tls.key)):
        if not path.is_file():
            raise LoadError(f"traffic {what} {path} does not exist; is the cluster's PKI there (kubequake status)?")
    if not url.startswith("https://"):
        raise LoadError(f"traffic target {url!r} must be an https:// URL: traffic is TLS-verified, never plain")
    with TrafficApi(url, tls, timeout=timeout, connect_timeout=min(timeout, 3.0)) as api:
        try:
            r = api.request("GET", f"/api/v1/namespaces/{namespace}")
        except requests.exceptions.SSLError as exc:
            text = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in text:
                hint = f"the server's certificate is not signed by CA {tls.ca} (wrong cluster or CA?)"
            else:
                hint = f"the server rejected client certificate {tls.cert} (signed by another CA?)"
            raise LoadError(f"TLS handshake with {url} failed: {hint}; detail: {text[:300]}") from None
        except requests.exceptions.ConnectTimeout:
            raise LoadError(
                f"cannot reach the API at {url}: connect timed out after {timeout:.0f}s; "
                "is the load balancer up (kubequake status)?"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise LoadError(
                f"cannot reach the API at {url}: {_reason(exc)}; is the load balancer up (kubequake status)?"
            ) from None
        except requests.exceptions.Timeout:
            raise LoadError(
                f"the API at {url} accepted a connection but did not answer within {timeout:.0f}s"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise LoadError(f"request to {url} failed: {type(exc).__name__}: {exc}") from None
        if r.status == 401:
            raise LoadError(f"wrong credentials: {url} answered 401 Unauthorized to client certificate {tls.cert}")
        if r.status == 403:
            raise LoadError(
                f"client certificate {tls.cert} may not read namespace {namespace} at {url} "
                f"(403 Forbidden: {_message(r)}); traffic needs create/update/delete on ConfigMaps"
            )
        if r.status not in (200, 404):
            raise LoadError(f"preflight GET namespace {namespace} at {url} answered HTTP {r.status}: {_message(r)}")


def _message(r: ApiResponse) -> str:
    return str(r.body.get("message") or r.text[:200])


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Connection reset", "No route to host", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return json.dumps(text[:200])
