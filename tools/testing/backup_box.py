"""The MySQL set's backup and restore scripts run on this machine, as one pod runs them.

    store = Store(bucket="b", prefix="p", endpoint=rgw.endpoint, access_key=..., secret_key=...)
    box = ScriptBox(tmp / "box", store)                 # the ConfigMap and the Secrets, as files
    source = box.source_server(tmp / "src")             # a primary with the set's accounts
    box.run("backup.sh", "20261201T000000Z", pod=box.pod("mysql-0", source))
    box.run("restore.sh", "fetch", pod=box.pod("mysql-0", datadir=...), RESTORE_FROM=...)

Used by `make restore-drill` (tools/restore_drill.py) and `make bench-backup`
(tools/bench/backup.py); the rehearsal tests run the same scripts through their own "pods".
MariaDB only: it is the engine this machine has (Debian's mariadb-server and mariadb-backup).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pymysql.constants import CLIENT

from components.facts import CLUSTER_DOMAIN
from components.workload.mysql import config as mysql_config
from tools.testing.mariadb import MARIADBD, MariaDBServer, require_mariadb
from tools.testing.mysql_pods import default_apply_threads
from tools.testing.pki import make_ca, write_tls_dir
from tools.testing.processes import free_port

ENGINE, VERSION = "mariadb", "10.11"
PASSWORD_KEYS = ("root-password", "replication-password", "backup-password", "verify-password", "exporter-password")


@dataclass(frozen=True)
class Store:
    """Where backups go, and the key for it (written to a 0600 file, never argv)."""

    bucket: str
    prefix: str
    access_key: str
    secret_key: str = field(repr=False)
    endpoint: str = ""
    region: str = "us-east-1"


@dataclass
class Pod:
    name: str
    datadir: Path
    socket: Path
    root: Path

    @property
    def ordinal(self) -> int:
        return int(self.name.rsplit("-", 1)[1])


class ScriptBox:
    """The ConfigMap's files and the Secrets' files in one directory."""

    def __init__(self, base: Path, store: Store, passwords: dict[str, str] | None = None) -> None:
        require_mariadb()
        self.base = Path(base)
        self.store = store
        self.config_dir = self.base / "configmap"
        self.secrets_dir = self.base / "secrets"
        self.key_dir = self.base / "s3-key"
        for directory in (self.config_dir, self.secrets_dir, self.key_dir):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o700)
        for name, text in mysql_config.config_map_data(ENGINE, VERSION, default_apply_threads()).items():
            (self.config_dir / name).write_text(text)
        # The set's TLS Secret: its servers run with require_secure_transport, as in the pods.
        self.tls_dir = write_tls_dir(self.base / "tls", make_ca("test MySQL set CA"),
                                     mysql_config.tls_certificate("mysql", "atomic-mysql", CLUSTER_DOMAIN))
        self.passwords = passwords or {key: secrets.token_urlsafe(18) for key in PASSWORD_KEYS}
        for name, value in self.passwords.items():
            self._private(self.secrets_dir / name, value)
        self._private(self.key_dir / "access-key-id", store.access_key)
        self._private(self.key_dir / "secret-access-key", store.secret_key)

    @staticmethod
    def _private(path: Path, text: str) -> None:
        path.touch(mode=0o600)
        path.write_text(text)

    def pod(self, name: str, root: Path) -> Pod:
        root.mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)
        (root / "conf.d").mkdir(exist_ok=True)
        return Pod(name, root / "volume" / "mysql", root / "server" / "mariadbd.sock", root)

    def env(self, pod: Pod, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env.update({
            "MYSQL_ENGINE": ENGINE, "MYSQL_VERSION": VERSION, "MYSQL_SET_NAME": "mysql", "POD_NAME": pod.name,
            "MYSQL_DATA_DIR": str(pod.datadir), "MYSQL_CONF_DIR": str(pod.root / "conf.d"),
            "MYSQL_CONFIG_DIR": str(self.config_dir), "MYSQL_SECRETS_DIR": str(self.secrets_dir),
            "MYSQL_SOCKET": str(pod.socket), "TMPDIR": str(pod.root / "tmp"), "CLIENT_CNF_DIR": str(pod.root / "tmp"),
            "BACKUP_BUCKET": self.store.bucket, "BACKUP_PREFIX": self.store.prefix,
            "BACKUP_ENDPOINT": self.store.endpoint, "BACKUP_REGION": self.store.region,
            "BACKUP_KEY_DIR": str(self.key_dir), "S3_TOOLS_DIR": str(self.base / "no-s3-tools"),
            "MYSQLD": str(MARIADBD), "RESTORE_MYSQLD_ARGS": "--user=root" if os.geteuid() == 0 else "",
            "PEER_HOST_PATTERN": "127.0.0.1", "WAIT_TIMEOUT": "60", "MYSQL_TLS_DIR": str(self.tls_dir),
        })
        env.update(extra)
        return env

    def run(self, script: str, *args: str, pod: Pod, timeout: float = 3600, **extra: str
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(self.config_dir / script), *args], env=self.env(pod, **extra),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def must(self, script: str, *args: str, pod: Pod, **extra: str) -> str:
        result = subprocess.run(["bash", str(self.config_dir / script), *args], env=self.env(pod, **extra),
                                capture_output=True, text=True, timeout=3600, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{script} {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result.stderr

    # ---------------------------------------------------------------- servers

    def server(self, pod: Pod, *, initialize: bool) -> MariaDBServer:
        """mariadbd for the pod, configured as init-mysql.sh chose (role and server id)."""
        self.must("init-mysql.sh", pod=pod)
        cnf = "".join(path.read_text() for path in sorted((pod.root / "conf.d").glob("*.cnf")))
        server = MariaDBServer(pod.root / "server", free_port(), mysql_config.server_id(pod.ordinal), cnf,
                               datadir=pod.datadir, root_password=self.passwords["root-password"], name=pod.name,
                               tls_dir=self.tls_dir)
        server.socket = pod.socket
        if initialize:
            server.root_password = None
            server.initialize()
            server.start()
            server.set_root_password(self.passwords["root-password"])
        else:
            server.start()
        return server

    def source(self, root: Path) -> tuple[Pod, MariaDBServer]:
        """A primary (mysql-0) with the set's accounts, as its sidecar leaves it."""
        pod = self.pod("mysql-0", root)
        server = self.server(pod, initialize=True)
        variables = "".join(
            f"SET @{key.replace('-', '_')} = CONVERT(X'{self.passwords[key].encode().hex()}' USING utf8mb4);\n"
            for key in PASSWORD_KEYS)  # root's too: users.sql sets every root account's password
        sql = variables + (self.config_dir / "users.sql").read_text()
        with server.connect(client_flag=CLIENT.MULTI_STATEMENTS) as conn, conn.cursor() as cursor:
            cursor.execute(sql)
            while cursor.nextset():
                pass
        return pod, server
