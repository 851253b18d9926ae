"""Read and check every setting of one stack: the only reader of `pulumi.Config`.

Every value is checked here, before any resource is registered, and a bad value stops the
program with one line naming the key, the value and what is allowed. Defaults live only in
`Pulumi.yaml` (the Pulumi CLI applies them, and so does the offline harness), so project keys
are read as required: a missing key means Pulumi.yaml and this module disagree, which is a bug,
not a user error. What comes out is the plain data of settings/schema.py.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import TypeVar

import pulumi
from pulumi.runtime.config import get_config

from components.facts import (
    EBS_STORAGE_CLASS,
    MAX_ZONES,
    NODE_PORT_RANGE,
    PODMAN_BRIDGE,
    PROJECT,
    base_tags,
    node_slot_problem,
    zone_blocks,
)
from components.pins import ENGINE_VERSIONS, FEDORA_RELEASES, KUBERNETES_VERSIONS
from components.settings.schema import (
    AddonSettings,
    AutoscalerSettings,
    ClusterMode,
    ClusterSettings,
    Engine,
    EtcdBackupSettings,
    ExistingClusterSettings,
    FrontendLbSettings,
    GuestbookSettings,
    MysqlSecrets,
    MysqlSettings,
    NatGateways,
    Resources,
    RetentionPolicy,
    RolloutSettings,
    RolloutStrategy,
    ServiceType,
    StackSettings,
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_INSTANCE_TYPE = re.compile(
    r"^[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.(nano|micro|small|medium|large|metal|[0-9]*xlarge)(-[0-9]+xl)?$"
)
_AMI = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
_VPC_ID = re.compile(r"^vpc-([0-9a-f]{8}|[0-9a-f]{17})$")
_SUBNET_ID = re.compile(r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$")
_BYTES = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_BANDWIDTH = re.compile(r"^[0-9]+(k|M|G)$")
_INT_OR_PERCENT = re.compile(r"^(0|[1-9][0-9]*)%?$")
# name[:tag] or name@sha256:digest, with an optional registry host.
_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[0-9a-f]{64}))?$"
)

_QUANTITY_FACTORS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


class SettingsError(pulumi.RunError):
    """A config value that cannot be used; the message is the one line users see.

    A RunError, so that the Pulumi CLI prints it without a stack trace.
    """


T = TypeVar("T")


# --------------------------------------------------------------------------
# Reading and checking raw values
# --------------------------------------------------------------------------


class _Reader:
    """Reads raw strings from one config namespace and turns them into checked values."""

    def __init__(self, config: pulumi.Config) -> None:
        self._config = config
        self.namespace = config.name

    def key(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def fail(self, name: str, value: object, allowed: str) -> SettingsError:
        shown = value if isinstance(value, str) else json.dumps(value)
        return SettingsError(f"config {self.key(name)}={shown!s}: {allowed}")

    def raw(self, name: str) -> str:
        value = self._config.get(name)
        if value is None:
            raise SettingsError(
                f"config {self.key(name)} is missing: it must be declared with a default in Pulumi.yaml"
            )
        return value

    def optional(self, name: str) -> str | None:
        """A string whose empty value means 'not set'."""
        value = self.raw(name).strip()
        return value or None

    def string(self, name: str, pattern: re.Pattern[str] | None = None, allowed: str = "") -> str:
        value = self.raw(name).strip()
        if pattern is not None and not pattern.match(value):
            raise self.fail(name, value, allowed)
        return value

    def choice(self, name: str, options: tuple[T, ...]) -> T:
        value = self.raw(name).strip()
        for option in options:
            if str(option) == value:
                return option
        raise self.fail(name, value, "allowed values are " + ", ".join(str(o) for o in options))

    def boolean(self, name: str) -> bool:
        value = self.raw(name).strip().lower()
        if value not in ("true", "false"):
            raise self.fail(name, value, "allowed values are true, false")
        return value == "true"

    def integer(self, name: str, low: int, high: int, *, odd: bool = False) -> int:
        value = self.raw(name).strip()
        if not re.fullmatch(r"-?[0-9]+", value) or not low <= int(value) <= high:
            raise self.fail(name, value, f"must be a whole number from {low} to {high}")
        number = int(value)
        if odd and number % 2 == 0:
            raise self.fail(name, value, f"must be odd (etcd needs a majority): allowed {low} to {high}, odd")
        return number

    def string_list(self, name: str) -> tuple[str, ...]:
        value = self.raw(name).strip()
        try:
            parsed = json.loads(value) if value else []
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
            raise self.fail(name, value, 'must be a list of strings, e.g. ["203.0.113.0/24"]')
        return tuple(parsed)

    def secret(self, name: str) -> pulumi.Output[str] | None:
        """An optional secret; set but empty is refused here, before anything is registered."""
        raw = get_config(self.key(name))  # read without revealing it, only to see it is not blank
        if raw is not None and not str(raw).strip():
            raise SettingsError(
                f"config {self.key(name)}=[secret]: must not be empty; unset it (pulumi config rm) to generate one"
            )
        return self._config.get_secret(name)


def _network(reader: _Reader, name: str, value: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        raise reader.fail(name, value, "must be an IPv4 CIDR with no host bits set, e.g. 10.0.0.0/16") from None


def _cidr(reader: _Reader, name: str) -> ipaddress.IPv4Network:
    return _network(reader, name, reader.raw(name).strip())


def quantity_value(text: str) -> float:
    """The numeric value of a Kubernetes byte quantity such as `10Gi`."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", text)
    if not match or match.group(2) not in _QUANTITY_FACTORS:
        raise ValueError(text)
    return float(match.group(1)) * _QUANTITY_FACTORS[match.group(2)]


def cpu_millis(text: str) -> float:
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def _bytes(reader: _Reader, name: str, minimum: str) -> str:
    value = reader.raw(name).strip()
    if not _BYTES.match(value) or quantity_value(value) < quantity_value(minimum):
        raise reader.fail(name, value, f"must be a Kubernetes quantity of at least {minimum}, e.g. 10Gi or 512Mi")
    return value


def _cpu(reader: _Reader, name: str) -> str:
    value = reader.raw(name).strip()
    if not _CPU.match(value) or cpu_millis(value) <= 0:
        raise reader.fail(name, value, "must be a CPU quantity above zero, e.g. 250m or 1")
    return value


def _resources(reader: _Reader, prefix: str, min_memory: str = "32Mi") -> Resources:
    resources = Resources(
        cpu_request=_cpu(reader, f"{prefix}CpuRequest"),
        memory_request=_bytes(reader, f"{prefix}MemoryRequest", min_memory),
        cpu_limit=_cpu(reader, f"{prefix}CpuLimit"),
        memory_limit=_bytes(reader, f"{prefix}MemoryLimit", min_memory),
    )
    if cpu_millis(resources.cpu_limit) < cpu_millis(resources.cpu_request):
        raise reader.fail(
            f"{prefix}CpuLimit", resources.cpu_limit, f"must be at least {prefix}CpuRequest ({resources.cpu_request})"
        )
    if quantity_value(resources.memory_limit) < quantity_value(resources.memory_request):
        raise reader.fail(
            f"{prefix}MemoryLimit",
            resources.memory_limit,
            f"must be at least {prefix}MemoryRequest ({resources.memory_request})",
        )
    return resources


def _image(reader: _Reader, name: str, *, optional: bool = False) -> str | None:
    value = reader.raw(name).strip()
    if optional and not value:
        return None
    match = _IMAGE.match(value)
    if not match or not (match.group("tag") or match.group("digest")) or match.group("tag") == "latest":
        raise reader.fail(name, value, "must be an image pinned by tag or digest (not 'latest'), e.g. redis:7.4.2")
    return value


def _dns_label(reader: _Reader, name: str, max_length: int = 63) -> str:
    value = reader.raw(name).strip()
    if len(value) > max_length or not _DNS_LABEL.match(value):
        raise reader.fail(
            name,
            value,
            f"must be an RFC 1123 label: lowercase letters, digits and '-', at most {max_length} characters",
        )
    return value


def _int_or_percent(reader: _Reader, name: str) -> int | str:
    value = reader.raw(name).strip()
    if not _INT_OR_PERCENT.match(value) or (value.endswith("%") and int(value[:-1]) > 100):
        raise reader.fail(name, value, "must be a whole number or a percentage from 0% to 100%, e.g. 1 or 25%")
    return value if value.endswith("%") else int(value)


def _is_zero(value: int | str) -> bool:
    return value in (0, "0%")


# --------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------


def _mysql(reader: _Reader, protect: bool) -> MysqlSettings:
    engine: Engine = reader.choice("mysqlEngine", ("mysql", "mariadb"))
    versions = tuple(ENGINE_VERSIONS[engine])
    version = reader.raw("mysqlVersion").strip()
    if version not in versions:
        raise reader.fail(
            "mysqlVersion", version, f"allowed values for mysqlEngine={engine} are " + ", ".join(versions)
        )
    default_image, default_backup = ENGINE_VERSIONS[engine][version]
    pvc_options: tuple[RetentionPolicy, ...] = ("Retain", "Delete")
    replicas = reader.integer("mysqlReplicas", 1, 9)
    return MysqlSettings(
        name=_dns_label(reader, "mysqlName", max_length=40),
        engine=engine,
        version=version,
        replicas=replicas,
        image=_image(reader, "mysqlImage", optional=True) or default_image,
        backup_image=_image(reader, "mysqlBackupImage", optional=True) or default_backup,
        storage_size=_bytes(reader, "mysqlStorageSize", "1Gi"),
        storage_class=reader.optional("mysqlStorageClass"),
        resources=_resources(reader, "mysql", min_memory="256Mi"),
        anti_affinity=reader.choice("mysqlAntiAffinity", ("soft", "hard")),
        pvc_when_deleted=reader.choice("mysqlPvcWhenDeleted", pvc_options),
        pvc_when_scaled=reader.choice("mysqlPvcWhenScaled", pvc_options),
        pdb_max_unavailable=_pdb_max_unavailable(reader, replicas),
        protect=protect,
    )


def _pdb_max_unavailable(reader: _Reader, replicas: int) -> int:
    """A drain must leave a majority of the set serving (a zone's loss on top of a drain then still
    leaves pods to read from); one or two pods can only allow one."""
    highest = max((replicas - 1) // 2, 1)
    value = reader.raw("mysqlPdbMaxUnavailable").strip()
    if not re.fullmatch(r"[0-9]+", value) or not 1 <= int(value) <= highest:
        keeps = "a majority" if replicas > 2 else "one"
        raise reader.fail("mysqlPdbMaxUnavailable", value, f"must leave {keeps} of the {replicas} pods "
                          f"(mysqlReplicas) available: a whole number from 1 to {highest}")
    return int(value)


def _mysql_secrets(reader: _Reader) -> MysqlSecrets:
    return MysqlSecrets(
        root_password=reader.secret("mysqlRootPassword"),
        replication_password=reader.secret("mysqlReplicationPassword"),
        backup_password=reader.secret("mysqlBackupPassword"),
        verify_password=reader.secret("mysqlVerifyPassword"),
    )


def _region(aws: pulumi.Config) -> str:
    region = (aws.get("region") or "").strip()
    if not _REGION.match(region):
        raise SettingsError(
            f"config aws:region={region}: must be an AWS region name, e.g. us-east-1 (pulumi config set aws:region ...)"
        )
    return region


def _admin_cidrs(reader: _Reader, allow_world: bool) -> tuple[str, ...]:
    cidrs = reader.string_list("adminCidrs")
    if not cidrs:
        # The Kubernetes provider reaches the new cluster's API on 6443 from where `pulumi up` runs.
        raise reader.fail(
            "adminCidrs", [], 'clusterMode=aws needs at least the CIDR `pulumi up` runs from, e.g. ["203.0.113.7/32"]'
        )
    for cidr in cidrs:
        network = _network(reader, "adminCidrs", cidr)
        if network.prefixlen == 0 and not allow_world:
            raise reader.fail(
                "adminCidrs",
                cidr,
                "0.0.0.0/0 opens admin ports to the internet; set allowWorldAdminAccess=true to mean it",
            )
    return cidrs


def _cluster(reader: _Reader, region: str, protect: bool, tags: dict[str, str]) -> ClusterSettings:
    vpc = _cidr(reader, "vpcCidr")
    subnet = _cidr(reader, "subnetCidr")
    if not subnet.subnet_of(vpc):
        raise reader.fail("subnetCidr", str(subnet), f"must lie inside vpcCidr {vpc}")
    master_count = reader.integer("masterCount", 1, 3, odd=True)
    minion_count = reader.integer("minionCount", 1, 500)
    service = _cidr(reader, "serviceCidr")
    pod = _cidr(reader, "podCidr")
    for name, net in (("serviceCidr", service), ("podCidr", pod)):
        if net.overlaps(vpc):
            raise reader.fail(name, str(net), f"must not overlap vpcCidr {vpc}")
    if service.overlaps(pod):
        raise reader.fail("serviceCidr", str(service), f"must not overlap podCidr {pod}")
    zones = _zones(reader, region, master_count)
    _zone_blocks_fit(reader, vpc, "subnetCidr", subnet, len(zones) or 1)
    private_nodes = reader.boolean("privateNodes")
    private_subnet = _private_subnet(reader, vpc, subnet, len(zones) or 1) if private_nodes else None
    node_subnet = private_subnet or subnet
    problem = node_slot_problem(node_subnet, pod, minion_count, len(zones) or 1,
                                "privateSubnetCidr" if private_nodes else "subnetCidr")
    if problem is not None:
        key, allowed = problem
        raise reader.fail(key, {"podCidr": str(pod), "minionCount": minion_count}[key], allowed)
    _no_podman_overlap(reader, (("vpcCidr", vpc), ("serviceCidr", service), ("podCidr", pod)))
    existing_vpc = reader.optional("existingVpcId")
    existing_subnet = reader.optional("existingSubnetId")
    if existing_vpc and not _VPC_ID.match(existing_vpc):
        raise reader.fail("existingVpcId", existing_vpc, "must be a VPC id such as vpc-0123456789abcdef0, or empty")
    if existing_subnet and not _SUBNET_ID.match(existing_subnet):
        raise reader.fail(
            "existingSubnetId", existing_subnet, "must be a subnet id such as subnet-0123456789abcdef0, or empty"
        )
    if bool(existing_vpc) != bool(existing_subnet):
        raise reader.fail(
            "existingSubnetId", existing_subnet or "", "existingVpcId and existingSubnetId must be set together"
        )
    if existing_subnet and (private_nodes or len(zones) > 1):
        raise reader.fail("existingSubnetId", existing_subnet,
                          "an existing subnet is one zone of public nodes: set privateNodes=false and at most one "
                          "availabilityZones entry")
    ami = reader.optional("amiId")
    if ami and not _AMI.match(ami):
        raise reader.fail(
            "amiId", ami, "must be an AMI id such as ami-0123456789abcdef0, or empty to look up Fedora Cloud"
        )
    allow_world = reader.boolean("allowWorldAdminAccess")
    admin_cidrs = _admin_cidrs(reader, allow_world)
    zone = reader.optional("availabilityZone")
    if zone and not zone.startswith(region):
        raise reader.fail("availabilityZone", zone, f"must be a zone of aws:region {region}, e.g. {region}a")
    if zone and zones:
        raise reader.fail("availabilityZone", zone, "set availabilityZones or availabilityZone, not both "
                          f"(availabilityZones[0]={zone} says the same)")
    api_load_balancer = reader.boolean("apiLoadBalancer")
    if private_nodes and not api_load_balancer:
        raise reader.fail("privateNodes", "true",
                          "private nodes have no public address, so kubectl and `pulumi up` reach the API only "
                          "through its load balancer: set apiLoadBalancer=true, or privateNodes=false")
    return ClusterSettings(
        name=_dns_label(reader, "clusterName", max_length=24),
        region=region,
        vpc_cidr=str(vpc),
        subnet_cidr=str(subnet),
        existing_vpc_id=existing_vpc,
        existing_subnet_id=existing_subnet,
        availability_zone=zone,
        master_count=master_count,
        minion_count=minion_count,
        master_instance_type=reader.string(
            "masterInstanceType", _INSTANCE_TYPE, "must be an EC2 instance type such as t3.medium or m6i.2xlarge"
        ),
        minion_instance_type=reader.string(
            "minionInstanceType", _INSTANCE_TYPE, "must be an EC2 instance type such as t3.large or m6i.2xlarge"
        ),
        root_volume_gb=reader.integer("rootVolumeGb", 20, 1024),
        ami_id=ami,
        fedora_release=reader.choice("fedoraRelease", FEDORA_RELEASES),
        key_name=reader.optional("keyName"),
        admin_cidrs=admin_cidrs,
        allow_world_admin=allow_world,
        enable_cockpit=reader.boolean("enableCockpit"),
        enable_cadvisor=reader.boolean("enableCadvisor"),
        enable_nodeports=reader.boolean("enableNodePorts"),
        kubernetes_version=reader.choice("kubernetesVersion", KUBERNETES_VERSIONS),
        service_cidr=str(service),
        pod_cidr=str(pod),
        protect=protect,
        addons=_addons(reader, minion_count),
        frontend_lb=_frontend_lb(reader, admin_cidrs),
        api_load_balancer=api_load_balancer,
        tags=tags,
        zones=zones,
        private_nodes=private_nodes,
        private_subnet_cidr=str(private_subnet) if private_subnet else None,
        nat_gateways=_nat_gateways(reader) if private_nodes else "perZone",
        instance_connect_endpoint=reader.boolean("instanceConnectEndpoint"),
        ssh_from_admin_cidrs=reader.boolean("sshFromAdminCidrs"),
        etcd_backup=_etcd_backup(reader),
    )


_ZONE_SUFFIX = re.compile(r"^[a-z]$")


def _zones(reader: _Reader, region: str, master_count: int) -> tuple[str, ...]:
    """The zones by name: each of the region, each once, and enough of them that no zone holds
    two masters when there are three (losing that zone would lose etcd's majority)."""
    zones = reader.string_list("availabilityZones")
    for zone in zones:
        if not zone.startswith(region) or not _ZONE_SUFFIX.match(zone[len(region):]):
            raise reader.fail("availabilityZones", zone, f"must be zones of aws:region {region}, e.g. {region}a")
    if len(set(zones)) != len(zones):
        raise reader.fail("availabilityZones", list(zones), "must not name a zone twice")
    if len(zones) > MAX_ZONES:
        raise reader.fail("availabilityZones", list(zones), f"at most {MAX_ZONES} zones")
    if 1 < len(zones) < master_count:
        raise reader.fail("availabilityZones", list(zones),
                          f"masterCount={master_count} needs one zone or at least {master_count}: one master per "
                          "zone, so that losing a zone never takes etcd's majority with it")
    return zones


def _private_subnet(reader: _Reader, vpc: ipaddress.IPv4Network, public: ipaddress.IPv4Network,
                    zones: int) -> ipaddress.IPv4Network:
    """The first zone's private subnet: with every zone's block inside the VPC and clear of the public ones."""
    private = _cidr(reader, "privateSubnetCidr")
    _zone_blocks_fit(reader, vpc, "privateSubnetCidr", private, zones)
    private_blocks, public_blocks = zone_blocks(private, zones), zone_blocks(public, zones)
    clash = next((b for b in private_blocks if any(b.overlaps(p) for p in public_blocks)), None)
    if clash is not None:
        raise reader.fail("privateSubnetCidr", str(private), f"its zone block {clash} overlaps the public zone blocks "
                          f"of subnetCidr ({', '.join(str(b) for b in public_blocks)})")
    return private


def _zone_blocks_fit(reader: _Reader, vpc: ipaddress.IPv4Network, name: str, first: ipaddress.IPv4Network,
                     zones: int) -> None:
    """Each zone takes the block of `first`'s size after the previous zone's: all must be in the VPC."""
    blocks = zone_blocks(first, zones)
    if not all(block.subnet_of(vpc) for block in blocks):
        raise reader.fail(name, str(first), f"must leave room inside vpcCidr {vpc} for {zones} zone blocks "
                          f"of its size ({', '.join(str(b) for b in blocks)})")


def _nat_gateways(reader: _Reader) -> NatGateways:
    return reader.choice("natGateways", ("perZone", "single"))


# Intervals that divide a day, so that the timer fires at the same wall-clock minutes on every master.
BACKUP_INTERVALS = (5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440)


def _etcd_backup(reader: _Reader) -> EtcdBackupSettings | None:
    interval = reader.raw("etcdBackupIntervalMinutes").strip()
    if interval == "0":
        return None
    if interval not in {str(i) for i in BACKUP_INTERVALS}:
        raise reader.fail("etcdBackupIntervalMinutes", interval,
                          "allowed values are 0 (no backups), " + ", ".join(str(i) for i in BACKUP_INTERVALS))
    return EtcdBackupSettings(interval_minutes=int(interval),
                              retention_days=reader.integer("etcdBackupRetentionDays", 1, 3650))


def _addons(reader: _Reader, minion_count: int) -> AddonSettings:
    return AddonSettings(
        coredns_replicas=reader.integer("corednsReplicas", 1, 10),
        storage_class=EBS_STORAGE_CLASS,
        volume_reclaim_policy=reader.choice("volumeReclaimPolicy", ("Retain", "Delete")),
        metrics_server=reader.boolean("enableMetricsServer"),
        ebs_controller_replicas=min(2, minion_count),
    )


def _frontend_lb(reader: _Reader, admin_cidrs: tuple[str, ...]) -> FrontendLbSettings | None:
    if reader.raw("frontendServiceType").strip() != "LoadBalancer" or not reader.boolean("guestbookEnabled"):
        return None
    cidrs = reader.string_list("frontendSourceCidrs")
    for cidr in cidrs:
        _network(reader, "frontendSourceCidrs", cidr)
    if len(set(cidrs)) != len(cidrs):
        raise reader.fail("frontendSourceCidrs", list(cidrs), "must not list a CIDR twice")
    return FrontendLbSettings(
        node_port=reader.integer("frontendNodePort", *NODE_PORT_RANGE),
        listen_port=reader.integer("frontendListenPort", 1, 65535),
        # Empty means the admin CIDRs: opening the site to the internet is a choice to write down.
        source_cidrs=cidrs or admin_cidrs,
    )


def _no_podman_overlap(reader: _Reader, networks: tuple[tuple[str, ipaddress.IPv4Network], ...]) -> None:
    """cAdvisor runs under podman, whose default bridge would shadow an overlapping range."""
    if not reader.boolean("enableCadvisor"):
        return
    for name, net in networks:
        if net.overlaps(PODMAN_BRIDGE):
            raise reader.fail(
                name, str(net), f"must not overlap podman's bridge {PODMAN_BRIDGE} when enableCadvisor=true"
            )


def _existing(reader: _Reader) -> ExistingClusterSettings:
    return ExistingClusterSettings(
        kubeconfig=reader.secret("kubeconfig"),
        context=reader.optional("kubeContext"),
        render_yaml_to=reader.optional("renderYamlTo"),
    )


def _rollout(reader: _Reader) -> RolloutSettings:
    strategy: RolloutStrategy = reader.choice("rolloutStrategy", ("RollingUpdate", "Recreate"))
    max_surge = _int_or_percent(reader, "rolloutMaxSurge")
    max_unavailable = _int_or_percent(reader, "rolloutMaxUnavailable")
    if strategy == "RollingUpdate" and _is_zero(max_surge) and _is_zero(max_unavailable):
        raise reader.fail(
            "rolloutMaxUnavailable",
            max_unavailable,
            "rolloutMaxSurge and rolloutMaxUnavailable cannot both be 0 (the rollout could never progress)",
        )
    min_ready = reader.integer("minReadySeconds", 0, 3600)
    deadline = reader.integer("progressDeadlineSeconds", 1, 86400)
    if deadline <= min_ready:
        raise reader.fail("progressDeadlineSeconds", deadline, f"must be greater than minReadySeconds ({min_ready})")
    return RolloutSettings(
        strategy=strategy,
        max_surge=max_surge,
        max_unavailable=max_unavailable,
        min_ready_seconds=min_ready,
        progress_deadline_seconds=deadline,
        revision_history_limit=reader.integer("revisionHistoryLimit", 0, 100),
        change_cause=reader.optional("changeCause"),
    )


def _autoscaler(reader: _Reader) -> AutoscalerSettings | None:
    if not reader.boolean("frontendHpaEnabled"):
        return None
    low = reader.integer("frontendHpaMin", 1, 100)
    high = reader.integer("frontendHpaMax", 1, 100)
    if low > high:
        raise reader.fail("frontendHpaMin", low, f"must not exceed frontendHpaMax ({high})")
    return AutoscalerSettings(low, high, reader.integer("frontendHpaCpuTarget", 1, 100))


def _bandwidth(reader: _Reader, name: str) -> str | None:
    value = reader.optional(name)
    if value is not None and not _BANDWIDTH.match(value):
        raise reader.fail(name, value, "must be a rate such as 10M or 1G (bits per second), or empty")
    return value


def _guestbook(reader: _Reader) -> GuestbookSettings:
    service_types: tuple[ServiceType, ...] = ("ClusterIP", "NodePort", "LoadBalancer")
    return GuestbookSettings(
        enabled=reader.boolean("guestbookEnabled"),
        frontend_image=_image(reader, "frontendImage") or "",
        frontend_replicas=reader.integer("frontendReplicas", 1, 100),
        frontend_service_type=reader.choice("frontendServiceType", service_types),
        redis_primary_image=_image(reader, "redisPrimaryImage") or "",
        redis_replica_image=_image(reader, "redisReplicaImage") or "",
        # The frontend reads through redis-follower: with no follower, every read fails.
        redis_replicas=reader.integer("redisReplicas", 1, 20),
        frontend_resources=_resources(reader, "frontend"),
        redis_resources=_resources(reader, "redis"),
        rollout=_rollout(reader),
        autoscaler=_autoscaler(reader),
        ingress_bandwidth=_bandwidth(reader, "ingressBandwidth"),
        egress_bandwidth=_bandwidth(reader, "egressBandwidth"),
    )


def _tags(reader: _Reader, stack: str) -> dict[str, str]:
    owner = reader.string(
        "owner",
        re.compile(r"^[A-Za-z0-9 _.:/=+@-]{1,128}$"),
        "must be 1-128 characters of letters, digits, spaces and _.:/=+@-",
    )
    return base_tags(stack, owner)


def load_settings() -> StackSettings:
    """Read and check every setting of the current stack; raise SettingsError on the first bad one."""
    reader = _Reader(pulumi.Config(PROJECT))
    stack = pulumi.get_stack()
    mode: ClusterMode = reader.choice("clusterMode", ("aws", "existing"))
    protect = reader.boolean("protectStateful")
    namespace = _dns_label(reader, "namespace")
    if namespace == "default" or namespace.startswith("kube-"):
        raise reader.fail("namespace", namespace, "the workload gets its own namespace: not 'default' or 'kube-*'")
    tags = _tags(reader, stack)
    cluster = _cluster(reader, _region(pulumi.Config("aws")), protect, tags) if mode == "aws" else None
    mysql = _mysql(reader, protect)
    guestbook = _guestbook(reader)
    if cluster is not None:
        _fits_the_cluster(reader, cluster, mysql, guestbook)
    return StackSettings(
        project=PROJECT,
        stack=stack,
        cluster_mode=mode,
        namespace=namespace,
        protect=protect,
        cluster=cluster,
        existing=_existing(reader) if mode == "existing" else None,
        mysql=mysql,
        mysql_secrets=_mysql_secrets(reader),
        guestbook=guestbook,
        tags=tags,
    )


def _fits_the_cluster(reader: _Reader, cluster: ClusterSettings, mysql: MysqlSettings,
                      guestbook: GuestbookSettings) -> None:
    """What the workload asks of the aws cluster must be something its add-ons provide."""
    offered = cluster.addons.storage_class
    if mysql.storage_class not in (None, offered):
        raise reader.fail("mysqlStorageClass", mysql.storage_class,
                          f"clusterMode=aws offers one StorageClass: {offered} (or empty for the default, {offered})")
    if guestbook.enabled and guestbook.autoscaler is not None and not cluster.addons.metrics_server:
        raise reader.fail("enableMetricsServer", "false",
                          "frontendHpaEnabled=true needs metrics-server on the aws cluster: allowed value true")
