"""The facts every part of the program shares, each stated once.

Ports, the cluster domain, the rules that place nodes in the subnet and the pod range, the
tags AWS resources carry (and IAM conditions key on), certificate lifetimes and EC2's limits.
Plain values and arithmetic only: nothing here imports pulumi, so the node renderers, the
settings, the components and the tools all read the same numbers.
"""

from __future__ import annotations

import ipaddress
import math
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
BACKUP_AGENT_PORT = 3308  # the backup CronJob asks a member's backup agent for a backup here
MYSQLD_EXPORTER_PORT = 9104  # mysqld_exporter's default
BACKUP_METRICS_PORT = 9105  # the backup agent's metrics (backup age, binlog archive)

# --------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------

CLUSTER_DOMAIN = "cluster.local"
KUBE_SYSTEM = "kube-system"
# The one StorageClass the aws cluster offers (EBS gp3 through the EBS CSI driver, the default class).
EBS_STORAGE_CLASS = "gp3"
# podman's default bridge (cAdvisor runs under podman): a cluster range overlapping it is shadowed.
PODMAN_BRIDGE = ipaddress.IPv4Network("10.88.0.0/16")
# The workload's namespace holds both: the Guestbook's objects (the PHP frontend finds Redis by
# these Service names) and the MySQL set's, named <mysqlName><suffix>. One name, one object.
GUESTBOOK_OBJECT_NAMES = ("frontend", "redis-leader", "redis-follower", "guestbook-frontend", "guestbook-redis")
MYSQL_OBJECT_SUFFIXES = ("", "-read", "-primary", "-config", "-credentials", "-backup", "-backup-s3")

# --------------------------------------------------------------------------
# Node slots: where every node sits in the subnet and in the pod range
# --------------------------------------------------------------------------

# Nodes take fixed addresses from the subnet's .10 on, three master slots first (even with
# one master, so that growing 1 -> 3 masters never moves a minion), and each node owns one
# /24 of podCidr, selected by its slot.
FIRST_NODE_OFFSET = 10
MASTER_SLOTS = 3
POD_SUBNET_PREFIX = 24
MAX_MINION_SLOTS = 500


def minion_capacity(subnet: ipaddress.IPv4Network, pods: ipaddress.IPv4Network) -> int:
    """How many minions fit: AWS keeps the subnet's last address; each node needs a pod /24."""
    by_pods = 2 ** (POD_SUBNET_PREFIX - pods.prefixlen) - MASTER_SLOTS
    by_subnet = subnet.num_addresses - 1 - FIRST_NODE_OFFSET - MASTER_SLOTS
    return max(min(by_pods, by_subnet, MAX_MINION_SLOTS), 0)


def node_slot_problem(subnet: ipaddress.IPv4Network, pods: ipaddress.IPv4Network,
                      minions: int) -> tuple[str, str] | None:
    """(setting to blame, what is wrong) when `minions` minions cannot be placed, else None.

    The one statement of the rule: settings refuse such a stack with it, and the node layout
    refuses to compute one.
    """
    if pods.prefixlen > POD_SUBNET_PREFIX:
        return "podCidr", f"must be /{POD_SUBNET_PREFIX} or larger (one /{POD_SUBNET_PREFIX} per node)"
    capacity = minion_capacity(subnet, pods)
    if minions > capacity:
        return "minionCount", f"subnetCidr {subnet} and podCidr {pods} leave room for at most {capacity} minions"
    return None


# --------------------------------------------------------------------------
# Kubernetes quantities
# --------------------------------------------------------------------------

QUANTITY_FACTORS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def quantity_value(text: str) -> float:
    """The numeric value of a Kubernetes byte quantity such as `10Gi`."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", text)
    if not match or match.group(2) not in QUANTITY_FACTORS:
        raise ValueError(text)
    return float(match.group(1)) * QUANTITY_FACTORS[match.group(2)]


def quantity_bytes(text: str) -> int:
    """A byte quantity (`10Gi`) as a whole number of bytes, rounded up."""
    return math.ceil(quantity_value(text))


# What the program allows a node to pull one container image (a first pull of the MySQL server or
# backup image is a few hundred MB from a public registry), in every await budget.
IMAGE_PULL_ALLOWANCE_SECONDS = 300


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
# "Inbound or outbound rules per security group": 60 by default, counted separately for inbound
# and outbound (Amazon VPC quotas, docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html).
SECURITY_GROUP_RULE_QUOTA = 60
