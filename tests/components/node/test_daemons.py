"""The Kubernetes daemons' environment files, drop-ins and kubeconfigs."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import yaml

from components.node.cloud_init import node_files
from components.node.control_plane import render_apiserver
from components.node.kubernetes import render_admin_kubeconfig, render_kube_config, render_node_kubeconfig
from components.node.pki import apiserver_names
from components.node.worker import API_PROXY_CONFIG, render_api_proxy, render_kubelet, render_kubelet_config
from tests.components.node.boot import command_lines
from tests.components.node.shapes import layout_of
from tools.testing.node_root import env_values

# Flags removed from Kubernetes since the seed's 0.7 (or spelled with
# underscores then): none may reach a binary of 1.31-1.33.
REMOVED = re.compile(r"--(etcd_servers|portal_net|address=|port=|machines|kubelet_port|hostname_override|"
                     r"allow_privileged|logtostderr|insecure-|api-servers|admission-control=|cadvisor-port)")


# Flags of the pinned versions (kube-apiserver/-controller-manager/-scheduler/
# kube-proxy/kubelet 1.31-1.33 reference pages) that the renderers may use.
KNOWN_FLAGS = {
    "kube-apiserver": {
        "v", "bind-address", "advertise-address", "secure-port", "etcd-servers", "etcd-cafile", "etcd-certfile",
        "etcd-keyfile", "kubelet-client-certificate", "kubelet-client-key", "kubelet-certificate-authority",
        "service-cluster-ip-range", "enable-admission-plugins", "allow-privileged", "tls-cert-file",
        "tls-private-key-file", "client-ca-file", "authorization-mode", "anonymous-auth", "service-account-issuer",
        "service-account-key-file", "service-account-signing-key-file", "kubelet-preferred-address-types",
        "enable-aggregator-routing", "tls-min-version", "profiling", "requestheader-client-ca-file",
        "requestheader-allowed-names", "requestheader-username-headers", "requestheader-group-headers",
        "requestheader-extra-headers-prefix", "proxy-client-cert-file", "proxy-client-key-file",
        "tls-cipher-suites", "encryption-provider-config", "audit-policy-file", "audit-log-path",
        "audit-log-maxsize", "audit-log-maxbackup", "audit-log-maxage",
    },
    "kube-controller-manager": {
        "v", "master", "kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig", "bind-address",
        "leader-elect", "use-service-account-credentials", "service-account-private-key-file", "root-ca-file",
        "service-cluster-ip-range", "cluster-cidr", "profiling", "tls-min-version", "tls-cipher-suites",
    },
    "kube-scheduler": {"v", "master", "kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig",
                       "bind-address", "leader-elect", "profiling", "tls-min-version", "tls-cipher-suites"},
    "kubelet": {"v", "hostname-override", "config", "kubeconfig", "node-ip", "provider-id", "node-labels"},
    "kube-proxy": {"v", "master", "kubeconfig", "hostname-override", "cluster-cidr", "proxy-mode",
                   "metrics-bind-address"},
}


@pytest.mark.parametrize("masters", [1, 3])
def test_every_service_gets_only_flags_of_the_pinned_versions(masters: int, tmp_path: Path) -> None:
    layout = layout_of(master_count=masters)
    seen = set()
    for node in layout.nodes:
        for unit, argv in command_lines(layout, node, tmp_path).items():
            seen.add(unit)
            assert argv[0] == f"/usr/bin/{unit}"
            for flag in argv[1:]:
                assert not REMOVED.match(flag), f"{unit} on {node.name}: {flag} was removed from Kubernetes"
                name = re.fullmatch(r"--([a-z0-9-]+)(=.*)?", flag)
                assert name, f"{unit}: {flag!r} is not a --flag"
                assert name.group(1) in KNOWN_FLAGS[unit], f"{unit}: unexpected flag {flag}"
    assert seen == set(KNOWN_FLAGS)


def test_apiserver_translates_the_seed_settings() -> None:
    layout = layout_of(master_count=3)
    env = env_values(render_apiserver(layout, layout.masters[0]))
    assert env["KUBE_SERVICE_ADDRESSES"] == "--service-cluster-ip-range=10.254.0.0/16"
    assert env["KUBE_API_PORT"] == "--secure-port=6443"
    assert "--etcd-servers=https://10.0.1.10:2379,https://10.0.1.11:2379,https://10.0.1.12:2379" in \
        env["KUBE_ETCD_SERVERS"]
    assert "--advertise-address=10.0.1.10" in env["KUBE_API_ADDRESS"]
    args = env["KUBE_API_ARGS"]
    assert "--authorization-mode=Node,RBAC" in args and "--anonymous-auth=false" in args
    assert env["KUBE_ADMISSION_CONTROL"] == "--enable-admission-plugins=NodeRestriction"


def test_masters_use_their_own_apiserver_and_minions_their_local_proxy_to_all_masters() -> None:
    layout = layout_of(master_count=3)
    for node in (layout.masters[2], layout.minions[0]):
        assert env_values(render_kube_config(layout, node))["KUBE_MASTER"] == "--master=https://127.0.0.1:6443"
    proxy = render_api_proxy(layout)
    assert "bind 127.0.0.1:6443" in proxy
    servers = re.findall(r"^    server (\S+) (\S+) check$", proxy, re.MULTILINE)
    assert servers == [(m.name, f"{m.private_ip}:6443") for m in layout.masters]
    assert node_files(layout, layout.minions[0])[API_PROXY_CONFIG][0] == proxy
    assert API_PROXY_CONFIG not in node_files(layout, layout.masters[0])
    # Every apiserver certificate is valid for the address the minions dial.
    for master in layout.masters:
        assert "127.0.0.1" in apiserver_names(layout, master)[1]
    kubelet = env_values(render_kubelet(layout, layout.minions[1]))
    assert kubelet["KUBELET_HOSTNAME"] == "--hostname-override=atomic-minion-2"


def test_kubelet_configuration_is_authenticated_and_uses_cri_o() -> None:
    layout = layout_of()
    config = yaml.safe_load(render_kubelet_config(layout, layout.minions[0]))
    assert config["kind"] == "KubeletConfiguration"
    assert config["address"] == "10.0.1.13" and config["port"] == 10250 and config["readOnlyPort"] == 0
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authorization"]["mode"] == "Webhook"
    assert config["containerRuntimeEndpoint"] == "unix:///var/run/crio/crio.sock"
    assert config["clusterDNS"] == ["10.254.0.10"]


def test_node_kubeconfigs_reference_fetched_files_only() -> None:
    layout = layout_of()
    config = yaml.safe_load(render_node_kubeconfig(layout, "system:node:x", "kubelet"))
    assert config["clusters"][0]["cluster"] == {"server": "https://127.0.0.1:6443",
                                               "certificate-authority": "/etc/kubernetes/pki/ca.crt"}
    assert config["users"][0]["user"] == {"client-certificate": "/etc/kubernetes/pki/kubelet.crt",
                                         "client-key": "/etc/kubernetes/pki/kubelet.key"}


def test_admin_kubeconfig_embeds_material_and_checks_the_kubernetes_name() -> None:
    text = render_admin_kubeconfig("atomic", "203.0.113.7", "CA", "CERT", "KEY")
    config = yaml.safe_load(text)
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://203.0.113.7:6443"
    assert cluster["tls-server-name"] == "kubernetes"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA"
    assert base64.b64decode(config["users"][0]["user"]["client-key-data"]) == b"KEY"
    assert config["current-context"] == "admin@atomic"
