"""TcpLoadBalancer built alone under mocks (the frontend's shape, and the API's in the last test):
the NLB graph, its security rules, the review policies, AWS names.

Each test builds the component in a `@pulumi.runtime.test` run (which waits for every
registration) and then reads what the engine received from `unit_mocks.registrations`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

import pulumi
import pytest

from components import tokens
from components.aws.nlb import AWS_NAME_MAX, TcpLoadBalancer, TcpLoadBalancerArgs, aws_name
from policy import validators
from tools.harness.mocks import RecordingMonitor, Registration

COMPONENT = tokens.TCP_LOAD_BALANCER
STACK = tokens.STACK
LB = tokens.LOAD_BALANCER
LISTENER = tokens.LISTENER
TG = tokens.TARGET_GROUP
ATTACHMENT = tokens.TARGET_GROUP_ATTACHMENT
SG = tokens.SECURITY_GROUP
INGRESS = tokens.INGRESS_RULE
EGRESS = tokens.EGRESS_RULE
NODES_SG = "sg-0nodes0000000000"
VPC = "vpc-0abc0000000000000"
NAME = "atomic-frontend"
# What AWS accepts in security group and rule descriptions (EC2 API reference; "&" is not
# allowed in rules that reference a group, so it is left out for all of them).
DESCRIPTION = re.compile(r"^[a-zA-Z0-9 ._\-:/()#,@\[\]+=;{}!$*]{1,255}$")
# Load balancer and target group names: alphanumerics and hyphens, no hyphen at either end.
LB_NAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$")

ARGS = TcpLoadBalancerArgs(
    vpc_id=VPC,
    subnet_ids=["subnet-0aaa0000000000000"],
    targets_security_group_id=NODES_SG,
    targets={"minion-1": "i-0111", "minion-2": "i-0222", "minion-3": "i-0333"},
    target_port=30080,
    listen_port=80,
    source_cidrs=["198.51.100.0/24", "203.0.113.0/28"],
    purpose="Guestbook frontend",
    tags={"Project": "atomic-mysql", "Stack": "unit", "Cluster": "atomic"},
)


def build(args: TcpLoadBalancerArgs = ARGS, name: str = NAME) -> dict[str, Any]:
    """Builds the component and waits for every registration; returns its resolved public outputs."""
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def run() -> pulumi.Output[None]:
        lb = TcpLoadBalancer(name, args)
        return pulumi.Output.all(
            dns_name=lb.dns_name,
            arn=lb.arn,
            security_group_id=lb.security_group_id,
            target_group_arn=lb.target_group_arn,
        ).apply(outputs.update)

    run()
    return outputs


def of_type(monitor: RecordingMonitor, type_token: str) -> list[Registration]:
    return [r for r in monitor.registrations if r.type == type_token]


def one(monitor: RecordingMonitor, type_token: str) -> Registration:
    found = of_type(monitor, type_token)
    assert len(found) == 1, f"{len(found)} {type_token}"
    return found[0]


def nlb_group_id(monitor: RecordingMonitor) -> str:
    return one(monitor, SG).id


def rules(monitor: RecordingMonitor) -> list[Registration]:
    return of_type(monitor, INGRESS) + of_type(monitor, EGRESS)


# --------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------


def test_one_internet_facing_nlb_with_its_own_group_and_a_tcp_listener_to_the_target_group(
    unit_mocks: RecordingMonitor,
) -> None:
    build()
    lb, listener, tg = one(unit_mocks, LB), one(unit_mocks, LISTENER), one(unit_mocks, TG)
    i = lb.inputs
    assert i["loadBalancerType"] == "network" and i["internal"] is False
    assert i["subnets"] == ["subnet-0aaa0000000000000"]
    assert i["securityGroups"] == [nlb_group_id(unit_mocks)]
    assert i["enableCrossZoneLoadBalancing"] is True
    assert i["enableDeletionProtection"] is False
    assert "accessLogs" not in i  # out of scope, said in the module docstring
    assert listener.inputs["port"] == 80 and listener.inputs["protocol"] == "TCP"
    assert listener.inputs["loadBalancerArn"] == lb.state["arn"]
    assert listener.inputs["defaultActions"] == [{"type": "forward", "targetGroupArn": tg.state["arn"]}]


def test_target_group_is_tcp_on_the_node_port_with_instance_targets_and_client_ip(
    unit_mocks: RecordingMonitor,
) -> None:
    build()
    tg = one(unit_mocks, TG).inputs
    assert (tg["protocol"], tg["port"], tg["targetType"], tg["vpcId"]) == ("TCP", 30080, "instance", VPC)
    # The nodes' rule (referencing the NLB's group) is what admits preserved client addresses.
    assert tg["preserveClientIp"] == "true"
    assert tg["deregistrationDelay"] == 30
    check = tg["healthCheck"]
    assert check["protocol"] == "TCP" and check["port"] == "traffic-port"
    assert "path" not in check and "matcher" not in check  # HTTP-only fields, meaningless for a TCP check
    assert check["timeout"] < check["interval"]


def test_one_attachment_per_minion_on_the_node_port_and_none_extra(unit_mocks: RecordingMonitor) -> None:
    build()
    tg_arn = one(unit_mocks, TG).state["arn"]
    attachments = of_type(unit_mocks, ATTACHMENT)
    assert sorted((a.name, a.inputs["targetId"]) for a in attachments) == [
        (f"{NAME}-target-minion-1", "i-0111"),
        (f"{NAME}-target-minion-2", "i-0222"),
        (f"{NAME}-target-minion-3", "i-0333"),
    ]
    for attachment in attachments:
        assert attachment.inputs["targetGroupArn"] == tg_arn
        assert attachment.inputs["port"] == 30080


def test_every_child_is_parented_named_after_the_component_and_tagged(unit_mocks: RecordingMonitor) -> None:
    build()
    (component,) = [r for r in unit_mocks.registrations if r.type == COMPONENT]
    children = [r for r in unit_mocks.registrations if r.type not in (COMPONENT, STACK)]
    assert len(children) == 1 + 2 + 1 + 1 + 1 + 1 + 1 + 3  # group, 2 CIDRs, egress, nodes rule, NLB, TG, listener, 3
    for child in children:
        assert child.parent == component.urn, child.name
        assert child.name.startswith(f"{NAME}-"), child.name
        if child.type != ATTACHMENT:  # target group attachments take no tags
            assert child.inputs["tags"]["Project"] == "atomic-mysql", child.name
            assert child.inputs["tags"]["Name"] == child.name, child.name


def test_a_replaced_nlb_frees_its_fixed_name_first(unit_mocks: RecordingMonitor) -> None:
    build(dataclasses.replace(ARGS, deletion_protection=True))
    lb = one(unit_mocks, LB)
    assert lb.options["deleteBeforeReplace"] is True
    assert lb.inputs["enableDeletionProtection"] is True
    assert one(unit_mocks, TG).options["deleteBeforeReplace"] is False  # a new name instead, see below


# --------------------------------------------------------------------------
# Security groups
# --------------------------------------------------------------------------


def test_nlb_group_admits_only_the_source_cidrs_on_the_listener_and_sends_only_to_the_node_port(
    unit_mocks: RecordingMonitor,
) -> None:
    build()
    group = nlb_group_id(unit_mocks)
    ingress = [r.inputs for r in of_type(unit_mocks, INGRESS) if r.inputs["securityGroupId"] == group]
    assert sorted((r["ipProtocol"], r["fromPort"], r["toPort"], r["cidrIpv4"]) for r in ingress) == [
        ("tcp", 80, 80, "198.51.100.0/24"),
        ("tcp", 80, 80, "203.0.113.0/28"),
    ]
    assert all("referencedSecurityGroupId" not in r for r in ingress)
    (egress,) = [r.inputs for r in of_type(unit_mocks, EGRESS)]
    assert egress["securityGroupId"] == group
    assert (egress["ipProtocol"], egress["fromPort"], egress["toPort"]) == ("tcp", 30080, 30080)
    assert egress["referencedSecurityGroupId"] == NODES_SG and "cidrIpv4" not in egress


def test_nodes_admit_exactly_the_node_port_and_only_from_the_nlb_group(unit_mocks: RecordingMonitor) -> None:
    build()
    on_nodes = [r.inputs for r in rules(unit_mocks) if r.inputs["securityGroupId"] == NODES_SG]
    assert len(on_nodes) == 1
    (rule,) = on_nodes
    assert rule["referencedSecurityGroupId"] == nlb_group_id(unit_mocks)
    assert (rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 30080, 30080)
    assert "cidrIpv4" not in rule and "cidrIpv6" not in rule


def _world(cidr: str) -> bool:
    return ipaddress.ip_network(cidr).prefixlen == 0


def test_no_rule_is_open_to_the_world_unless_asked(unit_mocks: RecordingMonitor) -> None:
    build()
    assert not [r.name for r in rules(unit_mocks) if _world(r.inputs.get("cidrIpv4", "10.0.0.0/8"))]


def test_the_world_when_asked_reaches_only_the_listener(unit_mocks: RecordingMonitor) -> None:
    build(dataclasses.replace(ARGS, source_cidrs=["0.0.0.0/0"]))
    world = [r.inputs for r in rules(unit_mocks) if _world(r.inputs.get("cidrIpv4", "10.0.0.0/8"))]
    assert [(r["securityGroupId"], r["fromPort"], r["toPort"]) for r in world] == [(nlb_group_id(unit_mocks), 80, 80)]


def test_every_group_and_rule_is_described_in_characters_aws_accepts(unit_mocks: RecordingMonitor) -> None:
    build()
    described = [one(unit_mocks, SG), *rules(unit_mocks)]
    assert len(described) == 5
    for resource in described:
        assert DESCRIPTION.match(resource.inputs.get("description", "")), (resource.name, resource.inputs)


def _plan(monitor: RecordingMonitor) -> list[dict[str, Any]]:
    """The recorded resources in plan.json's shape, as validators.plan_violations reads them."""
    return [
        {"urn": r.urn, "type": r.type, "name": r.name, "inputs": r.inputs, "options": r.options}
        for r in monitor.registrations
    ]


@pytest.mark.parametrize("cidrs", [["198.51.100.0/24", "203.0.113.0/28"], ["0.0.0.0/0"]])
def test_review_policies_report_nothing(unit_mocks: RecordingMonitor, cidrs: list[str]) -> None:
    build(dataclasses.replace(ARGS, source_cidrs=cidrs))
    plan = _plan(unit_mocks)
    for stack in ("unit", "prod"):
        assert validators.plan_violations(plan, stack) == {}
    checked = 0
    for entry in plan:
        for check in (validators.check_rules_described, validators.check_no_world_admin_ingress):
            assert check(entry["type"], entry["inputs"], "prod", validators.Options()) == [], entry["name"]
        checked += len(validators.security_group_rules(entry["type"], entry["inputs"]))
    assert checked == len(cidrs) + 2  # the validators really read every rule this component makes


def test_review_policies_would_see_an_undescribed_or_world_admin_rule(unit_mocks: RecordingMonitor) -> None:
    """The clean report above means something: the same recorded shapes, spoilt, are reported."""
    build()
    rule = next(r for r in of_type(unit_mocks, INGRESS) if "cidrIpv4" in r.inputs)
    spoilt = {**rule.inputs, "description": "", "cidrIpv4": "0.0.0.0/0", "fromPort": 22, "toPort": 22}
    found = validators.violations(INGRESS, spoilt, "prod")
    assert set(found) == {"security-group-rules-described", "no-world-admin-ingress"}


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------

LONG = "a-very-long-cluster-name-for-the-frontend-load-balancer-of-the-guestbook"


@pytest.mark.parametrize(
    "stem", [NAME, LONG, "x", "-Weird_Name.With.Dots--", "internal", "internal-frontend", "9" * 80, "---"]
)
@pytest.mark.parametrize("part", ["nlb", "tg"])
def test_aws_names_always_fit(stem: str, part: str) -> None:
    name = aws_name(stem, part, f"key/{stem}")
    assert len(name) <= AWS_NAME_MAX and LB_NAME.match(name), name
    assert not name.startswith("internal-"), name
    assert name == aws_name(stem, part, f"key/{stem}")  # deterministic: no diff on the next `pulumi up`
    assert name != aws_name(stem, part, f"other/{stem}")  # the key decides, even when the stem is cut


def test_truncated_stems_still_give_distinct_names() -> None:
    assert aws_name(LONG + "-dev", "nlb", "dev") != aws_name(LONG + "-prod", "nlb", "prod")


def test_long_component_names_give_aws_names_within_limits(unit_mocks: RecordingMonitor) -> None:
    build(name=LONG)
    for type_token in (LB, TG):
        name = one(unit_mocks, type_token).inputs["name"]
        assert len(name) <= AWS_NAME_MAX and LB_NAME.match(name), name
        assert name.startswith("a-very-long-cluster"), name


def test_target_group_name_changes_with_what_forces_its_replacement(unit_mocks: RecordingMonitor) -> None:
    """The listener holds the old group until the new one exists, so a replaced group needs a new name."""
    build()
    first_tg, first_lb = one(unit_mocks, TG).inputs["name"], one(unit_mocks, LB).inputs["name"]
    unit_mocks.registrations.clear()
    build(dataclasses.replace(ARGS, target_port=30081))
    assert one(unit_mocks, TG).inputs["name"] != first_tg
    assert one(unit_mocks, LB).inputs["name"] == first_lb
    unit_mocks.registrations.clear()
    build(dataclasses.replace(ARGS, vpc_id="vpc-0def0000000000000"))
    assert one(unit_mocks, TG).inputs["name"] != first_tg


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------


def test_outputs_are_the_real_resources_outputs(unit_mocks: RecordingMonitor) -> None:
    outputs = build()
    lb, tg = one(unit_mocks, LB), one(unit_mocks, TG)
    assert outputs["arn"] == lb.state["arn"] and outputs["arn"].startswith("arn:aws:")
    assert outputs["target_group_arn"] == tg.state["arn"] != outputs["arn"]
    assert outputs["security_group_id"] == nlb_group_id(unit_mocks) != NODES_SG
    assert outputs["dns_name"] == lb.state["dnsName"]
    (component,) = [r for r in unit_mocks.registrations if r.type == COMPONENT]
    registered = {
        "dnsName": outputs["dns_name"],
        "arn": outputs["arn"],
        "securityGroupId": outputs["security_group_id"],
        "targetGroupArn": outputs["target_group_arn"],
    }
    assert component.outputs == registered


def test_dns_name_is_the_nlb_dns_name(unit_mocks: RecordingMonitor) -> None:
    outputs = build()
    nlb_name = one(unit_mocks, LB).inputs["name"]
    # An NLB's DNS name is <name>-<hex id>.elb.<region>.amazonaws.com.
    assert re.match(rf"^{nlb_name}-[0-9a-f]+\.elb\.[a-z0-9-]+\.amazonaws\.com$", str(outputs["dns_name"]))


# --------------------------------------------------------------------------
# Refused arguments
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target_port": 0}, "target_port 0 is not a TCP port"),
        ({"target_port": 65536}, "not a TCP port"),
        ({"listen_port": 0}, "listen_port 0 is not a TCP port"),
        ({"source_cidrs": []}, "source_cidrs is empty"),
        ({"source_cidrs": ["198.51.100.0/24", "198.51.100.0/24"]}, "repeats a CIDR"),
        ({"source_cidrs": ["10.0.0.1/24"]}, "host bits"),
        ({"source_cidrs": ["2001:db8::/32"]}, "not IPv4"),
        ({"subnet_ids": []}, "subnet_ids is empty"),
        ({"targets": {}}, "targets is empty"),
    ],
)
def test_unworkable_arguments_are_refused_before_anything_is_registered(
    unit_mocks: RecordingMonitor, change: dict[str, Any], message: str
) -> None:
    @pulumi.runtime.test
    def run() -> None:  # under the test runtime, so the stack's own registration is awaited
        with pytest.raises(ValueError, match=message):
            TcpLoadBalancer(NAME, dataclasses.replace(ARGS, **change))

    run()
    assert [r.type for r in unit_mocks.registrations] == [STACK]


def test_ip_targets_for_the_api_shape(unit_mocks: RecordingMonitor) -> None:
    """The API's shape: the masters' fixed private addresses as targets, no client IP preservation."""
    masters = {"master-1": "10.0.1.10", "master-2": "10.0.1.11", "master-3": "10.0.1.12"}
    build(dataclasses.replace(ARGS, target_type="ip", targets=masters, target_port=6443, listen_port=6443,
                              purpose="Kubernetes API"))
    tg = one(unit_mocks, TG).inputs
    assert (tg["targetType"], tg["port"], tg["preserveClientIp"]) == ("ip", 6443, "false")
    attachments = [r.inputs for r in unit_mocks.registrations
                   if r.type == tokens.TARGET_GROUP_ATTACHMENT]
    assert sorted((a["targetId"], a["port"]) for a in attachments) == sorted((ip, 6443) for ip in masters.values())
    descriptions = [r.inputs["description"] for r in rules(unit_mocks)]
    assert all("Kubernetes API" in d for d in descriptions), descriptions
