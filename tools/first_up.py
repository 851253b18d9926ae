"""How long the first `pulumi up` of a stack takes: the critical path of its dependency graph.

    python -m tools.first_up build/dev/plan.json [build/prod/plan.json ...]

Reads the offline plan (plan.json, as `make preview` writes it) and weights every resource with a
typical latency for its type (LATENCY below, documented with its sources in docs/first-up.md).
A resource starts when everything it waits for has finished: its dependsOn, its parent (a child
registers only once its parent's own dependencies have), and its provider (the Kubernetes provider
waits for the readiness gate). The estimate is the longest such chain, named resource by resource.
These are typical values for a healthy first run, not the await budgets (those are upper bounds:
customTimeouts, clusterReadyTimeout); nothing here is measured on AWS.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from components import tokens
from components.aws.gate import DYNAMIC_TYPE

# Typical seconds from create to done, per resource type (docs/first-up.md has the sources).
LATENCY: dict[str, int] = {
    tokens.VPC: 5,
    tokens.SUBNET: 5,
    tokens.SUBNET_CIDR_RESERVATION: 2,
    tokens.INTERNET_GATEWAY: 3,
    tokens.ROUTE_TABLE: 2,
    tokens.ROUTE: 2,
    tokens.ROUTE_TABLE_ASSOCIATION: 2,
    tokens.SECURITY_GROUP: 3,
    tokens.INGRESS_RULE: 2,
    tokens.EGRESS_RULE: 2,
    tokens.IAM_ROLE: 2,
    tokens.IAM_ROLE_POLICY: 2,
    tokens.IAM_INSTANCE_PROFILE: 8,  # the provider waits for the profile to propagate before it returns
    tokens.KMS_KEY: 5,
    tokens.KMS_ALIAS: 1,
    tokens.SSM_PARAMETER: 1,
    tokens.EIP: 3,
    tokens.INSTANCE: 40,  # RunInstances until the instance is running (the provider waits for it)
    tokens.LOAD_BALANCER: 180,  # an NLB from provisioning to active
    tokens.TARGET_GROUP: 3,
    tokens.LISTENER: 3,
    tokens.TARGET_GROUP_ATTACHMENT: 3,
    # The readiness gate: a Fedora Cloud node boots, runs `dnf upgrade` (package_update), installs the
    # Kubernetes, CRI-O or etcd packages and starts its daemons; minions register and turn Ready.
    DYNAMIC_TYPE: 480,
    tokens.DEPLOYMENT: 60,  # image pulls on fresh nodes, then the readiness probe
    tokens.DAEMON_SET: 60,
}
STATEFUL_SET_PER_POD = 90  # pull, init containers, an empty data dir initialised (-0) or cloned (empty), probes
KUBERNETES_OBJECT = 1  # any other Kubernetes object: one API call


@dataclass(frozen=True)
class Step:
    name: str
    type: str
    seconds: int


@dataclass(frozen=True)
class Estimate:
    stack: str
    seconds: int
    path: tuple[Step, ...]

    def lines(self) -> list[str]:
        slow = [s for s in self.path if s.seconds > 0]
        return [f"First `pulumi up` estimate, stack {self.stack} (critical path, typical latencies: "
                f"docs/first-up.md): about {duration(self.seconds)}",
                "  " + " -> ".join(f"{s.name} ({duration(s.seconds)})" for s in slow)]


def duration(seconds: int) -> str:
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def latency(entry: Mapping[str, Any]) -> int:
    kind = entry["type"]
    if not entry.get("custom", True) or kind.startswith("pulumi:providers:") or kind == tokens.STACK:
        return 0
    if kind == tokens.STATEFUL_SET:
        return STATEFUL_SET_PER_POD * int((entry.get("inputs") or {}).get("spec", {}).get("replicas", 1))
    if kind in LATENCY:
        return LATENCY[kind]
    return KUBERNETES_OBJECT if kind.startswith("kubernetes:") else 0


def _waits_for(entry: Mapping[str, Any], known: Mapping[str, Any]) -> list[str]:
    options = entry.get("options") or {}
    waits = list(options.get("dependsOn") or [])
    if entry.get("parent") in known:
        waits.append(entry["parent"])
    provider = entry.get("provider")
    if provider:
        waits.append(provider.rsplit("::", 1)[0])  # a provider reference is <urn>::<id>
    return [urn for urn in waits if urn in known]


def estimate(plan: Mapping[str, Any]) -> Estimate:
    """The critical path of a plan.json document."""
    entries = {e["urn"]: e for e in plan["resources"]}

    @cache
    def finish(urn: str) -> tuple[int, tuple[str, ...]]:
        entry = entries[urn]
        before = [finish(w) for w in _waits_for(entry, entries)]
        start, chain = max(before, default=(0, ()))
        return start + latency(entry), (*chain, urn)

    seconds, chain = max((finish(urn) for urn in entries), default=(0, ()))
    steps = tuple(Step(entries[u]["name"], entries[u]["type"], latency(entries[u])) for u in chain)
    return Estimate(str(plan.get("stack", "")), seconds, steps)


def waits_transitively(plan: Mapping[str, Any], urn: str) -> set[str]:
    """Every resource `urn` waits for, directly or through others."""
    entries = {e["urn"]: e for e in plan["resources"]}
    seen: set[str] = set()
    todo = [urn]
    while todo:
        for dep in _waits_for(entries[todo.pop()], entries):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plans", nargs="+", type=Path, help="plan.json files written by make preview")
    args = parser.parse_args(argv)
    for path in args.plans:
        try:
            plan = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            print(f"error: {path}: {error} (run make preview first)", file=sys.stderr)
            return 2
        if not any(e["type"] == tokens.INSTANCE for e in plan["resources"]):
            print(f"stack {plan.get('stack')}: no cluster to build (clusterMode=existing): no first-up estimate")
            continue
        print("\n".join(estimate(plan).lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
