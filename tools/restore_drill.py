"""`make restore-drill`: restore a backup of the MySQL set into a scratch set and check it.

    python -m tools.restore_drill --bucket B --prefix STACK/mysql [--endpoint URL] [--from ID|TIME|latest]
    python -m tools.restore_drill --rehearse          # the whole loop on this machine (Ceph RGW + MariaDB)

A drill runs the set's own restore.sh (both phases, exactly as ordinal 0's init containers of a
new set do) into a scratch data dir on this machine, starts mariadbd on the result, and checks it:
the server starts with the scratch set's root password, every table of every schema passes CHECK
TABLE, the GTID position covers the backup's, and the restore marker names what was asked for.
Nothing is written to the bucket, and the scratch dir is removed afterwards (--keep keeps it).

The bucket's key comes from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (never argv); it is
written to a 0600 file in the scratch dir for the scripts and removed with it. MariaDB sets only:
this machine has MariaDB and mariadb-backup (a MySQL set's drill needs xtrabackup and mysqld).

--rehearse starts a one-node Ceph RADOS Gateway and a MariaDB primary on loopback, writes rows,
backs it up with the set's backup.sh, then drills that backup: proof that the drill itself works.
Exit 0 when the restored set passed every check, 1 when a check failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.testing.backup_box import Pod, ScriptBox, Store
from tools.testing.mariadb import MariaDBServer

SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")


@dataclass
class DrillReport:
    restore_from: str
    backup_id: str = ""
    seconds: float = 0.0
    schemas: int = 0
    tables_checked: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    gtid_binlog_pos: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        status = "OK" if self.ok else "FAILED"
        backup = self.backup_id or "?"
        lines = [f"restore-drill: {status}  ({self.restore_from} -> backup {backup}, {self.seconds:.1f}s)",
                 f"  {self.schemas} application schemas, {self.tables_checked} tables passed CHECK TABLE",
                 f"  GTID position of the restored server: {self.gtid_binlog_pos or '(empty)'}"]
        lines += [f"  {table}: {count} rows" for table, count in sorted(self.rows.items())]
        lines += [f"  problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


def _latest(box: ScriptBox, pod: Pod) -> str:
    env = box.env(pod)
    script = f'source {box.config_dir}/common.sh; source {box.config_dir}/s3.sh; s3_env; s3_check; ' \
             's3_get backups/latest.json | json_field id'
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise DrillError(f"no latest backup: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ''}")
    return result.stdout.strip()


class DrillError(Exception):
    pass


def drill(box: ScriptBox, scratch: Path, restore_from: str, *, row_tables: Sequence[str] = ()) -> DrillReport:
    """Restore `restore_from` (an id, a UTC time or 'latest') into a scratch mysql-0 and check it."""
    began = time.monotonic()
    pod = box.pod("mysql-0", scratch / "mysql-0")
    report = DrillReport(restore_from)
    try:
        if restore_from == "latest":
            restore_from = _latest(box, pod)
        box.must("init-mysql.sh", pod=pod)
        for phase in ("fetch", "replay"):
            log = box.must("restore.sh", phase, pod=pod, RESTORE_FROM=restore_from, RESTORE_PREFIX="")
            for line in log.splitlines():
                if "restoring backup " in line:
                    report.backup_id = line.split("restoring backup ", 1)[1].split()[0]
    except (RuntimeError, DrillError) as error:
        report.problems.append(str(error).strip().splitlines()[-1])
        report.seconds = time.monotonic() - began
        return report
    server = box.server(pod, initialize=False)
    try:
        _check(server, pod, restore_from, report, row_tables)
    finally:
        server.stop()
    report.seconds = time.monotonic() - began
    return report


def _check(server: MariaDBServer, pod: Pod, restore_from: str, report: DrillReport, row_tables: Sequence[str]) -> None:
    marker = pod.datadir / "atomic-restored-from"
    if not marker.is_file() or marker.read_text().splitlines()[0] != restore_from:
        report.problems.append(f"the restore marker does not name {restore_from}")
    placeholders = ", ".join(["%s"] * len(SYSTEM_SCHEMAS))
    tables = server.sql("SELECT table_schema, table_name FROM information_schema.tables WHERE table_type ="
                        f" 'BASE TABLE' AND table_schema NOT IN ({placeholders})", SYSTEM_SCHEMAS)
    report.schemas = len({schema for schema, _ in tables})
    for schema, table in tables:
        rows = server.sql(f"CHECK TABLE `{schema}`.`{table}`")
        status = [row for row in rows if row[2] in ("status", "error")]
        if not status or status[-1][3] != "OK":
            report.problems.append(f"CHECK TABLE {schema}.{table}: {status[-1][3] if status else 'no answer'}")
        else:
            report.tables_checked += 1
    for table in row_tables:
        report.rows[table] = int(server.value(f"SELECT COUNT(*) FROM {table}"))
    report.gtid_binlog_pos = str(server.value("SELECT @@GLOBAL.gtid_binlog_pos") or "")


# ---------------------------------------------------------------- the rehearsal


def rehearse(base: Path) -> DrillReport:
    """Ceph RGW + a MariaDB primary on loopback: write, back up with backup.sh, drill 'latest'."""
    from tools.testing.s3 import Radosgw

    rgw = Radosgw(base / "ceph").start()
    try:
        rgw.create_bucket("drill-backups")
        store = Store("drill-backups", "drill/mysql", rgw.access_key, rgw.secret_key, endpoint=rgw.endpoint)
        box = ScriptBox(base / "source-box", store)
        pod, server = box.source(base / "source")
        try:
            with server.connect() as conn, conn.cursor() as cur:
                cur.execute("CREATE DATABASE app")
                cur.execute("CREATE TABLE app.drill (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(64))")
                cur.executemany("INSERT INTO app.drill (note) VALUES (%s)", [(f"row {n}",) for n in range(1000)])
            backup_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            box.must("backup.sh", backup_id, pod=pod)
        finally:
            server.stop()
        scratch = ScriptBox(base / "scratch-box", store)  # a new set: its own Secret
        report = drill(scratch, base / "scratch", "latest", row_tables=["app.drill"])
        if report.ok and report.rows.get("app.drill") != 1000:
            report.problems.append(f"app.drill has {report.rows.get('app.drill')} rows, 1000 were backed up")
        return report
    finally:
        rgw.stop()


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    environ = dict(os.environ if environ is None else environ)
    parser = argparse.ArgumentParser(prog="python -m tools.restore_drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rehearse", action="store_true", help="the whole loop on this machine (RGW + MariaDB)")
    parser.add_argument("--bucket")
    parser.add_argument("--prefix", help="the set's prefix, e.g. prod/mysql (Pulumi output mysqlBackupPrefix)")
    parser.add_argument("--endpoint", default="", help="an S3-compatible endpoint; empty = AWS S3")
    parser.add_argument("--region", default=environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--from", dest="restore_from", default="latest",
                        help="a backup id, a UTC time (2026-12-01T10:21:41Z) or latest (default)")
    parser.add_argument("--table", action="append", default=[], help="count the rows of SCHEMA.TABLE too")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="restore-drill-"))
    try:
        if args.rehearse:
            report = rehearse(scratch)
        else:
            key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
            if not (args.bucket and args.prefix and key and secret):
                print("error: --bucket, --prefix and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are required (or"
                      " --rehearse)", file=sys.stderr)
                return 2
            store = Store(args.bucket, args.prefix.strip("/"), key, secret, endpoint=args.endpoint, region=args.region)
            report = drill(ScriptBox(scratch / "box", store), scratch / "scratch", args.restore_from,
                           row_tables=args.table)
    finally:
        if args.keep:
            print(f"scratch dir kept: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    data: dict[str, Any] = {**asdict(report), "ok": report.ok}
    print(json.dumps(data, indent=2) if args.json else report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
