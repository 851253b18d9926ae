"""The set's scripts and config renderers, run with bash against stubbed tools.

PATH holds only the stubs and a few basic utilities, so no real mysql, socat or
backup tool can be reached by accident: every client, backup and transport call
is recorded (argv, option files, SQL) and answered from the test's environment.
The MySQL 8.x paths (xtrabackup, CHANGE REPLICATION SOURCE, GTID_SUBSET) are
proved only here; the MariaDB paths also run for real in test_mysql_rehearsal.py.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from components.settings.schema import CloneSettings, Resources
from components.workload.mysql import config as mysql_config

SCRIPTS = mysql_config.SCRIPTS_DIR
APPLY = 4  # replica applier threads the renderers are called with (mysqlReplicaApplyThreads)
BASIC_TOOLS = (
    "basename", "cat", "chmod", "cp", "date", "dirname", "ls", "mkdir", "mktemp", "mv",
    "od", "rm", "rmdir", "sleep", "timeout", "tr", "uname",
)
STUB_NAMES = (
    "mysql", "mariadb", "mysqladmin", "mariadb-admin", "xtrabackup", "mariadb-backup",
    "xbstream", "mbstream", "socat", "ncat",
)
PASSWORDS = {
    "root-password": "r00t\"pa\\ss",
    "replication-password": "repl'pw 2",
    "backup-password": "backup#pw",
    "verify-password": "ver'ify\\pw \"3\"",
    "exporter-password": "exp;ort#er pw",
}

# One stub for every tool: it records how it was called and answers from STUB_* variables.
STUB = r"""#!/bin/bash
tool=$(basename "$0")
log=$STUB_DIR/log
printf '%s\n' "$tool $*" >>"$log/$tool.argv"
cnf=""
for arg in "$@"; do
    case $arg in
    --defaults-extra-file=*) cnf=$(cat "${arg#--defaults-extra-file=}"); printf '%s\n' "$cnf" >>"$log/$tool.cnf" ;;
    esac
done
# STUB_DENY: a password the server refuses (a rotation it has not applied yet).
if [[ -n ${STUB_DENY:-} && $cnf == *"password=\"$STUB_DENY\""* ]]; then
    echo "ERROR 1045 (28000): Access denied" >&2
    exit 1
fi
case $tool in
mysql | mariadb)
    [[ ${STUB_DOWN:-0} == 1 ]] && { echo "ERROR 2002: cannot connect" >&2; exit 1; }
    [[ ${STUB_HANG:-0} == 1 ]] && sleep 30
    query=""
    prev=""
    for arg in "$@"; do [[ $prev == -e ]] && query=$arg; prev=$arg; done
    [[ -z $query ]] && query=$(cat)
    printf '%s\n-- end of call\n' "$query" >>"$log/$tool.sql"
    case $query in
    *"GTID_SUBSET('"*) echo "${STUB_COVERED:-0}" ;;
    *"GTID_SUBSET(@@GLOBAL"*) echo "${STUB_SUBSET:-1}" ;;
    *gtid_current_pos*) echo "${STUB_CURRENT_POS:-}" ;;
    *"SHOW REPLICA STATUS"*) printf '%s' "${STUB_REPLICA_STATUS:-}" ;;
    *CHANGE*) [[ ${STUB_FAIL_CHANGE:-0} == 1 ]] && { echo "ERROR 1234: change failed" >&2; exit 1; } ;;
    *skip_networking*) echo "${STUB_SKIP_NETWORKING:-0}" ;;
    *PROCESSLIST*) printf '%s\n' ${STUB_DUMP_IDS:-} ;;
    *"SELECT 1"*) echo 1 ;;
    esac
    exit 0 ;;
mysqladmin | mariadb-admin) echo "mysqld is alive"; exit 0 ;;
xtrabackup | mariadb-backup)
    case " $* " in
    *" --prepare "*) exit "${STUB_PREPARE_EXIT:-0}" ;;
    *" --backup "*) printf 'STREAM'; exit "${STUB_BACKUP_EXIT:-0}" ;;
    esac ;;
xbstream | mbstream)
    # -x [--parallel=N] -C DIR; the stream is lines "d PATH" (directory) or "f PATH TEXT" (file, printf %b)
    dir=""
    prev=""
    for arg in "$@"; do [[ $prev == -C ]] && dir=$arg; prev=$arg; done
    while read -r kind path text; do
        case $kind in
        d) mkdir -p "$dir/$path" ;;
        f) printf '%b' "$text" >"$dir/$path" ;;
        esac
    done
    exit "${STUB_STREAM_EXIT:-0}" ;;
socat | ncat)
    case "$*" in
    *-LISTEN*) [[ ${STUB_LISTEN_BLOCK:-0} == 1 ]] && exec sleep 30; exit 0 ;;
    esac
    [[ -n ${STUB_STREAM_FILE:-} ]] && cat "$STUB_STREAM_FILE"
    exit "${STUB_RECEIVE_EXIT:-0}" ;;
esac
exit 0
"""

COMPLETE_STREAM = (
    "d mysql\n"
    "d app\n"
    "f xtrabackup_checkpoints backup_type = full-backuped\\n\n"
    "f xtrabackup_binlog_info mysql-bin.000003\\t1234\\t0-100-42\\n\n"
    "f master.info stale\n"
)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


class Sandbox:
    """Directories of one pod plus the stubbed PATH; runs the real scripts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stub_dir = root / "stubs"
        self.bin = self.stub_dir / "bin"
        self.log = self.stub_dir / "log"
        self.config = root / "config"
        self.secrets = root / "secrets"
        self.conf_d = root / "conf.d"
        self.datadir = root / "volume" / "mysql"
        self.tmp = root / "tmp"
        for path in (self.bin, self.log, self.config, self.secrets, self.tmp, self.datadir.parent):
            path.mkdir(parents=True, exist_ok=True)
        stub = self.stub_dir / "stub"
        stub.write_text(STUB)
        stub.chmod(0o755)
        for name in STUB_NAMES:
            (self.bin / name).symlink_to(stub)
        self.basic = root / "basic"
        self.basic.mkdir()
        for tool in BASIC_TOOLS:
            found = shutil.which(tool)
            assert found, f"{tool} is needed by the scripts"
            (self.basic / tool).symlink_to(found)
        for name, value in PASSWORDS.items():
            (self.secrets / name).write_text(value)
        # The TLS Secret's files: contents matter only to socat and mysqld, both stubbed here.
        self.tls = root / "tls"
        self.tls.mkdir()
        for name in (mysql_config.TLS_CA, mysql_config.TLS_CERT, mysql_config.TLS_KEY):
            (self.tls / name).write_text(f"PEM of {name}\n")
        self.configure("mysql", "8.4")

    def configure(self, engine: str, version: str) -> None:
        for name, text in mysql_config.config_map_data(engine, version, APPLY).items():
            (self.config / name).write_text(text)
        self.engine, self.version = engine, version

    def env(self, pod: str, **extra: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.bin}:{self.basic}",
            "HOME": str(self.root),
            "STUB_DIR": str(self.stub_dir),
            "MYSQL_ENGINE": self.engine,
            "MYSQL_VERSION": self.version,
            "POD_NAME": pod,
            "MYSQL_DATA_DIR": str(self.datadir),
            "MYSQL_CONF_DIR": str(self.conf_d),
            "MYSQL_CONFIG_DIR": str(self.config),
            "MYSQL_SECRETS_DIR": str(self.secrets),
            "MYSQL_TLS_DIR": str(self.tls),
            "MYSQL_SOCKET": str(self.root / "mysqld.sock"),
            "TMPDIR": str(self.tmp),
            "CLONE_RETRY_DELAY": "0",
            "WAIT_TIMEOUT": "3",
        }
        env.update(extra)
        return env

    def run(self, script: str, pod: str, *args: str, **extra: str) -> Run:
        result = subprocess.run(
            [shutil.which("bash") or "/bin/bash", str(self.config / script), *args],
            env=self.env(pod, **extra), capture_output=True, text=True, timeout=60, check=False,
        )
        return Run(result.returncode, result.stdout, result.stderr)

    def bash(self, code: str, **extra: str) -> Run:
        """Source common.sh and run `code` (for its functions)."""
        program = f'source "{self.config}/common.sh"\n{code}'
        result = subprocess.run(
            [shutil.which("bash") or "/bin/bash", "-c", program],
            env=self.env("mysql-1", **extra), capture_output=True, text=True, timeout=30, check=False,
        )
        return Run(result.returncode, result.stdout, result.stderr)

    @property
    def clone_tls(self) -> str:
        """socat's options for the clone channel, as common.sh clone_tls writes them for this sandbox."""
        return (f"cert={self.tls}/tls.crt,key={self.tls}/tls.key,cafile={self.tls}/ca.crt,verify=1,"
                "openssl-min-proto-version=TLS1.2")

    def logged(self, name: str) -> str:
        path = self.log / name
        return path.read_text() if path.exists() else ""

    def clear_log(self) -> None:
        for path in self.log.iterdir():
            path.unlink()


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


# ---------------------------------------------------------------- config renderers


ALL_VERSIONS = [("mysql", "8.4"), ("mysql", "8.0"), ("mariadb", "11.4"), ("mariadb", "10.11")]


@pytest.mark.parametrize(("engine", "version"), ALL_VERSIONS)
def test_role_fragments_carry_no_per_process_options(engine: str, version: str) -> None:
    for text in (mysql_config.primary_cnf(engine, version), mysql_config.replica_cnf(engine, version, APPLY)):
        assert text.startswith("[mysqld]\n")
        options = {line.split("=")[0] for line in text.splitlines() if "=" in line and not line.startswith("#")}
        assert not options & {"server_id", "server-id", "port", "datadir", "socket", "bind_address"}
        assert "log_bin" in options and "relay_log" in options


def test_replicas_are_read_only_and_primary_is_not() -> None:
    assert "super_read_only=ON" in mysql_config.replica_cnf("mysql", "8.4", APPLY)
    assert "read_only=ON" in mysql_config.replica_cnf("mariadb", "10.11", APPLY)
    assert "super_read_only" not in mysql_config.replica_cnf("mariadb", "10.11", APPLY)  # not a MariaDB variable
    for engine, version in (("mysql", "8.4"), ("mariadb", "11.4")):
        assert "read_only" not in mysql_config.primary_cnf(engine, version)


def test_gtid_options_per_engine_and_version() -> None:
    for version in ("8.4", "8.0"):
        text = mysql_config.primary_cnf("mysql", version)
        assert "gtid_mode=ON" in text and "enforce_gtid_consistency=ON" in text
    assert "binlog_transaction_dependency_tracking=WRITESET" in mysql_config.primary_cnf("mysql", "8.0")
    assert "binlog_transaction_dependency_tracking" not in mysql_config.primary_cnf("mysql", "8.4")  # removed in 8.4
    assert "gtid_strict_mode=ON" in mysql_config.primary_cnf("mariadb", "10.11")
    assert "gtid_mode" not in mysql_config.primary_cnf("mariadb", "10.11")


def test_unknown_engine_or_version_is_refused() -> None:
    with pytest.raises(ValueError, match="allowed values are mysql, mariadb"):
        mysql_config.primary_cnf("postgres", "16")
    with pytest.raises(ValueError, match=r"allowed values are 8\.4, 8\.0"):
        mysql_config.replica_cnf("mysql", "5.7", APPLY)
    with pytest.raises(ValueError, match="negative"):
        mysql_config.server_id(-1)


def test_server_id_is_100_plus_ordinal() -> None:
    assert [mysql_config.server_id(n) for n in (0, 1, 12)] == [100, 101, 112]


def test_users_sql_holds_no_password_and_grants_per_engine() -> None:
    mysql = mysql_config.users_sql("mysql")
    mariadb = mysql_config.users_sql("mariadb")
    assert "BACKUP_ADMIN" in mysql and "performance_schema.log_status" in mysql
    assert "BINLOG MONITOR" in mariadb and "BACKUP_ADMIN" not in mariadb
    for text in (mysql, mariadb):
        assert "''repl''@''%''" in text  # quotes doubled inside the CONCAT literal
    for variable in ("@replication_password", "@backup_password", "@verify_password"):
        assert f"IDENTIFIED BY ', QUOTE({variable})" in mysql
        # MariaDB logs account statements verbatim: only the hash may reach its binlog.
        assert f"IDENTIFIED BY PASSWORD ', QUOTE(PASSWORD({variable}))" in mariadb
        assert f"QUOTE({variable})" not in mariadb


def prepared_account_sql(engine: str, account: str, variable: str, require_tls: bool = True) -> list[str]:
    """What users.sql must hold for one account: create if missing, then (re)set the password; an
    account that connects over the network REQUIREs SSL in both statements."""
    hashed = engine == "mariadb"
    tls = ", ' REQUIRE SSL'" if require_tls else ""
    lines = []
    for verb in ("CREATE USER IF NOT EXISTS", "ALTER USER"):
        value = f"QUOTE(PASSWORD({variable}))" if hashed else f"QUOTE({variable})"
        lines += [
            f"SET @stmt = CONCAT('{verb} {account} IDENTIFIED BY {'PASSWORD ' if hashed else ''}', {value}{tls});",
            "PREPARE stmt FROM @stmt;", "EXECUTE stmt;", "DEALLOCATE PREPARE stmt;",
        ]
    return lines


# The grants docs/verify.md documents for the least-privilege account, per engine: the check
# database (its `_` escaped, so no other database matches), the replication status, and on
# MySQL the applier workers' table verify quotes a multi-threaded replica's error from.
VERIFY_SQL = {
    "mysql": [
        *prepared_account_sql("mysql", "''verify''@''%''", "@verify_password"),
        "GRANT SELECT, INSERT, DELETE, CREATE ON `atomic\\_verify`.* TO 'verify'@'%';",
        "GRANT REPLICATION CLIENT ON *.* TO 'verify'@'%';",
        "GRANT SELECT ON performance_schema.replication_applier_status_by_worker TO 'verify'@'%';",
    ],
    "mariadb": [
        *prepared_account_sql("mariadb", "''verify''@''%''", "@verify_password"),
        "GRANT SELECT, INSERT, DELETE, CREATE ON `atomic\\_verify`.* TO 'verify'@'%';",
        "GRANT SLAVE MONITOR ON *.* TO 'verify'@'%';",
    ],
}


@pytest.mark.parametrize(("engine", "version"), ALL_VERSIONS)
def test_users_sql_provisions_the_verify_account_per_engine(engine: str, version: str) -> None:
    users = mysql_config.config_map_data(engine, version, APPLY)["users.sql"]
    lines = users.splitlines()
    verify_lines = [line for line in lines if "verify" in line]
    start = lines.index(VERIFY_SQL[engine][0])
    assert lines[start:start + len(VERIFY_SQL[engine])] == VERIFY_SQL[engine]
    assert set(verify_lines) <= set(VERIFY_SQL[engine])
    # Least privilege: nothing that would let verify write to a read-only replica or reach other data.
    verify_grants = [line for line in verify_lines if line.startswith("GRANT")]
    for forbidden in ("SUPER", "ADMIN", "ALL", "GRANT OPTION", "UPDATE", "DROP"):
        assert not [line for line in verify_grants if forbidden in line], forbidden
    grants_on_everything = [line for line in verify_lines if line.startswith("GRANT") and " ON *.* " in line]
    assert grants_on_everything == [f"GRANT {'SLAVE MONITOR' if engine == 'mariadb' else 'REPLICATION CLIENT'} "
                                    "ON *.* TO 'verify'@'%';"]
    assert mysql_config.VERIFY_USER == "verify" and mysql_config.VERIFY_DATABASE == "atomic_verify"


def test_config_map_carries_every_script_verbatim() -> None:
    data = mysql_config.config_map_data("mysql", "8.4", APPLY)
    for name in mysql_config.SCRIPT_NAMES:
        assert data[name] == (SCRIPTS / name).read_text()
    assert {"primary.cnf", "replica.cnf", "users.sql"} <= data.keys()


def test_every_script_parses() -> None:
    for name in mysql_config.SCRIPT_NAMES:
        result = subprocess.run(
            ["bash", "-n", str(SCRIPTS / name)], capture_output=True, text=True, check=False, timeout=30
        )
        assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- init-mysql: ordinal, server-id, role


@pytest.mark.parametrize(("pod", "server_id", "role"), [("mysql-0", 100, "primary"), ("mysql-1", 101, "replica"),
                                                        ("mysql-12", 112, "replica")])
def test_init_derives_server_id_and_role_from_the_pod_name(box: Sandbox, pod: str, server_id: int, role: str) -> None:
    result = box.run("init-mysql.sh", pod)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in box.conf_d.iterdir()) == sorted([f"{role}.cnf", "server-id.cnf"])
    assert (box.conf_d / f"{role}.cnf").read_text() == (box.config / f"{role}.cnf").read_text()
    server_id_cnf = (box.conf_d / "server-id.cnf").read_text()
    assert f"server_id={server_id}\n" in server_id_cnf
    assert f"report_host={pod}.mysql\n" in server_id_cnf


@pytest.mark.parametrize("pod", ["db-x", "mysql-x", "mysql-012", "mysql-", "other-1", "mysql-1-2", "mysql"])
def test_init_rejects_names_that_are_not_set_members(box: Sandbox, pod: str) -> None:
    result = box.run("init-mysql.sh", pod)
    assert result.returncode == 1
    assert f"FATAL: cannot derive an ordinal from pod name '{pod}'" in result.stderr
    assert not (box.conf_d / "server-id.cnf").exists()


def test_init_with_a_dashed_set_name(box: Sandbox) -> None:
    result = box.run("init-mysql.sh", "my-db-3", MYSQL_SET_NAME="my-db")
    assert result.returncode == 0, result.stderr
    assert "server_id=103" in (box.conf_d / "server-id.cnf").read_text()


def test_init_removes_a_stale_role_file(box: Sandbox) -> None:
    box.conf_d.mkdir()
    (box.conf_d / "primary.cnf").write_text("[mysqld]\n")
    assert box.run("init-mysql.sh", "mysql-2").returncode == 0
    assert not (box.conf_d / "primary.cnf").exists()


def test_init_picks_the_mariadb_fragments(box: Sandbox) -> None:
    box.configure("mariadb", "11.4")
    assert box.run("init-mysql.sh", "mysql-1").returncode == 0
    assert (box.conf_d / "replica.cnf").read_text() == mysql_config.replica_cnf("mariadb", "11.4", APPLY)


# ---------------------------------------------------------------- binlog-info parsing


def parse(box: Sandbox, content: str) -> Run:
    info = box.root / "xtrabackup_binlog_info"
    info.write_text(content)
    return box.bash(f'parse_binlog_info "{info}" && printf "%s|%s|%s" "$BINLOG_FILE" "$BINLOG_POS" "$BINLOG_GTID"')


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("mysql-bin.000003\t1234\n", "mysql-bin.000003|1234|"),
        ("mysql-bin.000003\t1234\t0-100-42\n", "mysql-bin.000003|1234|0-100-42"),
        ("mysql-bin.000003\t1234\t0-100-42,1-101-7\n", "mysql-bin.000003|1234|0-100-42,1-101-7"),
        (
            "binlog.000002\t197\t3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5\n",
            "binlog.000002|197|3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5",
        ),
        # XtraBackup wraps a long MySQL GTID set after each comma.
        (
            "binlog.000002\t197\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n"
            "4e11fa47-71ca-11e1-9e33-c80aa9429562:1-10:12,\n"
            "5e11fa47-71ca-11e1-9e33-c80aa9429562:1-3\n",
            "binlog.000002|197|3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,"
            "4e11fa47-71ca-11e1-9e33-c80aa9429562:1-10:12,5e11fa47-71ca-11e1-9e33-c80aa9429562:1-3",
        ),
        ("binlog.000009\t42\t3e11fa47-71ca-11e1-9e33-c80aa9429562:tag_1:1-4\r\n", "binlog.000009|42|"
         "3e11fa47-71ca-11e1-9e33-c80aa9429562:tag_1:1-4"),
    ],
)
def test_binlog_info_parsing(box: Sandbox, content: str, expected: str) -> None:
    result = parse(box, content)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


@pytest.mark.parametrize(
    "content",
    ["", "just-one-field\n", "binlog.000001\tnot-a-number\n", "binlog.000001\t4\t0-1-2'; DROP TABLE x; --\n",
     "../../etc/passwd\t4\n"],
)
def test_binlog_info_that_could_not_be_trusted_is_refused(box: Sandbox, content: str) -> None:
    assert parse(box, content).returncode != 0


@pytest.mark.parametrize(
    ("current", "wanted", "covered"),
    [("0-100-42", "0-100-42", True), ("0-100-50", "0-100-42", True), ("0-100-41", "0-100-42", False),
     ("", "0-100-42", False), ("0-100-9,1-101-3", "1-101-3,0-100-9", True), ("0-100-9", "0-100-9,1-101-3", False),
     ("0-100-100", "0-100-99", True)],
)
def test_mariadb_gtid_position_comparison(box: Sandbox, current: str, wanted: str, covered: bool) -> None:
    result = box.bash(f'mariadb_gtid_covers "{current}" "{wanted}"')
    assert (result.returncode == 0) is covered


# ---------------------------------------------------------------- clone-mysql


def stream(box: Sandbox, text: str) -> str:
    path = box.root / "stream.txt"
    path.write_text(text)
    return str(path)


def test_clone_receives_prepares_and_renames_into_place(box: Sandbox) -> None:
    result = box.run("clone-mysql.sh", "mysql-2", STUB_STREAM_FILE=stream(box, COMPLETE_STREAM))
    assert result.returncode == 0, result.stderr
    assert (box.datadir / "mysql").is_dir() and (box.datadir / "xtrabackup_binlog_info").is_file()
    assert not (box.datadir / "master.info").exists()  # the source's replication settings stay behind
    assert not Path(f"{box.datadir}.clone-staging").exists()
    receive = box.logged("socat.argv")
    # ordinal - 1, the default pattern; 1 MiB reads and writes; mutual TLS with the set's files
    tls = box.clone_tls
    assert f"socat -u -b 1048576 OPENSSL:mysql-1.mysql:3307,connect-timeout=10,{tls} STDOUT" in receive
    prepare = box.logged("xtrabackup.argv")
    assert f"--prepare --use-memory=128M --target-dir={box.datadir}.clone-staging" in prepare


def test_clone_needs_socat_for_its_tls(box: Sandbox) -> None:
    """ncat was the tutorial's tool; the mutual TLS of the clone channel is socat's (both images have it)."""
    (box.bin / "socat").unlink()
    result = box.run("clone-mysql.sh", "mysql-1", STUB_STREAM_FILE=stream(box, COMPLETE_STREAM))
    assert result.returncode == 1 and "FATAL: socat is not installed in this image" in result.stderr
    assert not box.logged("ncat.argv") and not box.datadir.exists()


@pytest.mark.parametrize("missing", [mysql_config.TLS_CA, mysql_config.TLS_CERT, mysql_config.TLS_KEY])
def test_neither_end_of_a_clone_runs_without_the_sets_tls_files(box: Sandbox, missing: str) -> None:
    (box.tls / missing).write_text("")
    clone = box.run("clone-mysql.sh", "mysql-1", STUB_STREAM_FILE=stream(box, COMPLETE_STREAM))
    assert clone.returncode == 1 and f"FATAL: TLS file {box.tls}/{missing} is missing or empty" in clone.stderr
    serve = box.run("sidecar.sh", "mysql-0")
    assert serve.returncode == 1 and f"FATAL: TLS file {box.tls}/{missing} is missing or empty" in serve.stderr
    assert not box.logged("socat.argv")  # never a plaintext fallback


def test_clone_from_peer_addresses_given_by_environment(box: Sandbox) -> None:
    result = box.run("clone-mysql.sh", "mysql-3", STUB_STREAM_FILE=stream(box, COMPLETE_STREAM),
                     PEER_HOST_PATTERN="db-{ordinal}.db.ns.svc", PEER_CLONE_PORTS="4000 4001 4002 4003")
    assert result.returncode == 0, result.stderr
    assert "OPENSSL:db-2.db.ns.svc:4002," in box.logged("socat.argv")


def test_empty_clone_stream_stops_the_pod(box: Sandbox) -> None:
    result = box.run("clone-mysql.sh", "mysql-1", STUB_STREAM_FILE=stream(box, ""), CLONE_CONNECT_ATTEMPTS="3")
    assert result.returncode == 1
    assert "FATAL: empty or failed clone stream from mysql-0.mysql:3307 after 3 attempts" in result.stderr
    assert box.logged("socat.argv").count("\n") == 3
    assert not box.datadir.exists()
    assert not box.logged("xtrabackup.argv")  # nothing to prepare


def test_refused_connection_stops_the_pod(box: Sandbox) -> None:
    result = box.run("clone-mysql.sh", "mysql-1", STUB_RECEIVE_EXIT="1", CLONE_CONNECT_ATTEMPTS="2")
    assert result.returncode == 1 and "FATAL: empty or failed clone stream" in result.stderr
    assert not box.datadir.exists()


def test_truncated_clone_stream_stops_the_pod(box: Sandbox) -> None:
    truncated = "d mysql\nf ibdata1 x\n"  # the checkpoints file comes last in a stream
    result = box.run("clone-mysql.sh", "mysql-1", STUB_STREAM_FILE=stream(box, truncated))
    assert result.returncode == 1
    assert "FATAL: clone stream from mysql-0.mysql:3307 is incomplete" in result.stderr
    assert not box.datadir.exists() and not Path(f"{box.datadir}.clone-staging").exists()


def test_failed_prepare_stops_the_pod(box: Sandbox) -> None:
    result = box.run("clone-mysql.sh", "mysql-1", STUB_STREAM_FILE=stream(box, COMPLETE_STREAM), STUB_PREPARE_EXIT="1")
    assert result.returncode == 1 and "FATAL: xtrabackup --prepare failed" in result.stderr
    assert not box.datadir.exists()


def test_a_retry_after_a_failed_clone_starts_clean(box: Sandbox) -> None:
    failed = box.run("clone-mysql.sh", "mysql-1", STUB_STREAM_FILE=stream(box, ""), CLONE_CONNECT_ATTEMPTS="1")
    assert failed.returncode == 1
    result = box.run("clone-mysql.sh", "mysql-1", STUB_STREAM_FILE=stream(box, COMPLETE_STREAM))
    assert result.returncode == 0, result.stderr
    assert (box.datadir / "mysql").is_dir()


def test_clone_is_skipped_when_data_exists_or_on_the_primary(box: Sandbox) -> None:
    assert box.run("clone-mysql.sh", "mysql-0").returncode == 0
    assert not box.logged("socat.argv")
    (box.datadir / "mysql").mkdir(parents=True)
    result = box.run("clone-mysql.sh", "mysql-3")
    assert result.returncode == 0 and "already holds a server; no clone" in result.stderr
    assert not box.logged("socat.argv")


def test_clone_refuses_a_data_dir_with_foreign_content(box: Sandbox) -> None:
    box.datadir.mkdir()
    (box.datadir / "something").write_text("x")
    result = box.run("clone-mysql.sh", "mysql-1")
    assert result.returncode == 1 and "not empty but has no mysql/ schema" in result.stderr
    assert (box.datadir / "something").exists()


# ---------------------------------------------------------------- sidecar


MULTI_LINE_GTID = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:1-9"


def pending_clone(box: Sandbox, gtid: str = MULTI_LINE_GTID) -> Path:
    (box.datadir / "mysql").mkdir(parents=True, exist_ok=True)
    info = box.datadir / "xtrabackup_binlog_info"
    info.write_text(f"binlog.000002\t197\t{gtid}\n")
    return info


def sql_calls(box: Sandbox, client: str = "mysql") -> list[str]:
    """The statements sent, without the bare login checks (`SELECT 1`: which password is accepted)."""
    return [call for call in box.logged(f"{client}.sql").split("-- end of call\n")
            if call.strip() and call.strip() != "SELECT 1"]


def test_sidecar_starts_replication_at_most_once_across_restarts(box: Sandbox) -> None:
    info = pending_clone(box)
    first = box.run("sidecar.sh", "mysql-1")
    assert first.returncode == 0, first.stderr
    change = [call for call in sql_calls(box) if "CHANGE REPLICATION SOURCE" in call]
    assert len(change) == 1
    assert not info.exists() and Path(f"{info}.applied").exists()
    assert "serving backups on port 3307" in first.stderr

    box.clear_log()
    second = box.run("sidecar.sh", "mysql-1")  # the container restarted
    assert second.returncode == 0, second.stderr
    assert "no clone position pending" in second.stderr
    assert not [call for call in sql_calls(box) if "CHANGE" in call or "gtid_purged" in call]


def test_mysql_replication_statement(box: Sandbox) -> None:
    pending_clone(box)
    assert box.run("sidecar.sh", "mysql-2").returncode == 0
    batch = sql_calls(box)[-1]
    gtid = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,4e11fa47-71ca-11e1-9e33-c80aa9429562:1-9"
    assert f"SET GLOBAL gtid_purged = '{gtid}';" in batch  # the whole multi-line set, joined
    assert "RESET BINARY LOGS AND GTIDS;" in batch and "RESET MASTER" not in batch
    assert batch.index("SET GLOBAL super_read_only = OFF") < batch.index("gtid_purged") < batch.index(
        "SET GLOBAL super_read_only = ON")
    assert "SOURCE_HOST = 'mysql-0.mysql', SOURCE_PORT = 3306" in batch  # always the primary, not ordinal-1
    assert "SOURCE_USER = 'repl', SOURCE_PASSWORD = 'repl''pw 2'" in batch
    options = ("SOURCE_AUTO_POSITION = 1", "SOURCE_SSL = 1", f"SOURCE_SSL_CA = '{box.tls}/ca.crt'",
               "SOURCE_SSL_VERIFY_SERVER_CERT = 1", "SOURCE_RETRY_COUNT = 86400")
    for option in options:
        assert option in batch
    assert "GET_SOURCE_PUBLIC_KEY" not in batch  # the password travels inside verified TLS
    assert batch.index("STOP REPLICA") < batch.index("RESET REPLICA ALL") < batch.index("CHANGE") < batch.index(
        "START REPLICA")


def test_mysql_80_uses_reset_master(box: Sandbox) -> None:
    box.configure("mysql", "8.0")
    pending_clone(box)
    assert box.run("sidecar.sh", "mysql-1").returncode == 0
    assert "RESET MASTER;" in sql_calls(box)[-1]


def test_a_retry_never_moves_the_position_back(box: Sandbox) -> None:
    """The first attempt dies after setting gtid_purged; the retry finds the set covered and keeps it."""
    info = pending_clone(box)
    failed = box.run("sidecar.sh", "mysql-1", STUB_FAIL_CHANGE="1")
    assert failed.returncode == 1 and "FATAL: starting replication from the clone position failed" in failed.stderr
    assert info.exists()
    box.clear_log()
    retried = box.run("sidecar.sh", "mysql-1", STUB_COVERED="1")
    assert retried.returncode == 0, retried.stderr
    batch = sql_calls(box)[-1]
    assert "gtid_purged" not in batch and "RESET BINARY LOGS" not in batch
    assert "CHANGE REPLICATION SOURCE" in batch


def test_a_diverged_replica_is_not_reset(box: Sandbox) -> None:
    pending_clone(box)
    result = box.run("sidecar.sh", "mysql-1", STUB_SUBSET="0")
    assert result.returncode == 1 and "it has diverged" in result.stderr
    assert not [call for call in sql_calls(box) if "CHANGE" in call]


@pytest.mark.parametrize(("current", "sets_position"), [("", True), ("0-100-41", True), ("0-100-42", False)])
def test_mariadb_replication_statement(box: Sandbox, current: str, sets_position: bool) -> None:
    box.configure("mariadb", "10.11")
    pending_clone(box, "0-100-42")
    result = box.run("sidecar.sh", "mysql-1", STUB_CURRENT_POS=current)
    assert result.returncode == 0, result.stderr
    batch = sql_calls(box, "mariadb")[-1]
    assert ("SET GLOBAL gtid_slave_pos = '0-100-42';" in batch) is sets_position
    assert "CHANGE MASTER TO MASTER_HOST = 'mysql-0.mysql', MASTER_PORT = 3306" in batch
    assert f"MASTER_SSL = 1, MASTER_SSL_CA = '{box.tls}/ca.crt', MASTER_SSL_VERIFY_SERVER_CERT = 1" in batch
    assert "MASTER_USE_GTID = slave_pos" in batch
    assert batch.index("STOP SLAVE") < batch.index("CHANGE MASTER") < batch.index("START SLAVE")


def test_primary_sidecar_creates_accounts_without_exposing_passwords(box: Sandbox) -> None:
    result = box.run("sidecar.sh", "mysql-0")
    assert result.returncode == 0, result.stderr
    users = sql_calls(box)[-1]
    assert "CONVERT(X'7265706c2770772032' USING utf8mb4)" in users  # hex of "repl'pw 2"
    assert "CREATE USER IF NOT EXISTS" in users
    assert "replication, backup and verify accounts are in place" in result.stderr
    assert "user=root\npassword=\"r00t\\\"pa\\\\ss\"" in box.logged("mysql.cnf")  # escaped in the option file
    assert "serving backups" in result.stderr
    listen = box.logged("socat.argv")
    tls = box.clone_tls
    assert f"socat -U -b 1048576 OPENSSL-LISTEN:3307,reuseaddr,fork,max-children=1,{tls} EXEC:bash " in listen
    assert listen.rstrip().endswith("sidecar.sh stream")


def test_passwords_never_appear_in_arguments_or_sql_text(box: Sandbox) -> None:
    pending_clone(box)
    assert box.run("sidecar.sh", "mysql-0").returncode == 0
    assert box.run("sidecar.sh", "mysql-1").returncode == 0
    assert box.run("sidecar.sh", "mysql-1", "stream").returncode == 0
    argv = "".join(box.logged(f"{tool}.argv") for tool in STUB_NAMES)
    [users_sql] = [call for call in sql_calls(box) if "CREATE USER" in call]
    assert "@verify_password" in users_sql
    for value in PASSWORDS.values():
        assert value not in argv
        assert value not in users_sql
    # Only root's (option file) and repl's (CHANGE ... SOURCE_PASSWORD, on stdin) ever travel
    # as text; the verify password reaches the server as hex only, in any engine.
    everything = argv + box.logged("mysql.sql") + "".join(box.logged(f"{tool}.cnf") for tool in STUB_NAMES)
    assert PASSWORDS["verify-password"] not in everything
    assert PASSWORDS["verify-password"].encode().hex() in users_sql


def test_stream_mode_runs_the_backup_with_a_private_option_file(box: Sandbox) -> None:
    result = box.run("sidecar.sh", "mysql-1", "stream", MYSQL_DATA_DIR="/data/dir")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "STREAM"  # only the backup reaches the peer's socket
    argv = box.logged("xtrabackup.argv").split()
    assert argv[1].startswith(f"--defaults-extra-file={box.tmp}/backup-client.")  # must come first
    for option in ("--backup", "--stream=xbstream", "--datadir=/data/dir"):
        assert option in argv
    assert "user=backup" in box.logged("xtrabackup.cnf")
    assert not list(box.tmp.iterdir())  # the option file is gone


def test_failed_backup_stream_is_reported(box: Sandbox) -> None:
    result = box.run("sidecar.sh", "mysql-1", "stream", STUB_BACKUP_EXIT="1")
    assert result.returncode == 1 and "FATAL: backup stream failed" in result.stderr


@pytest.mark.parametrize(("engine", "version"), ALL_VERSIONS)
def test_primary_sidecar_sets_every_password_variable_before_the_accounts_sql(
    box: Sandbox, engine: str, version: str
) -> None:
    box.configure(engine, version)
    result = box.run("sidecar.sh", "mysql-0")
    assert result.returncode == 0, result.stderr
    batch = sql_calls(box, mysql_config.tools(engine).client)[-1]
    variables = {"root_password": "root-password", "replication_password": "replication-password",
                 "backup_password": "backup-password", "verify_password": "verify-password",
                 "exporter_password": "exporter-password"}
    head = [f"SET @{name} = CONVERT(X'{PASSWORDS[key].encode().hex()}' USING utf8mb4);"
            for name, key in variables.items()]
    # Exactly the variables, then users.sql verbatim: the same text for every run, rotation included.
    assert batch == "\n".join(head) + "\n" + (box.config / "users.sql").read_text()


def test_rerunning_the_primary_sidecar_rotates_the_verify_password(box: Sandbox) -> None:
    assert box.run("sidecar.sh", "mysql-0").returncode == 0
    (box.secrets / "verify-password").write_text("rotated-verify-pw")
    assert box.run("sidecar.sh", "mysql-0").returncode == 0  # the container restarted after a rollout
    first, second = sql_calls(box)[-2:]
    new = "SET @verify_password = CONVERT(X'" + b"rotated-verify-pw".hex() + "' USING utf8mb4);"
    assert new in second and new not in first
    assert "ALTER USER ''verify''@''%'' IDENTIFIED BY ', QUOTE(@verify_password)" in second


@pytest.mark.parametrize("key", ["replication-password", "backup-password", "verify-password", "exporter-password"])
def test_a_missing_account_secret_stops_the_primary_sidecar_before_any_sql(box: Sandbox, key: str) -> None:
    (box.secrets / key).unlink()
    result = box.run("sidecar.sh", "mysql-0")
    assert result.returncode == 1
    assert f"FATAL: secret {box.secrets}/{key} is missing or empty" in result.stderr
    assert not [call for call in sql_calls(box) if "CREATE USER" in call or "@verify_password" in call]
    assert not box.logged("socat.argv")  # never serves backups without its accounts


def test_the_primary_sidecar_never_provisions_the_images_temporary_server(box: Sandbox) -> None:
    """The entrypoints' init server runs with --skip-networking on the same socket: the sidecar waits."""
    result = box.run("sidecar.sh", "mysql-0", STUB_SKIP_NETWORKING="1", WAIT_TIMEOUT="2")
    assert result.returncode == 1
    assert "is the image's temporary init server (skip_networking=1); waiting for the final one" in result.stderr
    assert "or only as the image's temporary init server (skip_networking=1)" in result.stderr
    assert not [call for call in sql_calls(box) if "CREATE USER" in call]
    assert box.run("sidecar.sh", "mysql-0").returncode == 0  # the final server (skip_networking=0)
    assert [call for call in sql_calls(box) if "CREATE USER" in call]


def test_the_primary_sidecar_sets_roots_password_on_every_root_account(box: Sandbox) -> None:
    assert box.run("sidecar.sh", "mysql-0").returncode == 0
    batch = sql_calls(box)[-1]
    assert f"SET @root_password = CONVERT(X'{PASSWORDS['root-password'].encode().hex()}' USING utf8mb4);" in batch
    assert "FROM mysql.user WHERE User = 'root'" in batch and "QUOTE(@root_password)" in batch
    assert PASSWORDS["root-password"] not in batch


def rotate(box: Sandbox, key: str, value: str) -> str:
    """The kubelet's refresh of the mounted Secret; returns the value the server still accepts."""
    old = (box.secrets / key).read_text()
    (box.secrets / key).write_text(value)
    return old


def test_sidecar_records_what_the_server_accepts(box: Sandbox) -> None:
    state = box.tmp / "state"
    assert box.run("sidecar.sh", "mysql-0", MYSQL_STATE_DIR=str(state)).returncode == 0
    assert {p.name: p.read_text() for p in state.iterdir()} == PASSWORDS
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert {oct(p.stat().st_mode & 0o777) for p in state.iterdir()} == {"0o600"}


def test_readiness_logs_in_with_the_applied_password_until_the_rotation_reaches_the_server(box: Sandbox) -> None:
    state = box.tmp / "state"
    assert box.run("sidecar.sh", "mysql-0", MYSQL_STATE_DIR=str(state)).returncode == 0
    old = rotate(box, "backup-password", "new-backup-pw")
    box.clear_log()
    # The server has not applied the new value: the mounted one is refused, the applied one works.
    result = box.run("readiness.sh", "mysql-0", MYSQL_STATE_DIR=str(state), STUB_DENY="new-backup-pw")
    assert result.returncode == 0, result.stdout + result.stderr
    assert box.logged("mysql.cnf").rstrip().endswith(f'password="{old}"')
    # Without the applied value (as before rotation was supported) the same moment is an outage.
    lost = box.run("readiness.sh", "mysql-0", MYSQL_STATE_DIR=str(box.tmp / "none"), STUB_DENY="new-backup-pw")
    assert lost.returncode == 1 and "primary does not answer" in lost.stdout
    # Once applied, the mounted value is used and the old one never tried.
    box.clear_log()
    assert box.run("readiness.sh", "mysql-0", MYSQL_STATE_DIR=str(state), STUB_DENY=old).returncode == 0
    assert f'password="{old}"' not in box.logged("mysql.cnf")


@pytest.mark.parametrize(("engine", "version", "read_only"), [("mysql", "8.4", "super_read_only"),
                                                           ("mariadb", "10.11", "read_only")])
def test_prestop_stops_writes_then_closes_every_binlog_dump_connection(
    box: Sandbox, engine: str, version: str, read_only: str
) -> None:
    box.configure(engine, version)
    result = box.run("prestop.sh", "mysql-0", STUB_DUMP_IDS="7 x;9 11")
    assert result.returncode == 0, result.stderr
    calls = sql_calls(box, mysql_config.tools(engine).client)
    assert calls[0] == f"SET SESSION lock_wait_timeout = 5;\nSET GLOBAL {read_only} = ON;\n"
    assert "COMMAND LIKE 'Binlog Dump%'" in calls[1]
    assert calls[2:] == ["KILL CONNECTION 7;\n", "KILL CONNECTION 11;\n"]  # never what is no thread id
    assert f"{read_only} is ON" in result.stderr and "closed 2 binlog dump connection(s)" in result.stderr


def test_prestop_goes_on_when_the_server_does_not_answer(box: Sandbox) -> None:
    result = box.run("prestop.sh", "mysql-0", STUB_DOWN="1")
    assert result.returncode == 0
    assert "could not set super_read_only" in result.stderr and "could not list the binlog dump" in result.stderr


def test_prestop_is_bounded_even_when_the_server_hangs(box: Sandbox) -> None:
    began = time.monotonic()
    result = box.run("prestop.sh", "mysql-0", STUB_HANG="1", PRESTOP_TIMEOUT_SECONDS="1")
    assert result.returncode == 124  # timeout(1): the kubelet goes on to SIGTERM
    assert time.monotonic() - began < 10


def test_the_sidecar_ends_when_its_maintenance_loop_does(box: Sandbox) -> None:
    """Rotation and the binlog bound run next to the listener: if that loop dies, the container must
    restart rather than serve backups with nothing applying a rotated Secret."""
    began = time.monotonic()
    result = box.run("sidecar.sh", "mysql-0", STUB_LISTEN_BLOCK="1", SIDECAR_CHECK_SECONDS="not-a-number")
    assert result.returncode != 0
    assert "the maintenance loop ended" in result.stderr and "stopping the backup listener" in result.stderr
    assert time.monotonic() - began < 20  # the listener (a 30 s stub) was stopped, not waited for


def test_missing_secret_fails_clearly(box: Sandbox) -> None:
    (box.secrets / "replication-password").unlink()
    result = box.run("sidecar.sh", "mysql-0")
    assert result.returncode == 1
    assert f"FATAL: secret {box.secrets}/replication-password is missing or empty" in result.stderr


def test_sidecar_gives_up_when_the_server_never_answers(box: Sandbox) -> None:
    pending_clone(box)
    result = box.run("sidecar.sh", "mysql-1", STUB_DOWN="1", WAIT_TIMEOUT="1")
    assert result.returncode == 1 and "did not answer within 1s" in result.stderr


# ---------------------------------------------------------------- probes


def status(io: str, sql: str, prefix: str = "Replica") -> str:
    return (
        "*************************** 1. row ***************************\n"
        f"             {prefix}_IO_State: Waiting for source to send event\n"
        f"           {prefix}_IO_Running: {io}\n"
        f"          {prefix}_SQL_Running: {sql}\n"
        "       Seconds_Behind_Source: 0\n"
    )


@pytest.mark.parametrize(
    ("io", "sql", "ready"),
    [("Yes", "Yes", True), ("Connecting", "Yes", True), ("No", "Yes", False), ("Yes", "No", False),
     ("No", "No", False)],
)
@pytest.mark.parametrize(("engine", "version", "prefix"), [("mysql", "8.4", "Replica"), ("mariadb", "10.11", "Slave")])
def test_replica_readiness_follows_the_replication_threads(
    box: Sandbox, io: str, sql: str, ready: bool, engine: str, version: str, prefix: str
) -> None:
    box.configure(engine, version)
    result = box.run("readiness.sh", "mysql-1", STUB_REPLICA_STATUS=status(io, sql, prefix))
    assert (result.returncode == 0) is ready
    if not ready:
        assert f"replication threads stopped: IO={io} SQL={sql}" in result.stdout
    assert "user=backup" in box.logged(f"{mysql_config.tools(engine).client}.cnf")


def test_replica_without_replication_is_not_ready(box: Sandbox) -> None:
    result = box.run("readiness.sh", "mysql-1", STUB_REPLICA_STATUS="")
    assert result.returncode == 1 and "replication is not configured" in result.stdout


def test_primary_readiness_is_a_query(box: Sandbox) -> None:
    assert box.run("readiness.sh", "mysql-0").returncode == 0
    assert "SELECT 1" in box.logged("mysql.sql")
    down = box.run("readiness.sh", "mysql-0", STUB_DOWN="1")
    assert down.returncode == 1 and "primary does not answer" in down.stdout


@pytest.mark.parametrize(
    ("engine", "version", "admin"), [("mysql", "8.0", "mysqladmin"), ("mariadb", "11.4", "mariadb-admin")]
)
def test_liveness_is_an_admin_ping(box: Sandbox, engine: str, version: str, admin: str) -> None:
    box.configure(engine, version)
    assert box.run("liveness.sh", "mysql-3").returncode == 0
    argv = box.logged(f"{admin}.argv")
    assert argv.rstrip().endswith("ping") and "--defaults-extra-file=" in argv


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def test_sidecar_probe_checks_the_listening_socket_without_connecting(box: Sandbox, listening_port: int) -> None:
    assert box.run("sidecar-ready.sh", "mysql-1", CLONE_PORT=str(listening_port)).returncode == 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # bound, not listening
        result = box.run("sidecar-ready.sh", "mysql-1", CLONE_PORT=str(closed_port))
    assert result.returncode == 1 and "nothing listens" in result.stdout


def test_unknown_engine_is_refused_by_the_scripts(box: Sandbox) -> None:
    result = box.run("init-mysql.sh", "mysql-1", MYSQL_ENGINE="oracle")
    assert result.returncode == 1 and "MYSQL_ENGINE=oracle: allowed values are mysql, mariadb" in result.stderr


def test_scripts_default_to_the_container_paths(box: Sandbox) -> None:
    env = {key: value for key, value in box.env("mysql-1").items()
           if not key.startswith("MYSQL_") or key == "MYSQL_ENGINE"}
    program = (
        f'source "{box.config}/common.sh"; '
        'printf "%s\\n" "$MYSQL_DATA_DIR" "$MYSQL_CONF_DIR" "$MYSQL_CONFIG_DIR" "$MYSQL_SECRETS_DIR" '
        '"$MYSQL_SOCKET" "$CLONE_PORT" "$(peer_host 4)" "$(peer_mysql_port 4)" "$(peer_clone_port 4)"'
    )
    bash = shutil.which("bash") or "/bin/bash"
    result = subprocess.run([bash, "-c", program], env=env, capture_output=True, text=True, check=False, timeout=30)
    assert result.stdout.split() == [
        "/var/lib/mysql", "/etc/mysql/conf.d", mysql_config.CONFIG_MOUNT, "/etc/mysql-secrets",
        "/var/run/mysqld/mysqld.sock", "3307", "mysql-4.mysql", "3306", "3307",
    ]


# ---------------------------------------------------------------- clone threads and apply threads


def test_clone_extracts_with_the_configured_threads(box: Sandbox) -> None:
    result = box.run("clone-mysql.sh", "mysql-2", STUB_STREAM_FILE=stream(box, COMPLETE_STREAM), CLONE_PARALLEL="3")
    assert result.returncode == 0, result.stderr
    staging = f"{box.datadir}.clone-staging"
    assert box.logged("xbstream.argv").split() == ["xbstream", "-x", "--parallel=3", "-C", staging]
    box.clear_log()
    shutil.rmtree(box.datadir)
    assert box.run("clone-mysql.sh", "mysql-2", STUB_STREAM_FILE=stream(box, COMPLETE_STREAM)).returncode == 0
    assert "--parallel=1" in box.logged("xbstream.argv").split()  # unset: one thread, as before


def test_the_backup_stream_copies_with_the_configured_threads(box: Sandbox) -> None:
    result = box.run("sidecar.sh", "mysql-1", "stream", BACKUP_PARALLEL="4")
    assert result.returncode == 0, result.stderr
    assert "--parallel=4" in box.logged("xtrabackup.argv").split()
    assert "streaming a backup to a peer (4 copy threads)" in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "two", "1000", " 2"])
def test_thread_counts_that_are_no_whole_number_stop_the_scripts(box: Sandbox, value: str) -> None:
    clone = box.run("clone-mysql.sh", "mysql-2", STUB_STREAM_FILE=stream(box, COMPLETE_STREAM), CLONE_PARALLEL=value)
    assert clone.returncode == 1
    assert f"FATAL: CLONE_PARALLEL={value}: must be a whole number from 1 to 999" in clone.stderr
    assert not box.logged("socat.argv")  # refused before connecting
    sidecar = box.run("sidecar.sh", "mysql-1", BACKUP_PARALLEL=value)
    assert sidecar.returncode == 1
    assert f"FATAL: BACKUP_PARALLEL={value}: must be a whole number from 1 to 999" in sidecar.stderr
    assert not box.logged("socat.argv")  # never serves backups it cannot make


@pytest.mark.parametrize("threads", [0, 65, True])
def test_apply_threads_out_of_range_are_refused_by_the_renderer(threads: int) -> None:
    for engine, version in (("mysql", "8.4"), ("mariadb", "10.11")):
        with pytest.raises(ValueError, match="apply threads"):
            mysql_config.replica_cnf(engine, version, threads)


def test_clone_env_refuses_thread_counts_below_one() -> None:
    good = CloneSettings(Resources("1", "1Gi", "1", "1Gi"), Resources("1", "1Gi", "1", "1Gi"), 2, 3)
    assert mysql_config.clone_env(good) == {"sidecar": {"BACKUP_PARALLEL": "2"}, "clone-mysql": {"CLONE_PARALLEL": "3"}}
    for send, receive in ((0, 1), (1, 0), (True, 1)):
        with pytest.raises(ValueError, match="threads"):
            mysql_config.clone_env(replace(good, send_threads=send, receive_threads=receive))


@pytest.mark.parametrize(("engine", "version"), ALL_VERSIONS)
def test_every_member_serves_tls_and_refuses_plaintext_tcp(engine: str, version: str) -> None:
    for cnf in (mysql_config.primary_cnf(engine, version), mysql_config.replica_cnf(engine, version, APPLY)):
        lines = cnf.splitlines()
        for option in ("ssl_ca=/etc/mysql-tls/ca.crt", "ssl_cert=/etc/mysql-tls/tls.crt",
                       "ssl_key=/etc/mysql-tls/tls.key", "tls_version=TLSv1.2,TLSv1.3", "require_secure_transport=ON"):
            assert option in lines, (option, cnf)


@pytest.mark.parametrize("engine", ["mysql", "mariadb"])
def test_the_network_accounts_require_tls_and_the_socket_account_does_not(engine: str) -> None:
    users = mysql_config.users_sql(engine)
    for account in ("''repl''@''%''", "''verify''@''%''"):
        statements = [line for line in users.splitlines() if account in line]
        assert len(statements) == 2 and all(line.endswith(", ' REQUIRE SSL');") for line in statements), statements
    backup = [line for line in users.splitlines() if "''backup''@''localhost''" in line]
    assert len(backup) == 2 and not any("REQUIRE" in line for line in backup)
