"""The node's programs (node/files/usr/local/sbin) run by bash and parsed by Python."""

from __future__ import annotations

import py_compile
import re
import subprocess
from pathlib import Path

import pytest

from components.node.cloud_init import FETCH_SCRIPT, IDENTITY_SCRIPT
from components.node.formats import shipped
from components.node.pod_network import NODE_SCRIPT
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
