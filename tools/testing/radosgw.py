"""A real S3 API on loopback: Debian's Ceph RADOS Gateway on a one-node Ceph cluster.

    with ceph_rgw(tmp_path / "ceph") as rgw:
        rgw.create_bucket("backups")
        env = rgw.client_env()       # what the set's scripts need to reach it (rclone's env config)

One monitor (auth none, msgr v1 on a free loopback port), one OSD on memstore (objects in the
OSD's memory: nothing touches a disk but the monitor's small store), and radosgw's beast
frontend bound to 127.0.0.1. Pools are created with size 1. It serves the S3 API as RGW does in
production (SigV4, multipart uploads, NoSuchBucket, SignatureDoesNotMatch), which is what the
backup, archive and restore scripts are rehearsed against. Start-up takes 10-20 s on the
project's 2-core machines. Every daemon runs in the foreground in its own session, dies with the
test process, and is stopped by PID.

Missing binaries raise RadosGwNotInstalledError (a RuntimeError): tests fail, never skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from tools.testing.processes import Daemon, free_ports, stop_all, wait_until

DEBIAN_PACKAGES = "ceph-mon ceph-osd radosgw rclone"
BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool", "rclone")
ACCESS_KEY = "ATOMICTESTKEY0000001"
SECRET_KEY = "atomic-test-secret-key-0000000000000001"


class RadosGwNotInstalledError(RuntimeError):
    """Ceph's monitor, OSD or gateway (or rclone, the scripts' S3 client) is not installed."""


def require_radosgw() -> None:
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        raise RadosGwNotInstalledError(
            f"{', '.join(missing)} not found: install the Debian packages {DEBIAN_PACKAGES} (as root: make"
            " system-deps); the backup tests need a real S3 API and fail without it")


class CephRgw:
    """A one-node Ceph cluster and its RADOS Gateway on 127.0.0.1."""

    def __init__(self, base_dir: Path) -> None:
        self.root = Path(base_dir)
        self.base = self.root
        self.mon_port, self.port = free_ports(2)
        self.conf = self.base / "ceph.conf"
        self.daemons: list[Daemon] = []
        self.access_key, self.secret_key = ACCESS_KEY, SECRET_KEY

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_conf(self, fsid: str) -> None:
        b = self.base
        self.conf.write_text(f"""[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{self.mon_port}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind ipv4 = true
ms bind ipv6 = false
public addr = 127.0.0.1
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd crush chooseleaf type = 0
# The harness puts osd.0 into the CRUSH map itself: the OSD's own update at start races its first
# osdmap and sometimes stops the OSD ("wrong fsid", then "unable to update_crush_location").
osd class update on start = false
osd crush update on start = false
osd objectstore = memstore
memstore device bytes = 2147483648
osd data = {b}/osd$id
mon data = {b}/mon
run dir = {b}/run
log file = {b}/log/$name.log
admin socket = {b}/run/$name.asok
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{self.port}
rgw dns name = localhost
rgw enable usage log = false
""")

    def _run(self, *argv: str, timeout: float = 60) -> str:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout

    def _ceph(self, *args: str) -> str:
        return self._run("ceph", "-c", str(self.conf), "--connect-timeout", "10", *args)

    def start(self, timeout: float = 90, attempts: int = 3) -> CephRgw:
        """Start the cluster; a start that fails (a port taken between choosing and binding it, by
        another test run on the machine) is retried from scratch on new ports, `attempts` in all."""
        require_radosgw()
        for attempt in range(1, attempts + 1):
            self.base = self.root / f"cluster-{attempt}"
            self.conf = self.base / "ceph.conf"
            self.mon_port, self.port = free_ports(2)
            try:
                return self._start(timeout)
            except (RuntimeError, TimeoutError):
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> CephRgw:
        for sub in ("mon", "osd0", "run", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        fsid, osd_uuid = str(uuid.uuid4()), str(uuid.uuid4())
        self._write_conf(fsid)
        c = str(self.conf)
        try:
            self._run("monmaptool", "--create", "--add", "a", f"v1:127.0.0.1:{self.mon_port}", "--fsid", fsid,
                      str(self.base / "monmap"))
            self._run("ceph-mon", "-c", c, "--mkfs", "-i", "a", "--monmap", str(self.base / "monmap"))
            self.daemons.append(Daemon.start("ceph-mon", ["ceph-mon", "-f", "-c", c, "-i", "a"],
                                             self.base / "log" / "mon.out"))
            wait_until("ceph-mon answers", lambda: self._ceph("mon", "stat"), 30, alive=self.daemons)
            self._ceph("osd", "create", osd_uuid)
            self._ceph("osd", "crush", "add", "osd.0", "1.0", "root=default", "host=localhost")
            self._run("ceph-osd", "-c", c, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
            self.daemons.append(Daemon.start("ceph-osd", ["ceph-osd", "-f", "-c", c, "-i", "0"],
                                             self.base / "log" / "osd.out"))
            wait_until("osd.0 up", lambda: " 1 up" in self._ceph("osd", "stat"), 60, alive=self.daemons)
            self.daemons.append(Daemon.start("radosgw", ["radosgw", "-f", "-c", c, "-n", "client.rgw"],
                                             self.base / "log" / "rgw.out"))
            wait_until("radosgw answers", self._answers, timeout, interval=0.3, alive=self.daemons)
            self._run("radosgw-admin", "-c", c, "user", "create", "--uid", "atomic", "--display-name", "atomic",
                      "--access-key", self.access_key, "--secret", self.secret_key)
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        stop_all(self.daemons)
        self.daemons.clear()

    # ---------------------------------------------------------------- clients

    def client_env(self, *, secret_key: str | None = None) -> dict[str, str]:
        """rclone's environment configuration of a remote named `store` (what s3.sh sets up from
        the mounted Secret in a pod), for the harness's own calls."""
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env.update({
            "RCLONE_CONFIG": "/dev/null",
            "RCLONE_CONFIG_STORE_TYPE": "s3",
            "RCLONE_CONFIG_STORE_PROVIDER": "Ceph",
            "RCLONE_CONFIG_STORE_ENDPOINT": self.endpoint,
            "RCLONE_CONFIG_STORE_ENV_AUTH": "false",
            "RCLONE_CONFIG_STORE_ACCESS_KEY_ID": self.access_key,
            "RCLONE_CONFIG_STORE_SECRET_ACCESS_KEY": secret_key or self.secret_key,
        })
        return env

    def rclone(self, *args: str, stdin: bytes | None = None, timeout: float = 120) -> bytes:
        result = subprocess.run(["rclone", "--quiet", *args], input=stdin, capture_output=True,
                                env=self.client_env(), timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"rclone {' '.join(args)}: {result.stderr.decode(errors='replace')[-1500:]}")
        return result.stdout

    def create_bucket(self, name: str) -> None:
        self.rclone("mkdir", f"store:{name}")

    def get(self, key: str) -> bytes:
        return self.rclone("cat", f"store:{key}")

    def put(self, key: str, data: bytes) -> None:
        self.rclone("rcat", f"store:{key}", stdin=data)

    def delete(self, key: str) -> None:
        self.rclone("deletefile", f"store:{key}")

    def list(self, path: str) -> list[str]:
        out = self.rclone("lsf", "-R", "--files-only", f"store:{path}")
        return sorted(line for line in out.decode().splitlines() if line)


@contextlib.contextmanager
def ceph_rgw(base_dir: Path) -> Iterator[CephRgw]:
    rgw = CephRgw(base_dir).start()
    try:
        yield rgw
    finally:
        rgw.stop()
