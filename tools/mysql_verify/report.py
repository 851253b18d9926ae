"""What a verify run found, and how it is shown: a readable table or JSON.

Only this module formats output; the checks fill these dataclasses and never print.
A *problem* makes the run degraded (exit 1); a *warning* is shown but does not.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

HEALTHY = "healthy"
DEGRADED = "degraded"
ERROR = "error"

EXIT_HEALTHY = 0
EXIT_DEGRADED = 1
EXIT_ERROR = 2


@dataclass
class ReplicationState:
    """SHOW REPLICA/SLAVE STATUS reduced to the fields verify judges, with engine-neutral names."""

    io_running: str
    sql_running: str
    seconds_behind: int | None
    source_host: str | None
    source_port: int | None
    source_server_id: int | None
    last_io_errno: int
    last_io_error: str
    last_sql_errno: int
    last_sql_error: str

    @property
    def running(self) -> bool:
        return self.io_running == "Yes" and self.sql_running == "Yes"


@dataclass
class ServerResult:
    """One primary or replica endpoint."""

    label: str
    role: str
    address: str
    ordinal: int
    expected_server_id: int
    reachable: bool = False
    connect_error: str | None = None
    engine: str | None = None
    version: str | None = None
    server_id: int | None = None
    read_only: bool | None = None
    super_read_only: bool | None = None
    log_bin: bool | None = None
    write_probe: str | None = None
    tls_version: str | None = None  # the server's Ssl_version for verify's session; None: plaintext or not reached
    tls_cipher: str | None = None
    replication: ReplicationState | None = None
    check_row: str | None = None
    catch_up_seconds: float | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems


@dataclass
class ReadResult:
    """The read endpoint, sampled with one new connection per sample (as a Service balances)."""

    address: str
    samples: int
    succeeded: int = 0
    server_ids: dict[int, int] = field(default_factory=dict)
    row_visible: int = 0
    tls: dict[str, int] = field(default_factory=dict)  # "TLSv1.3 TLS_AES_256_GCM_SHA384" (or "none") -> samples
    errors: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def spread(self) -> str:
        if not self.server_ids:
            return "none"
        return ", ".join(f"{sid} x{count}" for sid, count in sorted(self.server_ids.items()))


@dataclass
class TlsUse:
    """How the run's connections were secured: verified against a CA (and where it came from), or not."""

    verified: bool
    ca_source: str | None = None  # "--ssl-ca FILE" or "stack output mysqlCaCert (--stack NAME)"
    ca_subjects: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if not self.verified:
            return "off (--no-tls)"
        subjects = ", ".join(repr(subject) for subject in self.ca_subjects)
        return f"server certificates and host names verified against CA {subjects} from {self.ca_source}"


@dataclass
class Report:
    token: str
    user: str
    servers: list[ServerResult]
    tls: TlsUse = field(default_factory=lambda: TlsUse(verified=False))
    read: ReadResult | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows_kept: bool = False
    duration_seconds: float = 0.0
    # --backup-metrics: the last good backup's age and the binlog archive's lag (tools/mysql_verify/backups.py).
    backup: Any = None

    def all_problems(self) -> list[str]:
        """Every problem, each prefixed with where it was seen."""
        found = list(self.problems)
        if self.backup is not None:
            found += [f"backups ({self.backup.address}): {problem}" for problem in self.backup.problems]
        for server in self.servers:
            found += [f"{server.label} ({server.address}): {problem}" for problem in server.problems]
        if self.read is not None:
            found += [f"read endpoint ({self.read.address}): {problem}" for problem in self.read.problems]
        return found

    def all_warnings(self) -> list[str]:
        found = list(self.warnings)
        for server in self.servers:
            found += [f"{server.label} ({server.address}): {warning}" for warning in server.warnings]
        if self.read is not None:
            found += [f"read endpoint ({self.read.address}): {warning}" for warning in self.read.warnings]
        return found

    @property
    def status(self) -> str:
        return DEGRADED if self.all_problems() else HEALTHY

    @property
    def exit_code(self) -> int:
        return EXIT_DEGRADED if self.all_problems() else EXIT_HEALTHY

    def to_dict(self) -> dict[str, Any]:
        servers = []
        for server in self.servers:
            item = asdict(server)
            item["status"] = "ok" if server.healthy else DEGRADED
            servers.append(item)
        read = None
        if self.read is not None:
            read = asdict(self.read)
            read["server_ids"] = {str(sid): count for sid, count in sorted(self.read.server_ids.items())}
            read["distinct_server_ids"] = len(self.read.server_ids)
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "token": self.token,
            "user": self.user,
            "rows_kept": self.rows_kept,
            "duration_seconds": round(self.duration_seconds, 3),
            "tls": asdict(self.tls),
            "servers": servers,
            "read": read,
            "backup": self.backup.to_dict() if self.backup is not None else None,
            "problems": self.all_problems(),
            "warnings": self.all_warnings(),
        }


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False)


def error_json(message: str) -> str:
    return json.dumps({"status": ERROR, "exit_code": EXIT_ERROR, "error": message}, indent=2)


# ---------------------------------------------------------------------------- table


def _on_off(value: bool | None) -> str:
    return "-" if value is None else ("on" if value else "off")


def _read_only(server: ServerResult) -> str:
    if server.super_read_only is not None:
        return f"{_on_off(server.read_only)}/super {_on_off(server.super_read_only)}"
    return _on_off(server.read_only)


def _row_cell(server: ServerResult) -> str:
    if server.catch_up_seconds is not None:
        return f"{server.catch_up_seconds:.2f}s"
    return server.check_row or "-"


def _tls_cell(server: ServerResult) -> str:
    if not server.reachable:
        return "-"
    return server.tls_version or "none"


def _row(server: ServerResult) -> list[str]:
    state = server.replication
    behind = "-" if state is None or state.seconds_behind is None else f"{state.seconds_behind}s"
    status = "ok" if server.healthy else ("DOWN" if not server.reachable else "DEGRADED")
    return [
        server.label,
        server.address,
        server.engine or "-",
        "-" if server.server_id is None else str(server.server_id),
        str(server.expected_server_id),
        _read_only(server) if server.reachable else "-",
        state.io_running if state else "-",
        state.sql_running if state else "-",
        behind,
        _row_cell(server),
        _tls_cell(server),
        status,
    ]


HEADERS = ["SERVER", "ENDPOINT", "ENGINE", "ID", "WANT", "READ-ONLY", "IO", "SQL", "BEHIND", "CHECK ROW", "TLS",
           "STATUS"]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[col]) for col, cell in enumerate(row)).rstrip() for row in rows]


def _read_line(read: ReadResult) -> str:
    line = f"read endpoint {read.address}: {read.succeeded}/{read.samples} samples ok; server ids {read.spread()}"
    if read.succeeded:
        line += f"; check row visible in {read.row_visible}/{read.succeeded}"
    if read.tls:
        line += "; TLS " + ", ".join(f"{label} x{count}" for label, count in sorted(read.tls.items()))
    if read.errors:
        common, count = Counter(read.errors).most_common(1)[0]
        line += f"; {sum(read.errors.values())} failed (e.g. {common!r} x{count})"
    return line


def _tls_line(report: Report) -> str:
    sessions = sorted({f"{server.tls_version} {server.tls_cipher}" for server in report.servers if server.tls_version})
    line = f"TLS: {report.tls.describe()}"
    if sessions:
        line += f"; sessions {', '.join(sessions)}"
    return line


def render_table(report: Report) -> str:
    lines = [
        f"mysql-verify: {report.status.upper()}  "
        f"({len(report.servers)} servers, user {report.user}, check token {report.token}, "
        f"{report.duration_seconds:.2f}s)",
        _tls_line(report),
        "",
        *_table([HEADERS, *(_row(server) for server in report.servers)]),
    ]
    if report.read is not None:
        lines += ["", _read_line(report.read)]
    if report.backup is not None:
        lines += ["", report.backup.line()]
    if report.rows_kept:
        lines += ["", f"check row kept (--keep-rows): token {report.token}"]
    problems, warnings = report.all_problems(), report.all_warnings()
    if problems:
        lines += ["", "Problems:", *(f"  - {problem}" for problem in problems)]
    if warnings:
        lines += ["", "Warnings:", *(f"  - {warning}" for warning in warnings)]
    return "\n".join(lines)
