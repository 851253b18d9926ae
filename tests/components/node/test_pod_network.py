"""The CNI chain and the static VXLAN overlay (atomic-node run by bash)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from components.node.layout import render_hosts
from components.node.pod_network import overlay_routes, render_cni_conflist
from tests.components.node.boot import _run_node_script
from tests.components.node.shapes import layout_of


def test_cni_conflist_chains_bridge_portmap_and_bandwidth_on_the_node_subnet() -> None:
    layout = layout_of()
    conflist = json.loads(render_cni_conflist(layout, layout.minions[1]))
    assert conflist["cniVersion"] == "1.0.0"
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap", "bandwidth"]
    assert conflist["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.4.0/24"}]]
    assert conflist["plugins"][1]["capabilities"] == {"portMappings": True}
    assert conflist["plugins"][2]["capabilities"] == {"bandwidth": True}


ZONES = {1: (), 2: ("us-east-1a", "us-east-1b"), 3: ("us-east-1a", "us-east-1b", "us-east-1c")}


@pytest.mark.parametrize(("zones", "master_count", "slots"), [
    (1, 3, 64 - 1 - 10 - 3),
    (2, 1, 2 * (64 - 1 - 10 - 2)),
    (3, 3, 3 * (64 - 1 - 10 - 1)),
])
def test_node_script_writes_exactly_the_rendered_hosts_block(tmp_path: Path, zones: int, master_count: int,
                                                             slots: int) -> None:
    layout = layout_of(master_count=master_count, minion_count=2, subnet_cidr="10.0.1.0/26", zones=ZONES[zones])
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.1.99 stale-node # atomic-cluster\n")
    _run_node_script(tmp_path, layout, layout.minions[0], "hosts", str(hosts))
    _run_node_script(tmp_path, layout, layout.minions[0], "hosts", str(hosts))  # idempotent
    assert hosts.read_text() == "127.0.0.1 localhost\n" + render_hosts(layout)
    # Every minion slot of every zone's subnet is there, so later minions resolve on old nodes.
    assert hosts.read_text().count("-minion-") == layout.minion_slots == slots
    assert "10.0.1.10 atomic-master-1 # atomic-cluster" in hosts.read_text()


def test_the_hosts_check_above_can_fail(tmp_path: Path) -> None:
    """The script's arithmetic is compared, not echoed: a layout it was not given disagrees."""
    three = layout_of(master_count=3, minion_count=2, subnet_cidr="10.0.1.0/26", zones=ZONES[3])
    one = layout_of(master_count=3, minion_count=2, subnet_cidr="10.0.1.0/26")
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    _run_node_script(tmp_path, three, three.minions[0], "hosts", str(hosts))
    assert hosts.read_text() != render_hosts(one)


@pytest.mark.parametrize("zones", [1, 2, 3])
def test_node_script_programs_a_route_fdb_and_neighbour_per_other_node(tmp_path: Path, zones: int) -> None:
    layout = layout_of(master_count=3 if zones != 2 else 1, minion_count=2, subnet_cidr="10.0.1.0/27",
                       zones=ZONES[zones])
    node = layout.minions[1]
    out = _run_node_script(tmp_path, layout, node, "overlay", dry_run=True).stdout.splitlines()
    assert f"ip link set atomic.1 address {node.vtep_mac} mtu 1450 up" in out
    assert "ip addr replace 10.244.4.0/32 dev atomic.1" in out
    expected = overlay_routes(layout, node)
    assert len(expected) == len(layout.masters) + layout.minion_slots - 1
    for subnet, mac, underlay in expected:
        gateway = subnet.split("/")[0]
        assert f"bridge fdb replace {mac} dev atomic.1 dst {underlay}" in out
        assert f"ip neigh replace {gateway} lladdr {mac} dev atomic.1 nud permanent" in out
        assert f"ip route replace {subnet} via {gateway} dev atomic.1 onlink" in out
    assert sum(line.startswith("ip route replace") for line in out) == len(expected)
    assert not any(node.pod_subnet in line for line in out if line.startswith("ip route"))


def test_node_script_hands_bridged_pod_traffic_to_the_ip_hooks(tmp_path: Path) -> None:
    """kube-proxy and the NetworkPolicy agent see same-node pod traffic only through br_netfilter;
    the module is loaded before the sysctls that need it exist."""
    out = _run_node_script(tmp_path, layout_of(), layout_of().minions[0], "overlay", dry_run=True).stdout.splitlines()
    modprobe = out.index("modprobe br_netfilter")
    assert out[modprobe + 1] == ("sysctl -qw net.bridge.bridge-nf-call-iptables=1 "
                                 "net.bridge.bridge-nf-call-ip6tables=1")


def test_node_script_refuses_an_address_outside_the_layout(tmp_path: Path) -> None:
    layout = layout_of()
    stranger = replace(layout.minions[0], private_ip="10.0.1.5")  # below the first node slot
    with pytest.raises(subprocess.CalledProcessError) as failure:
        _run_node_script(tmp_path, layout, stranger, "overlay", dry_run=True)
    assert "is not a cluster node" in failure.value.stderr
