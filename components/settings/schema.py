"""The typed settings of one stack: frozen dataclasses handed to the components.

Plain data only. settings/load.py (the one reader of pulumi.Config) builds them and checks
every value first; everything else reads them. pulumi is imported for type annotations only,
so the node renderers, which take ClusterSettings, never load it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pulumi

ClusterMode = Literal["aws", "existing"]
Engine = Literal["mysql", "mariadb"]
AntiAffinity = Literal["soft", "hard"]
RetentionPolicy = Literal["Retain", "Delete"]
RolloutStrategy = Literal["RollingUpdate", "Recreate"]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]
NatGateways = Literal["perZone", "single"]


@dataclass(frozen=True)
class Resources:
    """Container requests and limits as Kubernetes quantities."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    def to_k8s(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@dataclass(frozen=True)
class BackupSettings:
    """Backups of the MySQL set to S3, binlog archiving and restore (docs/backup.md)."""

    schedule: str                 # cron, 5 fields, UTC
    retention_days: int
    max_age_hours: int            # the last good backup is too old after this (verify, alerts)
    archive_seconds: int          # longest delay before a change is in an archived binlog
    prefix: str                   # this set's key prefix in the bucket, no trailing slash
    region: str
    bucket: str | None            # None: the aws stack builds the bucket (aws/backup_bucket.py)
    endpoint: str | None          # an S3-compatible endpoint; None = AWS S3
    restore_from: str | None = None   # a backup id or a UTC time (see Pulumi.yaml)
    restore_prefix: str | None = None  # where the restore reads; None = prefix
    restore_bucket: str | None = None  # the bucket it reads; None = the set's own


@dataclass(frozen=True)
class CloneSettings:
    """How a new member gets its data: the previous ordinal's sidecar streams a backup, the new
    pod's clone-mysql init container receives, extracts and prepares it."""

    clone_resources: Resources  # the clone-mysql init container (receive, extract, prepare)
    sidecar_resources: Resources  # the sidecar (serves the backup stream, sets up replication)
    send_threads: int  # the backup tool's --parallel in the sidecar
    receive_threads: int  # the stream tool's --parallel in the clone-mysql init container


@dataclass(frozen=True)
class MysqlSettings:
    """The replicated MySQL set (issue: MySqlReplicatedSet)."""

    name: str
    engine: Engine
    version: str
    replicas: int
    image: str
    backup_image: str
    storage_size: str
    storage_class: str | None
    resources: Resources
    anti_affinity: AntiAffinity
    pvc_when_deleted: RetentionPolicy
    pvc_when_scaled: RetentionPolicy
    pdb_max_unavailable: int
    protect: bool
    clone: CloneSettings
    # Replication applier threads of a replica (MariaDB slave_parallel_threads in optimistic mode,
    # MySQL replica_parallel_workers); 1 applies serially.
    apply_threads: int
    # Seconds pulumi-kubernetes waits for the set to be ready; None = computed (mysql/budget.py).
    rollout_timeout: int | None = None
    backup: BackupSettings | None = None
    # The cluster runs the Prometheus operator: a ServiceMonitor and a PrometheusRule for the set.
    prometheus_operator: bool = False

    def stored_in(self, storage_class: str) -> MysqlSettings:
        """The set on the cluster's own class for its data volumes (a composition step of __main__)."""
        return replace(self, storage_class=storage_class)


@dataclass(frozen=True)
class MysqlRecord:
    """What a stack's set holds on its volumes: where its claims are (namespace, set name), the engine
    and version that last opened the data dirs, the claims' size and class ("" = the cluster's default).
    Each run exports the one it leaves (stack output facts.MYSQL_RECORD_OUTPUT) and the next run
    compares its settings with it (settings/load.py)."""

    namespace: str
    name: str
    engine: str
    version: str
    storage_size: str
    storage_class: str

    def as_output(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name, "engine": self.engine, "version": self.version,
                "storageSize": self.storage_size, "storageClass": self.storage_class}


@dataclass(frozen=True)
class MysqlSecrets:
    """Passwords given with `pulumi config set --secret`; None means generate one."""

    root_password: pulumi.Output[str] | None = None
    replication_password: pulumi.Output[str] | None = None
    backup_password: pulumi.Output[str] | None = None
    verify_password: pulumi.Output[str] | None = None
    exporter_password: pulumi.Output[str] | None = None
    # clusterMode=existing with backups: the access key the pods use for the bucket.
    backup_access_key_id: pulumi.Output[str] | None = None
    backup_secret_access_key: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class DataVolumeSettings:
    """The StorageClass of the MySQL data volumes on the aws cluster: gp3 with provisioned performance."""

    storage_class: str
    iops: int
    throughput_mibs: int


@dataclass(frozen=True)
class AddonSettings:
    """What the aws cluster runs in kube-system so that the workload can run on it."""

    coredns_replicas: int
    storage_class: str
    volume_reclaim_policy: RetentionPolicy
    metrics_server: bool
    # The EBS controller takes host ports (hostNetwork): never more replicas than minions.
    ebs_controller_replicas: int
    data_volume: DataVolumeSettings
    minions: int = 1  # nodes the DaemonSets run on


@dataclass(frozen=True)
class FrontendLbSettings:
    """frontendServiceType=LoadBalancer on the aws cluster: an NLB in front of a fixed NodePort
    (the cluster runs no cloud controller, so nothing would serve a LoadBalancer Service)."""

    node_port: int
    listen_port: int
    source_cidrs: tuple[str, ...]


@dataclass(frozen=True)
class EtcdBackupSettings:
    """Snapshots of etcd, taken by the leader on a timer and uploaded to the stack's own bucket."""

    interval_minutes: int  # divides a day: the timer fires at the same wall-clock times on every master
    retention_days: int


@dataclass(frozen=True)
class ClusterSettings:
    """The Fedora-Atomic-style cluster on EC2 (issue: AtomicCluster)."""

    name: str
    region: str
    vpc_cidr: str
    subnet_cidr: str
    existing_vpc_id: str | None
    existing_subnet_id: str | None
    availability_zone: str | None
    master_count: int
    minion_count: int
    master_instance_type: str
    minion_instance_type: str
    root_volume_gb: int
    ami_id: str | None
    fedora_release: int
    key_name: str | None
    admin_cidrs: tuple[str, ...]
    allow_world_admin: bool
    enable_cockpit: bool
    enable_cadvisor: bool
    enable_nodeports: bool
    kubernetes_version: str
    service_cidr: str
    pod_cidr: str
    protect: bool
    addons: AddonSettings
    frontend_lb: FrontendLbSettings | None = None
    # An NLB on 6443 in front of every master for kubectl and the stack's own Kubernetes provider.
    api_load_balancer: bool = False
    # Seconds the readiness gate waits for the API and every minion (aws/gate.py).
    ready_timeout: int = 1800
    # Unique to the stack (facts.cluster_id): what IAM conditions and volume tags key on.
    cluster_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    # Availability zones by name; empty: one zone (availability_zone, else the region's first).
    zones: tuple[str, ...] = ()
    # Nodes in private subnets (private_subnet_cidr and the blocks after it, one per zone) behind
    # NAT gateways; subnet_cidr's blocks are then the public subnets of the load balancers and NATs.
    private_nodes: bool = False
    private_subnet_cidr: str | None = None
    nat_gateways: NatGateways = "perZone"
    # SSH: through the EC2 Instance Connect Endpoint's security group, and from adminCidrs only if asked.
    instance_connect_endpoint: bool = False
    ssh_from_admin_cidrs: bool = False
    etcd_backup: EtcdBackupSettings | None = None
    # The node `make roll-nodes` is replacing in this run (facts.ROLL_NODE_ENV), else None: only its
    # launch inputs (facts.NODE_LAUNCH_INPUTS) follow the program; every other node keeps its own.
    rolling_node: str | None = None

    @property
    def zone_count(self) -> int:
        return len(self.zones) or 1

    @property
    def node_subnet_cidr(self) -> str:
        """The first zone's subnet the nodes take their addresses from."""
        if self.private_nodes:
            assert self.private_subnet_cidr is not None, "settings give private nodes a private subnet"
            return self.private_subnet_cidr
        return self.subnet_cidr


@dataclass(frozen=True)
class ExistingClusterSettings:
    """Deploy the workload onto a cluster that already exists."""

    kubeconfig: pulumi.Output[str] | None
    context: str | None
    render_yaml_to: str | None


@dataclass(frozen=True)
class RolloutSettings:
    """Deployment rollout knobs (seed: pod-replicaset-deployment)."""

    strategy: RolloutStrategy
    max_surge: int | str
    max_unavailable: int | str
    min_ready_seconds: int
    progress_deadline_seconds: int
    revision_history_limit: int
    change_cause: str | None


@dataclass(frozen=True)
class AutoscalerSettings:
    min_replicas: int
    max_replicas: int
    cpu_target_percent: int


@dataclass(frozen=True)
class GuestbookSettings:
    """The seed's Guestbook: Redis primary, Redis replicas, PHP frontend."""

    enabled: bool
    frontend_image: str
    frontend_replicas: int
    frontend_service_type: ServiceType
    redis_primary_image: str
    redis_replica_image: str
    redis_replicas: int
    frontend_resources: Resources
    redis_resources: Resources
    rollout: RolloutSettings
    autoscaler: AutoscalerSettings | None
    ingress_bandwidth: str | None
    egress_bandwidth: str | None
    # A fixed nodePort for the frontend Service (the aws cluster's NLB targets it); None lets Kubernetes pick.
    frontend_node_port: int | None = None

    def served_by_node_port(self, node_port: int) -> GuestbookSettings:
        """The frontend behind a load balancer the program builds itself: a NodePort Service on a
        fixed port, since nothing in the cluster (no cloud controller) would serve a LoadBalancer."""
        return replace(self, frontend_service_type="NodePort", frontend_node_port=node_port)


@dataclass(frozen=True)
class StackSettings:
    project: str
    stack: str
    cluster_mode: ClusterMode
    namespace: str
    protect: bool
    cluster: ClusterSettings | None
    existing: ExistingClusterSettings | None
    mysql: MysqlSettings
    mysql_secrets: MysqlSecrets
    guestbook: GuestbookSettings
    tags: dict[str, str]
    # What the set's volumes hold after this run (exported), and what they held before it (None: no
    # earlier run recorded one: a new stack, or one last deployed before the record existed).
    mysql_record: MysqlRecord | None = None
    mysql_deployed: MysqlRecord | None = None
