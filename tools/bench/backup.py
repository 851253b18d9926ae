"""Benchmark (not a test): backup and restore throughput against the raw copy floor.

    python -m tools.bench.backup [--size-mb 256] [--repeat 3] [--json]      (make bench-backup)

On this machine, on loopback: a MariaDB primary with the set's accounts (tools/testing/backup_box.py)
filled with --size-mb of rows, a one-node Ceph RADOS Gateway as the S3 store. Three timings per
run, each the median of --repeat runs, all in the same run so their ratios compare like with like:

  floor    `tar -cf - <datadir> | socat` into `socat | tar -xf -` in a scratch dir: the raw copy of
           the same data dir over a loopback socket, no backup tool, no store, no checks.
  backup   the set's backup.sh: mariadb-backup --stream | SHA-256 | rclone multipart upload to RGW,
           then the whole object read back and its SHA-256 compared, then the manifest.
  restore  the set's restore.sh fetch + replay into a new scratch set: download | SHA-256 | mbstream,
           --prepare, a private server to set the GTID state and root's password, clean shutdown.

Throughput is the data dir's size divided by the time; the ratio is time / floor time (1.0 would
be as fast as a raw copy). The floor copies the whole data dir, binlogs included; the backup stream
leaves the binlogs out (they are archived on their own), so its size is printed too. The store,
the server and the copy share the machine's two cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tools.testing.backup_box import ScriptBox, Store
from tools.testing.processes import free_port
from tools.testing.s3 import Radosgw

ROW = "x" * 1000


def fill(server_connect: object, size_mb: int) -> None:
    with server_connect() as conn, conn.cursor() as cur:  # type: ignore[operator]
        cur.execute("CREATE DATABASE IF NOT EXISTS bench")
        cur.execute("CREATE TABLE IF NOT EXISTS bench.rows (id INT AUTO_INCREMENT PRIMARY KEY, payload TEXT)")
        rows = size_mb * 1000
        for start in range(0, rows, 1000):
            cur.executemany("INSERT INTO bench.rows (payload) VALUES (%s)", [(ROW,)] * min(1000, rows - start))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def floor_copy(source: Path, scratch: Path) -> float:
    """tar | socat -> socat | tar -x of `source`, seconds."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    port = free_port()
    receiver = subprocess.Popen(["bash", "-c", f"socat -u TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr - |"
                                               f" tar -xf - -C {scratch}"])
    began = time.monotonic()
    send = f"tar -cf - -C {source} . | socat -u - TCP:127.0.0.1:{port},retry=100,interval=0.05"
    subprocess.run(["bash", "-c", send], check=True, timeout=3600)
    receiver.wait(3600)
    return time.monotonic() - began


def run(size_mb: int, repeat: int, base: Path, parallel: int = 2) -> dict[str, object]:
    rgw = Radosgw(base / "ceph").start()
    try:
        rgw.create_bucket("bench-backups")
        store = Store("bench-backups", "bench/mysql", rgw.access_key, rgw.secret_key, endpoint=rgw.endpoint)
        box = ScriptBox(base / "source-box", store)
        pod, server = box.source(base / "source")
        try:
            fill(server.connect, size_mb)
            server.sql("FLUSH TABLES")
            size = dir_bytes(pod.datadir)
            floors, backups, restores = [], [], []
            ids = []
            streamed = 0
            for n in range(repeat):
                floors.append(floor_copy(pod.datadir, base / "floor"))
                backup_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + n))
                began = time.monotonic()
                done = box.run("backup.sh", backup_id, pod=pod, S3_CHUNK_SIZE="16M", BACKUP_PARALLEL=str(parallel))
                backups.append(time.monotonic() - began)
                if done.returncode != 0:
                    raise RuntimeError(f"backup.sh failed:\n{done.stderr[-2000:]}")
                streamed = int(done.stdout.split()[3])  # RESULT ok <id> <bytes> <sha256>
                ids.append(backup_id)
                time.sleep(1.1)  # one id per second
            for n, backup_id in enumerate(ids):
                scratch = ScriptBox(base / f"restore-box-{n}", store)
                target = scratch.pod("mysql-0", base / f"restore-{n}")
                began = time.monotonic()
                scratch.must("init-mysql.sh", pod=target)
                scratch.must("restore.sh", "fetch", pod=target, RESTORE_FROM=backup_id)
                scratch.must("restore.sh", "replay", pod=target, RESTORE_FROM=backup_id)
                restores.append(time.monotonic() - began)
                shutil.rmtree(base / f"restore-{n}", ignore_errors=True)
        finally:
            server.stop()
    finally:
        rgw.stop()
    floor, backup, restore = (statistics.median(v) for v in (floors, backups, restores))
    mib = size / 2**20
    return {
        "datadir_mib": round(mib, 1), "stream_mib": round(streamed / 2**20, 1), "repeat": repeat,
        "backup_parallel": parallel,
        "floor_seconds": round(floor, 2), "backup_seconds": round(backup, 2), "restore_seconds": round(restore, 2),
        "floor_mib_per_second": round(mib / floor, 1), "backup_mib_per_second": round(mib / backup, 1),
        "restore_mib_per_second": round(mib / restore, 1),
        "backup_over_floor": round(backup / floor, 2), "restore_over_floor": round(restore / floor, 2),
        "runs": {"floor": [round(v, 2) for v in floors], "backup": [round(v, 2) for v in backups],
                 "restore": [round(v, 2) for v in restores]},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=256, help="rows to write, in MB (default 256)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=2,
                        help="backup.sh's copy threads, BACKUP_PARALLEL (default 2: what a set renders with the"
                             " sidecar's default CPU limit)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.parallel <= 999:
        parser.error(f"--parallel {args.parallel}: allowed 1 to 999")
    base = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    try:
        result = run(args.size_mb, args.repeat, base, args.parallel)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"data dir {result['datadir_mib']} MiB (the backup stream: {result['stream_mib']} MiB; binlogs are not"
              f" in it), median of {result['repeat']} runs, {result['backup_parallel']} copy threads")
        for name in ("floor", "backup", "restore"):
            ratio = "" if name == "floor" else f"  {result[f'{name}_over_floor']} x the floor"
            print(f"  {name:8} {result[f'{name}_seconds']:>7} s  {result[f'{name}_mib_per_second']:>6} MiB/s{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
