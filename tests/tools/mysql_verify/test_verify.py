"""mysql-verify without real database servers: parsing, verdicts, error lines, CLI, report, and
the MySQL 8.x code path against a scripted fake (no MySQL server exists on this machine; the
MariaDB path runs for real in test_verify_drills.py)."""

from __future__ import annotations

import io
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tools.mysql_verify import checks
from tools.mysql_verify.checks import (
    ConnectError,
    Endpoint,
    Options,
    TlsTrust,
    describe_connect_error,
    flag,
    judge_primary,
    judge_read_only,
    judge_reads,
    judge_replication,
    judge_server_ids,
    normalize_status,
    parse_version,
)
from tools.mysql_verify.cli import (
    UsageError,
    build_options,
    build_parser,
    main,
    ordinal_from_host,
    parse_host_port,
    parse_replicas,
    replica_hosts_from_stack,
)
from tools.mysql_verify.report import (
    ReadResult,
    ReplicationState,
    Report,
    ServerResult,
    TlsUse,
    render_table,
    to_json,
)
from tools.testing.pki import ca_pem, issue_named, make_ca

# The set's CA (real, as pulumi-tls makes it) and another one; the stack output mysqlCaCert is SET_CA_PEM.
SET_CA, OTHER_CA = make_ca("test MySQL set CA"), make_ca("another stack's MySQL CA")
SET_CA_PEM = ca_pem(SET_CA)
SESSION_TLS = ("TLSv1.3", "TLS_AES_256_GCM_SHA384")

# Real column sets (trimmed to what verify reads, plus neighbours) of each engine's status statement.
MYSQL_84_STATUS = {
    "Replica_IO_State": "Waiting for source to send event", "Source_Host": "mysql-0.mysql", "Source_Port": 3306,
    "Replica_IO_Running": "Yes", "Replica_SQL_Running": "No", "Last_Errno": 1062, "Last_IO_Errno": 0,
    "Last_IO_Error": "", "Last_SQL_Errno": 1062,
    "Last_SQL_Error": "Could not execute Write_rows event on table test.messages; Duplicate entry '1' for key "
                      "'messages.PRIMARY'",
    "Seconds_Behind_Source": None, "Source_Server_Id": 100, "Auto_Position": 1,
}
MARIADB_1011_STATUS = {
    "Slave_IO_State": "Waiting for master to send event", "Master_Host": "mysql-0.mysql", "Master_Port": 3306,
    "Slave_IO_Running": "Connecting", "Slave_SQL_Running": "Yes", "Last_IO_Errno": 2003,
    "Last_IO_Error": "error connecting to master 'repl@mysql-0.mysql:3306' - retry-time: 10  maximum-retries: "
                     "100000  message: Can't connect to server on 'mysql-0.mysql' (111 \"Connection refused\")",
    "Last_SQL_Errno": 0, "Last_SQL_Error": "", "Seconds_Behind_Master": 0, "Master_Server_Id": 100,
    "Using_Gtid": "Slave_Pos",
}


# ---------------------------------------------------------------------------- engines and status


@pytest.mark.parametrize(
    ("text", "flavor", "version", "statement"),
    [
        ("10.11.19-MariaDB-0+deb12u1-log", "mariadb", (10, 11, 19), "SHOW SLAVE STATUS"),
        ("11.4.8-MariaDB-ubu2404", "mariadb", (11, 4, 8), "SHOW SLAVE STATUS"),
        ("8.4.6", "mysql", (8, 4, 6), "SHOW REPLICA STATUS"),
        ("8.0.43", "mysql", (8, 0, 43), "SHOW REPLICA STATUS"),
        ("8.0.22", "mysql", (8, 0, 22), "SHOW REPLICA STATUS"),
        ("8.0.21", "mysql", (8, 0, 21), "SHOW SLAVE STATUS"),
        ("8.0.35-27", "mysql", (8, 0, 35), "SHOW REPLICA STATUS"),
    ],
)
def test_version_picks_engine_and_status_statement(
    text: str, flavor: str, version: tuple[int, int, int], statement: str
) -> None:
    engine = parse_version(text)
    assert (engine.flavor, engine.version, engine.status_statement) == (flavor, version, statement)
    assert engine.has_super_read_only is (flavor == "mysql")


def test_unrecognised_version_is_an_error() -> None:
    with pytest.raises(ValueError, match="unrecognised server version"):
        parse_version("garbage")


def test_mysql_84_status_columns_are_normalised() -> None:
    state = normalize_status(MYSQL_84_STATUS)
    assert (state.io_running, state.sql_running, state.running) == ("Yes", "No", False)
    assert (state.source_host, state.source_port, state.source_server_id) == ("mysql-0.mysql", 3306, 100)
    assert state.seconds_behind is None
    assert (state.last_sql_errno, state.last_sql_error.startswith("Could not execute")) == (1062, True)


def test_mariadb_status_columns_are_normalised() -> None:
    state = normalize_status(MARIADB_1011_STATUS)
    assert (state.io_running, state.sql_running, state.seconds_behind) == ("Connecting", "Yes", 0)
    assert (state.source_server_id, state.last_io_errno) == (100, 2003)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, True), (0, False), ("ON", True), ("OFF", False), (b"1", True), (None, None), ("NO_LOCK_NO_ADMIN", True)],
)
def test_server_flags(value: Any, expected: bool | None) -> None:
    assert flag(value) is expected


# ---------------------------------------------------------------------------- connection errors


def describe(error: BaseException) -> ConnectError:
    return describe_connect_error(error, "root", 5, 10)


def test_access_denied_is_fatal_and_names_the_fix() -> None:
    error = pymysql.err.OperationalError(1045, "Access denied for user 'root'@'10.0.0.7' (using password: YES)")
    failure = describe(error)
    assert failure.fatal
    assert failure.reason == "access denied for user 'root': wrong user or password (set MYSQL_PWD or --password-file)"


def test_access_denied_under_no_tls_says_it_may_be_the_transport() -> None:
    error = pymysql.err.OperationalError(1045, "Access denied for user 'verify'@'127.0.0.1' (using password: YES)")
    failure = describe_connect_error(error, "verify", 5, 10, plaintext=True)
    assert failure.fatal
    assert failure.reason == (
        "access denied for user 'verify': wrong user or password (set MYSQL_PWD or --password-file); or the "
        "transport: with --no-tls the login went in plaintext, which a server with require_secure_transport (this "
        "program's sets) or an account that REQUIREs SSL refuses this way: drop --no-tls")


@pytest.mark.parametrize(("code", "text", "reason"), [
    (3159, "Connections using insecure transport are prohibited while --require_secure_transport=ON.",
     "the server refuses connections without TLS (require_secure_transport): drop --no-tls"),
    (2026, "SSL is required but the server doesn't support it",
     "the server offers no TLS (SSL is required but the server doesn't support it): this program's sets always "
     "serve TLS, so this is not one of them, or its TLS is not configured; --no-tls only for servers that serve none"),
])
def test_tls_refusals_are_fatal_one_liners(code: int, text: str, reason: str) -> None:
    failure = describe(pymysql.err.OperationalError(code, text))
    assert (failure.fatal, failure.reason) == (True, reason)


def test_replication_refusing_the_primarys_certificate_says_so() -> None:
    replica = server("replica-1", 1, replication=state(
        io_running="Connecting", last_io_errno=2026,
        last_io_error="error connecting to master 'repl@127.0.0.1:3306' - retry-time: 1  maximum-retries: 100000  "
                      "message: SSL connection error: certificate verify failed"))
    judge_replication(replica, primary_server_id=100)
    assert replica.problems == [
        "replication IO thread is Connecting: last error 2026: error connecting to master 'repl@127.0.0.1:3306' - "
        "retry-time: 1  maximum-retries: 100000  message: SSL connection error: certificate verify failed (the "
        "replica refuses the primary's TLS certificate: not signed by the CA in its SOURCE_SSL_CA/MASTER_SSL_CA, or "
        "not naming the host it dials)"]


def real_connect_error(host: str, port: int) -> BaseException:
    try:
        pymysql.connect(host=host, port=port, user="root", password="", connect_timeout=2, read_timeout=1)
    except pymysql.err.MySQLError as error:
        return error
    raise AssertionError("connected to a port with no MySQL server")


@pytest.fixture()
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def silent_port() -> Iterator[int]:
    """Accepts TCP connections and never sends a MySQL greeting (a wrong service, a stuck proxy)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_refused_port_is_one_clear_phrase(closed_port: int) -> None:
    failure = describe(real_connect_error("127.0.0.1", closed_port))
    assert not failure.fatal
    assert failure.reason.startswith("connection refused")


def test_unknown_host_is_one_clear_phrase() -> None:
    failure = describe(real_connect_error("no-such-host.invalid", 3306))
    assert failure.reason == "unknown host (DNS name does not resolve)"


def test_silent_server_is_a_timeout(silent_port: int) -> None:
    failure = describe_connect_error(real_connect_error("127.0.0.1", silent_port), "root", 2, 1)
    assert failure.reason.startswith("timed out after 1s waiting for the server")


# ---------------------------------------------------------------------------- verdicts


def server(label: str, ordinal: int, **values: Any) -> ServerResult:
    result = ServerResult(label=label, role="primary" if ordinal == 0 else "replica",
                          address=f"127.0.0.1:{3306 + ordinal}", ordinal=ordinal, expected_server_id=100 + ordinal)
    for name, value in values.items():
        setattr(result, name, value)
    return result


def state(**values: Any) -> ReplicationState:
    base: dict[str, Any] = {"io_running": "Yes", "sql_running": "Yes", "seconds_behind": 0, "source_host": "h",
                            "source_port": 3306, "source_server_id": 100, "last_io_errno": 0, "last_io_error": "",
                            "last_sql_errno": 0, "last_sql_error": ""}
    return ReplicationState(**{**base, **values})


def test_server_ids_must_be_offset_plus_ordinal_and_distinct() -> None:
    results = [server("primary", 0, server_id=100), server("replica-1", 1, server_id=100),
               server("replica-2", 2, server_id=102)]
    judge_server_ids(results)
    assert results[0].problems == ["server_id 100 is also used by replica-1: replication breaks when two servers "
                                   "share an id"]
    assert results[1].problems[0].startswith("server_id is 100, expected 101")
    assert results[2].problems == []


def test_stopped_threads_report_the_last_error() -> None:
    replica = server("replica-1", 1, replication=normalize_status(MYSQL_84_STATUS))
    judge_replication(replica, primary_server_id=100)
    assert replica.problems == [
        "replication SQL thread is No: last error 1062: Could not execute Write_rows event on table "
        "test.messages; Duplicate entry '1' for key 'messages.PRIMARY'"
    ]


def test_io_thread_connecting_and_a_foreign_source_are_problems() -> None:
    replica = server("replica-2", 2, replication=normalize_status({**MARIADB_1011_STATUS, "Master_Server_Id": 101}))
    judge_replication(replica, primary_server_id=100)
    assert replica.problems[0].startswith("replication IO thread is Connecting: last error 2003: error connecting")
    assert replica.problems[1].startswith("replicates from server_id 101")


def test_a_replica_without_replication_status_is_degraded() -> None:
    replica = server("replica-1", 1, replication=None)
    judge_replication(replica, primary_server_id=100)
    assert replica.problems[0].startswith("not replicating")


def test_stopped_by_hand_without_error_says_so() -> None:
    replica = server("replica-1", 1, replication=state(sql_running="No"))
    judge_replication(replica, primary_server_id=100)
    assert replica.problems == ["replication SQL thread is No: no error recorded (stopped by hand, or restarted with "
                                "skip_replica_start/skip_slave_start and nothing ran START REPLICA)"]


def test_mysql_replica_needs_super_read_only() -> None:
    replica = server("replica-1", 1, read_only=True, super_read_only=False, write_probe="accepted")
    judge_read_only(replica, parse_version("8.4.6"), "root")
    assert replica.problems == ["super_read_only=OFF: accounts with SUPER/CONNECTION_ADMIN can still write here"]


def test_mariadb_read_only_with_admin_account_is_a_warning_not_a_problem() -> None:
    replica = server("replica-1", 1, read_only=True, write_probe="accepted")
    judge_read_only(replica, parse_version("10.11.19-MariaDB"), "root")
    assert replica.problems == []
    assert "READ_ONLY ADMIN" in replica.warnings[0]


def test_writable_replica_is_degraded() -> None:
    replica = server("replica-1", 1, read_only=False, write_probe="accepted")
    judge_read_only(replica, parse_version("10.11.19-MariaDB"), "app")
    assert replica.problems == ["replica accepts writes (read_only=OFF): clients writing here would diverge it"]


def test_primary_must_be_writable_with_a_binlog() -> None:
    primary = server("primary", 0, read_only=True, log_bin=False)
    judge_primary(primary)
    assert len(primary.problems) == 2


def test_read_spread_verdicts() -> None:
    read = ReadResult("127.0.0.1:3310", samples=10, succeeded=8, server_ids={101: 5, 999: 3}, row_visible=7,
                      errors={"connection refused": 2})
    judge_reads(read, known_ids={100, 101, 102}, min_servers=3)
    assert read.problems == ["reads reached 2 distinct server(s), expected at least 3 (a port-forward to a Service "
                             "always reaches one pod: sample from inside the cluster)"]
    assert len(read.warnings) == 3  # failed samples, unknown server id, row not visible everywhere


def test_no_successful_read_is_a_problem_with_the_reason() -> None:
    read = ReadResult("127.0.0.1:3310", samples=3, errors={"connection refused": 3})
    judge_reads(read, known_ids={100}, min_servers=1)
    assert read.problems == ["no read succeeded in 3 samples: connection refused"]


# ---------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:13306", ("127.0.0.1", 13306)), ("mysql-0.mysql", ("mysql-0.mysql", 3306)),
     ("[::1]:3307", ("::1", 3307)), ("::1", ("::1", 3306))],
)
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["", "host:99999", "ho st:1", "a:b:c:", "host:abc", "host:"])
def test_bad_host_port(text: str) -> None:
    with pytest.raises(UsageError):
        parse_host_port(text)


def test_replica_ordinals_from_prefix_host_name_or_position() -> None:
    replicas = parse_replicas(["127.0.0.1:13307", "mysql-2.mysql.ns.svc:3306", "5=127.0.0.1:13309"])
    assert [(r.host, r.port, r.ordinal) for r in replicas] == [
        ("127.0.0.1", 13307, 1), ("mysql-2.mysql.ns.svc", 3306, 2), ("127.0.0.1", 13309, 5)]
    assert ordinal_from_host("127.0.0.1") is None
    with pytest.raises(UsageError, match="given twice"):
        parse_replicas(["mysql-2.mysql:3306", "127.0.0.1:1"])  # position 2 clashes with the name


def test_replica_hosts_from_stack_outputs() -> None:
    outputs = {"mysqlPrimaryHost": "mysql-0.mysql.atomic-mysql.svc.cluster.local", "mysqlPort": 3306}
    assert replica_hosts_from_stack({**outputs, "mysqlReplicas": 3}, None) == [
        "mysql-1.mysql.atomic-mysql.svc.cluster.local", "mysql-2.mysql.atomic-mysql.svc.cluster.local"]
    assert replica_hosts_from_stack({**outputs, "mysqlReplicaHosts": ["a", "b"]}, None) == ["a", "b"]
    assert replica_hosts_from_stack(outputs, 2) == ["mysql-1.mysql.atomic-mysql.svc.cluster.local"]
    with pytest.raises(UsageError, match="--members"):
        replica_hosts_from_stack(outputs, None)
    service = {"mysqlPrimaryHost": "mysql-primary.atomic-mysql.svc", "mysqlPort": "3306", "mysqlReplicas": 3}
    assert replica_hosts_from_stack(service, None) == [
        "mysql-1.mysql.atomic-mysql.svc", "mysql-2.mysql.atomic-mysql.svc"]
    with pytest.raises(UsageError, match="cannot derive"):
        replica_hosts_from_stack({"mysqlPrimaryHost": "db.example.com", "mysqlPort": 3306}, 3)


def run_main(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, environ=environ or {}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no primary endpoint: pass --primary HOST:PORT, --stack NAME or --from-stack-json FILE"),
        (["--primary", "h:1", "--password", "x"], "--password is not accepted (argv is visible in ps)"),
        (["--primary", "h:1", "--samples", "0"], "argument --samples: '0' must be greater than 0"),
        (["--primary", "h:1", "--bogus"], "unrecognized arguments: --bogus"),
        (["--from-stack-json", "/nonexistent/out.json"], "--from-stack-json /nonexistent/out.json: No such file"),
        (["--primary", "h:1", "--no-tls", "--password-file", "/nonexistent/pw"],
         "--password-file /nonexistent/pw: No such file"),
        (["--primary", "h:1", "--no-tls", "--database", "bad-name"], "database name 'bad-name'"),
        (["--primary", "h:1"], "no CA to verify the servers' TLS certificates against: pass --ssl-ca FILE (the stack "
                               "output mysqlCaCert), or --stack NAME / --from-stack-json FILE; --no-tls only for "
                               "servers that serve no TLS"),
        (["--primary", "h:1", "--ssl-ca", "/nonexistent/ca.crt"], "--ssl-ca /nonexistent/ca.crt: No such file"),
        (["--primary", "h:1", "--ssl-ca", "ca.crt", "--no-tls"], "--ssl-ca and --no-tls contradict each other"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv: list[str], message: str) -> None:
    code, out, err = run_main(argv)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.fixture()
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_text(SET_CA_PEM)
    return path


@pytest.mark.parametrize(("content", "message"), [
    ("not a certificate\n", "not a PEM CA certificate (no start line"),
    ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a PEM CA certificate"),
    # The server's own certificate instead of the CA that signed it.
    (issue_named(SET_CA, "mysql.test.svc", ["*.mysql.test"], [], ["server_auth"]).cert_pem,
     "holds no CA certificate (a server certificate? pass the set's CA, the stack output mysqlCaCert)"),
])
def test_a_ca_file_without_a_ca_is_refused_in_one_line(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.crt"
    bad.write_text(content)
    code, out, err = run_main(["--primary", "h:1", "--ssl-ca", str(bad)])
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith(f"mysql-verify: error: --ssl-ca {bad}: {message}"), err


def stack_json(tmp_path: Path, **outputs: Any) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"mysqlPrimaryHost": "mysql-primary.atomic-mysql.svc", "mysqlPort": 3306,
                                "mysqlReplicas": 3, **outputs}))
    return path


def options_for(argv: list[str]) -> Options:
    return build_options(build_parser().parse_args(argv), {})


def test_the_ca_from_ssl_ca_is_verified_with_host_names(ca_file: Path) -> None:
    tls = options_for(["--primary", "h:1", "--ssl-ca", str(ca_file)]).tls
    assert tls is not None
    assert (tls.source, tls.ca_subjects) == (f"--ssl-ca {ca_file}", ("test MySQL set CA",))
    assert (tls.context.verify_mode, tls.context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    # Only the set's CA is trusted: no system CA was loaded next to it.
    assert [cert["subject"] for cert in tls.context.get_ca_certs()] == [((("commonName", "test MySQL set CA"),),)]


def test_the_ca_comes_from_the_stack_output_and_the_flag_wins(tmp_path: Path) -> None:
    outputs = stack_json(tmp_path, mysqlCaCert=SET_CA_PEM)
    tls = options_for(["--from-stack-json", str(outputs)]).tls
    assert tls is not None
    assert (tls.source, tls.ca_subjects) == (f"stack output mysqlCaCert (--from-stack-json {outputs})",
                                             ("test MySQL set CA",))
    other = tmp_path / "other.crt"
    other.write_text(ca_pem(OTHER_CA))
    tls = options_for(["--from-stack-json", str(outputs), "--ssl-ca", str(other)]).tls
    assert tls is not None and (tls.source, tls.ca_subjects) == (f"--ssl-ca {other}", ("another stack's MySQL CA",))
    assert options_for(["--from-stack-json", str(outputs), "--no-tls"]).tls is None


@pytest.mark.parametrize(("outputs", "message"), [
    ({}, "no output mysqlCaCert (the set's CA; a stack from before its servers served TLS?): pass --ssl-ca FILE, "
         "or --no-tls for servers that serve no TLS"),
    ({"mysqlCaCert": ["x"]}, "output mysqlCaCert is a list, expected the CA's PEM text"),
    ({"mysqlCaCert": "[secret]"}, "stack output mysqlCaCert (--from-stack-json {path}): not a PEM CA certificate"),
])
def test_a_stack_without_a_usable_ca_output_is_refused(tmp_path: Path, outputs: dict[str, Any], message: str) -> None:
    path = stack_json(tmp_path, **outputs)
    code, _, err = run_main(["--from-stack-json", str(path)])
    assert code == 2 and len(err.splitlines()) == 1
    assert message.format(path=path) in err, err


def test_stack_json_with_missing_keys_is_a_usage_error(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"mysqlReadHost": "mysql-read"}))
    code, _, err = run_main(["--from-stack-json", str(outputs)])
    assert code == 2
    assert err == ("mysql-verify: error: --from-stack-json " + str(outputs) + ": missing output(s) mysqlPrimaryHost, "
                   "mysqlPort (have: mysqlReadHost)\n")


def test_help_exits_0() -> None:
    code, out, _ = run_main(["--help"])
    assert code == 0 and "MYSQL_PWD" in out


def test_closed_primary_port_exits_2_with_one_line_and_json(closed_port: int, ca_file: Path) -> None:
    code, out, err = run_main(["--primary", f"127.0.0.1:{closed_port}", "--ssl-ca", str(ca_file), "--json"])
    assert code == 2
    assert err.splitlines() == [f"mysql-verify: error: primary 127.0.0.1:{closed_port}: connection refused "
                                "(nothing listens there: server down or port-forward not running?)"]
    assert json.loads(out) == {"status": "error", "exit_code": 2, "error": err.split("error: ", 1)[1].strip()}


def test_silent_primary_times_out_with_one_line(silent_port: int, ca_file: Path) -> None:
    code, _, err = run_main(["--primary", f"127.0.0.1:{silent_port}", "--connect-timeout", "1",
                             "--query-timeout", "1", "--ssl-ca", str(ca_file)])
    assert code == 2
    assert err.splitlines() == [f"mysql-verify: error: primary 127.0.0.1:{silent_port}: timed out after 1s waiting "
                                "for the server (is this a MySQL port?)"]


def test_unknown_primary_host_exits_2(ca_file: Path) -> None:
    code, _, err = run_main(["--primary", "no-such-host.invalid:3306", "--ssl-ca", str(ca_file)])
    assert code == 2
    assert err.strip().endswith("no-such-host.invalid:3306: unknown host (DNS name does not resolve)")


# ---------------------------------------------------------------------------- report


def test_table_and_json_for_a_degraded_run() -> None:
    tls = {"tls_version": SESSION_TLS[0], "tls_cipher": SESSION_TLS[1]}
    report = Report(token="t0k3n", user="root", servers=[
        server("primary", 0, reachable=True, engine="MySQL 8.4.6", server_id=100, read_only=False, check_row="written",
               **tls),
        server("replica-1", 1, reachable=True, engine="MySQL 8.4.6", server_id=101, read_only=True,
               super_read_only=True, replication=state(), catch_up_seconds=0.012, check_row="present", **tls),
        server("replica-2", 2, connect_error="connection refused", problems=["unreachable: connection refused"]),
    ], tls=TlsUse(verified=True, ca_source="stack output mysqlCaCert (--stack prod)", ca_subjects=["mysql CA"]))
    text = render_table(report)
    assert text.startswith("mysql-verify: DEGRADED")
    assert text.splitlines()[1] == ("TLS: server certificates and host names verified against CA 'mysql CA' from "
                                    "stack output mysqlCaCert (--stack prod); sessions TLSv1.3 TLS_AES_256_GCM_SHA384")
    assert re.search(r"^replica-1\s+127\.0\.0\.1:3307\s+MySQL 8\.4\.6\s+101\s+101\s+on/super on\s+Yes\s+Yes\s+0s\s+"
                     r"0\.01s\s+TLSv1\.3\s+ok$", text, re.MULTILINE), text
    assert re.search(r"^replica-2 .* DOWN$", text, re.MULTILINE)
    assert "  - replica-2 (127.0.0.1:3308): unreachable: connection refused" in text
    data = json.loads(to_json(report))
    assert (data["status"], data["exit_code"], report.exit_code) == ("degraded", 1, 1)
    assert [s["status"] for s in data["servers"]] == ["ok", "ok", "degraded"]
    assert data["tls"] == {"verified": True, "ca_source": "stack output mysqlCaCert (--stack prod)",
                           "ca_subjects": ["mysql CA"]}
    assert [(s["tls_version"], s["tls_cipher"]) for s in data["servers"]] == [SESSION_TLS, SESSION_TLS, (None, None)]


# ---------------------------------------------------------------------------- MySQL 8.x path, scripted


@dataclass
class FakeServer:
    """Answers the statements verify sends, the way a MySQL 8.x server would."""

    version: str
    server_id: int
    read_only: int = 0
    super_read_only: int = 0
    status: dict[str, Any] | None = None
    rows: set[str] = field(default_factory=set)
    tls: tuple[str, str] = SESSION_TLS  # (Ssl_version, Ssl_cipher) of every session; empty: plaintext
    statements: list[str] = field(default_factory=list)
    connects: list[dict[str, Any]] = field(default_factory=list)  # the pymysql.connect settings of each session
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, statement: str, args: Any) -> list[Any]:
        self.statements.append(statement)
        if statement.startswith("SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')"):
            return [("Ssl_cipher", self.tls[1]), ("Ssl_version", self.tls[0])]
        if statement == "SELECT VERSION()":
            return [(self.version,)]
        if statement.startswith("SELECT @@GLOBAL.server_id"):
            return [(self.server_id, self.read_only, self.super_read_only, 1)]
        if statement in ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS"):
            return [self.status] if self.status else []
        if statement == "SELECT @@server_id":
            return [(self.server_id,)]
        if statement.startswith("SELECT COUNT(*)"):
            return [(int(args[0] in self.rows),)]
        if statement.startswith("INSERT"):
            if self.super_read_only:
                raise pymysql.err.OperationalError(1290, "The MySQL server is running with the --super-read-only "
                                                         "option so it cannot execute this statement")
            self.rows.add(args[0])
        if statement.startswith("DELETE"):
            self.rows.discard(args[0])
        return []


class FakeCursor:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.result: list[Any] = []

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, statement: str, args: Any = None) -> None:
        self.result = self.server.answer(statement, args)

    def fetchone(self) -> Any:
        return self.result[0] if self.result else None

    def fetchall(self) -> list[Any]:
        return list(self.result)


class FakeConnection:
    def __init__(self, server: FakeServer) -> None:
        self.server = server

    def cursor(self, cursorclass: Any = None) -> FakeCursor:
        return FakeCursor(self.server)

    def begin(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


def mysql_set(version: str, replica_super_read_only: int = 1) -> dict[int, FakeServer]:
    status = {k: v for k, v in MYSQL_84_STATUS.items()}
    status.update(Replica_SQL_Running="Yes", Last_SQL_Errno=0, Last_SQL_Error="", Seconds_Behind_Source=0)
    if parse_version(version).version < (8, 0, 22):  # the pre-rename column names
        status = {k.replace("Replica", "Slave").replace("Source", "Master"): v for k, v in status.items()}
    primary = FakeServer(version, 100)
    replicas = [FakeServer(version, 100 + n, 1, replica_super_read_only, status, rows=primary.rows) for n in (1, 2)]
    return {13306: primary, 13307: replicas[0], 13308: replicas[1]}


@pytest.fixture()
def fake_mysql(monkeypatch: pytest.MonkeyPatch) -> dict[int, FakeServer]:
    servers: dict[int, FakeServer] = {}

    def connect(**settings: Any) -> FakeConnection:
        if settings["port"] not in servers:
            raise pymysql.err.OperationalError(1045, "Access denied for user 'root'@'10.0.0.9' (using password: YES)")
        servers[settings["port"]].connects.append(settings)
        return FakeConnection(servers[settings["port"]])

    monkeypatch.setattr(checks.pymysql, "connect", connect)
    return servers


def fake_options(**overrides: Any) -> Options:
    settings: dict[str, Any] = {
        "primary": Endpoint("127.0.0.1", 13306, 0),
        "replicas": (Endpoint("127.0.0.1", 13307, 1), Endpoint("127.0.0.1", 13308, 2)),
        "read": Endpoint("127.0.0.1", 13307, 0), "user": "root", "password": "", "samples": 3,
        "sample_interval": 0.0, "tls": SET_TRUST,
    }
    return Options(**{**settings, **overrides})


SET_TRUST = TlsTrust.from_pem(SET_CA_PEM, "--ssl-ca ca.crt")


@pytest.mark.parametrize(("version", "statement"), [("8.4.6", "SHOW REPLICA STATUS"), ("8.0.43", "SHOW REPLICA STATUS"),
                                                    ("8.0.21", "SHOW SLAVE STATUS")])
def test_healthy_mysql_set(fake_mysql: dict[int, FakeServer], version: str, statement: str) -> None:
    fake_mysql.update(mysql_set(version))
    report = checks.verify(fake_options())

    assert (report.status, report.all_problems(), report.all_warnings()) == ("healthy", [], [])
    assert [s.write_probe for s in report.servers[1:]] == ["refused", "refused"]
    assert statement in fake_mysql[13307].statements
    assert report.read is not None and report.read.server_ids == {101: 3}
    assert fake_mysql[13306].rows == set()  # the check row was deleted again


def test_every_connection_gets_the_cas_context_and_reports_its_tls(fake_mysql: dict[int, FakeServer]) -> None:
    fake_mysql.update(mysql_set("8.4.6"))
    report = checks.verify(fake_options())

    assert report.status == "healthy"
    # PyMySQL's ssl= takes the SSLContext itself (its Connection docstring: "An ssl.SSLContext"), which
    # then requires TLS; no file path reaches it, and TLS is never disabled.
    settings = [connect for server in fake_mysql.values() for connect in server.connects]
    assert len(settings) == 3 + 3  # the three servers, then three read samples (on replica-1)
    assert all(connect["ssl"] is SET_TRUST.context and "ssl_disabled" not in connect and "ssl_ca" not in connect
               for connect in settings)
    data = report.to_dict()
    assert data["tls"] == {"verified": True, "ca_source": "--ssl-ca ca.crt", "ca_subjects": ["test MySQL set CA"]}
    assert {(s["tls_version"], s["tls_cipher"]) for s in data["servers"]} == {SESSION_TLS}
    assert data["read"]["tls"] == {"TLSv1.3 TLS_AES_256_GCM_SHA384": 3}
    assert "TLS: server certificates and host names verified against CA 'test MySQL set CA' from --ssl-ca ca.crt" \
        in render_table(report)


@pytest.mark.parametrize("port", [13306, 13308])
def test_a_session_the_server_sees_as_plaintext_is_an_error(fake_mysql: dict[int, FakeServer], port: int) -> None:
    """TLS asked for, but the server's Ssl_version is empty (a proxy ending TLS in between): exit 2."""
    fake_mysql.update(mysql_set("8.4.6"))
    fake_mysql[port].tls = ("", "")
    label = "primary" if port == 13306 else "replica-2"
    with pytest.raises(checks.VerifyError) as failed:
        checks.verify(fake_options())
    assert str(failed.value) == (f"{label} 127.0.0.1:{port}: the server sees this session as plaintext (Ssl_version "
                                 "is empty) although verify connected with TLS: something between verify and the "
                                 "server ends TLS")


def test_no_tls_disables_tls_and_says_so(fake_mysql: dict[int, FakeServer]) -> None:
    fake_mysql.update(mysql_set("8.4.6"))
    for fake in fake_mysql.values():
        fake.tls = ("", "")
    report = checks.verify(fake_options(tls=None, read=None))

    assert (report.exit_code, report.all_problems()) == (0, [])
    assert report.all_warnings() == ["TLS is off (--no-tls): the password and the data crossed the network in "
                                     "plaintext"]
    assert all(connect["ssl_disabled"] is True and "ssl" not in connect
               for fake in fake_mysql.values() for connect in fake.connects)
    assert report.to_dict()["tls"] == {"verified": False, "ca_source": None, "ca_subjects": []}
    text = render_table(report)
    assert text.splitlines()[1] == "TLS: off (--no-tls)"
    assert re.search(r"^primary .* none\s+ok$", text, re.MULTILINE), text


def test_mysql_replica_without_super_read_only_is_degraded(fake_mysql: dict[int, FakeServer]) -> None:
    fake_mysql.update(mysql_set("8.4.6", replica_super_read_only=0))
    report = checks.verify(fake_options(read=None, keep_rows=True))

    assert report.exit_code == 1
    assert report.all_problems() == [
        "replica-1 (127.0.0.1:13307): super_read_only=OFF: accounts with SUPER/CONNECTION_ADMIN can still write here",
        "replica-2 (127.0.0.1:13308): super_read_only=OFF: accounts with SUPER/CONNECTION_ADMIN can still write here",
    ]
    assert report.rows_kept and report.token in fake_mysql[13306].rows


def test_mysql_multithreaded_applier_error_is_quoted_from_the_workers_table(fake_mysql: dict[int, FakeServer]) -> None:
    fake_mysql.update(mysql_set("8.4.6"))
    replica = fake_mysql[13307]
    assert replica.status is not None
    replica.status = {**replica.status, "Replica_SQL_Running": "No", "Last_SQL_Errno": 1062,
                      "Last_SQL_Error": "Coordinator stopped because there were error(s) in the worker(s). ... See "
                                        "error log and/or performance_schema.replication_applier_status_by_worker"}
    original = replica.answer

    def answer(statement: str, args: Any) -> list[Any]:
        if "replication_applier_status_by_worker" in statement:
            return [(1062, "Worker 1 failed executing transaction: Duplicate entry '7' for key 't.PRIMARY'")]
        return original(statement, args)

    replica.answer = answer  # type: ignore[method-assign]
    report = checks.verify(fake_options(read=None))

    assert report.all_problems() == ["replica-1 (127.0.0.1:13307): replication SQL thread is No: last error 1062: "
                                     "Worker 1 failed executing transaction: Duplicate entry '7' for key 't.PRIMARY'"]


def test_stack_outputs_give_the_endpoints_and_flags_override_them(tmp_path: Path, closed_port: int) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"mysqlPrimaryHost": "mysql-primary.atomic-mysql.svc", "mysqlPort": 3306,
                                   "mysqlReadHost": "mysql-read.atomic-mysql.svc", "mysqlReplicas": 3,
                                   "mysqlRootPassword": "not read", "mysqlCaCert": SET_CA_PEM}))
    args = build_parser().parse_args(["--from-stack-json", str(outputs)])
    options = build_options(args, {"MYSQL_PWD": "pw"})
    assert options.primary == Endpoint("mysql-primary.atomic-mysql.svc", 3306, 0)
    assert options.replicas == (Endpoint("mysql-1.mysql.atomic-mysql.svc", 3306, 1),
                                Endpoint("mysql-2.mysql.atomic-mysql.svc", 3306, 2))
    assert options.read == Endpoint("mysql-read.atomic-mysql.svc", 3306, 0)
    assert options.password == "pw"

    code, _, err = run_main(["--from-stack-json", str(outputs), "--primary", f"127.0.0.1:{closed_port}"])
    assert code == 2 and err.startswith(f"mysql-verify: error: primary 127.0.0.1:{closed_port}: connection refused")


def test_password_file_wins_over_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\nignored second line\n")
    args = build_parser().parse_args(["--primary", "h:1", "--password-file", str(secret), "--no-tls"])
    assert build_options(args, {"MYSQL_PWD": "from-env"}).password == "from-file"


def test_a_run_aborted_after_the_write_still_deletes_the_check_row(fake_mysql: dict[int, FakeServer]) -> None:
    fake_mysql.update(mysql_set("8.4.6"))
    with pytest.raises(checks.VerifyError, match=r"^read endpoint 127.0.0.1:13399: access denied for user 'root'"):
        checks.verify(fake_options(read=Endpoint("127.0.0.1", 13399, 0)), token="abc")
    assert any(statement.startswith("DELETE") for statement in fake_mysql[13306].statements)
    assert fake_mysql[13306].rows == set()


def test_missing_mariadb_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The drills' harness raises (the fixture turns it into pytest.fail): it never skips."""
    from tools.testing import mariadb

    monkeypatch.setattr(mariadb, "MARIADBD", tmp_path / "mariadbd")
    server = mariadb.MariaDBServer(tmp_path / "db", mariadb.free_port(), 100)
    with pytest.raises(mariadb.MariaDBNotInstalledError, match=r"mariadbd not found: install the Debian packages"):
        server.initialize()
    with pytest.raises(mariadb.MariaDBNotInstalledError):
        server.start()
