"""The control plane booted for real from the masters' own rendered user-data (tools/testing/control_plane.py):
etcd (Debian's) and the Kubernetes v1.32 kube-apiserver, -controller-manager and -scheduler, started
with the rendered command lines and files on loopback, with certificates issued for real from the
program's PKI plan."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from components.node.pki import node_pki
from tools.testing import control_plane as cp

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)


COMPONENTS = (("kube-controller-manager", cp.CONTROLLER_MANAGER_PORT), ("kube-scheduler", cp.SCHEDULER_PORT))


def _component_checks(plane: cp.ControlPlane) -> None:
    """Every controller-manager and scheduler answers /healthz, and each kind has elected a leader."""
    for master in plane.masters:
        for what, port in COMPONENTS:
            def healthy(m: cp.Master = master, p: int = port) -> bool:
                return cp.component_healthy(plane, m, p)

            cp.wait_for(plane, f"{what} /healthz on {master.node.name}", healthy)
    for lease, _ in COMPONENTS:
        def holder(name: str = lease) -> str | None:
            return cp.leader(plane, name)

        assert cp.wait_for(plane, f"a {lease} leader", holder)


def test_dev_control_plane_is_ready_healthy_and_elects_leaders(dev_control_plane: cp.ControlPlane) -> None:
    plane = dev_control_plane
    ready = plane.api.get("/readyz?verbose")
    assert ready.status_code == 200 and "readyz check passed" in ready.text
    assert "[+]etcd ok" in ready.text
    _component_checks(plane)
    # What the apiserver was started with is exactly the rendered drop-in's command line.
    started = plane.masters[0].daemons["kube-apiserver"].process.args
    assert started == plane.masters[0].command("kube-apiserver")
    assert "--enable-admission-plugins=NodeRestriction" in started


def test_prod_three_masters_form_one_control_plane(tmp_path: Path) -> None:
    with cp.boot("prod", tmp_path) as plane:
        assert len(plane.masters) == 3
        for master in plane.masters:
            api = cp.KubeApi(master.api_url, plane.admin)
            assert api.get("/readyz").status_code == 200, master.node.name
        _component_checks(plane)
        # One etcd cluster of three members, as the rendered etcd.conf files describe it, asked with
        # the apiserver's own etcd client certificate.
        members = cp.etcdctl(plane.masters[0], "member", "list")
        assert members.returncode == 0, members.stderr
        assert sorted(line.split(", ")[2] for line in members.stdout.splitlines()) == \
            ["atomic-master-1", "atomic-master-2", "atomic-master-3"]


def test_a_kubelet_certificate_is_its_node_and_node_restriction_keeps_it_there(
        dev_control_plane: cp.ControlPlane) -> None:
    plane = dev_control_plane
    first, second = plane.layout.minions[:2]
    kubelet = next(c for c in node_pki(plane.layout, first).certs if c.identity == "kubelet")
    as_node = cp.KubeApi(plane.masters[0].api_url, plane.credentials(kubelet, f"{first.name}-kubelet"))

    review = as_node.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                             {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert review.status_code == 201, review.text
    user = review.json()["status"]["userInfo"]
    assert user["username"] == f"system:node:{first.name}" and "system:nodes" in user["groups"]

    def node(name: str) -> dict[str, object]:
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}

    own = as_node.request("POST", "/api/v1/nodes", node(first.name))
    assert own.status_code in (201, 409), own.text  # a node may register itself
    assert plane.api.request("POST", "/api/v1/nodes", node(second.name)).status_code in (201, 409)
    other = as_node.request("PATCH", f"/api/v1/nodes/{second.name}", {"metadata": {"labels": {"stolen": "yes"}}},
                            "application/merge-patch+json")
    assert other.status_code == 403, other.text
    assert f'node "{first.name}" is not allowed to modify node "{second.name}"' in other.json()["message"]


def test_a_certificate_without_the_needed_san_stops_the_control_plane(tmp_path: Path) -> None:
    """The boot can fail: etcd's serving certificate without the addresses the apiserver dials is refused
    by the apiserver's etcd client (etcd says so in its own log), and the apiserver never gets ready."""
    with pytest.raises(cp.ControlPlaneError) as refused, \
            cp.boot("dev", tmp_path, drop_sans={"etcd-server": ("10.0.1.10", "127.0.0.1")}, ready_timeout=15):
        pass
    etcd = refused.value.logs["etcd on atomic-master-1"]
    assert 'rejected connection from "127.0.0.1:' in etcd and '(error "remote error: tls: bad certificate"' in etcd


def test_a_wrong_flag_is_refused_by_the_binary_itself(dev_control_plane: cp.ControlPlane) -> None:
    argv = dev_control_plane.masters[0].command("kube-apiserver")
    done = subprocess.run([*argv, "--no-such-flag=1", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "unknown flag: --no-such-flag" in done.stderr
