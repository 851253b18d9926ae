"""`make bench-apply` (a benchmark, not a test): how fast a replica applies a backlog, parallel
against serial, in one run.

Real MariaDB 10.11 on loopback: a primary and two replicas whose fragments are the set's own
rendered ConfigMap (tools/testing/mysql_pods.render_set, local stack rendered for 10.11): one
replica as the set renders it (mysqlReplicaApplyThreads, optimistic parallel apply with commit
order kept) and one rendered with mysqlReplicaApplyThreads=1 (the serial applier the set had
before). Each round:

  1. both replicas' SQL threads stop; --writers client threads each commit --txns transactions
     (--rows rows each, autocommit) into their own table, concurrently: the primary's commit rate
     is measured here;
  2. once both relay logs hold the whole backlog, each replica in turn (the order alternates per
     round, so only one applies at a time) starts its SQL thread and is timed until it has applied
     everything (MASTER_GTID_WAIT on the primary's position).

Printed: median, min and max apply seconds and transactions per second per replica, the ratio
serial/parallel, each applier against the primary's commit rate (below 1 the replica's lag grows
without bound under that load), how many transactions each replica's binlog group commits held and
how many syncs each transaction cost it, and a per-table CHECKSUM TABLE of primary and both
replicas at the end (they must be equal). The target: parallel at least 3x serial with 8 writers
on 8 tables.

This machine's disk syncs in about 0.1 ms, so a serial applier here is bound by CPU (two shared
cores), not by syncs. --sync-latency-ms N emulates a slower disk for every server of the run: each
fsync/fdatasync of mariadbd waits N ms first (tools/bench/sync_delay.c, LD_PRELOAD, built with cc),
as an EBS volume's syncs take about a millisecond. That is an emulation, and the output says so.

    python -m tools.bench.apply [--writers 8] [--txns 1500] [--rows 1] [--repeat 5] [--sync-latency-ms 0]
                                [--set KEY=VALUE] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tools.bench.catchup import relay_logs_complete
from tools.testing.mariadb import MariaDBServer, ReplicatedSet, replicated_set
from tools.testing.mysql_pods import VERSION, render_set

TARGET = 3.0
WAIT_TIMEOUT = 900.0
PAYLOAD = "x" * 200


@dataclass
class Round:
    commit_seconds: float
    apply_seconds: dict[str, float]
    # Per replica, during its apply: binlog commits per group commit, and fsyncs per transaction.
    group_size: dict[str, float]
    fsyncs_per_txn: dict[str, float]


# Innodb_data_fsyncs counts InnoDB's (the redo log's among them); with sync_binlog=1 the binlog is
# synced once per group commit.
COUNTERS = ("Binlog_commits", "Binlog_group_commits", "Innodb_data_fsyncs")


def counters(server: MariaDBServer) -> dict[str, int]:
    names = ", ".join(f"'{name}'" for name in COUNTERS)
    return {str(k): int(v) for k, v in server.sql(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_backlog(primary: MariaDBServer, writers: int, txns: int, rows: int, first_id: int) -> float:
    """`writers` concurrent clients, each `txns` autocommit transactions of `rows` rows into its own table."""
    errors: list[BaseException] = []
    start = threading.Barrier(writers + 1)

    def writer(n: int) -> None:
        try:
            with primary.connect() as conn, conn.cursor() as cursor:
                start.wait()
                for txn in range(txns):
                    base = first_id + txn * rows
                    cursor.executemany(f"INSERT INTO bench.t{n} (id, payload) VALUES (%s, %s)",
                                       [(base + r, PAYLOAD) for r in range(rows)])
        except BaseException as error:  # reported below, in the main thread
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"a writer failed: {errors[0]!r}")
    return time.monotonic() - began


def apply_backlog(group: ReplicatedSet, replica: MariaDBServer) -> tuple[float, dict[str, int]]:
    """Seconds to apply the backlog, and how the replica's status counters moved meanwhile."""
    position = group.primary.value("SELECT @@GLOBAL.gtid_binlog_pos")
    before = counters(replica)
    began = time.monotonic()
    replica.sql("START SLAVE SQL_THREAD")
    if replica.value("SELECT MASTER_GTID_WAIT(%s, %s)", (position, WAIT_TIMEOUT)) != 0:
        raise RuntimeError(f"{replica.name} did not apply up to {position} within {WAIT_TIMEOUT:.0f}s")
    seconds = time.monotonic() - began
    after = counters(replica)
    return seconds, {name: after[name] - before[name] for name in COUNTERS}


def checksums(server: MariaDBServer, tables: int) -> dict[str, int]:
    names = ", ".join(f"bench.t{n}" for n in range(tables))
    return {str(name): int(value) for name, value in server.sql(f"CHECKSUM TABLE {names} EXTENDED")}


SYNC_DELAY_SOURCE = Path(__file__).with_name("sync_delay.c")
SYNC_PROBE = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
began = time.perf_counter()
for _ in range(200):
    os.write(fd, b"x" * 4096)
    os.fsync(fd)
print((time.perf_counter() - began) / 200 * 1000)
"""


def sync_delay(base: Path, latency_ms: float) -> tuple[dict[str, str], float]:
    """The environment that slows every sync of a process by `latency_ms`, and one sync's measured ms."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("--sync-latency-ms needs a C compiler (cc) to build tools/bench/sync_delay.c")
    library = base / "sync_delay.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(SYNC_DELAY_SOURCE), "-ldl"],
                   check=True)
    environment = {"LD_PRELOAD": str(library), "SYNC_DELAY_US": str(round(latency_ms * 1000))}
    probe = subprocess.run([sys.executable, "-c", SYNC_PROBE, str(base / "sync-probe")], env={**os.environ,
                           **environment}, capture_output=True, text=True, check=True)
    return environment, float(probe.stdout)


def run(group: ReplicatedSet, args: argparse.Namespace, names: tuple[str, str]
        ) -> tuple[list[Round], dict[str, dict[str, int]], dict[str, int], str]:
    """Every round on one set: the rounds, the final checksums, the replicas' retries, the version."""
    rounds: list[Round] = []
    replicas = dict(zip(names, group.replicas, strict=True))
    server_version = group.primary.value("SELECT VERSION()")
    group.primary.sql("CREATE DATABASE bench")
    for n in range(args.writers):
        group.primary.sql(f"CREATE TABLE bench.t{n} (id INT PRIMARY KEY, payload VARCHAR(255) NOT NULL)")
    group.wait_caught_up()
    first_id = 1
    for number in range(args.repeat):
        for replica in group.replicas:
            replica.sql("STOP SLAVE SQL_THREAD")
        commit = write_backlog(group.primary, args.writers, args.txns, args.rows, first_id)
        first_id += args.txns * args.rows
        relay_logs_complete(group, group.replicas, timeout=600)
        order = names if number % 2 == 0 else names[::-1]
        moved = {name: apply_backlog(group, replicas[name]) for name in order}
        applied = {name: seconds for name, (seconds, _) in moved.items()}
        txns = args.writers * args.txns
        rounds.append(Round(
            commit, applied,
            group_size={n: d["Binlog_commits"] / max(d["Binlog_group_commits"], 1) for n, (_, d) in moved.items()},
            fsyncs_per_txn={n: (d["Innodb_data_fsyncs"] + d["Binlog_group_commits"]) / txns
                            for n, (_, d) in moved.items()},
        ))
        log(f"round {number + 1}/{args.repeat}: primary committed in {commit:.2f}s; applied "
            + ", ".join(f"{name} {applied[name]:.2f}s" for name in order))
    sums = {label: checksums(server, args.writers)
            for label, server in (("primary", group.primary), *replicas.items())}
    retried = {name: int(server.sql("SHOW GLOBAL STATUS LIKE 'Slave_retried_transactions'")[0][1])
               for name, server in replicas.items()}
    return rounds, sums, retried, server_version


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.apply", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=8, help="concurrent writers, one table each (default: 8)")
    parser.add_argument("--txns", type=int, default=1500, help="transactions per writer per round (default: 1500)")
    parser.add_argument("--rows", type=int, default=1, help="rows per transaction (default: 1)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default: 5)")
    parser.add_argument("--sync-latency-ms", type=float, default=0.0,
                        help="emulate a disk whose syncs take this much longer (default: 0, this machine's own)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="render the set with this setting, e.g. mysqlReplicaApplyThreads=8 (local stack)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if min(args.writers, args.txns, args.rows, args.repeat) < 1:
        parser.error("--writers, --txns, --rows and --repeat must be positive")
    if not 0 <= args.sync_latency_ms <= 100:
        parser.error("--sync-latency-ms must be from 0 to 100")
    args.overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        args.overrides[key] = value
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    log("rendering the set (local stack, MariaDB 10.11) ...")
    parallel = render_set("local", {**args.overrides, "mysqlVersion": VERSION})
    serial = render_set("local", {**args.overrides, "mysqlVersion": VERSION, "mysqlReplicaApplyThreads": 1})
    threads = next(line for line in parallel.config_map["replica.cnf"].splitlines()
                   if line.startswith("slave_parallel_threads="))
    names = ("parallel", "serial")
    with tempfile.TemporaryDirectory(prefix="bench-apply-", dir=os.environ.get("BENCH_DIR")) as base_dir:
        base = Path(base_dir)
        environment, sync_ms = sync_delay(base, args.sync_latency_ms) if args.sync_latency_ms else ({}, None)
        with replicated_set(
            base / "set", replicas=2, primary_cnf=parallel.config_map["primary.cnf"],
            replica_cnf=[parallel.config_map["replica.cnf"], serial.config_map["replica.cnf"]],
            environment=environment,
        ) as group:
            rounds, sums, retried, server_version = run(group, args, names)
    storage = ("this machine's own syncs" if sync_ms is None else
               f"storage EMULATED: every sync of every server waits {args.sync_latency_ms:g} ms first "
               f"(tools/bench/sync_delay.c; one sync measured {sync_ms:.2f} ms)")
    backlog = args.writers * args.txns
    medians = {name: statistics.median(r.apply_seconds[name] for r in rounds) for name in names}
    commit_median = statistics.median(r.commit_seconds for r in rounds)
    ratio = medians["serial"] / medians["parallel"]
    per_round = statistics.median(r.apply_seconds["serial"] / r.apply_seconds["parallel"] for r in rounds)
    identical = sums["primary"] == sums["parallel"] == sums["serial"]
    header = (f"replica apply of a backlog on MariaDB {server_version} (set rendered for the local stack, {VERSION}); "
              f"{args.writers} writers on {args.writers} tables, {args.txns} transactions of {args.rows} row(s) "
              f"each per round ({backlog:,} per round); {args.repeat} rounds; parallel replica: {threads}, "
              f"slave_parallel_mode=optimistic; serial: slave_parallel_threads=0; {storage}; {os.cpu_count()} CPUs, "
              f"{platform.machine()}; total {time.monotonic() - began:.0f}s")
    result: dict[str, Any] = {
        "header": header,
        "backlog_per_round": backlog,
        "sync_latency_ms_emulated": args.sync_latency_ms,
        "sync_ms_measured": sync_ms,
        "primary_commit_seconds_median": commit_median,
        "primary_commits_per_second": backlog / commit_median,
        "apply": {name: {"median": medians[name], "min": min(r.apply_seconds[name] for r in rounds),
                         "max": max(r.apply_seconds[name] for r in rounds),
                         "txn_per_second": backlog / medians[name],
                         "vs_primary_rate": (backlog / medians[name]) / (backlog / commit_median),
                         "commits_per_group_commit": statistics.median(r.group_size[name] for r in rounds),
                         "fsyncs_per_transaction": statistics.median(r.fsyncs_per_txn[name] for r in rounds),
                         "retried_transactions": retried[name]} for name in names},
        "serial/parallel": ratio,
        "serial/parallel per round": per_round,
        "checksums": sums,
        "identical": identical,
        "rounds": [asdict(r) for r in rounds],
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        lines = [header, "",
                 f"primary: {backlog / commit_median:,.0f} commits/s (median {commit_median:.2f}s per round)",
                 f"{'replica':<9} {'median':>8} {'[min - max]':>17} {'txn/s':>8} {'vs primary':>10} "
                 f"{'txn/group':>9} {'fsync/txn':>9}  retried"]
        for name in names:
            a = result["apply"][name]
            lines.append(f"{name:<9} {a['median']:>7.2f}s [{a['min']:>6.2f}s - {a['max']:>6.2f}s] "
                         f"{a['txn_per_second']:>8,.0f} {a['vs_primary_rate']:>9.2f}x "
                         f"{a['commits_per_group_commit']:>9.1f} {a['fsyncs_per_transaction']:>9.2f}  "
                         f"{a['retried_transactions']}")
        lines += [
            "",
            f"serial / parallel: {ratio:.2f}x (median of the per-round ratios {per_round:.2f}x); "
            f"target >= {TARGET}x: {'met' if ratio >= TARGET else 'MISSED'}",
            f"CHECKSUM TABLE per table, primary = parallel = serial: {'yes' if identical else 'NO'} "
            f"({len(sums['primary'])} tables)",
        ]
        print("\n".join(lines))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
