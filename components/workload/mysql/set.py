"""MySqlReplicatedSet: the Kubernetes tutorial's replicated MySQL, made production-grade.

Same shape as the tutorial (ConfigMap, headless + read Services, StatefulSet whose
ordinal 0 is the primary and whose new members clone from ordinal-1 on port 3307),
plus what it lacks: credentials in a Secret, a primary Service, GTID replication,
probes that watch replication, non-root read-only containers, a PDB and a
NetworkPolicy. The pods' behaviour lives in scripts/ (shipped in the ConfigMap) and the
config text in config.py; this module only wires.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumi_tls as tls
from pulumi import ResourceOptions

from components import tokens
from components.facts import (
    BACKUP_AGENT_PORT,
    BACKUP_METRICS_PORT,
    CA_USES,
    CA_VALIDITY_HOURS,
    CLONE_PORT,
    CLUSTER_DOMAIN,
    LEAF_EARLY_RENEWAL_HOURS,
    LEAF_VALIDITY_HOURS,
    MYSQL_PORT,
    MYSQLD_EXPORTER_PORT,
    quantity_bytes,
    renewal_serial,
)
from components.kube.objects import (
    ZoneSpread,
    await_timeouts,
    exec_probe,
    metadata,
    owned,
    resources,
    restricted,
    spread_over_zones,
)
from components.settings.schema import MysqlSecrets, MysqlSettings, Resources
from components.workload.mysql import backup as backups
from components.workload.mysql import budget
from components.workload.mysql import config as mysql_config

meta = k8s.meta.v1
core = k8s.core.v1
apps = k8s.apps.v1

# One uid for every container (the Percona image's own user is 1001), so that files the
# clone writes belong to mysqld. Above 10000 so that no host account shares it; the mysql
# and mariadb images run under any uid (their run and data dirs are world-writable/sticky,
# and the data volume is group-owned through fsGroup).
MYSQL_UID = 10999
DATA_VOLUME = "data"
DATA_SUBPATH = "mysql"
SECRET_MOUNT = "/etc/mysql-secrets"
# The Secret's keys (file names under SECRET_MOUNT); the scripts read them by these names.
VERIFY_PASSWORD_KEY = "verify-password"
PASSWORD_KEYS = ("root-password", "replication-password", "backup-password", VERIFY_PASSWORD_KEY, "exporter-password")

# pulumi-kubernetes: a Patch resource applies with force (takes over fields another manager owns).
PATCH_FORCE_ANNOTATION = "pulumi.com/patchForce"

# init-mysql copies two files; the clone and sidecar containers are sized by their own settings.
INIT_RESOURCES = Resources(cpu_request="50m", memory_request="32Mi", cpu_limit="200m", memory_limit="64Mi")


@dataclass
class MySqlReplicatedSetArgs:
    settings: MysqlSettings
    secrets: MysqlSecrets
    namespace: pulumi.Input[str]
    # Pods carrying these labels may reach 3306; None means {"<name>-client": "true"}.
    client_label: Mapping[str, str] | None = None
    # Over the zones: required where every node has its zone label (the aws cluster), else preferred.
    zone_spread: ZoneSpread = "preferred"
    # Where backups go (settings.backup set): the bucket and its key (backup.BackupTarget).
    backup_target: backups.BackupTarget | None = None
    # Grow the existing claims to settings.storage_size with Patch resources (they need Server-Side
    # Apply: False for a provider that renders YAML, which applies nothing).
    grow_claims: bool = True


def selector_labels(name: str) -> dict[str, str]:
    """The immutable labels the StatefulSet, Services, PDB and NetworkPolicy select on."""
    return {"app.kubernetes.io/name": "mysql", "app.kubernetes.io/instance": name}


def labels(name: str) -> dict[str, str]:
    return owned({**selector_labels(name), "app.kubernetes.io/component": "database"})


def default_client_label(name: str) -> dict[str, str]:
    return {f"{name}-client": "true"}


def config_checksum(data: Mapping[str, str]) -> str:
    """Changes whenever the ConfigMap does, so the pods roll to pick up new scripts or config."""
    return hashlib.sha256(json.dumps(dict(data), sort_keys=True).encode()).hexdigest()


def credentials_checksum(key: str, passwords: Mapping[str, str]) -> str:
    """HMAC-SHA256 of the passwords under `key` (a random secret of the stack's own): it changes when any
    password does, so the pods roll, and shows nothing of them. A plain hash of a chosen password could be
    tested against guesses by anyone who reads the plan or the cluster; without the key it cannot."""
    message = json.dumps(dict(passwords), sort_keys=True).encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def _probe(command: list[str], timing: budget.ProbeTiming) -> core.ProbeArgs:
    return exec_probe(command, period_seconds=timing.period_seconds, timeout_seconds=timing.timeout_seconds,
                      failure_threshold=timing.failure_threshold)


class MySqlReplicatedSet(pulumi.ComponentResource):
    """A primary (`<name>-0`) and replicas cloned from their predecessor, on the caller's provider."""

    def __init__(self, name: str, args: MySqlReplicatedSetArgs, opts: ResourceOptions | None = None) -> None:
        if (args.settings.backup is None) != (args.backup_target is None):
            raise ValueError("settings.backup and backup_target go together: backups need a bucket and a key")
        super().__init__(tokens.MYSQL_SET, name, None, opts)
        self._settings = settings = args.settings
        self._backup_target = args.backup_target
        self._namespace = args.namespace
        self._zone_spread = args.zone_spread
        child = ResourceOptions(parent=self)
        stateful = ResourceOptions(parent=self, protect=settings.protect)

        data = mysql_config.config_map_data(settings.engine, settings.version, settings.apply_threads)
        self.config_map = core.ConfigMap(
            f"{name}-config", metadata=self._meta(f"{settings.name}-config"), data=data, opts=child
        )
        passwords = self._passwords(name, args.secrets, stateful)
        # mysqld_exporter reads its account from an option file (pulumi.Output.apply only formats text).
        exporter_cnf: pulumi.Output[str] = passwords["exporter-password"].apply(mysql_config.exporter_cnf)
        secret_data: dict[str, pulumi.Output[str]] = dict(passwords)
        secret_data[backups.EXPORTER_CNF_KEY] = pulumi.Output.secret(exporter_cnf)
        self.secret = core.Secret(
            f"{name}-secret",
            metadata=self._meta(f"{settings.name}-credentials"),
            type="Opaque",
            string_data=secret_data,
            opts=ResourceOptions(parent=self, additional_secret_outputs=["data", "stringData"]),
        )
        # Keyed by a secret of its own, the checksum reveals nothing of the passwords (credentials_checksum):
        # shown in plain, so that the preview says the pods roll. Protected like the passwords (a new key
        # would only roll the set once, but the policy pack treats every random secret as state).
        checksum_key = random.RandomBytes(f"{name}-credentials-checksum-key", length=32, opts=stateful).hex
        credentials_annotation: pulumi.Output[str] = pulumi.Output.unsecret(
            pulumi.Output.all(checksum_key, *passwords.values()).apply(
                lambda values: credentials_checksum(values[0], dict(zip(passwords, values[1:], strict=True)))))
        self.ca_cert, tls_secret, tls_checksum = self._tls(name)
        self.backup_secret: core.Secret | None = None
        if args.backup_target is not None:
            # The key that may touch this set's prefix of the bucket, and nothing else.
            self.backup_secret = core.Secret(
                f"{name}-backup-s3",
                metadata=self._meta(backups.s3_secret_name(settings.name)),
                type="Opaque",
                string_data={"access-key-id": pulumi.Output.secret(args.backup_target.access_key_id),
                             "secret-access-key": pulumi.Output.secret(args.backup_target.secret_access_key)},
                opts=ResourceOptions(parent=self, additional_secret_outputs=["data", "stringData"]),
            )
        self.headless_service = core.Service(f"{name}-headless", metadata=self._meta(settings.name),
                                             spec=self._headless_spec(), opts=child)
        self.read_service = core.Service(f"{name}-read", metadata=self._meta(f"{settings.name}-read"),
                                         spec=self._client_spec(selector_labels(settings.name)), opts=child)
        primary_selector = {
            **selector_labels(settings.name),
            "statefulset.kubernetes.io/pod-name": f"{settings.name}-0",
        }
        self.primary_service = core.Service(f"{name}-primary", metadata=self._meta(f"{settings.name}-primary"),
                                            spec=self._client_spec(primary_selector), opts=child)
        self.rollout_seconds = settings.rollout_timeout or budget.rollout_budget(settings.replicas,
                                                                                 settings.storage_size).seconds
        client_label = args.client_label or default_client_label(settings.name)
        # In place before the first pod: under the namespace's default deny (workload.py) a pod
        # without them can neither clone nor replicate.
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol",
            metadata=self._meta(settings.name),
            spec=self._network_policy_spec(client_label),
            opts=child,
        )
        self.client_network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-clients-netpol",
            metadata=self._meta(f"{settings.name}-clients"),
            spec=self._client_network_policy_spec(client_label),
            opts=child,
        )
        # With backups: the CronJob's pods reach the agents, and the set's pods reach the bucket (backup.py).
        self.backup_network_policies: list[k8s.networking.v1.NetworkPolicy] = []
        if settings.backup is not None:
            self.backup_network_policies = [
                k8s.networking.v1.NetworkPolicy(
                    f"{name}-backup-job-netpol", metadata=self._meta(backups.cron_job_name(settings.name)),
                    spec=backups.job_egress_policy(settings.name, selector_labels(settings.name)), opts=child),
                k8s.networking.v1.NetworkPolicy(
                    f"{name}-backup-s3-netpol", metadata=self._meta(backups.s3_secret_name(settings.name)),
                    spec=backups.s3_egress_policy(selector_labels(settings.name), settings.backup),
                    opts=child),
            ]
        self.stateful_set = apps.StatefulSet(
            f"{name}-statefulset",
            metadata=self._meta(settings.name),
            spec=self._stateful_set_spec(config_checksum(data), tls_checksum, credentials_annotation),
            # The name is fixed (pod DNS depends on it): a replacement must delete first.
            # volumeClaimTemplates are immutable: any change there (a size, "" for the default class's
            # name) replaces the set, and with mysqlPvcWhenDeleted=Delete its claims. They stay as the set
            # was created; the claims themselves grow (claim_patches below), and settings/load.py refuses
            # a class the claims are not in. With protectStateful, a destroy leaves the set in the
            # cluster even once unprotected (retainOnDelete, docs/mysql.md "What destroy keeps").
            opts=ResourceOptions(parent=self, protect=settings.protect, delete_before_replace=True,
                                 ignore_changes=["spec.volumeClaimTemplates"],
                                 retain_on_delete=settings.protect or None,
                                 depends_on=[self.config_map, self.secret, tls_secret, self.headless_service,
                                             self.network_policy, *self.backup_network_policies,
                                             *([self.backup_secret] if self.backup_secret else [])],
                                 # pulumi-kubernetes waits 10 minutes by default; OrderedReady pods that
                                 # each clone their predecessor need what their probes allow them.
                                 custom_timeouts=await_timeouts(self.rollout_seconds)),
        )
        self.claim_patches = self._claim_patches(name) if args.grow_claims else []
        self.pdb = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=self._meta(settings.name),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=settings.pdb_max_unavailable,
                selector=meta.LabelSelectorArgs(match_labels=selector_labels(settings.name)),
            ),
            opts=child,
        )

        self.backup_cron_job = self._backup_cron_job(name) if settings.backup is not None else None
        prometheus = self._prometheus_objects(name) if settings.prometheus_operator else None
        self.service_monitor: k8s.apiextensions.CustomResource | None = prometheus[0] if prometheus else None
        self.alert_rules: k8s.apiextensions.CustomResource | None = prometheus[1] if prometheus else None

        def host(service: core.Service) -> pulumi.Output[str]:
            return pulumi.Output.all(service.metadata.name, args.namespace).apply(lambda v: f"{v[0]}.{v[1]}.svc")

        self.primary_host = host(self.primary_service)
        self.read_host = host(self.read_service)
        self.headless_service_name: pulumi.Output[str] = self.headless_service.metadata.name
        self.secret_name: pulumi.Output[str] = self.secret.metadata.name
        self.replicas: pulumi.Output[int] = self.stateful_set.spec.replicas
        # Where `make verify` finds its account: the user name and the Secret key holding its
        # password (names only; the password stays in the Secret).
        self.verify_user: str = mysql_config.VERIFY_USER
        self.verify_password_key: str = VERIFY_PASSWORD_KEY
        self.register_outputs(
            {
                "primaryHost": self.primary_host,
                "readHost": self.read_host,
                "headlessService": self.headless_service_name,
                "secretName": self.secret_name,
                "replicas": self.replicas,
                "verifyUser": self.verify_user,
                "verifyPasswordKey": self.verify_password_key,
                "caCert": self.ca_cert,
            }
        )

    # ------------------------------------------------------------------ pieces

    def _claim_patches(self, name: str) -> list[core.PersistentVolumeClaimPatch]:
        """Each pod's claim (data-<set>-N, made by the StatefulSet controller from the template) at the
        configured size: the volume grows online where its class allows expansion (the aws cluster's
        gp3-mysql does); the API server refuses a smaller size (tests/components/workload/mysql/
        test_claim_growth_real.py). A Patch is a Server-Side Apply of just these fields under a field
        manager of its own; the claim's size is also owned by the controller that created it, so the
        patch forces (pulumi.com/patchForce), as the pulumi-kubernetes Patch docs direct for a conflict
        (registry: kubernetes/api-docs/core/v1/persistentvolumeclaimpatch). After the set: its await
        ends when every pod is ready, so every claim exists and is bound. retainOnDelete: dropping a
        patch (fewer replicas, destroy) must leave the claim as it is (pulumi docs, resource options,
        retainOnDelete).
        """
        s = self._settings
        return [
            core.PersistentVolumeClaimPatch(
                f"{name}-data-{ordinal}",
                metadata=meta.ObjectMetaPatchArgs(
                    name=f"{DATA_VOLUME}-{s.name}-{ordinal}", namespace=self._namespace,
                    annotations={PATCH_FORCE_ANNOTATION: "true"}),
                spec=core.PersistentVolumeClaimSpecPatchArgs(
                    resources=core.VolumeResourceRequirementsPatchArgs(requests={"storage": s.storage_size})),
                opts=ResourceOptions(parent=self, depends_on=[self.stateful_set], retain_on_delete=True),
            )
            for ordinal in range(s.replicas)
        ]

    def _meta(self, object_name: str) -> meta.ObjectMetaArgs:
        return metadata(object_name, labels=labels(self._settings.name), namespace=self._namespace)

    def _passwords(self, name: str, given: MysqlSecrets, opts: ResourceOptions) -> dict[str, pulumi.Output[str]]:
        """Configured passwords (checked by settings/load.py when read, before anything is
        registered); missing ones are generated (32 letters and digits)."""
        result: dict[str, pulumi.Output[str]] = {}
        configured = (given.root_password, given.replication_password, given.backup_password, given.verify_password,
                      given.exporter_password)
        for key, value in zip(PASSWORD_KEYS, configured, strict=True):
            if value is None:
                value = random.RandomPassword(f"{name}-{key}", length=32, special=False, opts=opts).result
            # Output.secret makes sure a plain value gets the secret flag too.
            result[key] = pulumi.Output.secret(value)
        return result

    def _tls(self, name: str) -> tuple[pulumi.Output[str], core.Secret, pulumi.Output[str]]:
        """The set's CA (its own, not the cluster's: it signs for this set only, and its key never leaves
        Pulumi's state) and the one certificate every member serves MySQL and the clone port with and
        presents as the clone's client (config.tls_certificate). Lifetimes as the cluster's own."""
        s = self._settings
        child = ResourceOptions(parent=self)
        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"{s.name} MySQL set CA"),
            is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=CA_USES,
            opts=child,
        )
        planned = pulumi.Output.from_input(self._namespace).apply(
            lambda namespace: mysql_config.tls_certificate(s.name, namespace, CLUSTER_DOMAIN))
        key = tls.PrivateKey(f"{name}-tls-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        request = tls.CertRequest(
            f"{name}-tls-csr",
            private_key_pem=key.private_key_pem,
            # serialNumber carries the renewal round (facts.renewal_serial): pulumi-tls's early renewal
            # never fires on `pulumi up` (pulumi/pulumi-tls#39), so the first `up` of each round makes a new
            # request, hence a new certificate; the new Secret rolls the set (checksum/tls below).
            subject=tls.CertRequestSubjectArgs(common_name=planned.apply(lambda c: c.common_name),
                                               serial_number=renewal_serial()),
            dns_names=planned.apply(lambda c: list(c.dns_names)),
            ip_addresses=planned.apply(lambda c: list(c.ip_addresses)),
            opts=child,
        )
        cert = tls.LocallySignedCert(
            f"{name}-tls",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            validity_period_hours=LEAF_VALIDITY_HOURS,
            early_renewal_hours=LEAF_EARLY_RENEWAL_HOURS,
            allowed_uses=list(mysql_config.TlsCertificate("", (), ()).uses),
            opts=child,
        )
        private_key: pulumi.Output[str] = pulumi.Output.secret(key.private_key_pem)
        secret = core.Secret(
            f"{name}-tls-secret",
            metadata=self._meta(f"{s.name}-tls"),
            type="kubernetes.io/tls",
            string_data={mysql_config.TLS_CERT: cert.cert_pem, mysql_config.TLS_KEY: private_key,
                         mysql_config.TLS_CA: ca.cert_pem},
            opts=ResourceOptions(parent=self, additional_secret_outputs=["data", "stringData"]),
        )
        # Of the public halves only: the annotation must not carry (or be marked as) a secret.
        checksum = pulumi.Output.all(cert.cert_pem, ca.cert_pem).apply(
            lambda pems: hashlib.sha256("".join(pems).encode()).hexdigest())
        return ca.cert_pem, secret, checksum

    def _headless_spec(self) -> core.ServiceSpecArgs:
        # Peers find each other by pod DNS (<name>-N.<name>) even before they are ready.
        return core.ServiceSpecArgs(
            cluster_ip="None",
            publish_not_ready_addresses=True,
            selector=selector_labels(self._settings.name),
            ports=[
                core.ServicePortArgs(name="mysql", port=MYSQL_PORT, target_port="mysql"),
                core.ServicePortArgs(name="clone", port=CLONE_PORT, target_port="clone"),
                # What the ServiceMonitor scrapes (the headless Service lists not-ready members too).
                core.ServicePortArgs(name="metrics", port=MYSQLD_EXPORTER_PORT, target_port="metrics"),
                *([core.ServicePortArgs(name="agent-metrics", port=BACKUP_METRICS_PORT, target_port="agent-metrics")]
                  if self._settings.backup is not None else []),
            ],
        )

    @staticmethod
    def _client_spec(selector: dict[str, str]) -> core.ServiceSpecArgs:
        return core.ServiceSpecArgs(
            type="ClusterIP",
            selector=selector,
            ports=[core.ServicePortArgs(name="mysql", port=MYSQL_PORT, target_port="mysql")],
        )

    def _members(self) -> k8s.networking.v1.NetworkPolicyPeerArgs:
        return k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=meta.LabelSelectorArgs(
            match_labels=selector_labels(self._settings.name)))

    def _network_policy_spec(self, client_label: Mapping[str, str]) -> k8s.networking.v1.NetworkPolicySpecArgs:
        """The set's pods: MySQL from its clients and its own members, the clone port from members only;
        out, only to members on the same two ports (a replica replicates from and clones its
        predecessor). DNS is the namespace's rule (workload.py); nothing else leaves a MySQL pod."""
        net = k8s.networking.v1
        members = self._members()
        clients = net.NetworkPolicyPeerArgs(pod_selector=meta.LabelSelectorArgs(match_labels=dict(client_label)))
        return net.NetworkPolicySpecArgs(
            pod_selector=meta.LabelSelectorArgs(match_labels=selector_labels(self._settings.name)),
            policy_types=["Ingress", "Egress"],
            ingress=[
                net.NetworkPolicyIngressRuleArgs(
                    from_=[clients, members],
                    ports=[net.NetworkPolicyPortArgs(protocol="TCP", port=MYSQL_PORT)],
                ),
                # Backups (whole data dirs) go only to the next member of the set.
                net.NetworkPolicyIngressRuleArgs(
                    from_=[members],
                    ports=[net.NetworkPolicyPortArgs(protocol="TCP", port=CLONE_PORT)],
                ),
                # Metrics: from Prometheus's pods, in whatever namespace it runs (backup.prometheus_peer).
                net.NetworkPolicyIngressRuleArgs(
                    from_=[backups.prometheus_peer()],
                    ports=[net.NetworkPolicyPortArgs(protocol="TCP", port=MYSQLD_EXPORTER_PORT),
                           *([net.NetworkPolicyPortArgs(protocol="TCP", port=BACKUP_METRICS_PORT)]
                             if self._settings.backup is not None else [])],
                ),
                # The backup CronJob asks a member's agent for a backup (the data goes to the bucket).
                *([net.NetworkPolicyIngressRuleArgs(
                    from_=[net.NetworkPolicyPeerArgs(pod_selector=meta.LabelSelectorArgs(
                        match_labels=backups.job_label(self._settings.name)))],
                    ports=[net.NetworkPolicyPortArgs(protocol="TCP", port=BACKUP_AGENT_PORT)],
                )] if self._settings.backup is not None else []),
            ],
            egress=[
                net.NetworkPolicyEgressRuleArgs(
                    to=[members],
                    ports=[net.NetworkPolicyPortArgs(protocol="TCP", port=port) for port in (MYSQL_PORT, CLONE_PORT)],
                ),
            ],
        )

    def _client_network_policy_spec(self, client_label: Mapping[str, str]) -> k8s.networking.v1.NetworkPolicySpecArgs:
        """Pods labelled as the set's clients may open MySQL connections to it (the other half of the
        ingress rule above, under the namespace's default deny of egress)."""
        net = k8s.networking.v1
        return net.NetworkPolicySpecArgs(
            pod_selector=meta.LabelSelectorArgs(match_labels=dict(client_label)),
            policy_types=["Egress"],
            egress=[net.NetworkPolicyEgressRuleArgs(
                to=[self._members()], ports=[net.NetworkPolicyPortArgs(protocol="TCP", port=MYSQL_PORT)])],
        )

    # ------------------------------------------------------------------ the StatefulSet

    def _stateful_set_spec(self, checksum: str, tls_checksum: pulumi.Input[str],
                           credentials_checksum: pulumi.Input[str]) -> apps.StatefulSetSpecArgs:
        s = self._settings
        return apps.StatefulSetSpecArgs(
            service_name=s.name,
            replicas=s.replicas,
            # Ordinal N clones from N-1, so N-1 must be ready first.
            pod_management_policy="OrderedReady",
            selector=meta.LabelSelectorArgs(match_labels=selector_labels(s.name)),
            # The controller replaces pods from the highest ordinal down, one at a time, each only once
            # the one before it is Ready again, and stops at the first that does not become Ready: the
            # replicas first, the primary (-0) last, and a bad version halts on the highest replica.
            # partition 0: every ordinal is updated (Kubernetes docs, StatefulSet "Rolling Updates" and
            # "Partitioned rolling updates").
            update_strategy=apps.StatefulSetUpdateStrategyArgs(
                type="RollingUpdate", rolling_update=apps.RollingUpdateStatefulSetStrategyArgs(partition=0)),
            persistent_volume_claim_retention_policy=apps.StatefulSetPersistentVolumeClaimRetentionPolicyArgs(
                when_deleted=s.pvc_when_deleted, when_scaled=s.pvc_when_scaled
            ),
            template=core.PodTemplateSpecArgs(
                metadata=meta.ObjectMetaArgs(labels=labels(s.name), annotations={
                    "checksum/config": checksum,
                    # mysqld and socat read the certificate at start: a renewed one rolls the set.
                    "checksum/tls": tls_checksum,
                    # A rotated password rolls the set, highest ordinal first: the primary's sidecar has
                    # applied it by then (a restarted replica is ready only once it has; docs/mysql.md).
                    "checksum/credentials": credentials_checksum,
                }),
                spec=self._pod_spec(),
            ),
            volume_claim_templates=[
                core.PersistentVolumeClaimArgs(
                    metadata=meta.ObjectMetaArgs(name=DATA_VOLUME, labels=selector_labels(s.name)),
                    spec=core.PersistentVolumeClaimSpecArgs(
                        access_modes=["ReadWriteOnce"],
                        storage_class_name=s.storage_class,
                        resources=core.VolumeResourceRequirementsArgs(requests={"storage": s.storage_size}),
                    ),
                )
            ],
        )

    def _pod_spec(self) -> core.PodSpecArgs:
        s = self._settings
        return core.PodSpecArgs(
            automount_service_account_token=False,
            enable_service_links=False,
            # mysqld's preStop and shutdown, bounded (budget.termination_grace_seconds).
            termination_grace_period_seconds=budget.termination_grace_seconds(),
            security_context=core.PodSecurityContextArgs(
                run_as_non_root=True,
                run_as_user=MYSQL_UID,
                run_as_group=MYSQL_UID,
                fs_group=MYSQL_UID,
                fs_group_change_policy="OnRootMismatch",
                seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
            ),
            affinity=self._affinity(),
            # A pod's volume is zonal (EBS): where the pod is first placed, it stays (docs/mysql.md).
            topology_spread_constraints=spread_over_zones(selector_labels(s.name), self._zone_spread),
            init_containers=[self._init_container(), self._clone_container(), *self._backup_init_containers()],
            containers=[self._mysqld_container(), self._sidecar_container(), self._exporter_container(),
                        *self._backup_containers()],
            volumes=[
                core.VolumeArgs(name="conf", empty_dir=core.EmptyDirVolumeSourceArgs()),
                core.VolumeArgs(name="config", config_map=core.ConfigMapVolumeSourceArgs(
                    name=f"{s.name}-config", default_mode=0o444)),
                core.VolumeArgs(name="credentials", secret=core.SecretVolumeSourceArgs(
                    secret_name=f"{s.name}-credentials", default_mode=0o440)),
                # Root-owned files readable through the pod's fsGroup (mysqld opens the key as MYSQL_UID).
                core.VolumeArgs(name="tls", secret=core.SecretVolumeSourceArgs(
                    secret_name=f"{s.name}-tls", default_mode=0o440)),
                core.VolumeArgs(name="run", empty_dir=core.EmptyDirVolumeSourceArgs(
                    medium="Memory", size_limit="16Mi")),
                core.VolumeArgs(name="mysqld-tmp", empty_dir=core.EmptyDirVolumeSourceArgs()),
                core.VolumeArgs(name="tools-tmp", empty_dir=core.EmptyDirVolumeSourceArgs()),
                # Holds the backup account's option file while a backup runs: memory only.
                core.VolumeArgs(name="client-cnf", empty_dir=core.EmptyDirVolumeSourceArgs(
                    medium="Memory", size_limit="1Mi")),
                backups.exporter_volume(f"{s.name}-credentials"),
                *(backups.backup_volumes(s.name) if s.backup is not None else []),
            ],
        )

    def _affinity(self) -> core.AffinityArgs:
        term = core.PodAffinityTermArgs(
            topology_key="kubernetes.io/hostname",
            label_selector=meta.LabelSelectorArgs(match_labels=selector_labels(self._settings.name)),
        )
        if self._settings.anti_affinity == "hard":
            return core.AffinityArgs(pod_anti_affinity=core.PodAntiAffinityArgs(
                required_during_scheduling_ignored_during_execution=[term]))
        return core.AffinityArgs(pod_anti_affinity=core.PodAntiAffinityArgs(
            preferred_during_scheduling_ignored_during_execution=[
                core.WeightedPodAffinityTermArgs(weight=100, pod_affinity_term=term)]))

    def _env(self, **extra: str) -> list[core.EnvVarArgs]:
        s = self._settings
        peer = pulumi.Output.from_input(self._namespace).apply(
            lambda namespace: mysql_config.peer_host_pattern(s.name, namespace, CLUSTER_DOMAIN))
        values: dict[str, pulumi.Input[str]] = {
            "MYSQL_ENGINE": s.engine, "MYSQL_VERSION": s.version, "MYSQL_SET_NAME": s.name,
            "MYSQL_TLS_DIR": mysql_config.TLS_MOUNT, "PEER_HOST_PATTERN": peer, **extra}
        return [
            core.EnvVarArgs(name="POD_NAME", value_from=core.EnvVarSourceArgs(
                field_ref=core.ObjectFieldSelectorArgs(field_path="metadata.name"))),
            *(core.EnvVarArgs(name=key, value=value) for key, value in values.items()),
        ]

    @staticmethod
    def _security_context() -> core.SecurityContextArgs:
        return restricted(privileged=False, run_as_non_root=True, run_as_user=MYSQL_UID, run_as_group=MYSQL_UID)

    @staticmethod
    def _mount(volume: str, path: str, *, read_only: bool = False, sub_path: str | None = None) -> core.VolumeMountArgs:
        return core.VolumeMountArgs(name=volume, mount_path=path, read_only=read_only or None, sub_path=sub_path)

    def _container(self, name: str, image: str, spec: Resources, **fields: object) -> core.ContainerArgs:
        return core.ContainerArgs(
            name=name,
            image=image,
            # Pinned tags: a restart must not depend on the registry (the project's policy,
            # .checkov-skips.yaml CKV_K8S_15).
            image_pull_policy="IfNotPresent",
            security_context=self._security_context(),
            resources=resources(spec),
            **fields,  # type: ignore[arg-type]
        )

    def _init_container(self) -> core.ContainerArgs:
        return self._container(
            "init-mysql", self._settings.image, INIT_RESOURCES,
            command=mysql_config.script_command("init-mysql.sh"),
            env=self._env(),
            volume_mounts=[self._mount("conf", "/etc/mysql/conf.d"),
                           self._mount("config", mysql_config.CONFIG_MOUNT, read_only=True)],
        )

    def _clone_container(self) -> core.ContainerArgs:
        # The volume root, not the subPath: the clone is staged next to the data dir and
        # renamed into place, so a half-received stream never looks like data.
        # An init container runs before mysqld and the sidecar start: its request counts for scheduling
        # only where it exceeds theirs together (the pod's effective request is the larger), and a limit
        # holds nothing back, so a high mysqlCloneCpuLimit lets a clone use a node's idle CPU.
        clone = self._settings.clone
        return self._container(
            "clone-mysql", self._settings.backup_image, clone.clone_resources,
            command=mysql_config.script_command("clone-mysql.sh"),
            env=self._env(MYSQL_DATA_DIR=f"/var/lib/mysql-volume/{DATA_SUBPATH}", TMPDIR="/tmp",
                          **mysql_config.clone_env(clone)["clone-mysql"]),
            volume_mounts=[self._mount(DATA_VOLUME, "/var/lib/mysql-volume"),
                           self._mount("config", mysql_config.CONFIG_MOUNT, read_only=True),
                           self._mount("tls", mysql_config.TLS_MOUNT, read_only=True),
                           self._mount("tools-tmp", "/tmp")],
        )

    def _mysqld_container(self) -> core.ContainerArgs:
        s = self._settings
        prefix = "MARIADB" if s.engine == "mariadb" else "MYSQL"
        alive, ready = mysql_config.liveness_command(), mysql_config.readiness_command()
        return self._container(
            "mysql", s.image, s.resources,
            env=self._env(**{
                # The image entrypoint initialises ordinal 0's empty data dir with this
                # root password; root is reachable over the pod-local socket only.
                f"{prefix}_ROOT_PASSWORD_FILE": f"{SECRET_MOUNT}/root-password",
                f"{prefix}_ROOT_HOST": "localhost",
                "PRESTOP_LOCK_SECONDS": str(budget.PRESTOP_LOCK_SECONDS),
                "PRESTOP_TIMEOUT_SECONDS": str(budget.PRESTOP_BUDGET_SECONDS),
            }),
            ports=[core.ContainerPortArgs(name="mysql", container_port=MYSQL_PORT, protocol="TCP")],
            volume_mounts=[*self._shared_mounts(), self._mount("mysqld-tmp", "/tmp")],
            startup_probe=_probe(alive, budget.MYSQLD_STARTUP),
            liveness_probe=_probe(alive, budget.MYSQLD_LIVENESS),
            readiness_probe=_probe(ready, budget.MYSQLD_READINESS),
            lifecycle=core.LifecycleArgs(pre_stop=core.LifecycleHandlerArgs(
                exec_=core.ExecActionArgs(command=mysql_config.prestop_command()))),
        )

    def _shared_mounts(self) -> list[core.VolumeMountArgs]:
        """What mysqld and the sidecar both see: the data, the rendered config, the scripts,
        the credentials and mysqld's socket directory (the sidecar talks to it over the socket)."""
        return [
            self._mount(DATA_VOLUME, "/var/lib/mysql", sub_path=DATA_SUBPATH),
            self._mount("conf", "/etc/mysql/conf.d", read_only=True),
            self._mount("config", mysql_config.CONFIG_MOUNT, read_only=True),
            self._mount("credentials", SECRET_MOUNT, read_only=True),
            self._mount("tls", mysql_config.TLS_MOUNT, read_only=True),
            self._mount("run", "/var/run/mysqld"),
        ]

    def _sidecar_container(self) -> core.ContainerArgs:
        probe = mysql_config.sidecar_probe_command()
        return self._container(
            "sidecar", self._settings.backup_image, self._settings.clone.sidecar_resources,
            command=mysql_config.script_command("sidecar.sh"),
            env=self._env(TMPDIR="/tmp", CLIENT_CNF_DIR="/run/mysql-client",
                          **mysql_config.clone_env(self._settings.clone)["sidecar"],
                          **mysql_config.binlog_env(quantity_bytes(self._settings.storage_size))),
            ports=[core.ContainerPortArgs(name="clone", container_port=CLONE_PORT, protocol="TCP")],
            volume_mounts=[
                *self._shared_mounts(),
                self._mount("tools-tmp", "/tmp"),
                self._mount("client-cnf", "/run/mysql-client"),
            ],
            # Only once it is ready may the next ordinal clone (budget.SIDECAR_STARTUP).
            startup_probe=_probe(probe, budget.SIDECAR_STARTUP),
            liveness_probe=_probe(probe, budget.SIDECAR_LIVENESS),
            readiness_probe=_probe(probe, budget.SIDECAR_READINESS),
        )

    # ------------------------------------------------------------------ metrics, backups, restore

    def _exporter_container(self) -> core.ContainerArgs:
        return backups.exporter_container(self._security_context(), resources(backups.EXPORTER_RESOURCES))

    def _s3_env(self) -> dict[str, pulumi.Input[str]]:
        assert self._settings.backup is not None and self._backup_target is not None
        return backups.s3_env(self._settings.backup, self._backup_target)

    def _env_inputs(self, values: Mapping[str, pulumi.Input[str]], **extra: str) -> list[core.EnvVarArgs]:
        return [*self._env(**extra), *(core.EnvVarArgs(name=key, value=value) for key, value in values.items())]

    def _backup_init_containers(self) -> list[core.ContainerArgs]:
        s = self._settings
        if s.backup is None:
            return []
        containers = [backups.s3_tools_container(self._security_context(), resources(backups.TOOLS_RESOURCES))]
        if s.backup.restore_from:
            # Ordinal 0 of a new set: fetch and check the backup (backup image), then replay the
            # binlogs up to the point with a private server (server image); other ordinals skip both.
            volume_root = [self._mount(DATA_VOLUME, "/var/lib/mysql-volume"),
                           self._mount("conf", "/etc/mysql/conf.d", read_only=True),
                           self._mount("config", mysql_config.CONFIG_MOUNT, read_only=True),
                           self._mount("credentials", SECRET_MOUNT, read_only=True),
                           self._mount("tools-tmp", "/tmp"), *backups.s3_mounts()]
            env = {**self._s3_env(), **backups.restore_env(s.backup)}
            for phase, image in (("fetch", s.backup_image), ("replay", s.image)):
                containers.append(self._container(
                    f"restore-{phase}", image, backups.RESTORE_RESOURCES,
                    command=[*mysql_config.script_command("restore.sh"), phase],
                    env=self._env_inputs(env, MYSQL_DATA_DIR=f"/var/lib/mysql-volume/{DATA_SUBPATH}", TMPDIR="/tmp"),
                    volume_mounts=volume_root,
                ))
        return containers

    def _backup_containers(self) -> list[core.ContainerArgs]:
        s = self._settings
        if s.backup is None:
            return []
        probe = mysql_config.sidecar_probe_command()
        return [self._container(
            "backup-agent", s.backup_image, backups.AGENT_RESOURCES,
            command=mysql_config.script_command("backup-agent.sh"),
            env=self._env_inputs({**self._s3_env(), **backups.agent_env(s, s.backup)}, TMPDIR="/tmp",
                                 CLIENT_CNF_DIR="/run/mysql-client"),
            ports=backups.agent_ports(),
            volume_mounts=[*self._shared_mounts(), self._mount("tools-tmp", "/tmp"),
                           self._mount("client-cnf", "/run/mysql-client"),
                           self._mount("agent-state", "/run/backup-agent"), *backups.s3_mounts()],
            # Ready once it listens (sidecar-ready.sh on CLONE_PORT=its port), as the sidecar.
            liveness_probe=_probe(probe, budget.SIDECAR_LIVENESS),
            readiness_probe=_probe(probe, budget.SIDECAR_READINESS),
        )]

    def _backup_cron_job(self, name: str) -> k8s.batch.v1.CronJob:
        s = self._settings
        assert s.backup is not None
        job_labels = owned({"app.kubernetes.io/name": "mysql-backup", "app.kubernetes.io/instance": s.name,
                            "app.kubernetes.io/component": "backup", **backups.job_label(s.name)})
        container = self._container(
            "backup-job", s.backup_image, backups.JOB_RESOURCES,
            command=backups.job_command(),
            env=self._env(MYSQL_REPLICAS=str(s.replicas), BACKUP_MAX_SECONDS=str(backups.BACKUP_MAX_SECONDS),
                          TMPDIR="/tmp"),
            volume_mounts=[self._mount("config", mysql_config.CONFIG_MOUNT, read_only=True),
                           self._mount("tools-tmp", "/tmp")],
        )
        pod = core.PodSpecArgs(
            restart_policy="Never",
            automount_service_account_token=False,
            enable_service_links=False,
            security_context=core.PodSecurityContextArgs(
                run_as_non_root=True, run_as_user=MYSQL_UID, run_as_group=MYSQL_UID, fs_group=MYSQL_UID,
                seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault")),
            containers=[container],
            volumes=[core.VolumeArgs(name="config", config_map=core.ConfigMapVolumeSourceArgs(
                         name=f"{s.name}-config", default_mode=0o444)),
                     core.VolumeArgs(name="tools-tmp", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="64Mi"))],
        )
        batch = k8s.batch.v1
        return batch.CronJob(
            f"{name}-backup",
            metadata=self._meta(backups.cron_job_name(s.name)),
            spec=batch.CronJobSpecArgs(
                schedule=s.backup.schedule,
                time_zone="Etc/UTC",
                # One backup at a time; a missed run (controller down) is made up within the hour.
                concurrency_policy="Forbid",
                starting_deadline_seconds=3600,
                successful_jobs_history_limit=3,
                failed_jobs_history_limit=3,
                job_template=batch.JobTemplateSpecArgs(
                    metadata=meta.ObjectMetaArgs(labels=job_labels),
                    spec=batch.JobSpecArgs(
                        backoff_limit=1,
                        active_deadline_seconds=backups.BACKUP_MAX_SECONDS + 600,
                        template=core.PodTemplateSpecArgs(metadata=meta.ObjectMetaArgs(labels=job_labels),
                                                          spec=pod),
                    ),
                ),
            ),
            opts=ResourceOptions(parent=self, depends_on=[self.config_map, *self.backup_network_policies]),
        )

    def _prometheus_objects(self, name: str) -> tuple[k8s.apiextensions.CustomResource,
                                                      k8s.apiextensions.CustomResource]:
        s = self._settings
        child = ResourceOptions(parent=self)
        monitor = k8s.apiextensions.CustomResource(
            f"{name}-servicemonitor", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
            metadata=self._meta(s.name), spec=backups.service_monitor(s.name, selector_labels(s.name)), opts=child)
        rules = k8s.apiextensions.CustomResource(
            f"{name}-alerts", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
            metadata=self._meta(s.name), spec=backups.alert_rules(s), opts=child)
        return monitor, rules
