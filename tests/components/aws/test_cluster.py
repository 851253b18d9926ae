"""AtomicCluster's registered graph under Pulumi mocks (the lead's offline harness).

A small program that builds only the cluster from the stack's real settings is
run with tools.harness.offline.run_program; every assertion looks at what the engine
would receive.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import tokens
from components.settings.load import SettingsError
from tools.harness.mocks import AtomicMocks, RecordingMonitor, Registration, _digest
from tools.harness.offline import Plan, run_program
from tools.testing.node_root import user_data_files

PROGRAM = '''
import pulumi
from components.aws.cluster import AtomicCluster, AtomicClusterArgs
from components.settings.load import load_settings

settings = load_settings()
cluster = AtomicCluster(settings.cluster.name, AtomicClusterArgs(settings=settings.cluster))
for key in ("api_endpoint", "kubeconfig", "master_private_ips", "minion_private_ips", "master_public_ips",
            "minion_public_ips", "control_plane_sg_id", "nodes_sg_id"):
    pulumi.export(key, getattr(cluster, key))
'''

INSTANCE = tokens.INSTANCE
INGRESS = tokens.INGRESS_RULE
EGRESS = tokens.EGRESS_RULE
SG = tokens.SECURITY_GROUP
WORLD = "0.0.0.0/0"


def run_cluster(tmp_path: Path, stack: str = "dev", **overrides: Any) -> Plan:
    program = tmp_path / "cluster_program.py"
    program.write_text(PROGRAM)
    return run_program(stack, overrides=overrides, program=program)


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return run_cluster(tmp_path_factory.mktemp("prod"), "prod")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return run_cluster(tmp_path_factory.mktemp("dev"), "dev")


def test_every_instance_has_imdsv2_an_encrypted_gp3_root_and_tags(prod: Plan) -> None:
    instances = prod.instances()
    assert len(instances) == 3 + 6
    for instance in instances:
        i = instance.inputs
        assert i["metadataOptions"]["httpTokens"] == "required", instance.name
        assert i["metadataOptions"]["httpPutResponseHopLimit"] == 1
        root = i["rootBlockDevice"]
        assert root["encrypted"] is True and root["volumeType"] == "gp3" and root["volumeSize"] == 80
        assert {"Project", "Stack", "Owner", "ManagedBy", "Name", "Role", "Cluster"} <= set(i["tags"])
        assert root["tags"]["Project"] == "atomic-mysql" and root["tags"]["Name"] == i["tags"]["Name"]
        # volume_tags would also retag the EBS CSI driver's volumes attached to the instance
        assert "volumeTags" not in i
        assert i["iamInstanceProfile"]


def test_every_taggable_aws_resource_is_tagged(prod: Plan) -> None:
    untaggable = {tokens.ROUTE, tokens.ROUTE_TABLE_ASSOCIATION,
                  tokens.IAM_ROLE_POLICY, tokens.KMS_ALIAS,
                  tokens.TARGET_GROUP_ATTACHMENT,
                  tokens.SUBNET_CIDR_RESERVATION,
                  # a bucket's configuration parts carry no tags of their own (the bucket does)
                  tokens.S3_BUCKET_OWNERSHIP, tokens.S3_BUCKET_PUBLIC_ACCESS_BLOCK, tokens.S3_BUCKET_VERSIONING,
                  tokens.S3_BUCKET_ENCRYPTION, tokens.S3_BUCKET_LIFECYCLE, tokens.S3_BUCKET_POLICY}
    for r in prod.resources:
        if r.custom and r.type.startswith("aws:") and r.type not in untaggable:
            assert r.inputs.get("tags", {}).get("Project") == "atomic-mysql", f"{r.type} {r.name} has no tags"


def test_masters_and_minions_sit_in_their_role_security_group(prod: Plan) -> None:
    groups = {r.name: r for r in prod.of_type(SG)}
    # plus each load balancer's own group (prod sets frontendServiceType=LoadBalancer and apiLoadBalancer)
    # and the Instance Connect Endpoint's
    assert set(groups) == {"atomic-control-plane-sg", "atomic-nodes-sg", "atomic-frontend-lb-sg", "atomic-api-lb-sg",
                           "atomic-connect-endpoint-sg"}
    ids = {r.name: _resource_id(r) for r in groups.values()}
    for instance in prod.instances():
        (sg_ref,) = instance.inputs["vpcSecurityGroupIds"]
        role = instance.inputs["tags"]["Role"]
        expected = "atomic-control-plane-sg" if role == "master" else "atomic-nodes-sg"
        assert sg_ref == ids[expected], f"{instance.name} ({role}) is in {sg_ref}, not {expected}"


def _resource_id(registration: Registration) -> str:
    """The id the mocks give a security group ("sg-<digest>"), as instances and rules see it."""
    return f"sg-{_digest(registration.type, registration.name)}"


def test_no_rule_is_open_to_the_world_by_default_and_every_rule_is_described(prod: Plan, dev: Plan) -> None:
    for plan in (prod, dev):
        rules = plan.of_type(INGRESS) + plan.of_type(EGRESS)
        assert rules
        for rule in rules:
            assert rule.inputs.get("description"), f"{rule.name} has no description"
            assert ("cidrIpv4" in rule.inputs) != ("referencedSecurityGroupId" in rule.inputs), rule.name
        for rule in plan.of_type(INGRESS):
            if rule.name == "atomic-frontend-lb-listener-from-0-0-0-0-0":
                # prod sets frontendSourceCidrs ["0.0.0.0/0"]: the public site's listener, on 80 only
                assert plan is prod and (rule.inputs["fromPort"], rule.inputs["toPort"]) == (80, 80)
                continue
            assert rule.inputs.get("cidrIpv4") != WORLD, f"{rule.name} opens {rule.inputs['fromPort']} to the world"
        # Egress to the world only for packages/SSM/registries (80, 443) and NTP (123).
        world_out = {(r.inputs["ipProtocol"], r.inputs["fromPort"]) for r in plan.of_type(EGRESS)
                     if r.inputs.get("cidrIpv4") == WORLD}
        assert world_out == {("tcp", 443), ("tcp", 80), ("udp", 123)}


def _ports(plan: Plan, group: str, peer: str | None = None, cidr: str | None = None) -> set[tuple[str, int, int]]:
    ids = {r.name: _resource_id(r) for r in plan.of_type(SG)}
    found = set()
    for r in plan.of_type(INGRESS):
        if r.inputs["securityGroupId"] != ids[group]:
            continue
        if peer is not None and r.inputs.get("referencedSecurityGroupId") != ids[peer]:
            continue
        if cidr is not None and r.inputs.get("cidrIpv4") != cidr:
            continue
        found.add((r.inputs["ipProtocol"], r.inputs["fromPort"], r.inputs["toPort"]))
    return found


def test_inside_the_cluster_only_what_kubernetes_needs_is_open(prod: Plan) -> None:
    cp, nodes = "atomic-control-plane-sg", "atomic-nodes-sg"
    assert _ports(prod, cp, peer=nodes) == {("tcp", 6443, 6443), ("udp", 8472, 8472)}
    assert _ports(prod, cp, peer=cp) == {("tcp", 2379, 2380), ("udp", 8472, 8472)}
    assert _ports(prod, nodes, peer=cp) == {("tcp", 10250, 10250), ("udp", 8472, 8472)}
    # metrics-server, on a minion, scrapes every kubelet
    assert _ports(prod, nodes, peer=nodes) == {("tcp", 10250, 10250), ("udp", 8472, 8472)}
    for cidr in ("198.51.100.0/24", "203.0.113.0/28"):
        assert _ports(prod, cp, cidr=cidr) == {("tcp", 6443, 6443)}
        assert _ports(prod, nodes, cidr=cidr) == set()
    # SSH only from the Instance Connect Endpoint's group
    endpoint = "atomic-connect-endpoint-sg"
    assert _ports(prod, cp, peer=endpoint) == _ports(prod, nodes, peer=endpoint) == {("tcp", 22, 22)}


def test_kubelets_are_closed_to_other_nodes_without_metrics_server() -> None:
    plan = run_program("dev", {"enableMetricsServer": False})
    assert _ports(plan, "cluster-nodes-sg", peer="cluster-nodes-sg") == {("udp", 8472, 8472)}
    assert not plan.of_type(tokens.METRICS_SERVER)


def _runs_cadvisor(plan: Plan, instance: Registration) -> bool:
    files = yaml.safe_load(plan.user_data(instance))["write_files"]
    return any(f["path"] == "/etc/systemd/system/cadvisor.service" for f in files)


def test_optional_ports_open_only_when_enabled(tmp_path: Path, dev: Plan) -> None:
    cidr = "198.51.100.0/24"
    groups = ("atomic-nodes-sg", "atomic-control-plane-sg")
    assert ("tcp", 9090, 9090) in _ports(dev, "atomic-nodes-sg", cidr=cidr)  # dev enables Cockpit
    assert not any(("tcp", 4194, 4194) in _ports(dev, group, cidr=cidr) for group in groups)
    assert not any(_runs_cadvisor(dev, i) for i in dev.instances())
    assert ("tcp", 30000, 32767) not in _ports(dev, "atomic-nodes-sg", cidr=cidr)
    plan = run_cluster(tmp_path, "dev", enableCadvisor=True, enableNodePorts=True)
    assert {("tcp", 4194, 4194), ("tcp", 30000, 32767)} <= _ports(plan, "atomic-nodes-sg", cidr=cidr)
    assert ("tcp", 30000, 32767) not in _ports(plan, "atomic-control-plane-sg", cidr=cidr)
    # The port is opened where something listens on it: every master and minion runs cAdvisor.
    assert ("tcp", 4194, 4194) in _ports(plan, "atomic-control-plane-sg", cidr=cidr)
    assert plan.instances() and all(_runs_cadvisor(plan, i) for i in plan.instances())


def test_world_admin_access_only_when_asked_for(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="allowWorldAdminAccess"):
        run_cluster(tmp_path, "dev", adminCidrs=[WORLD])
    plan = run_cluster(tmp_path, "dev", adminCidrs=[WORLD], allowWorldAdminAccess=True)
    assert ("tcp", 6443, 6443) in _ports(plan, "atomic-control-plane-sg", cidr=WORLD)
    assert ("tcp", 22, 22) not in _ports(plan, "atomic-control-plane-sg", cidr=WORLD), "SSH is its own choice"
    plan = run_cluster(tmp_path, "dev", adminCidrs=[WORLD], allowWorldAdminAccess=True, sshFromAdminCidrs=True)
    assert ("tcp", 22, 22) in _ports(plan, "atomic-control-plane-sg", cidr=WORLD)


def test_minion_count_follows_config_and_only_adds_instances(tmp_path: Path, dev: Plan) -> None:
    plan = run_cluster(tmp_path, "dev", minionCount=4)
    minions = [i for i in plan.instances() if i.inputs["tags"]["Role"] == "minion"]
    assert sorted(i.inputs["privateIp"] for i in minions) == ["10.0.1.13", "10.0.1.14", "10.0.1.15", "10.0.1.16"]
    before = {i.name: i.inputs for i in dev.instances()}
    after = {i.name: i.inputs for i in plan.instances()}
    assert all(after[name] == inputs for name, inputs in before.items()), "scaling changed an existing instance"
    assert plan.outputs["minion_private_ips"].value == ["10.0.1.13", "10.0.1.14", "10.0.1.15", "10.0.1.16"]


def test_user_data_is_rendered_for_the_node_and_carries_no_key(prod: Plan) -> None:
    for instance in prod.instances():
        user_data = prod.user_data(instance)
        assert "PRIVATE KEY" not in user_data and "BEGIN" not in user_data
        config = yaml.safe_load(user_data)
        assert config["hostname"] == instance.inputs["tags"]["Name"]
        env = user_data_files(user_data)["/etc/atomic/cluster.env"][0]
        assert f'ATOMIC_SELF_IP="{instance.inputs["privateIp"]}"' in env


def test_keys_are_secure_strings_under_each_node_path_with_the_cluster_key(prod: Plan) -> None:
    params = prod.of_type(tokens.SSM_PARAMETER)
    kms = [k for k in prod.of_type(tokens.KMS_KEY) if k.name.startswith("atomic-pki")]
    assert len(kms) == 1 and kms[0].inputs["enableKeyRotation"] is True
    names = [p.inputs["name"] for p in params]
    assert len(names) == len(set(names))
    for p in params:
        assert p.inputs["type"] == "SecureString" and p.inputs["value"] == "[secret]"
        assert p.inputs["keyId"] == kms[0].state["arn"]
        assert p.inputs["name"].startswith("/atomic-mysql/prod/atomic/atomic-")
    minion_files = {n.split("/atomic-minion-1", 1)[1] for n in names if "/atomic-minion-1/" in n}
    assert minion_files == {"/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/kubelet.crt",
                            "/etc/kubernetes/pki/kubelet.key", "/etc/kubernetes/pki/kube-proxy.crt",
                            "/etc/kubernetes/pki/kube-proxy.key"}
    master_files = {n.split("/atomic-master-2", 1)[1] for n in names if "/atomic-master-2/" in n}
    assert {"/etc/etcd/pki/peer.key", "/etc/kubernetes/pki/sa.key", "/etc/kubernetes/pki/apiserver.key"} <= master_files


def test_each_node_role_reads_only_its_own_path(prod: Plan) -> None:
    policies = [p for p in prod.of_type(tokens.IAM_ROLE_POLICY) if p.name.endswith("-ssm")]
    assert len(policies) == 9
    for policy in policies:
        node = policy.name.removeprefix("atomic-").removesuffix("-ssm")
        doc = json.loads(policy.inputs["policy"])
        ssm = [r for statement in doc["Statement"] for r in statement["Resource"] if ":ssm:" in r]
        assert ssm, f"{node} may read no SSM path at all"
        for resource in ssm:
            assert resource.split(":parameter", 1)[1] in (f"/atomic-mysql/prod/atomic/{node}",
                                                          f"/atomic-mysql/prod/atomic/{node}/*")


def test_instances_wait_for_their_pki_but_not_for_each_other(prod: Plan) -> None:
    urns = {r.urn: r for r in prod.resources}
    for instance in prod.instances():
        dependencies = [urns[u] for u in instance.options["dependsOn"] if u in urns]
        assert not any(d.type == INSTANCE for d in dependencies)
        node = instance.inputs["tags"]["Name"]
        params = [d for d in dependencies if d.type == tokens.SSM_PARAMETER]
        assert params and all(f"/{node}/" in p.inputs["name"] for p in params)


def test_outputs_and_secret_kubeconfig(prod: Plan) -> None:
    outputs = prod.outputs
    assert outputs["kubeconfig"].secret
    assert not outputs["api_endpoint"].secret
    # one master per zone, each at its private subnet's .10
    assert outputs["master_private_ips"].value == ["10.40.16.10", "10.40.20.10", "10.40.24.10"]
    config = yaml.safe_load(outputs["kubeconfig"].value)
    server = config["clusters"][0]["cluster"]["server"]
    # prod sets apiLoadBalancer: kubectl and the stack's provider go through the NLB
    (nlb,) = [r for r in prod.of_type(tokens.LOAD_BALANCER) if "-api-lb-" in r.name]
    assert server == outputs["api_endpoint"].value == f"https://{nlb.state['dnsName']}:6443"
    assert outputs["control_plane_sg_id"].value.startswith("sg-")


def test_without_an_api_load_balancer_the_first_masters_elastic_ip_is_the_endpoint(dev: Plan) -> None:
    """An instance's own public address changes on stop/start, and a new server address makes
    pulumi-kubernetes replace every object: the endpoint is an Elastic IP on the first master."""
    assert not [r for r in dev.of_type(tokens.LOAD_BALANCER) if "-api-lb-" in r.name]
    (eip,) = dev.of_type(tokens.EIP)
    first = next(i for i in dev.instances() if i.inputs["tags"]["Name"] == "atomic-master-1")
    assert eip.inputs["instance"] == first.id and eip.inputs["domain"] == "vpc"
    config = yaml.safe_load(dev.outputs["kubeconfig"].value)
    expected = f"https://{eip.state['publicIp']}:6443"
    assert config["clusters"][0]["cluster"]["server"] == dev.outputs["api_endpoint"].value == expected


def test_prod_with_an_api_load_balancer_needs_no_elastic_ip_on_a_node(prod: Plan) -> None:
    eips = prod.of_type(tokens.EIP)
    assert eips and all(not e.inputs.get("instance") for e in eips), "only the NAT gateways have Elastic IPs"
    assert {e.name for e in eips} == {"atomic-nat-eip-1", "atomic-nat-eip-2", "atomic-nat-eip-3"}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_node_address_is_reserved_before_any_load_balancer_can_take_it(stack: str, tmp_path: Path) -> None:
    plan = run_cluster(tmp_path, stack)
    reservations = plan.of_type(tokens.SUBNET_CIDR_RESERVATION)
    assert reservations and {r.inputs["reservationType"] for r in reservations} == {"explicit"}
    reserved = {ip for r in reservations for ip in ipaddress.IPv4Network(r.inputs["cidrBlock"])}
    for instance in plan.instances():
        assert ipaddress.IPv4Address(instance.inputs["privateIp"]) in reserved, instance.name
    # the load balancers are created only once the reservations exist
    for lb in plan.of_type(tokens.LOAD_BALANCER):
        component = next(r for r in plan.resources if r.urn == lb.parent)
        assert {r.urn for r in reservations} <= set(component.options["dependsOn"]), lb.name


def test_the_api_load_balancer_fronts_every_master_for_admins_and_every_apiserver_names_it(prod: Plan) -> None:
    (nlb,) = [r for r in prod.of_type(tokens.LOAD_BALANCER) if "-api-lb-" in r.name]
    (group,) = [r for r in prod.of_type(tokens.TARGET_GROUP) if "-api-lb-" in r.name]
    assert (group.inputs["targetType"], group.inputs["port"]) == ("ip", 6443)
    targets = [r.inputs for r in prod.of_type(tokens.TARGET_GROUP_ATTACHMENT)
               if "-api-lb-" in r.name]
    assert sorted(t["targetId"] for t in targets) == ["10.40.16.10", "10.40.20.10", "10.40.24.10"]
    listener_rules = [r.inputs for r in prod.of_type(INGRESS) if r.name.startswith("atomic-api-lb-listener-from-")]
    assert sorted(r["cidrIpv4"] for r in listener_rules) == ["198.51.100.0/24", "203.0.113.0/28"]
    assert {(r["fromPort"], r["toPort"]) for r in listener_rules} == {(6443, 6443)}
    requests = [r for r in prod.of_type(tokens.CERT_REQUEST) if r.name.endswith("-apiserver-csr")]
    assert len(requests) == 3
    for request in requests:
        assert nlb.state["dnsName"] in request.inputs["dnsNames"], request.name


def test_stateful_masters_and_network_are_protected_in_prod(prod: Plan, dev: Plan) -> None:
    masters = [i for i in prod.instances() if i.inputs["tags"]["Role"] == "master"]
    assert all(i.options["protect"] for i in masters)
    assert prod.named("atomic-vpc").options["protect"]
    assert not any(i.options["protect"] for i in dev.instances())


def test_ami_is_looked_up_only_without_an_explicit_id(tmp_path: Path, dev: Plan) -> None:
    looked_up = {i.inputs["ami"] for i in dev.instances()}
    assert len(looked_up) == 1 and next(iter(looked_up)).startswith("ami-")
    plan = run_cluster(tmp_path, "dev", amiId="ami-0123456789abcdef0")
    assert {i.inputs["ami"] for i in plan.instances()} == {"ami-0123456789abcdef0"}


def test_existing_network_creates_no_vpc(tmp_path: Path) -> None:
    plan = run_cluster(tmp_path, "dev", existingVpcId="vpc-0123456789abcdef0",
                       existingSubnetId="subnet-0123456789abcdef0")
    assert not plan.of_type(tokens.VPC) and not plan.of_type(tokens.SUBNET)
    assert {i.inputs["subnetId"] for i in plan.instances()} == {"subnet-0123456789abcdef0"}
    assert {r.inputs["vpcId"] for r in plan.of_type(SG)} == {"vpc-0123456789abcdef0"}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"masterCount": 2}, "masterCount=2: must be odd"),
    ({"minionCount": 0}, "minionCount=0: must be a whole number"),
    ({"subnetCidr": "10.9.0.0/24"}, "subnetCidr=10.9.0.0/24: must lie inside vpcCidr"),
    ({"adminCidrs": ["office"]}, "adminCidrs=office: must be an IPv4 CIDR"),
    ({"minionInstanceType": "large"}, "minionInstanceType=large: must be an EC2 instance type"),
])
def test_bad_cluster_config_is_a_clear_error_before_any_resource(tmp_path: Path, overrides: dict[str, Any],
                                                                 message: str) -> None:
    monitor = RecordingMonitor(AtomicMocks())
    program = tmp_path / "cluster_program.py"
    program.write_text(PROGRAM)
    with pytest.raises(SettingsError, match=message):
        run_program("dev", overrides=overrides, program=program, monitor=monitor)
    assert not [r for r in monitor.registrations if r.type.startswith("aws:")]
