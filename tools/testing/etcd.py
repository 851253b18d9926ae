"""Real etcd members on loopback, booted from a stack's own master user-data, run as systemd would run them.

For each master of the stack (the program run offline, as `make preview` runs it): the files its
#cloud-config writes are written under a temporary root, its address moved to a loopback address of
its own (the standard ports, so that nothing in the rendered files but the address changes), every
certificate of its PKI plan issued for real (tools/testing/pki.py: the same authorities, names and
usages), and etcd started from its /etc/etcd/etcd.conf by a stand-in for systemctl
(tools/testing/fake_systemctl.py). The node's own programs (atomic-etcd, atomic-etcd-backup) run as
they are, by bash or python3, against real etcd 3.4 members with client and peer mutual TLS.
Every process is stopped by PID and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.facts import ETCD_CLIENT_PORT, ETCD_PEER_PORT
from components.node.formats import shipped
from components.node.layout import ClusterLayout, NodeSpec, compute_layout
from components.node.pki import CertSpec, node_pki
from tools.etcd.procedures import Done, EtcdToolError, Master
from tools.harness.offline import Plan, run_program
from tools.testing import fake_systemctl
from tools.testing.control_plane import loopback_block, master_files
from tools.testing.node_root import Files, Relocation, env_values
from tools.testing.pki import IssuingPki, node_files

PROJECT_DIR = Path(__file__).resolve().parents[2]
ETCD = Path("/usr/bin/etcd")
ETCDCTL = Path("/usr/bin/etcdctl")
NODE_PROGRAM = "/usr/local/sbin/atomic-etcd"
HEALTHY_TIMEOUT = 60.0


class EtcdTestError(RuntimeError):
    """The members did not come up or did not do what was asked; the message ends with their logs."""


@dataclass
class Member:
    node: NodeSpec
    address: str  # its loopback stand-in for the node's private address
    root: Path
    files: Files  # as the master's user-data has them
    key_material: dict[str, str]  # path -> PEM, what atomic-fetch-pki writes at boot
    relocation: Relocation

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def client_url(self) -> str:
        return f"https://{self.address}:{ETCD_CLIENT_PORT}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.address}:{ETCD_PEER_PORT}"

    @property
    def systemctl(self) -> Path:
        return self.root / "usr/bin/systemctl"

    def path(self, target: str) -> Path:
        return self.relocation.path(target)

    def log(self) -> str:
        path = self.root / "log" / "etcd.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def pid(self) -> int | None:
        return fake_systemctl.etcd_pid(self.root)

    def boot_files(self) -> None:
        """What a fresh instance has before anything runs: its user-data's files and its fetched PKI."""
        self.relocation.write(self.files)
        for path, pem in self.key_material.items():
            target = self.path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(pem)
            target.chmod(0o600 if path.endswith(".key") else 0o644)
        self.systemctl.parent.mkdir(parents=True, exist_ok=True)
        self.systemctl.write_text(
            "#!/bin/bash\n# systemctl on this test master: tools/testing/fake_systemctl.py\n"
            f"cd {shlex.quote(str(PROJECT_DIR))} && exec {shlex.quote(sys.executable)} "
            f"-m tools.testing.fake_systemctl --root {shlex.quote(str(self.root))} \"$@\"\n")
        self.systemctl.chmod(0o755)


@dataclass
class Credentials:
    cert: Path
    key: Path
    ca: Path

    def flags(self) -> list[str]:
        return [f"--cacert={self.ca}", f"--cert={self.cert}", f"--key={self.key}"]


@dataclass
class EtcdNodes:
    """The masters of one stack as etcd members on loopback (use `boot()` as a context manager)."""

    stack: str
    plan: Plan
    layout: ClusterLayout
    members: list[Member]
    client: Credentials  # the apiserver's etcd client certificate, issued from the plan
    workdir: Path

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def ctl(self, *args: str, endpoints: Sequence[Member] | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        urls = ",".join(m.client_url for m in (endpoints or self.members))
        return subprocess.run([str(ETCDCTL), f"--endpoints={urls}", *self.client.flags(), "--dial-timeout=3s",
                               "--command-timeout=10s", *args], capture_output=True, text=True, timeout=timeout,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ETCDCTL_API": "3"})

    def systemctl(self, member: Member, *args: str) -> None:
        done = subprocess.run([str(member.systemctl), *args], capture_output=True, text=True, timeout=60)
        if done.returncode not in (0, 3):
            raise EtcdTestError(f"systemctl {' '.join(args)} on {member.name}: {done.stderr}")

    def start(self, *members: Member) -> None:
        for member in members or self.members:
            self.systemctl(member, "start", "--no-block", "etcd")

    def kill(self, member: Member) -> None:
        """The member fails: SIGKILL, no goodbye to its peers."""
        fake_systemctl.stop_etcd(member.root, sig=9)

    def atomic_etcd(self, member: Member, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The node's own atomic-etcd (node/files), run by bash as root on `member` would run it."""
        script = self.workdir / "atomic-etcd"
        if not script.exists():
            script.write_text(shipped(NODE_PROGRAM))
        done = subprocess.run(["/bin/bash", str(script), *args], capture_output=True, text=True, timeout=120,
                              env=self.node_env(member))
        if check and done.returncode != 0:
            raise EtcdTestError(f"atomic-etcd {' '.join(args)} on {member.name} failed:\n{done.stdout}{done.stderr}")
        return done

    def node_env(self, member: Member) -> dict[str, str]:
        """What the node program is given instead of the node's paths: the member's relocated files."""
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "ATOMIC_ETCD_CONF": str(member.path("/etc/etcd/etcd.conf")),
                "ATOMIC_SYSTEMCTL": str(member.systemctl),
                "ATOMIC_ETCD_DATA_ROOT": str(member.path("/var/lib/etcd"))}

    def wait_healthy(self, members: Sequence[Member] | None = None, timeout: float = HEALTHY_TIMEOUT) -> str:
        chosen = list(members or self.members)
        deadline = time.monotonic() + timeout
        last: subprocess.CompletedProcess[str] | None = None
        while time.monotonic() < deadline:
            last = self.ctl("endpoint", "health", endpoints=chosen)
            if last.returncode == 0:
                return last.stdout + last.stderr
            time.sleep(0.5)
        raise EtcdTestError(f"not healthy in {timeout:.0f}s: {last and last.stderr}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {m.name}:\n{m.log()[-2500:]}" for m in self.members)

    def get_all(self, prefix: str, member: Member | None = None) -> dict[str, str]:
        """Every key below `prefix` with its value, read from one member (serializable: its own data) or
        from the cluster (linearizable)."""
        args = ["get", prefix, "--prefix", "-w", "fields"]
        if member is not None:
            args.append("--consistency=s")
        done = self.ctl(*args, endpoints=[member] if member else None, timeout=60)
        if done.returncode != 0:
            raise EtcdTestError(f"get {prefix}: {done.stderr}")
        found: dict[str, str] = {}
        key = None
        for line in done.stdout.splitlines():
            if line.startswith('"Key" : '):
                key = _field(line)
            elif line.startswith('"Value" : ') and key is not None:
                found[key] = _field(line)
                key = None
        return found

    def stop_all(self) -> None:
        stuck = []
        for member in self.members:
            try:
                fake_systemctl.stop_etcd(member.root)
            except SystemExit:
                stuck.append(member.name)
        if stuck:
            raise EtcdTestError(f"etcd survived SIGKILL on {', '.join(stuck)}")


def _field(line: str) -> str:
    text = line.split(" : ", 1)[1].strip()
    return text[1:-1] if text.startswith('"') else text


@dataclass
class Writer:
    """Writes key after key (one `etcdctl put` each) until stopped; keeps what etcd acknowledged."""

    nodes: EtcdNodes
    prefix: str = "/atomic/writer/"
    endpoints: list[Member] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)
    failures: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _count: int = 0

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._run, name="etcd-writer", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            key, value = f"{self.prefix}{self._count:06d}", f"value-{self._count}"
            self._count += 1
            done = self.nodes.ctl("put", key, value, endpoints=self.endpoints or None)
            if done.returncode == 0 and done.stdout.strip() == "OK":
                self.acknowledged[key] = value
            else:
                self.failures.append((time.monotonic(), done.stderr.strip()[-300:]))

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(self.acknowledged) < count:
            raise EtcdTestError(f"{len(self.acknowledged)} writes acknowledged in {timeout:.0f}s, not {count}: "
                                f"{self.failures[-3:]}")

    def snapshot(self) -> dict[str, str]:
        return dict(self.acknowledged)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            if self._thread.is_alive():
                raise EtcdTestError("the writer did not stop within 60 s")


def _client(pki: IssuingPki, layout: ClusterLayout, relocation: Relocation, workdir: Path) -> Credentials:
    spec: CertSpec = next(c for c in node_pki(layout, layout.masters[0]).certs if c.identity == "apiserver-etcd-client")
    issued = pki.issue(spec, relocation.address)
    directory = workdir / "client"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_text(issued.cert_pem)
    (directory / "tls.key").write_text(issued.key_pem)
    (directory / "tls.key").chmod(0o600)
    (directory / "ca.crt").write_text(pki.ca_pem("etcd"))
    return Credentials(directory / "tls.crt", directory / "tls.key", directory / "ca.crt")


@contextlib.contextmanager
def boot(stack: str, workdir: Path, overrides: Mapping[str, Any] | None = None, plan: Plan | None = None,
         start: bool = True) -> Iterator[EtcdNodes]:
    """Every master of `stack` as a real etcd member on loopback (started, healthy, unless `start` is off);
    every etcd stopped on exit. Pass `plan` to reuse one run of the program."""
    for binary in (ETCD, ETCDCTL):
        if not binary.exists():
            raise EtcdTestError(f"{binary} is missing: install Debian's etcd-server and etcd-client "
                                "(make test does, as root)")
    plan = plan or run_program(stack, overrides)
    if plan.settings is None or plan.settings.cluster is None:
        raise EtcdTestError(f"stack {stack} builds no cluster (clusterMode=existing)")
    layout = compute_layout(plan.settings.cluster, stack)
    loopbacks = loopback_block(len(layout.masters))
    addresses = {m.private_ip: lo for m, lo in zip(layout.masters, loopbacks, strict=True)}
    pki = IssuingPki()
    members = []
    for node, loopback in zip(layout.masters, loopbacks, strict=True):
        relocation = Relocation(workdir / node.name, {**addresses, "127.0.0.1": loopback})
        plan_pki = node_pki(layout, node)
        key_material = node_files(pki, plan_pki.certs, plan_pki.ca_paths, plan_pki.service_account_key,
                                  relocation.address)
        member = Member(node, loopback, workdir / node.name, master_files(plan, layout, node), key_material,
                        relocation)
        member.boot_files()
        members.append(member)
    nodes = EtcdNodes(stack, plan, layout, members, _client(pki, layout, members[0].relocation, workdir), workdir)
    try:
        if start:
            nodes.start()
            nodes.wait_healthy()
        yield nodes
    finally:
        nodes.stop_all()


def read_env(member: Member, *targets: str) -> dict[str, str]:
    """The variables of a member's environment files (relocated, as written), later files winning."""
    env: dict[str, str] = {}
    for target in targets:
        env.update(env_values(member.path(target).read_text()))
    return env


@dataclass
class LocalTransport:
    """tools/etcd's Transport to the test members: atomic-etcd run as it is, by bash, with the member's
    relocated paths (the node paths in its arguments moved as its files were)."""

    nodes: EtcdNodes

    def masters(self) -> list[Master]:
        return [Master(m.name, m.address) for m in self.nodes.members]

    def _member(self, master: Master) -> Member:
        return self.nodes.member(master.name)

    def run(self, master: Master, args: Sequence[str], check: bool = True) -> Done:
        member = self._member(master)
        done = self.nodes.atomic_etcd(member, *(member.relocation.text(a) for a in args), check=False)
        if check and done.returncode != 0:
            raise EtcdToolError(f"atomic-etcd {' '.join(args)} on {master.name}: {done.stderr.strip()[-500:]}")
        return Done(done.returncode, done.stdout, done.stderr)

    def put(self, master: Master, path: str, data: bytes) -> None:
        target = self._member(master).path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def get(self, master: Master, path: str) -> bytes:
        return self._member(master).path(path).read_bytes()


@dataclass
class LocalReplacer:
    """tools/etcd's Replacer for the test members: the instance and its disk go, a new one boots from
    the same user-data (and the same PKI, as SSM still holds it) and cloud-init starts its etcd."""

    nodes: EtcdNodes
    replaced: list[str] = field(default_factory=list)

    def replace(self, master: Master) -> None:
        member = self.nodes.member(master.name)
        self.nodes.kill(member)
        shutil.rmtree(member.root)
        member.boot_files()
        self.nodes.start(member)  # state `new` from the rendered etcd.conf: the cluster must refuse it
        self.replaced.append(master.name)
