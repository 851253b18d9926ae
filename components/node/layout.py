"""The node layout: every node's name, zone, fixed private address and pod subnet, from settings alone.

Computed before any resource exists, so masters and minions can be created in parallel and no
resource waits on another's address. The slot rules are components/facts.py's: masters always
own the first three slots (even with one master) so that growing 1 -> 3 masters never moves a
minion's address; a slot's zone and its row in that zone's subnet follow from the slot and the
number of zones (facts.slot_place): masters one per zone, minions round-robin. Every node's
/etc/hosts and overlay cover all minion slots the subnets and pod range allow (not just today's
minions), so that a node's user-data does not depend on minionCount: scaling adds or removes
instances and touches no other node.
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
    slot_place,
    zone_blocks,
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
    slot: int  # position across the cluster: selects the node's zone, its row there and its pod subnet
    private_ip: str
    pod_subnet: str
    zone: int = 0  # index into the cluster's zones (and node_subnets)

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
    node_subnets: tuple[str, ...]  # one per zone, in zone order: where the nodes take their addresses
    service_cidr: str
    pod_cidr: str
    masters: tuple[NodeSpec, ...]
    minions: tuple[NodeSpec, ...]
    minion_slots: int  # minions the overlay and /etc/hosts are prepared for (>= len(minions))
    enable_cockpit: bool
    enable_cadvisor: bool
    etcd_backup_minutes: int = 0  # minutes between etcd snapshots; 0: no backups

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return self.masters + self.minions

    @property
    def zone_count(self) -> int:
        return len(self.node_subnets)

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


def _node_at(cluster: str, subnets: list[ipaddress.IPv4Network], pods: ipaddress.IPv4Network, role: Role,
             position: int) -> NodeSpec:
    """The position-th (0-based) master or minion: its slot fixes its zone, address and pod subnet."""
    slot = position if role == "master" else MASTER_SLOTS + position
    zone, row = slot_place(slot, len(subnets))
    pod_base = int(pods.network_address) + (slot << (32 - POD_SUBNET_PREFIX))
    return NodeSpec(
        name=f"{cluster}-{role}-{position + 1}",
        role=role,
        index=position + 1,
        slot=slot,
        private_ip=str(subnets[zone].network_address + FIRST_NODE_OFFSET + row),
        pod_subnet=str(ipaddress.IPv4Network((pod_base, POD_SUBNET_PREFIX))),
        zone=zone,
    )


def compute_layout(settings: ClusterSettings, stack: str) -> ClusterLayout:
    """Node names, zones, fixed addresses and pod subnets for a stack; raises LayoutError if they do not fit."""
    first = ipaddress.IPv4Network(settings.node_subnet_cidr)
    subnets = zone_blocks(first, settings.zone_count)
    pods = ipaddress.IPv4Network(settings.pod_cidr)
    problem = node_slot_problem(first, pods, settings.minion_count, len(subnets),
                                "privateSubnetCidr" if settings.private_nodes else "subnetCidr")
    if problem is not None:
        key, allowed = problem
        raise LayoutError(f"{key}: {allowed}")
    return ClusterLayout(
        name=settings.name,
        stack=stack,
        region=settings.region,
        kubernetes_version=settings.kubernetes_version,
        fedora_release=settings.fedora_release,
        node_subnets=tuple(str(s) for s in subnets),
        service_cidr=settings.service_cidr,
        pod_cidr=str(pods),
        masters=tuple(_node_at(settings.name, subnets, pods, "master", i) for i in range(settings.master_count)),
        minions=tuple(_node_at(settings.name, subnets, pods, "minion", i) for i in range(settings.minion_count)),
        minion_slots=minion_capacity(first, pods, len(subnets)),
        enable_cockpit=settings.enable_cockpit,
        enable_cadvisor=settings.enable_cadvisor,
        etcd_backup_minutes=settings.etcd_backup.interval_minutes if settings.etcd_backup else 0,
    )


def _subnets(layout: ClusterLayout) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(s) for s in layout.node_subnets]


def slot_nodes(layout: ClusterLayout) -> tuple[NodeSpec, ...]:
    """The masters, then a NodeSpec for every minion slot (existing minions first)."""
    subnets, pods = _subnets(layout), ipaddress.IPv4Network(layout.pod_cidr)
    extra = tuple(_node_at(layout.name, subnets, pods, "minion", i)
                  for i in range(len(layout.minions), layout.minion_slots))
    return layout.nodes + extra


def node_address_blocks(layout: ClusterLayout) -> list[list[str]]:
    """Per zone, the CIDR blocks covering every node slot's fixed address in that zone's subnet
    (the three master slots' whether or not they hold a master, then every minion slot's).

    Reserved in the subnets (explicit CIDR reservations) so that AWS never hands one of them to
    another network interface, such as a load balancer's, before the node that owns it exists.
    """
    subnets, pods = _subnets(layout), ipaddress.IPv4Network(layout.pod_cidr)
    masters = [_node_at(layout.name, subnets, pods, "master", i) for i in range(MASTER_SLOTS)]
    minions = [n for n in slot_nodes(layout) if n.role == "minion"]
    per_zone: list[list[int]] = [[] for _ in subnets]
    for node in masters + minions:
        per_zone[node.zone].append(int(ipaddress.IPv4Address(node.private_ip)))
    blocks: list[list[str]] = []
    for addresses in per_zone:
        runs: list[tuple[int, int]] = []
        for address in sorted(addresses):
            if runs and runs[-1][1] == address - 1:
                runs[-1] = (runs[-1][0], address)
            else:
                runs.append((address, address))
        blocks.append([str(block) for low, high in runs for block in ipaddress.summarize_address_range(
            ipaddress.IPv4Address(low), ipaddress.IPv4Address(high))])
    return blocks


def render_hosts(layout: ClusterLayout) -> str:
    """The block appended to every node's /etc/hosts (what atomic-node writes at boot)."""
    return "".join(f"{n.private_ip} {n.name} # atomic-cluster\n" for n in slot_nodes(layout))
