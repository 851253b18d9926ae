"""Zones, private nodes and SSH in the registered graph of every aws stack (the whole program under mocks).

For each stack as its file says, and for shapes it does not take (three zones for dev, public nodes
for prod, one shared NAT gateway): where every node is, whether anything gives it a public address,
who may reach port 22, and which NAT gateway each zone's nodes leave through.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest

from components import tokens
from tests.conftest import STACKS
from tools.harness.mocks import Registration
from tools.harness.offline import Plan, run_program

AWS_STACKS = [s for s in STACKS if s != "local"]
SSH = 22
THREE = {"availabilityZones": ["us-east-1a", "us-east-1b", "us-east-1c"]}


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {stack: run_program(stack) for stack in AWS_STACKS}


def _by_id(plan: Plan, token: str) -> dict[str, Registration]:
    return {r.id: r for r in plan.of_type(token)}


def zone_of(plan: Plan, instance: Registration) -> Any:
    """An instance's zone: its subnet's (an instance is in its subnet's zone; it names none itself)."""
    subnet = _by_id(plan, tokens.SUBNET).get(instance.inputs["subnetId"])
    assert subnet is not None, f"{instance.name} is in no subnet of the plan"
    return subnet.inputs["availabilityZone"]


def masters(plan: Plan) -> list[Registration]:
    return [i for i in plan.instances() if i.inputs["tags"]["Role"] == "master"]


def minions(plan: Plan) -> list[Registration]:
    return [i for i in plan.instances() if i.inputs["tags"]["Role"] == "minion"]


def zones_given(plan: Plan) -> list[str]:
    assert plan.settings is not None and plan.settings.cluster is not None
    return list(plan.settings.cluster.zones)


def public_address(plan: Plan, instance: Registration) -> bool:
    """Whether anything gives this instance a public IPv4 address: its own flag (else its subnet's
    default), or an Elastic IP associated with it."""
    subnet = _by_id(plan, tokens.SUBNET)[instance.inputs["subnetId"]]
    own = instance.inputs.get("associatePublicIpAddress")
    automatic = subnet.inputs.get("mapPublicIpOnLaunch") if own is None else own
    eip = any(e.inputs.get("instance") == instance.id for e in plan.of_type(tokens.EIP))
    return bool(automatic) or eip


def ssh_rules(plan: Plan) -> list[Registration]:
    return [r for r in plan.of_type(tokens.INGRESS_RULE)
            if r.inputs.get("ipProtocol") in ("tcp", "-1") and r.inputs["fromPort"] <= SSH <= r.inputs["toPort"]]


# --------------------------------------------------------------------------
# Every aws stack, as its stack file says
# --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_masters_are_in_distinct_zones_when_three_zones_are_given(plans: dict[str, Plan], stack: str) -> None:
    plan = plans[stack]
    given = zones_given(plan)
    master_zones = [zone_of(plan, m) for m in masters(plan)]
    if len(given) >= 3:
        assert len(master_zones) == 3 and len(set(master_zones)) == 3, master_zones
        assert set(master_zones) <= set(given)
    else:
        assert len(set(map(str, master_zones))) == 1, f"{stack}: one zone, every master in it"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_minions_are_balanced_over_the_zones(plans: dict[str, Plan], stack: str) -> None:
    plan = plans[stack]
    zones = zones_given(plan) or [str(zone_of(plan, minions(plan)[0]))]
    per_zone = Counter(str(zone_of(plan, m)) for m in minions(plan))
    counts = [per_zone.get(zone, 0) for zone in zones]
    assert sum(counts) == len(minions(plan)) and max(counts) - min(counts) <= 1, per_zone


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_no_node_has_a_public_address_when_private_nodes_are_on(plans: dict[str, Plan], stack: str) -> None:
    plan = plans[stack]
    assert plan.settings is not None and plan.settings.cluster is not None
    private = plan.settings.cluster.private_nodes
    for instance in plan.instances():
        assert public_address(plan, instance) == (not private), instance.name
    if private:
        subnets = {zone_of(plan, i) for i in plan.instances()}
        assert subnets, "nodes are somewhere"
        for instance in plan.instances():
            subnet = _by_id(plan, tokens.SUBNET)[instance.inputs["subnetId"]]
            assert subnet.inputs["mapPublicIpOnLaunch"] is False and subnet.name.startswith("cluster-private-")


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_no_cidr_reaches_ssh_unless_opened(plans: dict[str, Plan], stack: str) -> None:
    plan = plans[stack]
    assert plan.settings is not None and plan.settings.cluster is not None
    assert not plan.settings.cluster.ssh_from_admin_cidrs, f"{stack} opens SSH to CIDRs: this test expects none"
    endpoint_group = plan.named("cluster-connect-endpoint-sg").id
    rules = ssh_rules(plan)
    assert rules, "SSH reaches the nodes through the endpoint"
    for rule in rules:
        assert "cidrIpv4" not in rule.inputs and "cidrIpv6" not in rule.inputs, rule.name
        assert rule.inputs["referencedSecurityGroupId"] == endpoint_group, rule.name


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_connect_endpoint_reaches_only_ssh_on_the_nodes_from_a_node_subnet(plans: dict[str, Plan],
                                                                               stack: str) -> None:
    plan = plans[stack]
    (endpoint,) = plan.of_type(tokens.INSTANCE_CONNECT_ENDPOINT)
    (group,) = [g for g in plan.of_type(tokens.SECURITY_GROUP) if g.name == "cluster-connect-endpoint-sg"]
    assert endpoint.inputs["securityGroupIds"] == [group.id]
    assert endpoint.inputs["preserveClientIp"] is False, "the nodes' rule names the endpoint's group"
    assert endpoint.options["deleteBeforeReplace"], "AWS allows one endpoint per VPC"
    assert endpoint.inputs["subnetId"] in {i.inputs["subnetId"] for i in plan.instances()}
    out = [r for r in plan.of_type(tokens.EGRESS_RULE) if r.inputs["securityGroupId"] == group.id]
    node_groups = {g.id for g in plan.of_type(tokens.SECURITY_GROUP) if g.name in ("cluster-control-plane-sg",
                                                                                   "cluster-nodes-sg")}
    assert {(r.inputs["fromPort"], r.inputs["toPort"], r.inputs["referencedSecurityGroupId"]) for r in out} == {
        (SSH, SSH, g) for g in node_groups}
    assert not [r for r in plan.of_type(tokens.INGRESS_RULE) if r.inputs["securityGroupId"] == group.id]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_private_zones_leave_through_their_own_nat_gateway_in_prod(plans: dict[str, Plan], stack: str) -> None:
    plan = plans[stack]
    assert plan.settings is not None and plan.settings.cluster is not None
    cluster = plan.settings.cluster
    nats = plan.of_type(tokens.NAT_GATEWAY)
    if not cluster.private_nodes:
        assert not nats, f"{stack} has public nodes and no NAT gateway"
        return
    assert cluster.nat_gateways == ("perZone" if stack == "prod" else cluster.nat_gateways)
    _nat_routes_follow_the_setting(plan, expected_per_zone=cluster.nat_gateways == "perZone")


def _nat_routes_follow_the_setting(plan: Plan, *, expected_per_zone: bool) -> None:
    subnets = _by_id(plan, tokens.SUBNET)
    nats = {n.id: n for n in plan.of_type(tokens.NAT_GATEWAY)}
    zones = sorted({str(s.inputs["availabilityZone"]) for s in subnets.values()})
    assert len(nats) == (len(zones) if expected_per_zone else 1)
    nat_zones = [str(subnets[n.inputs["subnetId"]].inputs["availabilityZone"]) for n in nats.values()]
    assert len(set(nat_zones)) == len(nat_zones), "no two NAT gateways in one zone"
    for nat in nats.values():
        subnet = subnets[nat.inputs["subnetId"]]
        assert not subnet.name.startswith("cluster-private-"), "a NAT gateway sits in a public subnet"
        eip = next(e for e in plan.of_type(tokens.EIP) if e.state.get("allocationId") == nat.inputs["allocationId"])
        assert eip.inputs["domain"] == "vpc"
    tables = {t.id: t for t in plan.of_type(tokens.ROUTE_TABLE)}
    routes = {r.inputs["routeTableId"]: r for r in plan.of_type(tokens.ROUTE)
              if r.inputs["destinationCidrBlock"] == "0.0.0.0/0"}
    for assoc in plan.of_type(tokens.ROUTE_TABLE_ASSOCIATION):
        subnet = subnets[assoc.inputs["subnetId"]]
        route = routes[assoc.inputs["routeTableId"]]
        assert assoc.inputs["routeTableId"] in tables
        if subnet.name.startswith("cluster-private-"):
            nat = nats[route.inputs["natGatewayId"]]
            nat_zone = subnets[nat.inputs["subnetId"]].inputs["availabilityZone"]
            if expected_per_zone:
                assert nat_zone == subnet.inputs["availabilityZone"], subnet.name
            assert "gatewayId" not in route.inputs, "a private subnet has no route to the internet gateway"
        else:
            assert route.inputs["gatewayId"].startswith("igw-") and "natGatewayId" not in route.inputs


# --------------------------------------------------------------------------
# Shapes the stack files do not take
# --------------------------------------------------------------------------


def test_three_zones_on_dev_spread_masters_and_minions() -> None:
    plan = run_program("dev", {**THREE, "masterCount": 3, "minionCount": 5})
    assert sorted(map(str, (zone_of(plan, m) for m in masters(plan)))) == THREE["availabilityZones"]
    per_zone = Counter(str(zone_of(plan, m)) for m in minions(plan))
    assert sorted(per_zone.values()) == [1, 2, 2]
    # the first zone's subnet keeps the resource name and CIDR of the single subnet dev began with
    first = plan.named("cluster-subnet")
    assert (first.inputs["cidrBlock"], first.inputs["availabilityZone"]) == ("10.0.1.0/24", "us-east-1a")
    assert {s.inputs["cidrBlock"] for s in plan.of_type(tokens.SUBNET)} == {"10.0.1.0/24", "10.0.2.0/24",
                                                                             "10.0.3.0/24"}
    # every zone's subnet behind both load balancers' interfaces would be; dev has the API's Elastic IP only
    for instance in plan.instances():
        assert public_address(plan, instance)


def test_the_load_balancers_are_in_every_zones_public_subnet() -> None:
    plan = run_program("prod")
    public = {s.id for s in plan.of_type(tokens.SUBNET) if not s.name.startswith("cluster-private-")}
    assert len(public) == 3
    for lb in plan.of_type(tokens.LOAD_BALANCER):
        assert set(lb.inputs["subnets"]) == public, lb.name


def test_prod_with_public_nodes_has_no_nat_and_nodes_in_the_public_subnets() -> None:
    plan = run_program("prod", {"privateNodes": False})
    assert not plan.of_type(tokens.NAT_GATEWAY) and not plan.of_type(tokens.VPC_ENDPOINT)
    assert all(public_address(plan, i) for i in plan.instances())
    assert sorted(m.inputs["privateIp"] for m in masters(plan)) == ["10.40.0.10", "10.40.4.10", "10.40.8.10"]


def test_one_shared_nat_gateway_serves_every_zone_when_asked() -> None:
    plan = run_program("prod", {"natGateways": "single"})
    _nat_routes_follow_the_setting(plan, expected_per_zone=False)


def test_a_private_cluster_reaches_s3_through_a_gateway_endpoint_on_every_route_table() -> None:
    plan = run_program("prod")
    (endpoint,) = plan.of_type(tokens.VPC_ENDPOINT)
    assert endpoint.inputs["serviceName"] == "com.amazonaws.us-west-2.s3"
    assert endpoint.inputs["vpcEndpointType"] == "Gateway"
    assert set(endpoint.inputs["routeTableIds"]) == {t.id for t in plan.of_type(tokens.ROUTE_TABLE)}


def test_ssh_opens_to_the_admin_cidrs_only_when_asked() -> None:
    plan = run_program("dev", {"sshFromAdminCidrs": True})
    cidrs = {r.inputs.get("cidrIpv4") for r in ssh_rules(plan)}
    assert cidrs == {"198.51.100.0/24", None}  # the admin CIDR, and the endpoint's group
    closed = run_program("dev", {"instanceConnectEndpoint": False})
    assert not ssh_rules(closed) and not closed.of_type(tokens.INSTANCE_CONNECT_ENDPOINT)
    assert not [g for g in closed.of_type(tokens.SECURITY_GROUP) if "connect-endpoint" in g.name]


# --------------------------------------------------------------------------
# The checks above can fail
# --------------------------------------------------------------------------


def test_the_zone_checks_fail_on_a_wrongly_placed_node(plans: dict[str, Plan]) -> None:
    plan = copy.deepcopy(plans["prod"])
    first, second = masters(plan)[:2]
    second.inputs["subnetId"] = first.inputs["subnetId"]  # two masters in one zone
    with pytest.raises(AssertionError):
        test_masters_are_in_distinct_zones_when_three_zones_are_given({"prod": plan}, "prod")
    plan = copy.deepcopy(plans["prod"])
    for minion in minions(plan):
        minion.inputs["subnetId"] = masters(plan)[0].inputs["subnetId"]  # every minion in zone a
    with pytest.raises(AssertionError):
        test_minions_are_balanced_over_the_zones({"prod": plan}, "prod")


def test_the_address_and_ssh_checks_fail_on_a_public_node_and_an_open_port(plans: dict[str, Plan]) -> None:
    plan = copy.deepcopy(plans["prod"])
    plan.instances()[3].inputs["associatePublicIpAddress"] = True
    with pytest.raises(AssertionError):
        test_no_node_has_a_public_address_when_private_nodes_are_on({"prod": plan}, "prod")
    plan = copy.deepcopy(plans["prod"])
    rule = ssh_rules(plan)[0]
    del rule.inputs["referencedSecurityGroupId"]
    rule.inputs["cidrIpv4"] = "0.0.0.0/0"
    with pytest.raises(AssertionError):
        test_no_cidr_reaches_ssh_unless_opened({"prod": plan}, "prod")


def test_the_nat_check_fails_when_zones_share_a_gateway_it_expects_per_zone() -> None:
    with pytest.raises(AssertionError):
        _nat_routes_follow_the_setting(run_program("prod", {"natGateways": "single"}), expected_per_zone=True)


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_a_one_zone_public_stack_keeps_what_would_replace_its_network_and_nodes(plans: dict[str, Plan],
                                                                                stack: str) -> None:
    """What a stack created before zones existed keeps on upgrading: the resource names (URNs) of its
    network, and every instance input that forces a replacement (subnet, address, public address;
    no explicit zone, which the instances never had)."""
    plan = plans[stack]
    names = {r.name for r in plan.resources}
    assert {"cluster-vpc", "cluster-subnet", "cluster-igw", "cluster-rt", "cluster-default-route",
            "cluster-rt-assoc"} <= names
    (subnet,) = plan.of_type(tokens.SUBNET)
    assert subnet.name == "cluster-subnet" and subnet.inputs["cidrBlock"] == "10.0.1.0/24"
    assert subnet.inputs["mapPublicIpOnLaunch"] is True
    assert not plan.of_type(tokens.NAT_GATEWAY)
    for instance in plan.instances():
        assert instance.inputs["subnetId"] == subnet.id and instance.inputs["associatePublicIpAddress"] is True
        assert "availabilityZone" not in instance.inputs
    expected = {f"atomic-master-{i + 1}": f"10.0.1.{10 + i}" for i in range(3)}
    expected |= {f"atomic-minion-{i + 1}": f"10.0.1.{13 + i}" for i in range(3)}
    for instance in plan.instances():
        assert instance.inputs["privateIp"] == expected[instance.inputs["tags"]["Name"]]
