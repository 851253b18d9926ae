"""What every Kubernetes daemon on a node shares: /etc/kubernetes/config and the kubeconfigs."""

from __future__ import annotations

import base64

from components.facts import API_PORT
from components.node.formats import dump_yaml, env_file
from components.node.layout import ClusterLayout, NodeSpec
from components.node.pki import K8S_PKI

# Where every daemon on a node reaches the API: a master talks to its own apiserver, a minion to
# its local HAProxy (worker.render_api_proxy), which spreads over every master and leaves out one
# that stops answering. Every apiserver certificate carries 127.0.0.1.
LOCAL_API_HOST = "127.0.0.1"


def api_url(host: str) -> str:
    return f"https://{host}:{API_PORT}"


def render_kube_config(layout: ClusterLayout, node: NodeSpec) -> str:
    """/etc/kubernetes/config: what every Kubernetes service on the node shares."""
    return env_file(f"Kubernetes services on {node.name} ({node.role})", [
        ("was --logtostderr=true (flag removed in 1.26)", "KUBE_LOGTOSTDERR", ""),
        ("", "KUBE_LOG_LEVEL", "--v=2"),
        ("was --allow_privileged=false (apiserver only now)", "KUBE_ALLOW_PRIV", ""),
        ("was http://fed-master:8080 (insecure port removed)", "KUBE_MASTER", f"--master={api_url(LOCAL_API_HOST)}"),
    ])


def render_node_kubeconfig(layout: ClusterLayout, component: str, identity: str) -> str:
    """A kubeconfig that points at certificate files fetched at boot (no key material inside)."""
    return render_kubeconfig(
        cluster=layout.name, server=api_url(LOCAL_API_HOST), user=component,
        cluster_fields={"certificate-authority": f"{K8S_PKI}/ca.crt"},
        user_fields={"client-certificate": f"{K8S_PKI}/{identity}.crt", "client-key": f"{K8S_PKI}/{identity}.key"},
    )


def render_kubeconfig(*, cluster: str, server: str, user: str, cluster_fields: dict[str, str],
                      user_fields: dict[str, str]) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, **cluster_fields}}],
        "users": [{"name": user, "user": user_fields}],
        "contexts": [{"name": f"{user}@{cluster}", "context": {"cluster": cluster, "user": user}}],
        "current-context": f"{user}@{cluster}",
    }
    return dump_yaml(config)


def render_admin_kubeconfig(cluster: str, endpoint_host: str, ca_pem: str, cert_pem: str, key_pem: str) -> str:
    """The admin kubeconfig (a secret output). The client checks the certificate's `kubernetes` name
    (tls-server-name), whatever the endpoint: the first master's Elastic IP is in no certificate, and
    masters that booted before an API load balancer existed do not name it yet."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return render_kubeconfig(
        cluster=cluster, server=api_url(endpoint_host), user="admin",
        cluster_fields={"certificate-authority-data": b64(ca_pem), "tls-server-name": "kubernetes"},
        user_fields={"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
    )
