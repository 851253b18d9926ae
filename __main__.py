"""atomic-mysql: validate the stack's settings, then compose cluster and workload.

Settings are read and checked before anything is registered; a bad value stops the program
with one line (components/settings/load.py). The parts and what each may import:
docs/architecture.md.
"""

import pulumi
from pulumi import ResourceOptions

from components.facts import MYSQL_PORT, MYSQL_RECORD_OUTPUT
from components.kube.provider import provider_for_existing
from components.settings.load import load_settings
from components.workload.mysql.backup import BackupTarget
from components.workload.workload import Workload, WorkloadArgs

settings = load_settings()
# What each part of the workload waits for on a cluster this stack builds (WorkloadArgs).
mysql_needs: list[pulumi.Resource] = []
guestbook_needs: list[pulumi.Resource] = []
frontend_address: pulumi.Output[str] | None = None
guestbook = settings.guestbook
mysql_backup: BackupTarget | None = None
mysql = settings.mysql

if settings.cluster is not None:
    from components.addons.cluster_addons import ClusterAddons, ClusterAddonsArgs
    from components.aws.cluster import AtomicCluster, AtomicClusterArgs
    from components.kube.provider import provider_for_cluster

    cluster = AtomicCluster("cluster", AtomicClusterArgs(settings=settings.cluster))
    provider = provider_for_cluster("kubernetes", cluster.kubeconfig, settings.cluster.name)
    addons = ClusterAddons(
        "addons",
        ClusterAddonsArgs(
            settings=settings.cluster.addons,
            cluster_id=settings.cluster.cluster_id,
            region=settings.cluster.region,
            dns_service_ip=cluster.layout.dns_service_ip,
            tags=settings.tags,
        ),
        opts=ResourceOptions(providers=[provider]),
    )
    # Policies enforced before the first pod starts: a MySQL pod clones and takes accounts at once.
    mysql_needs += [addons.dns, addons.storage, addons.network_policy]
    guestbook_needs += [addons.dns, addons.network_policy]
    # The data volumes live in the cluster's class for them, with the IOPS and throughput the settings
    # checked against mysqlStorageSize (the default class stays at gp3's baseline for any other claim).
    mysql = mysql.stored_in(settings.cluster.addons.data_volume.storage_class)
    if settings.cluster.frontend_lb is not None:
        # No cloud controller runs on this cluster: the frontend's load balancer is the cluster's
        # NLB, in front of a fixed NodePort of the frontend Service.
        guestbook = guestbook.served_by_node_port(settings.cluster.frontend_lb.node_port)
        frontend_address = cluster.frontend_address
    pulumi.export("apiEndpoint", cluster.api_endpoint)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("masterPrivateIps", cluster.master_private_ips)
    pulumi.export("masterNames", cluster.master_names)
    pulumi.export("minionPrivateIps", cluster.minion_private_ips)
    # What `python -m tools.etcd` works with: where the snapshots are, and the way in over SSH.
    if cluster.backups is not None:
        pulumi.export("etcdBackupBucket", cluster.backups.bucket)
        pulumi.export("etcdBackupPrefix", cluster.backup_prefix)
    if cluster.connect_endpoint_id is not None:
        pulumi.export("instanceConnectEndpointId", cluster.connect_endpoint_id)
    pulumi.export("storageClass", addons.storage_class_name)
    if settings.mysql.backup is not None:
        # The set's backups go to a bucket of this stack, through a key scoped to the set's prefix.
        from components.aws.backup_bucket import MysqlBackupStore, MysqlBackupStoreArgs

        backup = settings.mysql.backup
        restore_source = ((backup.restore_bucket, backup.restore_prefix or backup.prefix)
                          if backup.restore_from and (backup.restore_bucket or backup.restore_prefix) else None)
        store = MysqlBackupStore("mysql-backups", MysqlBackupStoreArgs(
            set_name=settings.mysql.name, prefix=backup.prefix, retention_days=backup.retention_days,
            protect=settings.protect, tags=settings.tags, cluster_id=settings.cluster.cluster_id,
            restore_source=restore_source,
            region=backup.region))
        mysql_backup = BackupTarget(bucket=store.bucket_name, access_key_id=store.access_key_id,
                                    secret_access_key=store.secret_access_key, server_side_encryption="aws:kms",
                                    kms_key_id=store.storage.key_arn)
        mysql_needs += [store.storage.ready]
        pulumi.export("mysqlBackupBucket", store.bucket_name)
else:
    assert settings.existing is not None, "settings give either a cluster to build or an existing one"
    provider = provider_for_existing("kubernetes", settings.existing)
    if settings.mysql.backup is not None:
        secrets = settings.mysql_secrets
        user_bucket = settings.mysql.backup.bucket
        assert user_bucket and secrets.backup_access_key_id and secrets.backup_secret_access_key
        mysql_backup = BackupTarget(bucket=user_bucket, access_key_id=secrets.backup_access_key_id,
                                    secret_access_key=secrets.backup_secret_access_key)
        pulumi.export("mysqlBackupBucket", user_bucket)

workload = Workload(
    "workload",
    WorkloadArgs(
        namespace=settings.namespace,
        mysql=mysql,
        mysql_secrets=settings.mysql_secrets,
        guestbook=guestbook,
        # The aws cluster's kubelets all register their zone (atomic-kubelet-identity): the spread over
        # zones is required there; an existing cluster's nodes may have no zone label at all.
        zone_spread="required" if settings.cluster is not None else "preferred",
        mysql_needs=mysql_needs,
        guestbook_needs=guestbook_needs,
        mysql_backup=mysql_backup,
        # Rendering YAML, the provider applies nothing (no Server-Side Apply): no claim to patch.
        grow_claims=settings.existing is None or settings.existing.render_yaml_to is None,
    ),
    opts=ResourceOptions(providers=[provider]),
)
pulumi.export("namespace", settings.namespace)
pulumi.export("mysqlPrimaryHost", workload.mysql.primary_host)
pulumi.export("mysqlReadHost", workload.mysql.read_host)
pulumi.export("mysqlPort", MYSQL_PORT)
pulumi.export("mysqlSecretName", workload.mysql.secret_name)
# The set's CA (public): what clients verify the servers' certificates with (make verify reads it).
pulumi.export("mysqlCaCert", workload.mysql.ca_cert)
pulumi.export("mysqlReplicas", workload.mysql.replicas)
if settings.mysql.backup is not None:
    pulumi.export("mysqlBackupPrefix", settings.mysql.backup.prefix)
# What the set's volumes hold after this run: the next run reads it back and refuses a change they cannot
# take (a downgrade, another engine, a smaller size) before anything is registered (settings/load.py).
assert settings.mysql_record is not None, "load_settings always computes the record this run leaves"
pulumi.export(MYSQL_RECORD_OUTPUT, settings.mysql_record.as_output())
pulumi.export("frontendAddress", workload.frontend_address if frontend_address is None else frontend_address)
