"""The Guestbook: wiring, rollout settings, autoscaler, bandwidth, change-cause."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components import tokens
from components.settings.schema import GuestbookSettings, Resources, RolloutSettings
from components.workload.guestbook import Guestbook, GuestbookArgs
from tests.graph import changed_names, kinds, kube, pod_templates
from tools.harness.offline import run_program

STACK = "local"


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_services_select_exactly_their_deployments_pods() -> None:
    plan = run_program(STACK)
    deployments = {d["metadata"]["name"]: d for d in kinds(plan, "Deployment")}
    assert set(deployments) == {"redis-leader", "redis-follower", "frontend"}
    for name, deployment in deployments.items():
        template_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(deployment["spec"]["selector"]["matchLabels"], template_labels)
        service = kube(plan, "Service", name)
        matching = [
            d
            for d, dep in deployments.items()
            if selects(service["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])
        ]
        assert matching == [name], f"Service {name} selects {matching}"


def test_followers_replicate_from_the_leader_service() -> None:
    plan = run_program(STACK, {"redisReplicas": 3})
    follower = kube(plan, "Deployment", "redis-follower")
    assert follower["spec"]["replicas"] == 3
    args = follower["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--replicaof") + 1 : args.index("--replicaof") + 3] == ["redis-leader", "6379"]


def test_rollout_knobs_reach_frontend_and_followers_but_the_leader_recreates() -> None:
    plan = run_program(
        STACK,
        {
            "rolloutMaxSurge": "2",
            "rolloutMaxUnavailable": "0",
            "minReadySeconds": 15,
            "progressDeadlineSeconds": 120,
            "revisionHistoryLimit": 3,
        },
    )
    for name in ("frontend", "redis-follower"):
        spec = kube(plan, "Deployment", name)["spec"]
        assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}}
        assert (spec["minReadySeconds"], spec["progressDeadlineSeconds"], spec["revisionHistoryLimit"]) == (15, 120, 3)
    assert kube(plan, "Deployment", "redis-leader")["spec"]["strategy"] == {"type": "Recreate"}


def test_percentages_stay_percentages_and_recreate_has_no_rolling_block() -> None:
    plan = run_program(STACK, {"rolloutMaxSurge": "50%"})
    assert kube(plan, "Deployment", "frontend")["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == "50%"
    plan = run_program(STACK, {"rolloutStrategy": "Recreate"})
    assert kube(plan, "Deployment", "frontend")["spec"]["strategy"] == {"type": "Recreate"}


def change_cause(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["annotations"]["kubernetes.io/change-cause"])


def test_change_cause_changes_only_with_the_image() -> None:
    base = run_program(STACK)
    image = "us-docker.pkg.dev/google-samples/containers/gke/gb-frontend:v6"
    new_image = run_program(STACK, {"frontendImage": image})
    more_replicas = run_program(STACK, {"frontendReplicas": 5})
    assert change_cause(kube(new_image, "Deployment", "frontend")) == f"deploy {image}"
    assert change_cause(kube(more_replicas, "Deployment", "frontend")) == change_cause(
        kube(base, "Deployment", "frontend")
    )
    explicit = run_program(STACK, {"changeCause": "JIRA-42: new frontend"})
    assert change_cause(kube(explicit, "Deployment", "frontend")) == "JIRA-42: new frontend"


def test_frontend_image_override_changes_only_the_frontend_deployment() -> None:
    base = run_program(STACK)
    after = run_program(STACK, {"frontendImage": "us-docker.pkg.dev/google-samples/containers/gke/gb-frontend:v6"})
    assert changed_names(base, after) == {"workload-guestbook-frontend"}


def test_rollout_override_changes_only_rolled_deployments() -> None:
    base = run_program(STACK)
    after = run_program(STACK, {"minReadySeconds": 20})
    assert changed_names(base, after) == {
        "workload-guestbook-frontend",
        "workload-guestbook-redis-follower",
        "workload-guestbook-redis-leader",
    }


def test_autoscaler_owns_frontend_replicas() -> None:
    plan = run_program(
        STACK,
        {
            "frontendHpaEnabled": True,
            "frontendReplicas": 3,
            "frontendHpaMin": 2,
            "frontendHpaMax": 9,
            "frontendHpaCpuTarget": 60,
        },
    )
    hpa = kube(plan, "HorizontalPodAutoscaler", "frontend")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "frontend"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 9)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    assert kube(plan, "Deployment", "frontend")["spec"]["replicas"] == 3, "frontendReplicas is where it starts"
    frontend = plan.named("workload-guestbook-frontend")
    assert frontend.options["ignoreChanges"] == ["spec.replicas"], "then the HPA owns the count"
    assert run_program(STACK).named("workload-guestbook-frontend").options["ignoreChanges"] == []


def test_bandwidth_annotations_on_frontend_pods() -> None:
    plan = run_program(STACK, {"ingressBandwidth": "10M", "egressBandwidth": "1G"})
    annotations = kube(plan, "Deployment", "frontend")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "1G"}
    assert "annotations" not in kube(run_program(STACK), "Deployment", "frontend")["spec"]["template"]["metadata"]


def test_guestbook_can_be_switched_off() -> None:
    plan = run_program(STACK, {"guestbookEnabled": False})
    assert not [r for r in plan.resources if r.type == tokens.GUESTBOOK]
    assert not kinds(plan, "Deployment")


@pytest.mark.parametrize("stack", ["local"])
def test_every_container_has_requests_limits_and_probes(stack: str) -> None:
    plan = run_program(stack)
    for workload, template in pod_templates(plan):
        for container in template["spec"]["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
            assert "livenessProbe" in container and "readinessProbe" in container, where
            assert not container["image"].endswith(":latest") and ":" in container["image"], where


SMALL = Resources("100m", "64Mi", "200m", "128Mi")


@pulumi.runtime.test
def test_component_alone_exposes_its_frontend_address(unit_mocks: object) -> pulumi.Output[None]:
    settings = GuestbookSettings(
        enabled=True,
        frontend_image="gb-frontend:v5",
        frontend_replicas=1,
        frontend_service_type="ClusterIP",
        redis_primary_image="redis:7.4.2",
        redis_replica_image="redis:7.4.2",
        redis_replicas=1,
        frontend_resources=SMALL,
        redis_resources=SMALL,
        rollout=RolloutSettings("RollingUpdate", 1, 0, 0, 600, 10, None),
        autoscaler=None,
        ingress_bandwidth=None,
        egress_bandwidth=None,
    )
    guestbook = Guestbook("gb", GuestbookArgs(settings=settings, namespace="shop"))

    def check(address: str) -> None:
        assert address == "frontend.shop.svc"

    return guestbook.frontend_address.apply(check)


def test_redis_takes_traffic_only_from_frontend_and_followers() -> None:
    plan = run_program(STACK)
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in kinds(plan, "Deployment")}
    redis = kube(plan, "NetworkPolicy", "guestbook-redis")["spec"]
    assert {name for name, labels_ in pods.items() if selects(redis["podSelector"]["matchLabels"], labels_)} == {
        "redis-leader",
        "redis-follower",
    }
    allowed = {
        name
        for name, labels_ in pods.items()
        for peer in redis["ingress"][0]["from"]
        if selects(peer["podSelector"]["matchLabels"], labels_)
    }
    assert allowed == {"frontend", "redis-leader", "redis-follower"}
    assert redis["ingress"][0]["ports"] == [{"port": 6379, "protocol": "TCP"}]
    frontend = kube(plan, "NetworkPolicy", "guestbook-frontend")["spec"]
    assert "from" not in frontend["ingress"][0] and frontend["ingress"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]


def test_frontend_root_filesystem_is_read_only_with_scratch_dirs() -> None:
    pod = kube(run_program(STACK), "Deployment", "frontend")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/var/run/apache2", "/var/lock/apache2", "/tmp"}
    assert {v["name"] for v in pod["volumes"]} == {m["name"] for m in container["volumeMounts"]}


def test_followers_are_ready_only_when_linked_to_the_leader_and_the_leader_keeps_ping() -> None:
    from components.workload.guestbook import FOLLOWER_PROBE, FOLLOWER_PROBE_MOUNT, follower_probe_script

    plan = run_program(STACK)
    follower = kube(plan, "Deployment", "redis-follower")["spec"]["template"]
    [container] = follower["spec"]["containers"]
    assert container["readinessProbe"]["exec"]["command"] == ["sh", f"{FOLLOWER_PROBE_MOUNT}/{FOLLOWER_PROBE}"]
    assert container["livenessProbe"]["exec"]["command"] == ["redis-cli", "-p", "6379", "ping"]
    assert {"name": "probe", "mountPath": FOLLOWER_PROBE_MOUNT, "readOnly": True} in container["volumeMounts"]
    [volume] = [v for v in follower["spec"]["volumes"] if v["name"] == "probe"]
    config_map = kube(plan, "ConfigMap", volume["configMap"]["name"])
    assert config_map["data"] == {FOLLOWER_PROBE: follower_probe_script()}
    assert len(follower["metadata"]["annotations"]["checksum/probe"]) == 64
    leader = kube(plan, "Deployment", "redis-leader")["spec"]["template"]["spec"]["containers"][0]
    assert leader["readinessProbe"]["exec"]["command"] == ["redis-cli", "-p", "6379", "ping"]
