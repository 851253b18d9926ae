"""What a bare Kubernetes cluster lacks before the workload can run on it (clusterMode=aws).

The Fedora-style cluster of components/aws/cluster.py starts with no add-ons: no
cluster DNS (the kubelets point pods at an address nothing answers), no volume
provisioner (every PersistentVolumeClaim stays Pending), and no metrics API (an
HPA never scales), and a pod network that enforces no NetworkPolicy. ClusterAddons
installs the four on the cluster's own provider. An existing cluster
(clusterMode=existing) is assumed to have them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components import tokens
from components.addons.coredns import CoreDns, CoreDnsArgs
from components.addons.ebs_csi import EbsCsiDriver, EbsCsiDriverArgs
from components.addons.metrics_server import MetricsServer, MetricsServerArgs
from components.addons.network_policy import NetworkPolicyAgent, NetworkPolicyAgentArgs
from components.facts import KUBE_SYSTEM
from components.settings.schema import AddonSettings


@dataclass
class ClusterAddonsArgs:
    settings: AddonSettings
    cluster_id: str  # unique to the stack: what the EBS volumes are tagged for
    region: str
    dns_service_ip: str  # the address every kubelet already hands its pods (ClusterLayout.dns_service_ip)
    tags: dict[str, str]


# Pod Security levels of the namespaces the cluster comes with (the workload's own namespace sets its
# levels where it is created, components/workload/workload.py). kube-system holds what the add-ons
# need (the EBS node plugin is privileged, the network policy agent and the EBS controller use the
# host network): enforced privileged, audited and warned at baseline, so that anything added there
# beyond the add-ons is visible. `default` holds nothing of the program's: restricted.
POD_SECURITY: dict[str, dict[str, str]] = {
    KUBE_SYSTEM: {"pod-security.kubernetes.io/enforce": "privileged",
                  "pod-security.kubernetes.io/audit": "baseline",
                  "pod-security.kubernetes.io/warn": "baseline"},
    "default": {"pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
                "pod-security.kubernetes.io/warn": "restricted"},
}


class ClusterAddons(pulumi.ComponentResource):
    """CoreDNS, the EBS CSI driver with the default StorageClass and the data volumes' class, metrics-server
    and the NetworkPolicy agent.

    The caller passes the cluster's Kubernetes provider in `opts`; every child inherits it.
    """

    dns_service_ip: pulumi.Output[str]
    storage_class_name: pulumi.Output[str]
    data_storage_class_name: pulumi.Output[str]
    metrics_api: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterAddonsArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__(tokens.CLUSTER_ADDONS, name, None, opts)
        child = ResourceOptions(parent=self)
        s = args.settings
        dns = CoreDns(f"{name}-coredns", CoreDnsArgs(service_ip=args.dns_service_ip, replicas=s.coredns_replicas),
                      opts=child)
        storage = EbsCsiDriver(
            f"{name}-ebs-csi",
            EbsCsiDriverArgs(cluster_id=args.cluster_id, region=args.region, storage_class=s.storage_class,
                             reclaim_policy=s.volume_reclaim_policy, controller_replicas=s.ebs_controller_replicas,
                             tags=args.tags, data_volume=s.data_volume, nodes=s.minions),
            opts=child,
        )
        metrics = MetricsServer(f"{name}-metrics-server", MetricsServerArgs(), opts=child) if s.metrics_server \
            else None
        self.network_policy = NetworkPolicyAgent(f"{name}-network-policy", NetworkPolicyAgentArgs(nodes=s.minions),
                                                 opts=child)
        self.namespaces = self._pod_security(name)
        # What a workload may wait for, each on its own: DNS, volumes, the Metrics API, policy enforcement.
        self.dns, self.storage, self.metrics = dns, storage, metrics
        self.dns_service_ip = dns.service_ip
        self.storage_class_name = storage.storage_class_name
        self.data_storage_class_name = storage.data_storage_class_name
        self.metrics_api = metrics.api_service_name if metrics else pulumi.Output.from_input("")
        self.register_outputs({
            "podSecurity": {ns: labels["pod-security.kubernetes.io/enforce"] for ns, labels in POD_SECURITY.items()},
            "dnsServiceIp": self.dns_service_ip,
            "storageClassName": self.storage_class_name,
            "dataStorageClassName": self.data_storage_class_name,
            "metricsApi": self.metrics_api,
            "networkPolicyAgent": self.network_policy.daemon_set_name,
        })

    def _pod_security(self, name: str) -> list[k8s.core.v1.NamespacePatch]:
        """The labels on namespaces that exist before the program (a server-side apply patch, so that
        nothing else of theirs is touched and deleting the stack takes only these labels away)."""
        return [
            k8s.core.v1.NamespacePatch(f"{name}-{namespace}-namespace",
                                       metadata=k8s.meta.v1.ObjectMetaPatchArgs(name=namespace, labels=labels),
                                       opts=ResourceOptions(parent=self))
            for namespace, labels in POD_SECURITY.items()
        ]
