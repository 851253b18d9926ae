"""ClusterPki: the cluster's CAs, every node's certificates, and their delivery path.

Key material never travels in user-data (readable by anything on the instance
and by anyone allowed to describe it). Each file a node needs is one
SecureString parameter named <ssm prefix>/<node>/<absolute file path>,
encrypted with the cluster's own KMS key, so that a node's role can be limited
to its own path and to decrypting only parameters below it (see
aws/iam.node_policy). The plan of which certificate goes where is pure
(node/pki.node_pki); this component only wires it to pulumi-tls and SSM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random
import pulumi_tls as tls
from pulumi import ResourceOptions

from components import tokens
from components.facts import CA_USES, CA_VALIDITY_HOURS, LEAF_VALIDITY_HOURS
from components.node.control_plane import render_encryption_config
from components.node.layout import ClusterLayout
from components.node.pki import ENCRYPTION_CONFIG, SA_KEY, SA_PUB, CertSpec, admin_cert, leaf_uses, node_pki


@dataclass
class ClusterPkiArgs:
    layout: ClusterLayout
    tags: pulumi.Input[Mapping[str, str]]
    # Further names every apiserver certificate carries (the API load balancer's DNS name).
    api_dns_names: Sequence[pulumi.Input[str]] = ()
    protect: bool = False  # protectStateful: the KMS key and the Secrets' encryption key


@dataclass(frozen=True)
class _Issued:
    key: tls.PrivateKey
    cert: tls.LocallySignedCert


class ClusterPki(pulumi.ComponentResource):
    """Kubernetes CA, etcd CA (separate, so no Kubernetes client certificate is accepted by etcd),
    front-proxy CA (the aggregation layer's, separate for the same reason),
    per-node certificates, a shared service-account key, an admin client certificate, and the
    per-node SecureString parameters the nodes fetch at boot."""

    kms_key_arn: pulumi.Output[str]
    ca_cert_pem: pulumi.Output[str]
    admin_cert_pem: pulumi.Output[str]
    admin_key_pem: pulumi.Output[str]
    parameters: dict[str, list[aws.ssm.Parameter]]

    def __init__(self, name: str, args: ClusterPkiArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__(tokens.CLUSTER_PKI, name, None, opts)
        self._name = name
        self._api_dns_names = list(args.api_dns_names)
        child = ResourceOptions(parent=self)
        layout = args.layout

        # Protected with the stateful resources: without the key no node can read its PKI again.
        key = aws.kms.Key(f"{name}-kms", description=f"SecureString parameters of cluster {layout.name} "
                                                      f"({layout.stack})",
                          enable_key_rotation=True, deletion_window_in_days=7, tags=args.tags,
                          opts=ResourceOptions(parent=self, protect=args.protect))
        aws.kms.Alias(f"{name}-kms-alias", name=f"alias/{layout.name}-{layout.stack}-pki", target_key_id=key.arn,
                      opts=child)
        self._cas = {
            "kubernetes": self._ca("kubernetes-ca", f"{layout.name} kubernetes CA"),
            "etcd": self._ca("etcd-ca", f"{layout.name} etcd CA"),
            "front-proxy": self._ca("front-proxy-ca", f"{layout.name} front-proxy CA"),
        }
        sa_key = tls.PrivateKey(f"{name}-service-account", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        # The key Secrets are encrypted with in etcd (secretbox: 32 bytes); replacing it would leave every
        # stored Secret unreadable, so it is protected like the stateful resources.
        secrets_key = random.RandomBytes(f"{name}-secrets-encryption", length=32,
                                         opts=ResourceOptions(parent=self, protect=args.protect))
        encryption_config: pulumi.Output[str] = pulumi.Output.secret(secrets_key.base64.apply(render_encryption_config))
        admin = self._issue(admin_cert())

        self.parameters = {}
        for node in layout.nodes:
            plan = node_pki(layout, node)
            files: dict[str, pulumi.Output[str]] = {
                path: self._cas[authority][1].cert_pem for path, authority in plan.ca_paths.items()}
            for spec in plan.certs:
                issued = self._issue(spec)
                files[spec.cert_path] = issued.cert.cert_pem
                files[spec.key_path] = issued.key.private_key_pem
            if plan.service_account_key:
                files[SA_KEY] = sa_key.private_key_pem
                files[SA_PUB] = sa_key.public_key_pem
            if plan.encryption_config:
                files[ENCRYPTION_CONFIG] = encryption_config
            path = layout.ssm_path(node)
            self.parameters[node.name] = [
                aws.ssm.Parameter(
                    f"{name}-{node.name}{file.replace('/', '-').replace('.', '-')}",
                    name=f"{path}{file}",
                    description=f"{file} for {node.name}",
                    type="SecureString",
                    key_id=key.arn,
                    value=content,  # the SDK marks SSM values secret
                    tags=args.tags,
                    opts=child,
                )
                for file, content in sorted(files.items())
            ]

        self.kms_key_arn = key.arn
        self.ca_cert_pem = self._cas["kubernetes"][1].cert_pem
        self.admin_cert_pem = admin.cert.cert_pem
        self.admin_key_pem = pulumi.Output.secret(admin.key.private_key_pem)
        self.register_outputs({
            "kmsKeyArn": self.kms_key_arn,
            "caCertPem": self.ca_cert_pem,
            "adminCertPem": self.admin_cert_pem,
            "adminKeyPem": self.admin_key_pem,
        })

    def _ca(self, part: str, common_name: str) -> tuple[tls.PrivateKey, tls.SelfSignedCert]:
        child = ResourceOptions(parent=self)
        key = tls.PrivateKey(f"{self._name}-{part}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        cert = tls.SelfSignedCert(
            f"{self._name}-{part}",
            private_key_pem=key.private_key_pem,
            subject={"common_name": common_name},
            is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=CA_USES,
            opts=child,
        )
        return key, cert

    def _issue(self, spec: CertSpec) -> _Issued:
        child = ResourceOptions(parent=self)
        part = f"{self._name}-{spec.identity}"
        if spec.node != spec.identity:
            part = f"{self._name}-{spec.node}-{spec.identity}"
        ca_key, ca_cert = self._cas[spec.authority]
        key = tls.PrivateKey(f"{part}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        subject = tls.CertRequestSubjectArgs(common_name=spec.common_name, organization=spec.organization)
        dns_names: list[pulumi.Input[str]] = [*spec.dns_names]
        if spec.identity == "apiserver":
            dns_names += self._api_dns_names
        request = tls.CertRequest(f"{part}-csr", private_key_pem=key.private_key_pem, subject=subject,
                                  dns_names=dns_names, ip_addresses=list(spec.ip_addresses), opts=child)
        cert = tls.LocallySignedCert(
            part,
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca_cert.cert_pem,
            validity_period_hours=LEAF_VALIDITY_HOURS,
            allowed_uses=leaf_uses(spec),
            opts=child,
        )
        return _Issued(key, cert)
