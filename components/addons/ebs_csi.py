"""EbsCsiDriver: the AWS EBS CSI driver, the cluster's default StorageClass and the data volumes' class.

The objects are upstream's kustomize manifests (deploy/kubernetes/base of
kubernetes-sigs/aws-ebs-csi-driver: same names, selector labels, RBAC and socket
paths), changed where this self-managed cluster differs from EKS:

* No IRSA, no Pod Identity, no cloud controller. The controller's AWS calls use the
  minion's instance-profile credentials, which only IMDS hands out, and IMDSv2 with
  hop limit 1 answers only the host's own network namespace. So the controller runs
  with hostNetwork (dnsPolicy Default: the node's resolver, so storage does not wait for
  CoreDNS; it reaches the API by the service IP the kubelet injects), AWS_REGION set so it
  needs no instance metadata, and its HTTP endpoints on ports the node plugin never
  uses: the sidecars' on 127.0.0.1 (the kubelet probes from the host's own namespace),
  the livenessprobe's /healthz on all addresses (its only listen flag every release has).
  Declared host ports make two controller pods on one minion impossible for the
  scheduler, whatever the (soft) anti-affinity says.
* The node plugin stays in the pod network and cannot reach IMDS at all: it reads its
  instance id from the Node's providerID (aws:///<az>/<id>, the kubelet's
  --provider-id) and zone, region and instance type from the Node's labels
  (--metadata-sources=kubernetes, driver >= v1.45.0; earlier releases first waited for
  IMDS to time out). It calls no AWS API.
* Every volume is tagged for this cluster (--k8s-tag-cluster-id, --extra-tags), which
  is what aws/iam.ebs_csi_policy scopes the minions' IAM permissions with (the tag contract
  is components/facts.py's).
* Containers carry requests, limits and two probes each (the policy pack); upstream's
  sidecars have neither a CPU limit nor a readiness probe.

* Two classes. The default one, `gp3`, provisions at gp3's baseline (3,000 IOPS, 125 MiB/s,
  included in the price) for any claim of any size. The MySQL data volumes get their own,
  `gp3-mysql`, with provisioned IOPS and throughput: those are fixed numbers whose validity
  depends on the volume's size (at most 500 IOPS per GiB), which is known for the data volumes
  (mysqlStorageSize, checked by settings/load.py) and not for an arbitrary claim; and what they
  cost (per volume-month) belongs to the volumes that need them. StorageClass parameters are
  immutable: a change replaces the class (deleted first: a replacement by the same name would
  otherwise fail, pulumi/pulumi-kubernetes#3767), and applies to volumes provisioned afterwards.
  Volumes already provisioned keep what they were created with: change them in place with
  `aws ec2 modify-volume --iops N --throughput M` (docs/mysql.md, "Volumes").

No snapshotter: the cluster has no VolumeSnapshot CRDs and nothing takes snapshots.
The node plugin's pods get a NetworkPolicy admitting no ingress (the kubelet's probes
come from the node, which policies always allow).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components import tokens
from components.facts import (
    CLUSTER_ID_TAG,
    EBS_MANAGED_TAG,
    GP3_SIZE_GIB,
    KUBE_SYSTEM,
    check_cluster_name,
    gp3_problem,
)
from components.kube.objects import (
    http_probe,
    metadata,
    owned,
    resources,
    restricted,
    rollout_timeouts,
    spread_by_host,
)
from components.pins import (
    CSI_ATTACHER_IMAGE,
    CSI_LIVENESS_PROBE_IMAGE,
    CSI_PROVISIONER_IMAGE,
    CSI_REGISTRAR_IMAGE,
    CSI_RESIZER_IMAGE,
    EBS_CSI_DRIVER_IMAGE,
    EBS_CSI_GP3_MAX_IOPS,
)
from components.settings.schema import DataVolumeSettings, Resources

meta = k8s.meta.v1
core = k8s.core.v1
apps = k8s.apps.v1
rbac = k8s.rbac.v1
policy = k8s.policy.v1
storage = k8s.storage.v1

DRIVER_NAME = "ebs.csi.aws.com"
NAMESPACE = KUBE_SYSTEM
CONTROLLER_NAME = "ebs-csi-controller"
NODE_NAME = "ebs-csi-node"
CONTROLLER_SA = "ebs-csi-controller-sa"
NODE_SA = "ebs-csi-node-sa"
PROVISIONER_ROLE = "ebs-external-provisioner-role"
ATTACHER_ROLE = "ebs-external-attacher-role"
RESIZER_ROLE = "ebs-external-resizer-role"
NODE_ROLE = "ebs-csi-node-role"
LEASES_ROLE = "ebs-csi-leases-role"
BINDINGS = {
    PROVISIONER_ROLE: "ebs-csi-provisioner-binding",
    ATTACHER_ROLE: "ebs-csi-attacher-binding",
    RESIZER_ROLE: "ebs-csi-resizer-binding",
    NODE_ROLE: "ebs-csi-node-getter-binding",
    LEASES_ROLE: "ebs-csi-leases-rolebinding",
}

# Controller sockets: an emptyDir shared by the pod's containers (upstream's paths).
CONTROLLER_SOCKET_DIR = "/var/lib/csi/sockets/pluginproxy/"
CONTROLLER_SOCKET = f"{CONTROLLER_SOCKET_DIR}csi.sock"
# Node sockets: the plugin's directory on the host, where the kubelet dials it.
KUBELET_DIR = "/var/lib/kubelet"
NODE_PLUGIN_DIR = f"{KUBELET_DIR}/plugins/{DRIVER_NAME}/"
NODE_REGISTRATION_DIR = f"{KUBELET_DIR}/plugins_registry/"
NODE_SOCKET = "/csi/csi.sock"

# The controller shares the minion's network namespace: none of these may be a port the node
# plugin (or anything upstream defaults to, 9808) listens on. The leader-elected sidecars bind
# 127.0.0.1, so their metrics and lease health never answer on the node's addresses.
CONTROLLER_HOST = "127.0.0.1"
CONTROLLER_PORTS = {"healthz": 9809, "provisioner": 9810, "attacher": 9811, "resizer": 9812}
NODE_PORTS = {"healthz": 9808, "registrar": 9813}

# Upstream's requests and memory limit; the CPU limits are ours (the policy pack wants one).
SIDECAR_RESOURCES = Resources(cpu_request="10m", memory_request="40Mi", cpu_limit="100m", memory_limit="256Mi")
# The node plugin runs mkfs and resize2fs on first use of a volume.
PLUGIN_RESOURCES = Resources(cpu_request="10m", memory_request="40Mi", cpu_limit="500m", memory_limit="256Mi")
# Above 10000 so no host account shares it: the controller runs in the host's network namespace.
CONTROLLER_UID = 10999

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Keys the driver reserves or sets itself (pkg/cloud: AwsEbsDriverTagKey, VolumeNameTagKey, and with
# --k8s-tag-cluster-id: kubernetes.io/cluster/<id>=owned, KubernetesCluster, Name): an extra tag
# must not replace them.
_RESERVED_TAGS = {"CSIVolumeName", "CSIVolumeSnapshotName", EBS_MANAGED_TAG, "KubernetesCluster", "Name"}
_RESERVED_TAG_PREFIXES = ("kubernetes.io", "aws:")


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """Extra volume tags that --extra-tags (k=v,k=v) carries intact and that leave the driver's own alone."""
    for key, value in tags.items():
        if not key or len(key) > 128 or len(value) > 256:
            raise ValueError(f"tag {key!r}: keys are 1-128 characters, values at most 256")
        if "," in key or "=" in key or "," in value:
            raise ValueError(f"tag {key!r}={value!r}: ',' (and '=' in a key) would split the --extra-tags list")
        if key in _RESERVED_TAGS or key.startswith(_RESERVED_TAG_PREFIXES):
            raise ValueError(f"tag {key!r} is the driver's own: an extra tag may not set it")
    return tags


@dataclass
class EbsCsiDriverArgs:
    cluster_id: str  # the stack-unique cluster id volumes are tagged for (--k8s-tag-cluster-id, extra tags)
    region: str
    storage_class: str  # e.g. "gp3"; made the cluster default class
    reclaim_policy: Literal["Delete", "Retain"]
    controller_replicas: int = 2
    tags: dict[str, str] = field(default_factory=dict)  # extra AWS tags for every volume (--extra-tags)
    # A second, non-default class with provisioned gp3 performance (the MySQL data volumes'); None: none.
    data_volume: DataVolumeSettings | None = None
    nodes: int = 1  # minions the node plugin runs on (its update rolls over them in batches)

    def __post_init__(self) -> None:
        check_cluster_name(self.cluster_id)
        if not isinstance(self.region, str) or not _REGION.match(self.region):
            raise ValueError(f"region {self.region!r} is not an AWS region name")
        _check_class_name(self.storage_class)
        if self.reclaim_policy not in ("Delete", "Retain"):
            raise ValueError(f"reclaim policy {self.reclaim_policy!r} is neither Delete nor Retain")
        replicas = self.controller_replicas
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"controller replicas must be an integer >= 1, got {replicas!r}")
        check_tags(self.tags)
        if self.data_volume is not None:
            check_data_volume(self.data_volume, self.storage_class)


def _check_class_name(name: object) -> None:
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise ValueError(f"storage class {name!r} is not a DNS subdomain name")


def check_data_volume(volume: DataVolumeSettings, default_class: str) -> DataVolumeSettings:
    """A class the driver can provision for some size: gp3's ranges (at its largest size, where only
    the per-IOPS ratio still binds) and what the pinned driver requests at most."""
    _check_class_name(volume.storage_class)
    if volume.storage_class == default_class:
        raise ValueError(f"the data volumes' class must not be the default class {default_class!r}")
    for name, value in (("iops", volume.iops), ("throughput", volume.throughput_mibs)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"data volume {name} {value!r} is not a whole number")
    problem = gp3_problem(GP3_SIZE_GIB[1], volume.iops, volume.throughput_mibs)
    if problem is not None:
        raise ValueError(f"data volume {problem[0]}: {problem[1]}")
    if volume.iops > EBS_CSI_GP3_MAX_IOPS:
        raise ValueError(f"data volume iops {volume.iops}: the pinned EBS CSI driver requests at most "
                         f"{EBS_CSI_GP3_MAX_IOPS} (pins.EBS_CSI_GP3_MAX_IOPS)")
    return volume


# --------------------------------------------------------------------------
# Argument lists (pure)
# --------------------------------------------------------------------------


def extra_tags(args: EbsCsiDriverArgs) -> dict[str, str]:
    """The caller's tags plus ClusterId=<id>: every AWS resource of a cluster carries it."""
    return {**check_tags(args.tags), CLUSTER_ID_TAG: args.cluster_id}


def controller_plugin_args(args: EbsCsiDriverArgs) -> list[str]:
    tags = ",".join(f"{k}={v}" for k, v in sorted(extra_tags(args).items()))
    return [
        "controller",
        "--endpoint=$(CSI_ENDPOINT)",
        f"--k8s-tag-cluster-id={args.cluster_id}",
        f"--extra-tags={tags}",
        "--batching=true",
        "--logging-format=text",
        "--user-agent-extra=atomic-mysql",
        "--v=2",
    ]


def _http_endpoint(port_name: str) -> str:
    return f"--http-endpoint={CONTROLLER_HOST}:{CONTROLLER_PORTS[port_name]}"


def provisioner_args() -> list[str]:
    return [
        "--csi-address=$(ADDRESS)",
        "--v=2",
        "--timeout=60s",
        "--feature-gates=Topology=true",
        "--extra-create-metadata",
        "--leader-election=true",
        "--default-fstype=ext4",
        _http_endpoint("provisioner"),
    ]


def attacher_args() -> list[str]:
    return ["--csi-address=$(ADDRESS)", "--v=2", "--timeout=60s", "--leader-election=true", _http_endpoint("attacher")]


def resizer_args() -> list[str]:
    return [
        "--csi-address=$(ADDRESS)",
        "--v=2",
        "--timeout=60s",
        "--handle-volume-inuse-error=false",
        # Two replicas: only the leader may act on a PVC.
        "--leader-election=true",
        _http_endpoint("resizer"),
    ]


def node_plugin_args() -> list[str]:
    return [
        "node",
        "--endpoint=$(CSI_ENDPOINT)",
        f"--csi-mount-point-prefix={KUBELET_DIR}/plugins/kubernetes.io/csi/{DRIVER_NAME}/",
        # The Node object, not IMDS: the pod cannot reach IMDS (hop limit 1).
        "--metadata-sources=kubernetes",
        # The Kubernetes source reports no block device mappings; a minion has exactly its root volume.
        "--reserved-volume-attachments=1",
        "--logging-format=text",
        "--v=2",
    ]


def registrar_args() -> list[str]:
    return [
        "--csi-address=$(ADDRESS)",
        "--kubelet-registration-path=$(DRIVER_REG_SOCK_PATH)",
        f"--http-endpoint=:{NODE_PORTS['registrar']}",
        "--v=2",
    ]


# --------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------


def selector(app: str) -> dict[str, str]:
    """Upstream's selector labels (kubectl -l app=ebs-csi-controller keeps working)."""
    return {"app": app, "app.kubernetes.io/name": "aws-ebs-csi-driver"}


def labels(app: str | None = None) -> dict[str, str]:
    base = {"app.kubernetes.io/name": "aws-ebs-csi-driver"} if app is None else selector(app)
    return owned(base)


def _meta(name: str, namespaced: bool = True, app: str | None = None,
          annotations: dict[str, str] | None = None) -> meta.ObjectMetaArgs:
    return metadata(name, labels=labels(app), namespace=NAMESPACE if namespaced else None, annotations=annotations)


def _http_probe(
    path: str, port: str | int, host: str | None, period: int, timeout: int, delay: int = 0, failures: int = 3
) -> core.ProbeArgs:
    return http_probe(path, port, scheme="HTTP", host=host, initial_delay_seconds=delay or None,
                      period_seconds=period, timeout_seconds=timeout, failure_threshold=failures)


def _port(name: str, number: int) -> core.ContainerPortArgs:
    return core.ContainerPortArgs(name=name, container_port=number, protocol="TCP")


def _env(name: str, value: str) -> core.EnvVarArgs:
    return core.EnvVarArgs(name=name, value=value)


def _node_name_env() -> core.EnvVarArgs:
    return core.EnvVarArgs(
        name="CSI_NODE_NAME",
        value_from=core.EnvVarSourceArgs(field_ref=core.ObjectFieldSelectorArgs(field_path="spec.nodeName")),
    )


def _leader_elected_sidecar(name: str, image: str, container_args: list[str]) -> core.ContainerArgs:
    """csi-provisioner/attacher/resizer: /healthz/leader-election on --http-endpoint fails only on a
    leader that has stopped renewing its lease (csi-lib-utils' recommended liveness probe)."""
    port = name.removeprefix("csi-")  # the CONTROLLER_PORTS key and the port's name
    return core.ContainerArgs(
        name=name,
        image=image,
        image_pull_policy="IfNotPresent",
        args=container_args,
        env=[_env("ADDRESS", CONTROLLER_SOCKET)],
        ports=[_port(port, CONTROLLER_PORTS[port])],
        resources=resources(SIDECAR_RESOURCES),
        liveness_probe=_http_probe("/healthz/leader-election", port, CONTROLLER_HOST, 20, 10, delay=10),
        readiness_probe=_http_probe("/healthz/leader-election", port, CONTROLLER_HOST, 10, 5),
        security_context=restricted(),
        volume_mounts=[core.VolumeMountArgs(name="socket-dir", mount_path=CONTROLLER_SOCKET_DIR)],
    )


def _liveness_probe_sidecar(port: int, mount: str, volume: str) -> core.ContainerArgs:
    """Serves /healthz for the plugin's probes (it calls the driver's CSI Probe). Its own probes are a TCP
    connect: they check the sidecar's listener without restarting it for the driver's failures."""
    tcp = core.ProbeArgs(tcp_socket=core.TCPSocketActionArgs(port=port), period_seconds=10, timeout_seconds=3)
    return core.ContainerArgs(
        name="liveness-probe",
        image=CSI_LIVENESS_PROBE_IMAGE,
        image_pull_policy="IfNotPresent",
        # --health-port: in every livenessprobe release (binds all addresses of the pod's namespace).
        args=[f"--csi-address={NODE_SOCKET}", f"--health-port={port}"],
        resources=resources(SIDECAR_RESOURCES),
        liveness_probe=tcp,
        readiness_probe=tcp,
        security_context=restricted(),
        volume_mounts=[core.VolumeMountArgs(name=volume, mount_path=mount)],
    )


def controller_containers(args: EbsCsiDriverArgs) -> list[core.ContainerArgs]:
    healthz = CONTROLLER_PORTS["healthz"]
    plugin = core.ContainerArgs(
        name="ebs-plugin",
        image=EBS_CSI_DRIVER_IMAGE,
        image_pull_policy="IfNotPresent",
        args=controller_plugin_args(args),
        env=[
            _env("CSI_ENDPOINT", f"unix://{CONTROLLER_SOCKET}"),
            _node_name_env(),
            # With the region given, the controller needs no instance metadata, only IMDS credentials.
            _env("AWS_REGION", args.region),
        ],
        # The liveness-probe sidecar listens here; declared on this container so its probes can name it.
        ports=[_port("healthz", healthz)],
        resources=resources(PLUGIN_RESOURCES),
        liveness_probe=_http_probe("/healthz", "healthz", None, 10, 3, delay=10, failures=5),
        readiness_probe=_http_probe("/healthz", "healthz", None, 10, 3, failures=3),
        security_context=restricted(),
        volume_mounts=[core.VolumeMountArgs(name="socket-dir", mount_path=CONTROLLER_SOCKET_DIR)],
    )
    return [
        plugin,
        _leader_elected_sidecar("csi-provisioner", CSI_PROVISIONER_IMAGE, provisioner_args()),
        _leader_elected_sidecar("csi-attacher", CSI_ATTACHER_IMAGE, attacher_args()),
        _leader_elected_sidecar("csi-resizer", CSI_RESIZER_IMAGE, resizer_args()),
        _liveness_probe_sidecar(healthz, "/csi", "socket-dir"),
    ]


def controller_pod_spec(args: EbsCsiDriverArgs) -> core.PodSpecArgs:
    return core.PodSpecArgs(
        service_account_name=CONTROLLER_SA,
        # The sidecars watch PVCs, PVs and VolumeAttachments with this token.
        automount_service_account_token=True,
        enable_service_links=False,
        priority_class_name="system-cluster-critical",
        host_network=True,
        # The node's resolver (VPC DNS) for the EC2 endpoint: volumes must not depend on CoreDNS.
        dns_policy="Default",
        node_selector={"kubernetes.io/os": "linux"},
        affinity=spread_by_host(selector(CONTROLLER_NAME)),
        # Upstream's: no masters exist as nodes, so nothing about control-plane taints.
        tolerations=[
            core.TolerationArgs(key="CriticalAddonsOnly", operator="Exists"),
            core.TolerationArgs(operator="Exists", effect="NoExecute", toleration_seconds=300),
        ],
        security_context=core.PodSecurityContextArgs(
            run_as_non_root=True,
            run_as_user=CONTROLLER_UID,
            run_as_group=CONTROLLER_UID,
            fs_group=CONTROLLER_UID,
            seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        containers=controller_containers(args),
        volumes=[core.VolumeArgs(name="socket-dir", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="1Mi"))],
    )


def node_containers() -> list[core.ContainerArgs]:
    plugin = core.ContainerArgs(
        name="ebs-plugin",
        image=EBS_CSI_DRIVER_IMAGE,
        image_pull_policy="IfNotPresent",
        args=node_plugin_args(),
        env=[_env("CSI_ENDPOINT", f"unix:{NODE_SOCKET}"), _node_name_env()],
        ports=[_port("healthz", NODE_PORTS["healthz"])],
        resources=resources(PLUGIN_RESOURCES),
        liveness_probe=_http_probe("/healthz", "healthz", None, 10, 3, delay=10, failures=5),
        readiness_probe=_http_probe("/healthz", "healthz", None, 5, 3),
        # Formats and mounts block devices and propagates the mounts back to the kubelet.
        security_context=core.SecurityContextArgs(privileged=True, read_only_root_filesystem=True),
        # Waits for the node's VolumeAttachments to be detached before the pod goes (upstream's hook).
        lifecycle=core.LifecycleArgs(
            pre_stop=core.LifecycleHandlerArgs(
                exec_=core.ExecActionArgs(command=["/bin/aws-ebs-csi-driver", "pre-stop-hook"])
            )
        ),
        volume_mounts=[
            core.VolumeMountArgs(name="kubelet-dir", mount_path=KUBELET_DIR, mount_propagation="Bidirectional"),
            core.VolumeMountArgs(name="plugin-dir", mount_path="/csi"),
            core.VolumeMountArgs(name="device-dir", mount_path="/dev"),
        ],
    )
    registrar = core.ContainerArgs(
        name="node-driver-registrar",
        image=CSI_REGISTRAR_IMAGE,
        image_pull_policy="IfNotPresent",
        args=registrar_args(),
        env=[_env("ADDRESS", NODE_SOCKET), _env("DRIVER_REG_SOCK_PATH", f"{NODE_PLUGIN_DIR}csi.sock")],
        ports=[_port("registrar", NODE_PORTS["registrar"])],
        resources=resources(SIDECAR_RESOURCES),
        # Upstream's liveness: exits non-zero until the kubelet has taken the registration (a file the
        # registrar writes into probe-dir on the kubelet's GetInfo call).
        liveness_probe=core.ProbeArgs(
            exec_=core.ExecActionArgs(
                command=[
                    "/csi-node-driver-registrar",
                    "--kubelet-registration-path=$(DRIVER_REG_SOCK_PATH)",
                    "--mode=kubelet-registration-probe",
                ]
            ),
            initial_delay_seconds=30,
            period_seconds=90,
            timeout_seconds=15,
        ),
        # /healthz on --http-endpoint: the registration socket exists.
        readiness_probe=_http_probe("/healthz", "registrar", None, 10, 3),
        security_context=restricted(),
        volume_mounts=[
            core.VolumeMountArgs(name="plugin-dir", mount_path="/csi"),
            core.VolumeMountArgs(name="registration-dir", mount_path="/registration"),
            core.VolumeMountArgs(name="probe-dir", mount_path=NODE_PLUGIN_DIR),
        ],
    )
    return [plugin, registrar, _liveness_probe_sidecar(NODE_PORTS["healthz"], "/csi", "plugin-dir")]


def _host_path(name: str, path: str, kind: str) -> core.VolumeArgs:
    return core.VolumeArgs(name=name, host_path=core.HostPathVolumeSourceArgs(path=path, type=kind))


def node_pod_spec() -> core.PodSpecArgs:
    return core.PodSpecArgs(
        service_account_name=NODE_SA,
        # The plugin reads its Node (providerID, labels) and removes its startup taint.
        automount_service_account_token=True,
        enable_service_links=False,
        priority_class_name="system-node-critical",
        node_selector={"kubernetes.io/os": "linux"},
        # The a1 family needs a different image (upstream's exclusion).
        affinity=core.AffinityArgs(
            node_affinity=core.NodeAffinityArgs(
                required_during_scheduling_ignored_during_execution=core.NodeSelectorArgs(
                    node_selector_terms=[
                        core.NodeSelectorTermArgs(
                            match_expressions=[
                                core.NodeSelectorRequirementArgs(
                                    key="node.kubernetes.io/instance-type",
                                    operator="NotIn",
                                    values=[
                                        f"a1.{size}" for size in ("medium", "large", "xlarge", "2xlarge", "4xlarge")
                                    ],
                                )
                            ]
                        )
                    ]
                )
            )
        ),
        # Every node that can run a pod with a volume needs the plugin, whatever its taints (upstream).
        tolerations=[core.TolerationArgs(operator="Exists")],
        termination_grace_period_seconds=30,
        # Root: the registrar and the plugin create sockets in the kubelet's root-owned directories.
        security_context=core.PodSecurityContextArgs(
            run_as_non_root=False,
            run_as_user=0,
            run_as_group=0,
            fs_group=0,
            seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        containers=node_containers(),
        volumes=[
            _host_path("kubelet-dir", KUBELET_DIR, "Directory"),
            _host_path("plugin-dir", NODE_PLUGIN_DIR, "DirectoryOrCreate"),
            _host_path("registration-dir", NODE_REGISTRATION_DIR, "Directory"),
            _host_path("device-dir", "/dev", "Directory"),
            core.VolumeArgs(name="probe-dir", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="1Mi")),
        ],
    )


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> rbac.PolicyRuleArgs:
    return rbac.PolicyRuleArgs(api_groups=groups, resources=resources, verbs=verbs)


READ = ["get", "list", "watch"]
EVENTS = ["list", "watch", "create", "update", "patch"]


def role_rules() -> dict[str, list[rbac.PolicyRuleArgs]]:
    """Upstream's rules, minus snapshot and VolumeAttributesClass writes (neither feature runs)."""
    return {
        PROVISIONER_ROLE: [
            _rule([""], ["persistentvolumes"], [*READ, "create", "patch", "delete"]),
            _rule([""], ["persistentvolumeclaims"], [*READ, "update"]),
            _rule(["storage.k8s.io"], ["storageclasses"], READ),
            _rule([""], ["events"], EVENTS),
            _rule(["snapshot.storage.k8s.io"], ["volumesnapshots", "volumesnapshotcontents"], ["get", "list"]),
            _rule(["storage.k8s.io"], ["csinodes", "volumeattachments", "volumeattributesclasses"], READ),
            _rule([""], ["nodes"], READ),
        ],
        ATTACHER_ROLE: [
            _rule([""], ["persistentvolumes"], [*READ, "patch"]),
            _rule(["storage.k8s.io"], ["csinodes"], READ),
            _rule(["storage.k8s.io"], ["volumeattachments"], [*READ, "patch"]),
            _rule(["storage.k8s.io"], ["volumeattachments/status"], ["patch"]),
        ],
        RESIZER_ROLE: [
            _rule([""], ["persistentvolumes"], [*READ, "patch"]),
            _rule([""], ["persistentvolumeclaims", "pods"], READ),
            _rule([""], ["persistentvolumeclaims/status"], ["patch"]),
            _rule([""], ["events"], EVENTS),
            _rule(["storage.k8s.io"], ["volumeattributesclasses"], READ),
        ],
        # Node metadata (get), startup-taint removal (patch, and a short-lived informer: list/watch),
        # CSINode allocatable check (get), the pre-stop hook's VolumeAttachment wait.
        NODE_ROLE: [
            _rule([""], ["nodes"], ["get", "patch", "list", "watch"]),
            _rule(["storage.k8s.io"], ["volumeattachments"], READ),
            _rule(["storage.k8s.io"], ["csinodes"], ["get"]),
        ],
    }


NODE_MAX_UNAVAILABLE_PERCENT = 10


def node_update_batches(nodes: int) -> int:
    """Rounds of the node plugin's rolling update: maxUnavailable 10%, which a DaemonSet rounds up."""
    per_round = max(1, math.ceil(nodes * NODE_MAX_UNAVAILABLE_PERCENT / 100))
    return math.ceil(nodes / per_round)


def node_network_policy_spec() -> k8s.networking.v1.NetworkPolicySpecArgs:
    """No ingress to the node plugin's pods: nothing dials them but the kubelet's probes, which come
    from the node itself and are always allowed. (The controller has hostNetwork, which no
    NetworkPolicy governs; binding to 127.0.0.1 is its fence.)"""
    return k8s.networking.v1.NetworkPolicySpecArgs(
        pod_selector=meta.LabelSelectorArgs(match_labels=selector(NODE_NAME)), policy_types=["Ingress"]
    )


STORAGE_CLASS_PARAMETERS = {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"}


def data_class_parameters(volume: DataVolumeSettings) -> dict[str, str]:
    """The data volumes' class: the default's, with the driver's gp3 `iops` and `throughput` (MiB/s)
    (docs/parameters.md of kubernetes-sigs/aws-ebs-csi-driver; StorageClass parameters are strings)."""
    return {**STORAGE_CLASS_PARAMETERS, "iops": str(volume.iops), "throughput": str(volume.throughput_mibs)}


class EbsCsiDriver(pulumi.ComponentResource):
    """The AWS EBS CSI driver (controller Deployment, node DaemonSet, RBAC, CSIDriver), the
    cluster's default StorageClass and, when asked, the data volumes' class."""

    storage_class_name: pulumi.Output[str]
    data_storage_class_name: pulumi.Output[str]
    driver_name: pulumi.Output[str]

    def __init__(self, name: str, args: EbsCsiDriverArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__(tokens.EBS_CSI_DRIVER, name, None, opts)
        child = ResourceOptions(parent=self)

        self.csi_driver = storage.CSIDriver(
            f"{name}-csidriver",
            metadata=_meta(DRIVER_NAME, namespaced=False),
            spec=storage.CSIDriverSpecArgs(attach_required=True, pod_info_on_mount=False, fs_group_policy="File"),
            opts=child,
        )
        self.controller_sa = core.ServiceAccount(f"{name}-controller-sa", metadata=_meta(CONTROLLER_SA), opts=child)
        self.node_sa = core.ServiceAccount(f"{name}-node-sa", metadata=_meta(NODE_SA), opts=child)
        bindings = self._rbac(name)

        controller_pod, node_pod = controller_pod_spec(args), node_pod_spec()
        self.controller = apps.Deployment(
            f"{name}-controller",
            metadata=_meta(CONTROLLER_NAME, app=CONTROLLER_NAME),
            spec=apps.DeploymentSpecArgs(
                replicas=args.controller_replicas,
                # Surge pods would need a minion whose host ports are free: replace one pod at a time instead.
                strategy=apps.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=apps.RollingUpdateDeploymentArgs(max_surge=0, max_unavailable=1),
                ),
                selector=meta.LabelSelectorArgs(match_labels=selector(CONTROLLER_NAME)),
                template=core.PodTemplateSpecArgs(
                    metadata=meta.ObjectMetaArgs(labels=labels(CONTROLLER_NAME)), spec=controller_pod
                ),
            ),
            # Sidecars without their permissions crash-loop until the bindings exist.
            opts=ResourceOptions(parent=self, depends_on=[self.csi_driver, *bindings],
                                 custom_timeouts=rollout_timeouts(controller_pod, args.controller_replicas)),
        )
        self.pdb = policy.PodDisruptionBudget(
            f"{name}-controller-pdb",
            metadata=_meta(CONTROLLER_NAME, app=CONTROLLER_NAME),
            spec=policy.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=meta.LabelSelectorArgs(match_labels=selector(CONTROLLER_NAME)),
                unhealthy_pod_eviction_policy="AlwaysAllow",
            ),
            opts=child,
        )
        self.node = apps.DaemonSet(
            f"{name}-node",
            metadata=_meta(NODE_NAME, app=NODE_NAME),
            spec=apps.DaemonSetSpecArgs(
                selector=meta.LabelSelectorArgs(match_labels=selector(NODE_NAME)),
                update_strategy=apps.DaemonSetUpdateStrategyArgs(
                    type="RollingUpdate", rolling_update=apps.RollingUpdateDaemonSetArgs(
                        max_unavailable=f"{NODE_MAX_UNAVAILABLE_PERCENT}%")
                ),
                template=core.PodTemplateSpecArgs(
                    metadata=meta.ObjectMetaArgs(labels=labels(NODE_NAME)), spec=node_pod
                ),
            ),
            opts=ResourceOptions(parent=self, depends_on=[self.csi_driver, *bindings],
                                 custom_timeouts=rollout_timeouts(node_pod, node_update_batches(args.nodes))),
        )
        self.node_network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-node-netpol",
            metadata=_meta(NODE_NAME, app=NODE_NAME),
            spec=node_network_policy_spec(),
            opts=child,
        )
        self.storage_class = self._storage_class(
            f"{name}-storageclass", args.storage_class, STORAGE_CLASS_PARAMETERS, args.reclaim_policy, default=True
        )
        self.data_storage_class = None if args.data_volume is None else self._storage_class(
            f"{name}-data-storageclass", args.data_volume.storage_class, data_class_parameters(args.data_volume),
            args.reclaim_policy, default=False,
        )

        self.storage_class_name = self.storage_class.metadata.apply(lambda m: str(m.name))
        self.data_storage_class_name = pulumi.Output.from_input("") if self.data_storage_class is None else \
            self.data_storage_class.metadata.apply(lambda m: str(m.name))
        self.driver_name = self.csi_driver.metadata.apply(lambda m: str(m.name))
        self.register_outputs({"storageClassName": self.storage_class_name,
                               "dataStorageClassName": self.data_storage_class_name, "driverName": self.driver_name})

    def _storage_class(self, resource_name: str, class_name: str, parameters: dict[str, str],
                       reclaim_policy: str, *, default: bool) -> storage.StorageClass:
        return storage.StorageClass(
            resource_name,
            metadata=_meta(
                class_name,
                namespaced=False,
                annotations={"storageclass.kubernetes.io/is-default-class": "true"} if default else None,
            ),
            provisioner=DRIVER_NAME,
            parameters=parameters,
            # A volume is created in the zone of the node its first pod lands on (EBS is zonal).
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            # Immutable (parameters, reclaim policy): a change replaces the class and applies to volumes
            # provisioned afterwards only. The name is fixed, so the old class goes first
            # (pulumi/pulumi-kubernetes#3767: create-before-delete fails with "already exists").
            reclaim_policy=reclaim_policy,
            opts=ResourceOptions(parent=self, delete_before_replace=True),
        )

    def _rbac(self, name: str) -> list[pulumi.Resource]:
        """ClusterRoles + bindings per sidecar, and the namespaced leases Role for leader election."""
        child = ResourceOptions(parent=self)
        subjects = {
            NODE_ROLE: self.node_sa,
            PROVISIONER_ROLE: self.controller_sa,
            ATTACHER_ROLE: self.controller_sa,
            RESIZER_ROLE: self.controller_sa,
        }
        bindings: list[pulumi.Resource] = []
        for role_name, rules in role_rules().items():
            short = role_name.removeprefix("ebs-").removesuffix("-role")
            role = rbac.ClusterRole(
                f"{name}-{short}-role", metadata=_meta(role_name, namespaced=False), rules=rules, opts=child
            )
            bindings.append(
                rbac.ClusterRoleBinding(
                    f"{name}-{short}-binding",
                    metadata=_meta(BINDINGS[role_name], namespaced=False),
                    role_ref=rbac.RoleRefArgs(
                        api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role.metadata.name
                    ),
                    subjects=[_subject(subjects[role_name])],
                    opts=child,
                )
            )
        leases = rbac.Role(
            f"{name}-leases-role",
            metadata=_meta(LEASES_ROLE),
            rules=[_rule(["coordination.k8s.io"], ["leases"], [*READ, "delete", "update", "create"])],
            opts=child,
        )
        bindings.append(
            rbac.RoleBinding(
                f"{name}-leases-binding",
                metadata=_meta(BINDINGS[LEASES_ROLE]),
                role_ref=rbac.RoleRefArgs(
                    api_group="rbac.authorization.k8s.io", kind="Role", name=leases.metadata.name
                ),
                subjects=[_subject(self.controller_sa)],
                opts=child,
            )
        )
        return bindings


def _subject(account: core.ServiceAccount) -> rbac.SubjectArgs:
    return rbac.SubjectArgs(kind="ServiceAccount", name=account.metadata.name, namespace=NAMESPACE)
