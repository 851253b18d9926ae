"""The PKI plan: which certificate each node holds and where."""

from __future__ import annotations

import re

from components.node.cloud_init import node_files
from components.node.pki import ENCRYPTION_CONFIG, SA_KEY, SA_PUB, node_pki
from tests.components.node.shapes import layout_of


def test_pki_plan_per_role() -> None:
    layout = layout_of(master_count=3)
    master = node_pki(layout, layout.masters[0])
    names = {c.identity: c for c in master.certs}
    assert set(names) == {"apiserver", "apiserver-kubelet-client", "controller-manager", "scheduler",
                          "apiserver-etcd-client", "etcd-server", "etcd-peer", "front-proxy-client"}
    proxy = names["front-proxy-client"]
    assert proxy.authority == "front-proxy" and proxy.client and not proxy.server
    assert master.ca_paths["/etc/kubernetes/pki/front-proxy-ca.crt"] == "front-proxy"
    api = names["apiserver"]
    assert {"kubernetes", "kubernetes.default.svc.cluster.local", "atomic-master-1"} <= set(api.dns_names)
    assert {"10.0.1.10", "10.254.0.1", "127.0.0.1"} <= set(api.ip_addresses)
    assert names["etcd-peer"].authority == names["apiserver-etcd-client"].authority == "etcd"
    assert names["apiserver"].authority == "kubernetes"
    assert master.service_account_key
    minion = node_pki(layout, layout.minions[0])
    kubelet = next(c for c in minion.certs if c.identity == "kubelet")
    assert kubelet.common_name == "system:node:atomic-minion-1" and kubelet.organization == "system:nodes"
    assert kubelet.server and kubelet.client and kubelet.ip_addresses == ("10.0.1.13",)
    assert not minion.service_account_key
    assert set(minion.ca_paths.values()) == {"kubernetes"}, "minions must not trust or hold the etcd CA"
    # Every file the configs reference lives in a directory the fetch script accepts.
    for plan in (master, minion):
        for path in [*plan.ca_paths, *(c.cert_path for c in plan.certs), *(c.key_path for c in plan.certs)]:
            assert path.startswith(("/etc/kubernetes/pki/", "/etc/etcd/pki/"))


def test_every_pki_path_a_config_mentions_is_delivered() -> None:
    layout = layout_of(master_count=3)
    for node in layout.nodes:
        plan = node_pki(layout, node)
        delivered = {*plan.ca_paths, *(c.cert_path for c in plan.certs), *(c.key_path for c in plan.certs)}
        if plan.service_account_key:
            delivered |= {SA_KEY, SA_PUB}
        if plan.encryption_config:
            delivered.add(ENCRYPTION_CONFIG)
        assert plan.encryption_config == (node.role == "master")
        text = "".join(content for content, _ in node_files(layout, node).values()
                       if "FETCH" not in content and not content.startswith("#!"))
        mentioned = set(re.findall(r"/etc/(?:kubernetes|etcd)/pki/[a-z0-9.-]+", text))
        assert mentioned <= delivered, f"{node.name} references undelivered {mentioned - delivered}"
