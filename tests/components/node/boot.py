"""What a node does with its files at boot, replayed here: the node's programs run by bash, and
the command line systemd would start each daemon with."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from components.node.cloud_init import IDENTITY_SCRIPT, node_files
from components.node.formats import shipped
from components.node.layout import ClusterLayout, NodeSpec
from components.node.pod_network import NODE_SCRIPT, render_cluster_env
from components.node.worker import KUBELET_IDENTITY
from tests.components.node.shapes import env_values
from tools.testing.imds import fake_imds


def booted_identity(tmp_path: Path, layout: ClusterLayout, node: NodeSpec) -> str:
    """The kubelet identity file as `atomic-node identity` writes it at boot (from a loopback IMDS)."""
    target = tmp_path / f"{node.name}.identity"
    with fake_imds() as url:
        _run_identity_script(tmp_path, target, url, check=True)
    return target.read_text()


def _run_identity_script(tmp_path: Path, target: Path, imds_url: str,
                         check: bool = False) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "atomic-kubelet-identity"
    script.write_text(shipped(IDENTITY_SCRIPT))
    return subprocess.run(["/bin/bash", str(script), str(target)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "ATOMIC_IMDS": imds_url}, timeout=120, check=check)


def command_lines(layout: ClusterLayout, node: NodeSpec, tmp_path: Path) -> dict[str, list[str]]:
    """What systemd would run: each drop-in's ExecStart with the rendered environment files expanded,
    and with the files the node writes at boot as the node script writes them."""
    files = node_files(layout, node)
    if node.role == "minion":
        files[KUBELET_IDENTITY] = (booted_identity(tmp_path, layout, node), "0644")
    commands = {}
    for path, (content, _) in files.items():
        match = re.fullmatch(r"/etc/systemd/system/(kube[-a-z]*)\.service\.d/10-atomic\.conf", path)
        if not match:
            continue
        env: dict[str, str] = {}
        for env_file in re.findall(r"^EnvironmentFile=(\S+)$", content, re.MULTILINE):
            assert env_file in files, f"{match.group(1)} reads {env_file}, which is not rendered"
            env.update(env_values(files[env_file][0]))
        exec_start = re.findall(r"^ExecStart=(.+)$", content, re.MULTILINE)
        assert len(exec_start) == 1, "the drop-in must reset ExecStart, then set it once"
        argv = []
        for word in exec_start[0].split():
            if word.startswith("$"):
                assert word[1:] in env, f"{match.group(1)}: ${word[1:]} is not set in its environment files"
                argv += env[word[1:]].split()
            else:
                argv.append(word)
        commands[match.group(1)] = argv
    return commands


def _run_node_script(tmp_path: Path, layout: ClusterLayout, node: NodeSpec, *args: str,
                     dry_run: bool = False,
                     check: bool = True) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "cluster.env"
    env_file.write_text(render_cluster_env(layout, node))
    script = tmp_path / "atomic-node"
    script.write_text(shipped(NODE_SCRIPT))
    env = {"PATH": "/usr/bin:/bin", "ATOMIC_ENV": str(env_file)}
    if dry_run:
        env["ATOMIC_RUN"] = "echo"
    return subprocess.run(["/bin/bash", str(script), *args], capture_output=True, text=True, env=env, timeout=60,
                          check=check)
