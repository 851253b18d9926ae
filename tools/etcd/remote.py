"""How `python -m tools.etcd` reaches a stack: its outputs, its masters over SSH, its instances through
the Pulumi CLI, its backups through the AWS CLI.

- The masters: names and private addresses from `pulumi stack output` (masterNames, masterPrivateIps).
- SSH: OpenSSH through the EC2 Instance Connect Endpoint (instanceConnectEndpointId), its tunnel opened
  by `aws ec2-instance-connect open-tunnel --instance-connect-endpoint-id ... --private-ip-address ...`
  as the ProxyCommand (AWS CLI v2; IAM ec2-instance-connect:OpenTunnel decides who may). The node
  program atomic-etcd goes over stdin (`sudo bash -s`), so the tool and the steps it runs are always
  the same version, whatever the master was booted with. A replaced master keeps its address but
  not its host key: host keys are trusted on first use, per run, in a known_hosts file of the run.
- Replacing an instance: `pulumi state unprotect` (prod protects masters), then
  `pulumi up --replace URN --target URN --target-dependents`; protect comes back with that very
  update, from the program.
- Backups: `aws s3api list-objects-v2` / `get-object` below the stack's prefix, sha256 checked
  against the metadata the node wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components import tokens
from components.facts import PROJECT
from components.node.formats import shipped
from tools.etcd.procedures import Done, EtcdToolError, Master

NODE_PROGRAM = "/usr/local/sbin/atomic-etcd"
PROJECT_DIR = Path(__file__).resolve().parents[2]
CLI_TIMEOUT = 600.0
SSH_TIMEOUT = 300.0
SSH_FAILED = 255  # ssh's own exit status when it could not connect
CLUSTER_COMPONENT = "cluster"  # __main__.py's AtomicCluster: every node resource is named "cluster-<node>"

Runner = Callable[..., "subprocess.CompletedProcess[Any]"]


@dataclass(frozen=True)
class Stack:
    """What the tool needs of a deployed stack, from its outputs."""

    name: str
    masters: tuple[Master, ...]
    connect_endpoint: str | None
    backup_bucket: str | None
    backup_prefix: str | None

    def master(self, name: str) -> Master:
        found = next((m for m in self.masters if m.name == name), None)
        if found is None:
            known = ", ".join(m.name for m in self.masters)
            raise EtcdToolError(f"{name} is not a master of stack {self.name} ({known})")
        return found


def stack_from_outputs(name: str, outputs: Mapping[str, Any]) -> Stack:
    names, addresses = outputs.get("masterNames"), outputs.get("masterPrivateIps")
    if not isinstance(names, list) or not isinstance(addresses, list) or len(names) != len(addresses) or not names:
        raise EtcdToolError(f"stack {name}: its outputs need masterNames and masterPrivateIps (a stack built by "
                            "this version of the program; `pulumi up` adds them)")
    return Stack(name, tuple(Master(str(n), str(a)) for n, a in zip(names, addresses, strict=True)),
                 outputs.get("instanceConnectEndpointId"), outputs.get("etcdBackupBucket"),
                 outputs.get("etcdBackupPrefix"))


def pulumi_json(arguments: Sequence[str], stack: str, runner: Runner = subprocess.run) -> Any:
    command = ["pulumi", *arguments, "--non-interactive", "--stack", stack]
    done = _call(command, runner, capture=True)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise EtcdToolError(f"`{' '.join(command)}` printed no JSON ({error.msg})") from None


def _call(command: Sequence[str], runner: Runner, capture: bool, timeout: float = CLI_TIMEOUT,
          **extra: Any) -> subprocess.CompletedProcess[Any]:
    try:
        done = runner(list(command), capture_output=capture, text=True, timeout=timeout, cwd=PROJECT_DIR,
                      env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}, **extra)
    except FileNotFoundError:
        raise EtcdToolError(f"{command[0]} is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise EtcdToolError(f"`{' '.join(command)}` did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        last = ((done.stderr or "").strip().splitlines() or ["no message"])[-1] if capture else "see above"
        raise EtcdToolError(f"`{' '.join(command)}` exited {done.returncode}: {last}")
    return done


@dataclass
class SshTransport:
    """atomic-etcd as root on a master, over OpenSSH through the EC2 Instance Connect Endpoint."""

    stack: Stack
    region: str
    user: str = "fedora"
    identity: Path | None = None
    runner: Runner = subprocess.run
    known_hosts: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="atomic-etcd-")) / "known_hosts")

    def ssh(self, master: Master) -> list[str]:
        options = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "-o", "StrictHostKeyChecking=accept-new",
                   "-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.stack.connect_endpoint:
            tunnel = ["aws", "ec2-instance-connect", "open-tunnel", "--region", self.region,
                      "--instance-connect-endpoint-id", self.stack.connect_endpoint,
                      "--private-ip-address", "%h", "--remote-port", "%p"]
            options += ["-o", f"ProxyCommand={shlex.join(tunnel)}"]
        if self.identity is not None:
            options += ["-i", str(self.identity)]
        return ["ssh", *options, f"{self.user}@{master.address}"]

    def run(self, master: Master, args: Sequence[str], check: bool = True) -> Done:
        command = [*self.ssh(master), "sudo", "bash", "-s", "--", *(shlex.quote(a) for a in args)]
        done = self.runner(command, input=shipped(NODE_PROGRAM), capture_output=True, text=True,
                           timeout=SSH_TIMEOUT)
        result = Done(done.returncode, done.stdout, done.stderr)
        if check and done.returncode != 0:
            raise EtcdToolError(f"atomic-etcd {' '.join(args)} on {master.name} exited {done.returncode}: "
                                f"{done.stderr.strip()[-500:]}")
        return result

    def put(self, master: Master, path: str, data: bytes) -> None:
        command = [*self.ssh(master), "sudo", "install", "-m", "0600", "/dev/stdin", shlex.quote(path)]
        done = self.runner(command, input=data, capture_output=True, timeout=SSH_TIMEOUT)
        if done.returncode != 0:
            raise EtcdToolError(f"copying {path} to {master.name} failed: {done.stderr.decode(errors='replace')}")

    def get(self, master: Master, path: str) -> bytes:
        done = self.runner([*self.ssh(master), "sudo", "cat", shlex.quote(path)], capture_output=True,
                           timeout=SSH_TIMEOUT)
        if done.returncode != 0:
            raise EtcdToolError(f"reading {path} on {master.name} failed: {done.stderr.decode(errors='replace')}")
        return bytes(done.stdout)

    def wait_reachable(self, master: Master, timeout: float = 900.0) -> None:
        """Until a new instance answers over SSH and cloud-init has finished with it (packages, files, units)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.runner([*self.ssh(master), "cloud-init", "status", "--wait"], capture_output=True, text=True,
                               timeout=SSH_TIMEOUT)
            if done.returncode in (0, 2):  # done; done with recoverable errors (cloud-init 23.4+)
                return
            if done.returncode != SSH_FAILED:
                raise EtcdToolError(f"cloud-init failed on the new {master.name}: {done.stdout.strip()[-500:]}")
            time.sleep(10)
        raise EtcdToolError(f"{master.name} did not answer over SSH within {timeout:.0f} s")


def instance_urn(stack: str, node: str) -> str:
    """A node's instance URN, as the program registers it (AtomicCluster "cluster", child "cluster-<node>")."""
    return (f"urn:pulumi:{stack}::{PROJECT}::{tokens.ATOMIC_CLUSTER}${tokens.INSTANCE}::"
            f"{CLUSTER_COMPONENT}-{node}")


@dataclass
class PulumiReplacer:
    """Replaces one master's instance with the Pulumi CLI, then waits for it over SSH."""

    stack: Stack
    transport: SshTransport
    runner: Runner = subprocess.run

    def commands(self, master: Master) -> list[list[str]]:
        urn = instance_urn(self.stack.name, master.name)
        return [
            # prod protects masters: the old instance may be deleted only once unprotected; the new one is
            # registered with the program's protect=true by the same update.
            ["pulumi", "state", "unprotect", urn, "--yes", "--non-interactive", "--stack", self.stack.name],
            ["pulumi", "up", "--replace", urn, "--target", urn, "--target-dependents", "--yes", "--skip-preview",
             "--non-interactive", "--stack", self.stack.name],
        ]

    def replace(self, master: Master) -> None:
        for command in self.commands(master):
            _call(command, self.runner, capture=False, timeout=3600)
        self.transport.wait_reachable(master)


@dataclass
class Backups:
    """The stack's etcd snapshots in its bucket, through the AWS CLI."""

    bucket: str
    prefix: str
    region: str
    endpoint: str | None = None  # another S3 API (the tests' radosgw); None: AWS's
    runner: Runner = subprocess.run
    env: Mapping[str, str] = field(default_factory=dict)

    def _aws(self, *args: str) -> Any:
        command = ["aws", "--output=json", "--region", self.region,
                   *([f"--endpoint-url={self.endpoint}"] if self.endpoint else []), *args]
        done = self.runner(command, capture_output=True, text=True, timeout=CLI_TIMEOUT,
                           env={**os.environ, **self.env})
        if done.returncode != 0:
            raise EtcdToolError(f"`aws {' '.join(args[:2])}` exited {done.returncode}: {done.stderr.strip()[-300:]}")
        return json.loads(done.stdout) if done.stdout.strip() else {}

    def list(self) -> list[dict[str, Any]]:
        """Every snapshot below the prefix, oldest first (the keys start with their UTC time)."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._aws("s3api", "list-objects-v2", "--bucket", self.bucket, "--prefix", f"{self.prefix}/",
                             *(["--continuation-token", token] if token else []))
            found += page.get("Contents", [])
            token = page.get("NextContinuationToken")
            if not token:
                return sorted(found, key=lambda o: str(o["Key"]))

    def fetch(self, out: Path, key: str | None = None) -> dict[str, Any]:
        """Download a snapshot (the newest unless `key`) to `out` and check it against its sha256 metadata."""
        if key is None:
            listed = self.list()
            if not listed:
                raise EtcdToolError(f"no snapshot below s3://{self.bucket}/{self.prefix}/")
            key = str(listed[-1]["Key"])
        head = self._aws("s3api", "get-object", "--bucket", self.bucket, "--key", key, str(out))
        expected = (head.get("Metadata") or {}).get("sha256")
        actual = hashlib.sha256(out.read_bytes()).hexdigest()
        if expected != actual:
            out.unlink(missing_ok=True)
            raise EtcdToolError(f"s3://{self.bucket}/{key}: sha256 {actual} is not the {expected} it was uploaded with")
        return {"key": key, "sha256": actual, "revision": (head.get("Metadata") or {}).get("revision"),
                "encryption": head.get("ServerSideEncryption"), "version": head.get("VersionId")}
