"""A node's files as cloud-init would write them, relocated for a test on this machine.

`user_data_files` reads a node's #cloud-config (exactly what EC2 would be given) into
path -> (content, permissions). `Relocation` moves those files under a temporary root and the
node's addresses onto loopback, rewriting every path and address the files mention the same way,
so that the daemons started from them find each other as they would on the node. `exec_start`
expands a systemd drop-in's ExecStart with the environment files it names: the command line
systemd would run.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from components.node.cloud_init import IDENTITY_SCRIPT
from components.node.formats import shipped
from tools.testing.imds import fake_imds

Files = dict[str, tuple[str, str]]
DROPIN = re.compile(r"/etc/systemd/system/(kube[-a-z]*)\.service\.d/10-atomic\.conf")

# Where on a node the rendered files live: each moves under the test's root.
NODE_DIRECTORIES = ("/etc/kubernetes/", "/etc/etcd/", "/var/lib/etcd", "/etc/atomic/", "/etc/cni/", "/etc/haproxy/",
                    "/var/lib/kubelet", "/run/systemd/resolve/", "/var/log/kubernetes/")


def user_data_files(user_data: str) -> Files:
    """path -> (content, permissions) of every file a #cloud-config writes."""
    if not user_data.startswith("#cloud-config\n"):
        raise ValueError("not a #cloud-config")
    config = yaml.safe_load(user_data)
    return {entry["path"]: (entry["content"], str(entry.get("permissions", "0644")))
            for entry in config.get("write_files", [])}


def env_values(text: str) -> dict[str, str]:
    """The variables of a systemd EnvironmentFile as rendered here (KEY="value" lines, # comments)."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            if not (value.startswith('"') and value.endswith('"')):
                raise ValueError(f"unquoted value in environment file line {line!r}")
            values[key] = value[1:-1]
    return values


def exec_start(files: Mapping[str, tuple[str, str]], dropin: str) -> list[str]:
    """The argv systemd runs for a drop-in: its last ExecStart, each $VAR replaced by the words of its
    value in the EnvironmentFiles the drop-in names (systemd's own splitting of unquoted $VAR)."""
    content = files[dropin][0]
    env: dict[str, str] = {}
    for env_file in re.findall(r"^EnvironmentFile=(\S+)$", content, re.MULTILINE):
        if env_file not in files:
            raise KeyError(f"{dropin} reads {env_file}, which is not among the node's files")
        env.update(env_values(files[env_file][0]))
    starts = [line for line in re.findall(r"^ExecStart=(.*)$", content, re.MULTILINE) if line]
    if len(starts) != 1:
        raise ValueError(f"{dropin}: expected one ExecStart after the reset, found {len(starts)}")
    argv = []
    for word in shlex.split(starts[0]):
        if word.startswith("$"):
            if word[1:] not in env:
                raise KeyError(f"{dropin}: ${word[1:]} is not set in its environment files")
            argv += env[word[1:]].split()
        else:
            argv.append(word)
    return argv


def unit_commands(files: Mapping[str, tuple[str, str]]) -> dict[str, list[str]]:
    """unit -> argv of every Kubernetes drop-in among a node's files."""
    return {match.group(1): exec_start(files, path) for path in files if (match := DROPIN.fullmatch(path))}


def run_identity_script(workdir: Path, target: Path, imds_url: str,
                        check: bool = False) -> subprocess.CompletedProcess[str]:
    """The node's atomic-kubelet-identity, run by bash against an IMDS at `imds_url`, writing `target`."""
    script = workdir / "atomic-kubelet-identity"
    script.write_text(shipped(IDENTITY_SCRIPT))
    return subprocess.run(["/bin/bash", str(script), str(target)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "ATOMIC_IMDS": imds_url}, timeout=120, check=check)


def booted_identity(workdir: Path, node: str) -> str:
    """/etc/kubernetes/kubelet.identity as the node writes it at boot (here from a loopback IMDSv2)."""
    target = workdir / f"{node}.identity"
    with fake_imds() as url:
        run_identity_script(workdir, target, url, check=True)
    return target.read_text()


@dataclass
class Relocation:
    """Moves one node's files under `root` and its addresses to loopback ones."""

    root: Path
    addresses: dict[str, str]  # node address -> loopback address (incl. 127.0.0.1 -> this node's loopback)
    binaries: Path | None = None  # where /usr/bin/<kube binary> is found instead
    extra: dict[str, str] = field(default_factory=dict)  # further literal replacements

    def path(self, target: str) -> Path:
        return self.root / target.lstrip("/")

    def address(self, value: str) -> str:
        return self.addresses.get(value, value)

    def text(self, text: str) -> str:
        for directory in NODE_DIRECTORIES:
            text = text.replace(directory, f"{self.root}{directory}")
        if self.binaries is not None:
            text = re.sub(r"/usr/bin/(kube-[a-z-]+|kubelet)\b", lambda m: f"{self.binaries}/{m.group(1)}", text)
        for old, new in self.extra.items():
            text = text.replace(old, new)
        # Addresses last, whole addresses only (10.0.1.1 must not hit 10.0.1.10); a bind to every
        # address becomes a bind to this node's loopback one, so that nodes can share the machine.
        loopback = self.addresses.get("127.0.0.1")
        mapping = dict(self.addresses)
        if loopback:
            mapping["0.0.0.0"] = loopback
        if not mapping:
            return text
        pattern = re.compile(r"(?<![\d.])(" + "|".join(re.escape(a) for a in mapping) + r")(?![\d]|\.\d|/)")
        return pattern.sub(lambda m: mapping[m.group(1)], text)

    def write(self, files: Mapping[str, tuple[str, str]]) -> None:
        """Write every file under the root with its content relocated and its permissions."""
        for target, (content, mode) in files.items():
            path = self.path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.text(content))
            path.chmod(int(mode, 8))


def service_of_timer(files: Mapping[str, tuple[str, str]], timer: str) -> str:
    """The path of the service a timer starts: its Unit=, else the timer's own name as a .service."""
    named = re.findall(r"^Unit=(\S+)$", files[timer][0], re.MULTILINE)
    unit = named[-1] if named else Path(timer).name.removesuffix(".timer") + ".service"
    return str(Path(timer).parent / unit)


def service_command(files: Mapping[str, tuple[str, str]], unit: str) -> tuple[list[str], list[str]]:
    """(argv, EnvironmentFiles in order) of a plain service unit among a node's files: what systemd runs."""
    content = files[unit][0]
    starts = [line for line in re.findall(r"^ExecStart=(.*)$", content, re.MULTILINE) if line]
    if len(starts) != 1:
        raise ValueError(f"{unit}: expected one ExecStart, found {len(starts)}")
    env_files = [f.lstrip("-") for f in re.findall(r"^EnvironmentFile=(\S+)$", content, re.MULTILINE)]
    for env_file in env_files:
        if env_file not in files:
            raise KeyError(f"{unit} reads {env_file}, which is not among the node's files")
    return shlex.split(starts[0]), env_files
