"""etcd backups on the masters: the timer, its service's environment, and where snapshots go.

Every master runs the same timer at the same wall-clock times; atomic-etcd-backup (node/files)
snapshots etcd only on the member that leads it, so each interval yields one snapshot, taken from
the member that holds every committed write, and uploads it with SSE-KMS to the stack's own
bucket below the stack's own prefix (the only place the masters' role may write).
"""

from __future__ import annotations

from dataclasses import dataclass

from components.facts import PROJECT
from components.node.formats import env_file
from components.node.layout import ClusterLayout, NodeSpec
from components.node.units import SYSTEMD_DIR

BACKUP_PROGRAM = "/usr/local/sbin/atomic-etcd-backup"
BACKUP_ENV = "/etc/atomic/etcd-backup.env"
BACKUP_UNIT = "atomic-etcd-backup"
BACKUP_SERVICE = f"{SYSTEMD_DIR}/{BACKUP_UNIT}.service"
BACKUP_TIMER = f"{SYSTEMD_DIR}/{BACKUP_UNIT}.timer"
DAY_MINUTES = 24 * 60


@dataclass(frozen=True)
class BackupTarget:
    """Where the snapshots go: known only once the bucket and its key exist (plain values here)."""

    bucket: str
    kms_key: str  # the key's ARN: uploads name it, and the bucket refuses any other


def backup_prefix(layout: ClusterLayout) -> str:
    """The stack's own prefix in its bucket (as its SSM path: project, stack, cluster)."""
    return f"{PROJECT}/{layout.stack}/{layout.name}/etcd"


def on_calendar(interval_minutes: int) -> str:
    """A systemd calendar event every `interval_minutes`, at the same wall-clock times everywhere."""
    if interval_minutes <= 0 or DAY_MINUTES % interval_minutes:
        raise ValueError(f"a backup interval must divide a day, not {interval_minutes} minutes")
    if interval_minutes < 60:
        return f"*-*-* *:00/{interval_minutes}:00"
    if interval_minutes % 60:
        raise ValueError(f"a backup interval above an hour must be whole hours, not {interval_minutes} minutes")
    if interval_minutes == DAY_MINUTES:
        return "*-*-* 00:00:00"  # systemd refuses a repetition of 24 hours (00/24)
    return f"*-*-* 00/{interval_minutes // 60}:00:00"


def render_backup_timer(interval_minutes: int) -> str:
    return f"""[Unit]
Description=etcd snapshot every {interval_minutes} minutes

[Timer]
OnCalendar={on_calendar(interval_minutes)}
AccuracySec=1s
Persistent=true

[Install]
WantedBy=timers.target
"""


def render_backup_env(layout: ClusterLayout, node: NodeSpec, target: BackupTarget) -> str:
    """Where atomic-etcd-backup puts a snapshot (the region comes from cluster.env, which the unit reads too)."""
    return env_file(f"etcd backups from {node.name} (when it leads)", [
        ("", "ATOMIC_BACKUP_BUCKET", target.bucket),
        ("", "ATOMIC_BACKUP_KMS_KEY", target.kms_key),
        ("", "ATOMIC_BACKUP_PREFIX", backup_prefix(layout)),
    ])
