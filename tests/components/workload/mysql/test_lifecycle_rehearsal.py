"""Day-two rehearsal on real MariaDB 10.11: start-up, password rotation, binlog bounds and shutdown.

The set's own scripts run as three "pods" (tools/testing/mysql_pods.py: what is real, what stands
in). mysql-0 boots through a stand-in of the server image's temporary init server
(--skip-networking on the pod's socket) while its sidecar already runs. Then, under continuous
writes: every password rotated, the kubelet's refresh of each pod's copy staggered the worst way
round, and the rolling update (highest ordinal first, preStop before SIGTERM); the binlogs held to
a small bound; and the primary stopped while a replica's connection has stopped reading.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pymysql
import pytest

from components.workload.mysql import budget
from components.workload.mysql import config as mysql_config
from tools.testing.mariadb import replica_status, require_mariadb
from tools.testing.mysql_pods import VERSION, RehearsalSet, RenderedSet, render_set
from tools.testing.processes import free_port

pytestmark = pytest.mark.real

APP_PASSWORD = "app-pw"
KEYS = ("root-password", "replication-password", "backup-password", "verify-password")


@pytest.fixture(scope="module")
def rendered() -> RenderedSet:
    return render_set("local", {"mysqlVersion": VERSION})


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory, rendered: RenderedSet) -> Iterator[RehearsalSet]:
    require_mariadb()
    rehearsal = RehearsalSet(tmp_path_factory.mktemp("lifecycle"), rendered, rotation_delay=3)
    try:
        rehearsal.boot(0, temporary_server=True)
        with rehearsal.primary.connect() as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE app")
            cur.execute("CREATE TABLE app.messages (id INT AUTO_INCREMENT PRIMARY KEY, message VARCHAR(64),"
                        " body LONGBLOB)")
            cur.execute("CREATE USER app@'%%' IDENTIFIED BY %s", (APP_PASSWORD,))
            cur.execute("GRANT ALL ON app.* TO app@'%'")
        rehearsal.boot(1)
        rehearsal.boot(2)
        yield rehearsal
    finally:
        rehearsal.close()


def wait_replicated(group: RehearsalSet, ordinals: tuple[int, ...] = (1, 2), timeout: float = 60) -> None:
    position = group.primary.value("SELECT @@GLOBAL.gtid_binlog_pos")
    for ordinal in ordinals:
        server = group.pods[ordinal].server
        assert server is not None
        assert server.value("SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout)) == 0, ordinal


def messages(group: RehearsalSet, ordinal: int) -> set[str]:
    server = group.pods[ordinal].server
    assert server is not None
    return {row[0] for row in server.sql("SELECT message FROM app.messages WHERE body IS NULL")}


def wait_for_log(group: RehearsalSet, ordinal: int, text: str, count: int = 1, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    log = group.pods[ordinal].sidecar_log
    while log.read_text().count(text) < count:
        assert time.monotonic() < deadline, f"mysql-{ordinal} never logged {text!r}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


# ---------------------------------------------------------------- start-up


def test_the_sidecar_provisions_the_accounts_once_on_the_final_server_only(group: RehearsalSet) -> None:
    """The stand-in init server accepted root's password on the socket the sidecar polls (init_phase
    logged in as root with it), so a sidecar that waited only for a login would have run users.sql
    there; it waited for networking instead."""
    pod = group.pods[0]
    executed = pod.temporary_server_statements
    assert executed and set(executed.values()) == {0}, executed  # no account statement reached it
    log = pod.sidecar_log.read_text()
    assert log.count("is the image's temporary init server (skip_networking=1); waiting for the final one") == 1
    assert log.count("replication, backup and verify accounts are in place") == 1
    assert log.index("temporary init server") < log.index("accounts are in place")
    server = pod.server
    assert server is not None
    assert server.value("SELECT @@skip_networking") == 0
    accounts = server.sql("SELECT User FROM mysql.user WHERE User IN ('repl', 'backup', 'verify') ORDER BY User")
    assert accounts == [("backup",), ("repl",), ("verify",)]


# ---------------------------------------------------------------- password rotation


class Writer:
    """Inserts one row at a time into the primary as the application would, reconnecting after errors;
    `acknowledged` holds every row whose commit the server confirmed."""

    def __init__(self, group: RehearsalSet) -> None:
        self.group = group
        self.acknowledged: list[str] = []
        self.errors: list[str] = []
        self.longest_gap = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        number = 0
        last = time.monotonic()
        while not self.stop.is_set():
            try:
                with self.group.primary.connect(user="app", password=APP_PASSWORD, database="app",
                                                connect_timeout=2, read_timeout=10, write_timeout=10) as conn, \
                        conn.cursor() as cursor:
                    while not self.stop.is_set():
                        message = f"row {number}"
                        cursor.execute("INSERT INTO messages (message) VALUES (%s)", (message,))
                        self.acknowledged.append(message)
                        number += 1
                        now = time.monotonic()
                        self.longest_gap = max(self.longest_gap, now - last)
                        last = now
                        time.sleep(0.02)
            except (pymysql.err.Error, OSError, AssertionError) as error:
                self.errors.append(type(error).__name__)
                number += 1  # the row in flight may or may not have committed: never reuse its name
                time.sleep(0.2)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


class ReadinessWatch:
    """readiness.sh of every pod that is not being replaced, sampled every 0.2 s: far more often than the
    kubelet (every MYSQLD_READINESS.period_seconds, unready after failure_threshold failures in a row).
    A pod counts as unready here when its probe failed without a break for one probe period or more,
    the shortest failure the kubelet could see twice in a row; shorter blips are kept and reported."""

    def __init__(self, group: RehearsalSet) -> None:
        self.group = group
        self.replacing: set[int] = set()
        self.failing_since: dict[int, tuple[float, str]] = {}
        self.spans: list[tuple[int, float, str]] = []  # ordinal, seconds failing without a break, first output
        self.samples = 0
        self.began = time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for ordinal, pod in sorted(self.group.pods.items()):
                if ordinal in self.replacing or pod.server is None or not pod.server.running:
                    self.failing_since.pop(ordinal, None)
                    continue
                result = pod.probe("readiness.sh")
                if ordinal in self.replacing:
                    continue
                self.samples += 1
                now = time.monotonic()
                if result.returncode != 0:
                    self.failing_since.setdefault(ordinal, (now, f"{now - self.began:.1f}s {result.stdout.strip()}"))
                elif ordinal in self.failing_since:
                    since, output = self.failing_since.pop(ordinal)
                    self.spans.append((ordinal, now - since, output))
            time.sleep(0.2)

    @property
    def unready(self) -> list[tuple[int, float, str]]:
        period = budget.MYSQLD_READINESS.period_seconds
        still = [(o, time.monotonic() - since, output) for o, (since, output) in self.failing_since.items()]
        return [span for span in self.spans + still if span[1] >= period]

    def __enter__(self) -> ReadinessWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def connect_over_tls(group: RehearsalSet, ordinal: int, user: str, password: str) -> pymysql.connections.Connection:
    return pymysql.connect(host="127.0.0.1", port=group.mysql_ports[ordinal], user=user, password=password,
                           connect_timeout=5, ssl_ca=str(group.tls_dir / mysql_config.TLS_CA), ssl_verify_cert=True,
                           ssl_verify_identity=True)


def connect_over_socket(group: RehearsalSet, ordinal: int, user: str, password: str) -> pymysql.connections.Connection:
    server = group.pods[ordinal].server
    assert server is not None
    return pymysql.connect(unix_socket=str(server.socket), user=user, password=password, connect_timeout=5)


def accepted(connect: object) -> bool:
    try:
        connect()  # type: ignore[operator]
    except pymysql.err.OperationalError as error:
        assert error.args[0] == 1045, error
        return False
    return True


def test_rotating_every_password_under_writes_loses_no_row_and_leaves_every_pod_ready(group: RehearsalSet) -> None:
    old = {key: (group.secrets_dir / key).read_text() for key in KEYS}
    new = {key: f"rotated {key} 'q' \\b \"d\" #2" for key in KEYS}
    with Writer(group) as writer, ReadinessWatch(group) as watch:
        time.sleep(2)
        # The Secret changes in the API; the kubelet refreshes each running pod's copy on its own sync.
        for key, value in new.items():
            group.update_secret(key, value, refresh=False)
        # Worst case one way: the replicas' copies first, long before the primary applies anything.
        group.pods[2].refresh_secret()
        group.pods[1].refresh_secret()
        time.sleep(group.rotation_delay + 3)
        assert "rotated:" not in group.pods[0].sidecar_log.read_text()
        # Then the primary's: it applies after ROTATION_DELAY_SECONDS; the replicas re-authenticate.
        group.pods[0].refresh_secret()
        wait_for_log(group, 0, "rotated: root-password, replication-password, backup-password, verify-password")
        for pod in group.pods.values():
            assert pod.server is not None
            pod.server.root_password = new["root-password"]
        # The replicas' established connections keep streaming (authenticated before): no lag, no re-auth.
        wait_replicated(group, timeout=10)
        reauth = "replication re-authenticates with the Secret's current replication password"
        assert reauth not in group.pods[1].sidecar_log.read_text()
        # A reconnect (a network blip) meets the new password on the primary: refused (1045), then the
        # sidecar re-authenticates and replication resumes.
        replica = group.pods[1].server
        assert replica is not None
        replica.sql("STOP SLAVE IO_THREAD")
        replica.sql("START SLAVE IO_THREAD")
        wait_for_log(group, 1, reauth)
        wait_replicated(group, (1,), timeout=30)
        before_roll = watch.samples
        # The rolling update the new checksum/credentials starts: highest ordinal first, each ready before the next.
        for ordinal in (2, 1, 0):
            watch.replacing.add(ordinal)
            group.pods[ordinal].restart()
            watch.replacing.discard(ordinal)
        time.sleep(3)
    assert watch.samples > before_roll > 20
    assert watch.unready == [], watch.unready  # no pod outside its own replacement was ever unready
    assert len(writer.acknowledged) > 200
    wait_replicated(group)
    for ordinal in (0, 1, 2):
        missing = set(writer.acknowledged) - messages(group, ordinal)
        assert not missing, f"mysql-{ordinal} lost {len(missing)} acknowledged rows"
        assert group.pods[ordinal].ready()
    assert messages(group, 1) == messages(group, 0) == messages(group, 2)
    # Every account takes the new password and refuses the old, on every member.
    for ordinal in (0, 1, 2):
        for user, key in (("root", "root-password"), (mysql_config.BACKUP_USER, "backup-password")):
            assert accepted(lambda: connect_over_socket(group, ordinal, user, new[key]))  # noqa: B023
            assert not accepted(lambda: connect_over_socket(group, ordinal, user, old[key]))  # noqa: B023
        for user, key in ((mysql_config.VERIFY_USER, "verify-password"),
                          (mysql_config.REPLICATION_USER, "replication-password")):
            assert accepted(lambda: connect_over_tls(group, ordinal, user, new[key]))  # noqa: B023
            assert not accepted(lambda: connect_over_tls(group, ordinal, user, old[key]))  # noqa: B023
    for ordinal in (1, 2):
        server = group.pods[ordinal].server
        assert server is not None
        status = replica_status(server)
        assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes"), status
        # The replaced pods set the new password at their first check (nothing recorded in a new pod).
        assert group.pods[ordinal].sidecar_log.read_text().count(reauth) >= 1
    print(f"\nrotation: {len(writer.acknowledged)} rows acknowledged, none lost; longest write gap "
          f"{writer.longest_gap:.1f} s (mysql-0's replacement); {watch.samples} readiness samples, failures shorter "
          f"than a probe period: {[(o, round(t, 2), out) for o, t, out in watch.spans]}; "
          f"writer errors {sorted(set(writer.errors))}")


# ---------------------------------------------------------------- binlogs


def binlog_total(group: RehearsalSet, ordinal: int) -> int:
    server = group.pods[ordinal].server
    assert server is not None
    return sum(int(row[1]) for row in server.sql("SHOW BINARY LOGS"))


def test_binlogs_are_held_to_their_bound_with_an_alarm_before_the_disk_fills(group: RehearsalSet) -> None:
    limit, per_file = 4 * 2**20, 512 * 2**10
    # The local stack's own bound (1Gi volume): a quarter of it, in files of an eighth of that.
    assert group.rendered.env["sidecar"]["BINLOG_MAX_BYTES"] == str(2**28)
    for ordinal in (0, 1):  # the sidecars restarted with a small bound and an alarm that must fire here
        pod = group.pods[ordinal]
        pod.stop_sidecar()
        pod.start_sidecar(BINLOG_MAX_BYTES=str(limit), BINLOG_FILE_BYTES=str(per_file), DISK_ALARM_PERCENT="1")
        pod.wait_ready(30)
    body = os.urandom(96 * 2**10)
    with group.primary.connect() as conn, conn.cursor() as cursor:
        for number in range(120):  # ~11 MiB of binlog
            cursor.execute("INSERT INTO app.messages (message, body) VALUES (%s, %s)", (f"blob {number}", body))
    wait_replicated(group)
    for ordinal in (0, 1):
        wait_for_log(group, ordinal, "over the bound of 4194304: purged the")
        deadline = time.monotonic() + 30
        while binlog_total(group, ordinal) > limit + per_file + len(body) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert binlog_total(group, ordinal) <= limit + per_file + len(body), ordinal
        wait_for_log(group, ordinal, "ALARM: data volume")
        assert group.pods[ordinal].ready()  # the alarm leaves readiness alone
    # mysql-2 kept the default bound: nothing of its own purged.
    assert "purged the" not in group.pods[2].sidecar_log.read_text()
    assert binlog_total(group, 2) > limit
    write_check = "after the purge"
    with group.primary.connect(user="app", password=APP_PASSWORD, database="app") as conn, conn.cursor() as cursor:
        cursor.execute("INSERT INTO messages (message) VALUES (%s)", (write_check,))
    wait_replicated(group)
    for ordinal in (1, 2):
        assert write_check in messages(group, ordinal)  # replication never needed a purged file
    for ordinal in (0, 1):  # back to the stack's bound
        group.pods[ordinal].stop_sidecar()
        group.pods[ordinal].start_sidecar()
        group.pods[ordinal].wait_ready(30)


# ---------------------------------------------------------------- shutdown


def test_a_primary_whose_replica_stopped_reading_shuts_down_within_its_budget(group: RehearsalSet) -> None:
    """mysql-2 replicates through a TCP relay that then stops (SIGSTOP): its binlog dump thread on the
    primary blocks in a write, which without the preStop holds mysqld's shutdown for net_write_timeout
    (60 s; measured 59 s, docs/mysql.md)."""
    primary, replica = group.pods[0], group.pods[2]
    assert replica.server is not None and primary.server is not None
    relay_port = free_port()
    relay = subprocess.Popen(["socat", f"TCP-LISTEN:{relay_port},bind=127.0.0.1,reuseaddr",
                              f"TCP:127.0.0.1:{group.mysql_ports[0]}"])
    try:
        time.sleep(0.5)
        replica.server.sql("STOP SLAVE")
        replica.server.sql("CHANGE MASTER TO MASTER_PORT = %s", (relay_port,))
        replica.server.sql("START SLAVE")
        dump = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'"
        deadline = time.monotonic() + 30
        while not (replica_status(replica.server)["Slave_IO_Running"] == "Yes" and primary.server.value(dump) == 2):
            assert time.monotonic() < deadline, replica_status(replica.server)
            time.sleep(0.2)
        wait_replicated(group, (2,))
        os.kill(relay.pid, signal.SIGSTOP)
        body = os.urandom(2**20)
        with primary.server.connect() as conn, conn.cursor() as cursor:
            for number in range(24):
                cursor.execute("INSERT INTO app.messages (message, body) VALUES (%s, %s)", (f"big {number}", body))
        time.sleep(2)
        # The control: the stand-in holds a dump thread in a network write.
        states = primary.server.sql(
            "SELECT STATE FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
        assert ("Writing to net",) in states, states
        began = time.monotonic()
        prestop = primary.script("prestop.sh", timeout=60)
        prestop_seconds = time.monotonic() - began
        assert prestop.returncode == 0, prestop.stderr
        assert "read_only is ON" in prestop.stderr and "closed 2 binlog dump connection(s)" in prestop.stderr
        primary.stop_sidecar()
        stopping = time.monotonic()
        assert primary.server.stop(timeout=budget.MYSQLD_SHUTDOWN_SECONDS) == 0  # a clean exit, not SIGKILL
        shutdown_seconds = time.monotonic() - stopping
    finally:
        os.kill(relay.pid, signal.SIGCONT)
        relay.kill()
        relay.wait(10)
    assert prestop_seconds < budget.PRESTOP_BUDGET_SECONDS
    assert shutdown_seconds < budget.MYSQLD_SHUTDOWN_SECONDS
    assert prestop_seconds + shutdown_seconds < budget.termination_grace_seconds()
    print(f"\nshutdown with a stalled replica: preStop {prestop_seconds:.1f} s + mysqld {shutdown_seconds:.1f} s "
          f"(grace period {budget.termination_grace_seconds()} s)")
    # Back up: the primary restarts writable, and the stalled replica, pointed back, lost nothing.
    primary.server.start()
    primary.start_sidecar()
    primary.wait_ready()
    assert primary.server.value("SELECT @@read_only") == 0
    replica.server.sql("STOP SLAVE")
    replica.server.sql("CHANGE MASTER TO MASTER_PORT = %s", (group.mysql_ports[0],))
    replica.server.sql("START SLAVE")
    wait_replicated(group)
    counts = {o: group.pods[o].server.value("SELECT COUNT(*) FROM app.messages") for o in (0, 1, 2)}  # type: ignore[union-attr]
    assert len(set(counts.values())) == 1, counts
