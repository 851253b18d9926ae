"""CoreDNS: the cluster DNS every kubelet's clusterDNS points at.

The objects are kubeadm's (same names, labels, Corefile and probes), so `kubectl -n
kube-system get deploy coredns`, `svc/kube-dns` and the upstream troubleshooting docs
work unchanged; on top of them: a non-root uid, RuntimeDefault seccomp, a CPU limit,
a PodDisruptionBudget, a NetworkPolicy, and the fixed Service IP given by the cluster layout.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components import tokens
from components.facts import CLUSTER_DNS_LABELS, CLUSTER_DOMAIN, KUBE_SYSTEM
from components.kube.objects import (
    http_probe,
    metadata,
    owned,
    resources,
    restricted,
    rollout_timeouts,
    spread_by_host,
)
from components.pins import COREDNS_IMAGE
from components.settings.schema import Resources

meta = k8s.meta.v1
core = k8s.core.v1
apps = k8s.apps.v1
rbac = k8s.rbac.v1
policy = k8s.policy.v1
net = k8s.networking.v1

NAMESPACE = KUBE_SYSTEM
# Upstream's names: kubectl habits, docs and kubeadm's tooling look for exactly these.
DEPLOYMENT_NAME = "coredns"
SERVICE_NAME = "kube-dns"
SERVICE_ACCOUNT_NAME = "coredns"
CONFIG_MAP_NAME = "coredns"
CLUSTER_ROLE_NAME = "system:coredns"
SELECTOR = dict(CLUSTER_DNS_LABELS)

CONFIG_DIR = "/etc/coredns"
COREFILE_KEY = "Corefile"
COREFILE_PATH = f"{CONFIG_DIR}/{COREFILE_KEY}"

DNS_PORT = 53
METRICS_PORT = 9153
HEALTH_PORT = 8080  # the health plugin's default listener
READY_PORT = 8181  # the ready plugin's default listener
# The image's own user (distroless "nonroot"). It must be given as a number: the image
# declares USER nonroot:nonroot by name, which the kubelet cannot check against runAsNonRoot.
COREDNS_UID = 65532

# (name, port, protocol) of everything the pod listens on; the first three are the Service's.
PORTS = (
    ("dns", DNS_PORT, "UDP"),
    ("dns-tcp", DNS_PORT, "TCP"),
    ("metrics", METRICS_PORT, "TCP"),
    ("liveness-probe", HEALTH_PORT, "TCP"),
    ("readiness-probe", READY_PORT, "TCP"),
)
SERVICE_PORTS = PORTS[:3]

RESOURCES = Resources(cpu_request="100m", memory_request="70Mi", cpu_limit="1", memory_limit="170Mi")

_DOMAIN_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_cluster_domain(domain: str) -> str:
    if len(domain) > 253 or not all(_DOMAIN_LABEL.match(part) for part in domain.split(".")):
        raise ValueError(f"cluster domain {domain!r} is not a lower-case DNS name without a trailing dot")
    return domain


@dataclass
class CoreDnsArgs:
    service_ip: str  # the cluster DNS IP kubelets point at (ClusterLayout.dns_service_ip)
    replicas: int  # >= 1
    cluster_domain: str = CLUSTER_DOMAIN

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.service_ip)  # raises ValueError on anything else
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise ValueError(f"CoreDNS replicas must be an integer >= 1, got {self.replicas!r}")
        check_cluster_domain(self.cluster_domain)


def render_corefile(cluster_domain: str) -> str:
    """kubeadm's Corefile for the given cluster domain."""
    domain = check_cluster_domain(cluster_domain)
    return "\n".join(
        [
            f".:{DNS_PORT} {{",
            "    errors",
            # Keeps answering for 5s after SIGTERM while the endpoint is removed from the Service.
            "    health {",
            "       lameduck 5s",
            "    }",
            "    ready",
            # in-addr.arpa/ip6.arpa: PTR records of Services and pods; names the plugin does not
            # know fall through to forward instead of NXDOMAIN.
            f"    kubernetes {domain} in-addr.arpa ip6.arpa {{",
            # kube-dns's behaviour: a-b-c-d.<ns>.pod.<domain> is answered from the name alone,
            # without checking that such a pod exists (`pods verified` would, by watching every pod).
            "       pods insecure",
            "       fallthrough in-addr.arpa ip6.arpa",
            "       ttl 30",
            "    }",
            f"    prometheus :{METRICS_PORT}",
            # The node's resolver (dnsPolicy Default). The cap on queries in flight to a slow upstream
            # keeps memory under the container's limit.
            "    forward . /etc/resolv.conf {",
            "       max_concurrent 1000",
            "    }",
            "    cache 30",
            # loop stops CoreDNS (CrashLoopBackOff) when the node's resolv.conf points back at it.
            "    loop",
            # reload re-reads the mounted ConfigMap, so a Corefile change needs no pod restart.
            "    reload",
            "    loadbalance",
            "}",
            "",
        ]
    )


def labels() -> dict[str, str]:
    return owned(SELECTOR)


def _meta(name: str, namespaced: bool = True) -> meta.ObjectMetaArgs:
    return metadata(name, labels=labels(), namespace=NAMESPACE if namespaced else None)


def pdb_spec() -> policy.PodDisruptionBudgetSpecArgs:
    """At most one pod evicted at a time, whatever the replica count: with one replica a drain still
    goes through (minAvailable 1 would block every drain), with more the others keep serving."""
    return policy.PodDisruptionBudgetSpecArgs(
        max_unavailable=1,
        selector=meta.LabelSelectorArgs(match_labels=SELECTOR),
        # A crash-looping pod must not use up the budget and block node drains.
        unhealthy_pod_eviction_policy="AlwaysAllow",
    )


def _container() -> core.ContainerArgs:
    return core.ContainerArgs(
        name="coredns",
        image=COREDNS_IMAGE,
        image_pull_policy="IfNotPresent",
        args=["-conf", COREFILE_PATH],
        ports=[core.ContainerPortArgs(name=n, container_port=p, protocol=proto) for n, p, proto in PORTS],
        resources=resources(RESOURCES),
        liveness_probe=http_probe("/health", "liveness-probe", scheme="HTTP", initial_delay_seconds=60,
                                  timeout_seconds=5, success_threshold=1, failure_threshold=5),
        readiness_probe=http_probe("/ready", "readiness-probe", scheme="HTTP", period_seconds=10, timeout_seconds=3),
        # /coredns carries the file capability cap_net_bind_service=+ep, so a non-root process binds :53
        # as long as the capability stays in the bounding/permitted sets: dropping it makes exec fail.
        # no_new_privs (allowPrivilegeEscalation false) still lets a file capability the process
        # already holds in its permitted set take effect.
        security_context=restricted(add=["NET_BIND_SERVICE"]),
        volume_mounts=[core.VolumeMountArgs(name="config-volume", mount_path=CONFIG_DIR, read_only=True)],
    )


def pod_spec(service_account: pulumi.Input[str], config_map: pulumi.Input[str]) -> core.PodSpecArgs:
    return core.PodSpecArgs(
        priority_class_name="system-cluster-critical",
        service_account_name=service_account,
        # The kubernetes plugin lists and watches the API with this token.
        automount_service_account_token=True,
        enable_service_links=False,
        # The pod resolves upstream names through the node's resolver, never through itself.
        dns_policy="Default",
        affinity=spread_by_host(SELECTOR),
        tolerations=[core.TolerationArgs(key="CriticalAddonsOnly", operator="Exists")],
        node_selector={"kubernetes.io/os": "linux"},
        security_context=core.PodSecurityContextArgs(
            run_as_non_root=True,
            run_as_user=COREDNS_UID,
            run_as_group=COREDNS_UID,
            seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        containers=[_container()],
        volumes=[
            core.VolumeArgs(
                name="config-volume",
                config_map=core.ConfigMapVolumeSourceArgs(
                    name=config_map, items=[core.KeyToPathArgs(key=COREFILE_KEY, path=COREFILE_KEY)]
                ),
            )
        ],
    )


def service_spec(service_ip: str) -> core.ServiceSpecArgs:
    return core.ServiceSpecArgs(
        type="ClusterIP",
        # Fixed: every kubelet's clusterDNS was written with this address before the Service existed.
        cluster_ip=service_ip,
        selector=SELECTOR,
        ports=[core.ServicePortArgs(name=n, port=p, protocol=proto, target_port=n) for n, p, proto in SERVICE_PORTS],
    )


def network_policy_spec() -> net.NetworkPolicySpecArgs:
    """Only the ports CoreDNS serves, from any source: every pod and every node is a DNS client, and the
    kubelet probes from the node. The bridge CNI enforces no NetworkPolicy today; this one still holds
    the day an enforcing CNI is installed, and egress (API server, upstream resolvers) stays open."""
    return net.NetworkPolicySpecArgs(
        pod_selector=meta.LabelSelectorArgs(match_labels=SELECTOR),
        policy_types=["Ingress"],
        ingress=[
            net.NetworkPolicyIngressRuleArgs(
                ports=[net.NetworkPolicyPortArgs(port=p, protocol=proto) for _, p, proto in PORTS]
            )
        ],
    )


def cluster_role_rules() -> list[rbac.PolicyRuleArgs]:
    return [
        rbac.PolicyRuleArgs(
            api_groups=[""], resources=["endpoints", "services", "pods", "namespaces"], verbs=["list", "watch"]
        ),
        rbac.PolicyRuleArgs(api_groups=["discovery.k8s.io"], resources=["endpointslices"], verbs=["list", "watch"]),
    ]


class CoreDns(pulumi.ComponentResource):
    """kubeadm's CoreDNS (ServiceAccount, RBAC, Corefile, Deployment, kube-dns Service), hardened,
    plus a PodDisruptionBudget and a NetworkPolicy."""

    def __init__(self, name: str, args: CoreDnsArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__(tokens.CORE_DNS, name, None, opts)
        child = ResourceOptions(parent=self)

        self.service_account = core.ServiceAccount(
            f"{name}-serviceaccount", metadata=_meta(SERVICE_ACCOUNT_NAME), opts=child
        )
        self.cluster_role = rbac.ClusterRole(
            f"{name}-clusterrole",
            metadata=_meta(CLUSTER_ROLE_NAME, namespaced=False),
            rules=cluster_role_rules(),
            opts=child,
        )
        self.cluster_role_binding = rbac.ClusterRoleBinding(
            f"{name}-clusterrolebinding",
            metadata=_meta(CLUSTER_ROLE_NAME, namespaced=False),
            role_ref=rbac.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=self.cluster_role.metadata.name
            ),
            subjects=[
                rbac.SubjectArgs(kind="ServiceAccount", name=self.service_account.metadata.name, namespace=NAMESPACE)
            ],
            opts=child,
        )
        self.config_map = core.ConfigMap(
            f"{name}-config",
            metadata=_meta(CONFIG_MAP_NAME),
            data={COREFILE_KEY: render_corefile(args.cluster_domain)},
            opts=child,
        )
        pod = pod_spec(self.service_account.metadata.name, self.config_map.metadata.name)
        self.deployment = apps.Deployment(
            f"{name}-deployment",
            metadata=_meta(DEPLOYMENT_NAME),
            spec=apps.DeploymentSpecArgs(
                replicas=args.replicas,
                strategy=apps.DeploymentStrategyArgs(
                    type="RollingUpdate", rolling_update=apps.RollingUpdateDeploymentArgs(max_unavailable=1)
                ),
                selector=meta.LabelSelectorArgs(match_labels=SELECTOR),
                template=core.PodTemplateSpecArgs(metadata=meta.ObjectMetaArgs(labels=labels()), spec=pod),
            ),
            # Pods need their token's permissions from the start, or the kubernetes plugin never gets ready.
            # maxUnavailable 1: an update replaces one pod after the other.
            opts=ResourceOptions(parent=self, depends_on=[self.cluster_role_binding],
                                 custom_timeouts=rollout_timeouts(pod, update_batches=args.replicas)),
        )
        self.service = core.Service(
            f"{name}-service",
            # kubernetes.io/cluster-service is what `kubectl cluster-info` lists.
            metadata=metadata(
                SERVICE_NAME,
                namespace=NAMESPACE,
                labels={**labels(), "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                annotations={"prometheus.io/port": str(METRICS_PORT), "prometheus.io/scrape": "true"},
            ),
            spec=service_spec(args.service_ip),
            opts=child,
        )
        self.pdb = policy.PodDisruptionBudget(
            f"{name}-pdb", metadata=_meta(DEPLOYMENT_NAME), spec=pdb_spec(), opts=child
        )
        self.network_policy = net.NetworkPolicy(
            f"{name}-netpol", metadata=_meta(DEPLOYMENT_NAME), spec=network_policy_spec(), opts=child
        )

        self.service_ip: pulumi.Output[str] = self.service.spec.apply(lambda spec: str(spec.cluster_ip))
        self.deployment_name: pulumi.Output[str] = self.deployment.metadata.apply(lambda m: str(m.name))
        self.register_outputs({"serviceIp": self.service_ip, "deploymentName": self.deployment_name})
