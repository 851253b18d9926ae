"""A master's control plane: /etc/kubernetes/{apiserver,controller-manager,scheduler} in the
Fedora packaging style, with today's flags (docs/cluster.md maps the seed's to these)."""

from __future__ import annotations

from components.facts import API_PORT, CLUSTER_DOMAIN
from components.node.etcd import etcd_client_url
from components.node.formats import env_file
from components.node.layout import ClusterLayout, NodeSpec
from components.node.pki import FRONT_PROXY_CLIENT, K8S_PKI, SA_KEY, SA_PUB


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
    return env_file(f"kube-apiserver on {node.name}", [
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
    return env_file(f"kube-controller-manager on {node.name}", [
        ("was --machines=fed-minion,... (nodes register themselves)", "KUBELET_ADDRESSES", ""),
        ("", "KUBE_CONTROLLER_MANAGER_ARGS", args),
    ])


def render_scheduler(layout: ClusterLayout, node: NodeSpec) -> str:
    args = " ".join([_component_kubeconfig_args("scheduler"), "--bind-address=127.0.0.1", "--leader-elect=true"])
    return env_file(f"kube-scheduler on {node.name}", [("", "KUBE_SCHEDULER_ARGS", args)])
