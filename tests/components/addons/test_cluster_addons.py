"""ClusterAddons wired into the program: what the workload and the nodes expect of the add-ons."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components import tokens
from components.addons.ebs_csi import DRIVER_NAME
from tests.graph import kinds, kube
from tools.harness.offline import Plan, run_program

ADDONS = tokens.CLUSTER_ADDONS


@pytest.fixture(scope="module")
def dev() -> Plan:
    return run_program("dev")


def _under(plan: Plan, ancestor_type: str) -> list[Any]:
    by_urn = {r.urn: r for r in plan.resources}

    def inside(r: Any) -> bool:
        while r.parent in by_urn:
            r = by_urn[r.parent]
            if r.type == ancestor_type:
                return True
        return False

    return [r for r in plan.resources if r.custom and inside(r)]


def _minion_files(plan: Plan) -> list[dict[str, str]]:
    files = []
    for instance in plan.instances():
        if instance.inputs["tags"]["Role"] == "minion":
            written = yaml.safe_load(plan.user_data(instance))["write_files"]
            files.append({f["path"]: f["content"] for f in written})
    return files


def test_each_part_of_the_workload_waits_for_what_it_needs_and_nothing_more(dev: Plan) -> None:
    """The MySQL set for DNS, volumes and policy enforcement, the Guestbook for DNS and enforcement:
    neither for metrics-server."""
    (mysql,) = dev.of_type(tokens.MYSQL_SET)
    (guestbook,) = dev.of_type(tokens.GUESTBOOK)
    dns, storage, metrics, enforcement = (_under(dev, kind) for kind in (
        tokens.CORE_DNS, tokens.EBS_CSI_DRIVER, tokens.METRICS_SERVER, tokens.NETWORK_POLICY_AGENT))
    assert {r.type.split(":")[1].split("/")[0] for r in storage} >= {"core", "apps", "storage.k8s.io"}
    assert tokens.DAEMON_SET in {r.type for r in enforcement}
    assert {r.urn for r in dns + storage + enforcement} <= set(mysql.options["dependsOn"])
    assert {r.urn for r in dns + enforcement} <= set(guestbook.options["dependsOn"])
    assert not {r.urn for r in storage + metrics} & set(guestbook.options["dependsOn"])
    assert metrics and not {r.urn for r in metrics} & set(mysql.options["dependsOn"])


def test_add_ons_use_the_clusters_provider(dev: Plan) -> None:
    (provider,) = dev.of_type(tokens.KUBERNETES_PROVIDER)
    objects = [r for r in _under(dev, ADDONS) if r.type.startswith("kubernetes:")]
    assert objects
    for r in objects:
        assert r.provider.startswith(provider.urn + "::"), r.name


def test_kube_dns_answers_where_every_kubelet_points_its_pods(dev: Plan) -> None:
    service = kube(dev, "Service", "kube-dns")
    corefile = kube(dev, "ConfigMap", "coredns")["data"]["Corefile"]
    minions = _minion_files(dev)
    assert minions
    for files in minions:
        kubelet = yaml.safe_load(files["/etc/kubernetes/kubelet.yaml"])
        assert kubelet["clusterDNS"] == [service["spec"]["clusterIP"]]
        assert f"kubernetes {kubelet['clusterDomain']} in-addr.arpa ip6.arpa" in corefile


@pytest.mark.parametrize(("stack", "iops", "throughput"), [("dev", "3000", "125"), ("prod", "3000", "600")])
def test_mysql_volumes_are_provisioned_by_the_clusters_class_for_them(stack: str, iops: str, throughput: str) -> None:
    plan = run_program(stack)
    classes = {c["metadata"]["name"]: c for c in kinds(plan, "StorageClass")}
    assert set(classes) == {"gp3", "gp3-mysql"}
    marker = "storageclass.kubernetes.io/is-default-class"
    assert [n for n, c in classes.items() if (c["metadata"].get("annotations") or {}).get(marker) == "true"] == ["gp3"]
    data = classes["gp3-mysql"]
    assert data["provisioner"] == DRIVER_NAME
    assert (data["parameters"]["iops"], data["parameters"]["throughput"]) == (iops, throughput)  # the stack's
    (claim,) = kube(plan, "StatefulSet", "mysql")["spec"]["volumeClaimTemplates"]
    # Named explicitly (the class is not the default): the composition step of __main__.
    assert claim["spec"]["storageClassName"] == "gp3-mysql"


@pytest.mark.parametrize(("minions", "replicas"), [(1, 1), (2, 2), (6, 2)])
def test_the_ebs_controller_never_asks_for_more_hosts_than_there_are_minions(minions: int, replicas: int) -> None:
    plan = run_program("dev", {"minionCount": minions})
    controller = kube(plan, "Deployment", "ebs-csi-controller")
    assert controller["spec"]["template"]["spec"]["hostNetwork"] is True
    assert controller["spec"]["replicas"] == replicas


def test_the_apiserver_serves_the_aggregation_layer_metrics_server_relies_on(dev: Plan) -> None:
    assert kube(dev, "APIService", "v1beta1.metrics.k8s.io")["spec"]["service"]["name"] == "metrics-server"
    for instance in dev.instances():
        if instance.inputs["tags"]["Role"] != "master":
            continue
        written = {f["path"]: f["content"] for f in yaml.safe_load(dev.user_data(instance))["write_files"]}
        apiserver = written["/etc/kubernetes/apiserver"]
        for flag in ("--requestheader-client-ca-file=", "--proxy-client-cert-file=",
                     "--enable-aggregator-routing=true"):
            assert flag in apiserver


def test_without_metrics_server_no_api_service_is_registered() -> None:
    plan = run_program("dev", {"enableMetricsServer": False})
    assert not kinds(plan, "APIService")
    assert kinds(plan, "Deployment")  # the rest is still there


def test_an_existing_cluster_gets_no_add_ons() -> None:
    plan = run_program("local")
    assert not plan.of_type(ADDONS)
    assert not [o for o in plan.kubernetes_objects() if (o["metadata"].get("namespace") == "kube-system")]
