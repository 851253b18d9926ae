"""MetricsServer: the resource Metrics API (metrics.k8s.io) that HPA and `kubectl top` read.

Upstream's high-availability manifest for metrics-server v0.7.2 (same names, labels,
RBAC, probes and hardening, so upstream's docs and troubleshooting apply), changed
where this cluster allows something safer:

- Kubelets are verified, never `--kubelet-insecure-tls`: their serving certificates are
  issued by the cluster CA with the node's private IP as SAN (node/pki.node_pki), so
  metrics-server dials InternalIP and checks them against the service-account ca.crt,
  which the controller-manager publishes from that same CA (--root-ca-file).
- The APIService is verified too (caBundle, not insecureSkipTLSVerify): upstream lets
  metrics-server generate a throw-away self-signed certificate, which the apiserver can
  only accept blindly. Here Pulumi issues the serving certificate from a CA of its own
  for the name the aggregator checks (<service>.<namespace>.svc).
- Replicas spread by soft anti-affinity (see `affinity`), and the PDB exists only when
  there is a second replica to keep.
- A uid above 10000 instead of upstream's 1000 (see METRICS_SERVER_UID), and a NetworkPolicy
  that leaves only the serving port open.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls
from pulumi import ResourceOptions

from components import tokens
from components.facts import (
    CA_USES,
    CA_VALIDITY_HOURS,
    CLUSTER_DOMAIN,
    KUBE_SYSTEM,
    LEAF_EARLY_RENEWAL_HOURS,
    LEAF_VALIDITY_HOURS,
    renewal_serial,
)
from components.kube.objects import (
    http_probe,
    metadata,
    owned,
    resources,
    restricted,
    rollout_timeouts,
    spread_by_host,
)
from components.pins import METRICS_SERVER_IMAGE
from components.settings.schema import Resources

meta = k8s.meta.v1
core = k8s.core.v1
apps = k8s.apps.v1
rbac = k8s.rbac.v1
policy = k8s.policy.v1
networking = k8s.networking.v1
apireg = k8s.apiregistration.v1

NAMESPACE = KUBE_SYSTEM
# Upstream's names: the APIService, kubectl habits and upstream's docs expect exactly these.
NAME = "metrics-server"
API_GROUP = "metrics.k8s.io"
API_VERSION = "v1beta1"
API_SERVICE_NAME = f"{API_VERSION}.{API_GROUP}"
AGGREGATED_READER_ROLE = "system:aggregated-metrics-reader"
SCRAPER_ROLE = "system:metrics-server"
AUTH_READER_BINDING = "metrics-server-auth-reader"
AUTH_DELEGATOR_BINDING = "metrics-server:system:auth-delegator"
TLS_SECRET_NAME = "metrics-server-tls"
SELECTOR = {"k8s-app": NAME}

PORT_NAME = "https"
# Upstream's port: the pod has its own network namespace, so it never meets the node's kubelet on 10250.
SECURE_PORT = 10250
SERVICE_PORT = 443
# The image (distroless static, USER 65534) runs under any uid: it writes only to /tmp (an emptyDir)
# and reads its certificate from a Secret volume. Not upstream's 1000, the first account Fedora's
# cloud-init creates (`fedora`) on every node, nor 65534, the host's `nobody` that cAdvisor runs as:
# above 10000, so no host account shares it.
METRICS_SERVER_UID = 10001

# Mounted by the kubelet from the kube-root-ca.crt ConfigMap: the cluster CA that issued every kubelet's
# serving certificate. metrics-server would use it anyway (it copies the in-cluster client config); it is
# named so that the verification is visible and survives a default changing.
SERVICE_ACCOUNT_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
TLS_DIR = "/etc/metrics-server/tls"
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
SCRATCH_DIR = "/tmp"

# Upstream's requests (enough for ~100 nodes); the limits leave room for bursts at scrape time.
RESOURCES = Resources(cpu_request="100m", memory_request="200Mi", cpu_limit="1", memory_limit="500Mi")


@dataclass
class MetricsServerArgs:
    replicas: int = 2  # plain: the PDB and the anti-affinity depend on it

    def __post_init__(self) -> None:
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            # Zero would leave the APIService pointing at nothing: discovery then fails cluster-wide
            # (kubectl warnings, namespaces stuck terminating), which is worse than no metrics-server at all.
            raise ValueError(f"metrics-server replicas must be an integer of at least 1, not {self.replicas!r}")


def labels() -> dict[str, str]:
    return owned(SELECTOR)


def serving_dns_names() -> list[str]:
    """The serving certificate's names; the first is the one the aggregator checks (ServerName
    <service>.<namespace>.svc), the second serves in-cluster clients using the full name."""
    return [f"{NAME}.{NAMESPACE}.svc", f"{NAME}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"]


def container_args() -> list[str]:
    return [
        # Unused while the certificate files below exist; upstream's fallback location, writable.
        f"--cert-dir={SCRATCH_DIR}",
        f"--secure-port={SECURE_PORT}",
        f"--tls-cert-file={TLS_DIR}/{TLS_CERT_KEY}",
        f"--tls-private-key-file={TLS_DIR}/{TLS_KEY_KEY}",
        "--tls-min-version=VersionTLS12",
        # The kubelet certificates carry the private IP, not a resolvable name: dial exactly that.
        "--kubelet-preferred-address-types=InternalIP",
        "--kubelet-use-node-status-port",
        f"--kubelet-certificate-authority={SERVICE_ACCOUNT_CA}",
        "--metric-resolution=15s",
    ]


def strategy(replicas: int) -> apps.DeploymentStrategyArgs:
    # One replica: surge first (upstream's base), so the Metrics API never goes away during a rollout.
    # Several: upstream's HA setting; the PDB and the other replica keep it served.
    return apps.DeploymentStrategyArgs(
        type="RollingUpdate",
        rolling_update=apps.RollingUpdateDeploymentArgs(max_unavailable=0 if replicas == 1 else 1),
    )


def affinity(replicas: int) -> core.AffinityArgs | None:
    """Replicas on different nodes when the cluster has them, but never unschedulable.

    Upstream's HA manifest requires one replica per node. With fewer minions than replicas
    (a one-minion dev cluster, or one minion down for maintenance) a required rule leaves a
    replica Pending for good, and with a surge it can stall a rollout; the preferred rule
    spreads whenever the nodes exist and degrades to co-location when they do not.
    """
    return spread_by_host(SELECTOR) if replicas > 1 else None


def _https_probe(path: str, initial_delay: int | None) -> core.ProbeArgs:
    # /livez and /readyz are served without authentication; the kubelet does not verify probe certificates.
    return http_probe(path, PORT_NAME, scheme="HTTPS", initial_delay_seconds=initial_delay, period_seconds=10,
                      failure_threshold=3)


def container() -> core.ContainerArgs:
    return core.ContainerArgs(
        name=NAME,
        image=METRICS_SERVER_IMAGE,
        image_pull_policy="IfNotPresent",
        args=container_args(),
        ports=[core.ContainerPortArgs(name=PORT_NAME, container_port=SECURE_PORT, protocol="TCP")],
        liveness_probe=_https_probe("/livez", None),
        # /readyz waits for the first complete scrape (upstream's delay).
        readiness_probe=_https_probe("/readyz", 20),
        resources=resources(RESOURCES),
        security_context=restricted(
            run_as_non_root=True,
            run_as_user=METRICS_SERVER_UID,
            seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        volume_mounts=[
            core.VolumeMountArgs(name="tmp-dir", mount_path=SCRATCH_DIR),
            core.VolumeMountArgs(name="tls", mount_path=TLS_DIR, read_only=True),
        ],
    )


def pod_spec(service_account: pulumi.Input[str], replicas: int) -> core.PodSpecArgs:
    return core.PodSpecArgs(
        service_account_name=service_account,
        # metrics-server calls the API (nodes, pods, TokenReviews) and the kubelets with this token,
        # and the token's volume brings the ca.crt the kubelets are verified with.
        automount_service_account_token=True,
        enable_service_links=False,
        priority_class_name="system-cluster-critical",
        node_selector={"kubernetes.io/os": "linux"},
        affinity=affinity(replicas),
        security_context=core.PodSecurityContextArgs(
            run_as_non_root=True,
            run_as_user=METRICS_SERVER_UID,
            run_as_group=METRICS_SERVER_UID,
            # The Secret's files are root-owned; the group (0440 below) is what lets the process read the key.
            fs_group=METRICS_SERVER_UID,
            seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        containers=[container()],
        volumes=[
            core.VolumeArgs(name="tmp-dir", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="64Mi")),
            core.VolumeArgs(
                name="tls", secret=core.SecretVolumeSourceArgs(secret_name=TLS_SECRET_NAME, default_mode=0o440)
            ),
        ],
    )


def scraper_rules() -> list[rbac.PolicyRuleArgs]:
    """What metrics-server reads: kubelets' /metrics/resource (nodes/metrics) and the objects it reports on."""
    return [
        rbac.PolicyRuleArgs(api_groups=[""], resources=["nodes/metrics"], verbs=["get"]),
        rbac.PolicyRuleArgs(api_groups=[""], resources=["pods", "nodes"], verbs=["get", "list", "watch"]),
    ]


def aggregated_reader_labels() -> dict[str, str]:
    """Folds read access to the Metrics API into the built-in view, edit and admin roles."""
    return {
        **labels(),
        "rbac.authorization.k8s.io/aggregate-to-view": "true",
        "rbac.authorization.k8s.io/aggregate-to-edit": "true",
        "rbac.authorization.k8s.io/aggregate-to-admin": "true",
    }


def _pem_base64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode()


class MetricsServer(pulumi.ComponentResource):
    """metrics-server in kube-system and its APIService, on the caller's Kubernetes provider."""

    api_service_name: pulumi.Output[str]
    deployment_name: pulumi.Output[str]

    def __init__(self, name: str, args: MetricsServerArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__(tokens.METRICS_SERVER, name, None, opts)
        self._name = name
        child = ResourceOptions(parent=self)

        account = core.ServiceAccount(f"{name}-sa", metadata=self._meta(NAME), opts=child)
        bindings = self._rbac(account.metadata.name)
        ca_pem, cert_pem, key_pem = self._serving_certificate()
        secret = core.Secret(
            f"{name}-tls",
            metadata=self._meta(TLS_SECRET_NAME),
            type="kubernetes.io/tls",
            string_data={TLS_CERT_KEY: cert_pem, TLS_KEY_KEY: key_pem},
            opts=ResourceOptions(parent=self, additional_secret_outputs=["data", "stringData"]),
        )
        service = core.Service(
            f"{name}-service",
            metadata=self._meta(NAME),
            spec=core.ServiceSpecArgs(
                selector=SELECTOR,
                ports=[core.ServicePortArgs(name=PORT_NAME, port=SERVICE_PORT, target_port=PORT_NAME, protocol="TCP")],
            ),
            opts=child,
        )
        pod = pod_spec(account.metadata.name, args.replicas)
        deployment = apps.Deployment(
            f"{name}-deployment",
            metadata=self._meta(NAME),
            spec=apps.DeploymentSpecArgs(
                replicas=args.replicas,
                selector=meta.LabelSelectorArgs(match_labels=SELECTOR),
                strategy=strategy(args.replicas),
                template=core.PodTemplateSpecArgs(metadata=meta.ObjectMetaArgs(labels=labels()), spec=pod),
            ),
            # Without its RBAC and certificate the pods only crash-loop until they appear.
            opts=ResourceOptions(parent=self, depends_on=[*bindings, secret],
                                 custom_timeouts=rollout_timeouts(pod, update_batches=args.replicas)),
        )
        self._network_policy()
        if args.replicas > 1:
            # With one replica a minAvailable: 1 budget would block every node drain.
            policy.PodDisruptionBudget(
                f"{name}-pdb",
                metadata=self._meta(NAME),
                spec=policy.PodDisruptionBudgetSpecArgs(
                    min_available=1, selector=meta.LabelSelectorArgs(match_labels=SELECTOR)
                ),
                opts=child,
            )
        api_service = apireg.APIService(
            f"{name}-apiservice",
            metadata=metadata(API_SERVICE_NAME, labels=labels()),
            spec=apireg.APIServiceSpecArgs(
                group=API_GROUP,
                version=API_VERSION,
                group_priority_minimum=100,
                version_priority=100,
                service=apireg.ServiceReferenceArgs(
                    name=service.metadata.name, namespace=service.metadata.namespace, port=SERVICE_PORT
                ),
                ca_bundle=ca_pem.apply(_pem_base64),
                insecure_skip_tls_verify=False,
            ),
            # Registered only once pods serve it: an APIService without a backend breaks discovery for everyone.
            opts=ResourceOptions(parent=self, depends_on=[deployment, service]),
        )

        self.api_service_name = api_service.metadata.name
        self.deployment_name = deployment.metadata.name
        self.register_outputs({"apiServiceName": self.api_service_name, "deploymentName": self.deployment_name})

    def _meta(self, object_name: str, namespace: str | None = NAMESPACE) -> meta.ObjectMetaArgs:
        return metadata(object_name, labels=labels(), namespace=namespace)

    def _network_policy(self) -> None:
        """Only the serving port is reachable (enforced once the cluster runs a policy engine; the bridge CNI
        does not). From any source: the apiservers' overlay addresses are not known here, and the port
        authenticates every request (only /livez and /readyz are anonymous). Egress stays open: the kubelets
        and the apiservers are node addresses this component does not know either."""
        networking.NetworkPolicy(
            f"{self._name}-netpol",
            metadata=self._meta(NAME),
            spec=networking.NetworkPolicySpecArgs(
                pod_selector=meta.LabelSelectorArgs(match_labels=SELECTOR),
                policy_types=["Ingress"],
                ingress=[
                    networking.NetworkPolicyIngressRuleArgs(
                        ports=[networking.NetworkPolicyPortArgs(port=PORT_NAME, protocol="TCP")]
                    )
                ],
            ),
            opts=ResourceOptions(parent=self),
        )

    def _rbac(self, account: pulumi.Input[str]) -> list[pulumi.Resource]:
        child = ResourceOptions(parent=self)
        name = self._name
        subjects = [rbac.SubjectArgs(kind="ServiceAccount", name=account, namespace=NAMESPACE)]
        rbac.ClusterRole(
            f"{name}-aggregated-reader",
            metadata=metadata(AGGREGATED_READER_ROLE, labels=aggregated_reader_labels()),
            rules=[
                rbac.PolicyRuleArgs(api_groups=[API_GROUP], resources=["pods", "nodes"], verbs=["get", "list", "watch"])
            ],
            opts=child,
        )
        scraper = rbac.ClusterRole(
            f"{name}-scraper-role",
            metadata=self._meta(SCRAPER_ROLE, None),
            rules=scraper_rules(),
            opts=child,
        )

        def role_ref(kind: str, role: pulumi.Input[str]) -> rbac.RoleRefArgs:
            return rbac.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind=kind, name=role)

        return [
            # Reads the requestheader and client CAs the apiserver publishes for extension apiservers.
            rbac.RoleBinding(
                f"{name}-auth-reader",
                metadata=self._meta(AUTH_READER_BINDING),
                role_ref=role_ref("Role", "extension-apiserver-authentication-reader"),
                subjects=subjects,
                opts=child,
            ),
            # Delegates authentication and authorization of Metrics API callers (TokenReview, SubjectAccessReview).
            rbac.ClusterRoleBinding(
                f"{name}-auth-delegator",
                metadata=self._meta(AUTH_DELEGATOR_BINDING, None),
                role_ref=role_ref("ClusterRole", "system:auth-delegator"),
                subjects=subjects,
                opts=child,
            ),
            rbac.ClusterRoleBinding(
                f"{name}-scraper-binding",
                metadata=self._meta(SCRAPER_ROLE, None),
                role_ref=role_ref("ClusterRole", scraper.metadata.name),
                subjects=subjects,
                opts=child,
            ),
        ]

    def _serving_certificate(self) -> tuple[pulumi.Output[str], pulumi.Output[str], pulumi.Output[str]]:
        """(CA certificate, serving certificate, serving key) PEMs. A CA of its own, not the cluster's:
        its key never has to leave Pulumi's state, and what it signs is trusted for this APIService only.
        Lifetimes as the cluster's own certificates (components/facts.py). A reissued serving certificate
        needs no restart: the kubelet refreshes the Secret volume and k8s.io/apiserver, which
        metrics-server is built on, reloads --tls-cert-file/--tls-private-key-file when they change."""
        child = ResourceOptions(parent=self)
        name = self._name
        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca_cert = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"{NAME} serving CA"),
            is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=CA_USES,
            opts=child,
        )
        key = tls.PrivateKey(f"{name}-serving-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        request = tls.CertRequest(
            f"{name}-serving-csr",
            private_key_pem=key.private_key_pem,
            # the renewal round: re-issued by the first `pulumi up` of each (facts.LEAF_RENEWAL_DAYS)
            subject=tls.CertRequestSubjectArgs(common_name=serving_dns_names()[0], serial_number=renewal_serial()),
            dns_names=serving_dns_names(),
            opts=child,
        )
        cert = tls.LocallySignedCert(
            f"{name}-serving",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca_cert.cert_pem,
            validity_period_hours=LEAF_VALIDITY_HOURS,
            early_renewal_hours=LEAF_EARLY_RENEWAL_HOURS,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            opts=child,
        )
        return ca_cert.cert_pem, cert.cert_pem, pulumi.Output.secret(key.private_key_pem)
