"""AtomicCluster: the seed's Fedora-Atomic master/minion topology on EC2, as code (issue: AtomicCluster).

Network (new VPC or an existing one): a public subnet per zone and, with private nodes, a private
subnet per zone behind NAT gateways; one security group per role with described, minimal rules
(SSH only from the EC2 Instance Connect Endpoint's group unless asked for); a least-privilege role
per node; the etcd backup bucket; and the instances with their cloud-init user-data. Everything a
node needs is rendered from plain settings before any instance exists (components/node/), so all
instances are created in parallel; key material reaches nodes through SSM (components/aws/pki.py),
never through user-data.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from components import tokens
from components.aws.ami import FEDORA_OWNER, fedora_ami_filters
from components.aws.backup import EtcdBackupBucket, EtcdBackupBucketArgs
from components.aws.gate import ClusterReadyGate, GateNode
from components.aws.iam import assume_role_policy, ebs_csi_policy, etcd_backup_policy, node_policy
from components.aws.nlb import TcpLoadBalancer, TcpLoadBalancerArgs, cidr_slug
from components.aws.pki import ClusterPki, ClusterPkiArgs
from components.facts import (
    API_PORT,
    CADVISOR_PORT,
    CLUSTER_ID_TAG,
    CLUSTER_TAG,
    COCKPIT_PORT,
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    KUBELET_PORT,
    NODE_PORT_RANGE,
    OVERLAY_PORT,
    TAG_NAME,
    TAG_ROLE,
    zone_blocks,
)
from components.node.cloud_init import render_user_data_base64
from components.node.etcd_backup import BackupTarget, backup_prefix
from components.node.kubernetes import render_admin_kubeconfig
from components.node.layout import ClusterLayout, NodeSpec, compute_layout, node_address_blocks
from components.settings.schema import ClusterSettings

Group = Literal["control_plane", "nodes", "connect_endpoint"]
Direction = Literal["ingress", "egress"]
WORLD = "0.0.0.0/0"
SSH_PORT = 22
GROUPS: tuple[Group, ...] = ("control_plane", "nodes", "connect_endpoint")


@dataclass(frozen=True)
class RuleSpec:
    """One security group rule: `peer` is a CIDR or the other group's role name."""

    name: str
    group: Group
    direction: Direction
    protocol: Literal["tcp", "udp"]
    from_port: int
    to_port: int
    peer: str
    description: str

    @property
    def peer_is_group(self) -> bool:
        return self.peer in GROUPS


@dataclass(frozen=True)
class Network:
    """The subnets the cluster uses, one of each kind per zone, in zone order."""

    vpc_id: pulumi.Output[str]
    node_subnet_ids: list[pulumi.Output[str]]  # where the nodes are: the private subnets, else the public ones
    public_subnet_ids: list[pulumi.Output[str]]  # where the internet-facing load balancers are


def security_rules(settings: ClusterSettings) -> list[RuleSpec]:
    """Inside the cluster only what Kubernetes needs; from outside only the admin CIDRs.

    Egress to the world is limited to HTTP/HTTPS (packages, SSM, image registries) and NTP.
    """
    rules = [
        RuleSpec("api-from-nodes", "control_plane", "ingress", "tcp", API_PORT, API_PORT, "nodes",
                 "kube-apiserver from kubelets and kube-proxy on the nodes"),
        RuleSpec("etcd-between-masters", "control_plane", "ingress", "tcp", ETCD_CLIENT_PORT, ETCD_PEER_PORT,
                 "control_plane", "etcd client and peer traffic between control-plane members only"),
        RuleSpec("kubelet-from-control-plane", "nodes", "ingress", "tcp", KUBELET_PORT, KUBELET_PORT,
                 "control_plane", "kubelet API (logs, exec, metrics) from the apiservers"),
        RuleSpec("egress-etcd-between-masters", "control_plane", "egress", "tcp", ETCD_CLIENT_PORT, ETCD_PEER_PORT,
                 "control_plane", "etcd client and peer traffic to the other control-plane members"),
        RuleSpec("egress-kubelet", "control_plane", "egress", "tcp", KUBELET_PORT, KUBELET_PORT, "nodes",
                 "apiservers to the kubelet API on the nodes"),
        RuleSpec("egress-api", "nodes", "egress", "tcp", API_PORT, API_PORT, "control_plane",
                 "kubelets and kube-proxy to kube-apiserver"),
    ]
    if settings.addons.metrics_server:
        # metrics-server runs on a minion and scrapes every kubelet; pod traffic to node
        # addresses leaves masqueraded as the node's own address.
        rules += [
            RuleSpec("kubelet-from-nodes", "nodes", "ingress", "tcp", KUBELET_PORT, KUBELET_PORT, "nodes",
                     "kubelet API from metrics-server on the nodes"),
            RuleSpec("egress-kubelet-to-nodes", "nodes", "egress", "tcp", KUBELET_PORT, KUBELET_PORT, "nodes",
                     "metrics-server to the kubelet API on the nodes"),
        ]
    for group in ("control_plane", "nodes"):
        for peer in ("control_plane", "nodes"):
            short = "masters" if peer == "control_plane" else "nodes"
            rules += [
                RuleSpec(f"overlay-from-{short}", group, "ingress", "udp", OVERLAY_PORT, OVERLAY_PORT, peer,
                         f"VXLAN pod overlay from the {short}"),
                RuleSpec(f"egress-overlay-to-{short}", group, "egress", "udp", OVERLAY_PORT, OVERLAY_PORT, peer,
                         f"VXLAN pod overlay to the {short}"),
            ]
        rules += [
            RuleSpec("egress-https", group, "egress", "tcp", 443, 443, WORLD,
                     "HTTPS out: Fedora mirrors, SSM Parameter Store, container registries"),
            RuleSpec("egress-http", group, "egress", "tcp", 80, 80, WORLD, "HTTP out: Fedora mirror redirects"),
            RuleSpec("egress-ntp", group, "egress", "udp", 123, 123, WORLD, "NTP out: chrony time sync"),
        ]
    if settings.instance_connect_endpoint:
        # SSH reaches the nodes through the EC2 Instance Connect Endpoint only: IAM decides who may open
        # a tunnel (ec2-instance-connect:OpenTunnel), CloudTrail logs each; the endpoint's traffic
        # comes from its own interface (preserve_client_ip off), hence from its group.
        targets: tuple[tuple[Group, str], ...] = (("control_plane", "masters"), ("nodes", "nodes"))
        for group, short in targets:
            rules += [
                RuleSpec("ssh-from-connect-endpoint", group, "ingress", "tcp", SSH_PORT, SSH_PORT, "connect_endpoint",
                         "SSH (fedora user) only through the EC2 Instance Connect Endpoint"),
                RuleSpec(f"egress-ssh-to-{short}", "connect_endpoint", "egress", "tcp", SSH_PORT, SSH_PORT, group,
                         f"EC2 Instance Connect Endpoint tunnels to SSH on the {short}"),
            ]
    admin: list[tuple[str, Group, int, int, str]] = [
        ("api", "control_plane", API_PORT, API_PORT, "Kubernetes API (kubectl)"),
    ]
    if settings.ssh_from_admin_cidrs:
        admin = [("ssh", "control_plane", SSH_PORT, SSH_PORT, "SSH (fedora user)"),
                 ("ssh", "nodes", SSH_PORT, SSH_PORT, "SSH (fedora user)"), *admin]
    if settings.enable_cockpit:
        admin += [("cockpit", g, COCKPIT_PORT, COCKPIT_PORT, "Cockpit web console (seed)")
                  for g in ("control_plane", "nodes")]
    if settings.enable_cadvisor:
        # Every node runs cAdvisor on this port (node/units.render_cadvisor_unit), masters included.
        admin += [("cadvisor", g, CADVISOR_PORT, CADVISOR_PORT, "cAdvisor web UI (seed)")
                  for g in ("control_plane", "nodes")]
    if settings.enable_nodeports:
        admin.append(("nodeports", "nodes", *NODE_PORT_RANGE, "Kubernetes NodePort services"))
    for cidr in settings.admin_cidrs:
        rules += [RuleSpec(f"admin-{what}-{cidr_slug(cidr)}", group, "ingress", "tcp", low, high, cidr,
                           f"{text} from admin CIDR {cidr}") for what, group, low, high, text in admin]
    return rules


@dataclass
class AtomicClusterArgs:
    settings: ClusterSettings


class AtomicCluster(pulumi.ComponentResource):
    """Masters (etcd + control plane) and minions (kubelet, kube-proxy, CRI-O) on EC2."""

    layout: ClusterLayout
    vpc_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    control_plane_sg_id: pulumi.Output[str]
    nodes_sg_id: pulumi.Output[str]
    master_private_ips: pulumi.Output[list[str]]
    minion_private_ips: pulumi.Output[list[str]]
    master_public_ips: pulumi.Output[list[str]]
    minion_public_ips: pulumi.Output[list[str]]
    api_endpoint: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    frontend_lb: TcpLoadBalancer | None
    frontend_address: pulumi.Output[str] | None  # host[:port] of the frontend's NLB, when there is one
    api_lb: TcpLoadBalancer | None
    backups: EtcdBackupBucket | None
    backup_prefix: str
    connect_endpoint_id: pulumi.Output[str] | None
    master_names: list[str]

    def __init__(self, name: str, args: AtomicClusterArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__(tokens.ATOMIC_CLUSTER, name, None, opts)
        settings = args.settings
        self._name = name
        self._settings = settings
        self.layout = layout = compute_layout(settings, pulumi.get_stack())
        # Every AWS resource of the cluster: the stack's tags, the cluster for people, the stack-unique
        # id for IAM (facts.CLUSTER_ID_TAG).
        self._tags = {**settings.tags, CLUSTER_TAG: settings.name, CLUSTER_ID_TAG: settings.cluster_id}

        network = self._network()
        vpc_id = network.vpc_id
        groups = self._security_groups(vpc_id)
        self.connect_endpoint_id = self._connect_endpoint(network, groups)
        reserved = self._reserve_node_addresses(network)
        self.api_lb = self._api_lb(network, groups["control_plane"], reserved)
        self.backup_prefix = backup_prefix(layout)
        self.backups = self._backups()
        pki = ClusterPki(f"{name}-pki",
                         ClusterPkiArgs(layout=layout, tags=self._tags, protect=settings.protect,
                                        api_dns_names=[self.api_lb.dns_name] if self.api_lb else []),
                         opts=ResourceOptions(parent=self))
        ami = self._ami()
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id

        instances: dict[str, aws.ec2.Instance] = {}
        for node in layout.nodes:
            group = groups["control_plane" if node.role == "master" else "nodes"]
            profile, policies = self._node_identity(node, partition, account, pki.kms_key_arn)
            instances[node.name] = self._instance(node, ami, network.node_subnet_ids[node.zone], group, profile,
                                                  depends_on=[*policies, *pki.parameters[node.name]])

        masters = [instances[n.name] for n in layout.masters]
        minions = [instances[n.name] for n in layout.minions]
        self.master_names = [n.name for n in layout.masters]
        self.frontend_lb = self._frontend_lb(network, groups["nodes"], minions, reserved)
        self.frontend_address = self._frontend_address()
        # kubectl and the stack's provider: the API load balancer, else the first master's Elastic IP
        # (stable across stops and starts; the provider's clusterIdentifier keeps a switch between
        # the two from replacing the Kubernetes objects).
        api_host = self.api_lb.dns_name if self.api_lb else self._api_address(masters[0]).public_ip
        self.vpc_id = vpc_id
        self.subnet_id = network.node_subnet_ids[0]
        self.control_plane_sg_id = groups["control_plane"].id
        self.nodes_sg_id = groups["nodes"].id
        self.master_private_ips = pulumi.Output.all(*[i.private_ip for i in masters])
        self.minion_private_ips = pulumi.Output.all(*[i.private_ip for i in minions])
        self.master_public_ips = pulumi.Output.all(*[i.public_ip for i in masters])
        self.minion_public_ips = pulumi.Output.all(*[i.public_ip for i in minions])
        self.api_endpoint = api_host.apply(lambda host: f"https://{host}:{API_PORT}")
        admin_kubeconfig: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(api_host, pki.ca_cert_pem, pki.admin_cert_pem, pki.admin_key_pem).apply(
                lambda v: render_admin_kubeconfig(layout.name, v[0], v[1], v[2], v[3])))
        # The kubeconfig everyone gets (the stack's Kubernetes provider, the output) is the gate's: it
        # resolves only once the API serves and every minion is Ready.
        self.ready = ClusterReadyGate(
            f"{name}-ready", admin_kubeconfig, f"{layout.name} ({layout.stack})",
            [GateNode(n.name, n.role, instances[n.name].id) for n in layout.nodes], settings.ready_timeout,
            opts=ResourceOptions(parent=self, depends_on=[*([self.api_lb] if self.api_lb else [])]))
        self.kubeconfig = self.ready.kubeconfig
        self.register_outputs({
            "vpcId": self.vpc_id,
            "subnetId": self.subnet_id,
            "controlPlaneSecurityGroupId": self.control_plane_sg_id,
            "nodesSecurityGroupId": self.nodes_sg_id,
            "masterPrivateIps": self.master_private_ips,
            "minionPrivateIps": self.minion_private_ips,
            "masterPublicIps": self.master_public_ips,
            "minionPublicIps": self.minion_public_ips,
            "apiEndpoint": self.api_endpoint,
            "kubeconfig": self.kubeconfig,
            "frontendAddress": self.frontend_address,
            "apiLoadBalancer": self.api_lb.dns_name if self.api_lb else None,
            "masterNames": self.master_names,
            "etcdBackupBucket": self.backups.bucket if self.backups else None,
            "instanceConnectEndpointId": self.connect_endpoint_id,
        })

    def _opts(self, *, protect: bool = False, depends_on: list[pulumi.Resource] | None = None) -> ResourceOptions:
        return ResourceOptions(parent=self, protect=protect, depends_on=depends_on)

    def _tagged(self, name: str, role: str | None = None) -> dict[str, str]:
        tags = {**self._tags, TAG_NAME: name}
        return tags if role is None else {**tags, TAG_ROLE: role}

    def _network(self) -> Network:
        """A public subnet per zone (the first keeps the resource names of the single subnet stacks began
        with), and with private nodes a private subnet per zone routed through a NAT gateway."""
        s, name = self._settings, self._name
        if s.existing_vpc_id and s.existing_subnet_id:
            # settings/load.py requires subnetCidr to be this subnet's CIDR: node addresses come from it.
            existing = pulumi.Output.from_input(s.existing_subnet_id)
            return Network(pulumi.Output.from_input(s.existing_vpc_id), [existing], [existing])
        protect = self._opts(protect=s.protect)
        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=s.vpc_cidr, enable_dns_support=True, enable_dns_hostnames=True,
                          tags=self._tagged(f"{name}-vpc"), opts=protect)
        zones: list[pulumi.Input[str]] = list(s.zones) or [s.availability_zone or aws.get_availability_zones_output(
            state="available", opts=pulumi.InvokeOutputOptions(parent=self)).names[0]]
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=self._tagged(f"{name}-igw"),
                                          opts=self._opts())
        table = aws.ec2.RouteTable(f"{name}-rt", vpc_id=vpc.id, tags=self._tagged(f"{name}-rt"), opts=self._opts())
        aws.ec2.Route(f"{name}-default-route", route_table_id=table.id, destination_cidr_block=WORLD,
                      gateway_id=gateway.id, opts=self._opts())
        public: list[aws.ec2.Subnet] = []
        for k, (zone, cidr) in enumerate(zip(zones, zone_blocks(ipaddress.IPv4Network(s.subnet_cidr), len(zones)),
                                             strict=True)):
            part = "" if k == 0 else f"-{k + 1}"
            subnet = aws.ec2.Subnet(
                f"{name}-subnet{part}", vpc_id=vpc.id, cidr_block=str(cidr), availability_zone=zone,
                # Public nodes get an address for packages without a NAT gateway (what reaches them is decided
                # by the security groups); with private nodes nothing launched here gets one.
                map_public_ip_on_launch=not s.private_nodes, tags=self._tagged(f"{name}-subnet{part}"),
                opts=protect)
            aws.ec2.RouteTableAssociation(f"{name}-rt-assoc{part}", route_table_id=table.id, subnet_id=subnet.id,
                                          opts=self._opts())
            public.append(subnet)
        if not s.private_nodes:
            return Network(vpc.id, [p.id for p in public], [p.id for p in public])
        private = self._private_subnets(vpc, zones, public)
        # S3 (the etcd backups) without the NAT gateways: a gateway endpoint costs nothing.
        aws.ec2.VpcEndpoint(f"{name}-s3-endpoint", vpc_id=vpc.id, service_name=f"com.amazonaws.{s.region}.s3",
                            vpc_endpoint_type="Gateway", route_table_ids=[table.id, *(t.id for _, t in private)],
                            tags=self._tagged(f"{name}-s3-endpoint"), opts=self._opts())
        return Network(vpc.id, [subnet.id for subnet, _ in private], [p.id for p in public])

    def _private_subnets(self, vpc: aws.ec2.Vpc, zones: list[pulumi.Input[str]],
                         public: list[aws.ec2.Subnet]) -> list[tuple[aws.ec2.Subnet, aws.ec2.RouteTable]]:
        """Per zone a private subnet whose default route is a NAT gateway: its zone's own (perZone),
        so that losing a zone costs no other zone its egress, or the first zone's (single)."""
        s, name = self._settings, self._name
        assert s.private_subnet_cidr is not None, "settings give private nodes a private subnet"
        nats: list[aws.ec2.NatGateway] = []
        for k in range(len(zones) if s.nat_gateways == "perZone" else 1):
            address = aws.ec2.Eip(f"{name}-nat-eip-{k + 1}", domain="vpc", tags=self._tagged(f"{name}-nat-eip-{k + 1}"),
                                  opts=self._opts())
            nats.append(aws.ec2.NatGateway(f"{name}-nat-{k + 1}", allocation_id=address.allocation_id,
                                           subnet_id=public[k].id, connectivity_type="public",
                                           tags=self._tagged(f"{name}-nat-{k + 1}"), opts=self._opts()))
        private = []
        blocks = zone_blocks(ipaddress.IPv4Network(s.private_subnet_cidr), len(zones))
        for k, (zone, cidr) in enumerate(zip(zones, blocks, strict=True)):
            subnet = aws.ec2.Subnet(f"{name}-private-{k + 1}", vpc_id=vpc.id, cidr_block=str(cidr),
                                    availability_zone=zone, map_public_ip_on_launch=False,
                                    tags=self._tagged(f"{name}-private-{k + 1}"), opts=self._opts(protect=s.protect))
            table = aws.ec2.RouteTable(f"{name}-private-rt-{k + 1}", vpc_id=vpc.id,
                                       tags=self._tagged(f"{name}-private-rt-{k + 1}"), opts=self._opts())
            aws.ec2.Route(f"{name}-private-default-route-{k + 1}", route_table_id=table.id,
                          destination_cidr_block=WORLD, nat_gateway_id=nats[min(k, len(nats) - 1)].id,
                          opts=self._opts())
            aws.ec2.RouteTableAssociation(f"{name}-private-rt-assoc-{k + 1}", route_table_id=table.id,
                                          subnet_id=subnet.id, opts=self._opts())
            private.append((subnet, table))
        return private

    def _security_groups(self, vpc_id: pulumi.Output[str]) -> dict[str, aws.ec2.SecurityGroup]:
        name = self._name
        kinds: list[tuple[Group, str, str]] = [
            ("control_plane", "control-plane", "control plane (etcd, apiserver)"),
            ("nodes", "nodes", "nodes (kubelet, kube-proxy, pods)")]
        if self._settings.instance_connect_endpoint:
            kinds.append(("connect_endpoint", "connect-endpoint", "EC2 Instance Connect Endpoint (SSH tunnels)"))
        groups: dict[str, aws.ec2.SecurityGroup] = {
            group: aws.ec2.SecurityGroup(
                f"{name}-{short}-sg", vpc_id=vpc_id, description=f"{self._settings.name} {text}",
                tags=self._tagged(f"{name}-{short}", role=short), opts=self._opts())
            for group, short, text in kinds
        }
        for rule in security_rules(self._settings):
            kind = aws.vpc.SecurityGroupIngressRule if rule.direction == "ingress" else aws.vpc.SecurityGroupEgressRule
            peer = {"referenced_security_group_id": groups[rule.peer].id} if rule.peer_is_group else \
                {"cidr_ipv4": rule.peer}
            kind(f"{name}-{rule.group.replace('_', '-')}-{rule.name}", security_group_id=groups[rule.group].id,
                 ip_protocol=rule.protocol, from_port=rule.from_port, to_port=rule.to_port,
                 description=rule.description, tags=self._tagged(rule.name), opts=self._opts(), **peer)
        return groups

    def _connect_endpoint(self, network: Network,
                          groups: dict[str, aws.ec2.SecurityGroup]) -> pulumi.Output[str] | None:
        """The EC2 Instance Connect Endpoint: SSH to any node of the VPC through an IAM-authorised tunnel,
        without a public address or a bastion (`aws ec2-instance-connect ssh` / `open-tunnel`)."""
        if not self._settings.instance_connect_endpoint:
            return None
        name = f"{self._name}-connect-endpoint"
        endpoint = aws.ec2transitgateway.InstanceConnectEndpoint(
            name, subnet_id=network.node_subnet_ids[0], security_group_ids=[groups["connect_endpoint"].id],
            # the nodes see the endpoint's own address, so that their rule can name its group
            preserve_client_ip=False, tags=self._tagged(name),
            # AWS allows one endpoint per VPC: a replacement must remove the old one first.
            opts=ResourceOptions(parent=self, delete_before_replace=True))
        return endpoint.id

    def _backups(self) -> EtcdBackupBucket | None:
        backup = self._settings.etcd_backup
        if backup is None:
            return None
        return EtcdBackupBucket(
            f"{self._name}-etcd-backups",
            EtcdBackupBucketArgs(prefix=backup_prefix(self.layout), retention_days=backup.retention_days,
                                 protect=self._settings.protect, tags=self._tagged(f"{self._name}-etcd-backups"),
                                 cluster_id=self._settings.cluster_id),
            opts=ResourceOptions(parent=self))

    def _ami(self) -> pulumi.Input[str]:
        if self._settings.ami_id:
            return self._settings.ami_id
        regex, filters = fedora_ami_filters(self._settings.fedora_release)
        return aws.ec2.get_ami_output(owners=[FEDORA_OWNER], most_recent=True, name_regex=regex,
                                      filters=filters,  # type: ignore[arg-type]
                                      opts=pulumi.InvokeOutputOptions(parent=self)).id

    def _node_identity(self, node: NodeSpec, partition: pulumi.Output[str], account: pulumi.Output[str],
                       key_arn: pulumi.Output[str]) -> tuple[aws.iam.InstanceProfile, list[aws.iam.RolePolicy]]:
        """One role per node: it may read and decrypt only the node's own SSM path.

        Minions also carry the EBS CSI controller's volume permissions: a self-managed cluster has
        no IRSA, so the controller (hostNetwork, on some minion) uses the minion's role.
        """
        prefix = f"{self._name}-{node.name}"
        role = aws.iam.Role(f"{prefix}-role", assume_role_policy=assume_role_policy(),
                            description=f"{node.name}: read its own PKI from SSM at boot",
                            tags=self._tagged(f"{prefix}-role"), opts=self._opts())
        path, region = self.layout.ssm_path(node), self.layout.region
        policy = aws.iam.RolePolicy(
            f"{prefix}-ssm", role=role.id,
            policy=pulumi.Output.all(partition, account, key_arn).apply(
                lambda v: node_policy(v[0], region, v[1], path, v[2])),
            opts=self._opts())
        policies = [policy]
        if node.role == "master" and self.backups is not None:
            prefix_of, cluster_id = backup_prefix(self.layout), self._settings.cluster_id
            policies.append(aws.iam.RolePolicy(
                f"{prefix}-etcd-backup", role=role.id,
                policy=pulumi.Output.all(partition, self.backups.bucket, self.backups.kms_key_arn).apply(
                    lambda v: etcd_backup_policy(v[0], region, v[1], prefix_of, v[2], cluster_id)),
                opts=self._opts()))
        if node.role == "minion":
            cluster = self._settings.cluster_id
            policies.append(aws.iam.RolePolicy(f"{prefix}-ebs-csi", role=role.id,
                                               policy=partition.apply(lambda p: ebs_csi_policy(p, cluster)),
                                               opts=self._opts()))
        profile = aws.iam.InstanceProfile(f"{prefix}-profile", role=role.name, tags=self._tagged(f"{prefix}-profile"),
                                          opts=self._opts())
        return profile, policies

    def _reserve_node_addresses(self, network: Network) -> list[aws.ec2.SubnetCidrReservation]:
        """Every node slot's address is reserved (explicit) in its zone's subnet: the load balancers'
        interfaces, created before some nodes exist, must not take an address a node is rendered with."""
        return [
            aws.ec2.SubnetCidrReservation(
                f"{self._name}-node-addresses-{cidr_slug(block)}", subnet_id=network.node_subnet_ids[zone],
                cidr_block=block, reservation_type="explicit",
                description=f"{self._settings.name} node addresses (fixed per slot)", opts=self._opts())
            for zone, blocks in enumerate(node_address_blocks(self.layout)) for block in blocks
        ]

    def _frontend_address(self) -> pulumi.Output[str] | None:
        if self.frontend_lb is None or self._settings.frontend_lb is None:
            return None
        port = self._settings.frontend_lb.listen_port
        return self.frontend_lb.dns_name.apply(lambda host: host if port == 80 else f"{host}:{port}")

    def _api_address(self, first_master: aws.ec2.Instance) -> aws.ec2.Eip:
        """Without an API load balancer, the first master's public address for the kubeconfig: an
        Elastic IP, because an instance's own public address changes on every stop/start."""
        name = f"{self._name}-api-eip"
        return aws.ec2.Eip(name, domain="vpc", instance=first_master.id, tags=self._tagged(name),
                           opts=self._opts(protect=self._settings.protect))

    def _frontend_lb(self, network: Network, nodes: aws.ec2.SecurityGroup, minions: list[aws.ec2.Instance],
                     reserved: list[aws.ec2.SubnetCidrReservation]) -> TcpLoadBalancer | None:
        """frontendServiceType=LoadBalancer: an NLB on the frontend's fixed NodePort (no cloud controller here)."""
        lb = self._settings.frontend_lb
        if lb is None:
            return None
        return TcpLoadBalancer(
            f"{self._name}-frontend-lb",
            TcpLoadBalancerArgs(
                vpc_id=network.vpc_id,
                # every zone's public subnet: an NLB forwards only to targets in zones it is enabled in
                subnet_ids=network.public_subnet_ids,
                targets_security_group_id=nodes.id,
                targets={node.name: instance.id for node, instance in zip(self.layout.minions, minions, strict=True)},
                target_port=lb.node_port,
                listen_port=lb.listen_port,
                source_cidrs=list(lb.source_cidrs),
                purpose="Guestbook frontend",
                tags=self._tagged(f"{self._name}-frontend-lb"),
                deletion_protection=self._settings.protect,
            ),
            opts=ResourceOptions(parent=self, depends_on=reserved),
        )

    def _api_lb(self, network: Network, control_plane: aws.ec2.SecurityGroup,
                reserved: list[aws.ec2.SubnetCidrReservation]) -> TcpLoadBalancer | None:
        """apiLoadBalancer: 6443 on every master, for adminCidrs. Its targets are the masters' fixed
        addresses, so it exists before the masters and their certificates can name it."""
        if not self._settings.api_load_balancer:
            return None
        return TcpLoadBalancer(
            f"{self._name}-api-lb",
            TcpLoadBalancerArgs(
                vpc_id=network.vpc_id,
                subnet_ids=network.public_subnet_ids,
                targets_security_group_id=control_plane.id,
                targets={node.name: node.private_ip for node in self.layout.masters},
                target_type="ip",
                target_port=API_PORT,
                listen_port=API_PORT,
                source_cidrs=list(self._settings.admin_cidrs),
                purpose="Kubernetes API",
                tags=self._tagged(f"{self._name}-api-lb"),
                deletion_protection=self._settings.protect,
            ),
            opts=ResourceOptions(parent=self, depends_on=reserved),
        )

    def _user_data(self, node: NodeSpec) -> pulumi.Input[str]:
        """The node's gzip-compressed #cloud-config, base64; a master's names its backup bucket and key,
        known once they exist."""
        if node.role != "master" or self.backups is None:
            return render_user_data_base64(self.layout, node)
        return pulumi.Output.all(self.backups.bucket, self.backups.kms_key_arn).apply(
            lambda v: render_user_data_base64(self.layout, node, BackupTarget(bucket=v[0], kms_key=v[1])))

    def _instance(self, node: NodeSpec, ami: pulumi.Input[str], subnet_id: pulumi.Output[str],
                  group: aws.ec2.SecurityGroup, profile: aws.iam.InstanceProfile,
                  depends_on: list[pulumi.Resource]) -> aws.ec2.Instance:
        s = self._settings
        master = node.role == "master"
        return aws.ec2.Instance(
            f"{self._name}-{node.name}",
            ami=ami,
            instance_type=s.master_instance_type if master else s.minion_instance_type,
            subnet_id=subnet_id,
            private_ip=node.private_ip,
            # Private nodes reach the internet through their zone's NAT gateway; people reach them
            # through the Instance Connect Endpoint, the API through its load balancer.
            associate_public_ip_address=not s.private_nodes,
            vpc_security_group_ids=[group.id],
            iam_instance_profile=profile.name,
            key_name=s.key_name,
            # IMDSv2 only, one hop: pods (one hop further) cannot reach the node's role credentials.
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1},
            # Tags on the root volume only: `volume_tags` would also claim (and on update, retag) the
            # EBS CSI driver's volumes attached to the instance.
            root_block_device={"volume_type": "gp3", "volume_size": s.root_volume_gb, "encrypted": True,
                               "delete_on_termination": True, "tags": self._tagged(node.name, role=node.role)},
            # gzip: cloud-init decompresses it; the largest shape's master (25.3 KB of #cloud-config as
            # text) needs 7.7 KB of EC2's 16 KB that way (tests/components/node/test_cloud_init_schema.py).
            user_data_base64=self._user_data(node),
            tags=self._tagged(node.name, role=node.role),
            # A looked-up AMI moves whenever Fedora publishes a newer image, and `ami` forces a
            # replacement (a master's etcd data with it). New nodes take the newest image; an
            # existing node moves only when amiId is set explicitly or on `pulumi up --replace`.
            opts=ResourceOptions.merge(
                self._opts(depends_on=depends_on, protect=s.protect and master),
                ResourceOptions(ignore_changes=[] if s.ami_id else ["ami"]),
            ),
        )

