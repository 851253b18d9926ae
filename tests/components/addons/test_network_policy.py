"""NetworkPolicyAgent: upstream's kube-network-policies objects, failing closed, read-only RBAC, pinned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pulumi
import pytest

from components import tokens
from components.addons.network_policy import METRICS_PORT, NetworkPolicyAgent, NetworkPolicyAgentArgs
from components.facts import NETWORK_POLICY_IMPLEMENTATIONS
from components.pins import NETWORK_POLICY_AGENT_IMAGE
from policy.validators import Options, check_containers, violations
from tests.conftest import KUBERNETES_VERSION
from tests.graph import kinds, kube
from tools.harness.mocks import RecordingMonitor
from tools.harness.offline import Plan

NAME = "kube-network-policies"
Build = Callable[..., Plan]


@pytest.fixture
def build(unit_mocks: RecordingMonitor) -> Build:
    def run(nodes: int = 2) -> Plan:
        @pulumi.runtime.test
        def program() -> pulumi.Output[Any]:
            return NetworkPolicyAgent("netpol", NetworkPolicyAgentArgs(nodes=nodes)).daemon_set_name

        program()
        return Plan(stack="unit", resources=list(unit_mocks.registrations))

    return run


def _pod(plan: Plan) -> dict[str, Any]:
    return dict(kube(plan, "DaemonSet", NAME)["spec"]["template"]["spec"])


def test_every_object_validates_strictly_with_upstream_names(build: Build) -> None:
    plan = build()
    objects = plan.kubernetes_objects()
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} == {
        ("ServiceAccount", NAME), ("ClusterRole", NAME), ("ClusterRoleBinding", NAME), ("DaemonSet", NAME)}
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        namespaced = obj["kind"] in ("ServiceAccount", "DaemonSet")
        assert obj["metadata"].get("namespace") == ("kube-system" if namespaced else None), obj["kind"]


def test_the_agent_fails_closed_on_upstreams_queue_and_keeps_its_metrics_on_loopback(build: Build) -> None:
    [container] = _pod(build())["containers"]
    assert container["args"] == ["/bin/netpol", "--hostname-override=$(MY_NODE_NAME)", "--v=2", "--nfqueue-id=98",
                                 "--fail-open=false", f"--metrics-bind-address=127.0.0.1:{METRICS_PORT}"]
    assert container["env"] == [{"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": METRICS_PORT, "host": "127.0.0.1"}


def test_it_runs_on_every_node_in_the_hosts_network_before_dns(build: Build) -> None:
    spec = _pod(build())
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "Default"
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["priorityClassName"] == "system-node-critical"
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/var/run/netns"]["mountPropagation"] == "HostToContainer" and "/var/run/nri" in mounts
    assert {v["hostPath"]["path"]: v["hostPath"]["type"] for v in spec["volumes"]} == {
        "/var/run/nri": "DirectoryOrCreate", "/var/run/netns": "DirectoryOrCreate"}


def test_its_rbac_reads_policies_pods_and_namespaces_and_writes_nothing(build: Build) -> None:
    plan = build()
    [role] = kinds(plan, "ClusterRole")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    read = (("", "pods"), ("", "namespaces"), ("networking.k8s.io", "networkpolicies"))
    assert granted == {(g, r, v) for g, r in read for v in ("list", "watch")}
    binding = kube(plan, "ClusterRoleBinding", NAME)
    assert binding["roleRef"]["name"] == NAME
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": "kube-system"}]
    assert _pod(plan)["serviceAccountName"] == NAME


def test_the_image_is_pinned_by_digest_and_is_an_implementation_the_policy_pack_knows(build: Build) -> None:
    [container] = _pod(build())["containers"]
    assert container["image"] == NETWORK_POLICY_AGENT_IMAGE
    assert "@sha256:" in NETWORK_POLICY_AGENT_IMAGE
    assert NETWORK_POLICY_AGENT_IMAGE.split(":")[0] in NETWORK_POLICY_IMPLEMENTATIONS


def test_the_policy_pack_finds_nothing_to_refuse(build: Build) -> None:
    """Requests, limits, both probes and a pinned image (check_containers), and every other policy."""
    plan = build()
    [ds] = plan.of_type(tokens.DAEMON_SET)
    assert check_containers(ds.type, ds.inputs, "prod", Options()) == []
    for r in plan.resources:
        if r.custom:
            assert not violations(r.type, r.inputs, "prod"), r.name


def test_a_rolling_update_may_take_a_round_per_node(build: Build) -> None:
    """maxUnavailable 1: five nodes, five rounds of the time one pod may take to become ready."""
    [ds] = build(5).of_type(tokens.DAEMON_SET)
    create, update = (float(ds.options["customTimeouts"][k].rstrip("s")) for k in ("create", "update"))
    assert update == 5 * create and ds.inputs["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1


@pytest.mark.parametrize("nodes", [0, -1, True, 1.5])
def test_no_nodes_is_refused_before_anything_registers(nodes: Any) -> None:
    """The Args refuse it, so the component is never constructed."""
    with pytest.raises(ValueError, match="the network policy agent needs at least one node"):
        NetworkPolicyAgentArgs(nodes=nodes)
