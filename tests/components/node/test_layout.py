"""The node layout: names, fixed addresses, pod subnets, reserved blocks."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from components.facts import MASTER_SLOTS, slot_place
from components.node.cloud_init import render_user_data
from components.node.layout import LayoutError, node_address_blocks, slot_nodes
from tests.components.node.shapes import layout_of


def test_layout_names_addresses_and_pod_subnets_are_fixed_from_dot_10() -> None:
    layout = layout_of(master_count=3, minion_count=2)
    assert [(n.name, n.private_ip, n.pod_subnet) for n in layout.nodes] == [
        ("atomic-master-1", "10.0.1.10", "10.244.0.0/24"),
        ("atomic-master-2", "10.0.1.11", "10.244.1.0/24"),
        ("atomic-master-3", "10.0.1.12", "10.244.2.0/24"),
        ("atomic-minion-1", "10.0.1.13", "10.244.3.0/24"),
        ("atomic-minion-2", "10.0.1.14", "10.244.4.0/24"),
    ]
    assert layout.api_service_ip == "10.254.0.1"
    assert layout.dns_service_ip == "10.254.0.10"
    assert layout.ssm_path(layout.minions[0]) == "/atomic-mysql/test/atomic/atomic-minion-1"


def test_minions_keep_their_addresses_and_user_data_when_masters_or_minion_count_change() -> None:
    one = layout_of(master_count=1, minion_count=2)
    three = layout_of(master_count=3, minion_count=2)
    more = layout_of(master_count=1, minion_count=5)
    assert [m.private_ip for m in one.minions] == [m.private_ip for m in three.minions]
    # Scaling minions touches no existing node: their user-data is byte-identical.
    for node, grown in zip(one.nodes, more.nodes, strict=False):
        assert render_user_data(one, node) == render_user_data(more, grown)


THREE_ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


@pytest.mark.parametrize("shape", [
    dict(subnet_cidr="10.0.1.0/24"),
    dict(subnet_cidr="10.40.0.0/22", master_count=3),
    dict(subnet_cidr="10.40.0.0/24", master_count=1, zones=THREE_ZONES),  # master slots 2 and 3 empty, elsewhere
    dict(subnet_cidr="10.40.0.0/25", master_count=1, zones=("us-east-1a", "us-east-1b")),  # a hole in zone b
])
def test_reserved_blocks_cover_every_node_slot_and_nothing_else(shape: dict[str, Any]) -> None:
    layout = layout_of(**shape)
    blocks = node_address_blocks(layout)
    assert len(blocks) == layout.zone_count
    master_slots = {_address_of_slot(layout, slot) for slot in range(MASTER_SLOTS)}  # three, even with one master
    slots = master_slots | {(n.zone, ipaddress.IPv4Address(n.private_ip)) for n in slot_nodes(layout)}
    reserved = {(zone, ip) for zone, zone_blocks in enumerate(blocks) for block in zone_blocks
                for ip in ipaddress.IPv4Network(block)}
    assert reserved == slots
    assert len(slots) == MASTER_SLOTS + layout.minion_slots
    for zone, zone_blocks in enumerate(blocks):
        subnet = ipaddress.IPv4Network(layout.node_subnets[zone])
        assert all(ipaddress.IPv4Network(b).subnet_of(subnet) for b in zone_blocks)


def _address_of_slot(layout: Any, slot: int) -> tuple[int, ipaddress.IPv4Address]:
    zone, row = slot_place(slot, layout.zone_count)
    return zone, ipaddress.IPv4Network(layout.node_subnets[zone]).network_address + 10 + row


def test_one_zone_keeps_every_address_it_always_had() -> None:
    """With one zone a node's address is still the subnet's .10 + slot: upgrading moves no node."""
    layout = layout_of(master_count=3, minion_count=40, subnet_cidr="10.40.0.0/22")
    assert layout.node_subnets == ("10.40.0.0/22",)
    for node in slot_nodes(layout):
        assert node.private_ip == str(ipaddress.IPv4Address("10.40.0.10") + node.slot), node.name


def test_three_zones_put_one_master_in_each_and_deal_minions_round_robin() -> None:
    layout = layout_of(master_count=3, minion_count=7, subnet_cidr="10.40.16.0/22", zones=THREE_ZONES)
    assert layout.node_subnets == ("10.40.16.0/22", "10.40.20.0/22", "10.40.24.0/22")
    assert [(n.name, n.zone, n.private_ip) for n in layout.nodes] == [
        ("atomic-master-1", 0, "10.40.16.10"),
        ("atomic-master-2", 1, "10.40.20.10"),
        ("atomic-master-3", 2, "10.40.24.10"),
        ("atomic-minion-1", 0, "10.40.16.11"),
        ("atomic-minion-2", 1, "10.40.20.11"),
        ("atomic-minion-3", 2, "10.40.24.11"),
        ("atomic-minion-4", 0, "10.40.16.12"),
        ("atomic-minion-5", 1, "10.40.20.12"),
        ("atomic-minion-6", 2, "10.40.24.12"),
        ("atomic-minion-7", 0, "10.40.16.13"),
    ]
    # pod subnets follow the slot, whatever the zone
    assert [n.pod_subnet for n in layout.minions[:2]] == ["10.244.3.0/24", "10.244.4.0/24"]
    addresses = [n.private_ip for n in slot_nodes(layout)]
    assert len(addresses) == len(set(addresses)) == len(layout.masters) + layout.minion_slots


def test_minions_keep_their_zone_and_address_when_the_master_count_changes_in_three_zones() -> None:
    one = layout_of(master_count=1, minion_count=6, zones=THREE_ZONES)
    three = layout_of(master_count=3, minion_count=6, zones=THREE_ZONES)
    assert [(m.zone, m.private_ip) for m in one.minions] == [(m.zone, m.private_ip) for m in three.minions]
    for node, grown in zip(one.minions, layout_of(master_count=1, minion_count=9, zones=THREE_ZONES).minions,
                           strict=False):
        assert render_user_data(one, node) == render_user_data(layout_of(master_count=1, minion_count=9,
                                                                         zones=THREE_ZONES), grown)


def test_zone_capacity_counts_the_rows_of_every_zone() -> None:
    # a /27 holds rows .10 to .30 (21); one row of each zone for the masters, the other 20 for minions
    layout = layout_of(subnet_cidr="10.0.1.0/27", minion_count=60, zones=THREE_ZONES)
    assert layout.minion_slots == 60
    with pytest.raises(LayoutError, match=r"minionCount: subnetCidr 10.0.1.0/27 \(3 zones\) .* at most 60 minions"):
        layout_of(subnet_cidr="10.0.1.0/27", minion_count=61, zones=THREE_ZONES)
    last = slot_nodes(layout)[-1]
    assert last.private_ip == "10.0.1.94"  # zone c (10.0.1.64/27), row 20: .30, its last usable address


def test_vtep_mac_is_derived_from_the_private_address() -> None:
    node = layout_of().minions[0]
    assert node.vtep_mac == "02:00:0a:00:01:0d"
    assert node.vtep_ip == "10.244.3.0"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"pod_cidr": "10.244.0.0/25"}, "podCidr: must be /24 or larger"),
    ({"pod_cidr": "10.244.0.0/22", "minion_count": 2}, "minionCount: .* leave room for at most 1 minions"),
    ({"subnet_cidr": "10.0.1.0/27", "minion_count": 19}, "minionCount: .* leave room for at most 18 minions"),
])
def test_layouts_that_do_not_fit_are_clear_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        layout_of(**overrides)


@pytest.mark.parametrize("zones", [(), THREE_ZONES])
def test_private_addresses_are_inside_their_zone_subnet_and_avoid_aws_reserved_ones(zones: tuple[str, ...]) -> None:
    layout = layout_of(subnet_cidr="10.0.1.0/27", minion_count=18, zones=zones)
    for node in slot_nodes(layout):
        subnet = ipaddress.IPv4Network(layout.node_subnets[node.zone])
        reserved = {subnet.network_address + i for i in range(4)} | {subnet.broadcast_address}
        address = ipaddress.IPv4Address(node.private_ip)
        assert address in subnet and address not in reserved


def test_private_nodes_take_their_addresses_from_the_private_subnets() -> None:
    layout = layout_of(master_count=3, zones=THREE_ZONES, private_nodes=True, private_subnet_cidr="10.0.16.0/22",
                       api_load_balancer=True)
    assert layout.node_subnets == ("10.0.16.0/22", "10.0.20.0/22", "10.0.24.0/22")
    assert [m.private_ip for m in layout.masters] == ["10.0.16.10", "10.0.20.10", "10.0.24.10"]
