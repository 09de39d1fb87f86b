"""Deployment rollout, history and undo, done the way people do it (kubectl) and checked via the API.

The seed workflow: `kubectl create -f`, `kubectl set image`, `kubectl rollout status`,
`kubectl rollout history`, `kubectl rollout undo [--to-revision=n]`. `--record` is gone from
kubectl, so the change cause is set with the `kubernetes.io/change-cause` annotation, which
is what `rollout history` shows. What kubectl reports is then cross-checked against the
Deployment and its ReplicaSets read through the API, so neither side can fool the verdict.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from harness.errors import HarnessError
from harness.transport.base import CommandResult
from harness.transport.local import LocalTransport

log = logging.getLogger(__name__)

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"


class RolloutError(HarnessError):
    """A kubectl step of the rollout workflow failed."""

    exit_code = 1


@dataclass(frozen=True)
class Revision:
    number: int
    change_cause: str
    image: str = ""


class Kubectl:
    def __init__(self, binary: Path, kubeconfig: Path, work_dir: Path, request_timeout_s: float = 10.0) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.work_dir = work_dir
        self.request_timeout_s = request_timeout_s
        self.transport = LocalTransport()

    def run(self, args: list[str], timeout: float = 30.0, check: bool = True) -> CommandResult:
        argv = [
            str(self.binary),
            f"--kubeconfig={self.kubeconfig}",
            f"--request-timeout={self.request_timeout_s}s",
            *args,
        ]
        res = self.transport.run(argv, timeout)
        log.debug("kubectl %s -> %d", " ".join(args), res.exit_status)
        if check and not res.ok:
            raise RolloutError(f"`kubectl {' '.join(args)}` failed ({res.exit_status}): {res.stderr.strip()[-400:]}")
        return res


class DeploymentWorkflow:
    """One Deployment taken through the seed's rollout workflow."""

    def __init__(self, kubectl: Kubectl, api: client.ApiClient, namespace: str, name: str = "web") -> None:
        self.k = kubectl
        self.api = api
        self.ns = namespace
        self.name = name
        self.apps = client.AppsV1Api(api)

    def manifest(self, image: str, replicas: int, cause: str) -> dict[str, object]:
        labels = {"app": self.name}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.name, "namespace": self.ns, "annotations": {CHANGE_CAUSE: cause}},
            "spec": {
                "replicas": replicas,
                "revisionHistoryLimit": 10,
                "selector": {"matchLabels": labels},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": self.name, "image": image}]},
                },
            },
        }

    def create(self, image: str, replicas: int = 3, cause: str = "") -> None:
        path = self.k.work_dir / f"{self.ns}-{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.manifest(image, replicas, cause or f"create {image}")))
        self.k.run(["create", "-f", str(path)])

    def set_image(self, image: str, cause: str = "") -> None:
        self.k.run(["-n", self.ns, "set", "image", f"deployment/{self.name}", f"{self.name}={image}"])
        self.k.run(
            [
                "-n",
                self.ns,
                "annotate",
                "--overwrite",
                f"deployment/{self.name}",
                f"{CHANGE_CAUSE}={cause or f'set image {image}'}",
            ]
        )

    def rollout_status(self, timeout_s: float) -> float:
        """Seconds until `kubectl rollout status` reports success; raises with its output if not."""
        start = time.monotonic()
        res = self.k.run(
            ["-n", self.ns, "rollout", "status", f"deployment/{self.name}", f"--timeout={int(timeout_s)}s"],
            timeout=timeout_s + 15,
            check=False,
        )
        if not res.ok or "successfully rolled out" not in res.stdout:
            raise RolloutError(
                f"rollout of {self.ns}/{self.name} not complete within {timeout_s:.0f}s: "
                f"{(res.stdout + res.stderr).strip()[-400:]}"
            )
        return time.monotonic() - start

    def history(self) -> list[Revision]:
        res = self.k.run(["-n", self.ns, "rollout", "history", f"deployment/{self.name}"])
        revs = []
        for line in res.stdout.splitlines():
            m = re.match(r"^\s*(\d+)\s+(.*?)\s*$", line)
            if m:
                revs.append(Revision(int(m.group(1)), m.group(2)))
        return revs

    def undo(self, to_revision: int | None = None) -> None:
        args = ["-n", self.ns, "rollout", "undo", f"deployment/{self.name}"]
        if to_revision is not None:
            args.append(f"--to-revision={to_revision}")
        self.k.run(args)

    # -- API cross-checks --------------------------------------------------------------------
    def api_image(self) -> str:
        d = self.apps.read_namespaced_deployment(self.name, self.ns)
        assert d.spec is not None
        return d.spec.template.spec.containers[0].image or ""  # type: ignore[union-attr]

    def api_revision(self) -> int:
        d = self.apps.read_namespaced_deployment(self.name, self.ns)
        return int(((d.metadata and d.metadata.annotations) or {}).get(REVISION_ANNOTATION, "0"))

    def api_revisions(self) -> list[Revision]:
        """Revisions as the ReplicaSets record them: number, change cause, image."""
        rss = self.apps.list_namespaced_replica_set(self.ns, label_selector=f"app={self.name}").items
        out = []
        for rs in rss:
            ann = (rs.metadata.annotations if rs.metadata else None) or {}
            image = rs.spec.template.spec.containers[0].image if rs.spec and rs.spec.template.spec else ""  # type: ignore[union-attr]
            out.append(Revision(int(ann.get(REVISION_ANNOTATION, "0")), ann.get(CHANGE_CAUSE, ""), image or ""))
        return sorted(out, key=lambda r: r.number)

    def api_ready(self) -> tuple[bool, str]:
        d = self.apps.read_namespaced_deployment(self.name, self.ns)
        st, spec = d.status, d.spec
        assert st is not None and spec is not None
        want = spec.replicas or 0
        ok = (
            (st.updated_replicas or 0) == want
            and (st.ready_replicas or 0) == want
            and (st.replicas or 0) == want
            and (st.observed_generation or 0) >= (d.metadata.generation or 0)  # type: ignore[union-attr]
        )
        return ok, f"updated={st.updated_replicas} ready={st.ready_replicas} total={st.replicas} want={want}"
