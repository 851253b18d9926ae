"""The facts every part of the program shares, each stated once.

Ports, the cluster domain, the rules that place nodes in the subnet and the pod range, the
tags AWS resources carry (and IAM conditions key on), certificate lifetimes and EC2's limits.
Plain values and arithmetic only: nothing here imports pulumi, so the node renderers, the
settings, the components and the tools all read the same numbers.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import math
import re
from collections.abc import Iterable

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
# The cluster DNS pods' label: CoreDNS's here (addons/coredns.py), and kubeadm's and EKS's, so that a
# workload's DNS egress rule holds on an existing cluster too.
CLUSTER_DNS_LABELS = {"k8s-app": "kube-dns"}
# Agents that enforce NetworkPolicy, by image repository (the policy pack looks for one in every
# stack that builds a cluster): ours (pins.NETWORK_POLICY_AGENT_IMAGE) and the common CNIs that enforce.
NETWORK_POLICY_IMPLEMENTATIONS = (
    "registry.k8s.io/networking/kube-network-policies",
    "quay.io/calico/node", "docker.io/calico/node",
    "quay.io/cilium/cilium",
)
# The aws cluster's StorageClasses (EBS gp3 through the EBS CSI driver): the cluster default, at
# gp3's baseline performance, and the MySQL data volumes' own class, provisioned with the IOPS and
# throughput of mysqlVolumeIops/mysqlVolumeThroughput (checked against mysqlStorageSize).
EBS_STORAGE_CLASS = "gp3"
EBS_DATA_STORAGE_CLASS = "gp3-mysql"
# podman's default bridge (cAdvisor runs under podman): a cluster range overlapping it is shadowed.
PODMAN_BRIDGE = ipaddress.IPv4Network("10.88.0.0/16")
# The workload's namespace holds both: the Guestbook's objects (the PHP frontend finds Redis by
# these Service names) and the MySQL set's, named <mysqlName><suffix>. One name, one object.
GUESTBOOK_OBJECT_NAMES = ("frontend", "redis-leader", "redis-follower", "redis-follower-probe", "guestbook-frontend",
                          "guestbook-redis")
MYSQL_OBJECT_SUFFIXES = ("", "-read", "-primary", "-config", "-credentials", "-clients", "-tls", "-backup",
                         "-backup-s3")
# The stack output recording what the MySQL set's volumes hold (settings/schema.MysqlRecord): the next
# run reads it back, before anything is registered, to refuse what those volumes cannot take.
MYSQL_RECORD_OUTPUT = "mysqlDeployed"
# The namespace's own NetworkPolicies (workload/workload.py): its default deny and the DNS rule every pod needs.
DEFAULT_DENY_POLICY = "default-deny"
DNS_EGRESS_POLICY = "allow-cluster-dns"
NAMESPACE_OBJECT_NAMES = (DEFAULT_DENY_POLICY, DNS_EGRESS_POLICY)

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
# Address space: what is private, and how much of the internet admin ports may face
# --------------------------------------------------------------------------

PRIVATE_NETWORKS = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
SHARED_NETWORK = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598, carrier-grade NAT
# The most public addresses the admin ports may be open to without allowWorldAdminAccess: a /16's
# worth. Offices, VPNs and bastions are far smaller; anything wider is the internet in pieces
# (0.0.0.0/1 + 128.0.0.0/1 is all of it without a /0 anywhere). Settings and the policy pack both
# measure by this.
ADMIN_PUBLIC_ADDRESSES_MAX = 2**16


def public_addresses(networks: Iterable[ipaddress.IPv4Network]) -> int:
    """How many public addresses the union of `networks` holds: overlaps counted once, private and
    shared space (RFC 1918, 100.64/10) left out, since only networks inside can reach it."""
    inside = [*PRIVATE_NETWORKS, SHARED_NETWORK]
    total = 0
    for net in ipaddress.collapse_addresses(networks):
        covered = [n for n in (_narrower(net, p) for p in inside) if n is not None]
        total += net.num_addresses - sum(n.num_addresses for n in ipaddress.collapse_addresses(covered))
    return total


def _narrower(a: ipaddress.IPv4Network, b: ipaddress.IPv4Network) -> ipaddress.IPv4Network | None:
    """The overlap of two networks (one always contains the other, or they are disjoint)."""
    if a.subnet_of(b):
        return a
    return b if b.subnet_of(a) else None


def admin_exposure_problem(networks: Iterable[ipaddress.IPv4Network]) -> str | None:
    """Why these admin sources together face too much of the internet, or None."""
    networks = list(networks)
    if ipaddress.IPv4Network("0.0.0.0/0") in ipaddress.collapse_addresses(networks):
        return "together are the whole internet (0.0.0.0/0)"
    public = public_addresses(networks)
    if public > ADMIN_PUBLIC_ADDRESSES_MAX:
        return (f"together open the admin ports to {public:,} public addresses, more than the"
                f" {ADMIN_PUBLIC_ADDRESSES_MAX:,} (a /16) allowed")
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
# What a node should run: a digest of its instance type, explicit AMI and user-data
# (node/cloud_init.node_spec_digest). The instance itself holds on to what it was launched with
# (those inputs are ignoreChanges) and only this tag follows the program, in place; `make
# roll-nodes` compares the two to find the nodes it has to replace, one at a time.
TAG_NODE_SPEC = "NodeSpec"
# The one node whose launch inputs a `pulumi up` may change: set by `make roll-nodes` for the
# targeted replacement of that node (`pulumi up --replace URN --target URN`), never by hand.
ROLL_NODE_ENV = "ATOMIC_ROLL_NODE"
# Instance inputs that EC2 applies by stopping the instance (userDataBase64, instanceType) or by
# replacing it (ami): never changed on every node in one `up`, only one node at a time by roll-nodes.
NODE_LAUNCH_INPUTS = ("ami", "instanceType", "userDataBase64")
# Every AWS resource of a cluster carries Cluster=<clusterName> (for people) and
# ClusterId=<cluster_id>, unique to the stack (for IAM): the EBS CSI policy lets a minion manage only
# volumes tagged with its own stack's id, and attach them only to instances carrying it, so that no
# stack's role reaches another stack's resources in a shared account (clusterName alone is `atomic`
# in every stack).
CLUSTER_TAG = "Cluster"
CLUSTER_ID_TAG = "ClusterId"
# Tags the EBS CSI driver puts on every volume it creates (pkg/cloud: AwsEbsDriverTagKey, and with
# --k8s-tag-cluster-id: kubernetes.io/cluster/<id>=owned); the minions' IAM policy keys on both.
EBS_MANAGED_TAG = "ebs.csi.aws.com/cluster"


def base_tags(stack: str, owner: str) -> dict[str, str]:
    """The tags of every AWS resource of a stack."""
    return {TAG_PROJECT: PROJECT, TAG_STACK: stack, TAG_OWNER: owner, TAG_MANAGED_BY: "pulumi"}


_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def cluster_id(stack: str, cluster: str) -> str:
    """The stack-unique id of a cluster: <clusterName>-<stack>, tag-key-safe and at most 63
    characters (a long stack name is cut and a digest of the whole keeps it unique)."""
    whole = f"{cluster}-{re.sub(r'[^A-Za-z0-9._-]', '-', stack)}"
    if len(whole) <= 63:
        return check_cluster_name(whole)
    digest = hashlib.sha256(whole.encode()).hexdigest()[:8]
    return check_cluster_name(f"{whole[:54]}-{digest}")


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

# What every TLS server of the cluster (kube-apiserver, -controller-manager, -scheduler, kubelet,
# etcd) accepts: TLS 1.2 and later, and of TLS 1.2 only the AEAD suites with forward secrecy (Go's
# names; TLS 1.3's suites are not configurable in Go and are all of that kind). Every key the
# program issues is ECDSA; the RSA suites stay for clients of certificates made elsewhere.
TLS_MIN_VERSION = "VersionTLS12"
TLS_CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
)

CA_VALIDITY_HOURS = 10 * 365 * 24
LEAF_VALIDITY_HOURS = 365 * 24
# Leaf certificates are re-issued by the first `pulumi up` of every renewal round (a stretch of
# LEAF_RENEWAL_DAYS from RENEWAL_EPOCH): the round's number is in each certificate request's
# subject (serialNumber), so a new round is a new request, hence a new certificate. pulumi-tls's own
# early renewal (early_renewal_hours, set too) does not fire on `pulumi up` (pulumi/pulumi-tls#39,
# open; pulumi/pulumi#22332 asks for a "replace after" option). A stack that runs `pulumi up` at
# least once a round never holds a leaf certificate with less than VALIDITY - ROUND left.
LEAF_RENEWAL_DAYS = 90
LEAF_EARLY_RENEWAL_HOURS = LEAF_RENEWAL_DAYS * 24
RENEWAL_EPOCH = datetime.date(2026, 1, 1)


def renewal_round(day: datetime.date) -> int:
    """The renewal round `day` falls in (0 from RENEWAL_EPOCH on)."""
    return max((day - RENEWAL_EPOCH).days // LEAF_RENEWAL_DAYS, 0)


def renewal_serial(day: datetime.date | None = None) -> str:
    """What a certificate request's subject serialNumber carries: the round of `day` (default today, UTC)."""
    return f"renewal-{renewal_round(day or datetime.datetime.now(datetime.UTC).date())}"


def renewal_round_start(number: int) -> datetime.date:
    return RENEWAL_EPOCH + datetime.timedelta(days=number * LEAF_RENEWAL_DAYS)


CA_USES = ["cert_signing", "crl_signing", "digital_signature"]

# --------------------------------------------------------------------------
# EC2
# --------------------------------------------------------------------------

USER_DATA_LIMIT = 16 * 1024

# --------------------------------------------------------------------------
# EBS gp3: what a volume may be provisioned with
# --------------------------------------------------------------------------
# AWS's documented bounds (Amazon EBS User Guide, "General Purpose SSD volumes",
# https://docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html), as raised on 2025-09-26
# ("Amazon EBS increases the maximum size and provisioned performance of gp3 volumes",
# https://aws.amazon.com/about-aws/whats-new/2025/09/amazon-ebs-size-provisioned-performance-gp3-volumes/;
# the EC2 API's CreateVolume/ModifyVolume now take Throughput 125-2,000): 1 GiB to 64 TiB (was 16 TiB),
# 3,000 to 80,000 IOPS (was 16,000) at most 500 per GiB, 125 to 2,000 MiB/s (was 1,000) at most
# 0.25 MiB/s per provisioned IOPS. 3,000 IOPS and 125 MiB/s are included at any size.
GP3_SIZE_GIB = (1, 64 * 1024)
GP3_IOPS = (3000, 80000)
GP3_THROUGHPUT_MIBS = (125, 2000)
GP3_MAX_IOPS_PER_GIB = 500
GP3_MAX_MIBS_PER_IOPS = 0.25


def gp3_problem(size_gib: int, iops: int, throughput_mibs: int) -> tuple[str, str] | None:
    """(what to blame: 'size', 'iops' or 'throughput'; what gp3 allows) when AWS would refuse a gp3
    volume of this size with this performance, else None.

    The one statement of the rule: the settings refuse such a stack with it, and the EBS CSI
    component refuses to render such a class.
    """
    low, high = GP3_SIZE_GIB
    if not low <= size_gib <= high:
        return "size", f"gp3 volumes are {low} GiB to {high} GiB (64 TiB)"
    low, high = GP3_IOPS
    if not low <= iops <= high:
        return "iops", f"gp3 takes {low} to {high} IOPS"
    top = max(low, GP3_MAX_IOPS_PER_GIB * size_gib)
    if iops > top:
        return "iops", (f"gp3 allows at most {GP3_MAX_IOPS_PER_GIB} IOPS per GiB (3000 at any size): "
                        f"a {size_gib} GiB volume takes at most {min(top, high)}")
    low, high = GP3_THROUGHPUT_MIBS
    if not low <= throughput_mibs <= high:
        return "throughput", f"gp3 takes {low} to {high} MiB/s"
    top_mibs = int(iops * GP3_MAX_MIBS_PER_IOPS)
    if throughput_mibs > top_mibs:
        needed = math.ceil(throughput_mibs / GP3_MAX_MIBS_PER_IOPS)
        return "throughput", (f"gp3 allows at most {GP3_MAX_MIBS_PER_IOPS} MiB/s per provisioned IOPS: "
                              f"{iops} IOPS allow at most {top_mibs} MiB/s ({throughput_mibs} needs {needed} IOPS)")
    return None
# "Inbound or outbound rules per security group": 60 by default, counted separately for inbound
# and outbound (Amazon VPC quotas, docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html).
SECURITY_GROUP_RULE_QUOTA = 60
