"""The tutorial's client-traffic checks, against live servers, with bounded waits.

Order of a run (each step fills the Report; nothing here prints):
 1. connect to the primary (any failure is fatal: VerifyError, exit 2) and to each replica
    (unreachable means degraded; "access denied" and every TLS failure anywhere are fatal: the
    caller's mistake, or a server verify must not trust); every connection is TLS verified against
    the CA in Options.tls (host name included) unless that is None (--no-tls), and the server's
    own view of the session (Ssl_version, Ssl_cipher) is read and reported;
 2. read VERSION(), @@server_id, read-only flags, log_bin and the replication status;
 3. write one row with a unique token through the primary;
 4. poll every running replica until it has the row (deadline --wait-timeout), then re-read
    the replication status so the verdict reflects the state after the wait;
 5. probe that replicas refuse writes: INSERT inside a transaction that is always rolled back;
 6. sample the read endpoint with a new connection per sample and count @@server_id;
 7. delete the check row through the primary (unless keep_rows).

Only stdlib and PyMySQL are imported, so the package can be copied into any pod with Python.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pymysql.cursors

from tools.mysql_verify.report import ReadResult, ReplicationState, Report, ServerResult, TlsUse

# Client-side error codes (CR_*) and server codes the checks react to.
ER_ACCESS_DENIED = 1045
ER_HOST_NOT_PRIVILEGED = 1130
ER_DBACCESS_DENIED = 1044
ER_SPECIFIC_ACCESS_DENIED = 1227
ER_TABLEACCESS_DENIED = 1142
ER_BAD_DB = 1049
ER_NO_SUCH_TABLE = 1146
ER_OPTION_PREVENTS_STATEMENT = 1290
ER_READ_ONLY_MODE = 1836
CR_CONNECTION_ERROR = 2002
CR_CONN_HOST_ERROR = 2003
CR_SERVER_GONE = 2006
CR_SERVER_LOST = 2013
CR_SSL_CONNECTION_ERROR = 2026
# Plaintext under require_secure_transport: MySQL and MariaDB with MDEV-30178 answer 3159 (MariaDB 10.11: 1045).
ER_SECURE_TRANSPORT_REQUIRED = 3159
CONNECTION_LOST = {CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_SERVER_GONE, CR_SERVER_LOST}
PRIVILEGE_ERRORS = {ER_DBACCESS_DENIED, ER_SPECIFIC_ACCESS_DENIED, ER_TABLEACCESS_DENIED}

# Catch-up is measured by polling: fine-grained at first (healthy replicas take milliseconds),
# coarser later so a slow replica is not hammered.
FAST_POLL_INTERVAL = 0.01
POLL_INTERVAL = 0.05
FAST_POLL_PERIOD = 1.0
STATUS_RECHECK_INTERVAL = 1.0
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_]{1,64}$")


class VerifyError(Exception):
    """Fatal for the whole run (exit 2); str() is the one line shown to the user."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    ordinal: int

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# OpenSSL verify codes (X509_V_ERR_*) meaning "no chain to the trusted CA".
_NOT_SIGNED_BY_CA = {2, 18, 19, 20, 21}
# ... and meaning "the certificate does not name the host dialled" (62 host name, 64 IP address).
_NAME_MISMATCH = {62, 64}


@dataclass(frozen=True)
class TlsTrust:
    """The CA verify trusts, held in memory only, and where it came from (the report and errors name it).

    One SSLContext for the whole run: the CA is its only trust anchor (cadata= loads no system CAs),
    the certificate must chain to it and name the host dialled (check_hostname), TLS 1.2 or later
    (the set's tls_version). VERIFY_X509_STRICT is cleared, as PyMySQL does for its own contexts,
    because Python 3.13 turned it on: it checks RFC 5280 profile details, not trust, and keeping it
    off makes every Python verify runs on behave like the 3.11 the tests run."""

    source: str  # e.g. "--ssl-ca ca.pem" or "stack output mysqlCaCert (--stack prod)"
    ca_subjects: tuple[str, ...]
    context: ssl.SSLContext = field(repr=False, compare=False)

    @classmethod
    def from_pem(cls, pem: str, source: str) -> TlsTrust:
        """Raises ValueError naming `source` when the text holds no CA certificate."""
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=pem)
        except ssl.SSLError as error:
            raise ValueError(f"{source}: not a PEM CA certificate ({_ssl_text(error)})") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
        subjects = tuple(_common_name(cert) for cert in context.get_ca_certs())
        if not subjects:
            raise ValueError(f"{source}: holds no CA certificate (a server certificate? pass the set's CA, the "
                             "stack output mysqlCaCert)")
        return cls(source, subjects, context)


def _ssl_text(error: ssl.SSLError) -> str:
    """An ssl error's message without OpenSSL's source location ("(_ssl.c:4020)")."""
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(error.args[1] if len(error.args) > 1 else error))


def _common_name(cert: Mapping[str, Any]) -> str:
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "(no common name)"


@dataclass(frozen=True)
class SessionTls:
    """The server's own view of one session (SHOW SESSION STATUS): empty means plaintext."""

    version: str
    cipher: str

    @property
    def label(self) -> str:
        return f"{self.version} {self.cipher}" if self.version else "none"


@dataclass(frozen=True)
class Options:
    primary: Endpoint
    replicas: tuple[Endpoint, ...]
    read: Endpoint | None
    user: str
    password: str
    tls: TlsTrust | None  # None: plaintext, only with an explicit --no-tls
    database: str = "atomic_verify"
    samples: int = 20
    sample_interval: float = 0.05
    min_read_servers: int = 1
    wait_timeout: float = 30.0
    connect_timeout: float = 5.0
    query_timeout: float = 10.0
    server_id_offset: int = 100
    keep_rows: bool = False
    write_probe: bool = True

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.database):
            raise ValueError(f"database name {self.database!r}: use 1-64 letters, digits or _")

    @property
    def table(self) -> str:
        return f"`{self.database}`.`checks`"


# ---------------------------------------------------------------------------- engines


@dataclass(frozen=True)
class Engine:
    flavor: str  # "mysql" or "mariadb"
    version: tuple[int, int, int]
    text: str

    @property
    def label(self) -> str:
        name = "MariaDB" if self.flavor == "mariadb" else "MySQL"
        return f"{name} {'.'.join(str(part) for part in self.version)}"

    @property
    def has_super_read_only(self) -> bool:
        return self.flavor == "mysql"

    @property
    def status_statement(self) -> str:
        # MySQL 8.0.22 renamed the statement and its columns (Replica_*, Source_*) and 8.4 removed
        # the old name; MariaDB keeps SHOW SLAVE STATUS everywhere (11.x also accepts the new one).
        if self.flavor == "mysql" and self.version >= (8, 0, 22):
            return "SHOW REPLICA STATUS"
        return "SHOW SLAVE STATUS"

    @property
    def replication_privilege(self) -> str:
        return "SLAVE MONITOR (or REPLICATION CLIENT before 10.5)" if self.flavor == "mariadb" else "REPLICATION CLIENT"


def parse_version(text: str) -> Engine:
    """`SELECT VERSION()` to an Engine: '10.11.19-MariaDB-0+deb12u1' is MariaDB, '8.4.6' is MySQL."""
    match = re.match(r"^(\d+)\.(\d+)\.(\d+)", text.strip())
    if not match:
        raise ValueError(f"unrecognised server version {text!r}")
    version = (int(match.group(1)), int(match.group(2)), int(match.group(3)))
    flavor = "mariadb" if "mariadb" in text.lower() else "mysql"
    return Engine(flavor, version, text)


def _pick(row: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in row:
            return row[name]
    return None


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def normalize_status(row: Mapping[str, Any]) -> ReplicationState:
    """One row of SHOW REPLICA STATUS (MySQL >= 8.0.22) or SHOW SLAVE STATUS (MariaDB, older MySQL)."""
    return ReplicationState(
        io_running=str(_pick(row, "Replica_IO_Running", "Slave_IO_Running") or "No"),
        sql_running=str(_pick(row, "Replica_SQL_Running", "Slave_SQL_Running") or "No"),
        seconds_behind=_int_or_none(_pick(row, "Seconds_Behind_Source", "Seconds_Behind_Master")),
        source_host=_pick(row, "Source_Host", "Master_Host") or None,
        source_port=_int_or_none(_pick(row, "Source_Port", "Master_Port")),
        source_server_id=_int_or_none(_pick(row, "Source_Server_Id", "Master_Server_Id")),
        last_io_errno=_int_or_none(row.get("Last_IO_Errno")) or 0,
        last_io_error=str(row.get("Last_IO_Error") or ""),
        last_sql_errno=_int_or_none(row.get("Last_SQL_Errno")) or 0,
        last_sql_error=str(row.get("Last_SQL_Error") or ""),
    )


def flag(value: Any) -> bool | None:
    """A server boolean (1/0, 'ON'/'OFF', and MariaDB 11.8+'s read_only modes) as a bool."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    return str(value).strip().upper() not in ("0", "OFF", "FALSE", "")


# ---------------------------------------------------------------------------- connections


class ConnectError(Exception):
    """Could not connect (or lost the connection); `reason` is a phrase without the address."""

    def __init__(self, reason: str, *, fatal: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


def _error_code(error: BaseException) -> int | None:
    args = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _error_text(error: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(error, "args", ()))
    if len(args) > 1:
        return str(args[1])
    return str(error) or type(error).__name__


def describe_connect_error(
    error: BaseException,
    user: str,
    connect_timeout: float,
    query_timeout: float,
    *,
    host: str = "",
    tls: TlsTrust | None = None,
    plaintext: bool = False,
) -> ConnectError:
    """Map a PyMySQL/OS error to one clear phrase; access problems and TLS failures are fatal.

    `tls` is the CA the connection was verified against (named in certificate errors), `plaintext`
    says the connection was made without TLS (--no-tls), `host` is the name dialled."""
    code, text = _error_code(error), _error_text(error)
    lower = text.lower()
    tls_failure = _describe_tls_error(error, host, tls)
    if tls_failure is not None:
        return tls_failure
    if code == ER_ACCESS_DENIED:
        reason = f"access denied for user {user!r}: wrong user or password (set MYSQL_PWD or --password-file)"
        if plaintext:
            reason += ("; or the transport: with --no-tls the login went in plaintext, which a server with "
                       "require_secure_transport (this program's sets) or an account that REQUIREs SSL refuses "
                       "this way: drop --no-tls")
        return ConnectError(reason, fatal=True)
    if code == ER_SECURE_TRANSPORT_REQUIRED:
        return ConnectError("the server refuses connections without TLS (require_secure_transport): drop --no-tls",
                            fatal=True)
    if code == CR_SSL_CONNECTION_ERROR:
        return ConnectError(f"the server offers no TLS ({text}): this program's sets always serve TLS, so this is "
                            "not one of them, or its TLS is not configured; --no-tls only for servers that serve "
                            "none", fatal=True)
    if code == ER_HOST_NOT_PRIVILEGED:
        return ConnectError(f"the server does not allow user {user!r} to connect from this host ({text})", fatal=True)
    if code in (CR_CONN_HOST_ERROR, CR_CONNECTION_ERROR):
        if "timed out" in lower:
            return ConnectError(f"connection timed out after {connect_timeout:g}s (host down or filtered?)",
                                fatal=False)
        if "refused" in lower:
            return ConnectError("connection refused (nothing listens there: server down or port-forward not running?)",
                                fatal=False)
        if any(hint in lower for hint in ("name or service not known", "errno -2", "errno -3", "errno -5",
                                          "nodename nor servname", "name resolution", "no address associated")):
            return ConnectError("unknown host (DNS name does not resolve)", fatal=False)
        return ConnectError(f"cannot connect: {text}", fatal=False)
    if code in (CR_SERVER_LOST, CR_SERVER_GONE):
        if "timed out" in lower:
            return ConnectError(f"timed out after {query_timeout:g}s waiting for the server (is this a MySQL port?)",
                                  fatal=False)
        return ConnectError("connection closed by the other end (server shutting down, or a port-forward "
                              "with no pod behind it?)", fatal=False)
    if isinstance(error, RuntimeError) and "cryptography" in lower:
        return ConnectError("the account uses caching_sha2_password, which PyMySQL sends over plaintext only with "
                              "the cryptography package: drop --no-tls (the server must serve TLS), or install "
                              "PyMySQL[rsa]", fatal=True)
    if code is not None:
        return ConnectError(f"MySQL error {code}: {text}", fatal=code in PRIVILEGE_ERRORS)
    return ConnectError(f"cannot connect: {text}", fatal=False)


def _describe_tls_error(error: BaseException, host: str, tls: TlsTrust | None) -> ConnectError | None:
    """The TLS handshake's failure, from the ssl exception PyMySQL wraps (OperationalError 2003 with
    `original_exception`), or None when the error is not one."""
    original = getattr(error, "original_exception", None)
    cause = original if isinstance(original, ssl.SSLError) else error if isinstance(error, ssl.SSLError) else None
    if cause is None:
        return None
    source = f"the CA from {tls.source}" if tls is not None else "the CA"
    if isinstance(cause, ssl.SSLCertVerificationError):
        code, message = cause.verify_code, str(cause.verify_message).rstrip(".")
        if code in _NAME_MISMATCH:
            return ConnectError(
                f"the server's certificate does not name the host dialled ({host!r}: {message}): dial a name it "
                "carries, <set>-N.<set>.<namespace>[.svc[.<domain>]], <set>-primary[...] or <set>-read[...], "
                "or 127.0.0.1/localhost through kubectl port-forward (never <set>-N.<set> alone: OpenSSL matches "
                "no wildcard over a two-label name)", fatal=True)
        if code in _NOT_SIGNED_BY_CA:
            return ConnectError(
                f"the server's certificate is not signed by {source} ({message}): another stack's or set's CA, "
                "or a server that is not this set's", fatal=True)
        return ConnectError(f"the server's certificate fails verification against {source} ({message})", fatal=True)
    return ConnectError(f"TLS handshake failed: {_ssl_text(cause)}", fatal=True)


def session_tls(conn: Any) -> SessionTls:
    """The TLS of this session as the server sees it (MySQL and MariaDB alike; no privilege needed)."""
    with conn.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')")
        values = {str(name): str(value or "") for name, value in cursor.fetchall()}
    return SessionTls(values.get("Ssl_version", ""), values.get("Ssl_cipher", ""))


def connect(endpoint: Endpoint, options: Options) -> tuple[Any, SessionTls]:
    """A pymysql connection with bounded connect/read/write timeouts, autocommit on, and its TLS.

    With options.tls, PyMySQL gets the SSLContext itself (its `ssl=` parameter takes one and then
    requires TLS: a server without TLS is error 2026); without, TLS is disabled outright."""
    settings: dict[str, Any] = {
        "host": endpoint.host,
        "port": endpoint.port,
        "user": options.user,
        "password": options.password,
        "connect_timeout": options.connect_timeout,
        "read_timeout": options.query_timeout,
        "write_timeout": options.query_timeout,
        "autocommit": True,
        "charset": "utf8mb4",
        "program_name": "mysql-verify",
    }
    if options.tls is not None:
        settings["ssl"] = options.tls.context
    else:
        settings["ssl_disabled"] = True
    conn = None
    try:
        conn = pymysql.connect(**settings)
        tls = session_tls(conn)
    except (pymysql.err.MySQLError, OSError, RuntimeError) as error:
        _close(conn)
        raise describe_connect_error(error, options.user, options.connect_timeout, options.query_timeout,
                                     host=endpoint.host, tls=options.tls, plaintext=options.tls is None) from error
    if options.tls is not None and not tls.version:
        _close(conn)
        raise ConnectError("the server sees this session as plaintext (Ssl_version is empty) although verify "
                           "connected with TLS: something between verify and the server ends TLS", fatal=True)
    return conn, tls


def _close(conn: Any) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


def _is_connection_lost(error: BaseException) -> bool:
    return isinstance(error, pymysql.err.OperationalError) and _error_code(error) in CONNECTION_LOST


def _query_error(error: BaseException) -> str:
    code = _error_code(error)
    return f"error {code}: {_error_text(error)}" if code is not None else _error_text(error)


def fetch_one(conn: Any, statement: str, args: tuple[Any, ...] | None = None) -> tuple[Any, ...] | None:
    with conn.cursor() as cursor:
        cursor.execute(statement, args)
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


# ---------------------------------------------------------------------------- inspection


@dataclass
class Member:
    """A server result with its live connection and engine, for the duration of one run."""

    result: ServerResult
    endpoint: Endpoint
    conn: Any = None
    engine: Engine | None = None
    broken: bool = False


def inspect(member: Member) -> None:
    """Fill engine, server id, read-only flags, log_bin and replication state of a connected server."""
    conn, result = member.conn, member.result
    row = fetch_one(conn, "SELECT VERSION()")
    version = str(row[0]) if row else ""
    engine = member.engine = parse_version(version)
    result.engine, result.version = engine.label, version
    # MariaDB has no super_read_only.
    super_read_only = "@@GLOBAL.super_read_only" if engine.has_super_read_only else "NULL"
    flags = fetch_one(conn, f"SELECT @@GLOBAL.server_id, @@GLOBAL.read_only, {super_read_only}, @@GLOBAL.log_bin")
    assert flags is not None  # a SELECT of variables always returns one row
    result.server_id = int(flags[0])
    result.read_only, result.super_read_only, result.log_bin = flag(flags[1]), flag(flags[2]), flag(flags[3])
    refresh_replication(member)


def refresh_replication(member: Member) -> None:
    """Re-read the replication status; a missing privilege is a problem, not a crash."""
    assert member.engine is not None
    try:
        with member.conn.cursor(pymysql.cursors.DictCursor) as cursor:
            cursor.execute(member.engine.status_statement)
            row = cursor.fetchone()
    except pymysql.err.MySQLError as error:
        if _is_connection_lost(error):
            raise
        member.result.problems.append(
            f"cannot read replication status ({_query_error(error)}); grant {member.engine.replication_privilege}"
        )
        member.result.replication = None
        return
    member.result.replication = normalize_status(row) if row else None
    if row and member.engine.flavor == "mysql":
        _add_worker_error(member)


def _add_worker_error(member: Member) -> None:
    """With a multi-threaded applier MySQL's Last_SQL_Error only points at the workers' table: quote it."""
    state = member.result.replication
    if state is None or "replication_applier_status_by_worker" not in state.last_sql_error:
        return
    with contextlib.suppress(pymysql.err.MySQLError):
        row = fetch_one(
            member.conn,
            "SELECT LAST_ERROR_NUMBER, LAST_ERROR_MESSAGE FROM performance_schema.replication_applier_status_by_worker "
            "WHERE LAST_ERROR_NUMBER <> 0 ORDER BY LAST_ERROR_TIMESTAMP DESC LIMIT 1",
        )
        if row:
            state.last_sql_errno, state.last_sql_error = int(row[0]), str(row[1])


# ---------------------------------------------------------------------------- verdicts (pure)


def judge_server_ids(results: list[ServerResult]) -> None:
    """Every reachable server has 100 + ordinal (the init script's rule) and no two share an id."""
    seen: dict[int, list[str]] = {}
    for result in results:
        if result.server_id is None:
            continue
        seen.setdefault(result.server_id, []).append(result.label)
        if result.server_id != result.expected_server_id:
            result.problems.append(
                f"server_id is {result.server_id}, expected {result.expected_server_id} (offset + ordinal "
                f"{result.ordinal}): wrong pod behind this endpoint, or its server-id config was not generated"
            )
    for server_id, labels in seen.items():
        if len(labels) > 1:
            for result in results:
                if result.label in labels:
                    others = ", ".join(label for label in labels if label != result.label)
                    result.problems.append(f"server_id {server_id} is also used by {others}: replication breaks "
                                           "when two servers share an id")


def judge_primary(result: ServerResult) -> None:
    if result.read_only:
        result.problems.append("primary is read-only (read_only=ON): clients cannot write")
    if result.log_bin is False:
        result.problems.append("binary log is off (log_bin=OFF): replicas have nothing to replicate")
    state = result.replication
    if state is not None and (state.io_running != "No" or state.sql_running != "No"):
        result.warnings.append(
            f"primary is itself replicating from {state.source_host}:{state.source_port} (IO={state.io_running}, "
            f"SQL={state.sql_running}): writes there may conflict"
        )


def _thread_problem(name: str, running: str, errno: int, error: str) -> str:
    detail = (f"last error {errno}: {error}" if errno or error else
              "no error recorded (stopped by hand, or restarted with skip_replica_start/skip_slave_start "
              "and nothing ran START REPLICA)")
    if name == "IO" and errno == CR_SSL_CONNECTION_ERROR:
        detail += (" (the replica refuses the primary's TLS certificate: not signed by the CA in its "
                   "SOURCE_SSL_CA/MASTER_SSL_CA, or not naming the host it dials)")
    return f"replication {name} thread is {running}: {detail}"


def judge_replication(result: ServerResult, primary_server_id: int | None) -> None:
    state = result.replication
    if state is None:
        result.problems.append("not replicating: replication status is empty (CHANGE REPLICATION SOURCE/MASTER "
                               "never ran, or RESET REPLICA ALL cleared it)")
        return
    if state.io_running != "Yes":
        result.problems.append(_thread_problem("IO", state.io_running, state.last_io_errno, state.last_io_error))
    if state.sql_running != "Yes":
        result.problems.append(_thread_problem("SQL", state.sql_running, state.last_sql_errno, state.last_sql_error))
    if state.source_server_id and primary_server_id is not None and state.source_server_id != primary_server_id:
        result.problems.append(
            f"replicates from server_id {state.source_server_id} ({state.source_host}:{state.source_port}), "
            f"not from the primary (server_id {primary_server_id})"
        )


def judge_read_only(result: ServerResult, engine: Engine, user: str) -> None:
    """The tutorial's slave.cnf sets super-read-only: replicas must refuse every client write."""
    if not result.read_only:
        result.problems.append("replica accepts writes (read_only=OFF): clients writing here would diverge it")
    elif engine.has_super_read_only and not result.super_read_only:
        result.problems.append("super_read_only=OFF: accounts with SUPER/CONNECTION_ADMIN can still write here")
    if result.write_probe == "accepted":
        if engine.flavor == "mariadb" and result.read_only:
            result.warnings.append(
                f"read_only=ON, but {user!r} holds READ_ONLY ADMIN (MariaDB has no super_read_only) and could write "
                "here; applications must use accounts without it"
            )
        elif result.read_only and (result.super_read_only or not engine.has_super_read_only):
            result.problems.append("a test write was accepted despite read-only mode (rolled back)")


def judge_reads(read: ReadResult, known_ids: set[int], min_servers: int, row_expected: bool = True) -> None:
    if read.succeeded == 0:
        most = Counter(read.errors).most_common(1)
        reason = most[0][0] if most else "no samples taken"
        read.problems.append(f"no read succeeded in {read.samples} samples: {reason}")
        return
    failed = sum(read.errors.values())
    if failed:
        common, count = Counter(read.errors).most_common(1)[0]
        read.warnings.append(f"{failed} of {read.samples} samples failed ({common} x{count})")
    if len(read.server_ids) < min_servers:
        read.problems.append(
            f"reads reached {len(read.server_ids)} distinct server(s), expected at least {min_servers} "
            "(a port-forward to a Service always reaches one pod: sample from inside the cluster)"
        )
    unknown = sorted(set(read.server_ids) - known_ids)
    if unknown:
        read.warnings.append(f"reads reached server ids not among the checked endpoints: {unknown}")
    if row_expected and read.row_visible < read.succeeded:
        read.warnings.append(f"the check row was not visible in {read.succeeded - read.row_visible} of "
                             f"{read.succeeded} reads (a lagging server behind the read endpoint)")


# ---------------------------------------------------------------------------- the run


def new_token() -> str:
    return uuid.uuid4().hex


def _row_present(conn: Any, options: Options, token: str) -> bool:
    try:
        row = fetch_one(conn, f"SELECT COUNT(*) FROM {options.table} WHERE token = %s", (token,))
    except pymysql.err.ProgrammingError as error:
        if _error_code(error) in (ER_NO_SUCH_TABLE, ER_BAD_DB):
            return False  # the CREATE TABLE has not replicated yet
        raise
    return bool(row and row[0])


def write_check_row(primary: Member, options: Options, token: str) -> bool:
    statements = [
        (f"CREATE DATABASE IF NOT EXISTS `{options.database}`", None),
        (
            f"CREATE TABLE IF NOT EXISTS {options.table} (token CHAR(32) NOT NULL PRIMARY KEY, "
            "written_at DATETIME(6) NOT NULL, client VARCHAR(255) NOT NULL) ENGINE=InnoDB",
            None,
        ),
        (f"INSERT INTO {options.table} (token, written_at, client) VALUES (%s, NOW(6), %s)",
         (token, f"mysql-verify@{socket.gethostname()}"[:255])),
    ]
    try:
        with primary.conn.cursor() as cursor:
            for statement, args in statements:
                cursor.execute(statement, args)
    except pymysql.err.MySQLError as error:
        if _is_connection_lost(error):
            raise
        hint = ""
        if _error_code(error) in PRIVILEGE_ERRORS:
            hint = " (grant CREATE, INSERT, SELECT, DELETE on the check database)"
        primary.result.problems.append(f"cannot write the check row: {_query_error(error)}{hint}")
        primary.result.check_row = "FAILED"
        return False
    primary.result.check_row = "written"
    return True


def _lost(member: Member, error: BaseException) -> None:
    member.result.problems.append(f"connection lost during the checks: {_query_error(error)}")
    with contextlib.suppress(Exception):
        member.conn.close()
    member.conn = None


def _guarded(member: Member, action: Callable[[Member], Any]) -> Any:
    """action(member); a lost connection or a failed query degrades this member only, and returns None."""
    try:
        return action(member)
    except pymysql.err.MySQLError as error:
        if _is_connection_lost(error):
            _lost(member, error)
        else:
            member.broken = True
            member.result.problems.append(f"query failed: {_query_error(error)}")
        return None


def wait_for_replicas(
    replicas: list[Member],
    options: Options,
    token: str,
    committed_at: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll running replicas for the check row until each has it or the deadline passes."""
    pending: list[Member] = []
    for member in replicas:
        if member.conn is None:
            continue
        state = member.result.replication
        if state is None or not state.running:
            member.result.check_row = "not waited"  # replication is down: judged from its status
        else:
            pending.append(member)
    deadline = committed_at + options.wait_timeout
    next_recheck = clock() + STATUS_RECHECK_INTERVAL
    while pending:
        for member in list(pending):
            if _guarded(member, lambda m: _row_present(m.conn, options, token)):
                member.result.catch_up_seconds = max(0.0, clock() - committed_at)
                member.result.check_row = "present"
            if member.conn is None or member.broken or member.result.check_row == "present":
                pending.remove(member)
        if not pending or clock() >= deadline:
            break
        if clock() >= next_recheck:
            next_recheck = clock() + STATUS_RECHECK_INTERVAL
            for member in list(pending):
                _guarded(member, refresh_replication)
                state = member.result.replication
                if member.conn is None or member.broken or state is None or not state.running:
                    member.result.check_row = "missing"  # the verdict comes from the status (or the lost link)
                    pending.remove(member)
        sleep(FAST_POLL_INTERVAL if clock() - committed_at < FAST_POLL_PERIOD else POLL_INTERVAL)
    for member in pending:
        member.result.check_row = "missing"
        member.result.problems.append(
            f"the check row did not arrive within {options.wait_timeout:g}s although replication runs "
            "(replica far behind, or replicating from another source)"
        )


def probe_write(member: Member, options: Options) -> None:
    """Try an INSERT on the replica inside a transaction that is always rolled back."""
    conn = member.conn
    try:
        conn.begin()
        with conn.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {options.table} (token, written_at, client) VALUES (%s, NOW(6), %s)",
                (new_token(), "mysql-verify write probe"),
            )
        member.result.write_probe = "accepted"
    except pymysql.err.MySQLError as error:
        if _is_connection_lost(error):
            raise
        code = _error_code(error)
        if code in (ER_OPTION_PREVENTS_STATEMENT, ER_READ_ONLY_MODE):
            member.result.write_probe = "refused"
        elif code in (ER_NO_SUCH_TABLE, ER_BAD_DB):
            member.result.write_probe = "not probed (check table missing)"
        else:
            member.result.write_probe = f"probe failed: {_query_error(error)}"
    finally:
        with contextlib.suppress(pymysql.err.MySQLError):
            conn.rollback()


def sample_reads(
    endpoint: Endpoint, options: Options, token: str | None, sleep: Callable[[float], None] = time.sleep
) -> ReadResult:
    """One new connection per sample (a Service balances connections, not queries)."""
    read = ReadResult(address=endpoint.address, samples=options.samples)
    for index in range(options.samples):
        if index:
            sleep(options.sample_interval)
        try:
            conn, tls = connect(endpoint, options)
        except ConnectError as failure:
            if failure.fatal:
                raise VerifyError(f"read endpoint {endpoint.address}: {failure.reason}") from failure
            read.errors[failure.reason] = read.errors.get(failure.reason, 0) + 1
            continue
        read.tls[tls.label] = read.tls.get(tls.label, 0) + 1
        try:
            row = fetch_one(conn, "SELECT @@server_id")
            server_id = int(row[0]) if row else -1
            visible = token is not None and _row_present(conn, options, token)
        except pymysql.err.MySQLError as error:
            reason = _query_error(error)
            read.errors[reason] = read.errors.get(reason, 0) + 1
            continue
        finally:
            with contextlib.suppress(Exception):
                conn.close()
        read.succeeded += 1
        read.server_ids[server_id] = read.server_ids.get(server_id, 0) + 1
        read.row_visible += int(visible)
    return read


def _cleanup(primary: Member, options: Options, token: str, report: Report) -> None:
    try:
        with primary.conn.cursor() as cursor:
            cursor.execute(f"DELETE FROM {options.table} WHERE token = %s", (token,))
    except pymysql.err.MySQLError as error:
        report.warnings.append(f"could not delete the check row {token}: {_query_error(error)}")


@contextlib.contextmanager
def _connections(members: list[Member]) -> Iterator[None]:
    try:
        yield
    finally:
        for member in members:
            if member.conn is not None:
                with contextlib.suppress(Exception):
                    member.conn.close()


def _member(endpoint: Endpoint, role: str, options: Options) -> Member:
    label = "primary" if role == "primary" else f"replica-{endpoint.ordinal}"
    result = ServerResult(
        label=label,
        role=role,
        address=endpoint.address,
        ordinal=endpoint.ordinal,
        expected_server_id=options.server_id_offset + endpoint.ordinal,
    )
    return Member(result, endpoint)


def verify(options: Options, token: str | None = None, clock: Callable[[], float] = time.monotonic) -> Report:
    """Run every check; raise VerifyError for what makes the run meaningless (exit 2)."""
    began = clock()
    token = token or new_token()
    primary = _member(options.primary, "primary", options)
    replicas = [_member(endpoint, "replica", options) for endpoint in options.replicas]
    members = [primary, *replicas]
    report = Report(token=token, user=options.user, servers=[member.result for member in members],
                    tls=_tls_use(options.tls))
    if not replicas:
        report.warnings.append("no replica endpoints given: only the primary was checked")
    if options.tls is None:
        report.warnings.append("TLS is off (--no-tls): the password and the data crossed the network in plaintext")
    with _connections(members):
        _connect_all(primary, replicas, options)
        try:
            _run_checks(primary, replicas, options, token, report)
        except pymysql.err.OperationalError as error:
            if not _is_connection_lost(error):
                raise
            raise VerifyError(f"primary {primary.endpoint.address}: connection lost during the checks "
                              f"({_query_error(error)})") from error
    report.duration_seconds = clock() - began
    return report


def _tls_use(trust: TlsTrust | None) -> TlsUse:
    if trust is None:
        return TlsUse(verified=False)
    return TlsUse(verified=True, ca_source=trust.source, ca_subjects=list(trust.ca_subjects))


def _connect_member(member: Member, options: Options) -> None:
    member.conn, tls = connect(member.endpoint, options)
    member.result.reachable = True
    member.result.tls_version, member.result.tls_cipher = tls.version or None, tls.cipher or None


def _connect_all(primary: Member, replicas: list[Member], options: Options) -> None:
    try:
        _connect_member(primary, options)
    except ConnectError as failure:
        raise VerifyError(f"primary {primary.endpoint.address}: {failure.reason}") from failure
    for member in replicas:
        try:
            _connect_member(member, options)
        except ConnectError as failure:
            if failure.fatal:
                raise VerifyError(f"{member.result.label} {member.endpoint.address}: {failure.reason}") from failure
            member.result.connect_error = failure.reason
            member.result.problems.append(f"unreachable: {failure.reason}")


def _on_replicas(replicas: list[Member], action: Callable[[Member], object]) -> None:
    """Run an action on every connected replica; a lost connection degrades only that replica."""
    for member in replicas:
        if member.conn is not None:
            _guarded(member, action)


def _run_checks(primary: Member, replicas: list[Member], options: Options, token: str, report: Report) -> None:
    inspect(primary)
    _on_replicas(replicas, inspect)
    judge_server_ids(report.servers)
    judge_primary(primary.result)

    written = write_check_row(primary, options, token)
    try:
        _replica_and_read_checks(primary, replicas, options, token if written else None, report)
    finally:
        # Also when a later step aborts the run (exit 2): the primary connection is still up then.
        if written and options.keep_rows:
            report.rows_kept = True
        elif written:
            _cleanup(primary, options, token, report)


def _replica_and_read_checks(
    primary: Member, replicas: list[Member], options: Options, token: str | None, report: Report
) -> None:
    if token is not None:
        wait_for_replicas(replicas, options, token, time.monotonic())
    _on_replicas(replicas, refresh_replication)
    if options.write_probe and token is not None:
        _on_replicas(replicas, lambda member: probe_write(member, options))
    for member in replicas:
        if member.conn is not None and member.engine is not None:
            judge_replication(member.result, primary.result.server_id)
            judge_read_only(member.result, member.engine, options.user)
    if options.read is not None:
        known = {result.server_id for result in report.servers if result.server_id is not None}
        report.read = sample_reads(options.read, options, token)
        judge_reads(report.read, known, options.min_read_servers, row_expected=token is not None)
