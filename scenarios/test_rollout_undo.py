"""Rollout, history and undo, the seed talk's kubectl workflow; then the same with the control plane
under fire: an apiserver and the controller-manager leader killed mid-way."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from harness import windows
from harness.checks.rollout import DeploymentWorkflow, Kubectl
from harness.faults.catalog import KillComponent
from harness.providers.base import Cluster, Component
from harness.scenario import ScenarioRun
from harness.status import lease_leaders
from harness.verdicts import check, within

pytestmark = [pytest.mark.rollout]

IMAGES = ["registry.invalid/web:1.0", "registry.invalid/web:1.1", "registry.invalid/web:1.2"]


def revisions_summary(wf: DeploymentWorkflow) -> list[tuple[int, str]]:
    return [(r.number, r.image) for r in wf.api_revisions()]


def test_rollout_history_and_undo(
    scenario: ScenarioRun, kubectl: Kubectl, kube: client.ApiClient, scratch_namespace: str
) -> None:
    """kubectl's rollout workflow does what it says, checked against the API.

    Hypothesis: create, set image twice, rollout status, rollout history, undo and
    undo --to-revision on a healthy cluster each complete, and what kubectl reports (revisions,
    images) agrees with the Deployment and its ReplicaSets as the API holds them.

    Fault: none; this is the baseline the failover variant below is compared with.

    Measured: the time each rollout takes to complete (kubectl rollout status); the revisions
    kubectl lists and the ReplicaSets' revisions and images; the image and revision after each
    undo; replica readiness.

    SLO: each rollout within the rollout completion SLO (90s); history lists revisions 1-3 and
    agrees with the API; undo returns to the previous image, undo --to-revision=1 to the first;
    all replicas updated and ready; the revision advances to 5 after two undos.
    """
    run = scenario
    run.steady_state_before()
    wf = DeploymentWorkflow(kubectl, kube, scratch_namespace)
    with run.phase("create and roll out v1.0"):
        wf.create(IMAGES[0], replicas=3)
        took = wf.rollout_status(run.budgets.rollout_completion_s)
        run.verdict(run.budgets.within("rollout_completion_s", "initial rollout", took))
    with run.phase("set image v1.1, then v1.2"):
        for image in IMAGES[1:]:
            wf.set_image(image)
            took = wf.rollout_status(run.budgets.rollout_completion_s)
            run.verdict(run.budgets.within("rollout_completion_s", f"rollout to {image}", took))
    with run.phase("history"):
        hist = wf.history()
        run.measure("history", [(r.number, r.change_cause) for r in hist])
        run.verdict(
            check(
                "history lists 3 revisions",
                [r.number for r in hist] == [1, 2, 3],
                f"kubectl rollout history: {[(r.number, r.change_cause) for r in hist]}",
            )
        )
        run.verdict(
            check(
                "history agrees with the API",
                revisions_summary(wf) == list(enumerate(IMAGES, start=1)),
                f"ReplicaSet revisions: {revisions_summary(wf)}",
            )
        )
    with run.phase("undo"):
        wf.undo()
        wf.rollout_status(run.budgets.rollout_completion_s)
        run.verdict(
            check(
                "undo returns to the previous image",
                wf.api_image() == IMAGES[1],
                f"image after undo: {wf.api_image()} (expected {IMAGES[1]}), revision {wf.api_revision()}",
            )
        )
    with run.phase("undo --to-revision=1"):
        wf.undo(to_revision=1)
        wf.rollout_status(run.budgets.rollout_completion_s)
        run.verdict(
            check(
                "undo --to-revision=1 returns to the first image",
                wf.api_image() == IMAGES[0],
                f"image after undo --to-revision=1: {wf.api_image()} (expected {IMAGES[0]})",
            )
        )
        ok, state = wf.api_ready()
        run.verdict(check("all replicas updated and ready", ok, state))
        # Undo re-uses the old ReplicaSet under a new revision number: history keeps growing.
        run.verdict(
            check(
                "revision advanced by undo",
                wf.api_revision() == 5,
                f"deployment revision {wf.api_revision()} after two undos (expected 5)",
            )
        )


@pytest.mark.slo("apiserver-kill")
@pytest.mark.disruptive
@pytest.mark.control_plane
def test_rollout_survives_apiserver_and_controller_leader_kill(
    scenario: ScenarioRun, cluster: Cluster, kubectl: Kubectl, kube: client.ApiClient, scratch_namespace: str
) -> None:
    """A rollout under way survives losing an apiserver and the controller-manager leader.

    Hypothesis: a standby kube-controller-manager takes the lease and finishes the rollout the
    killed leader started, the API stays reachable through the other apiservers, and the
    Deployment's history stays intact.

    Fault: right after `set image` to v1.1 on 6 replicas, SIGKILL of kube-apiserver on a node other
    than the controller-manager leader's, and of the leader kube-controller-manager; held until
    the rollout completes (or its deadline passes).

    Measured: the time from the kills until every replica is updated and ready (read from the
    API); kubectl rollout status after recovery; the image; the revisions kubectl lists and the
    ReplicaSets' revisions and images; what clients through the LB saw.

    SLO: rollout completion within the lease handover SLO plus the rollout completion SLO;
    kubectl rollout status within the rollout SLO after recovery; image v1.1; revision history
    1-2 intact in kubectl and the API; steady state after; clients within the apiserver-kill SLO.
    """
    run = scenario
    run.steady_state_before()
    wf = DeploymentWorkflow(kubectl, kube, scratch_namespace)
    with run.phase("create and roll out v1.0"):
        wf.create(IMAGES[0], replicas=6)
        wf.rollout_status(run.budgets.rollout_completion_s)
    leader = lease_leaders(cluster)["kube-controller-manager"]
    assert leader and "," not in leader, "no single kube-controller-manager leader"
    other = next(n.name for n in cluster.control_planes() if n.name != leader)
    with run.phase("set image v1.1"):
        wf.set_image(IMAGES[1])
    started = time.time()
    with run.fault(
        KillComponent(cluster, other, Component.APISERVER),
        KillComponent(cluster, leader, Component.CONTROLLER_MANAGER),
        observe="observe: the rollout completes without the killed leader",
    ):
        waited = run.wait_for(
            windows.ROLLOUT_UNDER_FAILOVER,
            wf.api_ready,
            what="rollout completes",
            # The LB may still route a read to the killed apiserver's slot, or the survivor may
            # answer 5xx while it takes over: the API saying "not yet".
            retry_on=(client.ApiException,),
        )
        completed = None if waited is None else time.time() - started
    run.verdict(
        within(
            "rollout completion under failover",
            completed,
            # A standby controller-manager must take the lease before the rollout can go on.
            run.budgets.lease_handover_s + run.budgets.rollout_completion_s,
            what="rollout to v1.1 with an apiserver and the controller-manager leader killed",
        )
    )
    with run.phase("verify through kubectl and the API"):
        took = wf.rollout_status(run.budgets.rollout_completion_s)
        run.verdict(run.budgets.within("rollout_completion_s", "kubectl rollout status after recovery", took))
        run.verdict(check("image is v1.1", wf.api_image() == IMAGES[1], f"image {wf.api_image()}"))
        hist = wf.history()
        run.verdict(
            check(
                "revision history intact",
                [r.number for r in hist] == [1, 2] and revisions_summary(wf) == [(1, IMAGES[0]), (2, IMAGES[1])],
                f"history {[(r.number, r.change_cause) for r in hist]}; API {revisions_summary(wf)}",
            )
        )
    run.steady_state_after()
