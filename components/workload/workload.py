"""The workload of one stack: its namespace, the MySQL set and the Guestbook."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components import tokens
from components.facts import CLUSTER_DNS_LABELS, DEFAULT_DENY_POLICY, DNS_EGRESS_POLICY, KUBE_SYSTEM
from components.kube.objects import ZoneSpread, metadata, owned
from components.settings.schema import GuestbookSettings, MysqlSecrets, MysqlSettings
from components.workload.guestbook import Guestbook, GuestbookArgs
from components.workload.mysql.backup import BackupTarget
from components.workload.mysql.set import MySqlReplicatedSet, MySqlReplicatedSetArgs


@dataclass
class WorkloadArgs:
    namespace: str
    mysql: MysqlSettings
    mysql_secrets: MysqlSecrets
    guestbook: GuestbookSettings
    # required on a cluster whose every node has its zone label (the aws cluster built here)
    zone_spread: ZoneSpread = "preferred"
    # What each part must wait for on the cluster (its DNS, its volumes), and nothing more: on a new
    # cluster the MySQL set starts as soon as DNS and storage serve, not after every add-on.
    mysql_needs: Sequence[pulumi.Resource] = ()
    guestbook_needs: Sequence[pulumi.Resource] = ()
    # The bucket and key of the set's backups (mysql.backup set): built by the aws stack, or the user's.
    mysql_backup: BackupTarget | None = None
    # False where the provider renders YAML (no Server-Side Apply): the set cannot patch its claims.
    grow_claims: bool = True


net = k8s.networking.v1
meta = k8s.meta.v1

DEFAULT_DENY = DEFAULT_DENY_POLICY
DNS_EGRESS = DNS_EGRESS_POLICY
DNS_PORT = 53


def default_deny_spec() -> net.NetworkPolicySpecArgs:
    """Every pod of the namespace, in and out: nothing is allowed that a policy of its own does not
    allow. Each part's policies (the MySQL set's, the Guestbook's) open exactly what it uses."""
    return net.NetworkPolicySpecArgs(pod_selector=meta.LabelSelectorArgs(), policy_types=["Ingress", "Egress"])


def dns_egress_spec() -> net.NetworkPolicySpecArgs:
    """Every pod may ask the cluster DNS (UDP, and TCP for large answers), and only it: by the DNS
    pods' label in kube-system, not by address (a Service address is translated before policy)."""
    return net.NetworkPolicySpecArgs(
        pod_selector=meta.LabelSelectorArgs(),
        policy_types=["Egress"],
        egress=[net.NetworkPolicyEgressRuleArgs(
            to=[net.NetworkPolicyPeerArgs(
                namespace_selector=meta.LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": KUBE_SYSTEM}),
                pod_selector=meta.LabelSelectorArgs(match_labels=dict(CLUSTER_DNS_LABELS)))],
            ports=[net.NetworkPolicyPortArgs(protocol=protocol, port=DNS_PORT) for protocol in ("UDP", "TCP")],
        )],
    )


class Workload(pulumi.ComponentResource):
    """Everything that runs on the cluster, in its own namespace (never `default`).

    The caller passes the Kubernetes provider in `opts`; every child inherits it.
    """

    def __init__(self, name: str, args: WorkloadArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__(tokens.WORKLOAD, name, None, opts)
        child = ResourceOptions(parent=self)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=metadata(
                args.namespace,
                labels=owned({
                    # mysqld and Redis run non-root; Apache needs only baseline capabilities.
                    "pod-security.kubernetes.io/enforce": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted",
                }),
            ),
            # Deleting a namespace deletes every claim in it, whatever protects the set: with
            # protectStateful it is protected (destroy and replacement stop) and, once unprotected,
            # still left in the cluster by a destroy (retainOnDelete; docs/mysql.md "What destroy keeps").
            opts=ResourceOptions(parent=self, protect=args.mysql.protect, retain_on_delete=args.mysql.protect or None),
        )
        namespace = self.namespace.metadata.apply(lambda m: m.name or args.namespace)
        # Enforced where the cluster runs a NetworkPolicy agent (this program's clusters always do,
        # addons/network_policy.py; the policy pack checks it); on an existing cluster, by its CNI.
        self.network_policies = [
            net.NetworkPolicy(f"{name}-{policy}", metadata=metadata(policy, labels=owned({}), namespace=namespace),
                              spec=spec, opts=child)
            for policy, spec in ((DEFAULT_DENY, default_deny_spec()), (DNS_EGRESS, dns_egress_spec()))
        ]
        self.mysql = MySqlReplicatedSet(
            f"{name}-mysql",
            MySqlReplicatedSetArgs(settings=args.mysql, secrets=args.mysql_secrets, namespace=namespace,
                                   zone_spread=args.zone_spread, backup_target=args.mysql_backup,
                                   grow_claims=args.grow_claims),
            opts=ResourceOptions(parent=self, depends_on=[*args.mysql_needs, *self.network_policies]),
        )
        self.guestbook = (
            Guestbook(f"{name}-guestbook",
                      GuestbookArgs(settings=args.guestbook, namespace=namespace, zone_spread=args.zone_spread),
                      opts=ResourceOptions(parent=self, depends_on=[*args.guestbook_needs, *self.network_policies]))
            if args.guestbook.enabled
            else None
        )
        self.frontend_address: pulumi.Output[str] = (
            self.guestbook.frontend_address if self.guestbook else pulumi.Output.from_input("")
        )
        self.register_outputs({
            "namespace": namespace,
            "networkPolicies": [DEFAULT_DENY, DNS_EGRESS],
            "mysqlPrimaryHost": self.mysql.primary_host,
            "mysqlReadHost": self.mysql.read_host,
            "frontendAddress": self.frontend_address,
        })
