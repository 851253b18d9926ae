"""The readiness gate in the graph: nothing on the cluster is sent before it (aws/gate.py)."""

from __future__ import annotations

import pytest

from components import tokens
from components.aws.gate import DYNAMIC_TYPE, ClusterReadyGate
from tests.conftest import STACKS
from tools.harness.offline import Plan, run_program

AWS_STACKS = [s for s in STACKS if s != "local"]


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {stack: run_program(stack) for stack in STACKS}


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_kubernetes_object_goes_through_a_provider_that_waits_for_the_gate(stack: str,
                                                                                  plans: dict[str, Plan]) -> None:
    plan = plans[stack]
    (gate,) = [r for r in plan.resources if r.type == DYNAMIC_TYPE and r.name == "cluster-ready"]
    providers = {r.urn: r for r in plan.of_type(tokens.KUBERNETES_PROVIDER)}
    objects = [r for r in plan.resources if r.custom and r.type.startswith("kubernetes:")]
    assert objects
    for obj in objects:
        provider = providers[obj.provider.rsplit("::", 1)[0]]  # a reference is <urn>::<id>
        assert gate.urn in provider.options["dependsOn"], f"{obj.name}: provider does not wait for the gate"
    # The gate waits for every instance, and knows each node with its instance for its message.
    assert {r.urn for r in plan.instances()} <= set(gate.options["dependsOn"])
    assert {n["name"] for n in gate.inputs["nodes"]} == {r.inputs["tags"]["Name"] for r in plan.instances()}
    assert gate.inputs["kubeconfig"] == "[secret]"
    assert gate.inputs["timeoutSeconds"] == 1800
    assert plan.outputs["kubeconfig"].secret


def test_the_existing_cluster_stack_has_no_gate(plans: dict[str, Plan]) -> None:
    plan = plans["local"]
    assert not [r for r in plan.resources if r.type == DYNAMIC_TYPE]
    (provider,) = plan.of_type(tokens.KUBERNETES_PROVIDER)
    assert provider.options["dependsOn"] == []


def test_cluster_ready_timeout_is_the_gates_bound() -> None:
    plan = run_program("dev", {"clusterReadyTimeout": "3600"})
    (gate,) = [r for r in plan.resources if r.type == DYNAMIC_TYPE]
    assert gate.inputs["timeoutSeconds"] == 3600


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"timeout_seconds": 0}, "needs a positive timeout"),
    ({"nodes": []}, "needs at least one minion"),
])
def test_a_gate_that_could_not_wait_is_refused_before_it_registers(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"kubeconfig": "", "cluster": "c", "nodes": [], "timeout_seconds": 60, **kwargs}
    with pytest.raises(ValueError, match=message):
        ClusterReadyGate("gate", **args)  # type: ignore[arg-type]
