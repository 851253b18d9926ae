"""Stacks compose cluster and workload; overrides change exactly the objects they should."""

from __future__ import annotations

from typing import Any

import pytest

from components import tokens
from tests.graph import changed_names, kube
from tools.harness.offline import Plan, run_program

STATEFUL_TYPES = {tokens.STATEFUL_SET, tokens.VPC}


def names(plan: Plan) -> set[str]:
    return {r.name for r in plan.resources}


def protected(plan: Plan) -> set[str]:
    return {r.type for r in plan.resources if r.options["protect"]}


def test_stacks_differ_in_counts_sizes_and_protection() -> None:
    dev, prod = run_program("dev"), run_program("prod")
    assert (len(dev.instances()), len(prod.instances())) == (3, 9)
    roles = [str(i.inputs["tags"]["Role"]) for i in prod.instances()]
    assert (roles.count("master"), roles.count("minion")) == (3, 6)
    dev_set, prod_set = kube(dev, "StatefulSet", "mysql")["spec"], kube(prod, "StatefulSet", "mysql")["spec"]
    assert (dev_set["replicas"], prod_set["replicas"]) == (3, 5)
    claim = "volumeClaimTemplates"
    assert dev_set[claim][0]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert prod_set[claim][0]["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert (
        "requiredDuringSchedulingIgnoredDuringExecution" in prod_set["template"]["spec"]["affinity"]["podAntiAffinity"]
    )
    assert protected(dev) == set()
    assert protected(prod) >= STATEFUL_TYPES
    masters = [i for i in prod.instances() if i.inputs["tags"]["Role"] == "master"]
    assert all(m.options["protect"] for m in masters)
    assert {i.inputs["instanceType"] for i in prod.instances()} == {"m6i.large", "m6i.xlarge"}


def test_prod_outputs_are_the_documented_ones_with_kubeconfig_secret() -> None:
    plan = run_program("prod")
    assert set(plan.outputs) == {
        "apiEndpoint",
        "kubeconfig",
        "masterPrivateIps",
        "masterNames",
        "minionPrivateIps",
        "etcdBackupBucket",
        "etcdBackupPrefix",
        "instanceConnectEndpointId",
        "namespace",
        "mysqlPrimaryHost",
        "mysqlReadHost",
        "mysqlPort",
        "mysqlSecretName",
        "mysqlReplicas",
        "mysqlCaCert",
        "mysqlDeployed",
        "frontendAddress",
        "storageClass",
        # prod backs its set up (mysqlBackupEnabled): the bucket the stack built, and the set's prefix in it.
        "mysqlBackupBucket",
        "mysqlBackupPrefix",
    }
    assert not plan.outputs["mysqlCaCert"].secret  # a CA certificate is public: clients need it
    assert plan.outputs["kubeconfig"].secret
    assert plan.outputs["storageClass"].value == "gp3"
    assert plan.outputs["mysqlBackupPrefix"].value == "prod/mysql"
    assert plan.outputs["mysqlPrimaryHost"].value == "mysql-primary.atomic-mysql.svc"
    # prod's LoadBalancer frontend is the cluster's NLB (no cloud controller serves a LoadBalancer Service)
    assert plan.outputs["frontendAddress"].value.endswith(".elb.us-west-2.amazonaws.com")
    assert plan.outputs["apiEndpoint"].value.startswith("https://") and plan.outputs["apiEndpoint"].value.endswith(
        ":6443"
    )


def test_existing_cluster_mode_builds_no_aws_resources() -> None:
    plan = run_program("local")
    assert not [r for r in plan.resources if r.type.startswith("aws:")]
    provider = plan.of_type(tokens.KUBERNETES_PROVIDER)[0]
    assert provider.inputs["renderYamlToDirectory"] == "rendered/local"


def test_workload_is_in_its_own_namespace_and_add_ons_in_kube_system() -> None:
    plan = run_program("dev", {"namespace": "shop"})
    by_urn = {r.urn: r for r in plan.resources}

    def ancestors(r: Any) -> set[str]:
        types = set()
        while r.parent in by_urn:
            r = by_urn[r.parent]
            types.add(r.type)
        return types

    objects = [r for r in plan.resources if r.custom and r.type.startswith("kubernetes:") and "apiVersion" in r.inputs]
    owners = {r.name: ancestors(r) for r in objects}
    assert any(tokens.WORKLOAD in o for o in owners.values())
    for r in objects:
        namespace = (r.inputs["metadata"] or {}).get("namespace")
        if tokens.WORKLOAD in owners[r.name]:
            assert namespace == ("shop" if r.inputs["kind"] != "Namespace" else None), r.name
        else:
            assert tokens.CLUSTER_ADDONS in owners[r.name], f"{r.name}: neither workload nor add-on"
            assert namespace in ("kube-system", None), r.name


@pytest.fixture(scope="module")
def dev_base() -> Plan:
    return run_program("dev")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # ...and the claims of the two new pods are patched to the set's size (set.py claim_patches).
        ({"mysqlReplicas": 5}, {"workload-mysql-statefulset", "workload-mysql-data-3", "workload-mysql-data-4"}),
        ({"mysqlMemoryLimit": "2Gi"}, {"workload-mysql-statefulset"}),
        (
            {"frontendImage": "us-docker.pkg.dev/google-samples/containers/gke/gb-frontend:v6"},
            {"workload-guestbook-frontend"},
        ),
        (
            {"rolloutMaxSurge": "1", "minReadySeconds": 5},
            {"workload-guestbook-frontend", "workload-guestbook-redis-follower", "workload-guestbook-redis-leader"},
        ),
    ],
)
def test_override_changes_exactly_its_objects(dev_base: Plan, overrides: dict[str, Any], expected: set[str]) -> None:
    assert changed_names(dev_base, run_program("dev", overrides)) == expected


def test_more_minions_only_add_resources(dev_base: Plan) -> None:
    after = run_program("dev", {"minionCount": 4})
    added = names(after) - names(dev_base)
    # The readiness gate is the one existing resource that changes: the update waits for the new
    # minions to be Ready before the Kubernetes objects (a DaemonSet's new pods) are updated.
    assert changed_names(dev_base, after) == added | {"cluster-ready"}, "no other existing resource changes"
    assert added and all("minion-3" in n or "minion-4" in n for n in added)
    assert len(after.instances()) == len(dev_base.instances()) + 2


def test_a_loadbalancer_frontend_on_the_aws_cluster_is_an_nlb_on_a_fixed_nodeport() -> None:
    plan = run_program("prod", {"frontendNodePort": 31234})
    service = kube(plan, "Service", "frontend")
    assert service["spec"]["type"] == "NodePort"
    assert [p["nodePort"] for p in service["spec"]["ports"]] == [31234]
    (group,) = [g for g in plan.of_type(tokens.TARGET_GROUP) if "-frontend-lb-" in g.name]
    assert group.inputs["port"] == 31234
    minions = [i for i in plan.instances() if i.inputs["tags"]["Role"] == "minion"]
    targets = [t for t in plan.of_type(tokens.TARGET_GROUP_ATTACHMENT)
               if "-frontend-lb-" in t.name]
    assert sorted(t.inputs["targetId"] for t in targets) == sorted(i.id for i in minions)


def test_other_frontend_service_types_build_no_load_balancer() -> None:
    for stack, overrides in (("dev", {"frontendServiceType": "NodePort"}),
                             ("local", {"frontendServiceType": "LoadBalancer"})):
        plan = run_program(stack, overrides)
        assert not [x for x in plan.of_type(tokens.LOAD_BALANCER) if "-frontend-lb-" in x.name]
        service = kube(plan, "Service", "frontend")
        assert service["spec"]["type"] == overrides["frontendServiceType"]
        assert "nodePort" not in service["spec"]["ports"][0]


def test_the_frontend_address_names_the_listener_port_unless_it_is_80() -> None:
    plan = run_program("prod", {"frontendListenPort": 8080})
    address = plan.outputs["frontendAddress"].value
    assert address.endswith(".elb.us-west-2.amazonaws.com:8080")
    (listener,) = [x for x in plan.of_type(tokens.LISTENER) if "-frontend-lb-" in x.name]
    assert listener.inputs["port"] == 8080
