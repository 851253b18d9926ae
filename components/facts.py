"""The facts every part of the program shares, each stated once.

Ports, the cluster domain, the rules that place nodes in the subnet and the pod range, the
tags AWS resources carry (and IAM conditions key on), certificate lifetimes and EC2's limits.
Plain values and arithmetic only: nothing here imports pulumi, so the node renderers, the
settings, the components and the tools all read the same numbers.
"""

from __future__ import annotations

import ipaddress
import re

PROJECT = "atomic-mysql"

# --------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------

API_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
KUBELET_PORT = 10250
OVERLAY_PORT = 8472  # flannel's VXLAN port, so existing firewall habits still apply
CADVISOR_PORT = 4194
COCKPIT_PORT = 9090
NODE_PORT_RANGE = (30000, 32767)  # the apiserver's default --service-node-port-range
MYSQL_PORT = 3306
CLONE_PORT = 3307  # a MySQL pod streams its backup to the next ordinal here

# --------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------

CLUSTER_DOMAIN = "cluster.local"
KUBE_SYSTEM = "kube-system"
# The one StorageClass the aws cluster offers (EBS gp3 through the EBS CSI driver, the default class).
EBS_STORAGE_CLASS = "gp3"
# podman's default bridge (cAdvisor runs under podman): a cluster range overlapping it is shadowed.
PODMAN_BRIDGE = ipaddress.IPv4Network("10.88.0.0/16")

# --------------------------------------------------------------------------
# Node slots: where every node sits in the subnet and in the pod range
# --------------------------------------------------------------------------

# Nodes take fixed addresses from their zone's subnet's .10 on, three master slots first (even
# with one master, so that growing 1 -> 3 masters never moves a minion), and each node owns one
# /24 of podCidr, selected by its slot. Slots are numbered across the cluster; a slot's zone and
# its row in that zone's subnet follow from the slot and the number of zones alone
# (slot_place), so that every node computes every other node's address from a few numbers.
FIRST_NODE_OFFSET = 10
MASTER_SLOTS = 3
POD_SUBNET_PREFIX = 24
MAX_MINION_SLOTS = 500
MAX_ZONES = 6


def zone_blocks(first: ipaddress.IPv4Network, zones: int) -> list[ipaddress.IPv4Network]:
    """The subnets of `zones` zones: `first`, then the blocks of the same size that follow it."""
    return [ipaddress.IPv4Network((int(first.network_address) + k * first.num_addresses, first.prefixlen))
            for k in range(zones)]


def master_rows(zones: int) -> int:
    """Rows of every zone's subnet kept for the master slots (one per zone with three zones)."""
    return -(-MASTER_SLOTS // zones)


def slot_place(slot: int, zones: int) -> tuple[int, int]:
    """(zone, row) of a slot: masters one per zone (round-robin), then minions round-robin over the
    zones, each zone's rows filled from its first free one. The address is the zone subnet's
    .FIRST_NODE_OFFSET + row; with one zone that is the subnet's .10 + slot, as it always was."""
    if slot < MASTER_SLOTS:
        return slot % zones, slot // zones
    minion = slot - MASTER_SLOTS
    return minion % zones, master_rows(zones) + minion // zones


def minion_capacity(subnet: ipaddress.IPv4Network, pods: ipaddress.IPv4Network, zones: int = 1) -> int:
    """How many minions fit: AWS keeps each subnet's last address; each node needs a pod /24."""
    by_pods = 2 ** (POD_SUBNET_PREFIX - pods.prefixlen) - MASTER_SLOTS
    rows = subnet.num_addresses - 1 - FIRST_NODE_OFFSET  # rows of each zone's subnet a node may take
    by_subnet = (rows - master_rows(zones)) * zones
    return max(min(by_pods, by_subnet, MAX_MINION_SLOTS), 0)


def node_slot_problem(subnet: ipaddress.IPv4Network, pods: ipaddress.IPv4Network, minions: int,
                      zones: int = 1, subnet_key: str = "subnetCidr") -> tuple[str, str] | None:
    """(setting to blame, what is wrong) when `minions` minions cannot be placed, else None.

    `subnet` is the first zone's node subnet (named by `subnet_key`); every zone's is as large.
    The one statement of the rule: settings refuse such a stack with it, and the node layout
    refuses to compute one.
    """
    if pods.prefixlen > POD_SUBNET_PREFIX:
        return "podCidr", f"must be /{POD_SUBNET_PREFIX} or larger (one /{POD_SUBNET_PREFIX} per node)"
    capacity = minion_capacity(subnet, pods, zones)
    if minions > capacity:
        where = f"{subnet_key} {subnet}" + (f" ({zones} zones)" if zones > 1 else "")
        return "minionCount", f"{where} and podCidr {pods} leave room for at most {capacity} minions"
    return None


# --------------------------------------------------------------------------
# Tags: what every AWS resource carries, and what IAM conditions key on
# --------------------------------------------------------------------------

TAG_PROJECT = "Project"
TAG_STACK = "Stack"
TAG_OWNER = "Owner"
TAG_MANAGED_BY = "ManagedBy"
TAG_NAME = "Name"
TAG_ROLE = "Role"
# Every node (and every AWS resource) of a cluster carries Cluster=<clusterName>; the EBS CSI
# policy lets a minion attach and detach volumes only to instances with its own cluster's tag.
CLUSTER_TAG = "Cluster"
# Tags the EBS CSI driver puts on every volume it creates (pkg/cloud: AwsEbsDriverTagKey, and with
# --k8s-tag-cluster-id: kubernetes.io/cluster/<id>=owned); the minions' IAM policy keys on both.
EBS_MANAGED_TAG = "ebs.csi.aws.com/cluster"


def base_tags(stack: str, owner: str) -> dict[str, str]:
    """The tags of every AWS resource of a stack."""
    return {TAG_PROJECT: PROJECT, TAG_STACK: stack, TAG_OWNER: owner, TAG_MANAGED_BY: "pulumi"}


_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def check_cluster_name(name: str) -> str:
    """The cluster id volumes are tagged with: a plain tag-key-safe word (it ends up in one)."""
    if not isinstance(name, str) or not _CLUSTER_NAME.match(name):
        raise ValueError(f"cluster name {name!r} must be 1-63 letters, digits, '.', '_' or '-'")
    return name


def ebs_volume_tags(cluster_name: str) -> dict[str, str]:
    """The tags of every volume the EBS CSI controller creates for this cluster that IAM keys on."""
    return {EBS_MANAGED_TAG: "true", f"kubernetes.io/cluster/{check_cluster_name(cluster_name)}": "owned"}


# --------------------------------------------------------------------------
# Certificates (pulumi-tls): the cluster's, and the add-ons' own CAs
# --------------------------------------------------------------------------

CA_VALIDITY_HOURS = 10 * 365 * 24
LEAF_VALIDITY_HOURS = 365 * 24
CA_USES = ["cert_signing", "crl_signing", "digital_signature"]

# --------------------------------------------------------------------------
# EC2
# --------------------------------------------------------------------------

USER_DATA_LIMIT = 16 * 1024
