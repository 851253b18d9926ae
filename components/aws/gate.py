"""ClusterReadyGate: the point in `pulumi up` after which the cluster's API serves and its minions are Ready.

A Python dynamic resource whose create (and update) runs aws/readiness.wait_for_cluster with the
stack's own kubeconfig, and whose `kubeconfig` output is that same kubeconfig, available only
once the wait succeeded. The stack's Kubernetes provider is built from this output, so no
Kubernetes object of the cluster is sent before the API can take it (pulumi-kubernetes does not
retry an unreachable API server: pulumi/pulumi-kubernetes#1044 and #3429, both open).

Why a dynamic provider, not pulumi-command: the wait is this program's own tested Python
(readiness.py), run in the engine's pulumi-python dynamic provider process with the project
directory as its working directory (so `components` imports), with no further provider plugin to
pin, and the kubeconfig never leaves the Python process (no shell, no environment variable). A
refused wait is the resource's own error, one line, in the CLI. Known limits of dynamic providers
(docs/first-up.md): the provider class is stored in the state by value (dill) and tied to the
Python minor version that created it; its inputs reach it as plain values, and `kubeconfig`, a
secret input, is returned under the same name, which the engine marks secret again (plus
additional_secret_outputs, to be sure).

During `pulumi preview` only check and diff run (dynamic providers do not preview creates), so the
preview never blocks on it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic as dynamic

INPUTS = ("kubeconfig", "cluster", "nodes", "timeoutSeconds")
DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"  # what the engine registers any Python dynamic resource as


def _wait(props: Mapping[str, Any]) -> None:
    # Imported here, by reference: the dynamic provider process imports it from the project directory.
    from components.aws import readiness

    target = readiness.target_from_kubeconfig(props["kubeconfig"])
    nodes = [readiness.Node(n["name"], n["role"], n["instanceId"]) for n in props["nodes"]]
    readiness.wait_for_cluster(target, props["cluster"], nodes, float(props["timeoutSeconds"]),
                               report=lambda line: print(f"cluster {props['cluster']}: {line}", file=sys.stderr))


class ReadinessProvider(dynamic.ResourceProvider):
    """Waits on create and on update; a change of any input (a new minion, a new kubeconfig) waits again."""

    def create(self, props: Any) -> dynamic.CreateResult:
        _wait(props)
        return dynamic.CreateResult(id_=str(props["cluster"]), outs=dict(props))

    def diff(self, _id: str, olds: Any, news: Any) -> dynamic.DiffResult:
        changed = [key for key in INPUTS if olds.get(key) != news.get(key)]
        return dynamic.DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def update(self, _id: str, _olds: Any, news: Any) -> dynamic.UpdateResult:
        _wait(news)
        return dynamic.UpdateResult(outs=dict(news))


@dataclass(frozen=True)
class GateNode:
    name: str
    role: str
    instance_id: pulumi.Input[str]


class ClusterReadyGate(dynamic.Resource):
    """The gate's outputs; `kubeconfig` resolves once the cluster is ready (secret)."""

    kubeconfig: pulumi.Output[str]

    def __init__(self, name: str, kubeconfig: pulumi.Input[str], cluster: str, nodes: Sequence[GateNode],
                 timeout_seconds: int, opts: pulumi.ResourceOptions | None = None) -> None:
        if timeout_seconds <= 0:
            raise ValueError(f"the readiness gate needs a positive timeout, not {timeout_seconds}")
        if not any(n.role == "minion" for n in nodes):
            raise ValueError("the readiness gate needs at least one minion to wait for")
        props = {
            "kubeconfig": pulumi.Output.secret(kubeconfig),
            "cluster": cluster,
            "nodes": [{"name": n.name, "role": n.role, "instanceId": n.instance_id} for n in nodes],
            "timeoutSeconds": timeout_seconds,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig"])
        super().__init__(ReadinessProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret))
