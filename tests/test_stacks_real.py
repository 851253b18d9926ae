"""Every Kubernetes object of every stack, taken by a real v1.32 kube-apiserver.

The dev master, booted for real from its user-data (tests/conftest.py, dev_control_plane), takes
each stack's objects by server-side apply with dryRun=All, as pulumi-kubernetes applies them
(enableServerSideApply): the API server's validation, defaulting and admission chain run, Pod
Security included, and nothing is stored. Each stack's namespaces are created for real first, with
their labels, so that Pod Security admission judges the pods by the levels the program sets. The
schema checks (kubernetes-validate, strict) stay in tests/tools/test_preview.py.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.node.pki import admin_cert
from tests.conftest import STACKS
from tools.testing import control_plane as cp

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

# Pod Security warnings the program accepts, each with its reason. The workload namespace enforces
# baseline and warns at restricted (components/workload/workload.py); kube-system enforces
# privileged and warns at baseline (components/addons/cluster_addons.py); any other warning fails.
ACCEPTED_WARNINGS: dict[tuple[str, str], str] = {
    ("DaemonSet", "ebs-csi-node"): "the EBS CSI node plugin formats and mounts block devices for the kubelet: it "
                                   "is privileged and needs the kubelet's and /dev's host paths (upstream's own)",
    ("Deployment", "ebs-csi-controller"): "the EBS CSI controller uses the node role's credentials, which only IMDS "
                                          "on the host network hands out (hop limit 1 keeps them from pods)",
    ("DaemonSet", "kube-network-policies"): "the NetworkPolicy agent programs nftables and NFQUEUE in the node's "
                                            "network namespace and reads pinned pod namespaces and the NRI socket: "
                                            "hostNetwork, NET_ADMIN, privileged and two host paths (upstream's own)",
    ("Deployment", "frontend"): "the Guestbook image runs Apache, which starts as root to bind :80 and switches to "
                                "www-data: it needs NET_BIND_SERVICE, SETUID and SETGID and cannot run as non-root "
                                "(baseline allows it; restricted warns)",
}
WARNING = re.compile(r'299 - "((?:[^"\\]|\\.)*)"')


def stack_objects(previewed: Path, stack: str) -> list[dict[str, Any]]:
    """The stack's objects as `make preview` writes them, in apply order."""
    return [yaml.safe_load(p.read_text()) for p in sorted((previewed / stack / "k8s").glob("*.yaml"))]


def with_real_tls(obj: dict[str, Any], plane: cp.ControlPlane) -> dict[str, Any]:
    """A kubernetes.io/tls Secret with a real key pair in place of the preview's "[secret]" placeholders
    (pulumi-tls issues real ones in a real `up`), so the API server judges a real certificate."""
    if obj["kind"] != "Secret" or obj.get("type") != "kubernetes.io/tls":
        return obj
    issued = plane.pki.issue(admin_cert())
    return {**obj, "stringData": {"tls.crt": issued.cert_pem, "tls.key": issued.key_pem}}


def warnings_of(response: Any) -> list[str]:
    return WARNING.findall(response.headers.get("Warning", ""))


def _claims_the_controller_makes(plane: cp.ControlPlane, objects: list[dict[str, Any]]) -> None:
    """The claims each StatefulSet's controller makes from its templates, for real (the set patches them:
    its PersistentVolumeClaim objects are Patch resources, which apply to an existing claim). Claims of
    another stack's run (same names, another size) are deleted first."""
    api = plane.api
    for obj in objects:
        if obj["kind"] != "StatefulSet":
            continue
        namespace = obj["metadata"]["namespace"]
        base = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
        for template in obj["spec"].get("volumeClaimTemplates") or []:
            for ordinal in range(obj["spec"]["replicas"]):
                name = f"{template['metadata']['name']}-{obj['metadata']['name']}-{ordinal}"
                path = f"{base}/{name}"
                if api.get(path).status_code == 200:
                    assert api.request("DELETE", path).status_code in (200, 202)

                    def gone(path: str = path) -> bool:
                        return api.get(path).status_code == 404

                    cp.wait_for(plane, f"claim {name} deleted", gone, timeout=60)
                claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "metadata": {**template["metadata"], "name": name, "namespace": namespace},
                         "spec": template["spec"]}
                made = api.request("POST", base, claim, params={"fieldManager": "kube-controller-manager"})
                assert made.status_code == 201, made.text


def _apply_stack(plane: cp.ControlPlane, objects: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """Namespaces for real, then every object as a dry run; (kind, name) -> the API server's warnings."""
    api = plane.api
    for obj in objects:
        if obj["kind"] == "Namespace":
            created = api.apply(obj, dry_run=False)
            assert created.status_code in (200, 201), created.text
    _claims_the_controller_makes(plane, objects)
    warned: dict[tuple[str, str], list[str]] = {}
    refused = []
    for obj in objects:
        if obj["kind"] == "Namespace":
            continue
        done = api.apply(with_real_tls(obj, plane))
        if done.status_code not in (200, 201):
            refused.append(f"{obj['kind']} {obj['metadata']['name']}: {done.status_code} {done.json().get('message')}")
        if warnings_of(done):
            warned[(obj["kind"], obj["metadata"]["name"])] = warnings_of(done)
    assert not refused, "the API server refused:\n" + "\n".join(refused)
    return warned


@pytest.mark.parametrize("stack", STACKS)
def test_every_object_of_the_stack_is_accepted_by_the_api_server(stack: str, previewed_stacks: Path,
                                                                 dev_control_plane: cp.ControlPlane) -> None:
    objects = stack_objects(previewed_stacks, stack)
    assert objects, f"{stack} renders no Kubernetes objects"
    warned = _apply_stack(dev_control_plane, objects)
    unexpected = {key: text for key, text in warned.items() if key not in ACCEPTED_WARNINGS}
    assert not unexpected, f"Pod Security warnings without a reason: {unexpected}"
    for key, text in warned.items():
        assert all("PodSecurity" in w for w in text), (key, text)


def test_every_accepted_warning_still_happens(previewed_stacks: Path, dev_control_plane: cp.ControlPlane) -> None:
    """An accepted warning that no longer occurs is removed from the list (it would hide a new one)."""
    warned = _apply_stack(dev_control_plane, stack_objects(previewed_stacks, "dev"))
    assert set(ACCEPTED_WARNINGS) <= set(warned)


def test_a_selector_that_does_not_select_the_template_is_refused(previewed_stacks: Path,
                                                                 dev_control_plane: cp.ControlPlane) -> None:
    """What the schema alone cannot see, the API server refuses in its own words."""
    objects = stack_objects(previewed_stacks, "dev")
    _apply_stack(dev_control_plane, [o for o in objects if o["kind"] == "Namespace"])
    stateful = copy.deepcopy(next(o for o in objects if o["kind"] == "StatefulSet"))
    stateful["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] = "another-set"
    done = dev_control_plane.api.apply(stateful)
    assert done.status_code == 422, done.text
    assert "`selector` does not match template `labels`" in done.json()["message"]


def test_a_root_pod_in_a_restricted_namespace_is_refused_by_pod_security(dev_control_plane: cp.ControlPlane) -> None:
    api = dev_control_plane.api
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "restricted-probe", "labels": labels}}
    assert api.apply(namespace, dry_run=False).status_code in (200, 201)
    # Admission looks the pod's service account up first: the controller-manager creates it.
    cp.wait_for(dev_control_plane, "the default service account",
                lambda: api.get("/api/v1/namespaces/restricted-probe/serviceaccounts/default").status_code == 200)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "as-root", "namespace": "restricted-probe"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {"runAsUser": 0}}]}}
    done = api.apply(pod)
    assert done.status_code == 403, done.text
    assert 'violates PodSecurity "restricted:latest"' in done.json()["message"]
    assert "runAsNonRoot != true" in done.json()["message"]


