"""Pure renderers for the Atomic cluster's node bootstrap (issue: AtomicCluster).

Everything here is a plain function of plain values: the layout (node names,
fixed private addresses, pod subnets) is computed from `ClusterSettings` before
any resource exists, so masters and minions can be created in parallel and no
resource waits on another's address. The rendered files follow the Fedora
packaging layout the seed edits by hand (/etc/etcd/etcd.conf,
/etc/kubernetes/{config,apiserver,...}), with today's flags (see docs/cluster.md).

Target: Fedora Cloud Base 41/42 with Fedora's versioned packages
kubernetes1.NN (kubelet), kubernetes1.NN-systemd (control-plane units),
kubernetes1.NN-client, cri-o1.NN, etcd. Private keys never appear here: each
node fetches its own from SSM Parameter Store at boot (atomic-fetch-pki).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Literal

import yaml

from components.settings import (
    FIRST_NODE_OFFSET,
    MASTER_SLOTS,
    POD_SUBNET_PREFIX,
    PROJECT,
    ClusterSettings,
    minion_capacity,
)

Role = Literal["master", "minion"]
Authority = Literal["kubernetes", "etcd", "front-proxy"]

# The slot constants live in settings.py, which validates against them. Masters
# always own the first three slots (even with one master) so that growing 1 -> 3
# masters never moves a minion's address. Every node's /etc/hosts and overlay
# cover all minion slots the subnet and pod range allow (not just today's
# minions), so that a node's user-data does not depend on minionCount: scaling
# adds or removes instances and touches no other node.
API_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
KUBELET_PORT = 10250
OVERLAY_PORT = 8472  # flannel's VXLAN port, so existing firewall habits still apply
OVERLAY_VNI = 1
OVERLAY_DEVICE = "atomic.1"
# Leaves room for the 50-byte VXLAN header on a 1500-byte path (EC2 allows 9001
# inside a VPC, but not every path does; correctness first).
POD_MTU = 1450
CLUSTER_DOMAIN = "cluster.local"
USER_DATA_LIMIT = 16 * 1024

K8S_PKI = "/etc/kubernetes/pki"
ETCD_PKI = "/etc/etcd/pki"
ETCD_DATA = "/var/lib/etcd"
CLUSTER_ENV = "/etc/atomic/cluster.env"
NODE_SCRIPT = "/usr/local/sbin/atomic-node"
FETCH_SCRIPT = "/usr/local/sbin/atomic-fetch-pki"
CRIO_SOCKET = "unix:///var/run/crio/crio.sock"
KUBELET_IDENTITY = "/etc/kubernetes/kubelet.identity"
# Fedora Cloud runs systemd-resolved: /etc/resolv.conf names the 127.0.0.53 stub, which a pod
# (CoreDNS with dnsPolicy Default above all) cannot reach from its own network namespace.
UPSTREAM_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"


class LayoutError(ValueError):
    """A cluster shape that settings allowed but the node layout cannot hold."""


@dataclass(frozen=True)
class NodeSpec:
    """One node, fully known before any instance exists."""

    name: str
    role: Role
    index: int  # 1-based within its role
    slot: int  # position from FIRST_NODE_OFFSET; also selects the node's pod subnet
    private_ip: str
    pod_subnet: str

    @property
    def vtep_ip(self) -> str:
        """The node's overlay address: the network address of its pod subnet (as flannel does)."""
        return str(ipaddress.IPv4Network(self.pod_subnet).network_address)

    @property
    def vtep_mac(self) -> str:
        """A locally administered MAC derived from the private IP: unique in the subnet, no coordination."""
        return "02:00:" + ":".join(f"{octet:02x}" for octet in ipaddress.IPv4Address(self.private_ip).packed)


@dataclass(frozen=True)
class ClusterLayout:
    """Everything the renderers need; derived only from settings and the stack name."""

    name: str
    stack: str
    region: str
    kubernetes_version: str
    fedora_release: int
    subnet_cidr: str
    service_cidr: str
    pod_cidr: str
    masters: tuple[NodeSpec, ...]
    minions: tuple[NodeSpec, ...]
    minion_slots: int  # minions the overlay and /etc/hosts are prepared for (>= len(minions))
    enable_cockpit: bool
    enable_cadvisor: bool

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return self.masters + self.minions

    @property
    def api_service_ip(self) -> str:
        """The `kubernetes` Service's cluster IP: the service range's first host."""
        return str(ipaddress.IPv4Network(self.service_cidr).network_address + 1)

    @property
    def dns_service_ip(self) -> str:
        return str(ipaddress.IPv4Network(self.service_cidr).network_address + 10)

    @property
    def etcd_token(self) -> str:
        return f"{self.name}-{self.stack}-etcd"

    @property
    def ssm_prefix(self) -> str:
        return f"/{PROJECT}/{self.stack}/{self.name}"

    def ssm_path(self, node: NodeSpec) -> str:
        return f"{self.ssm_prefix}/{node.name}"


def _node_at(cluster: str, subnet: ipaddress.IPv4Network, pods: ipaddress.IPv4Network, role: Role,
             position: int) -> NodeSpec:
    """The position-th (0-based) master or minion: its slot fixes its address and pod subnet."""
    slot = position if role == "master" else MASTER_SLOTS + position
    pod_base = int(pods.network_address) + (slot << (32 - POD_SUBNET_PREFIX))
    return NodeSpec(
        name=f"{cluster}-{role}-{position + 1}",
        role=role,
        index=position + 1,
        slot=slot,
        private_ip=str(subnet.network_address + FIRST_NODE_OFFSET + slot),
        pod_subnet=str(ipaddress.IPv4Network((pod_base, POD_SUBNET_PREFIX))),
    )


def compute_layout(settings: ClusterSettings, stack: str) -> ClusterLayout:
    """Node names, fixed addresses and pod subnets for a stack; raises LayoutError if they do not fit."""
    subnet = ipaddress.IPv4Network(settings.subnet_cidr)
    pods = ipaddress.IPv4Network(settings.pod_cidr)
    if pods.prefixlen > POD_SUBNET_PREFIX:
        raise LayoutError(f"podCidr {pods} is smaller than one /{POD_SUBNET_PREFIX} per node")
    minion_slots = minion_capacity(subnet, pods)
    if settings.minion_count > minion_slots:
        raise LayoutError(f"minionCount {settings.minion_count} does not fit: subnetCidr {subnet} and podCidr {pods} "
                          f"(one /{POD_SUBNET_PREFIX} per node) leave room for {max(minion_slots, 0)} minions "
                          f"after {MASTER_SLOTS} master slots")

    return ClusterLayout(
        name=settings.name,
        stack=stack,
        region=settings.region,
        kubernetes_version=settings.kubernetes_version,
        fedora_release=settings.fedora_release,
        subnet_cidr=str(subnet),
        service_cidr=settings.service_cidr,
        pod_cidr=str(pods),
        masters=tuple(_node_at(settings.name, subnet, pods, "master", i) for i in range(settings.master_count)),
        minions=tuple(_node_at(settings.name, subnet, pods, "minion", i) for i in range(settings.minion_count)),
        minion_slots=minion_slots,
        enable_cockpit=settings.enable_cockpit,
        enable_cadvisor=settings.enable_cadvisor,
    )


# --------------------------------------------------------------------------
# PKI plan: which certificate each node holds, and where
# --------------------------------------------------------------------------


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
    )


FRONT_PROXY_CLIENT = "front-proxy-client"
SA_KEY = f"{K8S_PKI}/sa.key"
SA_PUB = f"{K8S_PKI}/sa.pub"


# --------------------------------------------------------------------------
# /etc/hosts and etcd
# --------------------------------------------------------------------------


def slot_nodes(layout: ClusterLayout) -> tuple[NodeSpec, ...]:
    """The masters, then a NodeSpec for every minion slot (existing minions first)."""
    subnet, pods = ipaddress.IPv4Network(layout.subnet_cidr), ipaddress.IPv4Network(layout.pod_cidr)
    extra = tuple(_node_at(layout.name, subnet, pods, "minion", i)
                  for i in range(len(layout.minions), layout.minion_slots))
    return layout.nodes + extra


def node_address_blocks(layout: ClusterLayout) -> list[str]:
    """The CIDR blocks covering every node slot's fixed address (masters' three, then every minion slot).

    Reserved in the subnet (explicit CIDR reservations) so that AWS never hands one of them to
    another network interface, such as a load balancer's, before the node that owns it exists.
    """
    subnet = ipaddress.IPv4Network(layout.subnet_cidr)
    first = subnet.network_address + FIRST_NODE_OFFSET
    last = first + MASTER_SLOTS + layout.minion_slots - 1
    return [str(block) for block in ipaddress.summarize_address_range(first, last)]


def render_hosts(layout: ClusterLayout) -> str:
    """The block appended to every node's /etc/hosts (what atomic-node writes at boot)."""
    return "".join(f"{n.private_ip} {n.name} # atomic-cluster\n" for n in slot_nodes(layout))


def _env_file(title: str, entries: list[tuple[str, str, str]]) -> str:
    """A systemd EnvironmentFile: a comment per setting says why it has this value."""
    lines = [f"# {title} (rendered by atomic-mysql)"]
    for comment, key, value in entries:
        if comment:
            lines.append(f"# {comment}")
        lines.append(f'{key}="{value}"')
    return "\n".join(lines) + "\n"


def etcd_client_url(node: NodeSpec) -> str:
    return f"https://{node.private_ip}:{ETCD_CLIENT_PORT}"


def etcd_peer_url(node: NodeSpec) -> str:
    return f"https://{node.private_ip}:{ETCD_PEER_PORT}"


def render_etcd_conf(layout: ClusterLayout, member: NodeSpec) -> str:
    """/etc/etcd/etcd.conf (etcd v3, ETCD_* variables read by Fedora's etcd.service)."""
    cluster = ",".join(f"{m.name}={etcd_peer_url(m)}" for m in layout.masters)
    return _env_file(f"etcd member {member.name} of {len(layout.masters)}", [
        ("[Member]", "ETCD_NAME", member.name),
        ("", "ETCD_DATA_DIR", f"{ETCD_DATA}/{member.name}.etcd"),
        ("", "ETCD_LISTEN_PEER_URLS", etcd_peer_url(member)),
        ("", "ETCD_LISTEN_CLIENT_URLS", etcd_client_url(member)),
        ("[Clustering]", "ETCD_INITIAL_ADVERTISE_PEER_URLS", etcd_peer_url(member)),
        ("", "ETCD_ADVERTISE_CLIENT_URLS", etcd_client_url(member)),
        ("fixed addresses: static bootstrap", "ETCD_INITIAL_CLUSTER", cluster),
        ("", "ETCD_INITIAL_CLUSTER_STATE", "new"),
        ("", "ETCD_INITIAL_CLUSTER_TOKEN", layout.etcd_token),
        ("[Security] mutual TLS, etcd's own CA", "ETCD_CERT_FILE", f"{ETCD_PKI}/server.crt"),
        ("", "ETCD_KEY_FILE", f"{ETCD_PKI}/server.key"),
        ("", "ETCD_CLIENT_CERT_AUTH", "true"),
        ("", "ETCD_TRUSTED_CA_FILE", f"{ETCD_PKI}/ca.crt"),
        ("", "ETCD_PEER_CERT_FILE", f"{ETCD_PKI}/peer.crt"),
        ("", "ETCD_PEER_KEY_FILE", f"{ETCD_PKI}/peer.key"),
        ("", "ETCD_PEER_CLIENT_CERT_AUTH", "true"),
        ("", "ETCD_PEER_TRUSTED_CA_FILE", f"{ETCD_PKI}/ca.crt"),
    ])


# --------------------------------------------------------------------------
# /etc/kubernetes/* in the Fedora packaging style
# --------------------------------------------------------------------------


def api_url(host: str) -> str:
    return f"https://{host}:{API_PORT}"


def api_host(layout: ClusterLayout, node: NodeSpec) -> str:
    """127.0.0.1 on every node: a master talks to its own apiserver, a minion to its local
    HAProxy (render_api_proxy), which spreads over every master and leaves out one that stops
    answering. Every apiserver certificate carries 127.0.0.1."""
    return "127.0.0.1"


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


def render_kube_config(layout: ClusterLayout, node: NodeSpec) -> str:
    """/etc/kubernetes/config: what every Kubernetes service on the node shares."""
    master = api_host(layout, node)
    return _env_file(f"Kubernetes services on {node.name} ({node.role})", [
        ("was --logtostderr=true (flag removed in 1.26)", "KUBE_LOGTOSTDERR", ""),
        ("", "KUBE_LOG_LEVEL", "--v=2"),
        ("was --allow_privileged=false (apiserver only now)", "KUBE_ALLOW_PRIV", ""),
        ("was http://fed-master:8080 (insecure port removed)", "KUBE_MASTER", f"--master={api_url(master)}"),
    ])


def render_apiserver(layout: ClusterLayout, node: NodeSpec) -> str:
    etcd = ",".join(etcd_client_url(m) for m in layout.masters)
    args = " ".join([
        f"--tls-cert-file={K8S_PKI}/apiserver.crt", f"--tls-private-key-file={K8S_PKI}/apiserver.key",
        f"--client-ca-file={K8S_PKI}/ca.crt", "--authorization-mode=Node,RBAC", "--anonymous-auth=false",
        f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
        f"--service-account-key-file={SA_PUB}", f"--service-account-signing-key-file={SA_KEY}",
        "--kubelet-preferred-address-types=InternalIP,Hostname", "--enable-aggregator-routing=true",
        "--tls-min-version=VersionTLS12", "--profiling=false",
        f"--requestheader-client-ca-file={K8S_PKI}/front-proxy-ca.crt",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}", "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group", "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={K8S_PKI}/{FRONT_PROXY_CLIENT}.crt",
        f"--proxy-client-key-file={K8S_PKI}/{FRONT_PROXY_CLIENT}.key",
    ])
    return _env_file(f"kube-apiserver on {node.name}", [
        ("was --address=0.0.0.0 (insecure)", "KUBE_API_ADDRESS",
         f"--bind-address=0.0.0.0 --advertise-address={node.private_ip}"),
        ("was --port=8080", "KUBE_API_PORT", f"--secure-port={API_PORT}"),
        ("was --etcd_servers=http://fed-master:4001 in config", "KUBE_ETCD_SERVERS",
         f"--etcd-servers={etcd} --etcd-cafile={K8S_PKI}/etcd-ca.crt "
         f"--etcd-certfile={K8S_PKI}/apiserver-etcd-client.crt --etcd-keyfile={K8S_PKI}/apiserver-etcd-client.key"),
        ("was --kubelet_port=10250", "KUBELET_PORT",
         f"--kubelet-client-certificate={K8S_PKI}/apiserver-kubelet-client.crt "
         f"--kubelet-client-key={K8S_PKI}/apiserver-kubelet-client.key "
         f"--kubelet-certificate-authority={K8S_PKI}/ca.crt"),
        ("was --portal_net", "KUBE_SERVICE_ADDRESSES", f"--service-cluster-ip-range={layout.service_cidr}"),
        ("", "KUBE_ADMISSION_CONTROL", "--enable-admission-plugins=NodeRestriction"),
        ("", "KUBE_ALLOW_PRIV", "--allow-privileged=true"),
        ("", "KUBE_API_ARGS", args),
    ])


def _component_kubeconfig_args(component: str) -> str:
    path = f"/etc/kubernetes/{component}.kubeconfig"
    return f"--kubeconfig={path} --authentication-kubeconfig={path} --authorization-kubeconfig={path}"


def render_controller_manager(layout: ClusterLayout, node: NodeSpec) -> str:
    args = " ".join([
        _component_kubeconfig_args("controller-manager"), "--bind-address=127.0.0.1", "--leader-elect=true",
        "--use-service-account-credentials=true", f"--service-account-private-key-file={SA_KEY}",
        f"--root-ca-file={K8S_PKI}/ca.crt", f"--service-cluster-ip-range={layout.service_cidr}",
        f"--cluster-cidr={layout.pod_cidr}", "--profiling=false",
    ])
    return _env_file(f"kube-controller-manager on {node.name}", [
        ("was --machines=fed-minion,... (nodes register themselves)", "KUBELET_ADDRESSES", ""),
        ("", "KUBE_CONTROLLER_MANAGER_ARGS", args),
    ])


def render_scheduler(layout: ClusterLayout, node: NodeSpec) -> str:
    args = " ".join([_component_kubeconfig_args("scheduler"), "--bind-address=127.0.0.1", "--leader-elect=true"])
    return _env_file(f"kube-scheduler on {node.name}", [("", "KUBE_SCHEDULER_ARGS", args)])


def render_kubelet(layout: ClusterLayout, node: NodeSpec) -> str:
    return _env_file(f"kubelet on {node.name}", [
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
        "clusterDNS": [layout.dns_service_ip],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": UPSTREAM_RESOLV_CONF,
        "cgroupDriver": "systemd",
        "containerRuntimeEndpoint": CRIO_SOCKET,
        "rotateCertificates": False,
    }
    return yaml.dump(config, Dumper=_SafeDumper, sort_keys=False)


def render_proxy(layout: ClusterLayout, node: NodeSpec) -> str:
    return _env_file(f"kube-proxy on {node.name}", [
        ("", "KUBE_PROXY_ARGS",
         f"--kubeconfig=/etc/kubernetes/kube-proxy.kubeconfig --hostname-override={node.name} "
         f"--cluster-cidr={layout.pod_cidr} --proxy-mode=iptables --metrics-bind-address=127.0.0.1:10249"),
    ])


def render_node_kubeconfig(layout: ClusterLayout, node: NodeSpec, component: str, identity: str) -> str:
    """A kubeconfig that points at certificate files fetched at boot (no key material inside)."""
    master = api_host(layout, node)
    return render_kubeconfig(
        cluster=layout.name, server=api_url(master), user=component,
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
    return yaml.dump(config, Dumper=_SafeDumper, sort_keys=False)


def render_admin_kubeconfig(cluster: str, endpoint_host: str, ca_pem: str, cert_pem: str, key_pem: str) -> str:
    """The admin kubeconfig (a secret output). The client checks the certificate's `kubernetes` name
    (tls-server-name), whatever the endpoint: the first master's Elastic IP is in no certificate, and
    masters that booted before an API load balancer existed do not name it yet."""
    import base64

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return render_kubeconfig(
        cluster=cluster, server=api_url(endpoint_host), user="admin",
        cluster_fields={"certificate-authority-data": b64(ca_pem), "tls-server-name": "kubernetes"},
        user_fields={"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
    )


# --------------------------------------------------------------------------
# Pod network: CNI chain and the static VXLAN overlay
# --------------------------------------------------------------------------


def render_cni_conflist(layout: ClusterLayout, node: NodeSpec) -> str:
    """bridge + host-local on the node's fixed pod subnet, then portmap (hostPort) and bandwidth
    (kubernetes.io/ingress-bandwidth / egress-bandwidth), as the seed's CNI section chains them."""
    conflist = {
        "cniVersion": "1.0.0",
        "name": "atomic-pod-network",
        "plugins": [
            {
                "type": "bridge", "bridge": "cni0", "isGateway": True, "hairpinMode": True, "mtu": POD_MTU,
                # Masquerading off-cluster traffic is atomic-node's job: pod-to-pod keeps pod addresses.
                "ipMasq": False,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": node.pod_subnet}]],
                         "routes": [{"dst": "0.0.0.0/0"}]},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "externalSetMarkChain": "KUBE-MARK-MASQ"},
            {"type": "bandwidth", "capabilities": {"bandwidth": True}},
        ],
    }
    return json.dumps(conflist, indent=2) + "\n"


def render_cluster_env(layout: ClusterLayout, node: NodeSpec) -> str:
    """The few numbers atomic-node derives every node's name, address and pod subnet from."""
    return _env_file(f"cluster layout as seen from {node.name}", [
        ("", "ATOMIC_CLUSTER", layout.name),
        ("", "ATOMIC_SUBNET_BASE", str(ipaddress.IPv4Network(layout.subnet_cidr).network_address)),
        ("", "ATOMIC_FIRST_OFFSET", str(FIRST_NODE_OFFSET)),
        ("", "ATOMIC_MASTER_SLOTS", str(MASTER_SLOTS)),
        ("", "ATOMIC_MASTERS", str(len(layout.masters))),
        ("", "ATOMIC_MINIONS", str(layout.minion_slots)),
        ("", "ATOMIC_POD_CIDR", layout.pod_cidr),
        ("", "ATOMIC_POD_PREFIX", str(POD_SUBNET_PREFIX)),
        ("", "ATOMIC_SELF_IP", node.private_ip),
        ("", "ATOMIC_REGION", layout.region),
        ("", "ATOMIC_SSM_PATH", layout.ssm_path(node)),
        ("", "ATOMIC_OVERLAY_DEVICE", OVERLAY_DEVICE),
        ("", "ATOMIC_OVERLAY_VNI", str(OVERLAY_VNI)),
        ("", "ATOMIC_OVERLAY_PORT", str(OVERLAY_PORT)),
        ("", "ATOMIC_POD_MTU", str(POD_MTU)),
    ])


# The node script is the same for every node and every cluster size: the layout
# is arithmetic on cluster.env, which keeps user-data far below 16 KB even with
# hundreds of minions. tests/test_bootstrap.py runs it and compares its output
# with render_hosts() and overlay_routes().
NODE_SCRIPT_TEXT = r"""#!/bin/bash
# atomic-node hosts|overlay|nodes: /etc/hosts entries and the static VXLAN pod overlay.
set -euo pipefail
. "${ATOMIC_ENV:-/etc/atomic/cluster.env}"
RUN=${ATOMIC_RUN:-}
ip2int() { local IFS=.; set -- $1; echo $(( ($1 << 24) + ($2 << 16) + ($3 << 8) + $4 )); }
int2ip() { echo "$(( $1 >> 24 & 255 )).$(( $1 >> 16 & 255 )).$(( $1 >> 8 & 255 )).$(( $1 & 255 ))"; }
mac() { local n; n=$(ip2int "$1")
  printf '02:00:%02x:%02x:%02x:%02x' $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)); }
vtep() { int2ip $(( $(ip2int "${ATOMIC_POD_CIDR%/*}") + ($1 << (32 - ATOMIC_POD_PREFIX)) )); }
nodes() {  # slot address name
  local base i; base=$(( $(ip2int "$ATOMIC_SUBNET_BASE") + ATOMIC_FIRST_OFFSET ))
  for ((i = 0; i < ATOMIC_MASTERS; i++)); do echo "$i $(int2ip $((base + i))) $ATOMIC_CLUSTER-master-$((i + 1))"; done
  for ((i = 0; i < ATOMIC_MINIONS; i++)); do
    echo "$((ATOMIC_MASTER_SLOTS + i)) $(int2ip $((base + ATOMIC_MASTER_SLOTS + i))) $ATOMIC_CLUSTER-minion-$((i + 1))"
  done
}
hosts() {
  local file=${1:-/etc/hosts}
  sed -i '/ # atomic-cluster$/d' "$file"
  nodes | while read -r _ addr name; do echo "$addr $name # atomic-cluster"; done >> "$file"
}
overlay() {
  local dev=$ATOMIC_OVERLAY_DEVICE slot addr name self=""
  while read -r slot addr name; do [ "$addr" = "$ATOMIC_SELF_IP" ] && self=$slot; done < <(nodes)
  [ -n "$self" ] || { echo "atomic-node: $ATOMIC_SELF_IP is not a cluster node" >&2; exit 1; }
  $RUN ip link add "$dev" type vxlan id "$ATOMIC_OVERLAY_VNI" dstport "$ATOMIC_OVERLAY_PORT" local "$ATOMIC_SELF_IP" \
    nolearning 2>/dev/null || true
  $RUN ip link set "$dev" address "$(mac "$ATOMIC_SELF_IP")" mtu "$ATOMIC_POD_MTU" up
  $RUN ip addr replace "$(vtep "$self")/32" dev "$dev"
  nodes | while read -r slot addr name; do
    [ "$slot" = "$self" ] && continue
    $RUN bridge fdb replace "$(mac "$addr")" dev "$dev" dst "$addr"
    $RUN ip neigh replace "$(vtep "$slot")" lladdr "$(mac "$addr")" dev "$dev" nud permanent
    $RUN ip route replace "$(vtep "$slot")/$ATOMIC_POD_PREFIX" via "$(vtep "$slot")" dev "$dev" onlink
  done
  $RUN sysctl -qw net.ipv4.ip_forward=1
  $RUN iptables -t nat -C POSTROUTING -s "$ATOMIC_POD_CIDR" ! -d "$ATOMIC_POD_CIDR" -j MASQUERADE 2>/dev/null ||
    $RUN iptables -t nat -A POSTROUTING -s "$ATOMIC_POD_CIDR" ! -d "$ATOMIC_POD_CIDR" -j MASQUERADE
}
case "${1:-}" in
  hosts) hosts "${2:-/etc/hosts}" ;;
  overlay) overlay ;;
  nodes) nodes ;;
  *) echo "usage: atomic-node hosts [file]|overlay|nodes" >&2; exit 2 ;;
esac
"""


# Minions only: the kubelet's --provider-id and zone labels, read from IMDSv2 on the host (pods are
# one hop too far for it). The EBS CSI driver takes instance id and zone from the Node object.
IDENTITY_SCRIPT = "/usr/local/sbin/atomic-kubelet-identity"
IDENTITY_SCRIPT_TEXT = r"""#!/bin/bash
# atomic-kubelet-identity [file]: the kubelet's cloud identity from IMDSv2, as an environment file.
set -euo pipefail
imds() {
  curl -fsS --retry 10 --retry-connrefused --retry-delay 1 --max-time 5 "$@"
}
file=${1:-/etc/kubernetes/kubelet.identity} url=${ATOMIC_IMDS:-http://169.254.169.254}/latest
token=$(imds -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$url/api/token")
meta() { imds -H "X-aws-ec2-metadata-token: $token" "$url/meta-data/$1"; }
id=$(meta instance-id); zone=$(meta placement/availability-zone)
region=$(meta placement/region); type=$(meta instance-type)
if ! [[ $id =~ ^i-[0-9a-f]+$ && $zone =~ ^[a-z0-9-]+$ && $region =~ ^[a-z0-9-]+$ && $type =~ ^[a-z0-9.-]+$ ]]; then
  echo "atomic-kubelet-identity: unexpected instance metadata: id=$id zone=$zone region=$region type=$type" >&2; exit 1
fi
printf 'KUBELET_IDENTITY="--provider-id=aws:///%s/%s --node-labels=%s"\n' "$zone" "$id" \
  "topology.kubernetes.io/region=$region,topology.kubernetes.io/zone=$zone,node.kubernetes.io/instance-type=$type" \
  > "$file.tmp"
mv "$file.tmp" "$file"
"""


def overlay_routes(layout: ClusterLayout, node: NodeSpec) -> list[tuple[str, str, str]]:
    """(pod subnet, VTEP MAC, underlay address) of every other node: what `atomic-node overlay` programs."""
    return [(n.pod_subnet, n.vtep_mac, n.private_ip) for n in slot_nodes(layout) if n.name != node.name]


# Fetches this node's key material from SSM at boot. Each node's instance
# profile may read only its own path; the parameter name below the path is the
# file's absolute path, limited to the two PKI directories.
FETCH_SCRIPT_TEXT = r"""#!/usr/bin/python3
# atomic-fetch-pki: write this node's certificates and keys from SSM Parameter Store.
import grp, os, sys, time
import boto3
env = dict(l.replace('"', "").split("=", 1) for l in open("/etc/atomic/cluster.env") if l[:1].isalpha())
path = env["ATOMIC_SSM_PATH"].strip()
ssm = boto3.client("ssm", region_name=env["ATOMIC_REGION"].strip())
for _ in range(30):  # a new instance profile can take a while to work
    try:
        params = [p for page in ssm.get_paginator("get_parameters_by_path").paginate(
            Path=path, Recursive=True, WithDecryption=True) for p in page["Parameters"]]
        if params:
            break
    except Exception as error:
        print(error, file=sys.stderr)
    time.sleep(10)
else:
    sys.exit("atomic-fetch-pki: nothing under " + path)
for p in params:
    target = p["Name"][len(path):]
    if not target.startswith(("/etc/kubernetes/pki/", "/etc/etcd/pki/")) or ".." in target:
        sys.exit("atomic-fetch-pki: refusing " + p["Name"])
    os.makedirs(os.path.dirname(target), exist_ok=True)
    key = target.endswith(".key")
    with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if key else 0o644), "w") as f:
        f.write(p["Value"])
    if key:  # etcd and the control plane run as their own users in Fedora's units
        try:
            os.chown(target, 0, grp.getgrnam("etcd" if target.startswith("/etc/etcd/") else "kube").gr_gid)
            os.chmod(target, 0o640)
        except KeyError:
            pass
print(f"atomic-fetch-pki: wrote {len(params)} files")
"""


# --------------------------------------------------------------------------
# systemd units, packages, services
# --------------------------------------------------------------------------

# unit -> (binary, environment files under /etc/kubernetes, variables in order).
# Drop-ins replace the packaged ExecStart so that exactly the variables rendered
# above reach the binary, whatever the package's unit lists.
_UNITS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "kube-apiserver": ("kube-apiserver", ("config", "apiserver"),
                       ("KUBE_LOG_LEVEL", "KUBE_ETCD_SERVERS", "KUBE_API_ADDRESS", "KUBE_API_PORT", "KUBELET_PORT",
                        "KUBE_ALLOW_PRIV", "KUBE_SERVICE_ADDRESSES", "KUBE_ADMISSION_CONTROL", "KUBE_API_ARGS")),
    "kube-controller-manager": ("kube-controller-manager", ("config", "controller-manager"),
                                ("KUBE_LOG_LEVEL", "KUBE_MASTER", "KUBE_CONTROLLER_MANAGER_ARGS")),
    "kube-scheduler": ("kube-scheduler", ("config", "scheduler"),
                       ("KUBE_LOG_LEVEL", "KUBE_MASTER", "KUBE_SCHEDULER_ARGS")),
    "kubelet": ("kubelet", ("config", "kubelet", KUBELET_IDENTITY.removeprefix("/etc/kubernetes/")),
                ("KUBE_LOG_LEVEL", "KUBELET_HOSTNAME", "KUBELET_ARGS", "KUBELET_IDENTITY")),
    "kube-proxy": ("kube-proxy", ("config", "proxy"), ("KUBE_LOG_LEVEL", "KUBE_MASTER", "KUBE_PROXY_ARGS")),
}


def render_dropin(unit: str) -> str:
    binary, env_files, variables = _UNITS[unit]
    after = "atomic-overlay.service haproxy.service crio.service" if unit in ("kubelet", "kube-proxy") \
        else "atomic-overlay.service"
    lines = ["[Unit]", f"After={after}", f"Wants={after}", "", "[Service]", "EnvironmentFile="]
    lines += [f"EnvironmentFile=/etc/kubernetes/{f}" for f in env_files]
    lines += ["ExecStart=", f"ExecStart=/usr/bin/{binary} " + " ".join(f"${v}" for v in variables)]
    return "\n".join(lines) + "\n"


OVERLAY_UNIT = """[Unit]
Description=atomic-mysql static VXLAN pod overlay
After=network-online.target
Wants=network-online.target
Before=crio.service kubelet.service kube-apiserver.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/atomic-node overlay

[Install]
WantedBy=multi-user.target
"""

CRIO_DROPIN = """[crio.network]
network_dir = "/etc/cni/net.d/"
plugin_dirs = ["/usr/libexec/cni/", "/opt/cni/bin/"]
"""


# cAdvisor on every node, on the seed's port. Fedora's own `cadvisor` RPM is 0.45.0 (2022), missed
# the Fedora 42 mass rebuild and has not followed upstream since (docs/cluster.md), so nodes run the
# upstream image, pinned by tag and by manifest-list digest: podman pulls the digest, the tag is
# for people reading the unit.
CADVISOR_PORT = 4194
CADVISOR_VERSION = "v0.55.1"
CADVISOR_IMAGE = (f"gcr.io/cadvisor/cadvisor:{CADVISOR_VERSION}"
                  "@sha256:3de2bd5203120b866d74a9b283b2ffb8ec382fbf9dc321814700c6ea6f44ec57")
CADVISOR_UNIT_PATH = "/etc/systemd/system/cadvisor.service"
# The host paths cAdvisor's own instructions mount, all read-only. Not mounted, on purpose:
# /var/run (CRI-O's socket there is the whole CRI API, i.e. root on the node: CRI-O's maintainers
# call access to it worse than password-less sudo, cri-o/cri-o#2029) and /var/lib/containers,
# which only cAdvisor's CRI-O handler behind that socket reads. Containers are therefore reported
# by cgroup (kubepods.slice/...), not by pod name.
CADVISOR_MOUNTS = ("/:/rootfs:ro", "/sys:/sys:ro", "/dev/disk:/dev/disk:ro")


def cadvisor_run_args() -> list[str]:
    """`podman run` for cAdvisor with the least privilege it works with (see docs/cluster.md):
    nobody, no capability, no new privileges, read-only mounts, its own network namespace."""
    return [
        # podman's documented shape for a container owned by a systemd unit
        "--cidfile=%t/%n.ctr-id", "--cgroups=no-conmon", "--rm", "--sdnotify=conmon", "--replace", "--detach",
        "--name=cadvisor",
        # cAdvisor reads world-readable cgroup, proc and sys files; it degrades (no per-container
        # disk usage of root-only paths) rather than needing root or CAP_DAC_READ_SEARCH.
        "--user=65534:65534", "--cap-drop=all", "--security-opt=no-new-privileges",
        # container_t may not read the host files cAdvisor exists to read; DAC (nobody) is the boundary.
        "--security-opt=label=disable",
        "--read-only",
        # upstream's DaemonSet limits, so a runaway cAdvisor cannot starve etcd or the kubelet
        "--memory=2000m", "--cpus=0.3",
        # Bridge network, not host: like pods, the container is one hop further than IMDSv2's hop
        # limit, so it cannot fetch the node role's credentials.
        f"--publish={CADVISOR_PORT}:{CADVISOR_PORT}",
        *(f"--volume={mount}" for mount in CADVISOR_MOUNTS),
        CADVISOR_IMAGE,
        f"--port={CADVISOR_PORT}",
    ]


def render_cadvisor_unit() -> str:
    """A plain unit (not Quadlet): `systemctl enable` works on it and systemd-analyze can verify it."""
    run = " \\\n  ".join(["/usr/bin/podman run", *cadvisor_run_args()])
    return f"""[Unit]
Description=cAdvisor {CADVISOR_VERSION} on port {CADVISOR_PORT}
Documentation=https://github.com/google/cadvisor
Wants=network-online.target
After=network-online.target
RequiresMountsFor=%t/containers

[Service]
Environment=PODMAN_SYSTEMD_UNIT=%n
Type=notify
NotifyAccess=all
Restart=on-failure
RestartSec=30
TimeoutStartSec=300
ExecStartPre=/usr/bin/rm -f %t/%n.ctr-id
ExecStart={run}
ExecStop=/usr/bin/podman stop --ignore --time=10 --cidfile=%t/%n.ctr-id
ExecStopPost=/usr/bin/podman rm --force --ignore --time=10 --cidfile=%t/%n.ctr-id

[Install]
WantedBy=multi-user.target
"""


def packages(layout: ClusterLayout, node: NodeSpec) -> list[str]:
    """Fedora packages for the role: versioned Kubernetes packages matching kubernetesVersion."""
    v = layout.kubernetes_version
    common = ["python3-boto3", "iptables-nft", "conntrack-tools"]
    optional = [*(["cockpit"] if layout.enable_cockpit else []), *(["podman"] if layout.enable_cadvisor else [])]
    if node.role == "master":
        return [*common, "etcd", f"kubernetes{v}-systemd", f"kubernetes{v}-client", *optional]
    return [*common, f"kubernetes{v}", f"kubernetes{v}-systemd", f"cri-o{v}", f"cri-tools{v}",
            "containernetworking-plugins", "haproxy", *optional]


def services(layout: ClusterLayout, node: NodeSpec) -> list[str]:
    """Services to enable, in start order (the seed's SERVICES loops, per role)."""
    cockpit = ["cockpit.socket"] if layout.enable_cockpit else []
    if node.role == "master":
        return ["atomic-overlay", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", *cockpit]
    return ["atomic-overlay", "haproxy", "crio", "kubelet", "kube-proxy", *cockpit]


# --------------------------------------------------------------------------
# cloud-init
# --------------------------------------------------------------------------


def node_files(layout: ClusterLayout, node: NodeSpec) -> dict[str, tuple[str, str]]:
    """path -> (content, permissions) of every file cloud-init writes on this node."""
    files: dict[str, tuple[str, str]] = {
        CLUSTER_ENV: (render_cluster_env(layout, node), "0644"),
        NODE_SCRIPT: (NODE_SCRIPT_TEXT, "0755"),
        FETCH_SCRIPT: (FETCH_SCRIPT_TEXT, "0755"),
        "/etc/systemd/system/atomic-overlay.service": (OVERLAY_UNIT, "0644"),
        "/etc/kubernetes/config": (render_kube_config(layout, node), "0644"),
    }
    if node.role == "master":
        files.update({
            "/etc/etcd/etcd.conf": (render_etcd_conf(layout, node), "0644"),
            "/etc/kubernetes/apiserver": (render_apiserver(layout, node), "0644"),
            "/etc/kubernetes/controller-manager": (render_controller_manager(layout, node), "0644"),
            "/etc/kubernetes/scheduler": (render_scheduler(layout, node), "0644"),
            "/etc/kubernetes/controller-manager.kubeconfig":
                (render_node_kubeconfig(layout, node, "system:kube-controller-manager", "controller-manager"), "0644"),
            "/etc/kubernetes/scheduler.kubeconfig":
                (render_node_kubeconfig(layout, node, "system:kube-scheduler", "scheduler"), "0644"),
        })
        units: tuple[str, ...] = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    else:
        files.update({
            "/etc/kubernetes/kubelet": (render_kubelet(layout, node), "0644"),
            "/etc/kubernetes/kubelet.yaml": (render_kubelet_config(layout, node), "0644"),
            "/etc/kubernetes/kubelet.kubeconfig":
                (render_node_kubeconfig(layout, node, f"system:node:{node.name}", "kubelet"), "0644"),
            "/etc/kubernetes/proxy": (render_proxy(layout, node), "0644"),
            "/etc/kubernetes/kube-proxy.kubeconfig":
                (render_node_kubeconfig(layout, node, "system:kube-proxy", "kube-proxy"), "0644"),
            "/etc/cni/net.d/05-atomic.conflist": (render_cni_conflist(layout, node), "0644"),
            "/etc/crio/crio.conf.d/20-atomic.conf": (CRIO_DROPIN, "0644"),
            IDENTITY_SCRIPT: (IDENTITY_SCRIPT_TEXT, "0755"),
            API_PROXY_CONFIG: (render_api_proxy(layout), "0644"),
        })
        units = ("kubelet", "kube-proxy")
    for unit in units:
        files[f"/etc/systemd/system/{unit}.service.d/10-atomic.conf"] = (render_dropin(unit), "0644")
    if layout.enable_cadvisor:
        files[CADVISOR_UNIT_PATH] = (render_cadvisor_unit(), "0644")
    return files


def cloud_config(layout: ClusterLayout, node: NodeSpec) -> dict[str, object]:
    enabled = services(layout, node)
    runcmd = [
        [NODE_SCRIPT, "hosts"],
        *([[IDENTITY_SCRIPT, KUBELET_IDENTITY],
           # Fedora's SELinux policy lets HAProxy bind and connect only to web ports unless told otherwise.
           ["setsebool", "-P", "haproxy_connect_any", "1"]] if node.role == "minion" else []),
        [FETCH_SCRIPT],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", *enabled],
    ]
    if layout.enable_cadvisor:
        # Its own command, not blocking: an image pull from gcr.io must not hold up or fail the
        # node's bootstrap; the unit retries on its own (Restart=on-failure) and starts at every boot.
        runcmd.append(["systemctl", "enable", "--now", "--no-block", "cadvisor.service"])
    return {
        "hostname": node.name,
        "fqdn": node.name,
        "preserve_hostname": False,
        "package_update": True,
        "packages": packages(layout, node),
        "write_files": [{"path": path, "permissions": mode, "content": content}
                        for path, (content, mode) in node_files(layout, node).items()],
        "runcmd": runcmd,
    }


# libyaml's emitter writes the same bytes several times faster; user-data is rendered for
# every node on every preview and `pulumi up`.
_SafeDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _BlockDumper(_SafeDumper):  # type: ignore[valid-type,misc]
    """Multi-line strings as literal blocks: readable, and smaller than quoted strings."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _str_representer)


def render_user_data(layout: ClusterLayout, node: NodeSpec) -> str:
    """The node's #cloud-config; raises LayoutError above EC2's 16 KB user-data limit."""
    text = "#cloud-config\n" + yaml.dump(cloud_config(layout, node), Dumper=_BlockDumper, sort_keys=False,
                                         width=1000)
    size = len(text.encode())
    if size > USER_DATA_LIMIT:
        raise LayoutError(f"user-data of {node.name} is {size} bytes; EC2 allows {USER_DATA_LIMIT}")
    return text


# --------------------------------------------------------------------------
# AWS: AMI lookup and least-privilege policy documents
# --------------------------------------------------------------------------

FEDORA_OWNER = "125523088429"


def fedora_ami_filters(release: int) -> tuple[str, list[dict[str, object]]]:
    """(name_regex, filters) selecting a released Fedora Cloud Base image for x86_64.

    Final images are named Fedora-Cloud-Base-AmazonEC2.x86_64-<release>-<compose>.<respin>
    (e.g. -41-1.4); Rawhide and nightly/branched composes (-Rawhide-..., -42-20250301.n.0)
    and Beta images (-42_Beta-...) do not match the regex.
    """
    regex = rf"^Fedora-Cloud-Base-AmazonEC2\.x86_64-{release}-[0-9]{{1,2}}\.[0-9]+$"
    filters: list[dict[str, object]] = [
        {"name": "name", "values": [f"Fedora-Cloud-Base-AmazonEC2.x86_64-{release}-*"]},
        {"name": "architecture", "values": ["x86_64"]},
        {"name": "virtualization-type", "values": ["hvm"]},
        {"name": "root-device-type", "values": ["ebs"]},
        {"name": "state", "values": ["available"]},
    ]
    return regex, filters


def assume_role_policy() -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def node_policy(partition: str, region: str, account: str, node_path: str, key_arn: str) -> str:
    """Read this node's SSM path and decrypt only parameters below it (KMS encryption context)."""
    base = f"arn:{partition}:ssm:{region}:{account}:parameter{node_path}"
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadOwnPath", "Effect": "Allow", "Action": ["ssm:GetParametersByPath"], "Resource": [base]},
        {"Sid": "ReadOwnParameters", "Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParameters"],
         "Resource": [f"{base}/*"]},
        {"Sid": "DecryptOwnParameters", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [key_arn],
         "Condition": {"StringLike": {"kms:EncryptionContext:PARAMETER_ARN": f"{base}/*"}}},
    ]})
