"""The set's claim patches against a real kube-apiserver (the dev stack's master booted from its own
user-data, tests/conftest.py dev_control_plane; its controller-manager binds the volume).

A claim is made as the StatefulSet controller makes it (from the program's volumeClaimTemplate, by
the manager kube-controller-manager), in the program's own gp3-mysql StorageClass, and bound to a
volume; then the body of the program's PersistentVolumeClaimPatch is sent as pulumi-kubernetes sends
a Patch resource: a Server-Side Apply under a field manager of its own, forced (the patch carries
pulumi.com/patchForce). What the API server answers is the proof: the larger size is accepted; a
size below what the volume holds, a claim not yet bound, and a class without allowVolumeExpansion are
refused by the server itself; without force the apply conflicts with the controller's ownership.
No volume grows here (no EBS, no CSI resizer): what the server accepts is what the EBS CSI driver's
resizer is then asked to do.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest
import requests

from components import tokens
from tools.harness.offline import Plan, run_program
from tools.testing import control_plane as cp

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

CONTROLLER = "kube-controller-manager"  # the StatefulSet controller's field manager


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {"5Gi": run_program("dev"), "20Gi": run_program("dev", {"mysqlStorageSize": "20Gi"}),
            "2Gi": run_program("dev", {"mysqlStorageSize": "2Gi"})}  # no record given: not refused here


def _object(plan: Plan, kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in plan.kubernetes_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return copy.deepcopy(found)


def _patch_body(plan: Plan, claim: str, namespace: str) -> dict[str, Any]:
    [patch] = [r for r in plan.of_type(tokens.PERSISTENT_VOLUME_CLAIM_PATCH) if r.inputs["metadata"]["name"] == claim]
    body = copy.deepcopy(patch.inputs)
    body["metadata"]["namespace"] = namespace
    return body


def _apply(api: cp.KubeApi, obj: dict[str, Any], manager: str, *, force: bool) -> requests.Response:
    params = {"fieldManager": manager, **({"force": "true"} if force else {})}
    return api.request("PATCH", api.object_path(obj), json.dumps(obj), "application/apply-patch+yaml", params)


class Claims:
    """A namespace of its own on the shared control plane, and the program's class under a name of its own."""

    def __init__(self, plane: cp.ControlPlane, plans: dict[str, Plan], expandable: bool = True) -> None:
        self.api = plane.api
        self.plane = plane
        self.suffix = uuid.uuid4().hex[:8]
        self.namespace = f"claims-{self.suffix}"
        made = self.api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                               "metadata": {"name": self.namespace}})
        assert made.status_code == 201, made.text
        storage_class = _object(plans["5Gi"], "StorageClass", "gp3-mysql")
        assert storage_class["allowVolumeExpansion"] is True  # the program's class, as it is
        if not expandable:
            storage_class["allowVolumeExpansion"] = False
        self.class_name = storage_class["metadata"]["name"] = f"gp3-mysql-{self.suffix}"
        applied = _apply(self.api, storage_class, "atomic-mysql-test", force=True)
        assert applied.status_code in (200, 201), applied.text
        [stateful_set] = [o for o in plans["5Gi"].kubernetes_objects() if o["kind"] == "StatefulSet"]
        self.template = stateful_set["spec"]["volumeClaimTemplates"][0]

    def make(self, ordinal: int, *, bound: bool) -> str:
        """The claim data-mysql-N as the StatefulSet controller creates it from the template."""
        name = f"{self.template['metadata']['name']}-mysql-{ordinal}"
        claim: dict[str, Any] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                 "metadata": {"name": name, "namespace": self.namespace,
                                              "labels": self.template["metadata"]["labels"]},
                                 "spec": {**copy.deepcopy(self.template["spec"]), "storageClassName": self.class_name}}
        made = self.api.request("POST", f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims", claim,
                                params={"fieldManager": CONTROLLER})
        assert made.status_code == 201, made.text
        if bound:
            self._bind(name, claim["spec"]["resources"]["requests"]["storage"])
        return name

    def _bind(self, claim: str, size: str) -> None:
        """A volume pre-bound to the claim, as the EBS CSI driver provisions one; the PV controller binds them."""
        volume = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{self.namespace}-{claim}"},
                  "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                           "storageClassName": self.class_name, "persistentVolumeReclaimPolicy": "Retain",
                           "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": f"vol-0{uuid.uuid4().hex[:16]}",
                                   "fsType": "ext4"},
                           "claimRef": {"namespace": self.namespace, "name": claim}}}
        made = self.api.request("POST", "/api/v1/persistentvolumes", volume)
        assert made.status_code == 201, made.text

        def bound() -> bool:
            return self.read(claim).get("status", {}).get("phase") == "Bound"

        cp.wait_for(self.plane, f"claim {claim} bound by the PV controller", bound, timeout=120)

    def read(self, claim: str) -> dict[str, Any]:
        response = self.api.get(f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims/{claim}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


def test_the_patch_grows_a_bound_claim_and_the_server_refuses_a_shrink(dev_control_plane: cp.ControlPlane,
                                                                      plans: dict[str, Plan]) -> None:
    claims = Claims(dev_control_plane, plans)
    claim = claims.make(0, bound=True)
    assert claims.read(claim)["status"]["capacity"]["storage"] == "5Gi"
    grow = _patch_body(plans["20Gi"], claim, claims.namespace)
    assert grow["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"

    # The controller owns the size it created the claim with: an unforced apply of another value conflicts.
    conflict = _apply(claims.api, grow, "pulumi-kubernetes-unforced", force=False)
    assert conflict.status_code == 409, conflict.text
    assert "conflict" in conflict.text.lower() and "spec.resources.requests.storage" in conflict.text

    accepted = _apply(claims.api, grow, f"pulumi-kubernetes-{uuid.uuid4().hex[:8]}", force=True)
    assert accepted.status_code == 200, accepted.text
    after = claims.read(claim)
    assert after["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert after["spec"]["storageClassName"] == claims.class_name and after["spec"]["accessModes"] == ["ReadWriteOnce"]

    shrink = _apply(claims.api, _patch_body(plans["2Gi"], claim, claims.namespace),
                    f"pulumi-kubernetes-{uuid.uuid4().hex[:8]}", force=True)
    assert shrink.status_code == 422, shrink.text
    assert "spec.resources.requests.storage" in shrink.text and "less than" in shrink.text
    assert claims.read(claim)["spec"]["resources"]["requests"]["storage"] == "20Gi"


def test_the_server_refuses_to_resize_a_claim_not_yet_bound(dev_control_plane: cp.ControlPlane,
                                                           plans: dict[str, Plan]) -> None:
    """Why the patches wait for the set: a Pending claim (WaitForFirstConsumer, no pod yet) cannot grow."""
    claims = Claims(dev_control_plane, plans)
    claim = claims.make(1, bound=False)
    refused = _apply(claims.api, _patch_body(plans["20Gi"], claim, claims.namespace),
                     f"pulumi-kubernetes-{uuid.uuid4().hex[:8]}", force=True)
    assert refused.status_code == 422, refused.text
    assert "spec is immutable after creation except resources.requests" in refused.text
    assert "for bound claims" in refused.text


def test_control_a_class_without_volume_expansion_is_refused(dev_control_plane: cp.ControlPlane,
                                                            plans: dict[str, Plan]) -> None:
    """The class matters: the same patch on a claim whose class does not allow expansion is refused
    by the PersistentVolumeClaimResize admission plugin."""
    claims = Claims(dev_control_plane, plans, expandable=False)
    claim = claims.make(0, bound=True)
    refused = _apply(claims.api, _patch_body(plans["20Gi"], claim, claims.namespace),
                     f"pulumi-kubernetes-{uuid.uuid4().hex[:8]}", force=True)
    assert refused.status_code == 403, refused.text
    assert "storageclass that provisions the pvc must support resize" in refused.text
