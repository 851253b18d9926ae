"""The PKI plan: which certificate each node holds, who issues it, and where it is installed.

Pure: the plan is data. components/aws/pki.py issues it with pulumi-tls and delivers each file
through SSM; private keys never appear in rendered files or user-data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from components.facts import CLUSTER_DOMAIN
from components.node.layout import ClusterLayout, NodeSpec

Authority = Literal["kubernetes", "etcd", "front-proxy"]

K8S_PKI = "/etc/kubernetes/pki"
ETCD_PKI = "/etc/etcd/pki"
FRONT_PROXY_CLIENT = "front-proxy-client"
SA_KEY = f"{K8S_PKI}/sa.key"
SA_PUB = f"{K8S_PKI}/sa.pub"
# The apiserver's EncryptionConfiguration holds the key Secrets are encrypted with in etcd: key
# material, so it travels with the PKI (atomic-fetch-pki writes it 0640 root:kube).
ENCRYPTION_CONFIG = f"{K8S_PKI}/encryption-config.yaml"


@dataclass(frozen=True)
class CertSpec:
    """One key pair + certificate issued by `authority`, installed at cert_path/key_path on `node`."""

    node: str
    identity: str  # unique per node, e.g. "apiserver"
    authority: Authority
    common_name: str
    organization: str | None  # the tls provider's subject has one O
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    server: bool
    client: bool
    cert_path: str
    key_path: str


@dataclass(frozen=True)
class NodePki:
    """What a node fetches: its certificates, and which CA certificates and shared keys go where."""

    certs: tuple[CertSpec, ...]
    ca_paths: dict[str, Authority]  # path -> which CA certificate
    service_account_key: bool  # masters hold the shared service-account signing key
    encryption_config: bool = False  # masters hold the key Secrets are encrypted with in etcd


def _cert(node: NodeSpec, identity: str, authority: Authority, cn: str, *, org: str | None = None,
          dns: tuple[str, ...] = (), ips: tuple[str, ...] = (), server: bool = False, client: bool = False,
          directory: str = K8S_PKI, file: str | None = None) -> CertSpec:
    base = f"{directory}/{file or identity}"
    return CertSpec(node.name, identity, authority, cn, org, dns, ips, server, client, f"{base}.crt", f"{base}.key")


def apiserver_names(layout: ClusterLayout, node: NodeSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """DNS and IP SANs of a master's serving certificate."""
    dns = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
           node.name, "localhost")
    return dns, (node.private_ip, layout.api_service_ip, "127.0.0.1")


def node_pki(layout: ClusterLayout, node: NodeSpec) -> NodePki:
    if node.role == "minion":
        return NodePki(
            certs=(
                # One certificate serves the kubelet API and authenticates the node (Node authorizer).
                _cert(node, "kubelet", "kubernetes", f"system:node:{node.name}", org="system:nodes",
                      dns=(node.name,), ips=(node.private_ip,), server=True, client=True),
                _cert(node, "kube-proxy", "kubernetes", "system:kube-proxy", client=True),
            ),
            ca_paths={f"{K8S_PKI}/ca.crt": "kubernetes"},
            service_account_key=False,
        )
    dns, ips = apiserver_names(layout, node)
    member_dns, member_ips = (node.name, "localhost"), (node.private_ip, "127.0.0.1")
    return NodePki(
        certs=(
            _cert(node, "apiserver", "kubernetes", "kube-apiserver", dns=dns, ips=ips, server=True),
            _cert(node, "apiserver-kubelet-client", "kubernetes", "kube-apiserver-kubelet-client",
                  org="system:masters", client=True),
            _cert(node, "controller-manager", "kubernetes", "system:kube-controller-manager", client=True),
            _cert(node, "scheduler", "kubernetes", "system:kube-scheduler", client=True),
            # The aggregation layer: the apiserver proves itself to aggregated APIs (metrics-server) with
            # this certificate, from its own CA so that no ordinary client certificate can pose as it.
            _cert(node, "front-proxy-client", "front-proxy", FRONT_PROXY_CLIENT, client=True),
            _cert(node, "apiserver-etcd-client", "etcd", "kube-apiserver-etcd-client", client=True),
            _cert(node, "etcd-server", "etcd", node.name, dns=member_dns, ips=member_ips, server=True, client=True,
                  directory=ETCD_PKI, file="server"),
            _cert(node, "etcd-peer", "etcd", node.name, dns=member_dns, ips=member_ips, server=True, client=True,
                  directory=ETCD_PKI, file="peer"),
        ),
        ca_paths={f"{K8S_PKI}/ca.crt": "kubernetes", f"{K8S_PKI}/etcd-ca.crt": "etcd", f"{ETCD_PKI}/ca.crt": "etcd",
                  f"{K8S_PKI}/front-proxy-ca.crt": "front-proxy"},
        service_account_key=True,
        encryption_config=True,
    )


def admin_cert() -> CertSpec:
    """The cluster-admin client certificate of the stack's kubeconfig output (installed on no node)."""
    return CertSpec("admin", "admin", "kubernetes", "admin", "system:masters", (), (), False, True, "", "")


def leaf_uses(spec: CertSpec) -> list[str]:
    """The key usages of a leaf certificate (pulumi-tls allowed_uses names)."""
    uses = ["digital_signature", "key_encipherment"]
    if spec.server:
        uses.append("server_auth")
    if spec.client:
        uses.append("client_auth")
    return uses
