"""The set's TLS on real MariaDB 10.11, mariadb-backup and socat (tools/testing/mysql_pods.py): the
clone channel's mutual TLS, MySQL refusing plaintext, and replication that verifies its source.

Each group here is the rendered set booted as in test_rehearsal.py, with the set's CA and
certificate issued for real from config.tls_certificate (the preview's PEMs are placeholders)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from components.workload.mysql import config as mysql_config
from tools.testing.mariadb import replica_status, require_mariadb
from tools.testing.mysql_pods import PASSWORDS, VERSION, RehearsalSet, RenderedSet, render_set
from tools.testing.pki import make_ca, write_tls_dir

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def rendered() -> RenderedSet:
    return render_set("local", {"mysqlVersion": VERSION})


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, rendered: RenderedSet) -> Iterator[RehearsalSet]:
    """A primary and one replica cloned from it."""
    require_mariadb()
    group = RehearsalSet(tmp_path_factory.mktemp("tls-rehearsal"), rendered)
    try:
        group.boot(0)
        group.boot(1)
        yield group
    finally:
        group.close()


def _stream_started(group: RehearsalSet, ordinal: int) -> int:
    return group.pods[ordinal].sidecar_log.read_text().count("streaming a backup to a peer")


def _read_all(connection: socket.socket | ssl.SSLSocket, limit: float = 10) -> bytes:
    """Every byte the peer sends until it closes (or `limit` seconds pass)."""
    connection.settimeout(limit)
    received = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = connection.recv(65536)
        except (ssl.SSLError, OSError):
            break
        if not chunk:
            break
        received += chunk
    return received


def _clone_client(tls_dir: Path | None, trust: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(trust / mysql_config.TLS_CA))
    if tls_dir is not None:
        context.load_cert_chain(str(tls_dir / mysql_config.TLS_CERT), str(tls_dir / mysql_config.TLS_KEY))
    return context


def test_the_clone_channel_served_the_replica_over_mutual_tls(pair: RehearsalSet) -> None:
    assert "serving backups on port" in pair.pods[0].sidecar_log.read_text()
    assert "(mutual TLS)" in pair.pods[0].sidecar_log.read_text()
    assert _stream_started(pair, 0) == 1  # mysql-1's clone, and nothing else
    assert (pair.pods[1].datadir / "mysql").is_dir()


@pytest.mark.parametrize("client", ["no certificate", "another CA's certificate", "plain TCP"])
def test_a_clone_client_the_set_did_not_issue_receives_no_byte(pair: RehearsalSet, tmp_path: Path,
                                                               client: str) -> None:
    """The listener's handshake refuses it before socat runs the backup: not one byte of the data
    dir leaves, and no backup starts (the sidecar's log would say so)."""
    before = _stream_started(pair, 0)
    port = pair.clone_ports[0]
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    if client == "plain TCP":
        received = _read_all(raw, limit=3)
    else:
        foreign = write_tls_dir(tmp_path / "foreign", make_ca("an attacker's CA"), pair.certificate)
        context = _clone_client(None if client == "no certificate" else foreign, trust=pair.tls_dir)
        try:
            connection = context.wrap_socket(raw, server_hostname="127.0.0.1")
        except (ssl.SSLError, OSError):
            received = b""  # refused during the handshake itself (TLS 1.2)
        else:
            received = _read_all(connection)  # TLS 1.3: the refusal arrives after the client's Finished
    raw.close()
    assert received == b""
    time.sleep(0.5)
    assert _stream_started(pair, 0) == before


def test_the_set_certificate_is_what_the_clone_listener_requires(pair: RehearsalSet) -> None:
    """The positive control of the test above: the set's own certificate gets a backup stream."""
    before = _stream_started(pair, 0)
    raw = socket.create_connection(("127.0.0.1", pair.clone_ports[0]), timeout=10)
    connection = _clone_client(pair.tls_dir, trust=pair.tls_dir).wrap_socket(raw, server_hostname="127.0.0.1")
    received = _read_all(connection, limit=60)
    connection.close()
    assert len(received) > 1_000_000  # a real mbstream of the data dir
    assert _stream_started(pair, 0) == before + 1


def test_the_receiver_refuses_a_listener_the_set_did_not_issue(pair: RehearsalSet, tmp_path: Path) -> None:
    """clone-mysql's end verifies the sender: a listener with another CA's certificate gets the handshake
    refused and the receiver writes nothing (socat, as the script runs it)."""
    foreign = write_tls_dir(tmp_path / "foreign", make_ca("an impostor's CA"), pair.certificate)
    impostor = socket.socket()
    impostor.bind(("127.0.0.1", 0))
    port = impostor.getsockname()[1]
    impostor.close()
    listener = subprocess.Popen(
        ["socat", "-U", f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,cert={foreign}/tls.crt,"
         f"key={foreign}/tls.key,cafile={pair.tls_dir}/ca.crt,verify=0", "SYSTEM:echo STOLEN-CREDENTIALS"],
        stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        tls = (f"cert={pair.tls_dir}/tls.crt,key={pair.tls_dir}/tls.key,cafile={pair.tls_dir}/ca.crt,verify=1,"
               "openssl-min-proto-version=TLS1.2")
        done = subprocess.run(["socat", "-u", f"OPENSSL:127.0.0.1:{port},connect-timeout=10,{tls}", "STDOUT"],
                              capture_output=True, text=True, timeout=30)
    finally:
        listener.kill()
        listener.wait(10)
    assert done.stdout == "" and done.returncode != 0
    assert "certificate verify failed" in done.stderr


def test_plaintext_mysql_is_refused_and_tls_is_verified(pair: RehearsalSet) -> None:
    primary = pair.primary
    for user, password in (("verify", PASSWORDS["verify-password"]), ("root", PASSWORDS["root-password"])):
        with pytest.raises(pymysql.err.OperationalError) as refused:
            primary.connect(user=user, password=password, ssl_disabled=True)
        assert refused.value.args[0] == 1045, refused.value
    with primary.connect(user="verify", password=PASSWORDS["verify-password"]) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        (_, version) = cursor.fetchone()
    assert version in ("TLSv1.2", "TLSv1.3")
    assert primary.value("SELECT @@require_secure_transport") == 1
    # Even with the server-wide switch off, the set's network accounts refuse plaintext themselves.
    accounts = dict(primary.sql("SELECT CONCAT(User, '@', Host), ssl_type FROM mysql.user"))
    assert accounts["repl@%"] == "ANY" and accounts["verify@%"] == "ANY"


def test_replication_runs_over_tls_that_verifies_the_primary(pair: RehearsalSet) -> None:
    replica = pair.pods[1].server
    assert replica is not None
    status = replica_status(replica)
    assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes")
    assert status["Master_SSL_Allowed"] == "Yes" and status["Master_SSL_Verify_Server_Cert"] == "Yes"
    assert status["Master_SSL_CA_File"] == str(pair.pods[1].tls_dir / mysql_config.TLS_CA)


@pytest.mark.parametrize("wrong", ["another CA", "a name the replica does not dial"])
def test_replication_stops_with_a_clear_error_against_a_certificate_it_cannot_verify(
        tmp_path: Path, rendered: RenderedSet, wrong: str) -> None:
    """The primary restarts with a certificate the replica must refuse; its IO thread refuses it with
    the TLS error and receives nothing more. (The replica keeps serving its data, stale, as when the
    primary is down: readiness.sh counts a Connecting IO thread as ready; `make verify` reports it.)"""
    require_mariadb()
    group = RehearsalSet(tmp_path / "set", rendered)
    try:
        group.boot(0)
        group.boot(1)
        primary = group.pods[0]
        assert primary.server is not None
        if wrong == "another CA":
            primary.replace_certificate(signer=make_ca("a stranger's CA"))
        else:
            primary.replace_certificate(certificate=mysql_config.TlsCertificate(
                "mysql-0.elsewhere", ("mysql-0.elsewhere",), ()))
        primary.server.restart()
        replica = group.pods[1].server
        assert replica is not None
        replica.sql("STOP SLAVE")
        replica.sql("START SLAVE")  # reconnect now, not after MASTER_CONNECT_RETRY
        deadline = time.monotonic() + 30
        status = replica_status(replica)
        while time.monotonic() < deadline and not status.get("Last_IO_Error"):
            time.sleep(0.5)
            status = replica_status(replica)
        # 2026 CR_SSL_CONNECTION_ERROR; the IO thread keeps retrying ("Connecting") and fetches nothing.
        assert status["Slave_IO_Running"] == "Connecting" and status["Last_IO_Errno"] == 2026, status
        assert "SSL connection error" in status["Last_IO_Error"]
        primary.server.sql("CREATE DATABASE written_after_the_swap", unix_socket=str(primary.server.socket))
        time.sleep(2)
        assert not replica.sql("SHOW DATABASES LIKE 'written_after_the_swap'")
    finally:
        group.close()


@pytest.mark.parametrize("ordinal", [0, 1, 4])
def test_openssl_matches_the_name_members_dial_to_the_set_certificate(tmp_path: Path, ordinal: int) -> None:
    """OpenSSL's own host check (what mysqld's client and socat use): the qualified peer name the pods
    are given matches the certificate; the short `<set>-N.<set>` never would (one dot after `*`)."""
    certificate = mysql_config.tls_certificate("mysql", "atomic-mysql", "cluster.local")
    tls_dir = write_tls_dir(tmp_path / "tls", make_ca("set CA"), certificate)
    qualified = mysql_config.peer_host_pattern("mysql", "atomic-mysql", "cluster.local").replace(
        "{ordinal}", str(ordinal))

    def matches(host: str) -> bool:
        done = subprocess.run(["openssl", "x509", "-in", str(tls_dir / mysql_config.TLS_CERT), "-noout",
                               "-checkhost", host], capture_output=True, text=True, timeout=30, check=True)
        return "does match" in done.stdout and "NOT" not in done.stdout

    assert matches(qualified), qualified
    assert not matches(f"mysql-{ordinal}.mysql")
    assert not matches(f"mysql-{ordinal}.other.atomic-mysql.svc.cluster.local")
