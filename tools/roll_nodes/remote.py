"""How `make roll-nodes` reaches a stack: its nodes from the stack's state, the API through kubectl.

- The nodes: `pulumi stack export` (or a saved export). Each EC2 instance of the cluster carries its
  name, role and NodeSpec in its tags; its launch inputs (instanceType, ami, userDataBase64) are
  ignoreChanges, so the state holds what it was launched with, while a plain `pulumi up` moved the
  tag to what the program says now. A node whose tag is not the digest of its recorded inputs
  (node/cloud_init.node_spec_digest) has to be rolled.
- kubectl with the stack's kubeconfig output (a secret: written 0600 to a directory of the run,
  removed at exit): cordon, drain (--ignore-daemonsets --delete-emptydir-data, PodDisruptionBudgets
  respected, bounded by --timeout), uncordon, and the Node's Ready condition and bootID.
- SSH to the masters and the instance replacement: tools/etcd/remote.py (SshTransport, PulumiReplacer).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components import tokens
from components.facts import TAG_NAME, TAG_NODE_SPEC, TAG_ROLE
from components.node.cloud_init import node_spec_digest
from tools.etcd.remote import Runner
from tools.roll_nodes.procedure import Node, NodeState, RollError

KUBECTL_TIMEOUT = 120.0


def is_current(inputs: Mapping[str, Any]) -> bool:
    """Whether an instance's recorded launch inputs are what its NodeSpec tag says it should run. A
    stack built before the tag existed has none: nothing says its nodes are stale."""
    tags = inputs.get("tags") or {}
    spec = tags.get(TAG_NODE_SPEC)
    if not spec:
        return True
    instance_type, user_data = str(inputs.get("instanceType", "")), str(inputs.get("userDataBase64", ""))
    # The digest carries the AMI only when it was set explicitly; the export does not say which.
    return spec in {node_spec_digest(instance_type, str(inputs.get("ami") or ""), user_data),
                    node_spec_digest(instance_type, None, user_data)}


def nodes_from_state(export: Mapping[str, Any]) -> list[Node]:
    """Every node of the stack's cluster, from `pulumi stack export`, masters first, by name."""
    resources = (export.get("deployment") or {}).get("resources") or []
    found = []
    for resource in resources:
        if resource.get("type") != tokens.INSTANCE or resource.get("delete"):
            continue
        inputs = resource.get("inputs") or {}
        tags = inputs.get("tags") or {}
        role, name = tags.get(TAG_ROLE), tags.get(TAG_NAME)
        if role not in ("master", "minion") or not name:
            continue
        found.append(Node(str(name), role, str(inputs.get("privateIp", "")), current=is_current(inputs)))
    if not found:
        raise RollError("the stack's state holds no cluster node (clusterMode=existing, or not deployed yet)")
    return sorted(found, key=lambda n: (n.role != "master", n.name))


def parse_node(document: Mapping[str, Any]) -> NodeState:
    conditions = {c.get("type"): c.get("status") for c in (document.get("status") or {}).get("conditions") or []}
    return NodeState(ready=conditions.get("Ready") == "True",
                     boot_id=str(((document.get("status") or {}).get("nodeInfo") or {}).get("bootID", "")),
                     unschedulable=bool((document.get("spec") or {}).get("unschedulable")))


@dataclass
class Kubectl:
    """The Kube of procedure.py, through kubectl with the stack's kubeconfig."""

    kubeconfig: Path
    runner: Runner = subprocess.run

    @classmethod
    def from_text(cls, text: str, runner: Runner = subprocess.run) -> Kubectl:
        directory = Path(tempfile.mkdtemp(prefix="atomic-roll-"))
        path = directory / "kubeconfig"
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(text)
        return cls(path, runner)

    def close(self) -> None:
        self.kubeconfig.unlink(missing_ok=True)
        self.kubeconfig.parent.rmdir()

    def _run(self, args: Sequence[str], timeout: float = KUBECTL_TIMEOUT,
             check: bool = True) -> subprocess.CompletedProcess[Any]:
        command = ["kubectl", f"--kubeconfig={self.kubeconfig}", *args]
        try:
            done = self.runner(command, capture_output=True, text=True, timeout=timeout + 30)
        except FileNotFoundError:
            raise RollError("kubectl is not on PATH") from None
        except subprocess.TimeoutExpired:
            raise RollError(f"`kubectl {' '.join(args)}` did not finish within {timeout + 30:.0f} s") from None
        if check and done.returncode != 0:
            last = ((done.stderr or "").strip().splitlines() or ["no message"])[-1]
            raise RollError(f"`kubectl {' '.join(args)}` exited {done.returncode}: {last}")
        return done

    def state(self, node: str) -> NodeState | None:
        done = self._run(["get", "node", node, "-o", "json"], check=False)
        if done.returncode != 0:
            if "NotFound" in (done.stderr or ""):
                return None
            raise RollError(f"`kubectl get node {node}` exited {done.returncode}: {(done.stderr or '').strip()}")
        return parse_node(json.loads(done.stdout))

    def cordon(self, node: str) -> None:
        self._run(["cordon", node])

    def uncordon(self, node: str) -> None:
        self._run(["uncordon", node])

    def drain(self, node: str, timeout: float) -> None:
        self._run(["drain", node, "--ignore-daemonsets", "--delete-emptydir-data", f"--timeout={int(timeout)}s"],
                  timeout=timeout)
