"""The node layout: names, fixed addresses, pod subnets, reserved blocks."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from components.facts import MASTER_SLOTS
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


@pytest.mark.parametrize("shape", [dict(subnet_cidr="10.0.1.0/24"), dict(subnet_cidr="10.40.0.0/22", master_count=3)])
def test_reserved_blocks_cover_every_node_slot_and_nothing_else(shape: dict[str, Any]) -> None:
    layout = layout_of(**shape)
    reserved = {ip for block in node_address_blocks(layout) for ip in ipaddress.IPv4Network(block)}
    base = ipaddress.IPv4Network(layout.subnet_cidr).network_address + 10
    master_slots = {base + i for i in range(MASTER_SLOTS)}  # three, even with one master (room to grow)
    slots = master_slots | {ipaddress.IPv4Address(n.private_ip) for n in slot_nodes(layout)}
    assert reserved == slots
    assert len(slots) == MASTER_SLOTS + layout.minion_slots


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


def test_private_addresses_are_inside_the_subnet_and_avoid_aws_reserved_ones() -> None:
    layout = layout_of(subnet_cidr="10.0.1.0/27", minion_count=18)
    subnet = ipaddress.IPv4Network(layout.subnet_cidr)
    reserved = {subnet.network_address + i for i in range(4)} | {subnet.broadcast_address}
    for node in slot_nodes(layout):
        address = ipaddress.IPv4Address(node.private_ip)
        assert address in subnet and address not in reserved
