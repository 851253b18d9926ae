"""Benchmark (not a test): how long replicas take to catch up after N writes.

Runs on real MariaDB (Debian mariadb-server) on loopback: a primary and two replicas built
from the MySQL set's own config fragments (components/workload/mysql/config.py, engine mariadb), the same
harness as the verify drills. Three scenarios per N:

  live         replicas replicate while N single-row transactions are written; catch-up is the
               time from the last commit until each replica has applied it (replication lag).
  sql-backlog  replicas' SQL threads are stopped while the N writes arrive in their relay logs;
               catch-up is the time to apply the backlog after START SLAVE SQL_THREAD.
  server-down  replica-2 is shut down during the N writes; catch-up is the time from starting
               it again until it has applied everything (includes server start-up).

Every catch-up is measured with MASTER_GTID_WAIT against the primary's GTID position, and each
number is the median of --repeat runs (min and max shown). Usage:

    python -m tools.bench.catchup [--writes 500,2000] [--batch 1] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from components.workload.mysql import config as mysql_config
from tools.mysql_verify.checks import Endpoint, Options, TlsTrust, verify
from tools.testing.mariadb import MariaDBServer, ReplicatedSet, replica_status, replicated_set
from tools.testing.mysql_pods import default_apply_threads

PAYLOAD = "x" * 100
WAIT_TIMEOUT = 300.0


@dataclass
class Sample:
    scenario: str
    writes: int
    batch: int
    write_seconds: float
    catch_up: dict[str, float]


@dataclass
class Summary:
    scenario: str
    writes: int
    batch: int
    runs: int
    writes_per_second: float
    catch_up_median: dict[str, float]
    catch_up_min: dict[str, float]
    catch_up_max: dict[str, float]
    apply_rate_per_second: float | None


def write_rows(primary: MariaDBServer, first_id: int, count: int, batch: int) -> float:
    """count rows in transactions of `batch` rows each (autocommit); returns the seconds taken."""
    with primary.connect() as conn, conn.cursor() as cursor:
        began = time.monotonic()
        for start in range(first_id, first_id + count, batch):
            rows = [(row_id, PAYLOAD) for row_id in range(start, min(start + batch, first_id + count))]
            cursor.executemany("INSERT INTO bench.t (id, payload) VALUES (%s, %s)", rows)
        return time.monotonic() - began


def wait_applied(group: ReplicatedSet, replicas: Sequence[MariaDBServer], since: float) -> dict[str, float]:
    """Seconds from `since` until each replica reached the primary's current GTID position (waited in parallel)."""
    position = group.primary.value("SELECT @@GLOBAL.gtid_binlog_pos")
    done: dict[str, float] = {}
    failures: list[str] = []

    def wait(replica: MariaDBServer) -> None:
        result = replica.value("SELECT MASTER_GTID_WAIT(%s, %s)", (position, WAIT_TIMEOUT))
        if result != 0:
            failures.append(f"{replica.name} did not reach {position} within {WAIT_TIMEOUT:.0f}s")
        done[replica.name] = time.monotonic() - since

    threads = [threading.Thread(target=wait, args=(replica,)) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_TIMEOUT + 10)
    if failures:
        raise RuntimeError("; ".join(failures))
    return done


def relay_logs_complete(group: ReplicatedSet, replicas: Sequence[MariaDBServer], timeout: float = 60) -> None:
    """Wait until each replica's IO thread has fetched the primary's whole binlog (so only applying remains)."""
    file, position = group.primary.sql("SHOW MASTER STATUS")[0][:2]
    deadline = time.monotonic() + timeout
    for replica in replicas:
        while True:
            status = replica_status(replica)
            if (status["Master_Log_File"], int(status["Read_Master_Log_Pos"])) >= (file, int(position)):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{replica.name}: relay log did not reach {file}:{position} within {timeout:.0f}s")
            time.sleep(0.01)


class Bench:
    def __init__(self, group: ReplicatedSet) -> None:
        self.group = group
        self.next_id = 1
        group.primary.sql("CREATE DATABASE IF NOT EXISTS bench")
        group.primary.sql("CREATE TABLE IF NOT EXISTS bench.t (id INT PRIMARY KEY, payload VARCHAR(200) NOT NULL)")
        group.wait_caught_up()

    def _write(self, count: int, batch: int) -> float:
        seconds = write_rows(self.group.primary, self.next_id, count, batch)
        self.next_id += count
        return seconds

    def live(self, count: int, batch: int) -> Sample:
        seconds = self._write(count, batch)
        catch_up = wait_applied(self.group, self.group.replicas, time.monotonic())
        return Sample("live", count, batch, seconds, catch_up)

    def sql_backlog(self, count: int, batch: int) -> Sample:
        replicas = self.group.replicas
        for replica in replicas:
            replica.sql("STOP SLAVE SQL_THREAD")
        seconds = self._write(count, batch)
        relay_logs_complete(self.group, replicas)
        began = time.monotonic()
        for replica in replicas:
            replica.sql("START SLAVE SQL_THREAD")
        catch_up = wait_applied(self.group, replicas, began)
        return Sample("sql-backlog", count, batch, seconds, catch_up)

    def server_down(self, count: int, batch: int) -> Sample:
        replica = self.group.replicas[-1]
        replica.stop()
        seconds = self._write(count, batch)
        began = time.monotonic()
        replica.start()
        started = time.monotonic() - began
        catch_up = wait_applied(self.group, [replica], began)
        catch_up[f"{replica.name} (start-up part)"] = started
        return Sample("server-down", count, batch, seconds, catch_up)


def summarize(samples: list[Sample]) -> Summary:
    first = samples[0]
    names = list(first.catch_up)
    medians = {name: statistics.median(s.catch_up[name] for s in samples) for name in names}
    apply_rate = None
    replica_medians = [value for name, value in medians.items() if "start-up" not in name]
    if first.scenario == "sql-backlog" and replica_medians:
        apply_rate = first.writes / max(replica_medians)
    return Summary(
        scenario=first.scenario,
        writes=first.writes,
        batch=first.batch,
        runs=len(samples),
        writes_per_second=first.writes / statistics.median(s.write_seconds for s in samples),
        catch_up_median=medians,
        catch_up_min={name: min(s.catch_up[name] for s in samples) for name in names},
        catch_up_max={name: max(s.catch_up[name] for s in samples) for name in names},
        apply_rate_per_second=apply_rate,
    )


def verify_catch_up(group: ReplicatedSet) -> dict[str, float | None]:
    """What `mysql-verify` itself reports as catch-up for its check row on the idle set, over the
    verified TLS the set serves (its CA, as `--ssl-ca` would give it)."""
    assert group.tls_dir is not None
    ca = group.tls_dir / mysql_config.TLS_CA
    options = Options(
        primary=Endpoint("127.0.0.1", group.primary.port, 0),
        replicas=tuple(Endpoint("127.0.0.1", r.port, n) for n, r in enumerate(group.replicas, start=1)),
        read=None,
        user="root",
        password=group.root_password,
        tls=TlsTrust.from_pem(ca.read_text(), f"--ssl-ca {ca}"),
    )
    report = verify(options)
    if report.exit_code != 0:
        raise RuntimeError("verify reported the benchmark set degraded: " + "; ".join(report.all_problems()))
    return {server.label: server.catch_up_seconds for server in report.servers[1:]}


def render(summaries: list[Summary], verify_numbers: dict[str, float | None], header: str) -> str:
    columns = f"{'scenario':<12} {'writes':>7} {'batch':>5} {'runs':>4} {'writes/s':>9}"
    lines = [header, "", columns + "  catch-up median [min-max] per replica"]
    for summary in summaries:
        parts = [f"{name} {summary.catch_up_median[name]:.3f}s [{summary.catch_up_min[name]:.3f}-"
                 f"{summary.catch_up_max[name]:.3f}]" for name in sorted(summary.catch_up_median)]
        rate = f"  (applies {summary.apply_rate_per_second:,.0f} txn/s)" if summary.apply_rate_per_second else ""
        lines.append(f"{summary.scenario:<12} {summary.writes:>7} {summary.batch:>5} {summary.runs:>4} "
                     f"{summary.writes_per_second:>9,.0f}  " + "; ".join(parts) + rate)
    shown = ", ".join(f"{name} {value:.3f}s" for name, value in verify_numbers.items() if value is not None)
    lines += ["", f"mysql-verify check-row catch-up on the idle set: {shown}"]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.catchup",
        description="How long replicas take to catch up after N writes (real MariaDB on loopback).",
    )
    parser.add_argument("--writes", default="500,2000", help="comma-separated N values (default: 500,2000)")
    parser.add_argument("--batch", type=int, default=1, help="rows per transaction (default: 1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario and N; the median is shown")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    try:
        args.writes = [int(value) for value in args.writes.split(",") if value.strip()]
    except ValueError:
        parser.error(f"--writes {args.writes!r}: expected numbers such as 1000,10000")
    if not args.writes or min(args.writes) < 1 or args.batch < 1 or args.repeat < 1:
        parser.error("--writes, --batch and --repeat must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    engine, version = "mariadb", "10.11"
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-catchup-") as base, replicated_set(
        Path(base),
        replicas=2,
        primary_cnf=mysql_config.primary_cnf(engine, version),
        replica_cnf=mysql_config.replica_cnf(engine, version, default_apply_threads()),
        server_id=mysql_config.server_id,
    ) as group:
        server_version = group.primary.value("SELECT VERSION()")
        bench = Bench(group)
        scenarios: list[Callable[[int, int], Sample]] = [bench.live, bench.sql_backlog, bench.server_down]
        summaries = [
            summarize([scenario(count, args.batch) for _ in range(args.repeat)])
            for count in args.writes
            for scenario in scenarios
        ]
        verify_numbers = verify_catch_up(group)
    header = (f"replica catch-up on MariaDB {server_version} (set config: {engine} {version}), primary + 2 replicas "
              f"on loopback; {os.cpu_count()} CPUs, {platform.machine()}, python {platform.python_version()}; "
              f"total {time.monotonic() - began:.1f}s")
    if args.json:
        print(json.dumps({"header": header, "results": [asdict(s) for s in summaries], "verify": verify_numbers},
                         indent=2))
    else:
        print(render(summaries, verify_numbers, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
