"""The pod network: each node's CNI chain, and the static VXLAN overlay that atomic-node builds
from /etc/atomic/cluster.env (the few numbers every node's name, address and pod subnet follow from:
one subnet base per zone, and the slot rules of components/facts.py).

The node script is the same for every node and every cluster size: the layout is arithmetic on
cluster.env, which keeps user-data far below 16 KB even with hundreds of minions in several
zones. Its tests run it and compare its output with layout.render_hosts() and overlay_routes().
"""

from __future__ import annotations

import ipaddress
import json

from components.facts import FIRST_NODE_OFFSET, MASTER_SLOTS, OVERLAY_PORT, POD_SUBNET_PREFIX
from components.node.formats import env_file
from components.node.layout import ClusterLayout, NodeSpec, slot_nodes

OVERLAY_VNI = 1
OVERLAY_DEVICE = "atomic.1"
# Leaves room for the 50-byte VXLAN header on a 1500-byte path (EC2 allows 9001
# inside a VPC, but not every path does; correctness first).
POD_MTU = 1450
CLUSTER_ENV = "/etc/atomic/cluster.env"
NODE_SCRIPT = "/usr/local/sbin/atomic-node"
CNI_CONFLIST = "/etc/cni/net.d/05-atomic.conflist"
CRIO_DROPIN = "/etc/crio/crio.conf.d/20-atomic.conf"


def render_cni_conflist(layout: ClusterLayout, node: NodeSpec) -> str:
    """bridge + host-local on the node's fixed pod subnet, then portmap (hostPort) and bandwidth
    (kubernetes.io/ingress-bandwidth / egress-bandwidth), as the seed's CNI section chains them."""
    conflist = {
        "cniVersion": "1.0.0",
        "name": "atomic-pod-network",
        "plugins": [
            {
                "type": "bridge", "bridge": "cni0", "isGateway": True, "hairpinMode": True, "mtu": POD_MTU,
                # Masquerading off-cluster traffic is atomic-node's job: pod-to-pod keeps pod addresses.
                "ipMasq": False,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": node.pod_subnet}]],
                         "routes": [{"dst": "0.0.0.0/0"}]},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "externalSetMarkChain": "KUBE-MARK-MASQ"},
            {"type": "bandwidth", "capabilities": {"bandwidth": True}},
        ],
    }
    return json.dumps(conflist, indent=2) + "\n"


def render_cluster_env(layout: ClusterLayout, node: NodeSpec) -> str:
    """The few numbers atomic-node derives every node's name, address and pod subnet from."""
    return env_file(f"cluster layout as seen from {node.name}", [
        ("", "ATOMIC_CLUSTER", layout.name),
        ("one per zone", "ATOMIC_SUBNET_BASES",
         " ".join(str(ipaddress.IPv4Network(s).network_address) for s in layout.node_subnets)),
        ("", "ATOMIC_FIRST_OFFSET", str(FIRST_NODE_OFFSET)),
        ("", "ATOMIC_MASTER_SLOTS", str(MASTER_SLOTS)),
        ("", "ATOMIC_MASTERS", str(len(layout.masters))),
        ("", "ATOMIC_MINIONS", str(layout.minion_slots)),
        ("", "ATOMIC_POD_CIDR", layout.pod_cidr),
        ("", "ATOMIC_POD_PREFIX", str(POD_SUBNET_PREFIX)),
        ("", "ATOMIC_SELF_IP", node.private_ip),
        ("", "ATOMIC_REGION", layout.region),
        ("", "ATOMIC_SSM_PATH", layout.ssm_path(node)),
        ("", "ATOMIC_OVERLAY_DEVICE", OVERLAY_DEVICE),
        ("", "ATOMIC_OVERLAY_VNI", str(OVERLAY_VNI)),
        ("", "ATOMIC_OVERLAY_PORT", str(OVERLAY_PORT)),
        ("", "ATOMIC_POD_MTU", str(POD_MTU)),
    ])


def overlay_routes(layout: ClusterLayout, node: NodeSpec) -> list[tuple[str, str, str]]:
    """(pod subnet, VTEP MAC, underlay address) of every other node: what `atomic-node overlay` programs."""
    return [(n.pod_subnet, n.vtep_mac, n.private_ip) for n in slot_nodes(layout) if n.name != node.name]
