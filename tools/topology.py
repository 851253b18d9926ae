"""The topology picture of a stack: build/<stack>/topology.svg, and topology.png when asked.

One look shows what a change does to the shape of the system: the zones with their
subnets (public or private, what is in each: nodes, NAT gateways, load balancers, the
Instance Connect Endpoint), masters and minions inside their security groups, every
port those groups open and to whom, and the workload (StatefulSet pods, Deployments,
Services and what they select).

Three steps, each pure until the last: `extract` reads the offline preview (a
Plan or its plan.json) into a small model, `layout` turns the model into boxes,
lines and text, and the writers draw the same shapes as SVG (by hand, no
dependency) and PNG (Pillow). The SVG is drawn on every preview, so it stays linear in the
number of resources; the PNG (a raster of the same shapes: about 0.08 s for prod in a fresh
process, Pillow's import and fonts included, some 5% of that preview, measured on the project's
2-CPU build machine) only when asked: `make preview` and `python -m tools.topology` ask, the tests
and `--quiet` runs do not. Pillow is imported only to write it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

from components import tokens

if TYPE_CHECKING:
    from PIL import ImageFont

    from tools.harness.offline import Plan

WORKLOAD_KINDS = ("StatefulSet", "Deployment", "DaemonSet")

# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    instance_type: str
    private_ip: str
    protected: bool = False
    zone: str = ""
    public: bool = False  # the node gets a public IPv4 address


@dataclass(frozen=True)
class Subnet:
    """One subnet: where it is, whether the internet reaches into it, and what it holds."""

    name: str
    cidr: str
    zone: str
    public: bool  # routed to the internet gateway (else: a private subnet, out through a NAT gateway)
    nodes: tuple[str, ...]
    holds: tuple[str, ...]  # "NAT gateway", "load balancers", "Instance Connect Endpoint"


@dataclass(frozen=True)
class Opening:
    """Ingress to a group on some ports, from some sources (CIDRs or other groups)."""

    ports: str
    sources: tuple[str, ...]
    world: bool


@dataclass
class Group:
    urn: str
    label: str
    description: str
    openings: list[Opening] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)


@dataclass(frozen=True)
class Workload:
    kind: str
    name: str
    namespace: str
    replicas: str
    images: tuple[str, ...]
    pods: tuple[str, ...]
    pod_labels: Mapping[str, str]
    protected: bool = False
    volumes: str = ""


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    kind: str
    ports: str
    selector: Mapping[str, str]


@dataclass(frozen=True)
class Balancer:
    """A load balancer: what it listens on, who may reach it, and which nodes it forwards to."""

    name: str
    kind: str  # network, application
    scheme: str  # internet-facing, internal
    listeners: tuple[str, ...]  # "6443/tcp → 6443/tcp on ip targets"
    sources: tuple[str, ...]  # from its security group's ingress
    targets: tuple[str, ...]  # node names (or the raw target when no node matches)
    protected: bool = False  # Pulumi protect
    deletion_protection: bool = False  # AWS refuses to delete it

    @property
    def world(self) -> bool:
        return any("← INTERNET" in s for s in self.sources)


@dataclass(frozen=True)
class Access:
    """What the nodes of one role may read: their IAM policies and their SSM parameters."""

    role: str
    nodes: int
    policies: tuple[tuple[str, tuple[str, ...]], ...]  # (policy, its statement ids), per node
    parameters: int  # per node
    parameter_type: str
    path: str  # with <node> for the node's name
    files: tuple[str, ...]  # parameter names below the node's path
    key: str = ""  # the KMS key (alias) the parameters are encrypted with


@dataclass
class Topology:
    stack: str
    network: str
    groups: list[Group]
    loose_nodes: list[Node]
    namespaces: list[str]
    workloads: list[Workload]
    services: list[Service]
    others: dict[str, int]
    balancers: list[Balancer] = field(default_factory=list)
    access: list[Access] = field(default_factory=list)
    subnets: list[Subnet] = field(default_factory=list)

    @property
    def zones(self) -> list[str]:
        return list(dict.fromkeys(s.zone for s in self.subnets))

    @property
    def nodes(self) -> list[Node]:
        return [n for g in self.groups for n in g.nodes] + self.loose_nodes

    def targets(self, service: Service) -> list[tuple[Workload, str | None]]:
        """What a Service selects: (workload, None) for all its pods, (workload, pod) for one StatefulSet pod.

        Same namespace, and the selector within the pod template's labels; the per-pod labels the
        StatefulSet controller adds (pod-name, pod-index) pick out one pod.
        """
        if not service.selector:
            return []
        found: list[tuple[Workload, str | None]] = []
        for w in self.workloads:
            general = {k: v for k, v in service.selector.items() if k not in POD_LABELS}
            if w.namespace != service.namespace or any(w.pod_labels.get(k) != v for k, v in general.items()):
                continue
            pod = _selected_pod(w, service.selector)
            if pod is None and len(general) < len(service.selector):
                continue
            found.append((w, pod))
        return found


POD_NAME = "statefulset.kubernetes.io/pod-name"
POD_INDEX = "apps.kubernetes.io/pod-index"
POD_LABELS = (POD_NAME, POD_INDEX)


def _selected_pod(w: Workload, selector: Mapping[str, str]) -> str | None:
    if POD_NAME in selector:
        return selector[POD_NAME] if selector[POD_NAME] in w.pods else None
    if POD_INDEX in selector:
        pod = f"{w.name}-{selector[POD_INDEX]}"
        return pod if pod in w.pods else None
    return None


# --------------------------------------------------------------------------
# Extract: plan -> model
# --------------------------------------------------------------------------


def _entries(plan: Plan | Mapping[str, Any]) -> tuple[str, list[Mapping[str, Any]]]:
    """(stack, resources as plan.json entries) from a Plan or a loaded plan.json."""
    if isinstance(plan, Mapping):
        return str(plan.get("stack", "")), list(plan.get("resources", []))
    # In plan.json's order (by URN): registration order varies from run to run, the picture must not.
    return plan.stack, [r.to_json() for r in sorted(plan.resources, key=lambda r: r.urn)]


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _ports(protocol: Any, low: Any, high: Any) -> str:
    proto = str(protocol or "").lower()
    if proto in ("-1", "all"):
        return "all traffic"
    name = {"6": "tcp", "17": "udp", "1": "icmp"}.get(proto, proto)
    if low is None or high is None:
        return name
    return f"{low}/{name}" if low == high else f"{low}-{high}/{name}"


def _port_key(ports: str) -> tuple[int, str]:
    head = ports.split("/")[0].split("-")[0]
    return (int(head), ports) if head.isdigit() else (-1, ports)


def _is_world(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _cidr_label(cidr: str) -> str:
    return f"INTERNET {cidr}" if _is_world(cidr) else cidr


def _group_ids(entries: list[Mapping[str, Any]], groups: dict[str, Group]) -> dict[str, str]:
    """Provider id -> group URN.

    Taken from the recorded ids when the harness has them; otherwise from rules that
    depend on exactly one group (a rule always depends on the group it belongs to).
    """
    ids = {str(e["id"]): e["urn"] for e in entries if e["urn"] in groups and e.get("id")}
    if ids:
        return ids
    for e in entries:
        if e["type"] not in (tokens.INGRESS_RULE, tokens.SECURITY_GROUP_RULE):
            continue
        owners = [u for u in _get(e, "options", "dependsOn") or [] if u in groups]
        group_id = _get(e, "inputs", "securityGroupId")
        if len(owners) == 1 and group_id:
            ids.setdefault(str(group_id), owners[0])
    return ids


def _sources(inputs: Mapping[str, Any], ids: dict[str, str], groups: dict[str, Group], own: str) -> list[str]:
    sources = []
    for key in ("cidrIpv4", "cidrIpv6"):
        if inputs.get(key):
            sources.append(_cidr_label(str(inputs[key])))
    for key in ("cidrBlocks", "ipv6CidrBlocks"):
        sources += [_cidr_label(str(c)) for c in inputs.get(key) or []]
    for key in ("referencedSecurityGroupId", "sourceSecurityGroupId"):
        if inputs.get(key):
            urn = ids.get(str(inputs[key]))
            sources.append(f"SG {groups[urn].label}" if urn in groups else str(inputs[key]))
    for ref in inputs.get("securityGroups") or []:
        urn = ids.get(str(ref))
        sources.append(f"SG {groups[urn].label}" if urn in groups else str(ref))
    if inputs.get("self"):
        sources.append(f"SG {groups[own].label}")
    if inputs.get("prefixListId"):
        sources.append(f"prefix list {inputs['prefixListId']}")
    return sources or ["?"]


def _ingress(entries: list[Mapping[str, Any]], groups: dict[str, Group], ids: dict[str, str]) -> None:
    """Fill every group's openings: (ports) <- sources, merged per port range."""
    found: dict[str, dict[str, list[str]]] = {urn: {} for urn in groups}
    for e in entries:
        inputs = e.get("inputs") or {}
        if e["type"] == tokens.SECURITY_GROUP and e["urn"] in groups:
            for rule in inputs.get("ingress") or []:
                ports = _ports(rule.get("protocol"), rule.get("fromPort"), rule.get("toPort"))
                found[e["urn"]].setdefault(ports, []).extend(_sources(rule, ids, groups, e["urn"]))
            continue
        ingress = e["type"] == tokens.INGRESS_RULE or (
            e["type"] == tokens.SECURITY_GROUP_RULE and inputs.get("type") == "ingress"
        )
        if not ingress:
            continue
        owner = ids.get(str(inputs.get("securityGroupId")))
        if owner is None:
            continue
        protocol = inputs.get("ipProtocol", inputs.get("protocol"))
        ports = _ports(protocol, inputs.get("fromPort"), inputs.get("toPort"))
        found[owner].setdefault(ports, []).extend(_sources(inputs, ids, groups, owner))
    for urn, by_port in found.items():
        groups[urn].openings = [
            Opening(ports, tuple(dict.fromkeys(sources)), any(s.startswith("INTERNET") for s in sources))
            for ports, sources in sorted(by_port.items(), key=lambda item: _port_key(item[0]))
        ]


def _node(e: Mapping[str, Any], subnets: Mapping[str, Mapping[str, Any]] | None = None) -> Node:
    inputs = e.get("inputs") or {}
    tags = inputs.get("tags") or {}
    name = str(tags.get("Name") or e["name"])
    role = str(tags.get("Role") or ("master" if "master" in name else "minion" if "minion" in name else "node"))
    protected = bool(_get(e, "options", "protect"))
    subnet = (subnets or {}).get(str(inputs.get("subnetId")), {})
    public = inputs.get("associatePublicIpAddress")
    if public is None:
        public = _get(subnet, "inputs", "mapPublicIpOnLaunch")
    return Node(name, role, str(inputs.get("instanceType", "")), str(inputs.get("privateIp") or ""), protected,
                str(_get(subnet, "inputs", "availabilityZone") or ""), bool(public))


def _node_order(node: Node) -> tuple[int, int, str]:
    """Masters first, then by the number in the name (minion-10 after minion-9)."""
    digits = "".join(ch for ch in node.name.rsplit("-", 1)[-1] if ch.isdigit())
    return (0 if node.role == "master" else 1, int(digits) if digits else 0, node.name)


def _subnets_by_id(entries: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(e.get("id")): e for e in entries if e["type"] == tokens.SUBNET and e.get("id")}


def _place_nodes(entries: list[Mapping[str, Any]], groups: dict[str, Group], ids: dict[str, str]) -> list[Node]:
    loose = []
    subnets = _subnets_by_id(entries)
    for e in sorted((e for e in entries if e["type"] == tokens.INSTANCE), key=lambda e: _node_order(_node(e))):
        node = _node(e, subnets)
        named = [ids.get(str(i)) for i in _get(e, "inputs", "vpcSecurityGroupIds") or []]
        owners = [u for u in named if u in groups] or [
            u for u in _get(e, "options", "dependsOn") or [] if u in groups
        ]
        if owners:
            for urn in owners:
                groups[urn].nodes.append(node)
        else:
            loose.append(node)
    return loose


def _network(entries: list[Mapping[str, Any]], stack: str) -> str:
    vpc = next((e for e in entries if e["type"] == tokens.VPC), None)
    subnets = [e for e in entries if e["type"] == tokens.SUBNET]
    stack_entry = next((e for e in entries if e["type"] == tokens.AWS_PROVIDER), None)
    parts = []
    if stack_entry and _get(stack_entry, "inputs", "region"):
        parts.append(f"aws {_get(stack_entry, 'inputs', 'region')}")
    if vpc:
        protected = " (protected)" if _get(vpc, "options", "protect") else ""
        parts.append(f"VPC {_get(vpc, 'inputs', 'cidrBlock')}{protected}")
    zones = {str(_get(e, "inputs", "availabilityZone") or "") for e in subnets}
    if subnets:
        parts.append(f"{len(zones)} zone{'s' if len(zones) != 1 else ''}, "
                     f"{len(subnets)} subnet{'s' if len(subnets) != 1 else ''}")
    return " · ".join(parts)


def _subnets(entries: list[Mapping[str, Any]]) -> list[Subnet]:
    """Every subnet with its zone, whether its route table leads to the internet gateway, and what is in it."""
    by_id = _subnets_by_id(entries)
    tables = {str(_get(e, "inputs", "routeTableId")): e for e in entries if e["type"] == tokens.ROUTE}
    to_igw = {table for table, route in tables.items() if _get(route, "inputs", "gatewayId")}
    public = {str(_get(e, "inputs", "subnetId")) for e in entries if e["type"] == tokens.ROUTE_TABLE_ASSOCIATION
              and str(_get(e, "inputs", "routeTableId")) in to_igw}
    nodes: dict[str, list[Node]] = {}
    for e in entries:
        if e["type"] == tokens.INSTANCE:
            nodes.setdefault(str(_get(e, "inputs", "subnetId")), []).append(_node(e, by_id))
    holds: dict[str, list[str]] = {}
    for e in entries:
        where = [str(_get(e, "inputs", "subnetId"))] if e["type"] in (tokens.NAT_GATEWAY,
                                                                       tokens.INSTANCE_CONNECT_ENDPOINT) else []
        if e["type"] == tokens.LOAD_BALANCER:
            where = [str(s) for s in _get(e, "inputs", "subnets") or []]
        what = {tokens.NAT_GATEWAY: "NAT gateway", tokens.LOAD_BALANCER: "load balancers",
                tokens.INSTANCE_CONNECT_ENDPOINT: "Instance Connect Endpoint"}.get(e["type"])
        for subnet in where:
            if what and what not in holds.setdefault(subnet, []):
                holds[subnet].append(what)
    found = []
    for subnet_id, e in by_id.items():
        inputs = e.get("inputs") or {}
        found.append(Subnet(str(_get(inputs, "tags", "Name") or e["name"]), str(inputs.get("cidrBlock") or ""),
                            str(inputs.get("availabilityZone") or ""), subnet_id in public,
                            tuple(n.name for n in sorted(nodes.get(subnet_id, []), key=_node_order)),
                            tuple(holds.get(subnet_id, []))))
    return sorted(found, key=lambda s: (s.zone, not s.public, s.cidr))


def _replicas(obj: Mapping[str, Any], hpas: Mapping[tuple[str, str], Mapping[str, Any]]) -> int | str:
    hpa = hpas.get((obj["kind"], obj["name"]))
    if hpa is not None:
        return f"{hpa.get('minReplicas', 1)}-{hpa.get('maxReplicas')} (HPA)"
    replicas = _get(obj, "spec", "replicas")
    if obj["kind"] == "DaemonSet":
        return "one per node"
    return int(replicas) if isinstance(replicas, int | float) else 1


def _claims(obj: Mapping[str, Any]) -> str:
    """A StatefulSet's per-pod volumes, e.g. "data 10Gi gp3 per pod"."""
    claims = []
    for claim in _get(obj, "spec", "volumeClaimTemplates") or []:
        size = _get(claim, "spec", "resources", "requests", "storage")
        storage_class = _get(claim, "spec", "storageClassName")
        claims.append(" ".join(str(p) for p in (_get(claim, "metadata", "name"), size, storage_class) if p))
    return f"volume {', '.join(claims)} per pod" if claims else ""


def _kubernetes(entries: list[Mapping[str, Any]]) -> tuple[list[str], list[Workload], list[Service], dict[str, int]]:
    objects = []
    for e in entries:
        inputs = e.get("inputs") or {}
        if e["type"].startswith("kubernetes:") and "kind" in inputs:
            name = _get(inputs, "metadata", "name") or e["name"]
            objects.append({**inputs, "name": str(name), "namespace": str(_get(inputs, "metadata", "namespace") or ""),
                            "protected": bool(_get(e, "options", "protect"))})
    hpas = {
        (str(_get(o, "spec", "scaleTargetRef", "kind")), str(_get(o, "spec", "scaleTargetRef", "name"))): o["spec"]
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
    }
    # The workload's own namespace first, then those it only uses (the add-ons' kube-system).
    created = sorted(o["name"] for o in objects if o["kind"] == "Namespace")
    namespaces = created + sorted({o["namespace"] for o in objects if o["namespace"]} - set(created))
    workloads: list[Workload] = []
    services: list[Service] = []
    others: dict[str, int] = {}
    for o in objects:
        if o["kind"] in WORKLOAD_KINDS:
            replicas = _replicas(o, hpas)
            pods = tuple(f"{o['name']}-{i}" for i in range(replicas)) if o["kind"] == "StatefulSet" and isinstance(
                replicas, int
            ) else ()
            template = _get(o, "spec", "template") or {}
            containers = _get(template, "spec", "containers") or []
            workloads.append(
                Workload(
                    kind=o["kind"],
                    name=o["name"],
                    namespace=o["namespace"],
                    replicas=f"{replicas} pod{'s' if replicas != 1 else ''}" if isinstance(replicas, int) else replicas,
                    images=tuple(dict.fromkeys(str(c.get("image", "")) for c in containers)),
                    pods=pods,
                    pod_labels=_get(template, "metadata", "labels") or {},
                    protected=o["protected"],
                    volumes=_claims(o),
                )
            )
        elif o["kind"] == "Service":
            spec = o.get("spec") or {}
            kind = "headless" if spec.get("clusterIP") == "None" else str(spec.get("type") or "ClusterIP")
            ports = ", ".join(
                f"{p.get('port')}/{str(p.get('protocol') or 'TCP').lower()}" for p in spec.get("ports") or []
            )
            services.append(Service(o["name"], o["namespace"], kind, ports, spec.get("selector") or {}))
        elif o["kind"] not in ("Namespace", "HorizontalPodAutoscaler"):
            others[o["kind"]] = others.get(o["kind"], 0) + 1
    order = {kind: i for i, kind in enumerate(WORKLOAD_KINDS)}
    workloads.sort(key=lambda w: (order[w.kind], w.name))
    services.sort(key=lambda s: s.name)
    return namespaces, workloads, services, others


def _lookup(ref: Any, entries: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The entry a reference names: by provider id, or by the resource name an ARN ends with."""
    text = str(ref or "")
    if not text:
        return None
    return next((e for e in entries if str(e.get("id") or "") == text), None) or next(
        (e for e in entries if text.rsplit("/", 1)[-1] == e["name"]), None)


def _balancers(entries: list[Mapping[str, Any]], groups: dict[str, Group], ids: dict[str, str]) -> list[Balancer]:
    instances = [e for e in entries if e["type"] == tokens.INSTANCE]
    by_id = {str(e.get("id")): _node(e).name for e in instances if e.get("id")}
    by_ip = {str(_get(e, "inputs", "privateIp")): _node(e).name for e in instances if _get(e, "inputs", "privateIp")}
    listeners = [e for e in entries if e["type"] == tokens.LISTENER]
    groups_tg = [e for e in entries if e["type"] == tokens.TARGET_GROUP]
    attachments = [e for e in entries if e["type"] == tokens.TARGET_GROUP_ATTACHMENT]
    found = []
    for lb in (e for e in entries if e["type"] == tokens.LOAD_BALANCER):
        inputs = lb.get("inputs") or {}
        lines, targets = [], []
        for listener in listeners:
            if _lookup(_get(listener, "inputs", "loadBalancerArn"), [lb]) is None:
                continue
            listen = _ports(_get(listener, "inputs", "protocol") or "tcp", _get(listener, "inputs", "port"),
                            _get(listener, "inputs", "port"))
            for action in _get(listener, "inputs", "defaultActions") or []:
                group = _lookup(action.get("targetGroupArn"), groups_tg)
                if group is None:
                    lines.append(f"{listen} → {action.get('type', '?')}")
                    continue
                g = group.get("inputs") or {}
                target_type = g.get("targetType") or "instance"
                lines.append(f"{listen} → {_ports(g.get('protocol') or 'tcp', g.get('port'), g.get('port'))}"
                             f" on {target_type} targets")
                for attachment in attachments:
                    if _lookup(_get(attachment, "inputs", "targetGroupArn"), [group]) is not None:
                        target = str(_get(attachment, "inputs", "targetId"))
                        targets.append(by_id.get(target) or by_ip.get(target) or target)
        sources: list[str] = []
        for ref in inputs.get("securityGroups") or []:
            own_group = groups.get(ids.get(str(ref), ""))
            for opening in own_group.openings if own_group else []:
                sources += [f"{opening.ports} ← {source}" for source in opening.sources]
        found.append(Balancer(
            name=str(_get(inputs, "tags", "Name") or lb["name"]),
            kind=str(inputs.get("loadBalancerType") or "application"),
            scheme="internal" if inputs.get("internal") else "internet-facing",
            listeners=tuple(lines) or ("no listener",),
            sources=tuple(dict.fromkeys(sources)) or ("no security group: every address",),
            targets=tuple(sorted(dict.fromkeys(targets), key=lambda t: _node_order(Node(t, "", "", "")))),
            protected=bool(_get(lb, "options", "protect")),
            deletion_protection=bool(inputs.get("enableDeletionProtection")),
        ))
    return sorted(found, key=lambda b: b.name)


def _statement_ids(policy: Any) -> tuple[str, ...]:
    try:
        document = json.loads(policy) if isinstance(policy, str) else policy
    except json.JSONDecodeError:
        return ()
    statements = _get(document, "Statement") or []
    return tuple(str(s.get("Sid")) for s in statements if isinstance(s, Mapping) and s.get("Sid"))


def _access(entries: list[Mapping[str, Any]]) -> list[Access]:
    """Per node role: each node's IAM policies (instance -> profile -> role -> inline policies) and
    its SSM parameters (those whose path has the node's name as a segment)."""
    profiles = {str(e.get("id")): _get(e, "inputs", "role")
                for e in entries if e["type"] == tokens.IAM_INSTANCE_PROFILE}
    policies: dict[str, list[Mapping[str, Any]]] = {}
    for e in entries:
        if e["type"] == tokens.IAM_ROLE_POLICY:
            policies.setdefault(str(_get(e, "inputs", "role")), []).append(e)
    parameters = [e for e in entries if e["type"] == tokens.SSM_PARAMETER]
    aliases = {str(_get(e, "inputs", "targetKeyId")): str(_get(e, "inputs", "name") or e["name"])
               for e in entries if e["type"] == tokens.KMS_ALIAS}
    per_role: dict[str, list[tuple[Node, list[tuple[str, tuple[str, ...]]], list[Mapping[str, Any]]]]] = {}
    for e in entries:
        if e["type"] != tokens.INSTANCE:
            continue
        node = _node(e)
        role_id = str(profiles.get(str(_get(e, "inputs", "iamInstanceProfile"))))
        # A policy's own part of its name: cluster-atomic-minion-1-ebs-csi -> ebs-csi
        attached = [(p["name"].split(node.name, 1)[-1].lstrip("-") or p["name"],
                     _statement_ids(_get(p, "inputs", "policy"))) for p in policies.get(role_id, [])]
        own = [p for p in parameters if node.name in str(_get(p, "inputs", "name") or p["name"]).split("/")]
        per_role.setdefault(node.role, []).append((node, sorted(attached), own))
    found = []
    for role, members in per_role.items():
        node, attached, own = members[0]
        names = [str(_get(p, "inputs", "name") or p["name"]) for p in own]
        prefix = names[0].split(f"/{node.name}/", 1)[0] + "/<node>/" if names and f"/{node.name}/" in names[0] else ""
        files = tuple(sorted(n.split(f"/{node.name}/", 1)[-1] for n in names))
        types = sorted({str(_get(p, "inputs", "type") or "String") for p in own})
        keys = sorted({aliases.get(str(_get(p, "inputs", "keyId")), str(_get(p, "inputs", "keyId")))
                       for p in own if _get(p, "inputs", "keyId")})
        found.append(Access(role, len(members), tuple(attached), len(own), "/".join(types), prefix, files,
                            ", ".join(keys)))
    return sorted(found, key=lambda a: (a.role != "master", a.role))


def extract(plan: Plan | Mapping[str, Any]) -> Topology:
    stack, entries = _entries(plan)
    groups = {
        e["urn"]: Group(
            e["urn"],
            str(_get(e, "inputs", "tags", "Name") or e["name"]),
            str(_get(e, "inputs", "description") or ""),
        )
        for e in entries
        if e["type"] == tokens.SECURITY_GROUP
    }
    ids = _group_ids(entries, groups)
    _ingress(entries, groups, ids)
    loose = _place_nodes(entries, groups, ids)
    namespaces, workloads, services, others = _kubernetes(entries)
    # Groups without instances (the frontend NLB's) appear as sources on the groups they reach.
    placed = [g for g in groups.values() if g.nodes]
    ordered = sorted(placed, key=lambda g: (min((_node_order(n) for n in g.nodes), default=(9, 0, "")), g.label))
    return Topology(stack, _network(entries, stack), ordered, loose, namespaces, workloads, services, others,
                    _balancers(entries, groups, ids), _access(entries), _subnets(entries))


# --------------------------------------------------------------------------
# Layout: model -> shapes
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    stroke: str
    radius: float = 6
    dashed: bool = False


@dataclass(frozen=True)
class Text:
    x: float
    y: float  # baseline
    text: str
    size: int = 12
    bold: bool = False
    fill: str = "#1f2933"
    anchor: str = "start"  # start | middle | end


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str = "#52606d"
    arrow: bool = True


Shape = Rect | Text | Line


@dataclass
class Drawing:
    width: float
    height: float
    shapes: list[Shape]

    def texts(self) -> list[str]:
        return [s.text for s in self.shapes if isinstance(s, Text)]


MARGIN = 24
PAD = 12
GAP = 20
NODE_W, NODE_H = 240, 44
POD_W, POD_H = 92, 24
POD_COLUMNS = 5
SERVICE_H = 42
# Wider grids for big clusters keep the picture from turning into a column.
NODE_COLUMNS = ((16, 4), (64, 6), (10**9, 10))
LINE = 17
# Average glyph width as a share of the font size, generous so that text stays inside its box.
GLYPH = 0.62
COLORS = {
    "master": ("#dbeafe", "#1d4ed8"),
    "minion": ("#dcfce7", "#15803d"),
    "node": ("#f1f5f9", "#475569"),
}
PANEL = ("#f8fafc", "#94a3b8")
WORLD_TEXT = "#b91c1c"
PUBLIC_TEXT = "#c2410c"  # a subnet whose nodes have public addresses
PROTECTED = "#92400e"


def text_width(text: str, size: int = 12) -> float:
    return len(text) * size * GLYPH


def _opening_line(opening: Opening) -> str:
    return f"{opening.ports}  ←  {', '.join(opening.sources)}"


def _group_size(group: Group) -> tuple[float, float, int]:
    limit = next(columns for count, columns in NODE_COLUMNS if len(group.nodes) <= count)
    columns = max(1, min(len(group.nodes), limit))
    rows = math.ceil(len(group.nodes) / columns) if group.nodes else 0
    grid_w = columns * NODE_W + (columns - 1) * 8
    lines = [_opening_line(o) for o in group.openings] or ["no ingress"]
    table_w = max(text_width(line) for line in [*lines, "open ports (ingress)"])
    header_w = max(text_width(group.label, 14), text_width(group.description, 11))
    width = max(grid_w, table_w, header_w) + 2 * PAD
    height = 2 * PAD + 34 + rows * (NODE_H + 8) + 8 + LINE * (len(lines) + 1)
    return width, height, columns


def _draw_group(group: Group, x: float, y: float, width: float, height: float, columns: int) -> list[Shape]:
    role = group.nodes[0].role if group.nodes else "node"
    fill, stroke = COLORS.get(role, COLORS["node"])
    shapes: list[Shape] = [
        Rect(x, y, width, height, PANEL[0], stroke, radius=10),
        Text(x + PAD, y + PAD + 12, group.label, 14, bold=True),
        Text(x + PAD, y + PAD + 28, group.description, 11, fill="#52606d"),
    ]
    top = y + PAD + 40
    for i, node in enumerate(group.nodes):
        nx = x + PAD + (i % columns) * (NODE_W + 8)
        ny = top + (i // columns) * (NODE_H + 8)
        shapes += [
            Rect(nx, ny, NODE_W, NODE_H, fill, stroke),
            Text(nx + 8, ny + 18, node.name, 12, bold=True),
            Text(nx + 8, ny + 35, " · ".join(p for p in (node.instance_type, node.private_ip, node.zone) if p), 10,
                 fill="#52606d"),
            *([Text(nx + NODE_W - 8, ny + 18, "protected", 9, bold=True, fill=PROTECTED, anchor="end")]
              if node.protected else []),
        ]
    rows = math.ceil(len(group.nodes) / columns) if group.nodes else 0
    ty = top + rows * (NODE_H + 8) + 14
    shapes.append(Text(x + PAD, ty, "open ports (ingress)", 11, bold=True, fill="#52606d"))
    for opening in group.openings or [Opening("no ingress", (), False)]:
        ty += LINE
        text = _opening_line(opening) if opening.sources else opening.ports
        shapes.append(Text(x + PAD, ty, text, 12, fill=WORLD_TEXT if opening.world else "#1f2933"))
    return shapes


def _cluster(topology: Topology, y: float) -> tuple[list[Shape], float, float]:
    """Security group panels side by side (wrapping), nodes without a group after them."""
    shapes: list[Shape] = []
    groups = list(topology.groups)
    if topology.loose_nodes:
        groups.append(Group("", "instances without a security group", "", [], topology.loose_nodes))
    panels = [(g, *_group_size(g)) for g in groups]
    x, row_h, widest = float(MARGIN), 0.0, 0.0
    limit = max([MARGIN + w for _, w, _, _ in panels] + [1200])
    for group, width, height, columns in panels:
        if x > MARGIN and x + width > limit:
            x, y = MARGIN, y + row_h + GAP
            row_h = 0
        shapes += _draw_group(group, x, y, width, height, columns)
        x += width + GAP
        row_h = max(row_h, height)
        widest = max(widest, x - GAP)
    return shapes, y + row_h, widest


LB_COLORS = ("#fff7ed", "#c2410c")
LEGEND = ("#f8fafc", "#64748b")


def _wrapped(head: str, items: Sequence[str], limit: int = 96, indent: str = "    ") -> list[str]:
    """`head` then the items, comma-separated, broken into lines of at most `limit` characters."""
    lines, current = [], head
    for n, item in enumerate(items):
        piece = item + (", " if n < len(items) - 1 else "")
        if len(current) + len(piece) > limit and current.strip():
            lines.append(current.rstrip())
            current = indent
        current += piece
    lines.append(current.rstrip())
    return lines


def _balancer_lines(lb: Balancer) -> list[tuple[str, int, bool, str]]:
    """(text, size, bold, colour) of one load balancer panel, top to bottom."""
    marks = [m for m, on in (("deletion protection", lb.deletion_protection), ("protected", lb.protected)) if on]
    rows = [(f"{lb.kind} load balancer {lb.name}", 14, True, "#1f2933"),
            (" · ".join([lb.scheme, *marks]), 11, False, PROTECTED if marks else "#52606d"),
            ("listeners", 11, True, "#52606d")]
    rows += [(line, 12, False, "#1f2933") for line in lb.listeners]
    rows.append(("sources (its security group)", 11, True, "#52606d"))
    rows += [(line, 12, False, WORLD_TEXT if "INTERNET" in line else "#1f2933") for line in lb.sources]
    rows.append(("targets", 11, True, "#52606d"))
    rows += [(line, 12, False, "#1f2933") for line in _wrapped("", list(lb.targets) or ["none"], 64, "")]
    return rows


def _panel(rows: list[tuple[str, int, bool, str]], x: float, y: float, colors: tuple[str, str],
           dashed: bool = False) -> tuple[list[Shape], float, float]:
    width = max(text_width(text, size) for text, size, _, _ in rows) + 2 * PAD
    height = 2 * PAD + LINE * len(rows) + 4
    shapes: list[Shape] = [Rect(x, y, width, height, colors[0], colors[1], radius=10, dashed=dashed)]
    ty = y + PAD + 12
    for text, size, bold, fill in rows:
        shapes.append(Text(x + PAD, ty, text, size, bold=bold, fill=fill))
        ty += LINE
    return shapes, width, height


def _balancers_row(topology: Topology, y: float) -> tuple[list[Shape], float, float]:
    """Load balancer panels side by side under the security groups."""
    shapes: list[Shape] = []
    x, bottom, right = float(MARGIN), y, 0.0
    for lb in topology.balancers:
        drawn, width, height = _panel(_balancer_lines(lb), x, y, LB_COLORS)
        shapes += drawn
        x += width + GAP
        bottom, right = max(bottom, y + height), max(right, x - GAP)
    return shapes, bottom, right


ZONE_COLORS = ("#f0fdfa", "#0f766e")


def _zone_lines(topology: Topology, zone: str) -> list[tuple[str, int, bool, str]]:
    """(text, size, bold, colour) of one zone's panel: each of its subnets and what is in it."""
    rows = [(f"zone {zone or '(the region’s first)'}", 14, True, "#1f2933")]
    for subnet in (s for s in topology.subnets if s.zone == zone):
        kind = "public" if subnet.public else "private"
        rows.append((f"{kind} subnet {subnet.cidr} ({subnet.name})", 12, True,
                     PUBLIC_TEXT if subnet.public and subnet.nodes else "#1f2933"))
        if subnet.holds:
            rows.append(("  " + ", ".join(subnet.holds), 11, False, "#52606d"))
        rows += [(line, 11, False, "#1f2933") for line in _wrapped("  nodes: ", list(subnet.nodes), 60)
                 ] if subnet.nodes else []
    return rows


def _zones_row(topology: Topology, y: float) -> tuple[list[Shape], float, float]:
    """One panel per zone, side by side: the zones and subnets the nodes and load balancers sit in."""
    shapes: list[Shape] = []
    x, bottom, right = float(MARGIN), y, 0.0
    for zone in topology.zones:
        drawn, width, height = _panel(_zone_lines(topology, zone), x, y, ZONE_COLORS)
        shapes += drawn
        x += width + GAP
        bottom, right = max(bottom, y + height), max(right, x - GAP)
    return shapes, bottom, right


def _access_lines(topology: Topology) -> list[tuple[str, int, bool, str]]:
    rows = [("IAM and SSM per node role (each node reads only its own)", 14, True, "#1f2933")]
    for a in topology.access:
        rows.append((f"{a.role}s ({a.nodes}): an IAM role per node, through its instance profile", 12, True,
                     COLORS.get(a.role, COLORS["node"])[1]))
        for policy, sids in a.policies:
            rows += [(line, 11, False, "#1f2933") for line in _wrapped(f"  policy {policy}: ", list(sids))]
        key = f", key {a.key}" if a.key else ""
        rows.append((f"  SSM: {a.parameters} {a.parameter_type} parameters per node under {a.path or '?'}{key}", 11,
                     False, "#1f2933"))
        folders: dict[str, list[str]] = {}
        for name in a.files:
            folder, _, leaf = name.rpartition("/")
            folders.setdefault(folder, []).append(leaf)
        for folder, leaves in folders.items():
            rows += [(line, 11, False, "#52606d") for line in _wrapped(f"    {folder}/: ", leaves, 104, "      ")]
    return rows


def _plural(kind: str, n: int) -> str:
    if n == 1:
        return kind
    if kind.endswith("y"):
        return kind[:-1] + "ies"
    return kind + "es" if kind.endswith("s") else kind + "s"  # two StorageClasses


def _workload_lines(w: Workload) -> tuple[str, str]:
    title = f"{w.kind} {w.name}"
    sub = " · ".join(p for p in (w.replicas, ", ".join(w.images), w.volumes) if p)
    return title, sub


def _workload_box(w: Workload) -> tuple[float, float]:
    title, sub = _workload_lines(w)
    columns = max(1, min(len(w.pods), POD_COLUMNS))
    rows = math.ceil(len(w.pods) / columns) if w.pods else 0
    title_w = text_width(title, 13) + (80 if w.protected else 0)
    width = max(title_w, text_width(sub, 10), columns * (POD_W + 6)) + 2 * PAD
    return width, 44 + rows * (POD_H + 6) + (6 if rows else 0)


def _pod_box(w: Workload, pod: str, x: float, y: float) -> tuple[float, float]:
    i = w.pods.index(pod)
    columns = max(1, min(len(w.pods), POD_COLUMNS))
    return x + 8 + (i % columns) * (POD_W + 6), y + 44 + (i // columns) * (POD_H + 6)


def _service_box(s: Service, x: float, y: float, width: float) -> list[Shape]:
    return [
        Rect(x, y, width, SERVICE_H, "#fef9c3", "#a16207"),
        Text(x + 8, y + 17, f"Service {s.name} ({s.kind})", 12, bold=True),
        Text(x + 8, y + 33, s.ports or "no ports", 10, fill="#52606d"),
    ]


def _workloads(topology: Topology, y: float) -> tuple[list[Shape], float, float]:
    """Workloads in a column on the right, each with the Services that select it level with it on the left."""
    shapes: list[Shape] = []
    if not topology.workloads and not topology.services:
        return shapes, y, 0
    service_w = max([text_width(f"Service {s.name} ({s.kind})", 12) for s in topology.services] + [160]) + 2 * PAD
    boxes = {(w.name, w.namespace): _workload_box(w) for w in topology.workloads}
    workload_w = max([w for w, _ in boxes.values()] + [200])
    sx, wx = MARGIN + PAD, MARGIN + PAD + service_w + 90
    targets = {s.name + "/" + s.namespace: topology.targets(s) for s in topology.services}
    placed: set[str] = set()
    cursor = y + PAD + 40
    for w in topology.workloads:
        _, height = boxes[w.name, w.namespace]
        shapes += _draw_workload(w, wx, cursor, workload_w, height)
        sy = cursor
        for s in topology.services:
            key = s.name + "/" + s.namespace
            if key in placed or not targets[key] or targets[key][0][0] != w:
                continue
            placed.add(key)
            shapes += _service_box(s, sx, sy, service_w)
            for target, pod in targets[key]:
                nth = int((sy - cursor) // (SERVICE_H + 10))
                shapes.append(Line(sx + service_w, sy + SERVICE_H / 2, *_line_end(target, pod, wx, cursor, nth)))
            sy += SERVICE_H + 10
        cursor = max(cursor + height, sy - 10) + 14
    for s in topology.services:
        if s.name + "/" + s.namespace not in placed:
            shapes += _service_box(s, sx, cursor, service_w)
            shapes.append(Text(sx + service_w + 8, cursor + 25, "selects no pod of this stack", 10, fill=WORLD_TEXT))
            cursor += SERVICE_H + 10
    bottom = cursor - 14 + PAD
    others = ", ".join(f"{n} {_plural(kind, n)}" for kind, n in sorted(topology.others.items()))
    if others:
        bottom += LINE
        shapes.append(Text(MARGIN + PAD, bottom, f"also: {others}", 11, fill="#52606d"))
    width = wx + workload_w + PAD - MARGIN
    plural = "namespaces " if len(topology.namespaces) > 1 else "namespace "
    title = plural + ", ".join(topology.namespaces) if topology.namespaces else "workload"
    frame: list[Shape] = [
        Rect(MARGIN, y, width, bottom - y + PAD, "#ffffff", "#64748b", radius=10, dashed=True),
        Text(MARGIN + PAD, y + PAD + 12, f"Kubernetes workload · {title}", 14, bold=True),
    ]
    return frame + shapes, bottom + PAD, MARGIN + width


def _line_end(w: Workload, pod: str | None, x: float, y: float, nth: int) -> tuple[float, float]:
    """Where the nth Service's line ends: at the pod it selects, else on the workload's left edge."""
    if pod is None:
        return x, y + 14 + 8 * nth
    px, py = _pod_box(w, pod, x, y)
    return px, py + POD_H / 2


def _draw_workload(w: Workload, x: float, y: float, width: float, height: float) -> list[Shape]:
    stateful = w.kind == "StatefulSet"
    fill, stroke = ("#ede9fe", "#6d28d9") if stateful else ("#e0f2fe", "#0369a1")
    title, sub = _workload_lines(w)
    shapes: list[Shape] = [
        Rect(x, y, width, height, fill, stroke),
        Text(x + 8, y + 18, title, 13, bold=True),
        Text(x + 8, y + 34, sub, 10, fill="#52606d"),
    ]
    if w.protected:
        shapes.append(Text(x + width - 8, y + 18, "protected", 10, bold=True, fill=PROTECTED, anchor="end"))
    for pod in w.pods:
        px, py = _pod_box(w, pod, x, y)
        shapes += [Rect(px, py, POD_W, POD_H, "#ffffff", stroke, radius=4),
                   Text(px + POD_W / 2, py + 16, pod, 11, anchor="middle")]
    return shapes


def layout(topology: Topology) -> Drawing:
    nodes = topology.nodes
    masters = sum(1 for n in nodes if n.role == "master")
    summary = (
        f"{masters} master{'s' if masters != 1 else ''}, {len(nodes) - masters} minion"
        f"{'s' if len(nodes) - masters != 1 else ''}"
        if nodes
        else "existing cluster (no EC2 in this stack)"
    )
    shapes: list[Shape] = [
        Text(MARGIN, MARGIN + 18, f"atomic-mysql · stack {topology.stack}", 20, bold=True),
        Text(MARGIN, MARGIN + 38, " · ".join(p for p in (topology.network, summary) if p), 12, fill="#52606d"),
    ]
    y, width = MARGIN + 56.0, MARGIN + text_width(shapes[1].text if isinstance(shapes[1], Text) else "", 12)
    if topology.subnets:
        drawn, y, right = _zones_row(topology, y)
        shapes += drawn
        width, y = max(width, right), y + GAP
    if topology.groups or topology.loose_nodes:
        cluster, y, right = _cluster(topology, y)
        shapes += cluster
        width, y = max(width, right), y + GAP
    if topology.balancers:
        drawn, y, right = _balancers_row(topology, y)
        shapes += drawn
        width, y = max(width, right), y + GAP
    if topology.access:
        drawn, legend_w, legend_h = _panel(_access_lines(topology), MARGIN, y, LEGEND, dashed=True)
        shapes += drawn
        width, y = max(width, MARGIN + legend_w), y + legend_h + GAP
    workload, y, right = _workloads(topology, y)
    shapes += workload
    width = max(width, right)
    return Drawing(math.ceil(width + MARGIN), math.ceil(y + MARGIN), shapes)


# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------

FONT_FAMILY = "DejaVu Sans, Verdana, Arial, sans-serif"


def svg(drawing: Drawing) -> str:
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{drawing.width}" height="{drawing.height}" '
        f'viewBox="0 0 {drawing.width} {drawing.height}" font-family="{FONT_FAMILY}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#52606d"/></marker></defs>',
        f'<rect width="{drawing.width}" height="{drawing.height}" fill="#ffffff"/>',
    ]
    for s in drawing.shapes:
        if isinstance(s, Rect):
            dash = ' stroke-dasharray="6 4"' if s.dashed else ""
            out.append(
                f'<rect x="{s.x:.1f}" y="{s.y:.1f}" width="{s.w:.1f}" height="{s.h:.1f}" rx="{s.radius}" '
                f'fill="{s.fill}" stroke="{s.stroke}" stroke-width="1.5"{dash}/>'
            )
        elif isinstance(s, Text):
            weight = ' font-weight="bold"' if s.bold else ""
            out.append(
                f'<text x="{s.x:.1f}" y="{s.y:.1f}" font-size="{s.size}" fill="{s.fill}" '
                f'text-anchor="{s.anchor}"{weight}>{escape(s.text)}</text>'
            )
        else:
            marker = ' marker-end="url(#arrow)"' if s.arrow else ""
            out.append(
                f'<line x1="{s.x1:.1f}" y1="{s.y1:.1f}" x2="{s.x2:.1f}" y2="{s.y2:.1f}" stroke={quoteattr(s.stroke)} '
                f'stroke-width="1.5"{marker}/>'
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


@lru_cache(maxsize=16)
def _font(size: int, bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    # DejaVu where the system has it (as SVG viewers will), else Pillow's own scalable font.
    for name in ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf",):
        for folder in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu"):
            path = Path(folder) / name
            if path.exists():
                return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def _hex(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def png(drawing: Drawing, path: Path) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (int(drawing.width), int(drawing.height)), "#ffffff")
    draw = ImageDraw.Draw(image)
    for s in drawing.shapes:
        if isinstance(s, Rect):
            box = (s.x, s.y, s.x + s.w, s.y + s.h)
            draw.rounded_rectangle(box, radius=s.radius, fill=_hex(s.fill), outline=_hex(s.stroke), width=2)
        elif isinstance(s, Text):
            anchor = {"middle": "ms", "end": "rs"}.get(s.anchor, "ls")
            draw.text((s.x, s.y), s.text, fill=_hex(s.fill), font=_font(s.size, s.bold), anchor=anchor)
        else:
            draw.line((s.x1, s.y1, s.x2, s.y2), fill=_hex(s.stroke), width=2)
            if s.arrow:
                _arrowhead(draw, s)
    # Fast zlib level: the picture is redrawn on every preview; size matters less than time.
    image.save(path, compress_level=1)


def _arrowhead(draw: Any, line: Line) -> None:
    angle = math.atan2(line.y2 - line.y1, line.x2 - line.x1)
    tip = (line.x2, line.y2)
    left = (line.x2 - 9 * math.cos(angle - 0.4), line.y2 - 9 * math.sin(angle - 0.4))
    right = (line.x2 - 9 * math.cos(angle + 0.4), line.y2 - 9 * math.sin(angle + 0.4))
    draw.polygon([tip, left, right], fill=_hex(line.stroke))


def write(plan: Plan | Mapping[str, Any], out_dir: Path, *, with_png: bool = False) -> Drawing:
    """Draw the stack into out_dir/topology.svg, and out_dir/topology.png with `with_png`."""
    drawing = layout(extract(plan))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "topology.svg").write_text(svg(drawing))
    if with_png:
        png(drawing, out_dir / "topology.png")
    return drawing




def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw build/<stack>/topology.{svg,png} from its plan.json.")
    parser.add_argument("plan", type=Path, nargs="+", help="plan.json files written by `make preview`")
    args = parser.parse_args(argv)
    for path in args.plan:
        write(json.loads(path.read_text()), path.parent, with_png=True)
        print(f"wrote {path.parent / 'topology.svg'} and topology.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
