"""Every node's user-data validates against Debian's cloud-init schema and fits EC2's 16 KB.

The real consumer is cloud-init on the node; here Debian's cloud-init (22.4) reads the exact
bytes EC2 would hand it (the gzip-compressed #cloud-config, through cloud-init's own
user_data.convert_string, as on a node) and checks the result with `cloud-init schema
--config-file`. The test fails, not skips, when cloud-init is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.facts import USER_DATA_LIMIT
from components.node.cloud_init import compress_user_data, render_user_data
from components.node.etcd_backup import BACKUP_TIMER, BackupTarget
from components.node.layout import compute_layout
from components.node.units import CADVISOR_UNIT_PATH
from components.settings.schema import EtcdBackupSettings
from tests.components.node.shapes import cluster_settings

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

CLOUD_INIT = "/usr/bin/cloud-init"
# Debian's cloud-init, as a library: the code a node runs on the raw user-data from IMDS.
CLOUD_INIT_READS = """
import sys
from cloudinit.handlers import type_from_starts_with
from cloudinit.user_data import convert_string
message = convert_string(sys.stdin.buffer.read())
payload = message.get_payload(decode=True)
kind = type_from_starts_with(payload)
assert kind == "text/cloud-config", kind
sys.stdout.write(payload.decode())
"""
# The issue's target: room for what comes next, the largest shape under half of EC2's limit.
TARGET = USER_DATA_LIMIT // 2

SHAPES: dict[str, dict[str, Any]] = {
    "dev": dict(master_count=1, minion_count=2, enable_cockpit=True, etcd_backup=EtcdBackupSettings(60, 30)),
    "prod": dict(master_count=3, minion_count=6, subnet_cidr="10.40.0.0/22", vpc_cidr="10.40.0.0/16",
                 region="us-west-2", zones=("us-west-2a", "us-west-2b", "us-west-2c"), private_nodes=True,
                 private_subnet_cidr="10.40.16.0/22", api_load_balancer=True, etcd_backup=EtcdBackupSettings(60, 30)),
    # The longest names settings allow, every optional service (Cockpit, cAdvisor's unit), etcd backups, six
    # zones: the biggest user-data.
    "largest": dict(name="a" * 24, master_count=3, minion_count=240, enable_cockpit=True, enable_cadvisor=True,
                    kubernetes_version="1.33", region="ap-southeast-2",
                    zones=tuple(f"ap-southeast-2{z}" for z in "abcdef"), private_nodes=True,
                    private_subnet_cidr="10.0.64.0/22", vpc_cidr="10.0.0.0/16", subnet_cidr="10.0.1.0/24",
                    api_load_balancer=True, etcd_backup=EtcdBackupSettings(5, 3650)),
}
# The longest bucket name S3 allows, and a KMS key ARN (its length is fixed).
BACKUP = BackupTarget(bucket="b" * 63,
                      kms_key="arn:aws:kms:ap-southeast-2:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0")


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_user_data_validates_with_cloud_init_and_fits_ec2(shape: str, tmp_path: Path) -> None:
    assert shutil.which(CLOUD_INIT), "cloud-init is missing: install Debian's cloud-init"
    layout = compute_layout(cluster_settings(**SHAPES[shape]), "test")
    # Masters differ only in names/addresses, minions likewise: check the first and last of each role.
    nodes = {n.name: n for n in (layout.masters[0], layout.masters[-1], layout.minions[0], layout.minions[-1])}
    for node in nodes.values():
        rendered = render_user_data(layout, node, BACKUP)
        compressed = compress_user_data(rendered)
        assert len(compressed) < TARGET, f"{node.name}: {len(compressed)} bytes compressed"
        read = subprocess.run(["/usr/bin/python3", "-c", CLOUD_INIT_READS], input=compressed, capture_output=True,
                              timeout=120)
        assert read.returncode == 0, read.stderr.decode()
        text = read.stdout.decode()
        assert text == rendered, "cloud-init did not read back the rendered #cloud-config"
        # the optional cAdvisor unit is part of what cloud-init checks here, on masters and minions
        assert (CADVISOR_UNIT_PATH in text) == bool(SHAPES[shape].get("enable_cadvisor")), node.name
        assert (BACKUP_TIMER in text) == (node.role == "master"), node.name
        path = tmp_path / f"{node.name}.yaml"
        path.write_text(text)
        result = subprocess.run([CLOUD_INIT, "schema", "--config-file", str(path)], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, f"{node.name}:\n{result.stdout}{result.stderr}"
        assert "Valid cloud-config" in result.stdout, result.stdout


def test_schema_check_rejects_a_broken_document(tmp_path: Path) -> None:
    """The check above can fail: a wrong type for a known key is reported."""
    path = tmp_path / "bad.yaml"
    path.write_text("#cloud-config\nruncmd: 42\nwrite_files:\n- content: x\n")
    result = subprocess.run([CLOUD_INIT, "schema", "--config-file", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0


def test_cloud_init_reads_nothing_it_knows_from_a_broken_archive() -> None:
    """The read-back above can fail: a truncated gzip is not taken for a #cloud-config."""
    layout = compute_layout(cluster_settings(**SHAPES["dev"]), "test")
    truncated = compress_user_data(render_user_data(layout, layout.masters[0], BACKUP))[:-200]
    read = subprocess.run(["/usr/bin/python3", "-c", CLOUD_INIT_READS], input=truncated, capture_output=True,
                          timeout=120)
    assert read.returncode != 0 and b"AssertionError" in read.stderr
