"""Backups, binlog archiving and point-in-time restore, rehearsed on real MariaDB 10.11 and a real
S3 API: Debian's Ceph RADOS Gateway on a one-node loopback Ceph cluster (tools/testing/s3.py).

The "pods" are those of tools/testing/mysql_pods.py (mariadbd processes running the rendered
ConfigMap's own scripts in the StatefulSet's order, TLS required on every TCP login as in the set),
plus what backups add: every member runs backup-agent.sh (ordinal 0's
also runs archive-binlogs.sh), the CronJob's container is backup-job.sh run from the test, and a
restored set's ordinal 0 runs restore.sh fetch and restore.sh replay as its init containers before
its server starts. The S3 client is Debian's rclone (the pods copy the pinned image's static binary).

What stands in for Kubernetes: the kubelet (ordering, the CronJob's schedule: the job is run by
the test), DNS (every peer is 127.0.0.1 with per-ordinal ports).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tools.testing.mariadb import MARIADBD, require_mariadb
from tools.testing.mysql_pods import PASSWORDS, SCRIPT_CONTAINERS, VERSION, Pod, RehearsalSet, RenderedSet, render_set
from tools.testing.processes import free_ports, own_session_dying_with_parent
from tools.testing.s3 import Radosgw

pytestmark = pytest.mark.real

BUCKET = "atomic-backups"
RESTORED_BUCKET = "atomic-restored"  # a restored set's own bucket: it reads the source's, read-only
PREFIX = "rehearsal/mysql"
ARCHIVE_SECONDS = 3
APP_PASSWORD = "app-pw"
# The scripts backups add, and the container each runs in (the rest: mysql_pods.SCRIPT_CONTAINERS).
BACKUP_SCRIPT_CONTAINERS = {"backup-agent.sh": "backup-agent", "backup.sh": "backup-agent",
                            "backup-job.sh": "backup-agent", "archive-binlogs.sh": "backup-agent",
                            "restore.sh": "backup-agent"}


class BackupPod(Pod):
    """A member with the backup agent; ordinal 0 of a restored set restores before it starts."""

    group: BackupSet

    def env(self, container: str = "mysql", **extra: str) -> dict[str, str]:
        group = self.group
        env = super().env(container if container in group.rendered.env else "mysql")
        env.pop("AWS_CA_BUNDLE", None)
        env.update({
            "BACKUP_BUCKET": group.bucket,
            "BACKUP_PREFIX": group.prefix,
            "BACKUP_ENDPOINT": group.rgw.endpoint,
            "BACKUP_REGION": "us-east-1",
            "BACKUP_KEY_DIR": str(group.s3_secrets_dir),
            "S3_TOOLS_DIR": str(group.base / "no-s3-tools"),
            "BACKUP_AGENT_PORT": str(group.agent_ports[self.ordinal]),
            "BACKUP_METRICS_PORT": str(group.metrics_ports[self.ordinal]),
            "AGENT_BIND_ADDRESS": "127.0.0.1",
            "PEER_AGENT_PORTS": " ".join(map(str, group.agent_ports)),
            "AGENT_STATE_DIR": str(self.root / "agent-state"),
            "BINLOG_ARCHIVE_SECONDS": str(ARCHIVE_SECONDS),
            "ARCHIVE_POLL_SECONDS": "1",
            "CLIENT_CNF_DIR": str(self.tmp),
            "MYSQL_REPLICAS": str(group.replicas),
            "BACKUP_RETENTION_DAYS": "7",
            "RESTORE_FROM": group.restore_from,
            "RESTORE_PREFIX": group.restore_prefix,
            "RESTORE_BUCKET": group.restore_bucket,
            "MYSQLD": str(MARIADBD),
            "RESTORE_MYSQLD_ARGS": "--user=root" if os.geteuid() == 0 else "",
            "S3_CHUNK_SIZE": "5M",
            # What the program renders for the agent: the clone sender's copy threads (backup.agent_env).
            "BACKUP_PARALLEL": group.rendered.env["sidecar"]["BACKUP_PARALLEL"],
        })
        env.update(extra)
        return env

    def script(self, name: str, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
        container = BACKUP_SCRIPT_CONTAINERS.get(name) or SCRIPT_CONTAINERS[name]
        return subprocess.run(["bash", str(self.group.config_dir / name), *args], env=self.env(container, **extra),
                              capture_output=True, text=True, timeout=timeout, check=False)


    def boot(self, temporary_server: bool = False) -> None:
        self.agent: subprocess.Popen[bytes] | None = None
        self.agent_log = self.root / "agent.log"
        if self.group.restore_from and self.ordinal == 0:
            self._boot_restored()
        else:
            super().boot(temporary_server)
            assert self.server is not None
            self.server.root_password = self.group.passwords["root-password"]
        self.start_agent()

    def _boot_restored(self) -> None:
        import shutil

        from components.workload.mysql import config as mysql_config
        from tools.testing.mariadb import MariaDBServer

        for path in (self.root, self.conf_dir, self.tmp, self.datadir.parent):
            path.mkdir(parents=True, exist_ok=True)
        if not self.tls_dir.exists():
            shutil.copytree(self.group.tls_dir, self.tls_dir)
        if not self.secrets_dir.exists():  # the pod's own copy of the Secret, as Pod.prepare makes it
            shutil.copytree(self.group.secrets_dir, self.secrets_dir)
        self.server = MariaDBServer(
            self.root / "server", self.group.mysql_ports[0], mysql_config.server_id(0),
            datadir=self.datadir, root_password=self.group.passwords["root-password"], name=self.name,
            tls_dir=self.tls_dir,
        )
        self.must("init-mysql.sh")
        self.server.cnf = self._cnf_from_conf_dir()
        self.must("clone-mysql.sh")
        for phase in ("fetch", "replay"):
            result = self.script("restore.sh", phase, timeout=300)
            self.group.restore_log += result.stderr
            if result.returncode != 0:
                raise RestoreRefusedError(result.stderr)
        self.server.start()
        self.start_sidecar()
        self.wait_ready()

    def start_agent(self) -> None:
        with self.agent_log.open("ab") as log:
            self.agent = subprocess.Popen(
                ["bash", str(self.group.config_dir / "backup-agent.sh")], env=self.env("backup-agent"),
                stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=own_session_dying_with_parent)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "serving backup requests" not in self.agent_log.read_text():
            time.sleep(0.2)

    def stop_agent(self) -> None:
        agent = getattr(self, "agent", None)
        if agent is not None and agent.poll() is None:
            os.killpg(agent.pid, 15)
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(agent.pid, 9)
                agent.wait(10)
        self.agent = None

    def delete(self) -> None:
        self.stop_agent()
        super().delete()


def rows(pod: Pod) -> list[str]:
    assert pod.server is not None
    return [row[0] for row in pod.server.sql("SELECT message FROM app.messages ORDER BY id")]


class RestoreRefusedError(AssertionError):
    pass


class BackupSet(RehearsalSet):
    def __init__(self, base: Path, rendered: RenderedSet, rgw: Radosgw, *, replicas: int = 3, restore_from: str = "",
                 restore_prefix: str = "", restore_bucket: str = "", prefix: str = PREFIX, bucket: str = BUCKET,
                 secret_key: str | None = None, root_password: str | None = None) -> None:
        super().__init__(base, rendered)
        self.rgw, self.replicas, self.bucket, self.prefix = rgw, replicas, bucket, prefix
        self.restore_from, self.restore_prefix, self.restore_bucket = restore_from, restore_prefix, restore_bucket
        self.restore_log = ""
        self.passwords = dict(PASSWORDS)
        if root_password is not None:  # a new set has its own Secret
            self.passwords["root-password"] = root_password
            (self.secrets_dir / "root-password").write_text(root_password)
        ports = free_ports(10)
        self.agent_ports, self.metrics_ports = ports[:5], ports[5:]
        self.s3_secrets_dir = base / "s3-secret"
        self.s3_secrets_dir.mkdir()
        (self.s3_secrets_dir / "access-key-id").write_text(rgw.access_key)
        (self.s3_secrets_dir / "secret-access-key").write_text(secret_key or rgw.secret_key)

    def boot(self, ordinal: int, temporary_server: bool = False) -> Pod:
        for lower in range(ordinal):
            assert lower in self.pods and self.pods[lower].ready(), f"mysql-{lower} must be ready first"
        pod = self.pods.get(ordinal) or BackupPod(self, ordinal)
        self.pods[ordinal] = pod
        pod.boot(temporary_server)
        return pod

    def job(self, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """One run of the backup CronJob's container."""
        env = self.pods[0].env("backup-agent", POD_NAME="mysql-backup-29000000-abcde")
        return subprocess.run(["bash", str(self.config_dir / "backup-job.sh")], env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def must_back_up(self) -> str:
        result = self.job()
        assert result.returncode == 0, result.stderr[-4000:]
        match = re.search(r"backup (\d{8}T\d{6}Z) of mysql-\d is stored and verified", result.stderr)
        assert match, result.stderr
        return match.group(1)

    def manifest(self, backup_id: str) -> dict[str, object]:
        return json.loads(self.rgw.get(f"{self.bucket}/{self.prefix}/backups/{backup_id}/manifest.json"))

    def archive_reaches(self, moment: datetime, timeout: float = 60) -> None:
        """Wait until the archive holds a binlog whose events reach past `moment`."""
        deadline = time.monotonic() + timeout
        current: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                current = json.loads(self.rgw.get(f"{self.bucket}/{self.prefix}/binlogs/current.json"))
            except RuntimeError:
                current = {}
            end = current.get("end_time")
            if end and datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) >= moment:
                return
            time.sleep(0.5)
        raise AssertionError(f"the archive did not reach {moment} within {timeout:.0f}s: {current}; agent log:\n"
                             f"{(self.pods[0].root / 'agent.log').read_text()[-3000:]}")

    def write(self, *messages: str) -> None:
        with self.primary.connect(user="app", password=APP_PASSWORD, database="app") as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO messages (message) VALUES (%s)", [(m,) for m in messages])

    def wait_replicated(self, ordinals: list[int], timeout: float = 30) -> None:
        position = self.primary.value("SELECT @@GLOBAL.gtid_binlog_pos")
        for ordinal in ordinals:
            server = self.pods[ordinal].server
            assert server is not None
            assert server.value("SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout)) == 0, (
                f"mysql-{ordinal} did not reach {position}: {server.sql('SHOW SLAVE STATUS')}"
            )

    def table(self, ordinal: int, statement: str) -> list[tuple[object, ...]]:
        server = self.pods[ordinal].server
        assert server is not None
        return server.sql(statement)


def utc_now_second() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def tick() -> None:
    """Binlog event times have one-second resolution: put a whole second between two writes."""
    time.sleep(1.2)


@pytest.fixture(scope="module")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Radosgw]:
    require_mariadb()
    server = Radosgw(tmp_path_factory.mktemp("ceph")).start()
    try:
        server.create_bucket(BUCKET)
        server.create_bucket(RESTORED_BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def rendered() -> RenderedSet:
    """The local stack's set rendered for the harness's MariaDB 10.11 (the backup settings' own values
    are the harness's: bucket, endpoint and key of the loopback RGW)."""
    return render_set("local", {"mysqlVersion": VERSION})


@pytest.fixture(scope="module")
def source(rgw: Radosgw, rendered: RenderedSet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackupSet]:
    group = BackupSet(tmp_path_factory.mktemp("source"), rendered, rgw)
    try:
        group.boot(0)
        with group.primary.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE app")
            cur.execute("CREATE TABLE app.messages (id INT AUTO_INCREMENT PRIMARY KEY, message VARCHAR(64))")
            cur.execute("CREATE TABLE app.precious (id INT PRIMARY KEY, note VARCHAR(64))")
            cur.execute("INSERT INTO app.precious VALUES (1, 'kept'), (2, 'kept too')")
            cur.execute("CREATE USER app@'%%' IDENTIFIED BY %s", (APP_PASSWORD,))
            cur.execute("GRANT ALL ON app.* TO app@'%'")
        group.write("before mysql-1")
        group.boot(1)
        group.boot(2)
        yield group
    finally:
        group.close()


RESTORED_ROOT_PASSWORD = "an'other \\set's root #pw"


def restore_set(rgw: Radosgw, base: Path, restore_from: str, **options: object) -> BackupSet:
    """A new set (its own bucket, prefix and root password) restoring from the source set's bucket
    and prefix (mysqlRestoreBucket, mysqlRestorePrefix)."""
    settings: dict[str, object] = {"bucket": RESTORED_BUCKET, "prefix": "restored/mysql", "restore_prefix": PREFIX,
                                   "restore_bucket": BUCKET, "root_password": RESTORED_ROOT_PASSWORD, **options}
    return BackupSet(base, render_set("local", {"mysqlVersion": VERSION}), rgw, restore_from=restore_from,
                     **settings)  # type: ignore[arg-type]


# ---------------------------------------------------------------- backups


def test_the_job_backs_up_the_highest_ready_replica_and_verifies_it(source: BackupSet) -> None:
    result = source.job()
    assert result.returncode == 0, result.stderr[-4000:]
    backup_id = re.search(r"backup (\d{8}T\d{6}Z) of mysql-2 is stored and verified", result.stderr).group(1)  # type: ignore[union-attr]
    threads = source.rendered.env["sidecar"]["BACKUP_PARALLEL"]
    assert f"({threads} copy threads)" in result.stderr  # backup.sh's --parallel, as the program renders it
    manifest = source.manifest(backup_id)
    assert manifest["source"] == "mysql-2" and manifest["role"] == "replica"
    assert manifest["engine"] == "mariadb" and re.fullmatch(r"0-100-\d+", str(manifest["gtid"]))
    stream = source.rgw.get(f"{BUCKET}/{PREFIX}/backups/{backup_id}/backup.xbstream")
    assert len(stream) == manifest["bytes"] and hashlib.sha256(stream).hexdigest() == manifest["sha256"]
    assert manifest["binlog_incarnation"], "the primary's archive was running and is recorded"
    latest = json.loads(source.rgw.get(f"{BUCKET}/{PREFIX}/backups/latest.json"))
    assert latest["id"] == backup_id
    result = json.loads(source.rgw.get(f"{BUCKET}/{PREFIX}/backups/last-result.json"))
    assert result["status"] == "ok" and result["id"] == backup_id


def test_the_primary_is_backed_up_only_when_no_replica_is_ready(source: BackupSet) -> None:
    for ordinal in (1, 2):
        source.table(ordinal, "STOP SLAVE SQL_THREAD")
    try:
        result = source.job()
    finally:
        for ordinal in (1, 2):
            source.table(ordinal, "START SLAVE SQL_THREAD")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mysql-2 is not a candidate: not-ready: replication threads stopped" in result.stderr
    assert "warning: no replica is ready; backing up the primary mysql-0" in result.stderr
    backup_id = re.search(r"backup (\S+) of mysql-0 is stored", result.stderr).group(1)  # type: ignore[union-attr]
    assert source.manifest(backup_id)["role"] == "primary"


@pytest.mark.parametrize("value", ["0", "two", "1000"])
def test_a_backup_with_a_thread_count_that_is_no_whole_number_stops_before_touching_the_store(
        source: BackupSet, value: str) -> None:
    env = source.pods[2].env("backup-agent", BACKUP_PARALLEL=value)
    result = subprocess.run(["bash", str(source.config_dir / "backup.sh"), "20260104T000000Z"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert f"FATAL: BACKUP_PARALLEL={value}: must be a whole number from 1 to 999" in result.stderr
    assert not source.rgw.list(f"{BUCKET}/{PREFIX}/backups/20260104T000000Z")


def test_a_backup_to_a_missing_bucket_fails_with_the_reason(source: BackupSet, tmp_path: Path) -> None:
    pod = source.pods[2]
    env = pod.env("backup-agent", BACKUP_BUCKET="no-such-bucket")
    result = subprocess.run(["bash", str(source.config_dir / "backup.sh"), "20260101T000000Z"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "FATAL: bucket no-such-bucket does not exist or is not visible to this access key" in result.stderr


def test_a_backup_with_sse_kms_is_ciphertext_at_rest_and_another_key_is_refused(source: BackupSet) -> None:
    """As on the aws cluster (BACKUP_SSE=aws:kms and the bucket's own key): rclone asks for SSE-KMS
    with the key, radosgw's testing KMS backend encrypts with it; a key it does not know is refused."""
    pod, backup_id = source.pods[2], "20260102T000000Z"
    env = pod.env("backup-agent", BACKUP_SSE="aws:kms", BACKUP_SSE_KMS_KEY_ID=source.rgw.kms_key_id)
    result = subprocess.run(["bash", str(source.config_dir / "backup.sh"), backup_id], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    key = f"{PREFIX}/backups/{backup_id}/backup.xbstream"
    plain = source.rgw.get(f"{BUCKET}/{key}")  # read back through the gateway: decrypted
    assert plain[:8] == b"XBSTCK01" and hashlib.sha256(plain).hexdigest() == source.manifest(backup_id)["sha256"]
    stored = source.rgw.raw_object(key)
    assert len(stored) >= len(plain) and b"XBSTCK01" not in stored, "the object is stored encrypted"
    env["BACKUP_SSE_KMS_KEY_ID"] = "arn:aws:kms:us-east-1:123456789012:key/not-this-buckets-key"
    result = subprocess.run(["bash", str(source.config_dir / "backup.sh"), "20260103T000000Z"], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    # The upload's reason, not the backup tool's broken pipe that follows it.
    assert result.returncode == 1, result.stderr
    assert ("FATAL: upload to s3://atomic-backups/rehearsal/mysql/backups/20260103T000000Z/backup.xbstream failed:"
            " the KMS key arn:aws:kms:us-east-1:123456789012:key/not-this-buckets-key was refused for SSE-KMS"
            in result.stderr), result.stderr
    assert not source.rgw.list(f"{BUCKET}/{PREFIX}/backups/20260103T000000Z"), "no partial object is left"


def test_the_archiver_uploads_every_closed_binlog_in_order_within_its_delay(source: BackupSet) -> None:
    source.write("archived soon")
    began = utc_now_second()
    source.archive_reaches(began, timeout=ARCHIVE_SECONDS + 20)
    inc = json.loads(source.rgw.get(f"{BUCKET}/{PREFIX}/binlogs/current.json"))["incarnation"]
    names = [n for n in source.rgw.list(f"{BUCKET}/{PREFIX}/binlogs/{inc}") if not n.endswith(".json")]
    numbers = [int(n.rsplit(".", 1)[1]) for n in names]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), names
    index = json.loads(source.rgw.get(f"{BUCKET}/{PREFIX}/binlogs/{inc}/{names[-1]}.json"))
    assert index["bytes"] == (source.pods[0].datadir / names[-1]).stat().st_size
    # The agent's metrics say so too.
    with urllib.request.urlopen(f"http://127.0.0.1:{source.metrics_ports[0]}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert "atomic_mysql_binlog_archive_pending_files 0" in text
    assert re.search(r"^atomic_mysql_binlog_archive_last_event_timestamp_seconds [1-9]\d+$", text, re.M), text


def test_nothing_is_missed_across_restarts_of_the_primary_and_its_archiver(source: BackupSet) -> None:
    pod = source.pods[0]
    assert isinstance(pod, BackupPod) and pod.server is not None
    source.write("before the restarts")
    pod.stop_agent()  # the archiver is down while the server restarts (which closes its binlog)
    pod.server.restart()
    source.write("while the archiver is down")
    source.table(0, "FLUSH BINARY LOGS")
    pod.start_agent()
    tick()
    moment = utc_now_second()
    source.write("after the restarts")
    source.archive_reaches(moment, timeout=ARCHIVE_SECONDS + 30)
    inc = json.loads(source.rgw.get(f"{BUCKET}/{PREFIX}/binlogs/current.json"))["incarnation"]
    archived = {n for n in source.rgw.list(f"{BUCKET}/{PREFIX}/binlogs/{inc}") if not n.endswith(".json")}
    closed = [str(row[0]) for row in source.table(0, "SHOW BINARY LOGS")][:-1]
    assert set(closed) <= archived, sorted(set(closed) - archived)
    numbers = sorted(int(n.rsplit(".", 1)[1]) for n in archived)
    assert numbers == list(range(numbers[0], numbers[-1] + 1)), "the archive has no hole"
    assert "(0 there already)" not in (pod.root / "agent.log").read_text().rsplit("archiving closed binlogs", 1)[-1]
    source.wait_replicated([1, 2])


# ---------------------------------------------------------------- point-in-time restore


def test_restore_to_a_point_in_time_gives_exactly_the_rows_before_it(source: BackupSet, rgw: Radosgw,
                                                                    tmp_path: Path) -> None:
    source.write("A1", "A2")
    backup_id = source.must_back_up()
    source.write("B1", "B2")
    tick()
    point = utc_now_second()
    tick()
    source.write("C1")
    with source.primary.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE app.precious")
    source.archive_reaches(point + timedelta(seconds=1))
    expected = [r for r in rows(source.pods[0]) if r != "C1"]

    restored = restore_set(rgw, tmp_path / "restored", stamp(point))
    try:
        restored.boot(0)
        assert f"restoring backup {backup_id}" in restored.restore_log, restored.restore_log
        assert rows(restored.pods[0]) == expected
        assert restored.table(0, "SELECT id, note FROM app.precious ORDER BY id") == [(1, "kept"), (2, "kept too")]
        # It serves with TLS required, as the source does: the restore kept the set's config.
        assert restored.table(0, "SELECT @@GLOBAL.require_secure_transport") == [(1,)]
        # It serves with this set's own root password (not the source's), and replicas clone from it as usual.
        assert restored.table(0, "SELECT 1") == [(1,)]  # as root, with RESTORED_ROOT_PASSWORD
        with pytest.raises(Exception, match="1045"):
            restored.primary.sql("SELECT 1", password=PASSWORDS["root-password"])
        restored.boot(1)
        assert rows(restored.pods[1]) == expected
        with restored.primary.connect(user="app", password=APP_PASSWORD, database="app") as conn, conn.cursor() as c:
            c.execute("INSERT INTO messages (message) VALUES ('after the restore')")
        restored.wait_replicated([1])
        assert rows(restored.pods[1])[-1] == "after the restore"
        # The restored set archives to its own bucket and prefix, never to the source's.
        restored.archive_reaches(utc_now_second() - timedelta(days=1), timeout=60)
        # A restart finds the restored data dir and leaves it alone.
        result = restored.pods[0].script("restore.sh", "fetch")
        assert result.returncode == 0 and "restored from" in result.stderr and "already" in result.stderr
    finally:
        restored.close()


def test_restore_from_a_replica_backup_taken_under_writes(source: BackupSet, rgw: Radosgw, tmp_path: Path) -> None:
    stop = threading.Event()
    written: list[str] = []

    def writer() -> None:
        n = 0
        with source.primary.connect(user="app", password=APP_PASSWORD, database="app") as conn, conn.cursor() as c:
            while not stop.is_set() and n < 5000:
                c.execute("INSERT INTO messages (message) VALUES (%s)", (f"w{n}",))
                written.append(f"w{n}")
                n += 1
                time.sleep(0.005)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        backup_id = source.must_back_up()
        time.sleep(1)
    finally:
        stop.set()
        thread.join(30)
    assert source.manifest(backup_id)["role"] == "replica"
    tick()
    point = utc_now_second()
    tick()
    source.write("after the point")
    source.archive_reaches(point + timedelta(seconds=1))
    expected = [r for r in rows(source.pods[0]) if r != "after the point"]
    assert len(written) > 20 and set(written) <= set(expected)

    restored = restore_set(rgw, tmp_path / "restored", stamp(point))
    try:
        restored.boot(0)
        assert f"restoring backup {backup_id}" in restored.restore_log
        assert rows(restored.pods[0]) == expected
    finally:
        restored.close()


def test_a_restore_of_a_backup_id_brings_that_backup_and_no_later_row(source: BackupSet, rgw: Radosgw,
                                                                    tmp_path: Path) -> None:
    backup_id = source.must_back_up()
    expected = rows(source.pods[2])  # the replica backed up, caught up at the time of the backup
    source.write("not in the backup")
    restored = restore_set(rgw, tmp_path / "restored", backup_id)
    try:
        restored.boot(0)
        got = rows(restored.pods[0])
        assert "not in the backup" not in got and got[: len(expected)] == expected[: len(got)]
        assert len(got) >= len(expected) - 5  # what the replica had applied when the backup locked
    finally:
        restored.close()


# ---------------------------------------------------------------- failures: no empty or half-restored primary


def refused(rgw: Radosgw, base: Path, restore_from: str, **options: object) -> str:
    restored = restore_set(rgw, base, restore_from, **options)
    try:
        with pytest.raises(RestoreRefusedError) as refusal:
            restored.boot(0)
        pod = restored.pods[0]
        assert not (pod.datadir / "mysql").exists(), "no primary starts on a half-restored data dir"
        assert not Path(f"{pod.datadir}.restore-staging").exists()
        assert not Path(f"{pod.datadir}.restore-staging.binlogs").exists()
        assert pod.server is not None and not pod.server.running
        return str(refusal.value)
    finally:
        restored.close()


def test_restore_refuses_a_missing_bucket(source: BackupSet, rgw: Radosgw, tmp_path: Path) -> None:
    message = refused(rgw, tmp_path, "20260101T000000Z", restore_bucket="no-such-bucket")
    assert "FATAL: bucket no-such-bucket does not exist or is not visible to this access key" in message


def test_restore_refuses_wrong_credentials(source: BackupSet, rgw: Radosgw, tmp_path: Path) -> None:
    message = refused(rgw, tmp_path, "20260101T000000Z", secret_key="not-the-secret-key-at-all")
    assert "FATAL: access to s3://atomic-backups/rehearsal/mysql/ was refused: check the access key" in message


def test_restore_refuses_a_truncated_backup(source: BackupSet, rgw: Radosgw, tmp_path: Path) -> None:
    latest = json.loads(rgw.get(f"{BUCKET}/{PREFIX}/backups/latest.json"))
    good = f"{BUCKET}/{PREFIX}/backups/{latest['id']}"
    broken_id = "20200101T000000Z"
    broken = f"{BUCKET}/{PREFIX}/backups/{broken_id}"
    stream = rgw.get(f"{good}/backup.xbstream")
    rgw.put(f"{broken}/backup.xbstream", stream[: len(stream) // 2])
    rgw.put(f"{broken}/manifest.json", json.dumps({**latest, "id": broken_id}).encode())
    message = refused(rgw, tmp_path / "size", broken_id)
    half = len(stream) // 2
    assert f"backup {broken_id} is damaged: the stored object has {half} bytes, its manifest says" in message
    # Same length, different bytes: the SHA-256 catches it while the stream is extracted.
    rgw.put(f"{broken}/backup.xbstream", stream[:-4096] + bytes(4096))
    message = refused(rgw, tmp_path / "sha", broken_id)
    assert f"backup {broken_id} is damaged" in message
    rgw.rclone("purge", f"store:{broken}")


def test_restore_refuses_to_claim_a_point_a_missing_binlog_would_cover(source: BackupSet, rgw: Radosgw,
                                                                       tmp_path: Path) -> None:
    backup_id = source.must_back_up()
    inc = source.manifest(backup_id)["binlog_incarnation"]
    archive = f"{BUCKET}/{PREFIX}/binlogs/{inc}"
    for message in ("m1", "m2", "m3"):
        source.write(message)
        source.table(0, "FLUSH BINARY LOGS")
        tick()
    point = utc_now_second()
    tick()
    source.write("past the point")
    source.archive_reaches(point + timedelta(seconds=1))
    names = [n for n in rgw.list(archive) if not n.endswith(".json")]
    victim = names[-2]
    saved = rgw.get(f"{archive}/{victim}"), rgw.get(f"{archive}/{victim}.json")
    rgw.delete(f"{archive}/{victim}")
    rgw.delete(f"{archive}/{victim}.json")
    try:
        message = refused(rgw, tmp_path / "gap", stamp(point))
        number = int(victim.rsplit(".", 1)[1])
        assert f"binlog number {number} is missing from the archive" in message and "refusing to claim" in message
    finally:
        rgw.put(f"{archive}/{victim}", saved[0])
        rgw.put(f"{archive}/{victim}.json", saved[1])
    # A point past the archive's end: the binlog holding it is not archived yet.
    future = stamp(utc_now_second().replace(year=utc_now_second().year + 1))
    message = refused(rgw, tmp_path / "future", future)
    assert "the binlog archive reaches only" in message and f"before {future}: refusing to claim that point" in message


def test_a_restore_never_overwrites_a_data_dir_that_holds_a_server(source: BackupSet) -> None:
    pod = source.pods[0]
    env = pod.env("backup-agent", RESTORE_FROM="20260101T000000Z")
    result = subprocess.run(["bash", str(source.config_dir / "restore.sh"), "fetch"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "already holds a server; a restore never overwrites one" in result.stderr
    assert rows(source.pods[0])  # untouched, still serving


# ---------------------------------------------------------------- what watches the backups


def test_make_verify_reports_the_last_good_backups_age_and_the_archive_lag(source: BackupSet) -> None:
    import io

    from components.workload.mysql import config as mysql_config
    from tools.mysql_verify.cli import main as verify_main

    source.must_back_up()
    metrics = f"127.0.0.1:{source.metrics_ports[0]}"
    deadline = time.monotonic() + 90  # the agent re-reads backups/latest.json every minute
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10).read().decode()
        if re.search(r"^atomic_mysql_backup_last_success_timestamp_seconds [1-9]", text, re.M):
            break
        time.sleep(2)
    base = ["--user", mysql_config.VERIFY_USER, "--primary", f"127.0.0.1:{source.mysql_ports[0]}",
            "--replica", f"127.0.0.1:{source.mysql_ports[1]}", "--replica", f"127.0.0.1:{source.mysql_ports[2]}",
            "--wait-timeout", "20", "--json", "--backup-metrics", metrics,
            "--ssl-ca", str(source.tls_dir / mysql_config.TLS_CA)]
    environ = {"MYSQL_PWD": source.passwords["verify-password"]}
    out = io.StringIO()
    code = verify_main(base, environ=environ, stdout=out, stderr=io.StringIO())
    report = json.loads(out.getvalue())
    assert code == 0, report["problems"]
    backup = report["backup"]
    assert 0 <= backup["last_backup_age_seconds"] < 600 and backup["archive_lag_seconds"] == 0
    # The same set judged with a one-second bound on the backup's age: degraded, and why.
    out = io.StringIO()
    code = verify_main([*base, "--backup-max-age-hours", "0.0001"], environ=environ, stdout=out, stderr=io.StringIO())
    report = json.loads(out.getvalue())
    assert code == 1 and any("the last good backup is" in p and "more than 0.0001 h" in p for p in report["problems"])


def test_the_exporter_account_reads_metrics_and_no_application_data(source: BackupSet) -> None:
    import pymysql

    password = source.passwords["exporter-password"]
    server = source.pods[1].server
    assert server is not None
    # Over the socket, as the metrics container logs in (config.exporter_cnf); TCP is refused below.
    with pymysql.connect(unix_socket=str(server.socket), user="exporter", password=password,
                         connect_timeout=5) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW GRANTS")
        grants = {re.sub(r" IDENTIFIED BY PASSWORD '\*[0-9A-F]{40}'", "", row[0]) for row in cursor.fetchall()}
        assert grants == {"GRANT PROCESS, SLAVE MONITOR ON *.* TO `exporter`@`localhost` WITH MAX_USER_CONNECTIONS 3",
                          "GRANT SELECT ON `performance_schema`.* TO `exporter`@`localhost`"}, grants
        cursor.execute("SHOW SLAVE STATUS")  # what mysql_slave_status_* comes from
        assert cursor.fetchone() is not None
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Uptime'")
        assert cursor.fetchone()
        with pytest.raises(pymysql.err.OperationalError) as denied:
            cursor.execute("SELECT COUNT(*) FROM app.messages")
        assert denied.value.args[0] == 1142
    # Over TCP, even with verified TLS, the account does not exist: only the socket lets it in.
    with pytest.raises(pymysql.err.OperationalError) as refused_tcp:
        server.connect(user="exporter", password=password)
    assert refused_tcp.value.args[0] == 1045


def test_backups_archive_and_restores_run_with_the_sets_tls_required(source: BackupSet) -> None:
    """The rehearsed members are the set as rendered: TLS required on every TCP login (the tests above
    backed up, archived and restored under it, over the socket). Shown here: a plaintext login is
    refused, the app's sessions are TLS, and the backup account exists for the socket only."""
    import pymysql

    for ordinal in (0, 1, 2):
        assert source.table(ordinal, "SELECT @@GLOBAL.require_secure_transport") == [(1,)]
    with pytest.raises(pymysql.err.OperationalError) as plaintext:
        source.primary.connect(user="app", password=APP_PASSWORD, ssl_disabled=True)
    assert plaintext.value.args[0] == 1045  # MariaDB 10.11's answer to a plaintext login here (docs/verify.md)
    with source.primary.connect(user="app", password=APP_PASSWORD) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        assert str(cursor.fetchone()[1]).startswith("TLSv1.")
    hosts = {row[0] for row in source.table(0, "SELECT Host FROM mysql.user WHERE User = 'backup'")}
    assert hosts == {"localhost"}
