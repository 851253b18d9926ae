"""The NetworkPolicy agent's RBAC, applied for real to the dev control plane and asked with
SubjectAccessReviews: what the agent's informers need is allowed, nothing more is. (The agent
itself, a container image with an nftables datapath, does not run here.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_stacks_real import stack_objects
from tools.testing import control_plane as cp

pytestmark = pytest.mark.real

NAME = "kube-network-policies"
ACCOUNT = f"system:serviceaccount:kube-system:{NAME}"


def _may(plane: cp.ControlPlane, verb: str, resource: str, group: str = "", namespace: str = "") -> bool:
    review = plane.api.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": ACCOUNT, "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                                              "system:authenticated"],
                 "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": namespace}}})
    assert review.status_code == 201, review.text
    return bool(json.loads(review.text)["status"].get("allowed"))


def test_the_agent_may_watch_policies_pods_and_namespaces_and_nothing_else(
        previewed_stacks: Path, dev_control_plane: cp.ControlPlane) -> None:
    plane = dev_control_plane
    rbac = [o for o in stack_objects(previewed_stacks, "dev") if o["metadata"]["name"] == NAME
            and o["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    assert len(rbac) == 3
    for obj in rbac:
        applied = plane.api.apply(obj, dry_run=False)
        assert applied.status_code in (200, 201), applied.text

    for verb in ("list", "watch"):
        assert _may(plane, verb, "pods") and _may(plane, verb, "namespaces")
        assert _may(plane, verb, "networkpolicies", "networking.k8s.io")
    refused = [("get", "secrets", "", "atomic-mysql"), ("list", "secrets", "", ""), ("create", "networkpolicies",
               "networking.k8s.io", "atomic-mysql"), ("delete", "pods", "", "atomic-mysql"), ("list", "nodes", "", ""),
               ("patch", "namespaces", "", ""), ("create", "pods/exec", "", "atomic-mysql"),
               ("list", "configmaps", "", "")]
    for verb, resource, group, namespace in refused:
        assert not _may(plane, verb, resource, group, namespace), (verb, resource)
