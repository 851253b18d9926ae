"""mysql-verify drilled on real MariaDB: a primary and two replicas on loopback, configured with
the MySQL set's own fragments (components/workload/mysql/config.py, engine mariadb 10.11), serving
TLS with one certificate of one test CA and refusing plaintext TCP, as the set's pods do; verify
is given that CA (--ssl-ca) as docs/verify.md tells users to.

Every drill runs under client traffic (a writer through the primary, a reader through a
stand-in for the read Service), restores a healthy set, and ends by proving zero rows lost:
every write the primary acknowledged is on every server, and all servers hold identical rows.
The servers need /usr/sbin/mariadbd: without it these tests fail (never skip).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest

from components.workload.mysql import config as mysql_config
from tests.conftest import PROJECT_DIR
from tools.mysql_verify.cli import main
from tools.testing.mariadb import (
    MariaDBNotInstalledError,
    MariaDBServer,
    ReadServiceProxy,
    ReplicatedSet,
    free_port,
    replica_status,
    start_replicated_set,
)
from tools.testing.mysql_pods import default_apply_threads
from tools.testing.pki import ca_pem, make_ca

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

REPO = PROJECT_DIR
ENGINE, VERSION = "mariadb", "10.11"
TRAFFIC_TABLE = "drill.traffic"


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicatedSet]:
    try:
        group = start_replicated_set(
            tmp_path_factory.mktemp("verify-set"),
            replicas=2,
            primary_cnf=mysql_config.primary_cnf(ENGINE, VERSION),
            replica_cnf=mysql_config.replica_cnf(ENGINE, VERSION, default_apply_threads()),
            server_id=mysql_config.server_id,
        )
    except MariaDBNotInstalledError as error:
        pytest.fail(str(error))
    try:
        group.primary.sql("CREATE DATABASE IF NOT EXISTS drill")
        group.primary.sql(f"CREATE TABLE IF NOT EXISTS {TRAFFIC_TABLE} (id INT PRIMARY KEY, note VARCHAR(64) NOT NULL)")
        group.wait_caught_up()
        yield group
    finally:
        group.stop()


@pytest.fixture(scope="module")
def read_service(cluster: ReplicatedSet) -> Iterator[ReadServiceProxy]:
    """The tutorial's mysql-read, over the replicas only (so 'reads keep working' means the survivor)."""
    with ReadServiceProxy([("127.0.0.1", replica.port) for replica in cluster.replicas]) as proxy:
        yield proxy


@pytest.fixture()
def healthy(cluster: ReplicatedSet) -> ReplicatedSet:
    """Each drill starts from a running, caught-up set (a failed drill must not poison the next)."""
    for replica in cluster.replicas:
        if not replica.running:
            replica.start()
        cluster.resume_replication(replica)
    cluster.wait_caught_up()
    return cluster


# ---------------------------------------------------------------------------- traffic


@dataclass
class Traffic:
    """A writer through the primary and a reader through the read endpoint, in two threads."""

    group: ReplicatedSet
    read_port: int
    first_id: int
    acknowledged: list[int] = field(default_factory=list)
    write_errors: list[str] = field(default_factory=list)
    reads: list[tuple[float, int | None, str | None]] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traffic:
        self.threads = [
            threading.Thread(target=self._write, name="drill-writer", daemon=True),
            threading.Thread(target=self._read, name="drill-reader", daemon=True),
        ]
        for thread in self.threads:
            thread.start()
        return self

    def _write(self) -> None:
        next_id = self.first_id
        with self.group.primary.connect() as conn, conn.cursor() as cursor:
            while not self.stop_event.is_set():
                try:
                    cursor.execute(f"INSERT INTO {TRAFFIC_TABLE} (id, note) VALUES (%s, 'traffic')", (next_id,))
                    self.acknowledged.append(next_id)
                except pymysql.err.MySQLError as error:
                    self.write_errors.append(f"{next_id}: {error}")
                next_id += 1
                time.sleep(0.005)

    def _read(self) -> None:
        """One new connection per read, like the tutorial's `mysql -h mysql-read` loop."""
        while not self.stop_event.is_set():
            began = time.monotonic()
            try:
                conn = pymysql.connect(host="127.0.0.1", port=self.read_port, user="root",
                                       password=self.group.root_password, connect_timeout=2, read_timeout=5)
                with conn, conn.cursor() as cursor:
                    cursor.execute(f"SELECT @@server_id, COUNT(*) FROM {TRAFFIC_TABLE}")
                    row = cursor.fetchone()
                self.reads.append((began, int(row[0]), None))
            except pymysql.err.MySQLError as error:
                self.reads.append((began, None, str(error)))
            time.sleep(0.02)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(10)
        assert not any(thread.is_alive() for thread in self.threads), "traffic threads did not stop"


@pytest.fixture()
def traffic(healthy: ReplicatedSet, read_service: ReadServiceProxy) -> Iterator[Traffic]:
    start = int(healthy.primary.value(f"SELECT COALESCE(MAX(id), 0) FROM {TRAFFIC_TABLE}")) + 1
    running = Traffic(healthy, read_service.port, start).start()
    try:
        wait_for(lambda: len(running.acknowledged) >= 10 and len(running.reads) >= 5, 15, "traffic to flow")
        yield running
    finally:
        running.stop()


def rows(server: MariaDBServer) -> set[tuple[int, str]]:
    return {(int(row[0]), str(row[1])) for row in server.sql(f"SELECT id, note FROM {TRAFFIC_TABLE}")}


def assert_zero_rows_lost(group: ReplicatedSet, traffic: Traffic) -> None:
    """Stop traffic, let every replica catch up, then compare what each server holds."""
    wait_for(lambda: len(traffic.acknowledged) >= 30, 15, "at least 30 acknowledged writes")
    traffic.stop()
    assert traffic.write_errors == [], "writes through the primary failed"
    group.wait_caught_up(timeout=30)
    on_primary = rows(group.primary)
    assert set(traffic.acknowledged) <= {row_id for row_id, _ in on_primary}
    for replica in group.replicas:
        assert rows(replica) == on_primary, f"{replica.name} differs from the primary"


# ---------------------------------------------------------------------------- running verify


def set_ca(group: ReplicatedSet) -> Path:
    assert group.tls_dir is not None
    return group.tls_dir / mysql_config.TLS_CA


def verify_args(group: ReplicatedSet, read_port: int | None = None, ca: Path | None = None) -> list[str]:
    args = ["--primary", f"127.0.0.1:{group.primary.port}", "--ssl-ca", str(ca or set_ca(group))]
    for replica in group.replicas:
        args += ["--replica", f"127.0.0.1:{replica.port}"]
    if read_port is not None:
        args += ["--read", f"127.0.0.1:{read_port}"]
    return [*args, "--samples", "10", "--sample-interval", "0.01", "--wait-timeout", "10",
            "--connect-timeout", "2", "--query-timeout", "5"]


def run_verify(group: ReplicatedSet, args: list[str]) -> tuple[int, dict[str, Any]]:
    """In-process, JSON report; returns (exit code, report)."""
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "--json"], environ={"MYSQL_PWD": group.root_password}, stdout=out, stderr=err)
    assert err.getvalue() == "", err.getvalue()
    return code, json.loads(out.getvalue())


def run_cli(args: list[str], password: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYSQL_PWD": password, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tools.mysql_verify", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def by_label(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {server["label"]: server for server in report["servers"]}


def sql_thread(server: MariaDBServer) -> str:
    return str(replica_status(server)["Slave_SQL_Running"])


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ---------------------------------------------------------------------------- drills


def test_set_built_from_the_sets_config_verifies_healthy(
    healthy: ReplicatedSet, read_service: ReadServiceProxy
) -> None:
    code, report = run_verify(healthy, verify_args(healthy, read_service.port))

    assert (code, report["status"], report["problems"]) == (0, "healthy", [])
    servers = by_label(report)
    ids = {label: server["server_id"] for label, server in servers.items()}
    assert ids == {"primary": 100, "replica-1": 101, "replica-2": 102}
    for label in ("replica-1", "replica-2"):
        assert servers[label]["read_only"] is True
        assert servers[label]["replication"]["io_running"] == "Yes"
        assert servers[label]["replication"]["source_server_id"] == 100
        assert servers[label]["check_row"] == "present"
        assert 0 <= servers[label]["catch_up_seconds"] < 10
    assert set(report["read"]["server_ids"]) == {"101", "102"}  # the read endpoint spreads over both replicas
    assert report["read"]["row_visible"] == report["read"]["succeeded"] == 10
    # Every session verified against the set's CA, and TLS as the servers themselves report it.
    assert report["tls"] == {"verified": True, "ca_source": f"--ssl-ca {set_ca(healthy)}",
                             "ca_subjects": ["test MySQL set CA"]}
    for entry in servers.values():
        assert entry["tls_version"] in ("TLSv1.3", "TLSv1.2") and entry["tls_cipher"], entry
    assert sum(report["read"]["tls"].values()) == 10 and "none" not in report["read"]["tls"]
    # The check row is cleaned up through the primary and the delete replicates.
    healthy.wait_caught_up()
    for server in healthy.servers:
        assert server.value("SELECT COUNT(*) FROM atomic_verify.checks WHERE token = %s", (report["token"],)) == 0


def test_entry_point_prints_table_and_exits_0(healthy: ReplicatedSet) -> None:
    result = run_cli(verify_args(healthy), healthy.root_password)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("mysql-verify: HEALTHY")
    assert result.stdout.splitlines()[1].startswith(
        "TLS: server certificates and host names verified against CA 'test MySQL set CA' from --ssl-ca "
        f"{set_ca(healthy)}; sessions TLSv1.3 ")
    assert "replica-2" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("how", ["clean shutdown", "SIGKILL"])
def test_replica_stopped_mid_traffic_degrades_then_catches_up(
    traffic: Traffic, read_service: ReadServiceProxy, how: str
) -> None:
    group = traffic.group
    victim = group.replicas[1]  # replica-1 survives

    if how == "SIGKILL":
        victim.kill()  # a node crash: relay_log_recovery and InnoDB recovery must cope
    else:
        victim.stop()  # kubectl delete pod: SIGTERM, clean shutdown
    stopped_at = time.monotonic()
    acknowledged_at_stop = len(traffic.acknowledged)
    code, report = run_verify(group, verify_args(group, read_service.port))

    assert code == 1 and report["status"] == "degraded"
    assert report["problems"] == [f"replica-2 (127.0.0.1:{victim.port}): unreachable: connection refused "
                                  "(nothing listens there: server down or port-forward not running?)"]
    assert by_label(report)["replica-1"]["status"] == "ok"
    assert report["read"]["server_ids"] == {"101": 10}
    wait_for(lambda: len(traffic.acknowledged) > acknowledged_at_stop + 20, 10, "writes to continue")
    # However quickly verify ran, the reader keeps reading: wait for enough reads after the stop.
    wait_for(lambda: sum(read[0] > stopped_at for read in traffic.reads) >= 5, 10, "5 reads after the stop")
    later_reads = [read for read in traffic.reads if read[0] > stopped_at]
    assert all(error is None and server_id == 101 for _, server_id, error in later_reads), later_reads

    victim.start()
    # Nothing runs START SLAVE here: with the set's replica config a restarted replica must
    # resume replication by itself (the tutorial's `kubectl delete pod mysql-2` relies on it).
    group.wait_threads_running(victim, timeout=15)
    writes_before_restart_verify = len(traffic.acknowledged)
    wait_for(lambda: len(traffic.acknowledged) > writes_before_restart_verify + 20, 10, "writes after the restart")
    code, report = run_verify(group, verify_args(group, read_service.port))

    assert (code, report["problems"]) == (0, [])
    assert by_label(report)["replica-2"]["check_row"] == "present"
    assert_zero_rows_lost(group, traffic)


def test_broken_replication_reports_the_sql_thread_error(traffic: Traffic) -> None:
    group = traffic.group
    broken = group.replicas[0]
    clash = traffic.first_id + 1_000_000
    # A client write straight to the replica (root holds READ_ONLY ADMIN on MariaDB), then the
    # same key through the primary: the classic divergence that stops the SQL thread.
    with broken.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SET SESSION sql_log_bin = 0")
        cursor.execute(f"INSERT INTO {TRAFFIC_TABLE} (id, note) VALUES (%s, 'rogue')", (clash,))
    group.primary.sql(f"INSERT INTO {TRAFFIC_TABLE} (id, note) VALUES (%s, 'from-primary')", (clash,))
    wait_for(lambda: sql_thread(broken) == "No", 15, "the SQL thread to stop")

    code, report = run_verify(group, verify_args(group))

    assert code == 1
    problems = by_label(report)["replica-1"]["problems"]
    assert len(problems) == 1, problems
    assert problems[0].startswith("replication SQL thread is No: last error 1062: ")
    assert "Duplicate entry" in problems[0]
    assert by_label(report)["replica-1"]["check_row"] == "not waited"
    assert by_label(report)["replica-2"]["status"] == "ok"

    # Repair: drop the rogue row outside the binlog and restart the SQL thread.
    with broken.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SET SESSION sql_log_bin = 0")
        cursor.execute(f"DELETE FROM {TRAFFIC_TABLE} WHERE id = %s", (clash,))
    group.resume_replication(broken)
    group.wait_caught_up()
    assert broken.value(f"SELECT note FROM {TRAFFIC_TABLE} WHERE id = %s", (clash,)) == "from-primary"
    code, report = run_verify(group, verify_args(group))
    assert (code, report["problems"]) == (0, [])
    assert_zero_rows_lost(group, traffic)


def test_wrong_password_exits_2_with_one_line(traffic: Traffic) -> None:
    result = run_cli(verify_args(traffic.group), "not-the-password")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"mysql-verify: error: primary 127.0.0.1:{traffic.group.primary.port}: access denied for user 'root': "
        "wrong user or password (set MYSQL_PWD or --password-file)"
    ]
    assert_zero_rows_lost(traffic.group, traffic)


def test_unreachable_primary_port_exits_2_with_one_line(traffic: Traffic) -> None:
    port = free_port()
    args = ["--primary", f"127.0.0.1:{port}", "--replica", f"127.0.0.1:{traffic.group.replicas[0].port}",
            "--ssl-ca", str(set_ca(traffic.group)), "--json"]
    result = run_cli(args, traffic.group.root_password)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"mysql-verify: error: primary 127.0.0.1:{port}: connection refused "
        "(nothing listens there: server down or port-forward not running?)"
    ]
    assert json.loads(result.stdout)["status"] == "error"
    assert_zero_rows_lost(traffic.group, traffic)


def test_least_privilege_account_from_the_docs_is_enough(
    healthy: ReplicatedSet, read_service: ReadServiceProxy
) -> None:
    """The set's own verify account (mysql_config.verify_statements, as the sidecar runs it):
    created on the primary, it replicates; it is enough for verify; replicas refuse its writes."""
    with healthy.primary.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SET @verify_password = %s", ("verify-pw",))
        for statement in mysql_config.verify_statements("mariadb"):
            for part in statement.split(";\n"):
                if part.strip():
                    cursor.execute(part.strip().rstrip(";"))
    healthy.wait_caught_up()
    out, err = io.StringIO(), io.StringIO()

    code = main([*verify_args(healthy, read_service.port), "--user", "verify", "--json"],
                environ={"MYSQL_PWD": "verify-pw"}, stdout=out, stderr=err)

    report = json.loads(out.getvalue())
    assert (code, report["problems"], report["warnings"], err.getvalue()) == (0, [], [], "")
    assert [server["write_probe"] for server in report["servers"][1:]] == ["refused", "refused"]


# ---------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another stack's CA: a valid CA, but not the one that signed this set's certificate."""
    path = tmp_path_factory.mktemp("other-ca") / "ca.crt"
    path.write_text(ca_pem(make_ca("another stack's MySQL CA")))
    return path


def test_a_ca_that_did_not_sign_the_servers_is_refused_in_one_line(healthy: ReplicatedSet, other_ca: Path) -> None:
    result = run_cli(verify_args(healthy, ca=other_ca), healthy.root_password)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        f"mysql-verify: error: primary 127.0.0.1:{healthy.primary.port}: the server's certificate is not signed by "
        f"the CA from --ssl-ca {other_ca} (self-signed certificate in certificate chain): another stack's or set's "
        "CA, or a server that is not this set's"]


def test_no_tls_against_the_set_is_refused_naming_the_transport(healthy: ReplicatedSet) -> None:
    """require_secure_transport: MariaDB answers a plaintext login with 1045, as for a wrong password."""
    args = [arg for arg in verify_args(healthy) if arg not in ("--ssl-ca", str(set_ca(healthy)))]
    result = run_cli([*args, "--no-tls"], healthy.root_password)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        f"mysql-verify: error: primary 127.0.0.1:{healthy.primary.port}: access denied for user 'root': wrong user "
        "or password (set MYSQL_PWD or --password-file); or the transport: with --no-tls the login went in "
        "plaintext, which a server with require_secure_transport (this program's sets) or an account that REQUIREs "
        "SSL refuses this way: drop --no-tls"]


def test_a_replica_refusing_the_primarys_certificate_is_degraded_with_the_reason(
    traffic: Traffic, other_ca: Path
) -> None:
    """The replica trusts another CA (a CA rotated on the primary only, or a wrong MASTER_SSL_CA):
    its IO thread stops connecting with 2026, verify names it, and fixing the CA heals it."""
    group = traffic.group
    replica = group.replicas[0]
    replica.sql("STOP SLAVE")
    replica.sql("CHANGE MASTER TO MASTER_SSL_CA = %s", (str(other_ca),))
    replica.sql("START SLAVE")
    wait_for(lambda: replica_status(replica).get("Last_IO_Errno") == 2026, 15, "the IO thread to refuse the primary")

    code, report = run_verify(group, verify_args(group))

    assert code == 1
    problems = by_label(report)["replica-1"]["problems"]
    assert len(problems) == 1, problems
    assert problems[0].startswith("replication IO thread is Connecting: last error 2026: "), problems
    assert problems[0].endswith("(the replica refuses the primary's TLS certificate: not signed by the CA in its "
                                "SOURCE_SSL_CA/MASTER_SSL_CA, or not naming the host it dials)"), problems
    assert by_label(report)["replica-2"]["status"] == "ok"

    replica.sql("STOP SLAVE")
    replica.sql("CHANGE MASTER TO MASTER_SSL_CA = %s", (str(set_ca(group)),))
    group.resume_replication(replica)
    code, report = run_verify(group, verify_args(group))
    assert (code, report["problems"]) == (0, [])
    assert_zero_rows_lost(group, traffic)
