"""The parts of the program import only downward (tools/architecture.py holds the rule as data)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import PROJECT_DIR
from tools import architecture


def test_every_module_keeps_its_parts_rule() -> None:
    assert architecture.check() == []


def test_every_component_module_belongs_to_a_part() -> None:
    unplaced = [name for name, path in architecture.modules() if name.startswith("components.")
                and path.name != "__init__.py" and architecture.part_of(name) is None]
    assert unplaced == []


@pytest.mark.parametrize(("module", "source", "imported"), [
    ("components.node.layout", "import pulumi\n", "pulumi"),
    ("components.node.cloud_init", "from components.aws.iam import node_policy\n", "components.aws.iam"),
    ("components.node.units", "import pulumi_aws as aws\n", "pulumi_aws"),
    ("components.addons.ebs_csi", "from components.aws import iam\n", "components.aws.iam"),
    ("components.addons.coredns", "from components.node.layout import ClusterLayout\n", "components.node.layout"),
    ("components.aws.cluster", "import pulumi_kubernetes as k8s\n", "pulumi_kubernetes"),
    ("components.workload.guestbook", "from components.addons.coredns import CoreDns\n", "components.addons.coredns"),
    ("components.facts", "import yaml\n", "yaml"),
    ("components.settings.schema", "import pulumi\n", "pulumi"),
    ("components.kube.objects", "from components.settings.load import load_settings\n", "components.settings.load"),
    ("tools.preview", "from tests.graph import kube\n", "tests.graph"),
    ("policy.validators", "from components.aws.cluster import AtomicCluster\n", "components.aws.cluster"),
])
def test_an_import_against_the_rule_is_reported(module: str, source: str, imported: str) -> None:
    [line] = architecture.violations(module, source)
    assert f"imports {imported}," in line and line.startswith(f"{module}:1:")


def test_imports_for_the_type_checker_only_do_not_count() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pulumi\n"
    assert architecture.violations("components.settings.schema", source) == []


def test_the_node_renderers_and_the_schema_never_load_pulumi() -> None:
    """At run time too: importing them in a fresh interpreter loads no pulumi module."""
    probe = ("import sys, components.node.cloud_init, components.settings.schema, components.settings.rules, "
             "components.aws.iam, "
             "components.aws.ami; print(sorted(m for m in sys.modules if m.split('.')[0].startswith('pulumi')))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_DIR, capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_docs_show_the_rule_as_it_is_checked() -> None:
    assert architecture.table() in (PROJECT_DIR / "docs" / "architecture.md").read_text()


def test_component_type_tokens_never_change() -> None:
    """Each is in the URN of its component and of every child: a new spelling would make `pulumi up`
    replace them all. Written out here on purpose, not read from components/tokens.py."""
    from components import tokens

    assert {name: value for name, value in vars(tokens).items() if value_is_component(value)} == {
        "ATOMIC_CLUSTER": "atomic-mysql:cluster:AtomicCluster",
        "CLUSTER_PKI": "atomic-mysql:pki:ClusterPki",
        "TCP_LOAD_BALANCER": "atomic-mysql:nlb:TcpLoadBalancer",
        "ETCD_BACKUP_BUCKET": "atomic-mysql:etcd_backup:EtcdBackupBucket",
        "CLUSTER_ADDONS": "atomic-mysql:addons:ClusterAddons",
        "CORE_DNS": "atomic-mysql:coredns:CoreDns",
        "EBS_CSI_DRIVER": "atomic-mysql:ebs_csi:EbsCsiDriver",
        "METRICS_SERVER": "atomic-mysql:metrics_server:MetricsServer",
        "NETWORK_POLICY_AGENT": "atomic-mysql:network_policy:NetworkPolicyAgent",
        "WORKLOAD": "atomic-mysql:workload:Workload",
        "MYSQL_SET": "atomic-mysql:mysql_set:MySqlReplicatedSet",
        "GUESTBOOK": "atomic-mysql:guestbook:Guestbook",
        "PRIVATE_BUCKET": "atomic-mysql:backup_bucket:PrivateBucket",
        "MYSQL_BACKUP_STORE": "atomic-mysql:backup_bucket:MysqlBackupStore",
    }


def value_is_component(value: object) -> bool:
    return isinstance(value, str) and value.startswith("atomic-mysql:")
