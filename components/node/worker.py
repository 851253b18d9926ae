"""A minion's daemons: the kubelet (flags and KubeletConfiguration), kube-proxy, and the local
HAProxy through which both reach every master."""

from __future__ import annotations

from components.facts import API_PORT, CLUSTER_DOMAIN, KUBELET_PORT, TLS_CIPHER_SUITES, TLS_MIN_VERSION
from components.node.formats import dump_yaml, env_file
from components.node.layout import ClusterLayout, NodeSpec
from components.node.pki import K8S_PKI

CRIO_SOCKET = "unix:///var/run/crio/crio.sock"
# Written at boot by atomic-kubelet-identity (the kubelet's --provider-id and zone labels).
KUBELET_IDENTITY = "/etc/kubernetes/kubelet.identity"
# Fedora Cloud runs systemd-resolved: /etc/resolv.conf names the 127.0.0.53 stub, which a pod
# (CoreDNS with dnsPolicy Default above all) cannot reach from its own network namespace.
UPSTREAM_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"
API_PROXY_CONFIG = "/etc/haproxy/haproxy.cfg"


def render_api_proxy(layout: ClusterLayout) -> str:
    """HAProxy on a minion: 127.0.0.1:6443 to every master's apiserver (TCP, TLS end to end).

    Without it the kubelets and kube-proxy of a three-master cluster would all depend on the
    first master. The health check is a TLS handshake, unverified: /readyz needs credentials
    (anonymous auth is off), and a bare TCP connect would make every apiserver log a failed
    handshake for every check of every minion. A master marked down has its sessions closed, so
    long-lived watches move to a healthy one at once.
    """
    servers = "\n".join(f"    server {m.name} {m.private_ip}:{API_PORT} check" for m in layout.masters)
    return f"""# kubelet and kube-proxy on this minion reach the apiservers through here (rendered by atomic-mysql)
global
    log /dev/log local0 notice
    maxconn 2000
    user haproxy
    group haproxy

defaults
    mode tcp
    log global
    option tcplog
    option dontlognull
    option redispatch
    retries 3
    timeout connect 5s
    # watches stay open for long; the apiserver ends them itself
    timeout client 30m
    timeout server 30m

frontend kube-apiserver
    bind 127.0.0.1:{API_PORT}
    default_backend masters

backend masters
    balance leastconn
    default-server inter 2s fall 3 rise 2 check-ssl verify none on-marked-down shutdown-sessions
{servers}
"""


def render_kubelet(layout: ClusterLayout, node: NodeSpec) -> str:
    return env_file(f"kubelet on {node.name}", [
        ("was --address=0.0.0.0: address in kubelet.yaml", "KUBELET_ADDRESS", ""),
        ("was --port=10250: port in kubelet.yaml", "KUBELET_PORT", ""),
        ("was --hostname_override", "KUBELET_HOSTNAME", f"--hostname-override={node.name}"),
        ("", "KUBELET_ARGS",
         f"--config=/etc/kubernetes/kubelet.yaml --kubeconfig=/etc/kubernetes/kubelet.kubeconfig "
         f"--node-ip={node.private_ip}"),
    ])


def render_kubelet_config(layout: ClusterLayout, node: NodeSpec) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.private_ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": f"{K8S_PKI}/ca.crt"}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": f"{K8S_PKI}/kubelet.crt",
        "tlsPrivateKeyFile": f"{K8S_PKI}/kubelet.key",
        "tlsMinVersion": TLS_MIN_VERSION,
        "tlsCipherSuites": list(TLS_CIPHER_SUITES),
        "clusterDNS": [layout.dns_service_ip],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": UPSTREAM_RESOLV_CONF,
        "cgroupDriver": "systemd",
        "containerRuntimeEndpoint": CRIO_SOCKET,
        "rotateCertificates": False,
    }
    return dump_yaml(config)


def render_proxy(layout: ClusterLayout, node: NodeSpec) -> str:
    return env_file(f"kube-proxy on {node.name}", [
        ("", "KUBE_PROXY_ARGS",
         f"--kubeconfig=/etc/kubernetes/kube-proxy.kubeconfig --hostname-override={node.name} "
         f"--cluster-cidr={layout.pod_cidr} --proxy-mode=iptables --metrics-bind-address=127.0.0.1:10249"),
    ])
