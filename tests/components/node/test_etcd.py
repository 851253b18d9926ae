"""/etc/etcd/etcd.conf of each master."""

from __future__ import annotations

from components.node.etcd import render_etcd_conf
from tests.components.node.shapes import layout_of
from tools.testing.node_root import env_values


def test_etcd_conf_is_a_static_tls_cluster_of_all_masters() -> None:
    layout = layout_of(master_count=3)
    env = env_values(render_etcd_conf(layout, layout.masters[1]))
    assert env["ETCD_NAME"] == "atomic-master-2"
    assert env["ETCD_INITIAL_CLUSTER"] == ",".join(
        f"atomic-master-{i}=https://10.0.1.1{i - 1}:2380" for i in (1, 2, 3))
    assert env["ETCD_LISTEN_CLIENT_URLS"] == env["ETCD_ADVERTISE_CLIENT_URLS"] == "https://10.0.1.11:2379"
    assert env["ETCD_LISTEN_PEER_URLS"] == env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == "https://10.0.1.11:2380"
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "new"
    assert env["ETCD_INITIAL_CLUSTER_TOKEN"] == "atomic-test-etcd"
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    for key in ("ETCD_CERT_FILE", "ETCD_KEY_FILE", "ETCD_TRUSTED_CA_FILE", "ETCD_PEER_CERT_FILE",
                "ETCD_PEER_KEY_FILE", "ETCD_PEER_TRUSTED_CA_FILE"):
        assert env[key].startswith("/etc/etcd/pki/")
    assert "http://" not in render_etcd_conf(layout, layout.masters[1])


def test_single_master_etcd_has_one_member() -> None:
    layout = layout_of(master_count=1)
    assert env_values(render_etcd_conf(layout, layout.masters[0]))["ETCD_INITIAL_CLUSTER"] == \
        "atomic-master-1=https://10.0.1.10:2380"
