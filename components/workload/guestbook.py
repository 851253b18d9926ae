"""The seed's Guestbook: a Redis leader, Redis followers and the PHP frontend.

The frontend image (gb-frontend) dials the Services `redis-leader` (writes) and
`redis-follower` (reads) by DNS name, so those two names are fixed by the image,
not chosen here.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components import tokens
from components.kube.objects import (
    OWNER_LABELS,
    ZoneSpread,
    exec_probe,
    http_probe,
    metadata,
    owned,
    resources,
    restricted,
    spread_over_zones,
)
from components.settings.schema import GuestbookSettings, Resources, RolloutSettings

REDIS_PORT = 6379
FRONTEND_PORT = 80
# Above 10000 so no host account shares it; the official image runs under any uid when it
# is not started as root, and its only writable path (/data) is an emptyDir owned via fsGroup.
REDIS_UID = 10999
# Apache's writable paths under a read-only root filesystem (pid, lock, PHP's temp files).
FRONTEND_SCRATCH = {"apache-run": "/var/run/apache2", "apache-lock": "/var/lock/apache2", "tmp": "/tmp"}
CHANGE_CAUSE = "kubernetes.io/change-cause"
# The followers' readiness program (a real file, shipped in a ConfigMap) and where the pods mount it.
FOLLOWER_PROBE = "redis-follower-ready.sh"
FOLLOWER_PROBE_MOUNT = "/etc/redis-probe"
SCRIPTS_DIR = Path(__file__).parent / "scripts"

meta = k8s.meta.v1
core = k8s.core.v1
apps = k8s.apps.v1


@dataclass
class GuestbookArgs:
    settings: GuestbookSettings
    namespace: pulumi.Input[str]
    # Over the zones: required where every node has its zone label (the aws cluster), else preferred.
    zone_spread: ZoneSpread = "preferred"


def labels(component: str, role: str | None = None) -> dict[str, str]:
    result = owned({"app.kubernetes.io/name": "guestbook", "app.kubernetes.io/component": component})
    if role:
        result["guestbook.atomic-mysql.dev/role"] = role
    return result


def selector(component: str, role: str | None = None) -> dict[str, str]:
    """The immutable subset of labels a Deployment and its Service select on."""
    chosen = labels(component, role)
    return {k: v for k, v in chosen.items() if k not in OWNER_LABELS}


def change_cause(rollout: RolloutSettings, image: str) -> str:
    """The rollout history line: from config, else from the image, so it changes only when the image does."""
    return rollout.change_cause or f"deploy {image}"


def strategy(rollout: RolloutSettings) -> apps.DeploymentStrategyArgs:
    if rollout.strategy == "Recreate":
        return apps.DeploymentStrategyArgs(type="Recreate")
    return apps.DeploymentStrategyArgs(
        type="RollingUpdate",
        rolling_update=apps.RollingUpdateDeploymentArgs(
            max_surge=rollout.max_surge, max_unavailable=rollout.max_unavailable
        ),
    )


def bandwidth_annotations(settings: GuestbookSettings) -> dict[str, str]:
    """Traffic shaping by the CNI bandwidth plugin (seed: extending-kubernetes)."""
    result = {}
    if settings.ingress_bandwidth:
        result["kubernetes.io/ingress-bandwidth"] = settings.ingress_bandwidth
    if settings.egress_bandwidth:
        result["kubernetes.io/egress-bandwidth"] = settings.egress_bandwidth
    return result


def _redis_probe(initial_delay: int, command: list[str] | None = None) -> core.ProbeArgs:
    return exec_probe(command or ["redis-cli", "-p", str(REDIS_PORT), "ping"], initial_delay_seconds=initial_delay,
                      period_seconds=10, timeout_seconds=3, failure_threshold=3)


def follower_probe_script() -> str:
    return (SCRIPTS_DIR / FOLLOWER_PROBE).read_text(encoding="utf-8")


def follower_probe_command() -> list[str]:
    """Ready only when linked to the leader and synced (scripts/redis-follower-ready.sh)."""
    return ["sh", f"{FOLLOWER_PROBE_MOUNT}/{FOLLOWER_PROBE}"]


def redis_container(name: str, image: str, spec: Resources, args: list[str], *, follower: bool = False,
                    ) -> core.ContainerArgs:
    mounts = [core.VolumeMountArgs(name="data", mount_path="/data")]
    if follower:
        mounts.append(core.VolumeMountArgs(name="probe", mount_path=FOLLOWER_PROBE_MOUNT, read_only=True))
    return core.ContainerArgs(
        name=name,
        image=image,
        image_pull_policy="IfNotPresent",
        args=args,
        env=[core.EnvVarArgs(name="REDIS_PORT", value=str(REDIS_PORT))] if follower else None,
        ports=[core.ContainerPortArgs(name="redis", container_port=REDIS_PORT)],
        resources=resources(spec),
        readiness_probe=_redis_probe(5, follower_probe_command() if follower else None),
        liveness_probe=_redis_probe(15),
        security_context=restricted(),
        volume_mounts=mounts,
    )


def redis_pod(container: core.ContainerArgs, probe_config_map: pulumi.Input[str] | None = None) -> core.PodSpecArgs:
    volumes = [core.VolumeArgs(name="data", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="1Gi"))]
    if probe_config_map is not None:
        volumes.append(core.VolumeArgs(name="probe", config_map=core.ConfigMapVolumeSourceArgs(
            name=probe_config_map, default_mode=0o444)))
    return core.PodSpecArgs(
        automount_service_account_token=False,
        enable_service_links=False,
        security_context=core.PodSecurityContextArgs(
            run_as_non_root=True,
            run_as_user=REDIS_UID,
            run_as_group=REDIS_UID,
            fs_group=REDIS_UID,
            seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        containers=[container],
        volumes=volumes,
    )


def frontend_container(settings: GuestbookSettings) -> core.ContainerArgs:
    return core.ContainerArgs(
        name="php-redis",
        image=settings.frontend_image,
        image_pull_policy="IfNotPresent",
        # The frontend finds Redis by DNS name (not by injected service variables).
        env=[core.EnvVarArgs(name="GET_HOSTS_FROM", value="dns")],
        ports=[core.ContainerPortArgs(name="http", container_port=FRONTEND_PORT)],
        resources=resources(settings.frontend_resources),
        readiness_probe=http_probe("/", FRONTEND_PORT, initial_delay_seconds=5, period_seconds=10, timeout_seconds=3),
        liveness_probe=http_probe("/", FRONTEND_PORT, initial_delay_seconds=20, period_seconds=20, timeout_seconds=3),
        # Apache starts as root to bind :80 and then switches to www-data: it needs exactly these.
        security_context=restricted(add=["NET_BIND_SERVICE", "SETUID", "SETGID"]),
        volume_mounts=[core.VolumeMountArgs(name=name, mount_path=path) for name, path in FRONTEND_SCRATCH.items()],
    )


@dataclass(frozen=True)
class DeploymentPlan:
    """One of the Guestbook's Deployments: what differs between the leader, the followers and the frontend."""

    resource_name: str
    object_name: str
    component: str
    role: str | None
    replicas: int
    strategy: apps.DeploymentStrategyArgs
    image: str
    pod: core.PodSpecArgs
    pod_annotations: dict[str, str] | None = None
    ignore_changes: list[str] | None = None
    depends_on: list[pulumi.Resource] | None = None


def scratch_volumes(names: list[str]) -> list[core.VolumeArgs]:
    return [core.VolumeArgs(name=name, empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="64Mi")) for name in names]


class Guestbook(pulumi.ComponentResource):
    """Redis leader + followers and the PHP frontend, as Deployments with real rollout settings."""

    def __init__(self, name: str, args: GuestbookArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__(tokens.GUESTBOOK, name, None, opts)
        self._args = args
        settings = args.settings

        # In place before the pods: under the namespace's default deny (workload.py) they are their only way out.
        self.network_policies = self._network_policies(name)
        leader = self._deployment(DeploymentPlan(
            resource_name=f"{name}-redis-leader",
            object_name="redis-leader",
            component="redis",
            role="leader",
            replicas=1,
            # One writer at a time: a surge would briefly run two unsynchronised leaders.
            strategy=apps.DeploymentStrategyArgs(type="Recreate"),
            image=settings.redis_primary_image,
            pod=redis_pod(
                redis_container(
                    "redis",
                    settings.redis_primary_image,
                    settings.redis_resources,
                    ["--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"],
                )
            ),
        ))
        self.leader_service = self._service(
            f"{name}-redis-leader-svc", "redis-leader", selector("redis", "leader"), "redis", REDIS_PORT, "ClusterIP"
        )
        probe_script = follower_probe_script()
        self.follower_probe = core.ConfigMap(
            f"{name}-redis-follower-probe",
            metadata=self._metadata("redis-follower-probe", labels("redis", "follower")),
            data={FOLLOWER_PROBE: probe_script},
            opts=ResourceOptions(parent=self),
        )
        follower = self._deployment(DeploymentPlan(
            resource_name=f"{name}-redis-follower",
            object_name="redis-follower",
            component="redis",
            role="follower",
            replicas=settings.redis_replicas,
            strategy=strategy(settings.rollout),
            image=settings.redis_replica_image,
            pod=redis_pod(
                redis_container(
                    "redis",
                    settings.redis_replica_image,
                    settings.redis_resources,
                    [
                        "--port",
                        str(REDIS_PORT),
                        "--replicaof",
                        "redis-leader",
                        str(REDIS_PORT),
                        "--replica-read-only",
                        "yes",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    follower=True,
                ),
                self.follower_probe.metadata.name,
            ),
            # A changed probe rolls the followers (the ConfigMap's name stays).
            pod_annotations={"checksum/probe": hashlib.sha256(probe_script.encode()).hexdigest()},
            depends_on=[self.follower_probe],
        ))
        self.follower_service = self._service(
            f"{name}-redis-follower-svc",
            "redis-follower",
            selector("redis", "follower"),
            "redis",
            REDIS_PORT,
            "ClusterIP",
        )
        frontend_pod = core.PodSpecArgs(
            automount_service_account_token=False,
            enable_service_links=False,
            security_context=core.PodSecurityContextArgs(
                seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault")
            ),
            containers=[frontend_container(settings)],
            volumes=scratch_volumes(list(FRONTEND_SCRATCH)),
        )
        self.frontend = self._deployment(DeploymentPlan(
            resource_name=f"{name}-frontend",
            object_name="frontend",
            component="frontend",
            role=None,
            replicas=settings.frontend_replicas,
            strategy=strategy(settings.rollout),
            image=settings.frontend_image,
            pod=frontend_pod,
            pod_annotations=bandwidth_annotations(settings),
            # With an autoscaler, frontendReplicas is only the start: the HPA owns the count
            # afterwards, and `pulumi up` must not reset it.
            ignore_changes=["spec.replicas"] if settings.autoscaler else None,
        ))
        self.frontend_service = self._service(
            f"{name}-frontend-svc",
            "frontend",
            selector("frontend"),
            "http",
            FRONTEND_PORT,
            settings.frontend_service_type,
            settings.frontend_node_port,
        )
        self.autoscaler = self._autoscaler(name) if settings.autoscaler else None

        self.frontend_address = self.frontend_service.metadata.apply(
            lambda m: f"{m.name}.{m.namespace}.svc" if m and m.name else ""
        )
        self.register_outputs(
            {
                "redisLeader": leader.metadata.name,
                "redisFollower": follower.metadata.name,
                "frontend": self.frontend.metadata.name,
                "frontendService": self.frontend_service.metadata.name,
                "frontendAddress": self.frontend_address,
            }
        )

    def _metadata(
        self, object_name: str, object_labels: dict[str, str], annotations: dict[str, str] | None = None
    ) -> meta.ObjectMetaArgs:
        return metadata(object_name, labels=object_labels, namespace=self._args.namespace, annotations=annotations)

    def _deployment(self, plan: DeploymentPlan) -> apps.Deployment:
        rollout = self._args.settings.rollout
        pod_labels = labels(plan.component, plan.role)
        return apps.Deployment(
            plan.resource_name,
            metadata=self._metadata(plan.object_name, pod_labels, {CHANGE_CAUSE: change_cause(rollout, plan.image)}),
            spec=apps.DeploymentSpecArgs(
                replicas=plan.replicas,
                selector=meta.LabelSelectorArgs(match_labels=selector(plan.component, plan.role)),
                strategy=plan.strategy,
                min_ready_seconds=rollout.min_ready_seconds,
                progress_deadline_seconds=rollout.progress_deadline_seconds,
                revision_history_limit=rollout.revision_history_limit,
                template=core.PodTemplateSpecArgs(
                    metadata=meta.ObjectMetaArgs(labels=pod_labels, annotations=plan.pod_annotations or None),
                    spec=self._spread(plan),
                ),
            ),
            opts=ResourceOptions(parent=self, ignore_changes=plan.ignore_changes,
                                 depends_on=[*self.network_policies, *(plan.depends_on or [])]),
        )

    def _spread(self, plan: DeploymentPlan) -> core.PodSpecArgs:
        """The plan's pod, spread over the zones; each rollout's ReplicaSet spreads on its own."""
        if plan.replicas < 2:
            return plan.pod
        spread = spread_over_zones(selector(plan.component, plan.role), self._args.zone_spread,
                                   match_label_keys=["pod-template-hash"])
        pod = copy.copy(plan.pod)
        pod.topology_spread_constraints = spread
        return pod

    def _service(
        self,
        resource_name: str,
        object_name: str,
        pod_selector: dict[str, str],
        port_name: str,
        port: int,
        service_type: str,
        node_port: int | None = None,
    ) -> core.Service:
        return core.Service(
            resource_name,
            metadata=self._metadata(object_name, labels(pod_selector["app.kubernetes.io/component"])),
            spec=core.ServiceSpecArgs(
                type=service_type,
                selector=pod_selector,
                ports=[core.ServicePortArgs(name=port_name, port=port, target_port=port_name, protocol="TCP",
                                            node_port=node_port)],
            ),
            opts=ResourceOptions(parent=self),
        )

    def _network_policies(self, name: str) -> list[k8s.networking.v1.NetworkPolicy]:
        """In: Redis only from the frontend and the followers, the frontend on :80 from anywhere. Out:
        the frontend and the followers only to Redis (DNS is the namespace's rule, workload.py)."""
        net = k8s.networking.v1
        redis = [net.NetworkPolicyPeerArgs(pod_selector=meta.LabelSelectorArgs(match_labels=selector("redis")))]
        redis_peers = [
            net.NetworkPolicyPeerArgs(pod_selector=meta.LabelSelectorArgs(match_labels=selector(component)))
            for component in ("frontend", "redis")
        ]
        to_redis = [net.NetworkPolicyEgressRuleArgs(to=redis, ports=[net.NetworkPolicyPortArgs(port=REDIS_PORT,
                                                                                               protocol="TCP")])]
        rules = {
            "redis": (REDIS_PORT, redis_peers),
            "frontend": (FRONTEND_PORT, None),
        }
        return [
            net.NetworkPolicy(
                f"{name}-{component}-netpol",
                metadata=self._metadata(f"guestbook-{component}", labels(component)),
                spec=net.NetworkPolicySpecArgs(
                    pod_selector=meta.LabelSelectorArgs(match_labels=selector(component)),
                    policy_types=["Ingress", "Egress"],
                    ingress=[
                        net.NetworkPolicyIngressRuleArgs(
                            from_=peers,
                            ports=[net.NetworkPolicyPortArgs(port=port, protocol="TCP")],
                        )
                    ],
                    egress=to_redis,
                ),
                opts=ResourceOptions(parent=self),
            )
            for component, (port, peers) in rules.items()
        ]

    def _autoscaler(self, name: str) -> k8s.autoscaling.v2.HorizontalPodAutoscaler:
        hpa = self._args.settings.autoscaler
        assert hpa is not None
        v2 = k8s.autoscaling.v2
        return v2.HorizontalPodAutoscaler(
            f"{name}-frontend-hpa",
            metadata=self._metadata("frontend", labels("frontend")),
            spec=v2.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=v2.CrossVersionObjectReferenceArgs(
                    api_version="apps/v1", kind="Deployment", name="frontend"
                ),
                min_replicas=hpa.min_replicas,
                max_replicas=hpa.max_replicas,
                metrics=[
                    v2.MetricSpecArgs(
                        type="Resource",
                        resource=v2.ResourceMetricSourceArgs(
                            name="cpu",
                            target=v2.MetricTargetArgs(type="Utilization", average_utilization=hpa.cpu_target_percent),
                        ),
                    )
                ],
            ),
            opts=ResourceOptions(parent=self),
        )
