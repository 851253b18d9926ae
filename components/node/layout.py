"""The node layout: every node's name, fixed private address and pod subnet, from settings alone.

Computed before any resource exists, so masters and minions can be created in parallel and no
resource waits on another's address. The slot rules are components/facts.py's: masters always
own the first three slots (even with one master) so that growing 1 -> 3 masters never moves a
minion's address. Every node's /etc/hosts and overlay cover all minion slots the subnet and pod
range allow (not just today's minions), so that a node's user-data does not depend on
minionCount: scaling adds or removes instances and touches no other node.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from components.facts import (
    FIRST_NODE_OFFSET,
    MASTER_SLOTS,
    POD_SUBNET_PREFIX,
    PROJECT,
    minion_capacity,
    node_slot_problem,
)
from components.settings.schema import ClusterSettings

Role = Literal["master", "minion"]


class LayoutError(ValueError):
    """A cluster shape that the node layout cannot hold (settings refuse it first)."""


@dataclass(frozen=True)
class NodeSpec:
    """One node, fully known before any instance exists."""

    name: str
    role: Role
    index: int  # 1-based within its role
    slot: int  # position from FIRST_NODE_OFFSET; also selects the node's pod subnet
    private_ip: str
    pod_subnet: str

    @property
    def vtep_ip(self) -> str:
        """The node's overlay address: the network address of its pod subnet (as flannel does)."""
        return str(ipaddress.IPv4Network(self.pod_subnet).network_address)

    @property
    def vtep_mac(self) -> str:
        """A locally administered MAC derived from the private IP: unique in the subnet, no coordination."""
        return "02:00:" + ":".join(f"{octet:02x}" for octet in ipaddress.IPv4Address(self.private_ip).packed)


@dataclass(frozen=True)
class ClusterLayout:
    """Everything the renderers need; derived only from settings and the stack name."""

    name: str
    stack: str
    region: str
    kubernetes_version: str
    fedora_release: int
    subnet_cidr: str
    service_cidr: str
    pod_cidr: str
    masters: tuple[NodeSpec, ...]
    minions: tuple[NodeSpec, ...]
    minion_slots: int  # minions the overlay and /etc/hosts are prepared for (>= len(minions))
    enable_cockpit: bool
    enable_cadvisor: bool

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return self.masters + self.minions

    @property
    def api_service_ip(self) -> str:
        """The `kubernetes` Service's cluster IP: the service range's first host."""
        return str(ipaddress.IPv4Network(self.service_cidr).network_address + 1)

    @property
    def dns_service_ip(self) -> str:
        return str(ipaddress.IPv4Network(self.service_cidr).network_address + 10)

    @property
    def etcd_token(self) -> str:
        return f"{self.name}-{self.stack}-etcd"

    @property
    def ssm_prefix(self) -> str:
        return f"/{PROJECT}/{self.stack}/{self.name}"

    def ssm_path(self, node: NodeSpec) -> str:
        return f"{self.ssm_prefix}/{node.name}"


def _node_at(cluster: str, subnet: ipaddress.IPv4Network, pods: ipaddress.IPv4Network, role: Role,
             position: int) -> NodeSpec:
    """The position-th (0-based) master or minion: its slot fixes its address and pod subnet."""
    slot = position if role == "master" else MASTER_SLOTS + position
    pod_base = int(pods.network_address) + (slot << (32 - POD_SUBNET_PREFIX))
    return NodeSpec(
        name=f"{cluster}-{role}-{position + 1}",
        role=role,
        index=position + 1,
        slot=slot,
        private_ip=str(subnet.network_address + FIRST_NODE_OFFSET + slot),
        pod_subnet=str(ipaddress.IPv4Network((pod_base, POD_SUBNET_PREFIX))),
    )


def compute_layout(settings: ClusterSettings, stack: str) -> ClusterLayout:
    """Node names, fixed addresses and pod subnets for a stack; raises LayoutError if they do not fit."""
    subnet = ipaddress.IPv4Network(settings.subnet_cidr)
    pods = ipaddress.IPv4Network(settings.pod_cidr)
    problem = node_slot_problem(subnet, pods, settings.minion_count)
    if problem is not None:
        key, allowed = problem
        raise LayoutError(f"{key}: {allowed}")
    return ClusterLayout(
        name=settings.name,
        stack=stack,
        region=settings.region,
        kubernetes_version=settings.kubernetes_version,
        fedora_release=settings.fedora_release,
        subnet_cidr=str(subnet),
        service_cidr=settings.service_cidr,
        pod_cidr=str(pods),
        masters=tuple(_node_at(settings.name, subnet, pods, "master", i) for i in range(settings.master_count)),
        minions=tuple(_node_at(settings.name, subnet, pods, "minion", i) for i in range(settings.minion_count)),
        minion_slots=minion_capacity(subnet, pods),
        enable_cockpit=settings.enable_cockpit,
        enable_cadvisor=settings.enable_cadvisor,
    )


def slot_nodes(layout: ClusterLayout) -> tuple[NodeSpec, ...]:
    """The masters, then a NodeSpec for every minion slot (existing minions first)."""
    subnet, pods = ipaddress.IPv4Network(layout.subnet_cidr), ipaddress.IPv4Network(layout.pod_cidr)
    extra = tuple(_node_at(layout.name, subnet, pods, "minion", i)
                  for i in range(len(layout.minions), layout.minion_slots))
    return layout.nodes + extra


def node_address_blocks(layout: ClusterLayout) -> list[str]:
    """The CIDR blocks covering every node slot's fixed address (masters' three, then every minion slot).

    Reserved in the subnet (explicit CIDR reservations) so that AWS never hands one of them to
    another network interface, such as a load balancer's, before the node that owns it exists.
    """
    subnet = ipaddress.IPv4Network(layout.subnet_cidr)
    first = subnet.network_address + FIRST_NODE_OFFSET
    last = first + MASTER_SLOTS + layout.minion_slots - 1
    return [str(block) for block in ipaddress.summarize_address_range(first, last)]


def render_hosts(layout: ClusterLayout) -> str:
    """The block appended to every node's /etc/hosts (what atomic-node writes at boot)."""
    return "".join(f"{n.private_ip} {n.name} # atomic-cluster\n" for n in slot_nodes(layout))
