"""The MySQL set and the Guestbook spread over zones (topology.kubernetes.io/zone, the label every
minion's kubelet registers), required on the aws cluster and preferred on an existing one; and the
set's disruption budget keeps a majority of it available."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.conftest import KUBERNETES_VERSION, STACKS
from tests.graph import kube, pod_templates
from tools.harness.offline import Plan, run_program

AWS_STACKS = [s for s in STACKS if s != "local"]
ZONE = "topology.kubernetes.io/zone"


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {stack: run_program(stack) for stack in STACKS}


def _zone_constraints(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in template["spec"].get("topologySpreadConstraints", []) if c["topologyKey"] == ZONE]


@pytest.mark.parametrize("stack", STACKS)
def test_every_workload_of_more_than_one_pod_spreads_over_zones_and_selects_its_own_pods(
        plans: dict[str, Plan], stack: str) -> None:
    expected = "DoNotSchedule" if stack in AWS_STACKS else "ScheduleAnyway"
    spread = 0
    for obj, template in pod_templates(plans[stack]):
        if obj["metadata"].get("namespace") == "kube-system":
            continue  # the add-ons keep their own placement (docs/cluster.md)
        constraints = _zone_constraints(template)
        if obj["spec"].get("replicas", 1) < 2 and obj["kind"] == "Deployment":
            assert not constraints, obj["metadata"]["name"]
            continue
        (constraint,) = constraints
        assert (constraint["maxSkew"], constraint["whenUnsatisfiable"]) == (1, expected), obj["metadata"]["name"]
        assert constraint["nodeTaintsPolicy"] == "Honor", "a lost zone's tainted nodes must not count"
        selector = constraint["labelSelector"]["matchLabels"]
        labels = template["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"{obj['metadata']['name']} spreads pods that are not its own"
        if obj["kind"] == "Deployment":
            assert constraint["matchLabelKeys"] == ["pod-template-hash"], "each rollout spreads on its own"
        spread += 1
    # the MySQL set, and the Guestbook's Deployments of more than one pod (local runs one of each)
    assert spread >= (1 if stack == "local" else 2)


def test_the_spread_is_valid_kubernetes(plans: dict[str, Plan]) -> None:
    for stack in ("prod", "local"):
        for obj, _ in pod_templates(plans[stack]):
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(("replicas", "highest"), [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (7, 3), (9, 4)])
def test_the_disruption_budget_leaves_a_majority_available(replicas: int, highest: int) -> None:
    plan = run_program("dev", {"mysqlReplicas": replicas, "mysqlPdbMaxUnavailable": highest})
    budget = kube(plan, "PodDisruptionBudget", "mysql")["spec"]["maxUnavailable"]
    assert budget == highest
    if replicas > 2:
        assert replicas - budget > replicas // 2, "a majority stays up through a drain"
