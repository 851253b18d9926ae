"""TcpLoadBalancer: an AWS Network Load Balancer the program builds itself, for TCP.

The self-managed cluster runs no cloud controller manager, so nothing in it would
build a load balancer. Two things need one, and both get it from Pulumi instead (the
nodes need no AWS permissions, nothing in the cluster talks to the AWS API):

- the Guestbook frontend (frontendServiceType=LoadBalancer): a NodePort Service with
  a fixed nodePort, instance targets on every minion, client IP preserved;

      client --(listen_port, only from source_cidrs)--> NLB --(target_port)--> every minion
      minion: kube-proxy --> a ready frontend pod (on any minion, over the overlay)

- the Kubernetes API (apiLoadBalancer): 6443 on every master, IP targets (the masters'
  fixed private addresses, known before any instance exists, so the apiserver
  certificates can name the NLB without waiting for the instances).

Choices:
- The NLB has its own security group (NLBs accept them only at creation), and the
  targets admit target_port only from that group: clients reach the targets through the
  NLB, never directly.
- Health check: TCP on the traffic port. For the frontend, the Service keeps the default
  externalTrafficPolicy=Cluster, so a check against a minion's node port lands on a
  random frontend pod anywhere in the cluster: it can only judge what the NLB can act
  on, that the minion is up and its kube-proxy forwards to some ready endpoint (with
  no ready endpoint kube-proxy rejects the SYN). Pod health is the readiness probe's
  job, which takes a bad pod out of every minion's forwarding at once; an HTTP check
  would repeat it and mark a sound minion down whenever it hit one slow pod. For the
  API, /readyz needs credentials (anonymous auth is off), so TCP is what is left.
- AWS names (NLB, target group) are derived here, always within AWS's 32 characters:
  Pulumi's auto-naming appends 7 random characters and refuses resource names longer
  than 24, which long cluster names reach.

Out of scope: access logs (they need an S3 bucket whose policy admits the ELB log
delivery; none is built here), TLS termination (plain TCP; the API's TLS is end to
end), IPv6.
Known limitation (AWS, client IP preservation, instance targets): NAT loopback is not
supported, so a minion, or a pod on it, that connects through the frontend's NLB and is
routed back to the same minion times out. In-cluster clients use the Service, not the NLB.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from components import tokens
from components.facts import TAG_NAME

AWS_NAME_MAX = 32  # NLB and target group names (CreateLoadBalancer, CreateTargetGroup)
DIGEST_LENGTH = 8
PROTOCOL = "TCP"
TargetType = Literal["instance", "ip"]
DEREGISTRATION_DELAY = 30  # seconds: short requests and client-side retries; 300 (default) only delays swaps
HEALTH_CHECK: aws.lb.TargetGroupHealthCheckArgsDict = {
    "protocol": PROTOCOL,
    "port": "traffic-port",
    "interval": 10,
    "timeout": 5,
    "healthy_threshold": 2,
    "unhealthy_threshold": 2,
}


def aws_name(stem: str, part: str, key: str) -> str:
    """A load balancer or target group name that AWS accepts, deterministic in (stem, part, key).

    At most 32 characters of [a-z0-9-], no hyphen at either end, never starting with
    "internal-" (CreateLoadBalancer refuses that prefix). The digest of `key`
    keeps two names apart when truncation makes their stems equal, and gives a resource
    a new name whenever `key` holds what forces its replacement.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:DIGEST_LENGTH]
    room = AWS_NAME_MAX - len(part) - len(digest) - 2
    if room < 1:
        raise ValueError(f"name part {part!r} leaves no room for a stem")
    clean = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    clean = re.sub(r"^internal(?=-|$)", "int", clean)[:room].strip("-")
    return "-".join(p for p in (clean, part, digest) if p)


def cidr_slug(cidr: str) -> str:
    """A CIDR as part of a resource name: 10.0.0.0/16 -> 10-0-0-0-16."""
    return cidr.replace(".", "-").replace("/", "-")


def _check_ports(target_port: int, listen_port: int) -> None:
    for what, port in (("target_port", target_port), ("listen_port", listen_port)):
        if not 1 <= port <= 65535:
            raise ValueError(f"{what} {port} is not a TCP port")


def _check_cidrs(cidrs: Sequence[str]) -> None:
    if not cidrs:
        raise ValueError("source_cidrs is empty: nobody could reach the listener")
    if len(set(cidrs)) != len(cidrs):
        raise ValueError(f"source_cidrs {list(cidrs)} repeats a CIDR: AWS refuses duplicate rules")
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr, strict=True)  # ValueError names the bad value
        if network.version != 4:
            raise ValueError(f"source CIDR {cidr} is not IPv4: the load balancer is IPv4 only")


@dataclass
class TcpLoadBalancerArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    targets_security_group_id: pulumi.Input[str]
    targets: Mapping[str, pulumi.Input[str]]  # node name -> EC2 instance id, or private IP with target_type "ip"
    target_port: int  # the frontend's NodePort, or the apiserver's 6443
    listen_port: int  # e.g. 80
    source_cidrs: Sequence[str]  # who may reach the listener
    purpose: str  # what it serves, for rule descriptions: "Guestbook frontend", "Kubernetes API"
    tags: Mapping[str, str]
    target_type: TargetType = "instance"
    deletion_protection: bool = False


def _check_args(args: TcpLoadBalancerArgs) -> None:
    _check_ports(args.target_port, args.listen_port)
    _check_cidrs(args.source_cidrs)
    if not args.subnet_ids:
        raise ValueError("subnet_ids is empty: a load balancer needs at least one subnet")
    if not args.targets:
        raise ValueError("targets is empty: the load balancer would have nothing to forward to")


class TcpLoadBalancer(pulumi.ComponentResource):
    """An internet-facing NLB forwarding listen_port to target_port on every target."""

    dns_name: pulumi.Output[str]
    arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    target_group_arn: pulumi.Output[str]

    def __init__(self, name: str, args: TcpLoadBalancerArgs, opts: ResourceOptions | None = None) -> None:
        _check_args(args)  # before registering anything: a refused component leaves no half graph
        super().__init__(tokens.TCP_LOAD_BALANCER, name, None, opts)
        self._name = name
        self._args = args
        # AWS names are unique per account and region: the stack and project keep two stacks apart.
        self._scope = f"{pulumi.get_project()}/{pulumi.get_stack()}/{name}"

        group = self._security_group()
        self._targets_rule(group)
        balancer = self._balancer(group)
        target_group = self._target_group()
        aws.lb.Listener(
            f"{name}-listener",
            load_balancer_arn=balancer.arn,
            port=args.listen_port,
            protocol=PROTOCOL,
            default_actions=[{"type": "forward", "target_group_arn": target_group.arn}],
            tags=self._tagged(f"{name}-listener"),
            opts=ResourceOptions(parent=self),
        )
        for target in sorted(args.targets):
            aws.lb.TargetGroupAttachment(
                f"{name}-target-{target}",
                target_group_arn=target_group.arn,
                target_id=args.targets[target],
                port=args.target_port,
                opts=ResourceOptions(parent=self),
            )

        self.dns_name = balancer.dns_name
        self.arn = balancer.arn
        self.security_group_id = group.id
        self.target_group_arn = target_group.arn
        self.register_outputs(
            {
                "dnsName": self.dns_name,
                "arn": self.arn,
                "securityGroupId": self.security_group_id,
                "targetGroupArn": self.target_group_arn,
            }
        )

    def _tagged(self, resource_name: str) -> dict[str, str]:
        return {**self._args.tags, TAG_NAME: resource_name}

    def _security_group(self) -> aws.ec2.SecurityGroup:
        """The NLB's own group: in only on the listener from the allowed CIDRs, out only to the targets' port."""
        name, args = self._name, self._args
        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description=f"{name} Network Load Balancer ({args.purpose}): listener {args.listen_port}/tcp in, "
            f"{args.target_port}/tcp out to its targets",
            tags=self._tagged(f"{name}-sg"),
            opts=ResourceOptions(parent=self),
        )
        for cidr in args.source_cidrs:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-listener-from-{cidr_slug(cidr)}",
                security_group_id=group.id,
                ip_protocol="tcp",
                from_port=args.listen_port,
                to_port=args.listen_port,
                cidr_ipv4=cidr,
                description=f"{args.purpose} listener from {cidr}",
                tags=self._tagged(f"{name}-listener-from-{cidr_slug(cidr)}"),
                opts=ResourceOptions(parent=self),
            )
        # Health checks are subject to the NLB group's outbound rules (not to inbound ones), and
        # they go to the traffic port: this one rule carries both the traffic and the checks.
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-to-targets",
            security_group_id=group.id,
            ip_protocol="tcp",
            from_port=args.target_port,
            to_port=args.target_port,
            referenced_security_group_id=args.targets_security_group_id,
            description=f"{args.purpose} port {args.target_port} and its health checks on the targets",
            tags=self._tagged(f"{name}-to-targets"),
            opts=ResourceOptions(parent=self),
        )
        return group

    def _targets_rule(self, group: aws.ec2.SecurityGroup) -> aws.vpc.SecurityGroupIngressRule:
        """The targets admit target_port only from the NLB's group.

        With instance targets the target group preserves client IPs, so packets reach a
        minion with the client's address as source, not the NLB's. AWS, "Update the security groups for
        your Network Load Balancer" (docs.aws.amazon.com/elasticloadbalancing/latest/
        network/load-balancer-security-groups.html): "Referencing the security group
        associated with your Network Load Balancer in the security groups associated with
        your targets ensures that your targets accept traffic from your Network Load
        Balancer even if you enable client IP preservation", and it "allows clients to
        send traffic to your targets through your load balancer, but prevents them from
        sending traffic directly to your targets". It holds only for an NLB that has a
        security group, which can be given only when the NLB is created (the same page),
        and client IP preservation needs the targets in the NLB's VPC, reached directly
        (edit-target-group-attributes.html). Both hold here: the group is set at creation
        and the target group lives in the targets' VPC.
        """
        name, args = self._name, self._args
        return aws.vpc.SecurityGroupIngressRule(
            f"{name}-targets-from-nlb",
            security_group_id=args.targets_security_group_id,
            ip_protocol="tcp",
            from_port=args.target_port,
            to_port=args.target_port,
            referenced_security_group_id=group.id,
            description=f"{args.purpose} port {args.target_port} only through the {name} load balancer",
            tags=self._tagged(f"{name}-targets-from-nlb"),
            opts=ResourceOptions(parent=self),
        )

    def _balancer(self, group: aws.ec2.SecurityGroup) -> aws.lb.LoadBalancer:
        name, args = self._name, self._args
        return aws.lb.LoadBalancer(
            f"{name}-nlb",
            name=aws_name(name, "nlb", f"{self._scope}/nlb"),
            load_balancer_type="network",
            internal=False,
            subnets=list(args.subnet_ids),
            security_groups=[group.id],
            enable_cross_zone_load_balancing=True,
            enable_deletion_protection=args.deletion_protection,
            tags=self._tagged(f"{name}-nlb"),
            # The name is fixed, so a replacement (new subnets list without one, say) must free it
            # first; a replaced NLB gets a new DNS name anyway, so there is no overlap to keep.
            opts=ResourceOptions(parent=self, delete_before_replace=True),
        )

    def _target_group(self) -> aws.lb.TargetGroup:
        name, args = self._name, self._args
        # The listener keeps using a target group until its successor exists, so a replacement
        # must be created first: the name carries everything that forces one, and changes with it.
        tg_name = pulumi.Output.from_input(args.vpc_id).apply(
            lambda vpc: aws_name(name, "tg", f"{self._scope}/tg/{vpc}/{PROTOCOL}/{args.target_type}/{args.target_port}")
        )
        return aws.lb.TargetGroup(
            f"{name}-tg",
            name=tg_name,
            vpc_id=args.vpc_id,
            port=args.target_port,
            protocol=PROTOCOL,
            target_type=args.target_type,
            # AWS's defaults (on for instance targets, off for IP targets over TCP), stated because the
            # targets' rule above is written for them.
            preserve_client_ip="true" if args.target_type == "instance" else "false",
            deregistration_delay=DEREGISTRATION_DELAY,
            health_check=HEALTH_CHECK,
            tags=self._tagged(f"{name}-tg"),
            opts=ResourceOptions(parent=self),
        )
