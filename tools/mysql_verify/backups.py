"""The backups' side of `make verify`: the last good backup's age and the binlog archive's lag,
read from the backup agent's metrics on ordinal 0 (backup-agent.sh, port 9105; e.g. through
`kubectl port-forward pod/mysql-0 9105`), the same numbers the PrometheusRule alerts on.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

_SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$")


class BackupMetricsError(Exception):
    """The agent's metrics could not be read; str() is the one line shown."""


@dataclass
class BackupResult:
    address: str
    last_backup_age_seconds: float | None = None
    archive_lag_seconds: float | None = None
    archive_pending_files: int | None = None
    last_archived_event_age_seconds: float | None = None
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        def hours(value: float | None) -> str:
            return "none known" if value is None else f"{value / 3600:.1f} h"

        lag = "unknown" if self.archive_lag_seconds is None else f"{self.archive_lag_seconds:.0f} s"
        return (f"backups ({self.address}): last good backup {hours(self.last_backup_age_seconds)} old; binlog archive"
                f" lag {lag} ({self.archive_pending_files} closed binlogs pending)")


def parse(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match:
            values[match.group(1)] = float(match.group(3))
    return values


def fetch(address: str, timeout: float) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as response:
            return parse(response.read().decode("utf-8", errors="replace"))
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise BackupMetricsError(f"backup agent metrics at {address}: {error}") from None


def judge(address: str, values: dict[str, float], *, max_age_hours: float, max_lag_seconds: float) -> BackupResult:
    """Problems: no good backup, one older than max_age_hours, a closed binlog waiting longer than
    max_lag_seconds, an archiver that stopped checking, or a gap in the archive."""
    result = BackupResult(address)
    if "atomic_mysql_backup_agent_up" not in values:
        result.problems.append("the endpoint serves no backup agent metrics (is it ordinal 0's port 9105?)")
        return result
    now = values.get("atomic_mysql_backup_agent_time_seconds", 0.0)
    finished = values.get("atomic_mysql_backup_last_success_timestamp_seconds", 0.0)
    if finished <= 0:
        result.problems.append("no good backup is known (none finished, or the agent cannot read"
                               " backups/latest.json)")
    else:
        result.last_backup_age_seconds = max(0.0, now - finished)
        if result.last_backup_age_seconds > max_age_hours * 3600:
            result.problems.append(f"the last good backup is {result.last_backup_age_seconds / 3600:.1f} h old,"
                                   f" more than {max_age_hours:g} h")
    if "atomic_mysql_binlog_archive_checked_timestamp_seconds" not in values:
        result.problems.append("no binlog archive metrics: is this ordinal 0's agent?")
        return result
    pending = int(values.get("atomic_mysql_binlog_archive_pending_files", 0))
    oldest = values.get("atomic_mysql_binlog_archive_oldest_pending_timestamp_seconds", 0.0)
    result.archive_pending_files = pending
    result.archive_lag_seconds = max(0.0, now - oldest) if pending and oldest > 0 else 0.0
    last_event = values.get("atomic_mysql_binlog_archive_last_event_timestamp_seconds", 0.0)
    result.last_archived_event_age_seconds = max(0.0, now - last_event) if last_event > 0 else None
    if result.archive_lag_seconds > max_lag_seconds:
        result.problems.append(f"{pending} closed binlogs wait to be archived, the oldest for"
                               f" {result.archive_lag_seconds:.0f} s (more than {max_lag_seconds:g} s)")
    checked = values.get("atomic_mysql_binlog_archive_checked_timestamp_seconds", 0.0)
    if now - checked > 600:
        result.problems.append(f"the binlog archiver last ran {now - checked:.0f} s ago")
    if values.get("atomic_mysql_binlog_archive_gap", 0.0) > 0:
        result.problems.append("a binlog was purged before it was archived: point-in-time restores cannot cross it")
    return result
