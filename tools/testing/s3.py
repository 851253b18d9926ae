"""A real S3 API on loopback: Debian's radosgw (Ceph 16) on a one-node Ceph cluster of its own.

One monitor, one OSD on memstore (RAM, nothing on disk but the monitor's small store) and radosgw
with its Beast frontend on a free 127.0.0.1 port; cephx off (the cluster binds loopback only and
lives for one test module). radosgw does SSE-KMS for real with its `testing` KMS backend: a key
id named in the request selects a key configured here, the object is stored encrypted with it
(tests read the raw RADOS object back to see ciphertext), and a request naming any other key is
refused, as AWS KMS would refuse a key the caller may not use. Versioning is radosgw's own.
Every daemon is stopped by PID; every wait is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.testing.processes import Daemon, free_ports, stop_all, tail, wait_until

AWS_CLI = "/usr/bin/aws"
BINARIES = (AWS_CLI, "/usr/bin/ceph-mon", "/usr/bin/ceph-osd", "/usr/bin/radosgw", "/usr/bin/radosgw-admin",
            "/usr/bin/ceph", "/usr/bin/monmaptool", "/usr/bin/ceph-authtool", "/usr/bin/rados")
KMS_KEY_ID = "atomic-test-backup-key"
ACCESS_KEY = "ATOMICTESTACCESSKEY1"
SECRET_KEY = "atomic-test-secret-key-not-a-real-one"  # a loopback test cluster's own user
BOOT_TIMEOUT = 120


class S3TestError(RuntimeError):
    """radosgw did not come up; the message ends with the daemons' logs."""


@dataclass
class Radosgw:
    """A running radosgw: where it listens, the S3 user's keys and the one KMS key it knows."""

    endpoint: str
    access_key: str
    secret_key: str
    kms_key_id: str
    region: str
    conf: Path
    daemons: list[Daemon] = field(default_factory=list)

    def aws(self, *args: str) -> Any:
        """Debian's AWS CLI against this gateway, as the test user; its JSON answer (None for none)."""
        done = subprocess.run([AWS_CLI, f"--endpoint-url={self.endpoint}", "--output=json", *args],
                              capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(self.conf.parent), **self.env()})
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
            target = self.conf.parent / f"raw-object-{number}"
            self._rados("-p", pool, "get", name, str(target))
            stored += target.read_bytes()
        return stored

    def _rados(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/usr/bin/rados", "-c", str(self.conf), *args], capture_output=True, text=True,
                              check=True, timeout=60)

    def env(self) -> dict[str, str]:
        """What a boto3 program needs to reach this gateway with the test user's keys."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region, "AWS_EC2_METADATA_DISABLED": "true"}


def _run(*argv: str, timeout: float = 60) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
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
memstore device bytes = 536870912
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
rgw crypt s3 kms backend = testing
rgw crypt s3 kms encryption keys = {key_id}={base64.b64encode(key).decode()}
rgw crypt require ssl = false
"""


@contextlib.contextmanager
def radosgw(workdir: Path, region: str = "us-east-1", kms_key_id: str = KMS_KEY_ID) -> Iterator[Radosgw]:
    """A one-node Ceph with radosgw on loopback and an S3 user; every daemon stopped on exit. SSE-KMS
    requests must name `kms_key_id` (an AWS key ARN will do: radosgw takes the id as it is)."""
    missing = [b for b in BINARIES if not Path(b).exists()]
    if missing:
        raise S3TestError(f"{', '.join(missing)} missing: install Debian's radosgw, ceph-mon, ceph-osd and awscli "
                          "(make test does, as root)")
    root = workdir / "ceph"
    for sub in ("run", "log", "mon/a", "osd/0"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    fsid = str(uuid.uuid4())
    mon_port, rgw_port = free_ports(2)
    # a 256-bit key for radosgw's testing KMS backend, fixed per run
    conf = root / "ceph.conf"
    conf.write_text(_conf(root, fsid, mon_port, rgw_port, kms_key_id, hashlib.sha256(fsid.encode()).digest()))
    c = ["-c", str(conf)]
    _run("/usr/bin/ceph-authtool", "--create-keyring", str(root / "keyring"), "--gen-key", "-n", "mon.",
         "--cap", "mon", "allow *")
    _run("/usr/bin/monmaptool", "--create", "--addv", "a", f"[v1:127.0.0.1:{mon_port}]", "--fsid", fsid,
         str(root / "monmap"))
    _run("/usr/bin/ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", str(root / "monmap"))
    gateway = Radosgw(f"http://127.0.0.1:{rgw_port}", ACCESS_KEY, SECRET_KEY, kms_key_id, region, conf)
    try:
        gateway.daemons.append(Daemon.start("ceph-mon", ["/usr/bin/ceph-mon", *c, "-i", "a", "-f"],
                                            root / "log" / "mon.out"))
        osd_id = _run("/usr/bin/ceph", *c, "--connect-timeout", "30", "osd", "create").strip()
        _run("/usr/bin/ceph-osd", *c, "-i", osd_id, "--mkfs")
        _run("/usr/bin/ceph", *c, "--connect-timeout", "30", "osd", "crush", "add", f"osd.{osd_id}", "1.0",
             "host=localhost", "root=default")
        gateway.daemons.append(Daemon.start("ceph-osd", ["/usr/bin/ceph-osd", *c, "-i", osd_id, "-f"],
                                            root / "log" / "osd.out"))
        wait_until("the OSD up", lambda: '"num_up_osds":1' in _run("/usr/bin/ceph", *c, "osd", "stat", "-f",
                                                                      "json").replace(" ", ""),
                   BOOT_TIMEOUT, interval=0.5, alive=gateway.daemons)
        _run("/usr/bin/radosgw-admin", *c, "user", "create", "--uid=atomic-test", "--display-name=atomic-mysql tests",
             f"--access-key={ACCESS_KEY}", f"--secret={SECRET_KEY}", timeout=BOOT_TIMEOUT)
        gateway.daemons.append(Daemon.start("radosgw", ["/usr/bin/radosgw", *c, "-n", "client.rgw", "-f"],
                                            root / "log" / "rgw.out"))
        wait_until("radosgw answering", lambda: _answers(gateway.endpoint), BOOT_TIMEOUT, interval=0.5,
                   alive=gateway.daemons)
        yield gateway
    except (TimeoutError, RuntimeError) as error:
        logs = "\n".join(f"--- {p.name}:\n{tail(p)}" for p in sorted((root / "log").glob("*")))
        raise S3TestError(f"{error}\n{logs}") from None
    finally:
        stop_all(gateway.daemons)
        shutil.rmtree(root / "osd", ignore_errors=True)


def _answers(endpoint: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(endpoint, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        time.sleep(0.2)
        return False
