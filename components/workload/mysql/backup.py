"""What backups, the binlog archive, restores and metrics add to the MySQL set (docs/backup.md).

Pieces of the pod and the objects beside the StatefulSet, as functions of plain settings:
set.py calls them and registers the objects. The behaviour is in scripts/ (backup-agent.sh,
backup.sh, backup-job.sh, archive-binlogs.sh, restore.sh, s3.sh).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s

from components.facts import BACKUP_AGENT_PORT, BACKUP_METRICS_PORT, MYSQLD_EXPORTER_PORT
from components.pins import MYSQLD_EXPORTER_IMAGE, RCLONE_BINARY, RCLONE_IMAGE
from components.settings.schema import BackupSettings, MysqlSettings, Resources
from components.workload.mysql import config as mysql_config
from components.workload.mysql.config import MYSQL_SOCKET

core = k8s.core.v1
meta = k8s.meta.v1

S3_SECRET_MOUNT = "/etc/mysql-backup-s3"
S3_TOOLS_MOUNT = "/opt/s3-tools"
EXPORTER_CNF_KEY = "exporter.cnf"
EXPORTER_CNF_MOUNT = "/etc/mysqld-exporter"
# The longest one backup may take before the agent gives up on it (and the job's deadline).
BACKUP_MAX_SECONDS = 6 * 3600

AGENT_RESOURCES = Resources(cpu_request="100m", memory_request="128Mi", cpu_limit="1", memory_limit="512Mi")
TOOLS_RESOURCES = Resources(cpu_request="50m", memory_request="32Mi", cpu_limit="200m", memory_limit="64Mi")
EXPORTER_RESOURCES = Resources(cpu_request="50m", memory_request="32Mi", cpu_limit="250m", memory_limit="128Mi")
JOB_RESOURCES = Resources(cpu_request="50m", memory_request="32Mi", cpu_limit="250m", memory_limit="128Mi")
RESTORE_RESOURCES = Resources(cpu_request="250m", memory_request="512Mi", cpu_limit="2", memory_limit="2Gi")


@dataclass
class BackupTarget:
    """Where the set's backups go and the key that may write there.

    On the aws cluster the stack builds both (aws/backup_bucket.py); in existing mode they come
    from the settings. The key's halves are Pulumi secrets end to end."""

    bucket: pulumi.Input[str]
    access_key_id: pulumi.Input[str]
    secret_access_key: pulumi.Input[str]
    # aws:kms when the bucket encrypts with a KMS key by default (S3's ETag is then no MD5), and
    # that key's ARN: an upload asking for aws:kms without one gets S3's AWS managed key instead.
    server_side_encryption: str = ""
    kms_key_id: pulumi.Input[str] = ""


def job_label(set_name: str) -> dict[str, str]:
    """Pods carrying it may ask the members' backup agents for a backup (NetworkPolicy)."""
    return {f"{set_name}-backup-job": "true"}


# The pods of a Prometheus (the operator labels every Prometheus pod so, prometheus-operator
# pkg/prometheus/server: applicationNameLabelValue; a Prometheus run otherwise is labelled the same to scrape).
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}
# Link-local (the instance metadata service among it) stays closed to the pods even on the S3 port:
# IMDSv2 with hop limit 1 keeps pods out by design (docs/backup.md, "Credentials").
S3_EGRESS_EXCEPT = ("169.254.0.0/16",)


def s3_port(backup: BackupSettings) -> int:
    """The port the pods reach the bucket on: the endpoint's (settings check it is https) or S3's 443."""
    return (urlsplit(backup.endpoint).port or 443) if backup.endpoint else 443


def s3_egress_policy(selector: Mapping[str, str], backup: BackupSettings
                     ) -> k8s.networking.v1.NetworkPolicySpecArgs:
    """Out of the set's pods to the bucket: the agent's uploads, the archiver's and a restore's reads.
    S3 has no address range a NetworkPolicy can name (the API has no FQDN peers and S3's ranges are
    thousands of changing prefixes), so it is the bucket's port anywhere outside the cluster but
    link-local; NetworkPolicy selects pods, not containers, so mysqld's container shares it (mysqld
    opens no outbound connection of its own but replication, which the set's own policy admits)."""
    net = k8s.networking.v1
    return net.NetworkPolicySpecArgs(
        pod_selector=meta.LabelSelectorArgs(match_labels=dict(selector)),
        policy_types=["Egress"],
        egress=[net.NetworkPolicyEgressRuleArgs(
            to=[net.NetworkPolicyPeerArgs(ip_block=net.IPBlockArgs(cidr="0.0.0.0/0", except_=list(S3_EGRESS_EXCEPT)))],
            ports=[net.NetworkPolicyPortArgs(protocol="TCP", port=s3_port(backup))])],
    )


def job_egress_policy(set_name: str, members: Mapping[str, str]) -> k8s.networking.v1.NetworkPolicySpecArgs:
    """Out of the backup CronJob's pods: only to the members' agents (DNS is the namespace's rule)."""
    net = k8s.networking.v1
    return net.NetworkPolicySpecArgs(
        pod_selector=meta.LabelSelectorArgs(match_labels=job_label(set_name)),
        policy_types=["Egress"],
        egress=[net.NetworkPolicyEgressRuleArgs(
            to=[net.NetworkPolicyPeerArgs(pod_selector=meta.LabelSelectorArgs(match_labels=dict(members)))],
            ports=[net.NetworkPolicyPortArgs(protocol="TCP", port=BACKUP_AGENT_PORT)])],
    )


def prometheus_peer() -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """Prometheus's pods in whatever namespace it runs (one peer: the namespace AND the pod selector)."""
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=meta.LabelSelectorArgs(),
        pod_selector=meta.LabelSelectorArgs(match_labels=dict(PROMETHEUS_POD_LABELS)))


def s3_secret_name(set_name: str) -> str:
    return f"{set_name}-backup-s3"


def cron_job_name(set_name: str) -> str:
    return f"{set_name}-backup"


def s3_env(backup: BackupSettings, target: BackupTarget) -> dict[str, pulumi.Input[str]]:
    return {
        "BACKUP_BUCKET": target.bucket,
        "BACKUP_PREFIX": backup.prefix,
        "BACKUP_REGION": backup.region,
        "BACKUP_ENDPOINT": backup.endpoint or "",
        "BACKUP_SSE": target.server_side_encryption,
        "BACKUP_SSE_KMS_KEY_ID": target.kms_key_id,
        "BACKUP_KEY_DIR": S3_SECRET_MOUNT,
        "S3_TOOLS_DIR": S3_TOOLS_MOUNT,
    }


def agent_env(settings: MysqlSettings, backup: BackupSettings) -> dict[str, str]:
    return {
        "BACKUP_AGENT_PORT": str(BACKUP_AGENT_PORT),
        "BACKUP_METRICS_PORT": str(BACKUP_METRICS_PORT),
        "BACKUP_RETENTION_DAYS": str(backup.retention_days),
        "BINLOG_ARCHIVE_SECONDS": str(backup.archive_seconds),
        "ARCHIVE_POLL_SECONDS": str(min(10, max(1, backup.archive_seconds // 3))),
        "BACKUP_MAX_SECONDS": str(BACKUP_MAX_SECONDS),
        # The same copy threads as the clone's sender: both stream the same data dir with the same tool.
        "BACKUP_PARALLEL": mysql_config.clone_env(settings.clone)["sidecar"]["BACKUP_PARALLEL"],
        "AGENT_STATE_DIR": "/run/backup-agent",
        # sidecar-ready.sh (the agent's liveness) checks this port.
        "CLONE_PORT": str(BACKUP_AGENT_PORT),
    }


def restore_env(backup: BackupSettings) -> dict[str, str]:
    return {"RESTORE_FROM": backup.restore_from or "", "RESTORE_PREFIX": backup.restore_prefix or "",
            "RESTORE_BUCKET": backup.restore_bucket or ""}


def s3_tools_container(security: core.SecurityContextArgs, resources: core.ResourceRequirementsArgs
                       ) -> core.ContainerArgs:
    """Copies rclone (a static binary) out of its pinned image for the backup image's scripts."""
    return core.ContainerArgs(
        name="s3-tools", image=RCLONE_IMAGE, image_pull_policy="IfNotPresent",
        command=["/bin/cp", RCLONE_BINARY, f"{S3_TOOLS_MOUNT}/rclone"],
        security_context=security, resources=resources,
        volume_mounts=[core.VolumeMountArgs(name="s3-tools", mount_path=S3_TOOLS_MOUNT)],
    )


def exporter_container(security: core.SecurityContextArgs, resources: core.ResourceRequirementsArgs
                       ) -> core.ContainerArgs:
    return core.ContainerArgs(
        name="metrics", image=MYSQLD_EXPORTER_IMAGE, image_pull_policy="IfNotPresent",
        args=[f"--config.my-cnf={EXPORTER_CNF_MOUNT}/{EXPORTER_CNF_KEY}",
              f"--web.listen-address=:{MYSQLD_EXPORTER_PORT}"],
        ports=[core.ContainerPortArgs(name="metrics", container_port=MYSQLD_EXPORTER_PORT, protocol="TCP")],
        security_context=security, resources=resources,
        # The exporter answers / whether or not mysqld does (mysql_up says which), so neither probe
        # ever ties the member's readiness to the database's.
        liveness_probe=core.ProbeArgs(http_get=core.HTTPGetActionArgs(path="/", port="metrics"),
                                      period_seconds=30, timeout_seconds=5, failure_threshold=3),
        readiness_probe=core.ProbeArgs(http_get=core.HTTPGetActionArgs(path="/", port="metrics"),
                                       period_seconds=10, timeout_seconds=5, failure_threshold=3),
        # mysqld's socket directory: the exporter logs in over the socket (config.exporter_cnf).
        volume_mounts=[core.VolumeMountArgs(name="exporter-cnf", mount_path=EXPORTER_CNF_MOUNT, read_only=True),
                       core.VolumeMountArgs(name="run", mount_path=str(PurePosixPath(MYSQL_SOCKET).parent))],
    )


def exporter_volume(secret_name: str) -> core.VolumeArgs:
    return core.VolumeArgs(name="exporter-cnf", secret=core.SecretVolumeSourceArgs(
        secret_name=secret_name, default_mode=0o440,
        items=[core.KeyToPathArgs(key=EXPORTER_CNF_KEY, path=EXPORTER_CNF_KEY)]))


def backup_volumes(set_name: str) -> list[core.VolumeArgs]:
    return [
        core.VolumeArgs(name="s3-credentials", secret=core.SecretVolumeSourceArgs(
            secret_name=s3_secret_name(set_name), default_mode=0o440)),
        core.VolumeArgs(name="s3-tools", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="128Mi")),
        core.VolumeArgs(name="agent-state", empty_dir=core.EmptyDirVolumeSourceArgs(medium="Memory",
                                                                                     size_limit="1Mi")),
    ]


def s3_mounts() -> list[core.VolumeMountArgs]:
    return [core.VolumeMountArgs(name="s3-credentials", mount_path=S3_SECRET_MOUNT, read_only=True),
            core.VolumeMountArgs(name="s3-tools", mount_path=S3_TOOLS_MOUNT, read_only=True)]


def agent_ports() -> list[core.ContainerPortArgs]:
    return [core.ContainerPortArgs(name="backup-agent", container_port=BACKUP_AGENT_PORT, protocol="TCP"),
            core.ContainerPortArgs(name="agent-metrics", container_port=BACKUP_METRICS_PORT, protocol="TCP")]


# ---------------------------------------------------------------- the Prometheus operator's objects


def service_monitor(set_name: str, selector: dict[str, str]) -> dict[str, Any]:
    """monitoring.coreos.com/v1 ServiceMonitor spec: both metrics ports of every member, through
    the headless Service (which lists not-ready members too, so a broken replica is still seen)."""
    return {
        "selector": {"matchLabels": selector},
        "endpoints": [
            {"port": "metrics", "interval": "30s", "scrapeTimeout": "10s"},
            {"port": "agent-metrics", "interval": "60s", "scrapeTimeout": "10s"},
        ],
    }


def alert_rules(settings: MysqlSettings) -> dict[str, Any]:
    """monitoring.coreos.com/v1 PrometheusRule spec: replication stopped or lagging, the last good
    backup too old, the binlog archive behind (metric names of mysqld_exporter v0.16 and of
    backup-agent.sh)."""
    name = settings.name
    job = f'job="{name}"'
    rules: list[dict[str, Any]] = [
        {"alert": "MySQLReplicationStopped",
         "expr": (f"mysql_slave_status_slave_io_running{{{job}}} == 0"
                  f" or mysql_slave_status_slave_sql_running{{{job}}} == 0"),
         "for": "5m", "labels": {"severity": "critical"},
         "annotations": {"summary": "Replication on {{ $labels.pod }} is stopped",
                         "description": "An I/O or SQL thread of {{ $labels.pod }} is not running: it serves"
                                        " stale reads and has left the read Service (its readiness fails)."}},
        {"alert": "MySQLReplicationLagging",
         "expr": f"mysql_slave_status_seconds_behind_master{{{job}}} > 300",
         "for": "10m", "labels": {"severity": "warning"},
         "annotations": {"summary": "{{ $labels.pod }} is {{ $value }}s behind the primary"}},
    ]
    if settings.backup is not None:
        backup = settings.backup
        rules += [
            {"alert": "MySQLBackupTooOld",
             "expr": (f"time() - max(atomic_mysql_backup_last_success_timestamp_seconds{{{job}}})"
                      f" > {backup.max_age_hours * 3600}"),
             "for": "15m", "labels": {"severity": "critical"},
             "annotations": {"summary": f"The last good backup of {name} is older than {backup.max_age_hours}h",
                             "description": f"kubectl logs job/<the latest {name}-backup job>; make verify reports"
                                            " the last good backup's age."}},
            {"alert": "MySQLBinlogArchiveBehind",
             "expr": (f"max(atomic_mysql_binlog_archive_pending_files{{{job}}}) > 0 and "
                      f"time() - max(atomic_mysql_binlog_archive_oldest_pending_timestamp_seconds{{{job}}})"
                      f" > {backup.archive_seconds * 2 + 300}"),
             "for": "5m", "labels": {"severity": "critical"},
             "annotations": {"summary": f"Closed binlogs of {name}-0 are not reaching the bucket",
                             "description": "A restore to a point after the oldest pending binlog would be refused."}},
            {"alert": "MySQLBinlogArchiveStalled",
             "expr": f"time() - max(atomic_mysql_binlog_archive_checked_timestamp_seconds{{{job}}}) > 600",
             "for": "5m", "labels": {"severity": "critical"},
             "annotations": {"summary": f"The binlog archiver of {name}-0 has not run for 10 minutes"}},
            {"alert": "MySQLBinlogArchiveGap",
             "expr": f"max(atomic_mysql_binlog_archive_gap{{{job}}}) > 0",
             "labels": {"severity": "critical"},
             "annotations": {"summary": f"A binlog of {name}-0 was purged before it was archived",
                             "description": "Point-in-time restores cannot cross the gap: take a backup now."}},
        ]
    return {"groups": [{"name": f"{name}.rules", "rules": rules}]}


def job_command() -> list[str]:
    return mysql_config.script_command("backup-job.sh")
