"""NetworkPolicyAgent: what makes the cluster's NetworkPolicies hold (clusterMode=aws).

The pod network is CNI bridge + portmap + bandwidth over a static VXLAN overlay
(node/pod_network.py): it moves packets and enforces nothing. kubernetes-sigs
kube-network-policies is the agent that adds enforcement to such a network without
replacing it: one pod per node (hostNetwork), nftables rules that send the first packet
of every connection to or from a pod a policy selects to an NFQUEUE, and a userspace
verdict from the NetworkPolicy API; conntrack carries the rest of the connection. It is
the implementation kind and kops' kindnet use, small (one binary, no CRDs, no datastore)
and needs nothing of the overlay but br_netfilter, which atomic-node loads on every node.

Upstream's install.yaml (same name, labels, RBAC, mounts and nfqueue id), changed where it matters:

- `--fail-open=false`: if the agent dies (a crash, an OOM kill), its rules stay and the
  first packets of new connections to or from policed pods are dropped until it is back,
  rather than passed unchecked. A NetworkPolicy here is a security control (MySQL's clone
  port and accounts); refusing new connections on one node for the seconds a restart takes
  is the lesser failure. Established connections keep flowing (conntrack). A graceful stop
  (a rolling update) removes the rules first (upstream's dataplane/controller.go Shutdown),
  so for the seconds until the new pod syncs that node's traffic is not policed: the price
  of not dropping traffic on every upgrade.
- Its metrics on 127.0.0.1 only (it shares the node's network; nothing scrapes it), which is
  also what the kubelet probes.
- Requests and limits, probes and system-node-critical priority (the policy pack; a node
  without its agent drops policed traffic).

What was not run here: the agent itself (a container image and an nftables datapath, on a
kernel and CRI-O this machine does not have). The tests prove its objects against a real
kube-apiserver, its RBAC by SubjectAccessReview, and the workload's policies against the
NetworkPolicy API's semantics (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components import tokens
from components.facts import KUBE_SYSTEM
from components.kube.objects import http_probe, metadata, owned, resources, rollout_timeouts
from components.pins import NETWORK_POLICY_AGENT_IMAGE
from components.settings.schema import Resources

meta = k8s.meta.v1
core = k8s.core.v1
apps = k8s.apps.v1
rbac = k8s.rbac.v1

NAMESPACE = KUBE_SYSTEM
NAME = "kube-network-policies"  # upstream's: its docs and `kubectl -n kube-system logs ds/...` habits
SELECTOR = {"app": NAME}
# Upstream's queue number when it runs alone (its chart's default without admin network policies).
NFQUEUE_ID = 98
METRICS_ADDRESS = "127.0.0.1"
METRICS_PORT = 9080  # upstream's; no other host-network listener here uses it (facts.py ports)
# Upstream's requests; the limits leave room for the informers of a few thousand pods.
RESOURCES = Resources(cpu_request="100m", memory_request="50Mi", cpu_limit="1", memory_limit="256Mi")
NRI_SOCKET_DIR = "/var/run/nri"  # CRI-O's NRI socket: pod IPs before the pods start (upstream's race fix)
NETNS_DIR = "/var/run/netns"  # where CRI-O pins pod network namespaces


@dataclass
class NetworkPolicyAgentArgs:
    nodes: int  # the minions: how many rounds a rolling update of the agent takes

    def __post_init__(self) -> None:
        if isinstance(self.nodes, bool) or not isinstance(self.nodes, int) or self.nodes < 1:
            raise ValueError(f"the network policy agent needs at least one node, not {self.nodes!r}")


def labels() -> dict[str, str]:
    return owned({**SELECTOR, "k8s-app": NAME, "tier": "node"})


def container_args() -> list[str]:
    return [
        "/bin/netpol",
        "--hostname-override=$(MY_NODE_NAME)",
        # Upstream's: at 2 the agent logs each verdict it makes (first packets only), the record of
        # what a policy refused; the kubelet rotates container logs.
        "--v=2",
        f"--nfqueue-id={NFQUEUE_ID}",
        "--fail-open=false",
        f"--metrics-bind-address={METRICS_ADDRESS}:{METRICS_PORT}",
    ]


def rules() -> list[rbac.PolicyRuleArgs]:
    """Upstream's: it reads the policies and the pods and namespaces they select, and writes nothing."""
    return [
        rbac.PolicyRuleArgs(api_groups=[""], resources=["pods", "namespaces"], verbs=["list", "watch"]),
        rbac.PolicyRuleArgs(api_groups=["networking.k8s.io"], resources=["networkpolicies"], verbs=["list", "watch"]),
    ]


def _probe(initial_delay: int | None) -> core.ProbeArgs:
    # The metrics endpoint answers once the process runs its informers and queue; on 127.0.0.1,
    # which the kubelet (in the node's network namespace) reaches.
    return http_probe("/metrics", METRICS_PORT, host=METRICS_ADDRESS, initial_delay_seconds=initial_delay,
                      period_seconds=10, failure_threshold=3)


def container() -> core.ContainerArgs:
    return core.ContainerArgs(
        name=NAME,
        image=NETWORK_POLICY_AGENT_IMAGE,
        image_pull_policy="IfNotPresent",
        args=container_args(),
        env=[core.EnvVarArgs(name="MY_NODE_NAME", value_from=core.EnvVarSourceArgs(
            field_ref=core.ObjectFieldSelectorArgs(field_path="spec.nodeName")))],
        resources=resources(RESOURCES),
        liveness_probe=_probe(10),
        readiness_probe=_probe(None),
        # nftables and NFQUEUE need NET_ADMIN in the host's network namespace; the NRI socket and
        # the pinned network namespaces need privileged (upstream's, as for any CNI agent).
        security_context=core.SecurityContextArgs(privileged=True, read_only_root_filesystem=True,
                                                  capabilities=core.CapabilitiesArgs(add=["NET_ADMIN"])),
        volume_mounts=[
            core.VolumeMountArgs(name="nri-plugin", mount_path=NRI_SOCKET_DIR),
            core.VolumeMountArgs(name="netns", mount_path=NETNS_DIR, mount_propagation="HostToContainer"),
        ],
    )


def pod_spec(service_account: pulumi.Input[str]) -> core.PodSpecArgs:
    return core.PodSpecArgs(
        service_account_name=service_account,
        automount_service_account_token=True,  # it watches the API
        enable_service_links=False,
        host_network=True,
        # The API by the service IP the kubelet injects; no name to resolve, so it does not wait for
        # CoreDNS (which, in turn, needs the agent to admit its clients).
        dns_policy="Default",
        priority_class_name="system-node-critical",
        node_selector={"kubernetes.io/os": "linux"},
        # Every node that runs pods needs it, whatever its taints.
        tolerations=[core.TolerationArgs(operator="Exists")],
        termination_grace_period_seconds=30,
        # A privileged container runs unconfined whatever the profile says; RuntimeDefault is stated so that it
        # holds the day the agent can drop privileged.
        security_context=core.PodSecurityContextArgs(seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault")),
        containers=[container()],
        volumes=[
            core.VolumeArgs(name="nri-plugin", host_path=core.HostPathVolumeSourceArgs(
                path=NRI_SOCKET_DIR, type="DirectoryOrCreate")),
            core.VolumeArgs(name="netns", host_path=core.HostPathVolumeSourceArgs(
                path=NETNS_DIR, type="DirectoryOrCreate")),
        ],
    )


class NetworkPolicyAgent(pulumi.ComponentResource):
    """kube-network-policies on every node, on the caller's Kubernetes provider."""

    daemon_set_name: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkPolicyAgentArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__(tokens.NETWORK_POLICY_AGENT, name, None, opts)
        child = ResourceOptions(parent=self)
        account = core.ServiceAccount(f"{name}-sa", metadata=metadata(NAME, labels=labels(), namespace=NAMESPACE),
                                      opts=child)
        role = rbac.ClusterRole(f"{name}-role", metadata=metadata(NAME, labels=labels()), rules=rules(), opts=child)
        binding = rbac.ClusterRoleBinding(
            f"{name}-binding",
            metadata=metadata(NAME, labels=labels()),
            role_ref=rbac.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                      name=role.metadata.name),
            subjects=[rbac.SubjectArgs(kind="ServiceAccount", name=account.metadata.name, namespace=NAMESPACE)],
            opts=child,
        )
        pod = pod_spec(account.metadata.name)
        # pulumi-kubernetes awaits a DaemonSet until every node runs the updated pod ready (its
        # DaemonSet await logic, pulumi/pulumi-kubernetes#2953): what the workload waits for.
        self.daemon_set = apps.DaemonSet(
            f"{name}-daemonset",
            metadata=metadata(NAME, labels=labels(), namespace=NAMESPACE),
            spec=apps.DaemonSetSpecArgs(
                selector=meta.LabelSelectorArgs(match_labels=SELECTOR),
                update_strategy=apps.DaemonSetUpdateStrategyArgs(
                    type="RollingUpdate", rolling_update=apps.RollingUpdateDaemonSetArgs(max_unavailable=1)),
                template=core.PodTemplateSpecArgs(metadata=meta.ObjectMetaArgs(labels=labels()), spec=pod),
            ),
            opts=ResourceOptions(parent=self, depends_on=[binding],
                                 custom_timeouts=rollout_timeouts(pod, update_batches=args.nodes)),
        )
        self.daemon_set_name = self.daemon_set.metadata.name
        self.register_outputs({"daemonSetName": self.daemon_set_name, "image": NETWORK_POLICY_AGENT_IMAGE})
