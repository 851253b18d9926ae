"""`make bench-clone` (a benchmark, not a test): the clone path against the floor of copying the
same data dir, in one run.

Real MariaDB 10.11 + mariadb-backup on loopback, through the set's own rendered ConfigMap and
container environments (tools/testing/mysql_pods.py, the rehearsal's harness): a primary pod
(`mysql-0`, its sidecar serving backups on its clone port) holding --size-gib of InnoDB data in
--tables tables, and a new pod `mysql-1` whose init-mysql.sh and clone-mysql.sh run as the
StatefulSet runs them. Measured, interleaved round by round so that the shared machine's load
falls on every variant alike:

  floor    `tar -cf - <datadir> | socat | tar -xf -` with 1 MiB records and buffers: the same
           bytes over the same loopback socket, nothing else (no backup tool, no prepare).
  clone    clone-mysql.sh from start to exit (connect, the sidecar's backup stream, mbstream
           extraction, mariadb-backup --prepare, rename into place), with the threads the set
           renders (mysqlCloneThreads; 0 = one per CPU of each container's limit).
  serial   the same with mysqlCloneThreads=1: one copy thread, one extraction thread.
  before   with --before DIR: the same, with DIR's scripts (*.sh) in place of the rendered ones on
           both pods, e.g. an earlier revision's (`git show REV:components/workload/mysql/scripts/X`).

Printed: median, min and max wall seconds per variant, the clone's stream and prepare parts, CPU
seconds per GiB on each side (the receiving side as the clone container's, the sending side as
the sidecar's), and the ratios clone/floor and serial/clone. The target: clone within 1.05x of
the floor. Usage:

    python -m tools.bench.clone [--size-gib 1] [--tables 16] [--repeat 5] [--set KEY=VALUE] [--before DIR] [--json]
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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.testing.mariadb import require_mariadb
from tools.testing.mysql_pods import VERSION, Pod, RehearsalSet, render_set
from tools.testing.processes import free_port

GIB = 2**30
ROW_BYTES = 1000  # random, so nothing along the path could shrink it
TARGET = 1.05
# The floor copies in 1 MiB records and socat buffers: with tar's 10 KiB records and socat's 8 KiB
# default it spends about twice the CPU and would be no floor at all (measured here).
FLOOR_BUFFER = 2**20
PROGRESS = sys.stderr


@dataclass
class Sample:
    variant: str
    seconds: float
    bytes: int
    receive_cpu: float
    send_cpu: float
    stream_seconds: float | None = None
    prepare_seconds: float | None = None
    receive_peak_rss_mib: float | None = None


@dataclass
class Summary:
    variant: str
    runs: int
    median: float
    low: float
    high: float
    gib: float  # what arrived: the floor's copy, the clone's prepared data dir
    gib_per_second: float
    receive_cpu_per_gib: float
    send_cpu_per_gib: float
    stream_median: float | None
    prepare_median: float | None
    threads: dict[str, str] = field(default_factory=dict)


def log(message: str) -> None:
    print(message, file=PROGRESS, flush=True)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def wait_with_usage(process: subprocess.Popen[Any], timeout: float) -> tuple[int, float, float]:
    """Wait for `process` (bounded) and return its exit code, the CPU seconds of it and of every
    descendant it reaped, and their peak resident set in MiB (wait4's rusage)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{process.args!r} did not finish within {timeout:.0f}s")
        time.sleep(0.01)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def reaped_cpu(pid: int) -> float:
    """User+system seconds of the children `pid` has reaped (/proc/<pid>/stat cutime, cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def wait_no_children(pid: int, timeout: float = 30) -> None:
    """Until socat has reaped its per-connection handler (so its CPU is in the parent's cutime)."""
    deadline = time.monotonic() + timeout
    path = Path(f"/proc/{pid}/task/{pid}/children")
    while path.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)


class Bench:
    def __init__(self, base: Path, size_gib: float, tables: int, overrides: dict[str, Any],
                 before: Path | None = None) -> None:
        self.base = base
        log("rendering the set (local stack, MariaDB 10.11) ...")
        self.rendered = render_set("local", {**overrides, "mysqlVersion": VERSION})
        self.serial = render_set("local", {**overrides, "mysqlVersion": VERSION, "mysqlCloneThreads": 1})
        self.group = RehearsalSet(base / "set", self.rendered)
        self.size_gib = size_gib
        self.tables = tables
        self.floor_dir = base / "floor"
        self.config_dir = self.group.config_dir
        self.before_dir: Path | None = None
        if before is not None:
            scripts = sorted(before.glob("*.sh"))
            if not scripts:
                raise SystemExit(f"--before {before}: no *.sh scripts there")
            self.before_dir = base / "configmap-before"
            shutil.copytree(self.config_dir, self.before_dir)
            for script in scripts:
                shutil.copy(script, self.before_dir / script.name)

    @property
    def source(self) -> Pod:
        return self.group.pods[0]

    def threads(self, serial: bool) -> dict[str, str]:
        rendered = self.serial if serial else self.rendered
        return {"send": rendered.env["sidecar"]["BACKUP_PARALLEL"],
                "receive": rendered.env["clone-mysql"]["CLONE_PARALLEL"]}

    # ------------------------------------------------------------------ the data set

    def load(self) -> int:
        log("booting mysql-0 ...")
        self.group.boot(0)
        primary = self.group.primary
        rows = int(self.size_gib * GIB / ROW_BYTES / self.tables)
        log(f"loading {self.tables} tables x {rows:,} rows of {ROW_BYTES} random bytes ...")
        began = time.monotonic()
        with primary.connect(read_timeout=3600, write_timeout=3600) as conn, conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE bench")
            cursor.execute("USE bench")  # seq_N_to_M (the Sequence engine) lives in the current database
            for n in range(self.tables):
                cursor.execute(f"CREATE TABLE bench.t{n} (id INT PRIMARY KEY, payload VARBINARY({ROW_BYTES}))")
                for start in range(1, rows + 1, 50_000):
                    stop = min(start + 49_999, rows)
                    cursor.execute(f"INSERT INTO bench.t{n} SELECT seq, RANDOM_BYTES({ROW_BYTES}) "
                                   f"FROM seq_{start}_to_{stop}")
            # The binlogs hold the load a second time, and a backup copies none of them: drop them, so
            # that the floor moves the same data dir the clone does.
            cursor.execute("FLUSH BINARY LOGS")
            deadline = time.monotonic() + 120
            while True:  # a binlog goes only once InnoDB has checkpointed past it
                cursor.execute("SHOW BINARY LOGS")
                logs = [row[0] for row in cursor.fetchall()]
                if len(logs) == 1 or time.monotonic() > deadline:
                    break
                cursor.execute(f"PURGE BINARY LOGS TO '{logs[-1]}'")
                time.sleep(0.5)
            # Flush every dirty page, so that each backup carries the same (small) redo to prepare.
            cursor.execute("SET GLOBAL innodb_max_dirty_pages_pct = 0")
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
                if int(cursor.fetchone()[1]) == 0:
                    break
                time.sleep(0.5)
        size = du(self.source.datadir)
        log(f"loaded in {time.monotonic() - began:.0f}s: data dir {size / GIB:.2f} GiB")
        return size

    # ------------------------------------------------------------------ the variants

    def floor(self) -> Sample:
        if self.floor_dir.exists():
            shutil.rmtree(self.floor_dir)
        self.floor_dir.mkdir()
        port = free_port()
        source = self.source.datadir
        began = time.monotonic()
        receiver = subprocess.Popen(
            ["bash", "-c", f'socat -u -b {FLOOR_BUFFER} TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr STDOUT'
             f' | tar -b {FLOOR_BUFFER // 512} -xf - -C "$1"',
             "floor", str(self.floor_dir)])
        sender = subprocess.Popen(
            ["bash", "-c", f'tar -b {FLOOR_BUFFER // 512} -C "$1" -cf - .'
             f' | socat -u -b {FLOOR_BUFFER} STDIN TCP:127.0.0.1:{port},retry=100,interval=0.05',
             "floor", str(source)])
        send_code, send_cpu, _ = wait_with_usage(sender, 3600)
        receive_code, receive_cpu, peak = wait_with_usage(receiver, 3600)
        seconds = time.monotonic() - began
        if (send_code, receive_code) != (0, 0):
            raise RuntimeError(f"the floor's tar | socat | tar failed: exit codes {(send_code, receive_code)}")
        return Sample("floor", seconds, du(self.floor_dir), receive_cpu=receive_cpu, send_cpu=send_cpu,
                      receive_peak_rss_mib=peak)

    def clone(self, serial: bool, before: bool = False) -> Sample:
        variant = "before" if before else "serial" if serial else "clone"
        self.group.rendered = self.serial if serial else self.rendered
        assert not before or self.before_dir is not None
        self.group.config_dir = self.before_dir if before and self.before_dir else self.config_dir
        source = self.source
        source.stop_sidecar()
        source.start_sidecar()
        source.wait_ready(60)
        sidecar = source.sidecar
        assert sidecar is not None
        target = self.group.pod(1)
        if target.root.exists():
            shutil.rmtree(target.root)
        target.prepare()  # init-mysql.sh: not part of the clone
        send_cpu = reaped_cpu(sidecar.pid)
        prepare_began: list[float] = []
        stderr: list[str] = []
        began = time.monotonic()
        process = subprocess.Popen(
            ["bash", str(self.group.config_dir / "clone-mysql.sh")],
            env=target.env("clone-mysql"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        assert process.stderr is not None

        def read() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                stderr.append(line)
                if "preparing the backup" in line:
                    prepare_began.append(time.monotonic())

        reader = threading.Thread(target=read)
        reader.start()
        code, receive, peak = wait_with_usage(process, 3600)
        seconds = time.monotonic() - began
        reader.join(10)
        if code != 0 or not (target.datadir / "mysql").is_dir():
            raise RuntimeError(f"clone-mysql.sh failed ({code}):\n{''.join(stderr)[-3000:]}")
        wait_no_children(sidecar.pid)
        send = reaped_cpu(sidecar.pid) - send_cpu
        stream = prepare_began[0] - began if prepare_began else None
        return Sample(variant, seconds, du(target.datadir), receive_cpu=receive, send_cpu=send,
                      stream_seconds=stream, prepare_seconds=None if stream is None else seconds - stream,
                      receive_peak_rss_mib=peak)


def summarize(samples: list[Sample], threads: dict[str, str]) -> Summary:
    seconds = [s.seconds for s in samples]
    gib = statistics.median(s.bytes for s in samples) / GIB
    streams = [s.stream_seconds for s in samples if s.stream_seconds is not None]
    prepares = [s.prepare_seconds for s in samples if s.prepare_seconds is not None]
    return Summary(
        variant=samples[0].variant,
        runs=len(samples),
        median=statistics.median(seconds),
        low=min(seconds),
        high=max(seconds),
        gib=gib,
        gib_per_second=gib / statistics.median(seconds),
        receive_cpu_per_gib=statistics.median(s.receive_cpu for s in samples) / gib,
        send_cpu_per_gib=statistics.median(s.send_cpu for s in samples) / gib,
        stream_median=statistics.median(streams) if streams else None,
        prepare_median=statistics.median(prepares) if prepares else None,
        threads=threads,
    )


def render(summaries: dict[str, Summary], ratios: dict[str, float], header: str) -> str:
    lines = [header, "",
             f"{'variant':<8} {'runs':>4} {'median':>8} {'[min - max]':>17} {'GiB':>5} {'GiB/s':>6} {'stream':>7} "
             f"{'prepare':>7}  CPU-s/GiB receive, send  threads send/receive"]
    for s in summaries.values():
        parts = "" if s.stream_median is None else f"{s.stream_median:>6.2f}s {s.prepare_median:>6.2f}s"
        threads = f"{s.threads['send']}/{s.threads['receive']}" if s.threads else "-"
        lines.append(f"{s.variant:<8} {s.runs:>4} {s.median:>7.2f}s [{s.low:>6.2f}s - {s.high:>6.2f}s] "
                     f"{s.gib:>5.2f} {s.gib_per_second:>6.3f} {parts:>15}  "
                     f"{s.receive_cpu_per_gib:>6.2f}, {s.send_cpu_per_gib:>5.2f}"
                     f"{'':>12}{threads}")
    clone = ratios["clone/floor"]
    lines += [
        "",
        f"clone / floor:  {clone:.3f}x (median of the per-round ratios {ratios['clone/floor per round']:.3f}x); "
        f"target <= {TARGET}x: {'met' if clone <= TARGET else 'MISSED'}",
        f"serial / clone: {ratios['serial/clone']:.3f}x (what the parallel threads gained)",
        f"serial / floor: {ratios['serial/floor']:.3f}x",
    ]
    if "before/floor" in ratios:
        lines += [f"before / floor: {ratios['before/floor']:.3f}x; before / clone: {ratios['before/clone']:.3f}x "
                  "(--before's scripts)"]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.clone", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=1.0, help="data set size to load (default: 1)")
    parser.add_argument("--tables", type=int, default=16, help="tables (files) the data is spread over (default: 16)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; each runs every variant once (default: 5)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="render the set with this setting, e.g. mysqlCloneCpuLimit=1 (local stack)")
    parser.add_argument("--before", type=Path, help="also run the clone with the scripts (*.sh) of this directory")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.size_gib <= 0 or args.tables < 1 or args.repeat < 1:
        parser.error("--size-gib, --tables and --repeat must be positive")
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = value
    args.overrides = overrides
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    require_mariadb()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-clone-", dir=os.environ.get("BENCH_DIR")) as base:
        bench = Bench(Path(base), args.size_gib, args.tables, args.overrides, args.before)
        try:
            size = bench.load()
            server_version = bench.group.primary.value("SELECT VERSION()")
            variants: dict[str, Callable[[], Sample]] = {
                "floor": bench.floor, "clone": lambda: bench.clone(False), "serial": lambda: bench.clone(True)}
            if args.before:
                variants["before"] = lambda: bench.clone(True, before=True)
            samples: dict[str, list[Sample]] = {name: [] for name in variants}
            order = list(variants)
            for round_number in range(args.repeat):
                for name in order:
                    sample = variants[name]()
                    samples[name].append(sample)
                    log(f"round {round_number + 1}/{args.repeat} {name:<6} {sample.seconds:7.2f}s")
                order = order[1:] + order[:1]  # rotate: no variant always runs first, on a cold cache
        finally:
            bench.group.close()
    summaries = {
        "floor": summarize(samples["floor"], {}),
        "clone": summarize(samples["clone"], bench.threads(False)),
        "serial": summarize(samples["serial"], bench.threads(True)),
    }
    if "before" in samples:
        summaries["before"] = summarize(samples["before"], {})
    per_round = [c.seconds / f.seconds for c, f in zip(samples["clone"], samples["floor"], strict=True)]
    ratios = {
        "clone/floor": summaries["clone"].median / summaries["floor"].median,
        "clone/floor per round": statistics.median(per_round),
        "serial/clone": summaries["serial"].median / summaries["clone"].median,
        "serial/floor": summaries["serial"].median / summaries["floor"].median,
    }
    if "before" in summaries:
        ratios["before/floor"] = summaries["before"].median / summaries["floor"].median
        ratios["before/clone"] = summaries["before"].median / summaries["clone"].median
    limits = {name: bench.rendered.resources[name]["limits"] for name in ("clone-mysql", "sidecar")}
    header = (f"clone path vs tar|socat|tar floor on MariaDB {server_version} (set rendered for the local stack, "
              f"{VERSION}); data dir {size / GIB:.2f} GiB in {args.tables} tables; {args.repeat} rounds; "
              f"limits rendered (not enforced here): clone-mysql {limits['clone-mysql']['cpu']} CPU, "
              f"sidecar {limits['sidecar']['cpu']} CPU; {os.cpu_count()} CPUs, {platform.machine()}; "
              f"total {time.monotonic() - began:.0f}s")
    if args.json:
        print(json.dumps({"header": header, "data_dir_bytes": size, "summaries": {k: asdict(v) for k, v in
                          summaries.items()}, "ratios": ratios,
                          "samples": {k: [asdict(s) for s in v] for k, v in samples.items()}}, indent=2))
    else:
        print(render(summaries, ratios, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
