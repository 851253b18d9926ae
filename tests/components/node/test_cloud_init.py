"""Each node's cloud-config: packages, files, start order."""

from __future__ import annotations

import yaml

from components.node.cloud_init import (
    FETCH_SCRIPT,
    IDENTITY_SCRIPT,
    cloud_config,
    node_files,
    packages,
    render_user_data,
    services,
)
from components.node.units import render_dropin
from components.node.worker import KUBELET_IDENTITY
from tests.components.node.shapes import layout_of


def test_minions_write_their_identity_before_the_kubelet_starts_and_masters_do_not() -> None:
    layout = layout_of()
    minion = cloud_config(layout, layout.minions[0])["runcmd"]
    assert isinstance(minion, list)
    identity = minion.index([IDENTITY_SCRIPT, KUBELET_IDENTITY])
    start = next(i for i, cmd in enumerate(minion) if "kubelet" in cmd and "enable" in cmd)
    assert identity < start
    master = cloud_config(layout, layout.masters[0])["runcmd"]
    assert isinstance(master, list) and [IDENTITY_SCRIPT, KUBELET_IDENTITY] not in master
    assert IDENTITY_SCRIPT not in node_files(layout, layout.masters[0])
    # Without the file the kubelet unit does not start (no "-" before the path): a node without a
    # provider id would register and then never get a volume attached.
    assert f"EnvironmentFile={KUBELET_IDENTITY}\n" in render_dropin("kubelet")


def test_services_and_packages_per_role_follow_the_seed() -> None:
    layout = layout_of(kubernetes_version="1.33", enable_cockpit=True)
    master, minion = layout.masters[0], layout.minions[0]
    assert services(layout, master)[1:5] == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    assert services(layout, minion)[1:5] == ["haproxy", "crio", "kubelet", "kube-proxy"]
    assert "cockpit.socket" in services(layout, minion)
    assert {"etcd", "kubernetes1.33-systemd", "kubernetes1.33-client"} <= set(packages(layout, master))
    assert {"kubernetes1.33", "cri-o1.33", "containernetworking-plugins"} <= set(packages(layout, minion))
    assert "kubernetes1.33" not in packages(layout, master), "masters run no kubelet, as in the seed"
    assert "haproxy" in packages(layout, minion) and "haproxy" not in packages(layout, master)
    runcmd = cloud_config(layout, minion)["runcmd"]
    assert isinstance(runcmd, list)
    setsebool = runcmd.index(["setsebool", "-P", "haproxy_connect_any", "1"])
    assert setsebool < next(i for i, cmd in enumerate(runcmd) if cmd[:2] == ["systemctl", "enable"])


def test_cockpit_package_and_socket_only_when_enabled() -> None:
    """cockpit.socket listens on 9090 (the port the security groups open), on masters and minions."""
    on, off = layout_of(enable_cockpit=True), layout_of()
    for node in on.nodes:
        assert "cockpit" in packages(on, node) and services(on, node)[-1] == "cockpit.socket"
    for node in off.nodes:
        assert "cockpit" not in render_user_data(off, node)


def test_user_data_holds_no_private_key_and_names_the_node() -> None:
    layout = layout_of(master_count=3)
    for node in layout.nodes:
        text = render_user_data(layout, node)
        assert text.startswith("#cloud-config\n")
        assert "PRIVATE KEY" not in text and "BEGIN" not in text
        config = yaml.safe_load(text)
        assert config["hostname"] == node.name
        commands = config["runcmd"]
        enable = next(i for i, cmd in enumerate(commands) if cmd[:2] == ["systemctl", "enable"])
        assert commands.index([FETCH_SCRIPT]) < enable, "keys are fetched before any service starts"
