"""A stack's monthly cost from its offline plan: pure functions over plan.json and the price table.

Every charge is one priced thing the plan creates (or implies, for the MySQL data volumes) at an
on-demand list price: quantity per month x unit price, in exact decimals, so that adding two
minions adds exactly two minions' charges. What AWS bills by use (data transfer, load balancer
capacity units, API requests, snapshots, T3 surplus credits) is named, never guessed.

Counted, per docs/cost.md:
- EC2 instances by type, 730 hours a month (the AWS Pricing Calculator's month);
- EBS root volumes (GiB, provisioned IOPS above gp3's 3000 and throughput above its 125 MB/s);
- EBS volumes the plan declares, and the volumes the EBS CSI driver will provision for every
  StatefulSet claim template x replicas (PersistentVolumeClaims are Kubernetes objects: the
  volumes behind them are not AWS resources in the plan, so they are counted from the set);
- load balancers (hourly), NAT gateways (hourly), public IPv4 addresses (every one is billed
  since 2024-02-01: instances', Elastic IPs, internet-facing load balancers');
- KMS customer managed keys, SSM advanced parameters (standard ones are free), S3 buckets
  (usage only: a bucket has no fixed charge).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from components import tokens
from tools.cost.prices import Price, PriceTable

if TYPE_CHECKING:
    from tools.harness.offline import Plan

# The AWS Pricing Calculator's month: 730 hours (365 days x 24 / 12).
HOURS_PER_MONTH = Decimal(730)
GP3_INCLUDED_IOPS = 3000
GP3_INCLUDED_THROUGHPUT = 125  # MB/s
EBS_CSI_PROVISIONERS = ("ebs.csi.aws.com", "kubernetes.io/aws-ebs")
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
S3_BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
STORAGE_CLASS = "StorageClass"

CATEGORIES = (
    "EC2 instances",
    "EBS root volumes",
    "EBS volumes",
    "EBS data volumes (PVCs)",
    "Load balancers",
    "NAT gateways",
    "Public IPv4",
    "KMS keys",
    "SSM parameters",
)
USAGE_BASED = (
    "data transfer out",
    "load balancer capacity units",
    "NAT data processing",
    "KMS and SSM API requests",
    "EBS snapshots",
    "S3 storage and requests",
)


class CostError(ValueError):
    """The plan cannot be priced at all (no region, or a region without prices)."""


@dataclass(frozen=True)
class Charge:
    """One priced part of one resource: `quantity` units of `price` per month."""

    category: str
    line: str  # the printed item it belongs to, e.g. "t3.medium" or "30 GiB gp3"
    resource: str
    quantity: Decimal
    price: Price
    kind: str = ""  # what to count it as in its line: master, minion, Elastic IP, load balancer
    owner: str = ""  # the node it belongs to, "" when shared
    role: str = ""  # that node's role

    @property
    def monthly(self) -> Decimal:
        return self.quantity * self.price.usd


@dataclass(frozen=True)
class Item:
    """A printed line: every charge of one category and line, summed."""

    category: str
    line: str
    count: int
    kinds: tuple[tuple[str, int], ...]
    monthly: Decimal

    def describe(self) -> str:
        text = f"{self.count} x {self.line}"
        if self.kinds:
            text += " (" + ", ".join(_counted(kind, n) for kind, n in self.kinds) + ")"
        return text


@dataclass(frozen=True)
class Estimate:
    stack: str
    region: str
    charges: tuple[Charge, ...]
    free: tuple[str, ...] = ()  # counted, no charge (standard SSM parameters)
    usage_only: tuple[str, ...] = ()  # present, billed by use only (S3 buckets)
    unpriced: tuple[str, ...] = ()  # present, no price in the table: "resource: why"
    absent: tuple[str, ...] = ()  # kinds of resource this stack has none of
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> Decimal:
        return sum((c.monthly for c in self.charges), Decimal(0))

    def items(self) -> list[Item]:
        grouped: dict[tuple[str, str], list[Charge]] = {}
        for charge in self.charges:
            grouped.setdefault((charge.category, charge.line), []).append(charge)
        items = []
        for (category, line), charges in grouped.items():
            resources: dict[str, str] = {}
            for c in charges:
                resources.setdefault(c.resource, c.kind)
            kinds = Counter(kind for kind in resources.values() if kind)
            items.append(Item(category, line, len(resources), tuple(sorted(kinds.items())),
                              sum((c.monthly for c in charges), Decimal(0))))
        return sorted(items, key=lambda i: (CATEGORIES.index(i.category), -i.monthly, i.line))

    def largest(self, n: int = 3) -> list[Item]:
        return sorted(self.items(), key=lambda i: (-i.monthly, CATEGORIES.index(i.category), i.line))[:n]

    def share(self, belongs: Callable[[Charge], bool]) -> Decimal:
        return sum((c.monthly for c in self.charges if belongs(c)), Decimal(0))

    def by_category(self) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = {}
        for c in self.charges:
            totals[c.category] = totals.get(c.category, Decimal(0)) + c.monthly
        return totals


def _counted(kind: str, n: int) -> str:
    if n == 1:
        return f"1 {kind}"
    return f"{n} {kind}s" if not kind.endswith("s") else f"{n} {kind}"


def money(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


# --------------------------------------------------------------------------
# Reading the plan
# --------------------------------------------------------------------------


def entries_of(plan: Plan | Mapping[str, Any]) -> tuple[str, list[Mapping[str, Any]]]:
    """(stack, resources as plan.json entries) from a Plan or a loaded plan.json."""
    if isinstance(plan, Mapping):
        return str(plan.get("stack", "")), list(plan.get("resources", []))
    return plan.stack, [r.to_json() for r in sorted(plan.resources, key=lambda r: r.urn)]


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _inputs(e: Mapping[str, Any]) -> Mapping[str, Any]:
    return e.get("inputs") or {}


def _of(entries: Iterable[Mapping[str, Any]], *types: str) -> list[Mapping[str, Any]]:
    return [e for e in entries if e["type"] in types]


def _kubernetes(entries: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    # Not a Patch resource: it changes an object counted where it is made (a claim, from its StatefulSet).
    return [e for e in entries if e["type"].startswith("kubernetes:") and not e["type"].endswith("Patch")
            and _inputs(e).get("kind") == kind]


ARN_REGION = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:([a-z]{2}(?:-[a-z]+)+-\d+):")


def region_of(plan: Plan | Mapping[str, Any]) -> str | None:
    """The plan's AWS region: an explicit provider's, else the subnet's zone, else any ARN's."""
    _, entries = entries_of(plan)
    for e in _of(entries, tokens.AWS_PROVIDER):
        if _inputs(e).get("region"):
            return str(_inputs(e)["region"])
    for e in _of(entries, tokens.SUBNET):
        zone = str(_inputs(e).get("availabilityZone") or "")
        match = re.fullmatch(r"([a-z]{2}(?:-[a-z]+)+-\d+)[a-z]", zone)
        if match:
            return match.group(1)
    for e in entries:
        if not e["type"].startswith("aws:"):
            continue
        for value in _inputs(e).values():
            match = ARN_REGION.match(value) if isinstance(value, str) else None
            if match:
                return match.group(1)
    return None


def is_aws(plan: Plan | Mapping[str, Any]) -> bool:
    _, entries = entries_of(plan)
    return any(e["type"].startswith("aws:") for e in entries)


# --------------------------------------------------------------------------
# Quantities
# --------------------------------------------------------------------------

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


def gib(quantity: str) -> int:
    """A Kubernetes storage quantity in whole GiB, rounded up as the EBS CSI driver rounds a
    request up to the GiB it creates the volume with (and bills as GB-month)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]i|[kMGTP]?)\s*", str(quantity))
    if not match:
        raise ValueError(f"storage quantity {quantity!r} is not a Kubernetes quantity like 10Gi")
    number, suffix = Decimal(match.group(1)), match.group(2)
    scale = _BINARY.get(suffix) or _DECIMAL[suffix]
    return max(1, math.ceil(number * scale / Decimal(2**30)))


def _number(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(Decimal(str(value)))
    except ArithmeticError:
        return None


# --------------------------------------------------------------------------
# Pricing
# --------------------------------------------------------------------------


@dataclass
class _Pricer:
    region: str
    prices: PriceTable
    charges: list[Charge] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)

    def price(self, service: str, item: str) -> Price | None:
        return self.prices.get(self.region, service, item)

    def add(self, category: str, line: str, resource: str, quantity: Decimal | int, service: str, item: str,
            *, kind: str = "", owner: str = "", role: str = "", missing: str = "") -> bool:
        price = self.price(service, item)
        if price is None:
            self.unpriced.append(f"{resource}: {missing or f'no {service} price for {item}'} in {self.region}")
            return False
        self.charges.append(Charge(category, line, resource, Decimal(quantity), price, kind, owner, role))
        return True

    def hourly(self, category: str, line: str, resource: str, service: str, item: str, **who: str) -> bool:
        return self.add(category, line, resource, HOURS_PER_MONTH, service, item, **who)

    def volume(self, category: str, resource: str, size_gib: int, volume_type: str, iops: int | None,
               throughput: int | None, extra: str = "", **who: str) -> None:
        """One EBS volume: its GiB, and for gp3 the IOPS and throughput above what is included."""
        volume_type = volume_type or "gp2"
        spec = [f"{size_gib} GiB {volume_type}"]
        if volume_type == "gp3" and iops and iops > GP3_INCLUDED_IOPS:
            spec.append(f"{iops} IOPS")
        if volume_type == "gp3" and throughput and throughput > GP3_INCLUDED_THROUGHPUT:
            spec.append(f"{throughput} MB/s")
        line = ", ".join(spec) + (f" {extra}" if extra else "")
        if not self.add(category, line, resource, size_gib, "ebs", f"{volume_type}-storage",
                        missing=f"no price for EBS {volume_type} volumes", **who):
            return
        if volume_type == "gp3" and iops and iops > GP3_INCLUDED_IOPS:
            self.add(category, line, resource, iops - GP3_INCLUDED_IOPS, "ebs", "gp3-iops", **who)
        if volume_type == "gp3" and throughput and throughput > GP3_INCLUDED_THROUGHPUT:
            self.add(category, line, resource, throughput - GP3_INCLUDED_THROUGHPUT, "ebs", "gp3-throughput",
                     **who)


def _node(e: Mapping[str, Any]) -> tuple[str, str]:
    tags = _inputs(e).get("tags") or {}
    return str(tags.get("Name") or e["name"]), str(tags.get("Role") or "")


def _instances(entries: list[Mapping[str, Any]], pricer: _Pricer) -> None:
    for e in _of(entries, tokens.INSTANCE):
        inputs, (node, role) = _inputs(e), _node(e)
        instance_type = str(inputs.get("instanceType") or "")
        pricer.hourly("EC2 instances", instance_type, node, "ec2", instance_type, kind=role or "instance",
                      owner=node, role=role)
        root = inputs.get("rootBlockDevice") or {}
        size = _number(root.get("volumeSize"))
        if size is None:
            pricer.unpriced.append(f"{node} root volume: its size comes from the AMI, not the plan")
            continue
        pricer.volume("EBS root volumes", f"{node} root volume", size, str(root.get("volumeType") or "gp2"),
                      _number(root.get("iops")), _number(root.get("throughput")), owner=node, role=role)


def _volumes(entries: list[Mapping[str, Any]], pricer: _Pricer) -> None:
    for e in _of(entries, tokens.EBS_VOLUME):
        inputs = _inputs(e)
        size = _number(inputs.get("size"))
        if size is None:
            pricer.unpriced.append(f"{e['name']}: its size comes from a snapshot, not the plan")
            continue
        # aws.ebs.Volume's type defaults to gp2 (the EC2 API's default).
        pricer.volume("EBS volumes", e["name"], size, str(inputs.get("type") or "gp2"), _number(inputs.get("iops")),
                      _number(inputs.get("throughput")))


def _claims(entries: list[Mapping[str, Any]], pricer: _Pricer) -> list[str]:
    """The EBS volumes behind PersistentVolumeClaims: each StatefulSet's claim templates x replicas,
    and plain PersistentVolumeClaim objects, in the StorageClass they name (else the default one)."""
    classes: dict[str, Mapping[str, Any]] = {}
    default = None
    for e in _kubernetes(entries, STORAGE_CLASS):
        inputs = _inputs(e)
        name = str(_get(inputs, "metadata", "name") or e.get("id") or e["name"])
        classes[name] = inputs
        if str(_get(inputs, "metadata", "annotations", DEFAULT_CLASS) or "") == "true":
            default = name
    notes = []

    def claim(resource: str, spec: Mapping[str, Any], extra: str) -> None:
        size = _get(spec, "resources", "requests", "storage")
        class_name = spec.get("storageClassName") or default
        storage_class = classes.get(str(class_name)) if class_name else None
        if size is None:
            pricer.unpriced.append(f"{resource}: no storage request")
        elif storage_class is None:
            pricer.unpriced.append(f"{resource}: StorageClass {class_name or '(cluster default)'} is not in the plan")
        elif storage_class.get("provisioner") not in EBS_CSI_PROVISIONERS:
            pricer.unpriced.append(f"{resource}: StorageClass {class_name} is not provisioned by the EBS CSI driver")
        else:
            parameters = storage_class.get("parameters") or {}
            size_gib = gib(str(size))
            iops = _number(parameters.get("iops"))
            per_gb = _number(parameters.get("iopsPerGB") or parameters.get("iopsPerGb"))
            if iops is None and per_gb is not None:
                iops = per_gb * size_gib
            # The EBS CSI driver's default volume type is gp3.
            pricer.volume("EBS data volumes (PVCs)", resource, size_gib, str(parameters.get("type") or "gp3"), iops,
                          _number(parameters.get("throughput")), extra)

    for e in _kubernetes(entries, "StatefulSet"):
        inputs = _inputs(e)
        name = str(_get(inputs, "metadata", "name") or e["name"])
        replicas = _number(_get(inputs, "spec", "replicas"))
        replicas = 1 if replicas is None else replicas
        for template in _get(inputs, "spec", "volumeClaimTemplates") or []:
            template_name = str(_get(template, "metadata", "name") or "data")
            for ordinal in range(replicas):
                claim(f"{template_name}-{name}-{ordinal}", template.get("spec") or {}, f"(StatefulSet {name})")
            notes.append(f"StatefulSet {name}: {replicas} x {template_name}")
    for e in _kubernetes(entries, "PersistentVolumeClaim"):
        name = str(_get(_inputs(e), "metadata", "name") or e["name"])
        claim(name, _inputs(e).get("spec") or {}, "(PersistentVolumeClaim)")
    return notes


def _load_balancers(entries: list[Mapping[str, Any]], pricer: _Pricer) -> None:
    for e in _of(entries, tokens.LOAD_BALANCER):
        # aws.lb.LoadBalancer's loadBalancerType defaults to application.
        lb_type = str(_inputs(e).get("loadBalancerType") or "application")
        pricer.hourly("Load balancers", f"{lb_type} load balancer", e["name"], "elb", f"{lb_type}-lb")
    for e in _of(entries, NAT_GATEWAY):
        pricer.hourly("NAT gateways", "NAT gateway", e["name"], "vpc", "nat-gateway")


def _public_addresses(entries: list[Mapping[str, Any]], pricer: _Pricer) -> None:
    """Every public IPv4 address: one per instance that gets one (an Elastic IP associated with an
    instance replaces its automatic address), one per Elastic IP, one per subnet of an
    internet-facing load balancer."""
    instances = {str(e.get("id")): e for e in _of(entries, tokens.INSTANCE) if e.get("id")}
    subnets = {str(e.get("id")): _inputs(e) for e in _of(entries, tokens.SUBNET) if e.get("id")}
    with_eip = {str(_inputs(e).get("instance")) for e in _of(entries, tokens.EIP) if _inputs(e).get("instance")}
    for e in _of(entries, tokens.INSTANCE):
        inputs, (node, role) = _inputs(e), _node(e)
        public = inputs.get("associatePublicIpAddress")
        if public is None:
            public = bool((subnets.get(str(inputs.get("subnetId"))) or {}).get("mapPublicIpOnLaunch"))
        if public and str(e.get("id")) not in with_eip:
            pricer.hourly("Public IPv4", "public IPv4", f"{node} address", "vpc", "public-ipv4",
                          kind=role or "instance", owner=node, role=role)
    for e in _of(entries, tokens.EIP):
        instance = instances.get(str(_inputs(e).get("instance")))
        node, role = _node(instance) if instance else ("", "")
        pricer.hourly("Public IPv4", "public IPv4", e["name"], "vpc", "public-ipv4", kind="Elastic IP", owner=node,
                      role=role)
    for e in _of(entries, tokens.LOAD_BALANCER):
        inputs = _inputs(e)
        if inputs.get("internal"):
            continue
        for n in range(len(inputs.get("subnetMappings") or inputs.get("subnets") or [])):
            pricer.hourly("Public IPv4", "public IPv4", f"{e['name']} address {n + 1}", "vpc", "public-ipv4",
                          kind="load balancer")


def _keys_and_parameters(entries: list[Mapping[str, Any]], pricer: _Pricer) -> tuple[list[str], list[str]]:
    notes, free = [], []
    keys = _of(entries, tokens.KMS_KEY)
    for e in keys:
        pricer.add("KMS keys", "customer managed key", e["name"], 1, "kms", "customer-managed-key")
    if any(_inputs(e).get("enableKeyRotation") for e in keys):
        notes.append("KMS: key rotation adds $1/month per key after each of its first two yearly rotations")
    standard = 0
    for e in _of(entries, tokens.SSM_PARAMETER):
        if str(_inputs(e).get("tier") or "Standard") == "Advanced":
            pricer.add("SSM parameters", "advanced parameter", e["name"], 1, "ssm", "advanced-parameter")
        else:
            standard += 1
    if standard:
        # No tier given means the region's default tier, Standard unless the account changed it.
        free.append(f"{standard} SSM parameters, standard tier: no charge")
    return notes, free


def estimate(plan: Plan | Mapping[str, Any], prices: PriceTable, region: str | None = None) -> Estimate:
    stack, entries = entries_of(plan)
    region = region or region_of(plan)
    if region is None:
        raise CostError(f"stack {stack}: the plan names no AWS region (no provider, subnet or ARN)")
    if region not in prices.regions():
        raise CostError(f"stack {stack}: no prices for region {region} in {prices.path} "
                        f"(has {', '.join(prices.regions())})")
    pricer = _Pricer(region, prices)
    _instances(entries, pricer)
    _volumes(entries, pricer)
    claim_notes = _claims(entries, pricer)
    _load_balancers(entries, pricer)
    _public_addresses(entries, pricer)
    key_notes, free = _keys_and_parameters(entries, pricer)
    usage_only = [f"S3 bucket {e['name']}: storage and requests only" for e in _of(entries, *S3_BUCKETS)]
    absent = [what for what, present in (
        ("load balancers", _of(entries, tokens.LOAD_BALANCER)),
        ("NAT gateways", _of(entries, NAT_GATEWAY)),
        ("Elastic IPs", _of(entries, tokens.EIP)),
        ("S3 buckets", _of(entries, *S3_BUCKETS)),
        ("advanced SSM parameters", [c for c in pricer.charges if c.category == "SSM parameters"]),
    ) if not present]
    notes = []
    if claim_notes:
        notes.append("EBS data volumes: the EBS CSI driver creates them at run time for PersistentVolumeClaims, so "
                     "they are not AWS resources in the plan; counted from the claim templates x replicas ("
                     + "; ".join(claim_notes) + ")")
    notes += key_notes
    if any(c.category == "EC2 instances" and c.line.startswith(("t3.", "t3a.", "t4g.")) for c in pricer.charges):
        notes.append("T3 instances run in unlimited mode: CPU above the baseline is billed by use")
    return Estimate(stack, region, tuple(pricer.charges), tuple(free), tuple(usage_only), tuple(pricer.unpriced),
                    tuple(absent), tuple(notes))


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------


def report_lines(est: Estimate, prices: PriceTable) -> list[str]:
    """What `make preview` prints: every item, the total, the three largest, and what is left out."""
    dates = ", ".join(prices.as_of(est.region))
    lines = [f"Monthly cost estimate, stack {est.stack} ({est.region}, on-demand, {HOURS_PER_MONTH} h/month; "
             f"{prices.path.name} as of {dates}):"]
    items = est.items()
    width = max([len(i.describe()) for i in items] + [10])
    for item in items:
        lines.append(f"  {item.category:<24} {item.describe():<{width}} {money(item.monthly):>11}")
    lines.append(f"  {'total':<24} {'':<{width}} {money(est.total):>11}")
    for n, item in enumerate(est.largest(), start=1):
        lead = "largest:" if n == 1 else ""
        lines.append(f"  {lead:<9}{n}. {item.category}, {item.describe()}: {money(item.monthly)}")
    for entry in est.free:
        lines.append(f"  free: {entry}")
    for entry in est.usage_only:
        lines.append(f"  usage-based only: {entry}")
    if est.unpriced:
        lines.append(f"  NOT PRICED (not in the total; add the price to {prices.path.name}):")
        lines += [f"    {entry}" for entry in est.unpriced]
    if est.absent:
        lines.append(f"  none in this stack: {', '.join(est.absent)}")
    for note in est.notes:
        lines.append(f"  note: {note}")
    lines.append(f"  not in the total (billed by use): {', '.join(USAGE_BASED)}")
    return lines


def compare_table(estimates: list[Estimate]) -> str:
    """The README's table: one column per stack, one row per category, then the total."""
    head = "| | " + " | ".join(f"`{e.stack}` ({e.region})" for e in estimates) + " |"
    rows = [head, "|---|" + "---:|" * len(estimates)]
    per_stack = [e.by_category() for e in estimates]
    item_text: list[dict[str, list[str]]] = [{i.category: [] for i in e.items()} for e in estimates]
    for texts, e in zip(item_text, estimates, strict=True):
        for i in e.items():
            texts[i.category].append(i.describe())
    for category in CATEGORIES:
        if not any(category in totals for totals in per_stack):
            continue
        cells = []
        for totals, texts in zip(per_stack, item_text, strict=True):
            if category in totals:
                cells.append(f"{money(totals[category])}: {'; '.join(texts[category])}")
            else:
                cells.append("none")
        rows.append(f"| {category} | " + " | ".join(cells) + " |")
    rows.append("| **total per month** | " + " | ".join(f"**{money(e.total)}**" for e in estimates) + " |")
    return "\n".join(rows)
