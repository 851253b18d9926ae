"""The MySQL set's pods as real processes on loopback: its own rendered config and scripts, run as
the StatefulSet runs them, on real MariaDB 10.11 + mariadb-backup.

    rendered = render_set("local", {"mysqlVersion": "10.11"})   # the program under mocks
    group = RehearsalSet(tmp_path, rendered)
    group.boot(0)                                               # init-mysql, the image's init, sidecar
    group.boot(1)                                               # init-mysql, clone-mysql from -0, sidecar
    ...
    group.close()

`render_set` runs the whole program offline and takes from the plan what the pods get: the
ConfigMap's files (the cnf fragments, users.sql, the scripts) and the plain environment of each
container of the StatefulSet (e.g. MYSQL_ENGINE, the clone's BACKUP_PARALLEL/CLONE_PARALLEL).
Each "pod" is one mariadbd plus the scripts, run in the StatefulSet's order: init-mysql.sh,
clone-mysql.sh, the server, then sidecar.sh in the background; a pod counts as ready when
readiness.sh and sidecar-ready.sh both pass (the kubelet's view), and the next ordinal only
starts then (OrderedReady). A script runs with its container's rendered environment, plus what
the harness owns because the pods share one host here: paths, ports and peer addresses.

Stand-ins for what Kubernetes or the image does: the server image's entrypoint (mariadb-install-db
and a root password on ordinal 0's empty data dir; with `temporary_server=True`, also its temporary
init server: --skip-networking on the pod's socket while the sidecar already runs, then the final
one), the kubelet (ordering, probes, preStop before SIGTERM, each pod's own copy of the Secret,
refreshed when a test says: `RehearsalSet.update_secret`), DNS (every peer
is 127.0.0.1 with per-ordinal ports, PEER_*_PORTS), the data dir of a deleted pod staying on disk
(PVC retention), and pulumi-tls (the set's CA and certificate issued here with `cryptography` from
the names config.tls_certificate plans, in one directory standing in for the TLS Secret's mount).
Everything else is real: mariadb-backup streams over socat (mutual TLS) from the previous ordinal,
mbstream extracts, mariadb-backup prepares, the sidecar starts GTID replication over verified TLS.

Used by tests/components/workload/mysql/test_rehearsal.py and tools/bench/clone.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from components.facts import CLUSTER_DOMAIN
from components.workload.mysql import config as mysql_config
from tools.harness.offline import run_program
from tools.harness.pulumi_project import load_project
from tools.testing.mariadb import MARIADBD, MariaDBServer
from tools.testing.pki import Ca, make_ca, write_tls_dir
from tools.testing.processes import free_ports, own_session_dying_with_parent

SET_NAME = "mysql"
MAX_PODS = 5
READY_TIMEOUT = 90
# The engine the harness's servers run: Debian's MariaDB 10.11 (render the set for it).
ENGINE, VERSION = "mariadb", "10.11"
# Awkward on purpose: quotes, backslash, '#' and spaces must survive the option files and SQL.
PASSWORDS = {
    "root-password": "Ro\"ot\\pa'ss #1",
    "replication-password": "re'pl;pw \"x\"",
    "backup-password": "b@ck\\up#pw",
    # ASCII only: PyMySQL sends passwords latin1-encoded, the server hashes the UTF-8 bytes.
    "verify-password": "ve'ri\\fy #\"pw\" 4",
    "exporter-password": "ex#po;rt'er \\pw 5",
}
# Which container of the pod runs which script (its rendered environment applies).
SCRIPT_CONTAINERS = {
    "init-mysql.sh": "init-mysql",
    "clone-mysql.sh": "clone-mysql",
    "sidecar.sh": "sidecar",
    "sidecar-ready.sh": "sidecar",
    "readiness.sh": "mysql",
    "liveness.sh": "mysql",
    "prestop.sh": "mysql",
}


def default_apply_threads() -> int:
    """mysqlReplicaApplyThreads as Pulumi.yaml declares it (the only home of defaults), for servers
    built from the renderers directly (config.replica_cnf) rather than from a rendered stack."""
    project = load_project()
    return int(project.schema[f"{project.name}:mysqlReplicaApplyThreads"].default)


@dataclass(frozen=True)
class RenderedSet:
    """What the StatefulSet of one stack hands its pods, read from the offline plan."""

    stack: str
    config_map: dict[str, str]
    env: dict[str, dict[str, str]]  # container name -> the env vars with plain values
    resources: dict[str, dict[str, Any]]  # container name -> requests/limits

    @property
    def engine(self) -> str:
        return self.env["mysql"]["MYSQL_ENGINE"]

    @property
    def version(self) -> str:
        return self.env["mysql"]["MYSQL_VERSION"]


def render_set(stack: str = "local", overrides: Mapping[str, Any] | None = None) -> RenderedSet:
    """Run the program for `stack` under mocks and read the MySQL set's ConfigMap and containers."""
    plan = run_program(stack, overrides)
    objects = plan.kubernetes_objects()
    (stateful_set,) = [o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == SET_NAME]
    spec = stateful_set["spec"]["template"]["spec"]
    config_name = next(v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v)
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == config_name]
    containers = [*spec["initContainers"], *spec["containers"]]
    return RenderedSet(
        stack=stack,
        config_map=dict(config_map["data"]),
        env={c["name"]: {e["name"]: e["value"] for e in c.get("env", []) if "value" in e} for c in containers},
        resources={c["name"]: c["resources"] for c in containers},
    )


class Pod:
    """One member of the rehearsed set: its directories, ports, server and sidecar."""

    def __init__(self, group: RehearsalSet, ordinal: int) -> None:
        self.group = group
        self.ordinal = ordinal
        self.name = f"{SET_NAME}-{ordinal}"
        self.root = group.base / self.name
        self.datadir = self.root / "volume" / "mysql"  # the PVC's subPath, as in the pod
        self.conf_dir = self.root / "conf.d"            # the emptyDir
        self.tmp = self.root / "tmp"
        self.server: MariaDBServer | None = None
        self.sidecar: subprocess.Popen[bytes] | None = None
        self.sidecar_log = self.root / "sidecar.log"
        # The pod's copy of the credentials Secret (the kubelet refreshes each pod's on its own sync) and
        # the memory emptyDir the sidecar records the applied credentials in (gone with the pod).
        self.secrets_dir = self.root / "secrets"
        self.state_dir = self.root / "run" / "set-credentials"
        # What the image's temporary init server executed while the sidecar ran (init_phase).
        self.temporary_server_statements: dict[str, int] = {}
        # The TLS Secret as this pod mounts it: a copy of the set's, so that a test can give one pod
        # another certificate (replace_certificate) as a compromised or misissued Secret would.
        self.tls_dir = self.root / "tls"

    def env(self, container: str = "mysql", **extra: str) -> dict[str, str]:
        """The container's rendered environment, then what the harness owns (paths, ports, peers)."""
        assert self.server is not None
        env = dict(os.environ)
        env.update(self.group.rendered.env[container])
        env.update(
            {
                "POD_NAME": self.name,
                "MYSQL_DATA_DIR": str(self.datadir),
                "MYSQL_CONF_DIR": str(self.conf_dir),
                "MYSQL_CONFIG_DIR": str(self.group.config_dir),
                "MYSQL_SECRETS_DIR": str(self.secrets_dir),
                "MYSQL_STATE_DIR": str(self.state_dir),
                "MYSQL_TLS_DIR": str(self.tls_dir),
                "MYSQL_SOCKET": str(self.server.socket),
                "CLONE_PORT": str(self.group.clone_ports[self.ordinal]),
                "CLONE_BIND_ADDRESS": "127.0.0.1",
                "PEER_HOST_PATTERN": "127.0.0.1",
                "PEER_MYSQL_PORTS": " ".join(map(str, self.group.mysql_ports)),
                "PEER_CLONE_PORTS": " ".join(map(str, self.group.clone_ports)),
                "CLONE_CONNECT_ATTEMPTS": "3",
                "CLONE_RETRY_DELAY": "1",
                "WAIT_TIMEOUT": "60",
                "TMPDIR": str(self.tmp),
                "CLIENT_CNF_DIR": str(self.tmp),
                # Seconds here where the pod waits minutes (the kubelet's refresh of every pod's copy).
                "SIDECAR_CHECK_SECONDS": "1",
                "ROTATION_DELAY_SECONDS": str(self.group.rotation_delay),
            }
        )
        env.update(extra)
        return env

    def script(self, name: str, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.group.config_dir / name), *args],
            env=self.env(SCRIPT_CONTAINERS[name], **extra), capture_output=True, text=True, timeout=timeout,
            check=False,
        )

    def must(self, name: str, **extra: str) -> str:
        result = self.script(name, timeout=600, **extra)
        assert result.returncode == 0, f"{self.name} {name} failed ({result.returncode}):\n{result.stderr}"
        return result.stderr

    # ------------------------------------------------------------------ lifecycle

    def prepare(self) -> None:
        """Directories and the server object (paths and ports only), then init-mysql.sh."""
        for path in (self.root, self.conf_dir, self.tmp, self.datadir.parent):
            path.mkdir(parents=True, exist_ok=True)
        if not self.tls_dir.exists():
            shutil.copytree(self.group.tls_dir, self.tls_dir)
        if not self.secrets_dir.exists():
            shutil.copytree(self.group.secrets_dir, self.secrets_dir)
        self.server = MariaDBServer(
            self.root / "server", self.group.mysql_ports[self.ordinal], mysql_config.server_id(self.ordinal),
            datadir=self.datadir, root_password=PASSWORDS["root-password"], name=self.name,
            tls_dir=self.tls_dir,
        )
        self.must("init-mysql.sh")
        self.server.cnf = self._cnf_from_conf_dir()

    def boot(self, temporary_server: bool = False) -> None:
        """init-mysql, clone-mysql, mysqld, sidecar; then wait until the pod is ready."""
        self.prepare()
        assert self.server is not None
        self.must("clone-mysql.sh")
        if not (self.datadir / "mysql").is_dir():
            # The image entrypoint's job on ordinal 0's empty volume.
            assert self.ordinal == 0, f"{self.name}: clone-mysql left no data dir"
            self.server.root_password = None
            self.server.initialize()
            self.server.start()
            self.server.set_root_password(self.root_password)
            if temporary_server:
                self.server.stop()
                self.init_phase()
                self.server.start()
        else:
            self.server.start()
        if self.sidecar is None:
            self.start_sidecar()
        self.wait_ready()

    @property
    def root_password(self) -> str:
        return (self.secrets_dir / "root-password").read_text()

    def init_phase(self, hold: float = 5) -> None:
        """The entrypoint's temporary server, as docker_temp_server_start runs it: the pod's own config
        plus --skip-networking, on the pod's socket, root's password already set (the entrypoint's first
        statement there; here set before, on a networked start, since the harness's root logs in over
        TCP). The sidecar starts meanwhile, as a pod's containers do; the server runs for `hold`
        seconds and shuts down. What it executed (Com_* counters) lands in temporary_server_statements."""
        assert self.server is not None
        self.server.write_cnf()
        log = (self.root / "temporary-server.log").open("ab")
        process = subprocess.Popen([str(MARIADBD), f"--defaults-file={self.server.defaults_file}", "--skip-networking"],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=own_session_dying_with_parent)
        try:
            self.start_sidecar()
            deadline = time.monotonic() + 60
            while not self.temporary_server_statements:
                try:
                    with pymysql.connect(unix_socket=str(self.server.socket), user="root", password=self.root_password,
                                         connect_timeout=2) as conn, conn.cursor() as cursor:
                        cursor.execute("SELECT @@skip_networking")
                        assert cursor.fetchone() == (1,)
                        time.sleep(hold)
                        cursor.execute("SHOW GLOBAL STATUS WHERE Variable_name IN "
                                       "('Com_create_user', 'Com_alter_user', 'Com_grant', 'Com_stmt_execute')")
                        self.temporary_server_statements = {name: int(value) for name, value in cursor.fetchall()}
                except pymysql.err.OperationalError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.2)
        finally:
            process.terminate()
            process.wait(60)
            log.close()

    def _cnf_from_conf_dir(self) -> str:
        role = "primary.cnf" if self.ordinal == 0 else "replica.cnf"
        server_id_cnf = (self.conf_dir / "server-id.cnf").read_text()
        match = re.search(r"^server_id=(\d+)$", server_id_cnf, re.M)
        assert match and int(match.group(1)) == 100 + self.ordinal, server_id_cnf
        assert sorted(p.name for p in self.conf_dir.iterdir()) == sorted([role, "server-id.cnf"])
        return (self.conf_dir / role).read_text() + server_id_cnf

    def replace_certificate(self, signer: Ca | None = None, certificate: mysql_config.TlsCertificate | None = None,
                            ) -> None:
        """This pod's tls.crt/tls.key issued by `signer` (default: the set's CA) for `certificate` (default:
        the set's names), its ca.crt still the set's; takes effect when its server and sidecar restart."""
        write_tls_dir(self.tls_dir, self.group.ca, certificate or self.group.certificate, signer=signer)

    def start_sidecar(self, **extra: str) -> None:
        with self.sidecar_log.open("ab") as log:
            self.sidecar = subprocess.Popen(
                ["bash", str(self.group.config_dir / "sidecar.sh")],
                env=self.env("sidecar", **extra), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                # Own process group: socat and its backup children are stopped together.
                preexec_fn=own_session_dying_with_parent,
            )

    def stop_sidecar(self) -> None:
        if self.sidecar is not None:
            if self.sidecar.poll() is None:
                os.killpg(self.sidecar.pid, signal.SIGTERM)
                try:
                    self.sidecar.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.sidecar.pid, signal.SIGKILL)
                    self.sidecar.wait(10)
            self.sidecar = None

    def delete(self) -> None:
        """What deleting the pod does: containers stop (mysqld after its preStop), the memory
        emptyDirs go, the volume (data dir) stays."""
        self.stop_sidecar()
        if self.server is not None:
            if self.server.running:
                self.script("prestop.sh", timeout=60)
            self.server.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def restart(self) -> None:
        """A rolling update's replacement of this pod: deleted, then started again with the Secret's
        current values (a new pod mounts the Secret afresh), and ready."""
        self.delete()
        shutil.rmtree(self.secrets_dir)
        shutil.copytree(self.group.secrets_dir, self.secrets_dir)
        assert self.server is not None
        self.server.root_password = self.root_password
        self.server.start()
        self.start_sidecar()
        self.wait_ready()

    def refresh_secret(self) -> None:
        """The kubelet's refresh of this running pod's copy of the Secret."""
        for path in self.group.secrets_dir.iterdir():
            (self.secrets_dir / path.name).write_text(path.read_text())

    def probe(self, name: str) -> subprocess.CompletedProcess[str]:
        return self.script(name, timeout=20)

    def ready(self) -> bool:
        return self.probe("readiness.sh").returncode == 0 and self.probe("sidecar-ready.sh").returncode == 0

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            if self.sidecar is not None and self.sidecar.poll() is not None:
                break
            time.sleep(0.5)
        readiness = self.probe("readiness.sh")
        raise AssertionError(
            f"{self.name} not ready: readiness={readiness.returncode} {readiness.stdout.strip()!r}; "
            f"sidecar log:\n{self.sidecar_log.read_text(errors='replace')[-3000:]}\n"
            f"server log:\n{self.server.log_tail() if self.server else ''}"
        )


class RehearsalSet:
    """The pods of one set, sharing the rendered ConfigMap (written to a directory) and the Secret."""

    def __init__(self, base: Path, rendered: RenderedSet, rotation_delay: int = 3) -> None:
        if (rendered.engine, rendered.version) != (ENGINE, VERSION):
            raise ValueError(f"the harness runs {ENGINE} {VERSION}; render the set for it "
                             f"(got {rendered.engine} {rendered.version}: --set mysqlVersion={VERSION})")
        self.base = base
        self.rendered = rendered
        self.rotation_delay = rotation_delay  # the pods' ROTATION_DELAY_SECONDS
        self.config_dir = base / "configmap"
        self.secrets_dir = base / "secrets"
        ports = free_ports(2 * MAX_PODS)
        self.mysql_ports, self.clone_ports = ports[:MAX_PODS], ports[MAX_PODS:]
        self.pods: dict[int, Pod] = {}
        self.config_dir.mkdir(parents=True)
        for name, text in rendered.config_map.items():
            (self.config_dir / name).write_text(text)
        self.secrets_dir.mkdir()
        for name, value in PASSWORDS.items():
            (self.secrets_dir / name).write_text(value)
        # The set's TLS Secret: a CA of its own and the certificate config.tls_certificate plans (real,
        # where the preview has placeholders), mounted at one path for every "pod".
        self.ca = make_ca("test MySQL set CA")
        self.certificate = mysql_config.tls_certificate(SET_NAME, "atomic-mysql", CLUSTER_DOMAIN)
        self.tls_dir = write_tls_dir(base / "tls", self.ca, self.certificate)

    def update_secret(self, key: str, value: str, refresh: bool = True) -> None:
        """The credentials Secret changed in the API; `refresh`: every running pod's copy follows at once."""
        (self.secrets_dir / key).write_text(value)
        if refresh:
            for pod in self.pods.values():
                pod.refresh_secret()

    def pod(self, ordinal: int) -> Pod:
        pod = self.pods.get(ordinal) or Pod(self, ordinal)
        self.pods[ordinal] = pod
        return pod

    def boot(self, ordinal: int, temporary_server: bool = False) -> Pod:
        """Start `mysql-<ordinal>` (OrderedReady: every lower ordinal must be ready)."""
        for lower in range(ordinal):
            assert lower in self.pods and self.pods[lower].ready(), f"mysql-{lower} must be ready first"
        pod = self.pod(ordinal)
        pod.boot(temporary_server)
        return pod

    def delete(self, ordinal: int) -> None:
        self.pods[ordinal].delete()

    def close(self) -> None:
        for ordinal in sorted(self.pods, reverse=True):
            self.pods[ordinal].delete()

    @property
    def primary(self) -> MariaDBServer:
        server = self.pods[0].server
        assert server is not None
        return server
