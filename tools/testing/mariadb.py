"""Real MariaDB servers on loopback, for tests, drills and rehearsal scripts.

    server = MariaDBServer(tmp_path / "db0", free_port(), server_id=100, cnf=primary_cnf("mariadb", "10.11"))
    server.initialize()                # skip it when the datadir is already filled (see below)
    server.start()
    server.set_root_password("s3cret")
    with server.connect() as conn: ...
    server.stop()

Each server lives in its own `base_dir`: my.cnf, error.log, mariadbd.out, pid file and
(when the path is short enough) the unix socket; the data is in `base_dir/"data"` unless
`datadir=` points elsewhere.

Starting on a datadir someone else filled (a restored mariadb-backup, a copied datadir):
do not call `initialize()`; pass `datadir=` (or fill `base_dir/"data"`) and call `start()`.
The root password is whatever that data says; give it as `root_password=` so `connect()`
and the start-up probe can log in (the probe also accepts "access denied" as "the server
answers", so a wrong or unknown password never makes `start()` hang).

The generated my.cnf is, in this order: small-footprint defaults (the fragment may override
them), the given `cnf` fragment under [mysqld], then the per-process options the harness
must own and that therefore win over the fragment: datadir, port, bind_address=127.0.0.1,
socket, pid_file, log_error, server_id (and user=root when running as root).

Every wait is bounded, every server binds 127.0.0.1 only, and a server whose test process
dies is sent SIGTERM by the kernel (PR_SET_PDEATHSIG), so a crashed pytest leaves no
mariadbd behind. Because that signal follows the *thread* that started the server, start
servers from the thread that will stop them (the main thread, in pytest fixtures).
A missing /usr/sbin/mariadbd raises MariaDBNotInstalledError (a RuntimeError): tests fail, never skip.

Also here: `start_replicated_set()` / `replicated_set()` (a primary and N replicas replicating
with MariaDB GTIDs, e.g. from components/workload/mysql/config.py's fragments) and `ReadServiceProxy`
(a round-robin TCP stand-in for the read Service).
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pymysql.connections

from components.workload.mysql import config as mysql_config
from tools.testing.processes import die_with_parent, free_port

MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = Path("/usr/bin/mariadb-install-db")
DEBIAN_PACKAGES = "mariadb-server mariadb-client mariadb-backup"

# Three or four servers share a 2-core machine with other work: keep each one small.
# These come before the fragment in my.cnf, so a fragment that sizes the server wins.
FOOTPRINT_OPTIONS = (
    "innodb_buffer_pool_size=32M",
    "innodb_log_file_size=16M",
    "performance_schema=OFF",
    "max_connections=64",
    "skip_name_resolve=ON",
)

# Unix socket paths are limited to 108 bytes (sun_path); pytest's tmp_path can be longer.
_MAX_SOCKET_PATH = 100
_ER_ACCESS_DENIED = 1045


class MariaDBNotInstalledError(RuntimeError):
    """The MariaDB server binaries are not installed."""


def require_mariadb() -> None:
    """Raise MariaDBNotInstalledError with the fix when mariadbd or mariadb-install-db is missing."""
    missing = [str(path) for path in (MARIADBD, INSTALL_DB) if not os.access(path, os.X_OK)]
    if missing:
        raise MariaDBNotInstalledError(
            f"{', '.join(missing)} not found: install the Debian packages {DEBIAN_PACKAGES} "
            "(as root: make system-deps); tests that need a real server fail without them"
        )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:])


class MariaDBServer:
    """One mariadbd process on 127.0.0.1:port with its own config, data and logs."""

    def __init__(
        self,
        base_dir: Path,
        port: int,
        server_id: int,
        cnf: str = "",
        *,
        datadir: Path | None = None,
        root_password: str | None = None,
        name: str | None = None,
        environment: Mapping[str, str] | None = None,
        tls_dir: Path | None = None,
    ) -> None:
        self.base_dir = Path(base_dir)
        # ca.crt, tls.crt and tls.key (the set's TLS Secret as mounted): the server serves them and
        # refuses plaintext TCP, and connect() verifies the server against ca.crt. None: no TLS.
        self.tls_dir = Path(tls_dir) if tls_dir is not None else None
        # Extra environment of mariadbd (e.g. a benchmark's LD_PRELOAD); None: the caller's own.
        self.environment = dict(environment) if environment else None
        self.port = port
        self.server_id = server_id
        self.cnf = cnf
        self.datadir = Path(datadir) if datadir is not None else self.base_dir / "data"
        self.root_password = root_password
        self.name = name or f"mariadb-{server_id}"
        self.defaults_file = self.base_dir / "my.cnf"
        self.error_log = self.base_dir / "error.log"
        self.stdout_log = self.base_dir / "mariadbd.out"
        self.pid_file = self.base_dir / "mariadbd.pid"
        self.socket = self._socket_path()
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"MariaDBServer({self.name}, 127.0.0.1:{self.port}, server_id={self.server_id})"

    def _socket_path(self) -> Path:
        preferred = self.base_dir / "mariadbd.sock"
        if len(str(preferred)) <= _MAX_SOCKET_PATH:
            return preferred
        short = Path(tempfile.mkdtemp(prefix="mdbsock-"))
        weakref.finalize(self, shutil.rmtree, short, True)
        return short / "mariadbd.sock"

    # ---------------------------------------------------------------- config

    def render_cnf(self) -> str:
        """The whole my.cnf: footprint defaults, the fragment, then the harness-owned options."""
        owned = [
            f"datadir={self.datadir}",
            f"port={self.port}",
            "bind_address=127.0.0.1",
            f"socket={self.socket}",
            f"pid_file={self.pid_file}",
            f"log_error={self.error_log}",
            f"server_id={self.server_id}",
            # Its own tmpdir: the bootstrap's temporary tables must not meet another server's in /tmp.
            f"tmpdir={self.tmp_dir}",
        ]
        if os.geteuid() == 0:
            owned.append("user=root")
        if self.tls_dir is not None:
            owned += mysql_config.tls_options(str(self.tls_dir))
        return "\n".join(
            [
                "# Written by tools/testing/mariadb.py",
                "[mysqld]",
                *FOOTPRINT_OPTIONS,
                "",
                "# --- fragment under test ---",
                "[mysqld]",
                self.cnf.strip(),
                "",
                "# --- owned by the harness (wins over the fragment) ---",
                "[mysqld]",
                *owned,
                "",
            ]
        )

    @property
    def tmp_dir(self) -> Path:
        return self.base_dir / "tmp"

    def write_cnf(self) -> Path:
        if self.tls_dir is None and re.search(r"^\s*ssl_(cert|key|ca)\s*=", self.cnf, re.M):
            raise ValueError(f"{self.name}: the config fragment serves TLS (ssl_* options); give the server a "
                             "tls_dir (tools/testing/pki.write_tls_dir) whose files replace the pod's paths")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(exist_ok=True)
        self.defaults_file.write_text(self.render_cnf(), encoding="utf-8")
        return self.defaults_file

    # ---------------------------------------------------------------- lifecycle

    def initialize(self, timeout: float = 120) -> None:
        """Create an empty datadir with mariadb-install-db; root has no password until set_root_password()."""
        require_mariadb()
        if self.datadir.exists() and any(self.datadir.iterdir()):
            raise RuntimeError(f"{self.name}: {self.datadir} is not empty; skip initialize() to start on existing data")
        self.write_cnf()
        command = [
            str(INSTALL_DB),
            f"--defaults-file={self.defaults_file}",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ]
        if os.geteuid() == 0:
            command.append("--user=root")
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{self.name}: mariadb-install-db did not finish within {timeout:.0f}s") from None
        if result.returncode != 0:
            # The bootstrap server logs to log_error (from my.cnf), so its reason is there, not in the output.
            output = "\n".join((result.stdout + result.stderr).splitlines()[:8])
            raise RuntimeError(
                f"{self.name}: mariadb-install-db failed (exit {result.returncode}):\n{output}\n"
                f"{self.error_log} ends with:\n{_tail(self.error_log, 25)}"
            )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def start(self, timeout: float = 60) -> None:
        """Start mariadbd and wait (bounded) until it answers on its TCP port."""
        require_mariadb()
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        if not self.datadir.is_dir() or not any(self.datadir.iterdir()):
            raise RuntimeError(
                f"{self.name}: {self.datadir} is empty: call initialize() or fill it (e.g. a restored backup)"
            )
        self.write_cnf()
        with self.stdout_log.open("ab") as out:
            self._process = subprocess.Popen(
                [str(MARIADBD), f"--defaults-file={self.defaults_file}"],
                env={**os.environ, **self.environment} if self.environment else None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        try:
            self._wait_until_answering(timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_until_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no attempt yet"
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise RuntimeError(
                    f"{self.name}: mariadbd exited with {code} while starting; {self.error_log} ends with:\n"
                    f"{_tail(self.error_log)}"
                )
            try:
                self.connect(connect_timeout=2, read_timeout=5).close()
                return
            except pymysql.err.OperationalError as error:
                if error.args and error.args[0] == _ER_ACCESS_DENIED:
                    return  # it answers; the caller's password is simply not (yet) right
                if "CERTIFICATE_VERIFY_FAILED" in str(error):
                    return  # it answers, with a certificate the test gave it so that clients refuse it
                last_error = str(error)
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name}: no answer on 127.0.0.1:{self.port} within {timeout:.0f}s ({last_error}); "
            f"{self.error_log} ends with:\n{_tail(self.error_log)}"
        )

    def stop(self, timeout: float = 30) -> int | None:
        """Clean shutdown (SIGTERM), bounded; SIGKILL if it does not finish. Returns the exit code."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self._process = None
        return process.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, for drills (InnoDB recovers on the next start)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(10)
        self._process = None

    def restart(self, timeout: float = 60) -> None:
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.error_log, lines)

    # ---------------------------------------------------------------- clients

    def connect(
        self, user: str = "root", password: str | None = None, database: str | None = None, **options: Any
    ) -> pymysql.connections.Connection:
        """A TCP connection to 127.0.0.1:port (autocommit on, bounded timeouts).

        password=None means root's known password for root, and no password for others.
        Extra keyword arguments go to pymysql.connect (e.g. unix_socket=str(server.socket)).
        """
        if password is None:
            password = (self.root_password or "") if user == "root" else ""
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": user,
            "password": password,
            "database": database,
            "connect_timeout": 5,
            "read_timeout": 60,
            "write_timeout": 60,
            "autocommit": True,
        }
        if self.tls_dir is not None and "unix_socket" not in options:
            # Verified as a client in the cluster would: the set's CA and the name dialled (127.0.0.1).
            settings.update(ssl_ca=str(self.tls_dir / mysql_config.TLS_CA), ssl_verify_cert=True,
                            ssl_verify_identity=True)
        settings.update(options)
        return pymysql.connect(**settings)

    def sql(self, statement: str, args: Sequence[Any] | None = None, **connect_options: Any) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection and return its rows."""
        with self.connect(**connect_options) as conn, conn.cursor() as cursor:
            cursor.execute(statement, args)
            return list(cursor.fetchall())

    def value(self, statement: str, args: Sequence[Any] | None = None) -> Any:
        rows = self.sql(statement, args)
        return rows[0][0] if rows else None

    def set_root_password(self, password: str) -> None:
        """Give every root account this password, outside the binlog (each server sets its own)."""
        with self.connect() as conn, conn.cursor() as cursor:
            cursor.execute("SET SESSION sql_log_bin = 0")
            cursor.execute("SELECT User, Host FROM mysql.user WHERE User = 'root'")
            for user, host in cursor.fetchall():
                cursor.execute("ALTER USER IF EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
        self.root_password = password


# -------------------------------------------------------------------- a replicated set


def replica_status(server: MariaDBServer) -> dict[str, Any]:
    """SHOW SLAVE STATUS (as root) as a dict keyed by column name; {} when the server is no replica."""
    with server.connect() as conn, conn.cursor(pymysql.cursors.DictCursor) as cursor:
        cursor.execute("SHOW SLAVE STATUS")
        row = cursor.fetchone()
    return dict(row) if row else {}


@dataclass
class ReplicatedSet:
    """A primary (ordinal 0) and replicas (ordinals 1..n) replicating with MariaDB GTIDs."""

    primary: MariaDBServer
    replicas: list[MariaDBServer]
    root_password: str
    replication_user: str = "repl"
    replication_password: str = "repl-password"
    tls_dir: Path | None = None  # the set's CA and certificate, shared by every server, as in the pods

    @property
    def servers(self) -> list[MariaDBServer]:
        return [self.primary, *self.replicas]

    def create_replication_user(self) -> None:
        """Kept out of the binlog: each replica starts from a stream holding only the test's own writes."""
        with self.primary.connect() as conn, conn.cursor() as cursor:
            cursor.execute("SET SESSION sql_log_bin = 0")
            cursor.execute(
                "CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s REQUIRE SSL",
                (self.replication_user, self.replication_password),
            )
            cursor.execute("GRANT REPLICATION SLAVE ON *.* TO %s@'%%'", (self.replication_user,))

    def start_replication(self, replica: MariaDBServer, timeout: float = 30) -> None:
        """CHANGE MASTER TO the primary (GTID, slave_pos), START SLAVE, wait until both threads run."""
        assert self.tls_dir is not None
        with replica.connect() as conn, conn.cursor() as cursor:
            cursor.execute("STOP SLAVE")
            # Verified TLS, as the set's sidecar sets it up (sidecar.sh mariadb_statements).
            cursor.execute(
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
                "MASTER_SSL=1, MASTER_SSL_CA=%s, MASTER_SSL_VERIFY_SERVER_CERT=1, "
                "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                (self.primary.port, self.replication_user, self.replication_password,
                 str(self.tls_dir / mysql_config.TLS_CA)),
            )
        self.resume_replication(replica, timeout)

    def resume_replication(self, replica: MariaDBServer, timeout: float = 30) -> None:
        """START SLAVE (a no-op note when it already runs), then wait until both threads run."""
        replica.sql("START SLAVE")
        self.wait_threads_running(replica, timeout)

    def wait_threads_running(self, replica: MariaDBServer, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = replica_status(replica)
            if status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes":
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"{replica.name}: replication threads not running after {timeout:.0f}s: "
            f"IO={status.get('Slave_IO_Running')} SQL={status.get('Slave_SQL_Running')} "
            f"io_error={status.get('Last_IO_Error')!r} sql_error={status.get('Last_SQL_Error')!r}"
        )

    def wait_caught_up(self, replicas: Sequence[MariaDBServer] | None = None, timeout: float = 30) -> dict[str, float]:
        """Wait until each replica applied everything the primary binlogged so far; seconds per replica."""
        position = self.primary.value("SELECT @@GLOBAL.gtid_binlog_pos")
        waited: dict[str, float] = {}
        for replica in self.replicas if replicas is None else replicas:
            began = time.monotonic()
            result = replica.value("SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout))
            if result != 0:
                raise RuntimeError(
                    f"{replica.name}: did not reach the primary's GTID position {position!r} within {timeout:.0f}s "
                    f"(gtid_slave_pos={replica.value('SELECT @@GLOBAL.gtid_slave_pos')!r})"
                )
            waited[replica.name] = time.monotonic() - began
        return waited

    def stop(self) -> None:
        """Stop every server, replicas first; never raises for one that is already down."""
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.stop()


def start_replicated_set(
    base_dir: Path,
    *,
    replicas: int = 2,
    primary_cnf: str = "",
    replica_cnf: str | Sequence[str] = "",
    server_id: Callable[[int], int] = lambda ordinal: 100 + ordinal,
    root_password: str = "root-password",
    replication_password: str = "repl-password",
    start_timeout: float = 60,
    environment: Mapping[str, str] | None = None,
) -> ReplicatedSet:
    """Initialize and start a primary and `replicas` replicas under base_dir/ord<N>, replicating.

    `replica_cnf` is every replica's fragment, or one per replica (e.g. a serial and a parallel
    applier side by side). Every server serves TLS with one certificate of one test CA
    (base_dir/tls, as the set's pods share their TLS Secret), refuses plaintext TCP, and replicates
    over verified TLS. On any failure every server already started is stopped before the error
    propagates.
    """
    from tools.testing.pki import make_ca, write_tls_dir  # here: pki imports the node renderers

    require_mariadb()
    tls_dir = write_tls_dir(Path(base_dir) / "tls", make_ca("test MySQL set CA"),
                            mysql_config.tls_certificate("mysql", "test", "cluster.local"))
    replica_cnfs = [replica_cnf] * replicas if isinstance(replica_cnf, str) else list(replica_cnf)
    if len(replica_cnfs) != replicas:
        raise ValueError(f"{len(replica_cnfs)} replica fragments for {replicas} replicas")
    servers = [
        MariaDBServer(
            Path(base_dir) / f"ord{ordinal}",
            free_port(),
            server_id(ordinal),
            primary_cnf if ordinal == 0 else replica_cnfs[ordinal - 1],
            name="primary" if ordinal == 0 else f"replica-{ordinal}",
            environment=environment,
            tls_dir=tls_dir,
        )
        for ordinal in range(replicas + 1)
    ]
    group = ReplicatedSet(servers[0], servers[1:], root_password, replication_password=replication_password,
                          tls_dir=tls_dir)
    try:
        for server in servers:
            server.initialize()
            server.start(start_timeout)
            server.set_root_password(root_password)
        group.create_replication_user()
        for replica in group.replicas:
            group.start_replication(replica)
    except BaseException:
        group.stop()
        raise
    return group


@contextlib.contextmanager
def replicated_set(base_dir: Path, **options: Any) -> Iterator[ReplicatedSet]:
    """start_replicated_set() as a context manager that always stops the servers."""
    group = start_replicated_set(base_dir, **options)
    try:
        yield group
    finally:
        group.stop()


# -------------------------------------------------------------------- the read Service stand-in


class ReadServiceProxy:
    """Stands in for the tutorial's `mysql-read` Service on 127.0.0.1.

    Each new client connection goes to the next backend in round-robin order; a backend
    that refuses the TCP connection is skipped, roughly what kube-proxy does once readiness
    has removed a stopped pod from the endpoints (the real Service has a few seconds of lag
    that this stand-in does not model). Bytes are relayed unchanged, so the server a client
    lands on is visible with SELECT @@server_id. Threads are daemons; stop() closes everything.
    """

    def __init__(self, backends: Sequence[tuple[str, int]], connect_timeout: float = 1.0) -> None:
        self.backends = list(backends)
        self.connect_timeout = connect_timeout
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._next = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"read-proxy-{self.port}", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ReadServiceProxy:
        self._acceptor.start()
        return self

    def __enter__(self) -> ReadServiceProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _backend_connection(self) -> socket.socket | None:
        with self._lock:
            order = [(self._next + offset) % len(self.backends) for offset in range(len(self.backends))]
            self._next = (self._next + 1) % len(self.backends)
        for index in order:
            try:
                return socket.create_connection(self.backends[index], timeout=self.connect_timeout)
            except OSError:
                continue
        return None

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed by stop()
            backend = self._backend_connection()
            if backend is None:
                client.close()
                continue
            with self._lock:
                self._open.update((client, backend))
            thread = threading.Thread(target=self._relay, args=(client, backend), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _relay(self, client: socket.socket, backend: socket.socket) -> None:
        pairs = {client: backend, backend: client}
        try:
            with selectors.DefaultSelector() as selector:
                for sock in pairs:
                    sock.setblocking(True)
                    sock.settimeout(None)
                    selector.register(sock, selectors.EVENT_READ)
                while not self._stopping.is_set():
                    for key, _ in selector.select(timeout=0.2):
                        source = key.fileobj
                        assert isinstance(source, socket.socket)
                        data = source.recv(65536)
                        if not data:
                            return
                        pairs[source].sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._open.difference_update(pairs)
            for sock in pairs:
                with contextlib.suppress(OSError):
                    sock.close()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._acceptor.is_alive():
            self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)
