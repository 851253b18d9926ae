"""Cluster shapes the node tests render, as settings/load.py would hand them over."""

from __future__ import annotations

from typing import Any

from components.node.layout import ClusterLayout, compute_layout
from components.settings.schema import AddonSettings, ClusterSettings, DataVolumeSettings


def cluster_settings(**overrides: Any) -> ClusterSettings:
    """ClusterSettings as settings.py would hand them over for a default stack."""
    values: dict[str, Any] = dict(
        name="atomic", region="us-east-1", vpc_cidr="10.0.0.0/16", subnet_cidr="10.0.1.0/24",
        existing_vpc_id=None, existing_subnet_id=None, availability_zone=None, master_count=1, minion_count=2,
        master_instance_type="t3.medium", minion_instance_type="t3.large", root_volume_gb=30, ami_id=None,
        fedora_release=42, key_name=None, admin_cidrs=("198.51.100.0/24",), allow_world_admin=False,
        enable_cockpit=False, enable_cadvisor=False, enable_nodeports=False, kubernetes_version="1.32",
        service_cidr="10.254.0.0/16", pod_cidr="10.244.0.0/16", protect=False,
        addons=AddonSettings(coredns_replicas=2, storage_class="gp3", volume_reclaim_policy="Retain",
                             metrics_server=True, ebs_controller_replicas=2,
                             data_volume=DataVolumeSettings(storage_class="gp3-mysql", iops=3000, throughput_mibs=125)),
        tags={"Project": "atomic-mysql", "Stack": "test", "Owner": "t", "ManagedBy": "pulumi"},
    )
    values.update(overrides)
    return ClusterSettings(**values)


def layout_of(**overrides: Any) -> ClusterLayout:
    return compute_layout(cluster_settings(**overrides), "test")
