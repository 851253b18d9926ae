"""What the rendered NetworkPolicies allow, by the NetworkPolicy API's own rules (networking.k8s.io/v1).

No datapath runs here (the agent is a container image on an nftables kernel), so the tests ask a
narrower question that still decides whether the workload works under its default deny: given
every policy the program renders and every pod its controllers would create, which connections
does the API's definition admit? The rules, from the API reference and the Kubernetes docs'
"Network Policies" page:

- A pod is isolated for ingress (egress) when some policy in its namespace selects it and lists
  Ingress (Egress) in policyTypes. A connection needs the source's egress and the destination's
  ingress: each side is allowed when it is not isolated, or when one rule of one policy selecting
  it admits the other side and the port.
- A rule with `from`/`to` missing or empty admits every peer, likewise `ports` every port. A peer with only a
  podSelector means pods of the policy's own namespace; only a namespaceSelector, every pod in the
  namespaces it selects; both, the pods it selects in those namespaces (one peer: AND, two peers: OR).
  An ipBlock admits addresses outside the cluster (`except` carved out); pods are matched by
  selectors here, as the implementations that resolve pod IPs do.
- A port is a number or the name of a destination container port; endPort makes a range.
- Traffic from the node to its own pods (kubelet probes) is always allowed: not modelled.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}


@dataclass(frozen=True)
class Endpoint:
    """A pod (name, namespace, labels, its containers' named ports) or, with `address`, a host outside the cluster."""

    name: str
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, tuple[int, str]] = field(default_factory=dict)  # name -> (number, protocol)
    host_network: bool = False
    address: str | None = None

    @property
    def external(self) -> bool:
        return self.address is not None


def external(address: str) -> Endpoint:
    return Endpoint(name=f"external {address}", address=address)


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector: matchLabels and matchExpressions all hold; an empty selector selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


@dataclass
class Cluster:
    """Namespaces (name -> labels), pods and policies: enough to decide a connection."""

    namespaces: dict[str, dict[str, str]]
    pods: list[Endpoint]
    policies: list[dict[str, Any]]

    def pod(self, name: str, namespace: str | None = None) -> Endpoint:
        found = [p for p in self.pods if p.name == name and namespace in (None, p.namespace)]
        assert len(found) == 1, f"{len(found)} pods named {name}"
        return found[0]

    def _selecting(self, pod: Endpoint, direction: str) -> list[dict[str, Any]]:
        return [p for p in self.policies if p["metadata"].get("namespace") == pod.namespace
                and matches(p["spec"].get("podSelector"), pod.labels) and direction in _policy_types(p["spec"])]

    def _peer_admits(self, peer: Mapping[str, Any], policy_namespace: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            if not other.external:
                return False
            address = ipaddress.ip_address(other.address)  # type: ignore[arg-type]
            block = peer["ipBlock"]
            return address in ipaddress.ip_network(block["cidr"]) and not any(
                address in ipaddress.ip_network(cut) for cut in block.get("except") or [])
        if other.external:
            return False
        if "namespaceSelector" in peer:
            if not matches(peer["namespaceSelector"], self.namespaces.get(other.namespace, {})):
                return False
        elif other.namespace != policy_namespace:
            return False
        return "podSelector" not in peer or matches(peer["podSelector"], other.labels)

    @staticmethod
    def _port_admits(rule_ports: Sequence[Mapping[str, Any]] | None, destination: Endpoint, port: int,
                     protocol: str) -> bool:
        if not rule_ports:
            return True
        for entry in rule_ports:
            if entry.get("protocol", "TCP") != protocol:
                continue
            wanted = entry.get("port")
            if wanted is None:
                return True
            if isinstance(wanted, str):
                named = destination.ports.get(wanted)
                if named and named == (port, protocol):
                    return True
                continue
            if wanted <= port <= entry.get("endPort", wanted):
                return True
        return False

    def _side_allows(self, pod: Endpoint, direction: str, other: Endpoint, destination: Endpoint, port: int,
                     protocol: str) -> bool:
        if pod.external or pod.host_network:
            return True  # no policy governs a host's own network namespace
        policies = self._selecting(pod, direction)
        if not policies:
            return True
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in policies:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key)  # missing or empty: every peer
                admits = not peers or any(self._peer_admits(p, pod.namespace, other) for p in peers)
                if admits and self._port_admits(rule.get("ports"), destination, port, protocol):
                    return True
        return False

    def allows(self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP") -> bool:
        return (self._side_allows(source, "Egress", destination, destination, port, protocol)
                and self._side_allows(destination, "Ingress", source, destination, port, protocol))


def _policy_types(spec: Mapping[str, Any]) -> list[str]:
    """policyTypes, defaulted as the API server defaults it: Ingress, plus Egress when egress rules exist."""
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def _pods_of(obj: Mapping[str, Any]) -> Iterable[Endpoint]:
    """The pods a controller object creates: for a StatefulSet, one per ordinal with the label the
    controller adds; for the others one representative pod (a CronJob's: its job template's)."""
    template = (obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"])["template"]
    labels = dict(template.get("metadata", {}).get("labels") or {})
    spec = template["spec"]
    ports = {p["name"]: (p["containerPort"], p.get("protocol", "TCP"))
             for c in spec.get("containers", []) for p in c.get("ports") or [] if p.get("name")}
    namespace = obj["metadata"].get("namespace", "default")
    name = obj["metadata"]["name"]
    host = bool(spec.get("hostNetwork"))
    if obj["kind"] == "StatefulSet":
        for ordinal in range(obj["spec"].get("replicas", 1)):
            pod = f"{name}-{ordinal}"
            yield Endpoint(pod, namespace, {**labels, "statefulset.kubernetes.io/pod-name": pod}, ports, host)
    else:
        yield Endpoint(name, namespace, labels, ports, host)


def cluster_of(objects: Iterable[Mapping[str, Any]], extra_pods: Iterable[Endpoint] = (),
               namespaces: Iterable[str] = ("default", "kube-system")) -> Cluster:
    """The cluster the rendered objects describe; every namespace carries kubernetes.io/metadata.name,
    which the API server sets on every namespace."""
    objects = list(objects)
    names = set(namespaces) | {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    labels = {n: {"kubernetes.io/metadata.name": n} for n in names}
    for obj in objects:
        if obj["kind"] == "Namespace":
            labels[obj["metadata"]["name"]].update(obj["metadata"].get("labels") or {})
    pods = [pod for o in objects if o["kind"] in WORKLOADS for pod in _pods_of(o)]
    policies = [dict(o) for o in objects if o["kind"] == "NetworkPolicy"]
    return Cluster(labels, [*pods, *extra_pods], policies)
