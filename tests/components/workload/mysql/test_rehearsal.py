"""Rehearsal of the set's clone and replication path on real MariaDB 10.11.

Each "pod" is one mariadbd on a loopback port plus the set's own scripts, run in the
order the StatefulSet runs them: init-mysql.sh, clone-mysql.sh, the server, then
sidecar.sh in the background; a pod counts as ready when readiness.sh and
sidecar-ready.sh both pass (the kubelet's view), and the next ordinal only starts
then (OrderedReady). The scripts and config files are exactly the ConfigMap's
contents (mysql_config.config_map_data), written to a directory.

Stand-ins for what Kubernetes or the image does: the server image's entrypoint
(mariadb-install-db + root password on ordinal 0's empty data dir) and the data
dir of a deleted pod staying on disk (PVC retention). Everything else is real:
mariadb-backup streams over socat from the previous ordinal, mbstream extracts,
mariadb-backup prepares, the sidecar starts GTID replication, and mariadbd runs.

The `verify` account the sidecar provisions is then used as docs/verify.md tells users
to: over TCP with the Secret's password, by tools.mysql_verify itself.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from components.workload.mysql import config as mysql_config
from tools.mysql_verify.cli import main as verify_main
from tools.testing.mariadb import MariaDBServer, ReadServiceProxy, replica_status, require_mariadb
from tools.testing.processes import free_port, free_ports, own_session_dying_with_parent

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

ENGINE, VERSION = "mariadb", "10.11"
SET_NAME = "mysql"
MAX_PODS = 5
READY_TIMEOUT = 90
# Awkward on purpose: quotes, backslash, '#' and spaces must survive the option files and SQL.
PASSWORDS = {
    "root-password": "Ro\"ot\\pa'ss #1",
    "replication-password": "re'pl;pw \"x\"",
    "backup-password": "b@ck\\up#pw",
    # ASCII only: PyMySQL sends passwords latin1-encoded, the server hashes the UTF-8 bytes.
    "verify-password": "ve'ri\\fy #\"pw\" 4",
    "exporter-password": "ex#po;rt'er \\pw 5",
}
APP_PASSWORD = "app-pw"


class Pod:
    """One member of the rehearsed set: its directories, ports, server and sidecar."""

    def __init__(self, group: RehearsalSet, ordinal: int) -> None:
        self.group = group
        self.ordinal = ordinal
        self.name = f"{SET_NAME}-{ordinal}"
        self.root = group.base / self.name
        self.datadir = self.root / "volume" / "mysql"  # the PVC's subPath, as in the pod
        self.conf_dir = self.root / "conf.d"            # the emptyDir
        self.tmp = self.root / "tmp"
        self.server: MariaDBServer | None = None
        self.sidecar: subprocess.Popen[bytes] | None = None
        self.sidecar_log = self.root / "sidecar.log"

    def env(self) -> dict[str, str]:
        assert self.server is not None
        env = dict(os.environ)
        env.update(
            {
                "MYSQL_ENGINE": ENGINE,
                "MYSQL_VERSION": VERSION,
                "MYSQL_SET_NAME": SET_NAME,
                "POD_NAME": self.name,
                "MYSQL_DATA_DIR": str(self.datadir),
                "MYSQL_CONF_DIR": str(self.conf_dir),
                "MYSQL_CONFIG_DIR": str(self.group.config_dir),
                "MYSQL_SECRETS_DIR": str(self.group.secrets_dir),
                "MYSQL_SOCKET": str(self.server.socket),
                "CLONE_PORT": str(self.group.clone_ports[self.ordinal]),
                "CLONE_BIND_ADDRESS": "127.0.0.1",
                "PEER_HOST_PATTERN": "127.0.0.1",
                "PEER_MYSQL_PORTS": " ".join(map(str, self.group.mysql_ports)),
                "PEER_CLONE_PORTS": " ".join(map(str, self.group.clone_ports)),
                "CLONE_CONNECT_ATTEMPTS": "3",
                "CLONE_RETRY_DELAY": "1",
                "WAIT_TIMEOUT": "60",
                "TMPDIR": str(self.tmp),
            }
        )
        return env

    def script(self, name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.group.config_dir / name), *args],
            env=self.env(), capture_output=True, text=True, timeout=timeout, check=False,
        )

    def must(self, name: str) -> str:
        result = self.script(name)
        assert result.returncode == 0, f"{self.name} {name} failed ({result.returncode}):\n{result.stderr}"
        return result.stderr

    # ------------------------------------------------------------------ lifecycle

    def boot(self) -> None:
        """init-mysql, clone-mysql, mysqld, sidecar; then wait until the pod is ready."""
        for path in (self.root, self.conf_dir, self.tmp, self.datadir.parent):
            path.mkdir(parents=True, exist_ok=True)
        # The server object only fixes paths and ports here; its config comes from init-mysql below.
        self.server = MariaDBServer(
            self.root / "server", self.group.mysql_ports[self.ordinal], mysql_config.server_id(self.ordinal),
            datadir=self.datadir, root_password=PASSWORDS["root-password"], name=self.name,
        )
        self.must("init-mysql.sh")
        self.server.cnf = self._cnf_from_conf_dir()
        self.must("clone-mysql.sh")
        if not (self.datadir / "mysql").is_dir():
            # The image entrypoint's job on ordinal 0's empty volume.
            assert self.ordinal == 0, f"{self.name}: clone-mysql left no data dir"
            self.server.root_password = None
            self.server.initialize()
            self.server.start()
            self.server.set_root_password(PASSWORDS["root-password"])
        else:
            self.server.start()
        self.start_sidecar()
        self.wait_ready()

    def _cnf_from_conf_dir(self) -> str:
        role = "primary.cnf" if self.ordinal == 0 else "replica.cnf"
        server_id_cnf = (self.conf_dir / "server-id.cnf").read_text()
        match = re.search(r"^server_id=(\d+)$", server_id_cnf, re.M)
        assert match and int(match.group(1)) == 100 + self.ordinal, server_id_cnf
        assert sorted(p.name for p in self.conf_dir.iterdir()) == sorted([role, "server-id.cnf"])
        return (self.conf_dir / role).read_text() + server_id_cnf

    def start_sidecar(self) -> None:
        with self.sidecar_log.open("ab") as log:
            self.sidecar = subprocess.Popen(
                ["bash", str(self.group.config_dir / "sidecar.sh")],
                env=self.env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                # Own process group: socat and its backup children are stopped together.
                preexec_fn=own_session_dying_with_parent,
            )

    def stop_sidecar(self) -> None:
        if self.sidecar is not None:
            if self.sidecar.poll() is None:
                os.killpg(self.sidecar.pid, signal.SIGTERM)
                try:
                    self.sidecar.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.sidecar.pid, signal.SIGKILL)
                    self.sidecar.wait(10)
            self.sidecar = None

    def delete(self) -> None:
        """What deleting the pod does: containers stop, the volume (data dir) stays."""
        self.stop_sidecar()
        if self.server is not None:
            self.server.stop()

    def probe(self, name: str) -> subprocess.CompletedProcess[str]:
        return self.script(name, timeout=20)

    def ready(self) -> bool:
        return self.probe("readiness.sh").returncode == 0 and self.probe("sidecar-ready.sh").returncode == 0

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            if self.sidecar is not None and self.sidecar.poll() is not None:
                break
            time.sleep(0.5)
        readiness = self.probe("readiness.sh")
        raise AssertionError(
            f"{self.name} not ready: readiness={readiness.returncode} {readiness.stdout.strip()!r}; "
            f"sidecar log:\n{self.sidecar_log.read_text(errors='replace')[-3000:]}\n"
            f"server log:\n{self.server.log_tail() if self.server else ''}"
        )

    # ------------------------------------------------------------------ data

    def rows(self) -> list[str]:
        assert self.server is not None
        return [row[0] for row in self.server.sql("SELECT message FROM app.messages ORDER BY id")]


class RehearsalSet:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.config_dir = base / "configmap"
        self.secrets_dir = base / "secrets"
        ports = free_ports(2 * MAX_PODS)
        self.mysql_ports, self.clone_ports = ports[:MAX_PODS], ports[MAX_PODS:]
        self.pods: dict[int, Pod] = {}
        self.config_dir.mkdir(parents=True)
        for name, text in mysql_config.config_map_data(ENGINE, VERSION).items():
            (self.config_dir / name).write_text(text)
        self.secrets_dir.mkdir()
        for name, value in PASSWORDS.items():
            (self.secrets_dir / name).write_text(value)

    def boot(self, ordinal: int) -> Pod:
        """Start `mysql-<ordinal>` (OrderedReady: every lower ordinal must be ready)."""
        for lower in range(ordinal):
            assert lower in self.pods and self.pods[lower].ready(), f"mysql-{lower} must be ready first"
        pod = self.pods.get(ordinal) or Pod(self, ordinal)
        self.pods[ordinal] = pod
        pod.boot()
        return pod

    def delete(self, ordinal: int) -> None:
        self.pods[ordinal].delete()

    def close(self) -> None:
        for ordinal in sorted(self.pods, reverse=True):
            self.pods[ordinal].delete()

    @property
    def primary(self) -> MariaDBServer:
        server = self.pods[0].server
        assert server is not None
        return server

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


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RehearsalSet]:
    require_mariadb()
    rehearsal = RehearsalSet(tmp_path_factory.mktemp("rehearsal"))
    try:
        rehearsal.boot(0)
        with rehearsal.primary.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE app")
            cur.execute("CREATE TABLE app.messages (id INT AUTO_INCREMENT PRIMARY KEY, message VARCHAR(64))")
            cur.execute("CREATE USER app@'%%' IDENTIFIED BY %s", (APP_PASSWORD,))
            cur.execute("GRANT ALL ON app.* TO app@'%'")
        rehearsal.write("before mysql-1")
        rehearsal.boot(1)  # cloned from the primary
        rehearsal.write("before mysql-2")
        rehearsal.boot(2)  # cloned from mysql-1, a replica
        yield rehearsal
    finally:
        rehearsal.close()


def test_rows_written_before_a_replica_existed_are_on_it(group: RehearsalSet) -> None:
    assert group.pods[2].rows() == ["before mysql-1", "before mysql-2"]
    assert group.pods[1].rows() == ["before mysql-1", "before mysql-2"]
    # mysql-2 really was cloned from mysql-1 and started replication from the clone position.
    log = group.pods[2].sidecar_log.read_text()
    assert "starting replication from 127.0.0.1" in log and "replication started" in log
    assert (group.pods[2].datadir / "xtrabackup_binlog_info.applied").is_file()


def test_every_member_has_its_own_server_id_and_role(group: RehearsalSet) -> None:
    for ordinal in (0, 1, 2):
        server = group.pods[ordinal].server
        assert server is not None
        assert server.value("SELECT @@server_id") == 100 + ordinal
        assert server.value("SELECT @@read_only") == (0 if ordinal == 0 else 1)
        assert server.value("SELECT @@log_bin") == 1


def test_replication_runs_from_the_primary(group: RehearsalSet) -> None:
    group.write("after the set was up")
    group.wait_replicated([1, 2])
    for ordinal in (1, 2):
        assert group.pods[ordinal].rows()[-1] == "after the set was up"
        server = group.pods[ordinal].server
        assert server is not None
        status = replica_status(server)
        assert status, f"mysql-{ordinal} is no replica"
        assert status["Master_Port"] == group.mysql_ports[0]  # every replica follows the primary itself
        assert status["Using_Gtid"] == "Slave_Pos"


def test_replicas_refuse_writes(group: RehearsalSet) -> None:
    replica = group.pods[1].server
    assert replica is not None
    with pytest.raises(pymysql.err.OperationalError) as refused:
        replica.sql("INSERT INTO app.messages (message) VALUES ('direct')", user="app", password=APP_PASSWORD)
    assert refused.value.args[0] == 1290  # ER_OPTION_PREVENTS_STATEMENT: --read-only


# ---------------------------------------------------------------- the verify account


def verify_password(group: RehearsalSet) -> str:
    """The Secret's current value (a test below rotates it)."""
    return (group.secrets_dir / "verify-password").read_text()


def connect_as_verify(group: RehearsalSet, ordinal: int, password: str) -> pymysql.connections.Connection:
    """Over TCP, as `make verify` does: root can only use the socket."""
    return pymysql.connect(host="127.0.0.1", port=group.mysql_ports[ordinal], user=mysql_config.VERIFY_USER,
                           password=password, connect_timeout=5, read_timeout=10, autocommit=True)


def test_the_set_provisions_the_verify_account_with_least_privilege(group: RehearsalSet) -> None:
    password = verify_password(group)
    expected = {
        "GRANT SLAVE MONITOR ON *.* TO `verify`@`%`",
        "GRANT SELECT, INSERT, DELETE, CREATE ON `atomic\\_verify`.* TO `verify`@`%`",
    }
    for ordinal in (0, 1, 2):  # the replicas have it from their clone and from replication
        with connect_as_verify(group, ordinal, password) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT CURRENT_USER()")
            assert cursor.fetchone() == ("verify@%",)
            cursor.execute("SHOW GRANTS")
            grants = {re.sub(r" IDENTIFIED BY PASSWORD '\*[0-9A-F]{40}'$", "", row[0]) for row in cursor.fetchall()}
            assert grants == expected, grants
            if ordinal:
                cursor.execute("SHOW SLAVE STATUS")  # SLAVE MONITOR: verify reads the replication state
                status = dict(zip([column[0] for column in cursor.description], cursor.fetchone(), strict=True))
                assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes")
                with pytest.raises(pymysql.err.OperationalError) as refused:
                    cursor.execute("CREATE TABLE atomic_verify.direct_write (id INT PRIMARY KEY)")
                assert refused.value.args[0] == 1290  # read_only: verify holds no READ_ONLY ADMIN
            with pytest.raises(pymysql.err.OperationalError) as denied:
                cursor.execute("SELECT COUNT(*) FROM app.messages")
            assert denied.value.args[0] == 1142  # nothing outside its own database


def test_mysql_verify_reports_the_rehearsed_set_healthy_as_verify(group: RehearsalSet) -> None:
    ports = group.mysql_ports
    with ReadServiceProxy([("127.0.0.1", ports[1]), ("127.0.0.1", ports[2])]) as read_service:
        args = [
            "--user", mysql_config.VERIFY_USER, "--primary", f"127.0.0.1:{ports[0]}",
            "--replica", f"127.0.0.1:{ports[1]}", "--replica", f"127.0.0.1:{ports[2]}",
            "--read", read_service.address, "--min-read-servers", "2", "--samples", "10",
            "--sample-interval", "0.01", "--wait-timeout", "20", "--connect-timeout", "3", "--query-timeout", "10",
            "--json",
        ]
        out, err = io.StringIO(), io.StringIO()
        code = verify_main(args, environ={"MYSQL_PWD": verify_password(group)}, stdout=out, stderr=err)
    report = json.loads(out.getvalue())
    assert (code, report["status"], report["problems"], report["warnings"], err.getvalue()) == (
        0, "healthy", [], [], "")
    assert report["user"] == "verify"
    servers = {server["label"]: server for server in report["servers"]}
    assert servers["primary"]["check_row"] == "written" and servers["primary"]["server_id"] == 100
    for ordinal, label in ((1, "replica-1"), (2, "replica-2")):
        server = servers[label]
        assert server["server_id"] == 100 + ordinal
        assert server["write_probe"] == "refused"  # the replica refused verify's own write
        assert server["check_row"] == "present"
        replication = server["replication"]
        assert (replication["io_running"], replication["sql_running"], replication["source_server_id"]) == (
            "Yes", "Yes", 100)
    assert set(report["read"]["server_ids"]) == {"101", "102"}
    group.wait_replicated([1, 2])
    for ordinal in (0, 1, 2):  # the check row was written, replicated, and cleaned up again
        server = group.pods[ordinal].server
        assert server is not None
        assert server.value("SELECT COUNT(*) FROM atomic_verify.checks WHERE token = %s", (report["token"],)) == 0


def restart_primary_sidecar(group: RehearsalSet) -> None:
    """What a rollout does to mysql-0's sidecar: it applies users.sql with the Secret's values again."""
    pod = group.pods[0]
    applied = pod.sidecar_log.read_text().count("replication, backup and verify accounts are in place")
    pod.stop_sidecar()
    pod.start_sidecar()
    pod.wait_ready(30)  # the backup port listens only after the accounts are applied
    assert pod.sidecar_log.read_text().count("replication, backup and verify accounts are in place") == applied + 1
    group.wait_replicated([1, 2])


def test_restarting_the_primary_sidecar_rotates_the_verify_password(group: RehearsalSet) -> None:
    old = verify_password(group)
    new = "rotated 'verify' \\pw #5"
    (group.secrets_dir / "verify-password").write_text(new)  # the Secret changed; the set rolls
    restart_primary_sidecar(group)
    for ordinal in (0, 1, 2):
        with connect_as_verify(group, ordinal, new) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")
        with pytest.raises(pymysql.err.OperationalError) as denied:
            connect_as_verify(group, ordinal, old)
        assert denied.value.args[0] == 1045


def _as_logged(value: str) -> list[bytes]:
    """The forms a password would take in a binlog event: as given, and as QUOTE() escapes it."""
    quoted = value.replace("\\", "\\\\").replace("'", "\\'")
    return [value.encode(), quoted.encode()]


def test_no_password_reaches_a_binlog_or_relay_log(group: RehearsalSet) -> None:
    """MariaDB logs account statements as executed: only the password hash may be in them."""
    restart_primary_sidecar(group)  # account statements now also reach the replicas' logs
    secrets = [path.read_text() for path in group.secrets_dir.iterdir()]
    assert len(secrets) == 5
    logged = {}
    for ordinal in (0, 1, 2):
        datadir = group.pods[ordinal].datadir
        files = sorted(datadir.glob("mysql-bin.[0-9]*")) + sorted(datadir.glob("relay-bin.[0-9]*"))
        logged[ordinal] = b"".join(path.read_bytes() for path in files)
    for ordinal, content in logged.items():
        for value in secrets:
            for form in _as_logged(value):
                assert form not in content, f"a password is in mysql-{ordinal}'s binlog or relay log"
    # The account statements are there (created on the primary, re-applied everywhere), hashed.
    assert b"CREATE USER IF NOT EXISTS 'verify'@'%' IDENTIFIED BY PASSWORD '*" in logged[0]
    for ordinal in (1, 2):
        assert b"ALTER USER 'verify'@'%' IDENTIFIED BY PASSWORD '*" in logged[ordinal]


def test_readiness_fails_when_replication_threads_stop(group: RehearsalSet) -> None:
    pod = group.pods[2]
    assert pod.server is not None
    assert pod.probe("readiness.sh").returncode == 0
    pod.server.sql("STOP SLAVE SQL_THREAD")
    stopped = pod.probe("readiness.sh")
    assert stopped.returncode == 1 and "replication threads stopped" in stopped.stdout
    pod.server.sql("START SLAVE SQL_THREAD")
    pod.wait_ready(30)
    assert group.pods[0].probe("liveness.sh").returncode == 0


def test_replication_is_set_up_at_most_once_and_resumes_after_restarts(group: RehearsalSet) -> None:
    pod = group.pods[1]
    assert pod.server is not None
    pod.stop_sidecar()
    pod.server.restart()        # no skip_slave_start: the server resumes replication itself
    pod.start_sidecar()
    pod.wait_ready(30)
    log = pod.sidecar_log.read_text()
    assert log.count("replication started") == 1
    assert "no clone position pending" in log
    group.write("after restarting mysql-1")
    group.wait_replicated([1, 2])
    assert pod.rows()[-1] == "after restarting mysql-1"


def test_scale_to_five_and_back_to_three_keeps_the_data_dirs(group: RehearsalSet) -> None:
    group.boot(3)  # from mysql-2
    group.boot(4)  # from mysql-3, which has binlogged nothing of its own yet
    expected = group.pods[0].rows()
    assert group.pods[3].rows() == expected and group.pods[4].rows() == expected
    group.write("with five members")
    group.wait_replicated([1, 2, 3, 4])
    assert group.pods[4].rows()[-1] == "with five members"

    group.delete(4)  # scale to 3: highest ordinals first; volumes retained
    group.delete(3)
    for ordinal in (3, 4):
        assert (group.pods[ordinal].datadir / "mysql").is_dir()
    group.write("while three")

    # Scaling up again reuses the retained volume: no clone, replication catches up.
    pod = group.boot(3)
    assert "already holds a server; no clone" in pod.must("clone-mysql.sh")
    group.wait_replicated([3])
    assert pod.rows()[-1] == "while three"
    group.delete(3)


def test_an_empty_clone_stream_stops_the_pod(group: RehearsalSet, tmp_path: Path) -> None:
    """A peer that accepts and closes at once (e.g. its backup failed) must not yield an empty replica."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def close_every_connection() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=close_every_connection, daemon=True)
    thread.start()
    try:
        pod = Pod(group, 1)  # a fresh "mysql-1" whose source (mysql-0) sends nothing
        pod.root = tmp_path / "empty"
        pod.datadir = pod.root / "volume" / "mysql"
        pod.server = MariaDBServer(pod.root / "server", free_port(), 101, name="empty")
        env = pod.env()
        env["PEER_CLONE_PORTS"] = str(listener.getsockname()[1])
        env["CLONE_CONNECT_ATTEMPTS"] = "2"
        result = subprocess.run(
            ["bash", str(group.config_dir / "clone-mysql.sh")],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert result.returncode == 1
    assert "FATAL: empty or failed clone stream" in result.stderr
    assert not pod.datadir.exists()
    assert not Path(f"{pod.datadir}.clone-staging").exists()
