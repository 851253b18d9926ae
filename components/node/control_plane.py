"""A master's control plane: /etc/kubernetes/{apiserver,controller-manager,scheduler} in the
Fedora packaging style, with today's flags (docs/cluster.md maps the seed's to these)."""

from __future__ import annotations

from components.facts import API_PORT, CLUSTER_DOMAIN, TLS_CIPHER_SUITES, TLS_MIN_VERSION
from components.node.etcd import etcd_client_url
from components.node.formats import dump_yaml, env_file
from components.node.layout import ClusterLayout, NodeSpec
from components.node.pki import ENCRYPTION_CONFIG, FRONT_PROXY_CLIENT, K8S_PKI, SA_KEY, SA_PUB

AUDIT_POLICY = "/etc/kubernetes/audit-policy.yaml"  # shipped (node/files), the same on every master
# systemd creates it for the apiserver's own user (LogsDirectory= in the unit's drop-in).
AUDIT_LOG = "/var/log/kubernetes/audit/audit.log"
# Rotated by the apiserver itself: 100 MB files, 10 kept, none older than 30 days (1 GB at most).
AUDIT_LOG_ROTATION = {"maxsize": 100, "maxbackup": 10, "maxage": 30}
# Secrets are encrypted in etcd with secretbox (XSalsa20-Poly1305: authenticated, no nonce-reuse
# budget as with aesgcm, no padding oracle as with aescbc: Kubernetes' "Encrypting Confidential Data
# at Rest" comparison); identity stays last so that Secrets written before can still be read.
ENCRYPTED_RESOURCES = ("secrets",)


def tls_flags() -> str:
    """The TLS policy of a Kubernetes server's secure port (facts.TLS_CIPHER_SUITES)."""
    return f"--tls-min-version={TLS_MIN_VERSION} --tls-cipher-suites={','.join(TLS_CIPHER_SUITES)}"


def render_encryption_config(key_base64: str) -> str:
    """/etc/kubernetes/pki/encryption-config.yaml: the apiserver's EncryptionConfiguration (key material:
    delivered like the PKI, through SSM, to masters only)."""
    return dump_yaml({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": list(ENCRYPTED_RESOURCES),
            "providers": [{"secretbox": {"keys": [{"name": "key1", "secret": key_base64}]}}, {"identity": {}}],
        }],
    })


def render_apiserver(layout: ClusterLayout, node: NodeSpec) -> str:
    etcd = ",".join(etcd_client_url(m) for m in layout.masters)
    args = " ".join([
        f"--tls-cert-file={K8S_PKI}/apiserver.crt", f"--tls-private-key-file={K8S_PKI}/apiserver.key",
        f"--client-ca-file={K8S_PKI}/ca.crt", "--authorization-mode=Node,RBAC", "--anonymous-auth=false",
        f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
        f"--service-account-key-file={SA_PUB}", f"--service-account-signing-key-file={SA_KEY}",
        "--kubelet-preferred-address-types=InternalIP,Hostname", "--enable-aggregator-routing=true",
        tls_flags(), "--profiling=false",
        f"--encryption-provider-config={ENCRYPTION_CONFIG}",
        f"--audit-policy-file={AUDIT_POLICY}", f"--audit-log-path={AUDIT_LOG}",
        *(f"--audit-log-{key}={value}" for key, value in AUDIT_LOG_ROTATION.items()),
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
        f"--cluster-cidr={layout.pod_cidr}", "--profiling=false", tls_flags(),
    ])
    return env_file(f"kube-controller-manager on {node.name}", [
        ("was --machines=fed-minion,... (nodes register themselves)", "KUBELET_ADDRESSES", ""),
        ("", "KUBE_CONTROLLER_MANAGER_ARGS", args),
    ])


def render_scheduler(layout: ClusterLayout, node: NodeSpec) -> str:
    args = " ".join([_component_kubeconfig_args("scheduler"), "--bind-address=127.0.0.1", "--leader-elect=true",
                     "--profiling=false", tls_flags()])
    return env_file(f"kube-scheduler on {node.name}", [("", "KUBE_SCHEDULER_ARGS", args)])
