"""A data volume that fills up and is grown online while the primary writes (real MariaDB 10.11).

The pod's volume is a tmpfs of its own here, mounted where the pod's claim would be: a filesystem
with a hard size limit that the kernel grows online (`mount -o remount,size=`), as resize2fs grows
an ext4 volume online after the EBS CSI driver expanded the disk (its NodeExpandVolume). On
this machine an ext4 image on a loop device cannot be resized (resize2fs: permission denied), so
the EBS + CSI + resize2fs path itself does not run here; what runs is the server and the set's
sidecar on a volume that nears full and then grows: the sidecar's ALARM line before it fills, no
acknowledged row lost, no restart, and the alarm quiet once the volume has room again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from tools.testing.mariadb import require_mariadb
from tools.testing.mysql_pods import VERSION, RehearsalSet, RenderedSet, render_set

pytestmark = pytest.mark.real

SMALL, GROWN = 192 * 2**20, 512 * 2**20
ALARM = "ALARM: data volume"


@pytest.fixture(scope="module")
def rendered() -> RenderedSet:
    return render_set("local", {"mysqlVersion": VERSION})


def _usage(path: Path) -> float:
    usage = shutil.disk_usage(path)
    return usage.used / usage.total


@pytest.fixture
def volume_set(tmp_path: Path, rendered: RenderedSet) -> Iterator[RehearsalSet]:
    """mysql-0 alone, its volume a tmpfs of SMALL bytes."""
    require_mariadb()
    assert os.geteuid() == 0, "mounting the stand-in volume (tmpfs) needs root, as make test runs"
    group = RehearsalSet(tmp_path / "set", rendered)
    pod = group.pod(0)
    volume = pod.datadir.parent
    volume.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL},mode=0755", "tmpfs", str(volume)], check=True,
                   timeout=30)
    try:
        group.boot(0)
        yield group
    finally:
        group.close()
        subprocess.run(["umount", "-l", str(volume)], check=False, timeout=30)


def test_a_volume_that_nears_full_alarms_then_grows_online_and_no_write_is_lost(volume_set: RehearsalSet) -> None:
    pod = volume_set.pods[0]
    server = pod.server
    assert server is not None
    volume = pod.datadir.parent
    pid = server.pid
    assert pid is not None
    server.sql("CREATE DATABASE growth")
    server.sql("CREATE TABLE growth.rows (id INT PRIMARY KEY, body LONGBLOB)")
    acknowledged: list[int] = []
    failures: list[str] = []
    stop = threading.Event()
    body = os.urandom(256 * 2**10)

    def writer() -> None:
        with server.connect() as conn, conn.cursor() as cursor:
            number = 0
            while not stop.is_set():
                number += 1
                try:
                    cursor.execute("INSERT INTO growth.rows VALUES (%s, %s)", (number, body))
                    conn.commit()
                except pymysql.err.MySQLError as error:  # a full disk: the statement fails, the server stays
                    failures.append(str(error))
                    time.sleep(0.2)
                    continue
                acknowledged.append(number)
                if _usage(volume) >= 0.9:
                    time.sleep(0.05)  # near full: slow down, the alarm is what this waits for

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while _usage(volume) < 0.85:
            assert time.monotonic() < deadline, f"the volume never neared full: {_usage(volume):.0%}"
            assert thread.is_alive(), failures[-3:]
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while ALARM not in pod.sidecar_log.read_text():
            log = pod.sidecar_log.read_text()[-2000:]
            assert time.monotonic() < deadline, f"no alarm at {_usage(volume):.0%}:\n{log}"
            time.sleep(0.2)
        before_growth, peak = len(acknowledged), _usage(volume)
        # The online grow (what resize2fs does after the disk grew): the server keeps running.
        subprocess.run(["mount", "-o", f"remount,size={GROWN}", str(volume)], check=True, timeout=30)
        assert shutil.disk_usage(volume).total >= GROWN * 0.99
        deadline = time.monotonic() + 60
        while len(acknowledged) < before_growth + 100:
            assert time.monotonic() < deadline, f"writes did not resume after the growth: {failures[-3:]}"
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(30)
    assert _usage(volume) < 0.8
    # The alarm goes quiet once the volume has room: no new line over a few of the sidecar's checks.
    alarms = pod.sidecar_log.read_text().count(ALARM)
    time.sleep(4)
    assert pod.sidecar_log.read_text().count(ALARM) == alarms
    assert server.pid == pid, "the server restarted"
    stored = {row[0] for row in server.sql("SELECT id FROM growth.rows")}
    assert set(acknowledged) <= stored, f"acknowledged rows lost: {sorted(set(acknowledged) - stored)[:10]}"
    assert server.sql("CHECK TABLE growth.rows")[0][-1] == "OK"
    assert pod.ready()
    print(f"\nvolume {SMALL >> 20} MiB at {peak:.0%} when grown to {GROWN >> 20} MiB: {before_growth} rows "
          f"acknowledged before, {len(acknowledged)} in all, all stored; {len(failures)} statements refused meanwhile; "
          f"{alarms} alarm lines; server pid unchanged")
