"""The node's programs (node/files/usr/local/sbin) run by bash and parsed by Python."""

from __future__ import annotations

import grp
import json
import py_compile
import re
import subprocess
import sys
from pathlib import Path

import pytest

from components.node.cloud_init import FETCH_SCRIPT, IDENTITY_SCRIPT, node_files
from components.node.formats import shipped
from components.node.pki import ENCRYPTION_CONFIG
from components.node.pod_network import NODE_SCRIPT, render_cluster_env
from tests.components.node.shapes import layout_of
from tools.testing.imds import INSTANCE, fake_imds
from tools.testing.node_root import booted_identity, env_values, run_identity_script


def test_identity_script_writes_the_kubelet_identity_from_imdsv2(tmp_path: Path) -> None:
    layout = layout_of()
    values = env_values(booted_identity(tmp_path, layout.minions[0].name))
    assert values == {"KUBELET_IDENTITY": (
        "--provider-id=aws:///us-east-1b/i-0123456789abcdef0 --node-labels=topology.kubernetes.io/region=us-east-1,"
        "topology.kubernetes.io/zone=us-east-1b,node.kubernetes.io/instance-type=t3.large")}


def test_the_provider_id_is_what_the_ebs_csi_driver_parses(tmp_path: Path) -> None:
    """The driver (pkg/cloud/metadata_k8s.go) finds the instance id with `i-[a-z0-9]+$` and the
    zone with its region pattern followed by one letter."""
    layout = layout_of()
    flags = env_values(booted_identity(tmp_path, layout.minions[0].name))["KUBELET_IDENTITY"].split()
    provider_id = flags[0].removeprefix("--provider-id=")
    assert re.search(r"i-[a-z0-9]+$", provider_id).group(0) == "i-0123456789abcdef0"  # type: ignore[union-attr]
    zone = re.search(r"([a-z]{2}(-gov)?)-(central|(north|south)?(east|west)?)-[0-9][a-z]", provider_id)
    assert zone and zone.group(0) == "us-east-1b"


@pytest.mark.parametrize("broken", [{"instance-id": "i-0123; rm -rf /"}, {"placement/availability-zone": ""}])
def test_identity_script_refuses_metadata_it_does_not_expect(tmp_path: Path, broken: dict[str, str]) -> None:
    target = tmp_path / "identity"
    with fake_imds({**INSTANCE, **broken}) as url:
        done = run_identity_script(tmp_path, target, url)
    assert done.returncode != 0 and not target.exists()
    assert "atomic-kubelet-identity: unexpected instance metadata" in done.stderr


def test_identity_script_fails_without_metadata_rather_than_start_a_kubelet_without_it(tmp_path: Path) -> None:
    target = tmp_path / "identity"
    with fake_imds({}) as url:  # every read is a 404
        done = run_identity_script(tmp_path, target, url)
    assert done.returncode != 0 and not target.exists()


def test_shipped_scripts_parse(tmp_path: Path) -> None:
    script = tmp_path / "atomic-node"
    script.write_text(shipped(NODE_SCRIPT))
    subprocess.run(["/bin/bash", "-n", str(script)], check=True, timeout=30)
    identity = tmp_path / "atomic-kubelet-identity"
    identity.write_text(shipped(IDENTITY_SCRIPT))
    subprocess.run(["/bin/bash", "-n", str(identity)], check=True, timeout=30)
    fetch = tmp_path / "fetch.py"
    fetch.write_text(shipped(FETCH_SCRIPT))
    py_compile.compile(str(fetch), doraise=True)


# A stand-in for boto3: the SSM client's get_parameters_by_path paginator, from a JSON file.
FAKE_BOTO3 = '''
import json, os
class _Paginator:
    def paginate(self, Path, Recursive, WithDecryption):
        assert Recursive and WithDecryption
        params = json.load(open(os.environ["FAKE_SSM"]))
        return [{"Parameters": [p for p in params if p["Name"].startswith(Path + "/")]}]
class _Client:
    def get_paginator(self, name):
        assert name == "get_parameters_by_path"
        return _Paginator()
def client(service, region_name):
    assert service == "ssm" and region_name == "us-east-1"
    return _Client()
'''


def _fetch(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    layout = layout_of()
    master = layout.masters[0]
    root = tmp_path / "root"
    (root / "etc/kubernetes").mkdir(parents=True)
    (root / "etc/kubernetes/scheduler.kubeconfig").write_text("apiVersion: v1\n")
    (root / "etc/kubernetes/scheduler.kubeconfig").chmod(0o600)
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "boto3.py").write_text(FAKE_BOTO3)
    path = layout.ssm_path(master)
    (tmp_path / "ssm.json").write_text(json.dumps([{"Name": f"{path}{f}", "Value": v} for f, v in files.items()]))
    env_file = tmp_path / "cluster.env"
    env_file.write_text(render_cluster_env(layout, master))
    script = tmp_path / "atomic-fetch-pki"
    script.write_text(shipped(FETCH_SCRIPT))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(stub), "FAKE_SSM": str(tmp_path / "ssm.json"),
                               "ATOMIC_ENV": str(env_file), "ATOMIC_ROOT": str(root)})


def _private_mode(group: str) -> int:
    try:
        grp.getgrnam(group)
    except KeyError:
        return 0o600
    return 0o640


def test_fetch_pki_writes_key_material_private_and_certificates_public(tmp_path: Path) -> None:
    """atomic-fetch-pki run by Python against a stand-in SSM: keys and the encryption config are
    never world-readable (0640 to the daemons' group where it exists, else 0600), certificates
    are, the node's kubeconfigs are closed too, and nothing is left half-written."""
    done = _fetch(tmp_path, {"/etc/kubernetes/pki/apiserver.crt": "CERT", "/etc/kubernetes/pki/apiserver.key": "KEY",
                             "/etc/kubernetes/pki/sa.pub": "PUB", ENCRYPTION_CONFIG: "secretbox: yes",
                             "/etc/etcd/pki/server.key": "ETCD KEY"})
    assert done.returncode == 0, done.stderr
    root = tmp_path / "root"
    modes = {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in root.rglob("*") if p.is_file()}
    kube, etcd = (_private_mode(group) for group in ("kube", "etcd"))
    assert modes == {
        "etc/kubernetes/pki/apiserver.crt": 0o644, "etc/kubernetes/pki/sa.pub": 0o644,
        "etc/kubernetes/pki/apiserver.key": kube, "etc/kubernetes/pki/encryption-config.yaml": kube,
        "etc/etcd/pki/server.key": etcd, "etc/kubernetes/scheduler.kubeconfig": kube,
    }
    assert (root / "etc/kubernetes/pki/apiserver.key").read_text() == "KEY"


def test_fetch_pki_refuses_a_parameter_outside_the_pki_directories(tmp_path: Path) -> None:
    done = _fetch(tmp_path, {"/etc/kubernetes/pki/ca.crt": "CA", "/etc/shadow": "root::0:0:::"})
    assert done.returncode != 0 and "atomic-fetch-pki: refusing" in done.stderr
    assert not (tmp_path / "root/etc/shadow").exists()


def test_the_nodes_kubeconfigs_are_written_for_root_only(tmp_path: Path) -> None:
    layout = layout_of()
    for node in layout.nodes:
        modes = {path: mode for path, (_, mode) in node_files(layout, node).items() if path.endswith(".kubeconfig")}
        assert modes and set(modes.values()) == {"0600"}, node.name
