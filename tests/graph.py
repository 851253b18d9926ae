"""Helpers to compare and query registered graphs in tests."""

from __future__ import annotations

from typing import Any

from tools.harness.offline import Plan


def inputs_by_name(plan: Plan) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in plan.resources}


def changed_names(before: Plan, after: Plan) -> set[str]:
    """Resources added, removed or with different inputs between two runs."""
    a, b = inputs_by_name(before), inputs_by_name(after)
    return {name for name in a.keys() | b.keys() if a.get(name) != b.get(name)}


def kube(plan: Plan, kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in plan.kubernetes_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{len(matches)} {kind} named {name}"
    return matches[0]


def kinds(plan: Plan, kind: str) -> list[dict[str, Any]]:
    return [o for o in plan.kubernetes_objects() if o["kind"] == kind]


def pod_templates(plan: Plan) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload object, its pod template) for every Deployment and StatefulSet."""
    return [(o, o["spec"]["template"]) for o in plan.kubernetes_objects() if o["kind"] in ("Deployment", "StatefulSet")]
