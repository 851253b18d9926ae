"""A real Kubernetes control plane on loopback, booted from a stack's own rendered user-data.

For each master of the stack (the program run under the offline harness, as `make preview`
does) it takes the #cloud-config EC2 would be given, writes the files cloud-init would write under
a temporary root, moves the masters' addresses to a loopback /24 of their own (so that several
masters, and several test runs, share this machine), issues for real every certificate the
node's PKI plan asks for, and starts what systemd would start, with the command lines of the
rendered drop-ins: etcd (Debian's, from /etc/etcd/etcd.conf), kube-apiserver,
kube-controller-manager and kube-scheduler (the binaries of tools/testing/kube_binaries.py).
Every process is stopped by PID; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import socket
import subprocess
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3

from components.facts import API_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT
from components.node.layout import ClusterLayout, NodeSpec, compute_layout
from components.node.pki import CertSpec, admin_cert, node_pki
from components.node.units import CONTROL_PLANE_UNITS, dropin_path
from tools.harness.offline import Plan, run_program
from tools.testing import kube_binaries
from tools.testing.node_root import Files, Relocation, env_values, exec_start, user_data_files
from tools.testing.pki import IssuingPki, node_files
from tools.testing.processes import Daemon, stop_all, wait_until

ETCD = Path("/usr/bin/etcd")
ETCDCTL = Path("/usr/bin/etcdctl")
CONTROLLER_MANAGER_PORT = 10257
SCHEDULER_PORT = 10259
PORTS = (API_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT, CONTROLLER_MANAGER_PORT, SCHEDULER_PORT)
BOOT_TIMEOUT = 180  # seconds, each stage: two shared cores booting three masters at once are slow
REQUEST_TIMEOUT = 30


class ControlPlaneError(RuntimeError):
    """The control plane did not come up; the message names the stage and ends with the daemons' logs,
    which `logs` holds whole (daemon name -> text)."""

    def __init__(self, message: str, logs: Mapping[str, str]) -> None:
        tails = "\n".join(f"--- {name}:\n{text[-2500:]}" for name, text in logs.items())
        super().__init__(f"{message}\n{tails}")
        self.logs = dict(logs)


def _port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def loopback_block(hosts: int, attempts: int = 50) -> list[str]:
    """`hosts` loopback addresses in a random 127.x.y.0/24 whose control-plane ports are all free."""
    for _ in range(attempts):
        base = ipaddress.IPv4Address(f"127.{random.randint(64, 250)}.{random.randint(0, 255)}.0")
        addresses = [str(base + 10 + i) for i in range(hosts)]
        if all(_port_free(a, p) for a in addresses for p in PORTS):
            return addresses
    raise ControlPlaneError(f"no loopback /24 with free control-plane ports after {attempts} tries", {})


@dataclass
class Credentials:
    """A client certificate's files and the CA that verifies the server."""

    cert: Path
    key: Path
    ca: Path


class KubeApi:
    """A small HTTPS client for the API (requests, client-certificate authentication)."""

    def __init__(self, server: str, credentials: Credentials) -> None:
        self.server = server.rstrip("/")
        self.session = requests.Session()
        # Not the environment's CA bundle or proxies (REQUESTS_CA_BUNDLE would override `verify`).
        self.session.trust_env = False
        self.session.cert = (str(credentials.cert), str(credentials.key))
        self.session.verify = str(credentials.ca)
        self._resources: dict[tuple[str, str], tuple[str, bool]] | None = None

    def request(self, method: str, path: str, body: object = None, content_type: str = "application/json",
                params: Mapping[str, str] | None = None) -> requests.Response:
        data = None if body is None else (body if isinstance(body, (str, bytes)) else json.dumps(body))
        return self.session.request(method, f"{self.server}{path}", data=data, params=params,
                                    headers={"Content-Type": content_type}, timeout=REQUEST_TIMEOUT)

    def get(self, path: str) -> requests.Response:
        return self.request("GET", path)

    def resource_of(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural resource name, namespaced) of a kind, from the server's discovery documents."""
        if self._resources is None:
            found: dict[tuple[str, str], tuple[str, bool]] = {}
            versions = ["v1"] + [v["groupVersion"] for g in self.get("/apis").json()["groups"] for v in g["versions"]]
            for group_version in versions:
                path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
                for resource in self.get(path).json().get("resources", []):
                    if "/" not in resource["name"]:
                        found[(group_version, resource["kind"])] = (resource["name"], resource["namespaced"])
            self._resources = found
        return self._resources[(api_version, kind)]

    def object_path(self, obj: Mapping[str, Any]) -> str:
        api_version, kind = obj["apiVersion"], obj["kind"]
        plural, namespaced = self.resource_of(api_version, kind)
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        namespace = obj["metadata"].get("namespace")
        scope = f"/namespaces/{namespace}" if namespaced and namespace else ""
        return f"{prefix}{scope}/{plural}/{obj['metadata']['name']}"

    def apply(self, obj: Mapping[str, Any], dry_run: bool = True,
              manager: str = "atomic-mysql-test") -> requests.Response:
        """Server-side apply, as pulumi-kubernetes does with enableServerSideApply (dry run by default)."""
        params = {"fieldManager": manager, "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        return self.request("PATCH", self.object_path(obj), json.dumps(obj), "application/apply-patch+yaml", params)


@dataclass
class Master:
    node: NodeSpec
    loopback: str
    root: Path
    files: Files  # as the user-data has them (before relocation)
    relocation: Relocation
    daemons: dict[str, Daemon] = field(default_factory=dict)

    def command(self, unit: str) -> list[str]:
        """The unit's command line, relocated: what systemd would run on this master."""
        return [self.relocation.text(word) for word in exec_start(self.files, dropin_path(unit))]

    @property
    def api_url(self) -> str:
        return f"https://{self.loopback}:{API_PORT}"


@dataclass
class ControlPlane:
    """The masters of one stack, booted on loopback (use `boot()` as a context manager)."""

    stack: str
    workdir: Path
    plan: Plan
    layout: ClusterLayout
    pki: IssuingPki
    masters: list[Master]
    bin_dir: Path
    admin: Credentials

    @property
    def api(self) -> KubeApi:
        return KubeApi(self.masters[0].api_url, self.admin)

    def credentials(self, spec: CertSpec, name: str) -> Credentials:
        """A client certificate from the plan's CA (renamed as the masters are)."""
        issued = self.pki.issue(spec, self.masters[0].relocation.address)
        directory = self.workdir / "clients" / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "tls.crt").write_text(issued.cert_pem)
        (directory / "tls.key").write_text(issued.key_pem)
        (directory / "tls.key").chmod(0o600)
        ca = directory / "ca.crt"
        ca.write_text(self.pki.ca_pem("kubernetes"))
        return Credentials(directory / "tls.crt", directory / "tls.key", ca)

    def daemons(self) -> list[Daemon]:
        return [d for m in self.masters for d in m.daemons.values()]


def etcdctl(master: Master, *args: str) -> subprocess.CompletedProcess[str]:
    """etcdctl against `master`'s etcd with the apiserver's own etcd client certificate."""
    pki_dir = master.relocation.path("/etc/kubernetes/pki")
    return subprocess.run(
        [str(ETCDCTL), f"--endpoints=https://{master.loopback}:{ETCD_CLIENT_PORT}",
         f"--cacert={pki_dir}/etcd-ca.crt", f"--cert={pki_dir}/apiserver-etcd-client.crt",
         f"--key={pki_dir}/apiserver-etcd-client.key", "--dial-timeout=5s", *args],
        # a value etcd holds may be binary (an encrypted Secret): shown escaped, never a decode error
        capture_output=True, text=True, errors="backslashreplace", timeout=30,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ETCDCTL_API": "3"})


def master_files(plan: Plan, layout: ClusterLayout, node: NodeSpec) -> Files:
    """The files cloud-init writes on `node`, from the user-data the program gave its instance."""
    return user_data_files(plan.user_data(plan.instance_named(node.name)))


def _etcd_env(master: Master) -> dict[str, str]:
    conf = master.relocation.path("/etc/etcd/etcd.conf").read_text()
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env_values(conf)}


def _healthy(api: KubeApi, path: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return api.get(path).status_code == 200
    return False


@contextlib.contextmanager
def boot(stack: str, workdir: Path, overrides: Mapping[str, Any] | None = None,
         mutate: Callable[[Master], None] | None = None,
         drop_sans: Mapping[str, tuple[str, ...]] | None = None,
         ready_timeout: float = BOOT_TIMEOUT) -> Iterator[ControlPlane]:
    """Boot every master of `stack` on loopback; stop every process on exit.

    `mutate` may change a master's files (relocated, on disk) before its daemons start, and
    `drop_sans` leaves SANs out of certificates by identity: the tests' deliberately broken cases.
    """
    if not ETCD.exists():
        raise ControlPlaneError(f"{ETCD} is missing: install Debian's etcd-server (make test does, as root)", {})
    bin_dir = kube_binaries.find()
    plan = run_program(stack, overrides)
    if plan.settings is None or plan.settings.cluster is None:
        raise ControlPlaneError(f"stack {stack} builds no cluster (clusterMode=existing)", {})
    layout = compute_layout(plan.settings.cluster, stack)
    loopbacks = loopback_block(len(layout.masters))
    pki = IssuingPki()
    masters: list[Master] = []
    for node, loopback in zip(layout.masters, loopbacks, strict=True):
        addresses = {m.private_ip: lo for m, lo in zip(layout.masters, loopbacks, strict=True)}
        addresses["127.0.0.1"] = loopback
        root = workdir / node.name
        relocation = Relocation(root, addresses, bin_dir)
        files = master_files(plan, layout, node)
        plan_pki = node_pki(layout, node)
        key_material = node_files(pki, plan_pki.certs, plan_pki.ca_paths, plan_pki.service_account_key,
                                  relocation.address, drop_sans, plan_pki.encryption_config)
        relocation.write(files)
        for path, pem in key_material.items():
            target = relocation.path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(pem)
            target.chmod(0o600 if path.endswith(".key") else 0o644)
        masters.append(Master(node, loopback, root, files, relocation))
    admin_dir = workdir / "admin"
    plane = ControlPlane(stack, workdir, plan, layout, pki, masters, bin_dir,
                         Credentials(admin_dir / "tls.crt", admin_dir / "tls.key", admin_dir / "ca.crt"))
    plane.admin = plane.credentials(admin_cert(), "admin")
    try:
        for master in masters:
            if mutate is not None:
                mutate(master)
        _start(plane, ready_timeout)
        yield plane
    finally:
        stop_all(plane.daemons())


def _start(plane: ControlPlane, ready_timeout: float) -> None:
    for master in plane.masters:
        master.daemons["etcd"] = Daemon.start(f"etcd on {master.node.name}", [str(ETCD)],
                                              master.root / "log" / "etcd.log", env=_etcd_env(master))
    for master in plane.masters:
        argv = master.command("kube-apiserver")
        master.daemons["kube-apiserver"] = Daemon.start(f"kube-apiserver on {master.node.name}", argv,
                                                        master.root / "log" / "kube-apiserver.log")
    for master in plane.masters:
        api = KubeApi(master.api_url, plane.admin)

        def ready(api: KubeApi = api) -> bool:
            return _healthy(api, "/readyz")

        _wait(plane, f"kube-apiserver on {master.node.name} /readyz", ready, ready_timeout)
    for master in plane.masters:
        for unit in CONTROL_PLANE_UNITS[1:]:
            master.daemons[unit] = Daemon.start(f"{unit} on {master.node.name}", master.command(unit),
                                                master.root / "log" / f"{unit}.log")


def _wait(plane: ControlPlane, what: str, check: Callable[[], object], timeout: float = BOOT_TIMEOUT) -> object:
    try:
        return wait_until(what, check, timeout, interval=0.3, alive=plane.daemons())
    except (TimeoutError, RuntimeError) as error:
        logs = {d.name: d.log.read_text(errors="replace") for d in plane.daemons()}
        raise ControlPlaneError(str(error).splitlines()[0], logs) from None


def component_healthy(plane: ControlPlane, master: Master, port: int) -> bool:
    """A controller-manager's or scheduler's /healthz on its secure port (client certificate: admin)."""
    session = requests.Session()
    session.trust_env = False
    session.cert = (str(plane.admin.cert), str(plane.admin.key))
    # Their serving certificates are self-signed at start (no --tls-cert-file is rendered): not verified.
    session.verify = False
    with contextlib.suppress(requests.RequestException), warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        return session.get(f"https://{master.loopback}:{port}/healthz", timeout=REQUEST_TIMEOUT).text == "ok"
    return False


def leader(plane: ControlPlane, lease: str) -> str | None:
    """The holder of a kube-system leader-election Lease, once there is one."""
    response = plane.api.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{lease}")
    if response.status_code != 200:
        return None
    return response.json().get("spec", {}).get("holderIdentity")


def wait_for(plane: ControlPlane, what: str, check: Callable[[], object], timeout: float = BOOT_TIMEOUT) -> object:
    """Wait (bounded) for something on a booted control plane; a daemon that exits ends the wait."""
    return _wait(plane, what, check, timeout)
