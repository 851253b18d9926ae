"""Pure renderers for the replicated MySQL/MariaDB set.

Nothing here touches Pulumi: every function maps plain values (engine, version,
ordinal) to the text the pods need. The per-process options (server-id, port,
datadir, socket) are deliberately left out of the role fragments: in a pod the
init script writes server-id from the ordinal, and the image owns the rest; in
the MariaDB rehearsal the test harness supplies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.pins import ENGINE_VERSIONS, ENGINES
from components.settings.schema import CloneSettings

# server-id 0 is reserved (a server with id 0 refuses to replicate), hence the offset.
SERVER_ID_OFFSET = 100

# Account names are fixed (only passwords are secret); the scripts and the SQL agree on them.
REPLICATION_USER = "repl"
BACKUP_USER = "backup"
# The least-privilege account of `make verify` (tools/mysql_verify), and the database its
# check row goes to (the tool's default --database).
VERIFY_USER = "verify"
VERIFY_DATABASE = "atomic_verify"
# The metrics sidecar's account (mysqld_exporter): over the pod-local socket only ('localhost' matches
# socket connections alone under skip_name_resolve), so require_secure_transport lets it in without TLS.
EXPORTER_USER = "exporter"
EXPORTER_HOST = "localhost"
# mysqld's socket in every container that mounts the set's `run` volume (scripts/common.sh's default).
MYSQL_SOCKET = "/var/run/mysqld/mysqld.sock"

SCRIPTS_DIR = Path(__file__).parent / "scripts"
SCRIPT_NAMES = (
    "common.sh", "init-mysql.sh", "clone-mysql.sh", "sidecar.sh", "readiness.sh", "liveness.sh", "sidecar-ready.sh",
    # Backups, binlog archive and restore (docs/backup.md).
    "s3.sh", "backup-agent.sh", "backup.sh", "backup-job.sh", "archive-binlogs.sh", "restore.sh",
    "datadir-guard.sh", "prestop.sh",
)
# Where the ConfigMap (cnf fragments, users.sql and the scripts) is mounted in every container.
CONFIG_MOUNT = "/etc/mysql-config"
# Where the set's TLS Secret (kubernetes.io/tls plus its CA) is mounted: the same path in mysqld, the
# sidecar and clone-mysql, since a replica's mysqld opens the CA file the sidecar names in CHANGE MASTER.
TLS_MOUNT = "/etc/mysql-tls"
TLS_CA, TLS_CERT, TLS_KEY = "ca.crt", "tls.crt", "tls.key"
TLS_VERSIONS = "TLSv1.2,TLSv1.3"


@dataclass(frozen=True)
class TlsCertificate:
    """The set's one certificate: every member serves MySQL and the clone port with it and presents it
    as the clone's client. One per set, not per pod: members share the data anyway, and per-pod
    certificates would need an issuer in the cluster. Issued by a CA of the set's own (set.py)."""

    common_name: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    uses: tuple[str, ...] = ("digital_signature", "key_encipherment", "server_auth", "client_auth")


def tls_certificate(name: str, namespace: str, cluster_domain: str) -> TlsCertificate:
    """The names clients and peers dial: each pod through the headless Service (<set>-N.<set>, short and
    qualified forms: a wildcard covers every ordinal, present and future; OpenSSL matches only the forms
    with two dots after the `*`, see peer_host_pattern), the primary and read Services,
    and 127.0.0.1/localhost for `kubectl port-forward` (docs/verify.md), where the client dials loopback."""
    services = (name, f"{name}-primary", f"{name}-read")
    qualified = ("", f".{namespace}", f".{namespace}.svc", f".{namespace}.svc.{cluster_domain}")
    dns = [f"*.{name}{suffix}" for suffix in qualified]
    dns += [f"{service}{suffix}" for service in services[1:] for suffix in qualified]
    return TlsCertificate(common_name=f"{name}.{namespace}.svc", dns_names=(*dns, "localhost"),
                          ip_addresses=("127.0.0.1",))


def peer_host_pattern(name: str, namespace: str, cluster_domain: str) -> str:
    """The name a member dials a peer by (replication verifies it, the clone's socat checks it): the
    fully qualified headless-Service name. OpenSSL matches a wildcard only with two dots after the `*`
    (crypto/x509/v3_utl.c, valid_star), so `*.<set>` never covers `<set>-1.<set>`; the qualified
    form is covered by `*.<set>.<namespace>.svc.<domain>`. `{ordinal}` is filled in by common.sh."""
    return f"{name}-{{ordinal}}.{name}.{namespace}.svc.{cluster_domain}"


def tls_options(directory: str = TLS_MOUNT) -> list[str]:
    """mysqld's TLS: the set's certificate, TLS 1.2 or later, and no connection over TCP without it
    (the socket, which probes and the sidecar use, counts as secure and stays open to root)."""
    return [
        f"ssl_ca={directory}/{TLS_CA}",
        f"ssl_cert={directory}/{TLS_CERT}",
        f"ssl_key={directory}/{TLS_KEY}",
        f"tls_version={TLS_VERSIONS}",
        "require_secure_transport=ON",
    ]


@dataclass(frozen=True)
class ClientTools:
    """Client binary names inside the engine's image.

    MariaDB 11 images no longer ship the mysql-named symlinks, so the names are per engine.
    """

    client: str
    admin: str
    backup: str
    stream: str


def _check(engine: str, version: str) -> None:
    if engine not in ENGINE_VERSIONS:
        raise ValueError(f"engine {engine!r}: allowed values are {', '.join(ENGINES)}")
    if version not in ENGINE_VERSIONS[engine]:
        raise ValueError(f"version {version!r} for {engine}: allowed values are {', '.join(ENGINE_VERSIONS[engine])}")


def tools(engine: str) -> ClientTools:
    if engine == "mariadb":
        return ClientTools(client="mariadb", admin="mariadb-admin", backup="mariadb-backup", stream="mbstream")
    if engine == "mysql":
        return ClientTools(client="mysql", admin="mysqladmin", backup="xtrabackup", stream="xbstream")
    raise ValueError(f"engine {engine!r}: allowed values are {', '.join(ENGINES)}")


def server_id(ordinal: int) -> int:
    """server-id of the pod with this StatefulSet ordinal (the tutorial's 100 + ordinal)."""
    if ordinal < 0:
        raise ValueError(f"ordinal must not be negative: {ordinal}")
    return SERVER_ID_OFFSET + ordinal


def _lines(*options: str) -> str:
    return "\n".join(("[mysqld]", *options)) + "\n"


def _common(engine: str, version: str) -> list[str]:
    """Options shared by both roles: every member keeps a binlog so that any of them can
    serve a clone to the next ordinal, and could be promoted."""
    shared = [
        # Fixed names instead of the hostname-derived defaults: a cloned data dir
        # and a renamed pod must keep finding their logs.
        "log_bin=mysql-bin",
        "relay_log=relay-bin",
        "skip_name_resolve=ON",
        "sync_binlog=1",
        "innodb_flush_log_at_trx_commit=1",
        "binlog_expire_logs_seconds=604800",
        "character_set_server=utf8mb4",
        *tls_options(),
    ]
    if engine == "mariadb":
        return [
            *shared,
            "binlog_format=ROW",
            "log_slave_updates=ON",
            # Refuse out-of-order GTIDs instead of silently diverging.
            "gtid_strict_mode=ON",
            "collation_server=utf8mb4_unicode_ci",
        ]
    extra = [
        "gtid_mode=ON",
        "enforce_gtid_consistency=ON",
        "log_replica_updates=ON",
    ]
    if version == "8.0":
        # Default (and removed) in 8.4; in 8.0 it lets replicas apply in parallel.
        extra.append("binlog_transaction_dependency_tracking=WRITESET")
    return shared + extra


def primary_cnf(engine: str, version: str) -> str:
    """[mysqld] fragment of ordinal 0 (the primary)."""
    _check(engine, version)
    return _lines("# Primary (ordinal 0): binlog with GTIDs for the replicas.", *_common(engine, version))


def replica_cnf(engine: str, version: str, apply_threads: int) -> str:
    """[mysqld] fragment of ordinals 1..n (replicas), applying with `apply_threads` threads."""
    _check(engine, version)
    # MariaDB has no super_read_only; read_only still stops every account
    # without READ_ONLY ADMIN (i.e. everything but root-like accounts).
    role = ["read_only=ON"] if engine == "mariadb" else ["super_read_only=ON", "read_only=ON"]
    return _lines(
        "# Replica (ordinal >= 1): refuses client writes. Replication restarts by itself",
        "# after a restart; relay logs are rebuilt from the source (GTID auto-positioning).",
        *_common(engine, version),
        *role,
        "relay_log_recovery=ON",
        *apply_options(engine, apply_threads),
    )


MAX_APPLY_THREADS = 64


def apply_options(engine: str, threads: int) -> list[str]:
    """How a replica applies what it receives: `threads` applier threads, commits in the primary's order.

    A serial applier applies (and, with sync_binlog=1 and log_replica_updates, flushes) one
    transaction at a time, so a primary committing concurrent transactions in groups outruns it
    and the lag grows without bound (measured: `make bench-apply`, docs/mysql.md).

    MariaDB: optimistic mode runs any transactional DML in parallel and rolls back and retries a
    transaction that meets a conflict; commits still happen in the primary's binlog order, per
    replication domain, so a reader never sees a state the primary never had
    (https://mariadb.com/kb/en/parallel-replication/, "optimistic mode", "Commit order").
    slave_parallel_threads=0 is the serial applier.
    MySQL: replica_parallel_workers workers (the default, 4, since 8.0.27) and
    replica_preserve_commit_order=ON (also the default since 8.0.27), written down so that a
    changed default never changes the set; the dependency tracking that lets 8.0 apply in parallel
    is _common's WRITESET (8.4's only behaviour). One worker applies serially; 0 is deprecated.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_APPLY_THREADS:
        raise ValueError(f"apply threads {threads!r}: allowed 1 to {MAX_APPLY_THREADS}")
    if engine == "mariadb":
        if threads == 1:
            return ["slave_parallel_threads=0"]
        return [f"slave_parallel_threads={threads}", "slave_parallel_mode=optimistic"]
    if engine == "mysql":
        return [f"replica_parallel_workers={threads}", "replica_preserve_commit_order=ON"]
    raise ValueError(f"engine {engine!r}: allowed values are {', '.join(ENGINES)}")


def cnf_for(engine: str, version: str, ordinal: int, apply_threads: int) -> str:
    return primary_cnf(engine, version) if ordinal == 0 else replica_cnf(engine, version, apply_threads)


def server_id_cnf(ordinal: int) -> str:
    return _lines(f"server_id={server_id(ordinal)}")


def users_sql(engine: str) -> str:
    """SQL run on the primary (as root) to create or update the set's accounts; replication
    copies them to the replicas.

    Passwords never appear in this text: the sidecar sets the session variables
    @replication_password, @backup_password and @verify_password first (hex-encoded, from
    the mounted secret), and the statements are built with QUOTE() and run as prepared
    statements because CREATE USER ... IDENTIFIED BY takes only a literal. Re-running it
    rotates the passwords to the secret's current values.
    """
    tools(engine)
    if engine == "mariadb":
        backup_grants = "RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, SLAVE MONITOR"
    else:
        backup_grants = "BACKUP_ADMIN, PROCESS, RELOAD, LOCK TABLES, REPLICATION CLIENT"
    repl = f"'{REPLICATION_USER}'@'%'"
    # The backup account only ever connects over the pod-local socket (its host is 'localhost', which
    # matches socket connections only when skip_name_resolve is on): no TLS there, none needed.
    backup = f"'{BACKUP_USER}'@'localhost'"
    statements = [
        *_account(engine, repl, "@replication_password", require_tls=True),
        f"GRANT REPLICATION SLAVE ON *.* TO {repl};",
        *_account(engine, backup, "@backup_password", require_tls=False),
        f"GRANT {backup_grants} ON *.* TO {backup};",
    ]
    if engine == "mysql":
        # XtraBackup 8 reads these tables for a consistent binlog/GTID position.
        statements.append(f"GRANT SELECT ON performance_schema.log_status TO {backup};")
        statements.append(f"GRANT SELECT ON performance_schema.keyring_component_status TO {backup};")
        statements.append(f"GRANT SELECT ON performance_schema.replication_group_members TO {backup};")
    statements += verify_statements(engine)
    statements += exporter_statements(engine)
    statements.append(root_statement(engine))
    return "\n".join(statements) + "\n"


def exporter_grants(engine: str) -> list[str]:
    """What mysqld_exporter's default collectors read, and nothing more: status and variables
    (no grant needed), SHOW ENGINE INNODB STATUS and the process list (PROCESS), the replica
    status (SLAVE MONITOR on MariaDB, REPLICATION CLIENT on MySQL) and performance_schema. No
    SELECT on any application table; at most three connections, so a hung scrape cannot crowd
    out clients."""
    tools(engine)
    exporter = f"'{EXPORTER_USER}'@'{EXPORTER_HOST}'"
    monitor = "SLAVE MONITOR" if engine == "mariadb" else "REPLICATION CLIENT"
    return [
        f"GRANT PROCESS, {monitor} ON *.* TO {exporter};",
        f"GRANT SELECT ON performance_schema.* TO {exporter};",
        f"ALTER USER {exporter} WITH MAX_USER_CONNECTIONS 3;",
    ]


def exporter_statements(engine: str) -> list[str]:
    # In-pod over the socket, like `backup`: no network hop for TLS to protect.
    return [*_account(engine, f"'{EXPORTER_USER}'@'{EXPORTER_HOST}'", "@exporter_password", require_tls=False),
            *exporter_grants(engine)]


def exporter_cnf(password: str) -> str:
    """mysqld_exporter's --config.my-cnf (go-ini): the pod's own mysqld over its socket (a `socket`
    key makes the exporter dial unix, config/config.go FormDSN in prometheus/mysqld_exporter). The password is
    triple-quoted, go-ini's form for a value holding quotes, '#' or ';' (the password rule allows
    them); a password containing three double quotes in a row is refused."""
    if '"""' in password or "\n" in password:
        raise ValueError("the exporter password must not contain three double quotes in a row or a line break")
    return f'[client]\nuser={EXPORTER_USER}\npassword="""{password}"""\nsocket={MYSQL_SOCKET}\n'


def root_statement(engine: str) -> str:
    """(Re)set every root account's password to @root_password, in one ALTER USER over the accounts
    that exist (the images keep root@localhost only, MYSQL_ROOT_HOST; a hand-made data dir may have
    more). IF EXISTS: an account the server ignores (a host name under skip_name_resolve, as
    mariadb-install-db creates root@<hostname>) is only a note, not the batch's failure. Replicated like
    the others: every member's root is a clone of the primary's. MariaDB gets the hash form, as in
    _prepared; MySQL rewrites the literal to its hash before logging."""
    tools(engine)
    value = "QUOTE(PASSWORD(@root_password))" if engine == "mariadb" else "QUOTE(@root_password)"
    by = "IDENTIFIED BY PASSWORD " if engine == "mariadb" else "IDENTIFIED BY "
    return (
        "SET SESSION group_concat_max_len = 65536;\n"
        "SET @stmt = (SELECT CONCAT('ALTER USER IF EXISTS ', GROUP_CONCAT(CONCAT(QUOTE(User), '@', QUOTE(Host), "
        f"' {by}', {value}) SEPARATOR ', ')) FROM mysql.user WHERE User = 'root');\n"
        "PREPARE stmt FROM @stmt;\nEXECUTE stmt;\nDEALLOCATE PREPARE stmt;"
    )


# Of the data volume, what the binlogs may take (sidecar.sh purges the oldest beyond it; the age
# bound, binlog_expire_logs_seconds, applies too): the rest holds the data, a replica's relay logs
# and InnoDB's undo and temporary files. One binlog file is at most an eighth of that, so purging
# (whole files, never the one being written) keeps the total near the bound, and never above 1 GiB
# (the servers' default max_binlog_size).
BINLOG_VOLUME_FRACTION = 4
BINLOG_FILES_PER_BOUND = 8
MAX_BINLOG_FILE_BYTES = 2**30
# The sidecar logs an ALARM line at every check while the data volume is this full (readiness unchanged).
DISK_ALARM_PERCENT = 80


def binlog_env(storage_bytes: int) -> dict[str, str]:
    """The sidecar's binlog bounds for a data volume of `storage_bytes`: total bytes, bytes per file
    (a multiple of 4096, as max_binlog_size wants), and the disk alarm's threshold."""
    if storage_bytes < 2**20:
        raise ValueError(f"data volume of {storage_bytes} bytes: at least 1 MiB")
    total = storage_bytes // BINLOG_VOLUME_FRACTION
    per_file = max(4096, min(MAX_BINLOG_FILE_BYTES, total // BINLOG_FILES_PER_BOUND) // 4096 * 4096)
    return {"BINLOG_MAX_BYTES": str(total), "BINLOG_FILE_BYTES": str(per_file),
            "DISK_ALARM_PERCENT": str(DISK_ALARM_PERCENT)}


def verify_grants(engine: str) -> list[str]:
    """What tools/mysql_verify needs, and nothing more (docs/verify.md): its check database
    (created on first use), the replication status, and on MySQL the applier workers' table
    it quotes errors from. No SUPER, CONNECTION_ADMIN or READ_ONLY ADMIN, so replicas refuse
    its writes, which is what the tool's write probe checks."""
    tools(engine)
    # `_` is a wildcard in a database-level grant: escaped, the grant covers this database only.
    database = VERIFY_DATABASE.replace("_", "\\_")
    verify = f"'{VERIFY_USER}'@'%'"
    # SHOW SLAVE STATUS needs SLAVE MONITOR on MariaDB >= 10.5; SHOW REPLICA STATUS needs
    # REPLICATION CLIENT on MySQL.
    monitor = "SLAVE MONITOR" if engine == "mariadb" else "REPLICATION CLIENT"
    grants = [
        f"GRANT SELECT, INSERT, DELETE, CREATE ON `{database}`.* TO {verify};",
        f"GRANT {monitor} ON *.* TO {verify};",
    ]
    if engine == "mysql":
        grants.append(f"GRANT SELECT ON performance_schema.replication_applier_status_by_worker TO {verify};")
    return grants


def verify_statements(engine: str) -> list[str]:
    """The verify account (connects over TCP from anywhere the NetworkPolicy admits) and its grants."""
    return [*_account(engine, f"'{VERIFY_USER}'@'%'", "@verify_password", require_tls=True), *verify_grants(engine)]


def _account(engine: str, account: str, variable: str, *, require_tls: bool) -> list[str]:
    """Create `account` if missing, then (re)set its password: re-running rotates it. An account that
    connects over the network REQUIREs SSL itself, so that it keeps refusing plaintext even on a
    server started without require_secure_transport (a hand-edited config, a restore elsewhere)."""
    tls = " REQUIRE SSL" if require_tls else ""
    return [
        _prepared(engine, f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY ", variable, tls),
        _prepared(engine, f"ALTER USER {account} IDENTIFIED BY ", variable, tls),
    ]


def _prepared(engine: str, statement: str, variable: str, suffix: str = "") -> str:
    """`statement` followed by the quoted password in a session variable, run as a prepared statement.

    MariaDB writes account statements to the binlog as executed, so a literal password would
    sit in every member's binlog and relay log for days: there the statement carries only the
    mysql_native_password hash (`IDENTIFIED BY PASSWORD '*...'`, the plugin it would use anyway).
    MySQL rewrites them to `IDENTIFIED WITH ... AS '<hash>'` before logging, and SQL has no
    function computing its default plugin's (caching_sha2_password) salted hash, so it gets the
    literal. (A MariaDB password validation plugin with strict_password_validation=ON would
    refuse the hash form; the images load none.)
    """
    literal = statement.replace("'", "''")
    value = f"QUOTE({variable})"
    if engine == "mariadb":
        literal += "PASSWORD "
        value = f"QUOTE(PASSWORD({variable}))"
    tail = f", '{suffix}'" if suffix else ""
    return (
        f"SET @stmt = CONCAT('{literal}', {value}{tail});\n"
        "PREPARE stmt FROM @stmt;\nEXECUTE stmt;\nDEALLOCATE PREPARE stmt;"
    )


def clone_env(clone: CloneSettings) -> dict[str, dict[str, str]]:
    """The clone path's settings as the scripts read them, per container: the sidecar's backup
    tool (BACKUP_PARALLEL, sidecar.sh) and the clone-mysql stream tool (CLONE_PARALLEL)."""
    for name, threads in (("send", clone.send_threads), ("receive", clone.receive_threads)):
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"{name} threads {threads!r}: must be a whole number >= 1")
    return {
        "sidecar": {"BACKUP_PARALLEL": str(clone.send_threads)},
        "clone-mysql": {"CLONE_PARALLEL": str(clone.receive_threads)},
    }


def script_command(script: str) -> list[str]:
    """Run one of the ConfigMap's scripts (mounted at CONFIG_MOUNT; no exec bit needed)."""
    return ["bash", f"{CONFIG_MOUNT}/{script}"]


def liveness_command() -> list[str]:
    """mysqladmin ping (mariadb-admin on MariaDB, chosen by MYSQL_ENGINE in the script):
    exit 0 whenever the server answers, even 'access denied', so only a dead or hung
    server is restarted."""
    return script_command("liveness.sh")


def readiness_command() -> list[str]:
    """Primary: answers a query. Replica: answers and both replication threads run."""
    return script_command("readiness.sh")


def prestop_command() -> list[str]:
    """mysqld's preStop: read_only, then close the binlog dump connections, so that the shutdown
    after it is short (budget.termination_grace_seconds)."""
    return script_command("prestop.sh")


def sidecar_probe_command() -> list[str]:
    """The sidecar is ready once the backup port listens (checked without connecting)."""
    return script_command("sidecar-ready.sh")


def script_files() -> dict[str, str]:
    """The scripts shipped in the ConfigMap, by file name, read from components/workload/mysql/scripts."""
    return {name: (SCRIPTS_DIR / name).read_text(encoding="utf-8") for name in SCRIPT_NAMES}


def config_map_data(engine: str, version: str, apply_threads: int) -> dict[str, str]:
    """Everything the pods read from the ConfigMap: both role fragments, the accounts'
    SQL and the scripts (the containers run them with bash from CONFIG_MOUNT)."""
    return {
        "primary.cnf": primary_cnf(engine, version),
        "replica.cnf": replica_cnf(engine, version, apply_threads),
        "users.sql": users_sql(engine),
        **script_files(),
    }
