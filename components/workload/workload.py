"""The workload of one stack: its namespace, the MySQL set and the Guestbook."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components import tokens
from components.kube.objects import metadata, owned
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
    # What each part must wait for on the cluster (its DNS, its volumes), and nothing more: on a new
    # cluster the MySQL set starts as soon as DNS and storage serve, not after every add-on.
    mysql_needs: Sequence[pulumi.Resource] = ()
    guestbook_needs: Sequence[pulumi.Resource] = ()
    # The bucket and key of the set's backups (mysql.backup set): built by the aws stack, or the user's.
    mysql_backup: BackupTarget | None = None


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
            opts=child,
        )
        namespace = self.namespace.metadata.apply(lambda m: m.name or args.namespace)
        self.mysql = MySqlReplicatedSet(
            f"{name}-mysql",
            MySqlReplicatedSetArgs(settings=args.mysql, secrets=args.mysql_secrets, namespace=namespace,
                                   backup_target=args.mysql_backup),
            opts=ResourceOptions(parent=self, depends_on=list(args.mysql_needs)),
        )
        self.guestbook = (
            Guestbook(f"{name}-guestbook", GuestbookArgs(settings=args.guestbook, namespace=namespace),
                      opts=ResourceOptions(parent=self, depends_on=list(args.guestbook_needs)))
            if args.guestbook.enabled
            else None
        )
        self.frontend_address: pulumi.Output[str] = (
            self.guestbook.frontend_address if self.guestbook else pulumi.Output.from_input("")
        )
        self.register_outputs({
            "namespace": namespace,
            "mysqlPrimaryHost": self.mysql.primary_host,
            "mysqlReadHost": self.mysql.read_host,
            "frontendAddress": self.frontend_address,
        })
