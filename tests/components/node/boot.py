"""What a node does with its files at boot, replayed here: the node's programs run by bash, and
the command line systemd would start each daemon with."""

from __future__ import annotations

import subprocess
from pathlib import Path

from components.node.cloud_init import node_files
from components.node.formats import shipped
from components.node.layout import ClusterLayout, NodeSpec
from components.node.pod_network import NODE_SCRIPT, render_cluster_env
from components.node.worker import KUBELET_IDENTITY
from tools.testing.node_root import booted_identity, unit_commands


def command_lines(layout: ClusterLayout, node: NodeSpec, tmp_path: Path) -> dict[str, list[str]]:
    """What systemd would run: each drop-in's ExecStart with the rendered environment files expanded,
    and with the files the node writes at boot as the node script writes them."""
    files = node_files(layout, node)
    if node.role == "minion":
        files[KUBELET_IDENTITY] = (booted_identity(tmp_path, node.name), "0644")
    return unit_commands(files)


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
