"""Kubelet client certificate rotation, for real: the dev control plane booted from its rendered
user-data (the Kubernetes v1.32 binaries; the controller-manager with the rendered
--cluster-signing-cert-file/--cluster-signing-key-file, the CA key delivered as the PKI plan says),
the program's own ClusterRoleBinding applied, and a kubelet's renewal request made as the kubelet
makes it: a CSR for `system:node:<name>` in `system:nodes`, signer
kubernetes.io/kube-apiserver-client-kubelet, sent with the node's current certificate.

Shown: the controller-manager approves it by itself (csrapproving, through the binding) and signs it
(csrsigning) with the cluster CA: a certificate for that node, a year long. Without the binding the
request stays pending; a node asking for another node's certificate is refused (NodeRestriction).
"""

from __future__ import annotations

import base64
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from components.addons.cluster_addons import NODE_CLIENT_ROTATION_BINDING
from components.facts import LEAF_VALIDITY_HOURS
from components.node.pki import node_pki
from tools.harness.offline import run_program
from tools.testing import control_plane as cp

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cp.ControlPlane]:
    with cp.boot("dev", tmp_path_factory.mktemp("rotation")) as booted:  # its own: the test changes RBAC
        yield booted


def _request(name: str, node: str) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
            "spec": {"request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                     "signerName": SIGNER, "usages": ["digital signature", "client auth"]}}


def _as_kubelet(plane: cp.ControlPlane, minion: int = 0) -> cp.KubeApi:
    node = plane.layout.minions[minion]
    spec = next(c for c in node_pki(plane.layout, node).certs if c.identity == "kubelet")
    return cp.KubeApi(plane.masters[0].api_url, plane.credentials(spec, f"{node.name}-kubelet"))


def _wait(plane: cp.ControlPlane, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, Any] = plane.api.get(f"{CSR_PATH}/{name}").json()
        if (found.get("status") or {}).get("certificate") or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_a_kubelets_renewal_is_approved_and_signed_by_the_controller_manager(plane: cp.ControlPlane) -> None:
    node = plane.layout.minions[0].name
    kubelet = _as_kubelet(plane)
    # Without the binding: the request is refused nothing, but nobody approves it.
    pending = kubelet.request("POST", CSR_PATH, _request("renewal-before-binding", node))
    assert pending.status_code == 201, pending.text
    assert not (_wait(plane, "renewal-before-binding", 15).get("status") or {}).get("certificate")

    binding = next(o for o in run_program("dev").kubernetes_objects()
                   if o["kind"] == "ClusterRoleBinding" and o["metadata"]["name"] == NODE_CLIENT_ROTATION_BINDING)
    applied = plane.api.apply(binding, dry_run=False)
    assert applied.status_code in (200, 201), applied.text

    created = kubelet.request("POST", CSR_PATH, _request("renewal", node))
    assert created.status_code == 201, created.text
    done = _wait(plane, "renewal", 60)
    conditions = {c["type"]: c for c in (done.get("status") or {}).get("conditions", [])}
    assert conditions.get("Approved", {}).get("reason") == "AutoApproved", done
    certificate = x509.load_pem_x509_certificate(base64.b64decode(done["status"]["certificate"]))
    ca = x509.load_pem_x509_certificate(plane.pki.ca_pem("kubernetes").encode())
    certificate.verify_directly_issued_by(ca)
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"system:node:{node}"
    # The signer caps a certificate at its CA's end (the test's CA lives a few days; the cluster's ten
    # years), otherwise --cluster-signing-duration, whose default is the cluster's leaf lifetime.
    assert certificate.not_valid_after_utc == ca.not_valid_after_utc
    help_text = subprocess.run([str(plane.bin_dir / "kube-controller-manager"), "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    assert re.search(r"--cluster-signing-duration duration .*\(default 8760h0m0s\)", help_text)
    assert LEAF_VALIDITY_HOURS == 8760


def test_a_node_asking_for_another_nodes_certificate_is_refused(plane: cp.ControlPlane) -> None:
    own, other = (m.name for m in plane.layout.minions[:2])
    created = _as_kubelet(plane).request("POST", CSR_PATH, _request("stolen-identity", other))
    # NodeRestriction (--enable-admission-plugins) refuses it before any approver could see it
    assert created.status_code == 403, created.text
    assert f"can only create a node CSR with CN=system:node:{own}" in created.json()["message"]


def test_the_program_binds_the_api_servers_own_role_to_every_node(tmp_path: Path) -> None:
    binding = next(o for o in run_program("dev").kubernetes_objects()
                   if o["kind"] == "ClusterRoleBinding" and o["metadata"]["name"] == NODE_CLIENT_ROTATION_BINDING)
    assert binding["roleRef"]["name"] == "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"
    assert binding["subjects"] == [{"kind": "Group", "name": "system:nodes", "apiGroup": "rbac.authorization.k8s.io"}]
