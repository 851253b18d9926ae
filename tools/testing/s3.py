"""A real S3 API on loopback: Debian's radosgw (Ceph 16) on a one-node Ceph cluster of its own.

    with radosgw(tmp_path / "rgw", region="us-west-2", kms_key_id=key_arn) as gateway:
        gateway.aws("s3api", "create-bucket", "--bucket", "b")   # Debian's AWS CLI, as the test user
        gateway.create_bucket("backups")                         # or rclone, the MySQL set's S3 client
        env = gateway.client_env()                               # rclone's env config of a remote `store`

One monitor (msgr v1 on a free loopback port), one OSD on memstore (objects in the OSD's memory:
nothing on disk but the monitor's small store) and radosgw's Beast frontend on a free 127.0.0.1
port; cephx off (the cluster binds loopback only and lives for one test module). It serves the S3
API as RGW does in production (SigV4, multipart uploads, versioning, NoSuchBucket,
SignatureDoesNotMatch). radosgw does SSE-KMS for real with its `testing` KMS backend: a key id named
in the request selects the key configured here, the object is stored encrypted with it (raw_object
reads the RADOS objects back to see ciphertext), and a request naming any other key is refused, as
AWS KMS would refuse a key the caller may not use.

Start-up takes 10-20 s on the project's 2-core machines. A start lost to a port taken between
choosing and binding it (another test run on the machine) is retried from scratch on new ports.
The harness puts the OSD into the CRUSH map itself (`osd crush update on start = false`): the OSD's
own update at start races its first osdmap and sometimes stops it. Every daemon runs in the
foreground in its own session, dies with the test process and is stopped by PID; every wait is
bounded. Missing binaries raise S3TestError: tests fail, never skip.

Used by the etcd backup tests (awscli, SSE-KMS), the MySQL set's backup rehearsal, `make
restore-drill` and `make bench-backup` (rclone).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tools.testing.processes import Daemon, free_ports, stop_all, tail, wait_until

AWS_CLI = "/usr/bin/aws"
RCLONE = "/usr/bin/rclone"
BINARIES = (AWS_CLI, RCLONE, "/usr/bin/ceph-mon", "/usr/bin/ceph-osd", "/usr/bin/radosgw", "/usr/bin/radosgw-admin",
            "/usr/bin/ceph", "/usr/bin/monmaptool", "/usr/bin/ceph-authtool", "/usr/bin/rados")
DEBIAN_PACKAGES = "radosgw ceph-mon ceph-osd awscli rclone"
KMS_KEY_ID = "atomic-test-backup-key"
ACCESS_KEY = "ATOMICTESTACCESSKEY1"
SECRET_KEY = "atomic-test-secret-key-not-a-real-one"  # a loopback test cluster's own user
BOOT_TIMEOUT = 120
START_ATTEMPTS = 3


class S3TestError(RuntimeError):
    """radosgw did not come up (the message ends with the daemons' logs), or a client call failed."""


def require_radosgw() -> None:
    missing = [b for b in BINARIES if not Path(b).exists()]
    if missing:
        raise S3TestError(f"{', '.join(missing)} missing: install Debian's {DEBIAN_PACKAGES} (make test does, as"
                          " root); the S3 tests need a real S3 API and fail without it")


def _run(*argv: str, timeout: float = 60) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise S3TestError(f"{' '.join(argv[:3])}... failed: {done.stderr[-2000:]}")
    return done.stdout


def _conf(root: Path, fsid: str, mon_port: int, rgw_port: int, key_id: str, key: bytes) -> str:
    return f"""[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
public addr = 127.0.0.1
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
osd crush chooseleaf type = 0
# The harness puts the OSD into the CRUSH map itself: the OSD's own update at start races its first
# osdmap and sometimes stops it ("wrong fsid", then "unable to update_crush_device_class").
osd class update on start = false
osd crush update on start = false
osd objectstore = memstore
# A cap, not an allocation: the bench's 256 MB data dirs and their backups fit.
memstore device bytes = 2147483648
mon data avail warn = 1
mon data avail crit = 0
run dir = {root}/run
admin socket = {root}/run/$name.asok
log file = {root}/log/$name.log
mon data = {root}/mon/$id
osd data = {root}/osd/$id
keyring = {root}/keyring

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw enable usage log = false
rgw crypt s3 kms backend = testing
rgw crypt s3 kms encryption keys = {key_id}={base64.b64encode(key).decode()}
rgw crypt require ssl = false
"""


class Radosgw:
    """A one-node Ceph and its radosgw on 127.0.0.1: where it listens, the S3 user's keys and the one
    KMS key it knows; clients for the tests (the AWS CLI, rclone, the raw RADOS objects)."""

    def __init__(self, workdir: Path, region: str = "us-east-1", kms_key_id: str = KMS_KEY_ID) -> None:
        self.workdir = Path(workdir)
        self.region, self.kms_key_id = region, kms_key_id
        self.access_key, self.secret_key = ACCESS_KEY, SECRET_KEY
        self.root = self.workdir / "ceph"
        self.conf = self.root / "ceph.conf"
        self.port = 0
        self.daemons: list[Daemon] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- lifecycle

    def start(self, attempts: int = START_ATTEMPTS) -> Radosgw:
        """Start the cluster; a start that fails is retried from scratch on new ports, `attempts` in all."""
        require_radosgw()
        for attempt in range(1, attempts + 1):
            self.root = self.workdir / f"ceph-{attempt}"
            self.conf = self.root / "ceph.conf"
            try:
                return self._start()
            except S3TestError:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _start(self) -> Radosgw:
        root = self.root
        for sub in ("run", "log", "mon/a", "osd/0"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        mon_port, self.port = free_ports(2)
        # a 256-bit key for radosgw's testing KMS backend, fixed per run
        self.conf.write_text(_conf(root, fsid, mon_port, self.port, self.kms_key_id,
                                   hashlib.sha256(fsid.encode()).digest()))
        c = ["-c", str(self.conf)]
        try:
            _run("/usr/bin/ceph-authtool", "--create-keyring", str(root / "keyring"), "--gen-key", "-n", "mon.",
                 "--cap", "mon", "allow *")
            _run("/usr/bin/monmaptool", "--create", "--addv", "a", f"[v1:127.0.0.1:{mon_port}]", "--fsid", fsid,
                 str(root / "monmap"))
            _run("/usr/bin/ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", str(root / "monmap"))
            self.daemons.append(Daemon.start("ceph-mon", ["/usr/bin/ceph-mon", *c, "-i", "a", "-f"],
                                             root / "log" / "mon.out"))
            osd_id = _run("/usr/bin/ceph", *c, "--connect-timeout", "30", "osd", "create").strip()
            _run("/usr/bin/ceph-osd", *c, "-i", osd_id, "--mkfs")
            _run("/usr/bin/ceph", *c, "--connect-timeout", "30", "osd", "crush", "add", f"osd.{osd_id}", "1.0",
                 "host=localhost", "root=default")
            self.daemons.append(Daemon.start("ceph-osd", ["/usr/bin/ceph-osd", *c, "-i", osd_id, "-f"],
                                             root / "log" / "osd.out"))
            wait_until("the OSD up", lambda: '"num_up_osds":1' in _run("/usr/bin/ceph", *c, "osd", "stat", "-f",
                                                                          "json").replace(" ", ""),
                       BOOT_TIMEOUT, interval=0.5, alive=self.daemons)
            _run("/usr/bin/radosgw-admin", *c, "user", "create", "--uid=atomic-test",
                 "--display-name=atomic-mysql tests", f"--access-key={ACCESS_KEY}", f"--secret={SECRET_KEY}",
                 timeout=BOOT_TIMEOUT)
            self.daemons.append(Daemon.start("radosgw", ["/usr/bin/radosgw", *c, "-n", "client.rgw", "-f"],
                                             root / "log" / "rgw.out"))
            wait_until("radosgw answering", self._answers, BOOT_TIMEOUT, interval=0.5, alive=self.daemons)
        except (TimeoutError, RuntimeError) as error:
            logs = "\n".join(f"--- {p.name}:\n{tail(p)}" for p in sorted((root / "log").glob("*")))
            self.stop()
            raise S3TestError(f"{error}\n{logs}") from None
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint, timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        stop_all(self.daemons)
        self.daemons.clear()
        shutil.rmtree(self.root / "osd", ignore_errors=True)

    # ---------------------------------------------------------------- the AWS CLI and RADOS

    def env(self) -> dict[str, str]:
        """What an AWS SDK program (boto3, the AWS CLI) needs to reach this gateway with the test user's keys."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region, "AWS_EC2_METADATA_DISABLED": "true"}

    def aws(self, *args: str) -> Any:
        """Debian's AWS CLI against this gateway, as the test user; its JSON answer (None for none)."""
        done = subprocess.run([AWS_CLI, f"--endpoint-url={self.endpoint}", "--output=json", *args],
                              capture_output=True, text=True, timeout=120, check=False,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(self.root), **self.env()})
        if done.returncode != 0:
            raise S3TestError(f"aws {' '.join(args)}: {done.stderr.strip()}")
        return json.loads(done.stdout) if done.stdout.strip() else None

    def raw_object(self, name_part: str) -> bytes:
        """Every byte RADOS stores for the S3 objects whose RADOS names contain `name_part` (what is at
        rest): a versioned bucket keeps an empty head (the OLH) beside each version's data object, and
        large objects have tail objects; all of them, concatenated in name order."""
        pool = "default.rgw.buckets.data"
        listed = sorted(o for o in self._rados("-p", pool, "ls").stdout.split() if name_part in o)
        if not listed:
            raise S3TestError(f"no RADOS object with {name_part!r} in {pool}")
        stored = b""
        for number, name in enumerate(listed):
            target = self.root / f"raw-object-{number}"
            self._rados("-p", pool, "get", name, str(target))
            stored += target.read_bytes()
        return stored

    def _rados(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/usr/bin/rados", "-c", str(self.conf), *args], capture_output=True, text=True,
                              check=True, timeout=60)

    # ---------------------------------------------------------------- rclone (the MySQL set's client)

    def client_env(self, *, secret_key: str | None = None) -> dict[str, str]:
        """rclone's environment configuration of a remote named `store` (what s3.sh sets up from the
        mounted Secret in a pod), for the harness's own calls."""
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
        result = subprocess.run([RCLONE, "--quiet", *args], input=stdin, capture_output=True,
                                env=self.client_env(), timeout=timeout, check=False)
        if result.returncode != 0:
            raise S3TestError(f"rclone {' '.join(args)}: {result.stderr.decode(errors='replace')[-1500:]}")
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
def radosgw(workdir: Path, region: str = "us-east-1", kms_key_id: str = KMS_KEY_ID) -> Iterator[Radosgw]:
    """A one-node Ceph with radosgw on loopback and an S3 user; every daemon stopped on exit. SSE-KMS
    requests must name `kms_key_id` (an AWS key ARN will do: radosgw takes the id as it is)."""
    gateway = Radosgw(workdir, region, kms_key_id).start()
    try:
        yield gateway
    finally:
        gateway.stop()
