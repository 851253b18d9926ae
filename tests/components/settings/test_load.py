"""Bad settings: one clear line naming the key and what is allowed, exit 2, nothing registered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components import tokens
from tools import preview
from tools.harness.mocks import AtomicMocks, RecordingMonitor
from tools.harness.offline import run_program
from tools.harness.pulumi_project import StackConfigError

# (stack, overrides, text the one line must contain)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("dev", {"masterCount": 2}, "atomic-mysql:masterCount=2: must be odd"),
    ("dev", {"minionCount": 0}, "atomic-mysql:minionCount=0: must be a whole number from 1 to 500"),
    ("dev", {"subnetCidr": "10.1.0.0/24"}, "subnetCidr=10.1.0.0/24: must lie inside vpcCidr 10.0.0.0/16"),
    ("dev", {"adminCidrs": ["198.51.100.7/33"]}, "adminCidrs=198.51.100.7/33: must be an IPv4 CIDR"),
    ("dev", {"adminCidrs": ["0.0.0.0/0"]}, "set allowWorldAdminAccess=true"),
    ("dev", {"adminCidrs": []}, "adminCidrs=[]: clusterMode=aws needs at least the CIDR `pulumi up` runs from"),
    ("dev", {"redisReplicas": 0}, "redisReplicas=0: must be a whole number from 1 to 20"),
    ("dev", {"mysqlPdbMaxUnavailable": 2},
     "mysqlPdbMaxUnavailable=2: must leave a majority of the 3 pods (mysqlReplicas) available: a whole number from 1 "
     "to 1"),
    ("prod", {"mysqlPdbMaxUnavailable": 3}, "mysqlPdbMaxUnavailable=3: must leave a majority of the 5 pods"),
    ("dev", {"masterInstanceType": "huge"}, "masterInstanceType=huge: must be an EC2 instance type"),
    (
        "dev",
        {"minionCount": 300},
        "minionCount=300: subnetCidr 10.0.1.0/24 and podCidr 10.244.0.0/16 leave room for at most 242",
    ),
    ("dev", {"podCidr": "10.244.0.0/25"}, "podCidr=10.244.0.0/25: must be /24 or larger"),
    ("dev", {"serviceCidr": "10.0.128.0/20"}, "serviceCidr=10.0.128.0/20: must not overlap vpcCidr"),
    (
        "dev",
        {"enableCadvisor": True, "vpcCidr": "10.88.0.0/16", "subnetCidr": "10.88.1.0/24"},
        "vpcCidr=10.88.0.0/16: must not overlap podman's bridge 10.88.0.0/16 when enableCadvisor=true",
    ),
    ("dev", {"amiId": "ami-123"}, "amiId=ami-123: must be an AMI id"),
    ("dev", {"kubernetesVersion": "1.20"}, "kubernetesVersion=1.20: allowed values are 1.31, 1.32, 1.33"),
    ("dev", {"aws:region": "mars"}, "aws:region=mars: must be an AWS region name"),
    ("dev", {"clusterMode": "gke"}, "clusterMode=gke: allowed values are aws, existing"),
    ("dev", {"mysqlEngine": "postgres"}, "mysqlEngine=postgres: allowed values are mysql, mariadb"),
    ("dev", {"mysqlVersion": "5.7"}, "mysqlVersion=5.7: allowed values for mysqlEngine=mysql are 8.4, 8.0"),
    (
        "dev",
        {"mysqlEngine": "mariadb", "mysqlVersion": "8.4"},
        "allowed values for mysqlEngine=mariadb are 11.4, 10.11",
    ),
    ("dev", {"mysqlReplicas": 0}, "mysqlReplicas=0: must be a whole number from 1 to 9"),
    ("dev", {"mysqlStorageSize": "10GB"}, "mysqlStorageSize=10GB: must be a Kubernetes quantity"),
    ("dev", {"mysqlMemoryLimit": "256Mi"}, "mysqlMemoryLimit=256Mi: must be at least mysqlMemoryRequest (512Mi)"),
    ("dev", {"mysqlAntiAffinity": "sometimes"}, "mysqlAntiAffinity=sometimes: allowed values are soft, hard"),
    ("dev", {"mysqlName": "MySQL_1"}, "mysqlName=MySQL_1: must be an RFC 1123 label"),
    ("dev", {"namespace": "default"}, "namespace=default: the workload gets its own namespace"),
    ("dev", {"rolloutMaxSurge": "0", "rolloutMaxUnavailable": "0%"}, "cannot both be 0"),
    ("dev", {"rolloutMaxSurge": "150%"}, "rolloutMaxSurge=150%: must be a whole number or a percentage"),
    ("dev", {"progressDeadlineSeconds": -5}, "progressDeadlineSeconds=-5: must be a whole number from 1 to 86400"),
    (
        "dev",
        {"frontendHpaEnabled": True, "frontendHpaMin": 5, "frontendHpaMax": 2},
        "frontendHpaMin=5: must not exceed frontendHpaMax (2)",
    ),
    ("dev", {"frontendImage": "redis:latest"}, "frontendImage=redis:latest: must be an image pinned by tag or digest"),
    ("dev", {"redisPrimaryImage": "redis"}, "redisPrimaryImage=redis: must be an image pinned"),
    ("dev", {"ingressBandwidth": "10mbps"}, "ingressBandwidth=10mbps: must be a rate such as 10M"),
    ("dev", {"masterCount": "three"}, "Stack 'dev' with configuration key 'masterCount' must be of type 'integer'"),
    ("local", {"mysqlCpuRequest": "-1"}, "mysqlCpuRequest=-1: must be a CPU quantity above zero"),
    ("dev", {"corednsReplicas": 0}, "corednsReplicas=0: must be a whole number from 1 to 10"),
    ("dev", {"volumeReclaimPolicy": "Recycle"}, "volumeReclaimPolicy=Recycle: allowed values are Retain, Delete"),
    ("staging", {"mysqlStorageClass": "fast-ssd"},
     "mysqlStorageClass=fast-ssd: clusterMode=aws offers one StorageClass: gp3"),
    ("prod", {"enableMetricsServer": False}, "enableMetricsServer=false: frontendHpaEnabled=true needs metrics-server"),
    ("prod", {"frontendNodePort": 8080}, "frontendNodePort=8080: must be a whole number from 30000 to 32767"),
    ("prod", {"frontendSourceCidrs": ["everyone"]}, "frontendSourceCidrs=everyone: must be an IPv4 CIDR"),
    ("prod", {"frontendSourceCidrs": ["0.0.0.0/0", "0.0.0.0/0"]}, "must not list a CIDR twice"),
]


@pytest.mark.parametrize(("stack", "overrides", "expected"), INVALID, ids=[str(o) for _, o, _ in INVALID])
def test_invalid_setting_is_one_clear_line_and_exit_2(
    stack: str, overrides: dict[str, Any], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--stack", stack, "--out", str(tmp_path), "--quiet"]
    for key, value in overrides.items():
        rendered = value if isinstance(value, str) else json.dumps(value)
        args += ["--set", f"{key}={rendered}"]
    assert preview.main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert expected in lines[0]
    assert "Traceback" not in captured.err
    assert not (tmp_path / stack).exists(), "nothing is written for a refused configuration"


@pytest.mark.parametrize(("stack", "overrides", "expected"), INVALID, ids=[str(o) for _, o, _ in INVALID])
def test_invalid_setting_registers_no_resource(stack: str, overrides: dict[str, Any], expected: str) -> None:
    monitor = RecordingMonitor(AtomicMocks())
    with pytest.raises((pulumi.RunError, StackConfigError)):
        run_program(stack, overrides, monitor=monitor)
    assert [r.type for r in monitor.registrations if r.type != tokens.STACK] == []
