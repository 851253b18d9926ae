"""Rehearsal of the set's clone and replication path on real MariaDB 10.11.

Each "pod" is one mariadbd on a loopback port plus the set's own scripts, run in the
order the StatefulSet runs them: init-mysql.sh, clone-mysql.sh, the server, then
sidecar.sh in the background; a pod counts as ready when readiness.sh and
sidecar-ready.sh both pass (the kubelet's view), and the next ordinal only starts
then (OrderedReady). The scripts and config files are exactly the ConfigMap's
contents and each script runs with its container's environment, both as the program
renders them for the local stack (tools/testing/mysql_pods.py: the harness, its
stand-ins, and what is real).

The `verify` account the sidecar provisions is then used as docs/verify.md tells users
to: over TCP with the Secret's password, by tools.mysql_verify itself, verifying the servers'
TLS against the CA it reads from the stack's outputs (mysqlCaCert).
"""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from components.workload.mysql import config as mysql_config
from tools.harness.offline import run_program
from tools.mysql_verify.cli import main as verify_main
from tools.testing.mariadb import MariaDBServer, ReadServiceProxy, replica_status, require_mariadb
from tools.testing.mysql_pods import VERSION, Pod, RehearsalSet, RenderedSet, render_set
from tools.testing.pki import ca_pem
from tools.testing.processes import free_port

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

APP_PASSWORD = "app-pw"


def rows(pod: Pod) -> list[str]:
    assert pod.server is not None
    return [row[0] for row in pod.server.sql("SELECT message FROM app.messages ORDER BY id")]


def write(group: RehearsalSet, *messages: str) -> None:
    with group.primary.connect(user="app", password=APP_PASSWORD, database="app") as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO messages (message) VALUES (%s)", [(m,) for m in messages])


def wait_replicated(group: RehearsalSet, ordinals: list[int], timeout: float = 30) -> None:
    position = group.primary.value("SELECT @@GLOBAL.gtid_binlog_pos")
    for ordinal in ordinals:
        server = group.pods[ordinal].server
        assert server is not None
        assert server.value("SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout)) == 0, (
            f"mysql-{ordinal} did not reach {position}: {server.sql('SHOW SLAVE STATUS')}"
        )


@pytest.fixture(scope="module")
def rendered() -> RenderedSet:
    """The local stack's set (MariaDB) rendered for the harness's 10.11, with the project's defaults:
    parallel apply (mysqlReplicaApplyThreads) and parallel clone threads (mysqlCloneThreads=0)."""
    return render_set("local", {"mysqlVersion": VERSION})


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory, rendered: RenderedSet) -> Iterator[RehearsalSet]:
    require_mariadb()
    rehearsal = RehearsalSet(tmp_path_factory.mktemp("rehearsal"), rendered)
    try:
        rehearsal.boot(0)
        with rehearsal.primary.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE app")
            cur.execute("CREATE TABLE app.messages (id INT AUTO_INCREMENT PRIMARY KEY, message VARCHAR(64))")
            cur.execute("CREATE USER app@'%%' IDENTIFIED BY %s", (APP_PASSWORD,))
            cur.execute("GRANT ALL ON app.* TO app@'%'")
        write(rehearsal, "before mysql-1")
        rehearsal.boot(1)  # cloned from the primary
        write(rehearsal, "before mysql-2")
        rehearsal.boot(2)  # cloned from mysql-1, a replica
        yield rehearsal
    finally:
        rehearsal.close()


def test_rows_written_before_a_replica_existed_are_on_it(group: RehearsalSet) -> None:
    assert rows(group.pods[2]) == ["before mysql-1", "before mysql-2"]
    assert rows(group.pods[1]) == ["before mysql-1", "before mysql-2"]
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


def test_the_set_clones_and_applies_with_the_rendered_threads(group: RehearsalSet, rendered: RenderedSet) -> None:
    """The defaults: a replica applies with 16 optimistic threads; a clone copies and extracts with one
    thread per CPU of the container's limit (2)."""
    assert "slave_parallel_threads=16" in rendered.config_map["replica.cnf"]
    assert rendered.env["sidecar"]["BACKUP_PARALLEL"] == rendered.env["clone-mysql"]["CLONE_PARALLEL"] == "2"
    for ordinal in (1, 2):
        server = group.pods[ordinal].server
        assert server is not None
        assert server.value("SELECT @@slave_parallel_threads") == 16
        assert server.value("SELECT @@slave_parallel_mode") == "optimistic"
    primary = group.primary
    assert primary.value("SELECT @@slave_parallel_threads") == 0  # the primary applies nothing
    # -0 served -1's clone and -1 served -2's, each with two copy threads.
    for ordinal in (0, 1):
        assert "streaming a backup to a peer (2 copy threads)" in group.pods[ordinal].sidecar_log.read_text()


def test_replication_runs_from_the_primary(group: RehearsalSet) -> None:
    write(group, "after the set was up")
    wait_replicated(group, [1, 2])
    for ordinal in (1, 2):
        assert rows(group.pods[ordinal])[-1] == "after the set was up"
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
    """Over verified TCP, as `make verify` does: root can only use the socket."""
    return pymysql.connect(host="127.0.0.1", port=group.mysql_ports[ordinal], user=mysql_config.VERIFY_USER,
                           password=password, connect_timeout=5, read_timeout=10, autocommit=True,
                           ssl_ca=str(group.tls_dir / mysql_config.TLS_CA), ssl_verify_cert=True,
                           ssl_verify_identity=True)


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
            shown = [row[0] for row in cursor.fetchall()]
            # The account itself REQUIREs SSL (config._account), shown on its privileges' line.
            assert sum(line.endswith(" REQUIRE SSL") for line in shown) == 1, shown
            account = r"( IDENTIFIED BY PASSWORD '\*[0-9A-F]{40}')?( REQUIRE SSL)?$"
            grants = {re.sub(account, "", line) for line in shown}
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


def stack_outputs_json(ca_cert: str | None = None) -> str:
    """`pulumi stack output --json` of the local stack, as the CLI prints it (secrets masked): the
    program's own outputs, with mysqlCaCert the set's real CA (under mocks pulumi-tls gives a
    placeholder; here its stand-in issued the rehearsal's certificates)."""
    outputs = {name: output.shown() for name, output in run_program("local", {"mysqlVersion": VERSION}).outputs.items()}
    if ca_cert is not None:
        outputs["mysqlCaCert"] = ca_cert
    return json.dumps(outputs)


def run_verify_from_stack(monkeypatch: pytest.MonkeyPatch, group: RehearsalSet, outputs: str,
                          args: list[str]) -> tuple[int, str, str]:
    """docs/verify.md: `pulumi stack output --json | make verify ARGS='--from-stack-json - ...'` with the
    port-forwarded endpoints as flags (the stack's host names resolve only inside the cluster)."""
    monkeypatch.setattr("sys.stdin", io.StringIO(outputs))
    out, err = io.StringIO(), io.StringIO()
    code = verify_main(["--from-stack-json", "-", *args], environ={"MYSQL_PWD": verify_password(group)},
                       stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_mysql_verify_reports_the_rehearsed_set_healthy_as_verify(
    group: RehearsalSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = group.mysql_ports
    with ReadServiceProxy([("127.0.0.1", ports[1]), ("127.0.0.1", ports[2])]) as read_service:
        args = [
            "--user", mysql_config.VERIFY_USER, "--primary", f"127.0.0.1:{ports[0]}",
            "--replica", f"127.0.0.1:{ports[1]}", "--replica", f"127.0.0.1:{ports[2]}",
            "--read", read_service.address, "--min-read-servers", "2", "--samples", "10",
            "--sample-interval", "0.01", "--wait-timeout", "20", "--connect-timeout", "3", "--query-timeout", "10",
            "--json",
        ]
        # The mocks' placeholder CA is no certificate: verify refuses to run rather than trust anything.
        code, out, err = run_verify_from_stack(monkeypatch, group, stack_outputs_json(), args)
        assert (code, json.loads(out)["status"]) == (2, "error")
        assert "stack output mysqlCaCert (--from-stack-json -): not a PEM CA certificate" in err
        code, out, err = run_verify_from_stack(monkeypatch, group, stack_outputs_json(ca_pem(group.ca)), args)
    report = json.loads(out)
    assert (code, report["status"], report["problems"], report["warnings"], err) == (0, "healthy", [], [], "")
    assert report["user"] == "verify"
    # Every session TLS, verified against the CA from the stack's output, as each server reports it.
    assert report["tls"] == {"verified": True, "ca_source": "stack output mysqlCaCert (--from-stack-json -)",
                             "ca_subjects": ["test MySQL set CA"]}
    servers = {server["label"]: server for server in report["servers"]}
    for server in servers.values():
        assert server["tls_version"] in ("TLSv1.2", "TLSv1.3") and server["tls_cipher"], server
    assert sum(report["read"]["tls"].values()) == 10 and "none" not in report["read"]["tls"]
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
    wait_replicated(group, [1, 2])
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
    wait_replicated(group, [1, 2])


def test_restarting_the_primary_sidecar_rotates_the_verify_password(group: RehearsalSet) -> None:
    old = verify_password(group)
    new = "rotated 'verify' \\pw #5"
    group.update_secret("verify-password", new)  # the Secret changed, every pod's copy refreshed
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
    write(group, "after restarting mysql-1")
    wait_replicated(group, [1, 2])
    assert rows(pod)[-1] == "after restarting mysql-1"


def test_scale_to_five_and_back_to_three_keeps_the_data_dirs(group: RehearsalSet) -> None:
    group.boot(3)  # from mysql-2
    group.boot(4)  # from mysql-3, which has binlogged nothing of its own yet
    expected = rows(group.pods[0])
    assert rows(group.pods[3]) == expected and rows(group.pods[4]) == expected
    write(group, "with five members")
    wait_replicated(group, [1, 2, 3, 4])
    assert rows(group.pods[4])[-1] == "with five members"

    group.delete(4)  # scale to 3: highest ordinals first; volumes retained
    group.delete(3)
    for ordinal in (3, 4):
        assert (group.pods[ordinal].datadir / "mysql").is_dir()
    write(group, "while three")

    # Scaling up again reuses the retained volume: no clone, replication catches up.
    pod = group.boot(3)
    assert "already holds a server; no clone" in pod.must("clone-mysql.sh")
    wait_replicated(group, [3])
    assert rows(pod)[-1] == "while three"
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
        env = pod.env("clone-mysql")
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
