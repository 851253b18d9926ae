"""The review-time policies as plain functions, shared by the policy pack and the tests.

Each check takes (resource type token, props, stack name, options) and returns the
violation messages: an empty list means the resource complies. `props` is a
resource's inputs in the engine's camelCase shape: what `pulumi preview` hands a
policy pack, and what the offline preview writes to plan.json. Nothing here
imports pulumi_policy, so the tests call these directly.

Values are read through the abstract Mapping/Sequence types only: during a real
preview the pack wraps props in proxies that are neither dict nor list, and raise
when a still-unknown value is read (the SDK then reports "can't run during preview").
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components import tokens
from components.facts import (
    API_PORT,
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    KUBELET_PORT,
    MYSQL_PORT,
    NETWORK_POLICY_IMPLEMENTATIONS,
    admin_exposure_problem,
)

# --------------------------------------------------------------------------
# Types the policies look at
# --------------------------------------------------------------------------

SECURITY_GROUP = tokens.SECURITY_GROUP
SECURITY_GROUP_RULE = tokens.SECURITY_GROUP_RULE
INGRESS_RULE = tokens.INGRESS_RULE
EGRESS_RULE = tokens.EGRESS_RULE
INSTANCE = tokens.INSTANCE
LAUNCH_TEMPLATE = tokens.LAUNCH_TEMPLATE
EBS_VOLUME = tokens.EBS_VOLUME
SSM_PARAMETER = tokens.SSM_PARAMETER

# Ports that must never be open to the whole internet: SSH, the Kubernetes API,
# etcd client/peer, the kubelet API, MySQL.
SENSITIVE_PORTS: tuple[tuple[int, int, str], ...] = (
    (22, 22, "SSH"),
    (API_PORT, API_PORT, "the Kubernetes API"),
    (ETCD_CLIENT_PORT, ETCD_PEER_PORT, "etcd"),
    (KUBELET_PORT, KUBELET_PORT, "the kubelet API"),
    (MYSQL_PORT, MYSQL_PORT, "MySQL"),
)
# Protocol values that carry TCP (all of the ports above are TCP services).
TCP_PROTOCOLS = {"tcp", "6", "-1", "all"}

# Where each workload kind keeps its pod spec; Jobs run to completion, so probes do not apply to them.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
RUN_TO_COMPLETION = {"Job", "CronJob"}

# Resources whose replacement or deletion loses data: in prod* stacks they must carry Pulumi's protect.
# Masters hold etcd; minions are cattle (their pods' data lives on volumes), so only masters count.
# A generated password, once replaced, no longer opens the data directory that was initialised with it.
STATEFUL_TYPES = {
    tokens.RANDOM_PASSWORD,
    # Backups live in the bucket (its KMS key is protected with it by aws/backup_bucket.py).
    tokens.S3_BUCKET,
    tokens.RANDOM_BYTES,  # the key Secrets are encrypted with in etcd
    tokens.KMS_KEY,  # what every node's PKI parameters are encrypted with
    tokens.STATEFUL_SET,
    tokens.NAMESPACE,  # deleting a namespace deletes every claim in it
    tokens.PERSISTENT_VOLUME_CLAIM,
    tokens.PERSISTENT_VOLUME,
    tokens.VPC,
    tokens.SUBNET,
    EBS_VOLUME,
}
PROD_STACK = re.compile(r"^prod")

# Names of variables, keys and parameters that hold credentials.
SECRET_NAME = re.compile(r"pass(word|wd)?($|[^a-z])|pwd|secret|token|credential|private[-_]?key", re.IGNORECASE)
# A credential given literally on a MySQL client's command line, in an ini file or in the environment
# of a script, rather than as a reference ($VAR, a file path).
LITERAL_PASSWORD = re.compile(
    r"--password[= ](?P<a>[^\s;|&]+)"
    r"|\b(?:mysql|mariadb|mysqladmin|mariadb-admin|mysqldump|mariadb-dump|xtrabackup|mariadb-backup)\b"
    r"[^\n]*?\s-p(?P<b>[^\s;|&]+)"
    r"|^\s*password\s*=\s*(?P<c>[^\s;|&]+)"
    r"|\bMYSQL_PWD=(?P<d>[^\s;|&]+)",
    re.MULTILINE,
)
PEM_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
# Values that only look like credentials: references to where the secret really is.
REFERENCE = re.compile(r"^['\"]?(\$|/)")
# How the offline preview shows a Pulumi secret. A secret that lands in an env value, a ConfigMap or
# user-data is written in plain text into the cluster or the instance all the same.
SECRET_MARKER = "[secret]"
LATEST = "latest"


@dataclass(frozen=True)
class Options:
    """The few resource options a policy needs (the pack fills these from the engine's request)."""

    protect: bool = False
    name: str = ""


Check = Callable[[str, Mapping[str, Any], str, Options], list[str]]
# A stack-level check sees every resource at once: (urn, type, props) -> (urn, message) violations.
StackCheck = Callable[[list[tuple[str, str, Mapping[str, Any]]]], list[tuple[str, str]]]


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    check: Check


@dataclass(frozen=True)
class StackPolicy:
    name: str
    description: str
    check: StackCheck


# --------------------------------------------------------------------------
# Reading props
# --------------------------------------------------------------------------


def _user_data(props: Mapping[str, Any]) -> Any:
    """An instance's user-data as cloud-init reads it: userData, or userDataBase64 (gzip-compressed, as the
    program sends it, or plain). A secret or still-unknown value is returned as it is."""
    encoded = _get(props, "userDataBase64")
    if not isinstance(encoded, str) or encoded == SECRET_MARKER:
        return _get(props, "userData") if encoded is None else encoded
    try:
        raw = base64.b64decode(encoded, validate=True)
        return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
    except (ValueError, OSError, EOFError):
        return encoded  # not base64 or a broken gzip: checked as the text it is


def _is_map(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not _is_map(value) or key not in value:
            return None
        value = value[key]
    return value


def _items(value: Any) -> list[Any]:
    return list(value) if _is_list(value) else []


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _kind(resource_type: str) -> str:
    return resource_type.rsplit(":", 1)[-1]


def _is_kubernetes(resource_type: str) -> bool:
    return resource_type.startswith("kubernetes:")


# --------------------------------------------------------------------------
# Security groups
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """One ingress or egress permission, whatever resource shape it came from."""

    direction: str
    protocol: str
    from_port: int
    to_port: int
    cidrs: tuple[str, ...]
    description: str | None
    where: str


def _port(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _rule(direction: str, props: Any, protocol_key: str, cidr_keys: tuple[str, ...], where: str) -> _Rule:
    protocol = str(_get(props, protocol_key) or "").lower()
    everything = protocol in ("-1", "all")
    cidrs: list[str] = []
    for key in cidr_keys:
        value = _get(props, key)
        cidrs += [str(v) for v in _items(value)] if _is_list(value) else ([str(value)] if value else [])
    return _Rule(
        direction=direction,
        protocol=protocol,
        from_port=0 if everything else _port(_get(props, "fromPort"), 0),
        to_port=65535 if everything else _port(_get(props, "toPort"), 65535),
        cidrs=tuple(cidrs),
        description=_get(props, "description"),
        where=where,
    )


def security_group_rules(resource_type: str, props: Mapping[str, Any]) -> list[_Rule]:
    """Every permission a security group resource grants, from any of the three AWS shapes."""
    if resource_type == SECURITY_GROUP:
        return [
            _rule(direction, entry, "protocol", ("cidrBlocks", "ipv6CidrBlocks"), f"{direction}[{i}]")
            for direction in ("ingress", "egress")
            for i, entry in enumerate(_items(_get(props, direction)))
        ]
    if resource_type == SECURITY_GROUP_RULE:
        direction = str(_get(props, "type") or "ingress")
        return [_rule(direction, props, "protocol", ("cidrBlocks", "ipv6CidrBlocks"), "rule")]
    if resource_type in (INGRESS_RULE, EGRESS_RULE):
        direction = "ingress" if resource_type == INGRESS_RULE else "egress"
        return [_rule(direction, props, "ipProtocol", ("cidrIpv4", "cidrIpv6"), "rule")]
    return []


def _is_world(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def check_no_world_admin_ingress(resource_type: str, props: Mapping[str, Any], stack: str, opts: Options) -> list[str]:
    violations = []
    for rule in security_group_rules(resource_type, props):
        if rule.direction != "ingress" or rule.protocol not in TCP_PROTOCOLS:
            continue
        world = [c for c in rule.cidrs if _is_world(c)]
        for low, high, what in SENSITIVE_PORTS:
            if world and rule.from_port <= high and low <= rule.to_port:
                ports = str(low) if low == high else f"{low}-{high}"
                violations.append(
                    f"{rule.where}: ingress from {', '.join(world)} reaches {what} ({ports}/tcp); "
                    "allow only the admin CIDRs or other security groups"
                )
    return violations


def admin_exposure(resources: Iterable[tuple[str, str, Mapping[str, Any]]]) -> list[tuple[str, str]]:
    """A stack-level check: the union of every CIDR that may reach an admin port, measured by address
    space (one rule at a time cannot see 0.0.0.0/1 + 128.0.0.0/1). (urn, message) per violation,
    reported on the first rule that contributes. Values still unknown in a preview are skipped."""
    sources: dict[ipaddress.IPv4Network, str] = {}
    for urn, resource_type, props in resources:
        for rule in security_group_rules(resource_type, props):
            if rule.direction != "ingress" or rule.protocol not in TCP_PROTOCOLS:
                continue
            if not any(rule.from_port <= high and low <= rule.to_port for low, high, _ in SENSITIVE_PORTS):
                continue
            for cidr in rule.cidrs:
                try:
                    sources.setdefault(ipaddress.IPv4Network(cidr, strict=False), urn)
                except ValueError:
                    continue
    problem = admin_exposure_problem(sources)
    if problem is None:
        return []
    first = min(sources.values())
    listed = ", ".join(str(n) for n in sorted(sources))
    return [(first, f"the ingress sources of SSH, the Kubernetes API, etcd, the kubelet and MySQL ({listed}) "
                    f"{problem}: allow only the networks admins connect from")]




def check_rules_described(resource_type: str, props: Mapping[str, Any], stack: str, opts: Options) -> list[str]:
    violations = []
    if resource_type == SECURITY_GROUP:
        text = str(_get(props, "description") or "")
        if not text.strip() or text == "Managed by Pulumi":
            violations.append("the security group has no description of what it is for")
    for rule in security_group_rules(resource_type, props):
        if not str(rule.description or "").strip():
            violations.append(
                f"{rule.where}: {rule.direction} {rule.protocol} {rule.from_port}-{rule.to_port} has no description"
            )
    return violations


# --------------------------------------------------------------------------
# Instances and volumes
# --------------------------------------------------------------------------


def check_imdsv2(resource_type: str, props: Mapping[str, Any], stack: str, opts: Options) -> list[str]:
    if resource_type not in (INSTANCE, LAUNCH_TEMPLATE):
        return []
    tokens = _get(props, "metadataOptions", "httpTokens")
    if tokens != "required":
        return [f"metadataOptions.httpTokens is {tokens!r}: set it to 'required' (IMDSv2 only)"]
    return []


def check_encrypted_volumes(resource_type: str, props: Mapping[str, Any], stack: str, opts: Options) -> list[str]:
    violations = []
    if resource_type == INSTANCE:
        if not _truthy(_get(props, "rootBlockDevice", "encrypted")):
            violations.append("rootBlockDevice.encrypted is not true: the root volume would be unencrypted")
        for i, device in enumerate(_items(_get(props, "ebsBlockDevices"))):
            if not _truthy(_get(device, "encrypted")):
                violations.append(f"ebsBlockDevices[{i}] ({_get(device, 'deviceName')}) is not encrypted")
    elif resource_type == LAUNCH_TEMPLATE:
        for i, mapping in enumerate(_items(_get(props, "blockDeviceMappings"))):
            if _get(mapping, "ebs") is not None and not _truthy(_get(mapping, "ebs", "encrypted")):
                violations.append(f"blockDeviceMappings[{i}].ebs.encrypted is not true")
    elif resource_type == EBS_VOLUME and not _truthy(_get(props, "encrypted")):
        violations.append("the volume is not encrypted")
    return violations


# --------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Any:
    """The pod spec inside a workload object, or None for anything that runs no pods."""
    path = POD_SPEC_PATHS.get(_kind(resource_type))
    return _get(props, *path) if path and _is_kubernetes(resource_type) else None


def image_problem(image: Any) -> str | None:
    """Why an image reference is not pinned, or None when it is (by a tag other than latest, or a digest)."""
    if not isinstance(image, str) or not image:
        return "has no image"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag (it means latest)"
    if last.rsplit(":", 1)[1] == LATEST:
        return f"image {image!r} uses the latest tag"
    return None


def _container_problems(container: Any, *, probes: bool) -> list[str]:
    problems = []
    resources = _get(container, "resources")
    for section in ("requests", "limits"):
        missing = [r for r in ("cpu", "memory") if _get(resources, section, r) in (None, "")]
        if missing:
            problems.append(f"no {section} for {' and '.join(missing)}")
    if probes:
        problems += [f"no {p}" for p in ("livenessProbe", "readinessProbe") if not _get(container, p)]
    image = image_problem(_get(container, "image"))
    if image:
        problems.append(image)
    return problems


def check_containers(resource_type: str, props: Mapping[str, Any], stack: str, opts: Options) -> list[str]:
    spec = pod_spec(resource_type, props)
    if spec is None:
        return []
    long_running = _kind(resource_type) not in RUN_TO_COMPLETION
    violations = []
    for field in ("initContainers", "containers"):
        for container in _items(_get(spec, field)):
            # Init containers run to completion (no probes allowed) unless they are sidecars (restartPolicy Always).
            sidecar = _get(container, "restartPolicy") == "Always"
            probes = long_running and (field == "containers" or sidecar)
            for problem in _container_problems(container, probes=probes):
                violations.append(f"{field} {_get(container, 'name')!r}: {problem}")
    return violations


# --------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------


_FORMS = {"a": "--password", "b": "-p", "c": "password =", "d": "MYSQL_PWD="}


def _literal_passwords(text: str) -> Iterator[str]:
    """The forms (never the values: reports are public) of literal passwords in a text."""
    for match in LITERAL_PASSWORD.finditer(text):
        form, value = next((k, v) for k, v in match.groupdict().items() if v is not None)
        if not REFERENCE.match(value):
            yield _FORMS[form]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif _is_map(value):
        for item in value.values():
            yield from _strings(item)
    elif _is_list(value):
        for item in value:
            yield from _strings(item)


def _env_problems(container: Any, where: str) -> Iterator[str]:
    for env in _items(_get(container, "env")):
        name = str(_get(env, "name") or "")
        value = _get(env, "value")
        # *_FILE variables name a mounted file (the official images' convention), not the secret itself.
        if value == SECRET_MARKER or (SECRET_NAME.search(name) and not name.endswith("_FILE") and value):
            yield f"{where}: env {name} holds a literal value; use valueFrom.secretKeyRef"
    for text in _strings([_get(container, "command"), _get(container, "args")]):
        for form in _literal_passwords(text):
            yield f"{where}: a password is given literally on the command line ({form} <literal>)"


def _kubernetes_secret_problems(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    violations: list[str] = []
    spec = pod_spec(resource_type, props)
    if spec is not None:
        for field in ("initContainers", "containers"):
            for container in _items(_get(spec, field)):
                violations += _env_problems(container, f"{field} {_get(container, 'name')!r}")
    if _kind(resource_type) == "ConfigMap":
        for section in ("data", "binaryData"):
            for key, value in (_get(props, section) or {}).items():
                if SECRET_NAME.search(str(key)):
                    violations.append(f"ConfigMap key {key!r} looks like a credential: keep it in a Secret")
                if value == SECRET_MARKER:
                    violations.append(f"ConfigMap key {key!r} is built from a Pulumi secret: keep it in a Secret")
                for form in _literal_passwords(str(value)):
                    violations.append(f"ConfigMap key {key!r} holds a literal password ({form} <literal>)")
    annotations = _get(props, "metadata", "annotations") or {}
    for key, value in annotations.items():
        if isinstance(value, str) and PEM_PRIVATE_KEY.search(value):
            violations.append(f"annotation {key!r} holds a private key")
    return violations


def check_secrets_not_plain(resource_type: str, props: Mapping[str, Any], stack: str, opts: Options) -> list[str]:
    """MySQL passwords (and other credentials) reach pods only through Secrets, nodes only through SSM SecureString."""
    if _is_kubernetes(resource_type):
        return _kubernetes_secret_problems(resource_type, props)
    violations = []
    if resource_type == SSM_PARAMETER and _get(props, "type") != "SecureString":
        name, value = str(_get(props, "name") or opts.name), _get(props, "value")
        secret_value = value == SECRET_MARKER or (isinstance(value, str) and PEM_PRIVATE_KEY.search(value))
        if SECRET_NAME.search(name) or secret_value:
            violations.append(f"parameter {name} holds a credential but is {_get(props, 'type')}, not SecureString")
    if resource_type in (INSTANCE, LAUNCH_TEMPLATE):
        user_data = _user_data(props)
        if user_data == SECRET_MARKER:
            violations.append("userData is built from a Pulumi secret: anyone who can describe the instance reads it")
        elif isinstance(user_data, str):
            if PEM_PRIVATE_KEY.search(user_data):
                violations.append("userData holds a private key: anyone who can describe the instance can read it")
            for form in _literal_passwords(user_data):
                violations.append(f"userData holds a literal password ({form} <literal>)")
    return violations


# --------------------------------------------------------------------------
# Protection in production
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# S3 buckets: encrypted with KMS, versioned, never public, TLS only
# --------------------------------------------------------------------------

S3_BUCKET = tokens.S3_BUCKET
# What every bucket of the stack must have beside it, and the check each one must pass.
BUCKET_COMPANIONS = {
    tokens.S3_BUCKET_ENCRYPTION: "default encryption with a KMS key (BucketServerSideEncryptionConfiguration)",
    tokens.S3_BUCKET_VERSIONING: "versioning Enabled (BucketVersioning)",
    tokens.S3_BUCKET_PUBLIC_ACCESS_BLOCK: "all four public access blocks (BucketPublicAccessBlock)",
    tokens.S3_BUCKET_POLICY: "a policy denying requests without TLS (BucketPolicy)",
}
PUBLIC_ACLS = {"public-read", "public-read-write", "authenticated-read"}


def _policy_document(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _denies_insecure_transport(document: Any) -> bool:
    for statement in _items(_get(document, "Statement")) if _is_map(document) else []:
        condition = _get(statement, "Condition", "Bool", "aws:SecureTransport")
        principal = _get(statement, "Principal")
        action = _get(statement, "Action")
        actions = [action] if isinstance(action, str) else [str(a) for a in _items(action)]
        if (_get(statement, "Effect") == "Deny" and str(condition).lower() == "false"
                and (principal == "*" or _get(principal, "AWS") == "*") and ("s3:*" in actions)):
            return True
    return False


def check_private_buckets(resource_type: str, props: Mapping[str, Any], stack: str, opts: Options) -> list[str]:
    """Each S3 piece as it must be: KMS default encryption, versioning on, every public access
    block on, a TLS-only bucket policy, no public ACL on the bucket."""
    if resource_type == S3_BUCKET:
        acl = _get(props, "acl")
        return [f"bucket ACL {acl} makes objects public: leave acl unset (BucketOwnerEnforced)"] if (
            acl in PUBLIC_ACLS) else []
    if resource_type == tokens.S3_BUCKET_ENCRYPTION:
        problems = []
        rules = _items(_get(props, "rules"))
        if not rules:
            problems.append("no default encryption rule")
        for rule in rules:
            default = _get(rule, "applyServerSideEncryptionByDefault") or {}
            if _get(default, "sseAlgorithm") not in ("aws:kms", "aws:kms:dsse"):
                problems.append(f"default encryption is {_get(default, 'sseAlgorithm')!r}, not aws:kms with a"
                                " customer managed key")
            elif not _get(default, "kmsMasterKeyId"):
                problems.append("aws:kms default encryption names no KMS key (kmsMasterKeyId)")
        return problems
    if resource_type == tokens.S3_BUCKET_VERSIONING:
        status = _get(props, "versioningConfiguration", "status")
        return [] if status == "Enabled" else [f"versioning status is {status!r}: must be Enabled"]
    if resource_type == tokens.S3_BUCKET_PUBLIC_ACCESS_BLOCK:
        off = [key for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
               if _get(props, key) is not True]
        return [f"public access block leaves {', '.join(off)} off"] if off else []
    if resource_type == tokens.S3_BUCKET_POLICY:
        document = _policy_document(_get(props, "policy"))
        if document is None or document == SECRET_MARKER:
            return []  # not known yet (computed from the bucket's ARN): the plan's stack check reads it
        if not _denies_insecure_transport(document):
            return ["bucket policy does not deny requests without TLS (Deny s3:* to * when"
                    " aws:SecureTransport is false)"]
    return []


def bucket_gaps(resources: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Buckets of a plan (entries with urn, type and parent) that lack a companion: each bucket and
    its configuration resources share a parent component, one bucket per component."""
    entries = list(resources)
    gaps: dict[str, list[str]] = {}
    for bucket in (e for e in entries if e.get("type") == S3_BUCKET):
        siblings = {e.get("type") for e in entries if e.get("parent") == bucket.get("parent")}
        missing = [what for token, what in BUCKET_COMPANIONS.items() if token not in siblings]
        if missing:
            gaps[str(bucket.get("urn"))] = [f"bucket has no {what}" for what in missing]
    return gaps


def is_master_instance(resource_type: str, props: Mapping[str, Any], name: str = "") -> bool:
    if resource_type != INSTANCE:
        return False
    tags = _get(props, "tags") or {}
    role = next((str(v) for k, v in tags.items() if str(k).lower() == "role"), "")
    return role in ("master", "control-plane") or re.search(r"(^|-)master(-|$)", name) is not None


def is_stateful(resource_type: str, props: Mapping[str, Any], name: str = "") -> bool:
    return resource_type in STATEFUL_TYPES or is_master_instance(resource_type, props, name)


def check_prod_protected(resource_type: str, props: Mapping[str, Any], stack: str, opts: Options) -> list[str]:
    if not PROD_STACK.match(stack) or not is_stateful(resource_type, props, opts.name):
        return []
    if opts.protect:
        return []
    return [f"stateful resource in stack {stack} is not protected: set protectStateful (ResourceOptions.protect)"]


# --------------------------------------------------------------------------
# The pack
# --------------------------------------------------------------------------

POLICIES: tuple[Policy, ...] = (
    Policy(
        "no-world-admin-ingress",
        "No security group ingress from 0.0.0.0/0 or ::/0 to SSH, the Kubernetes API, etcd, the kubelet or MySQL.",
        check_no_world_admin_ingress,
    ),
    Policy("imdsv2-required", "EC2 instances and launch templates require IMDSv2 tokens.", check_imdsv2),
    Policy("encrypted-volumes", "Root and data volumes of EC2 instances are encrypted.", check_encrypted_volumes),
    Policy(
        "security-group-rules-described",
        "Every security group and every rule says what it is for.",
        check_rules_described,
    ),
    Policy(
        "containers-hardened",
        "Every container has CPU and memory requests and limits, liveness and readiness probes and a pinned image.",
        check_containers,
    ),
    Policy(
        "secrets-not-in-plain-inputs",
        "MySQL passwords and other credentials never appear in env values, ConfigMaps, command lines or user-data.",
        check_secrets_not_plain,
    ),
    Policy(
        "private-buckets",
        "S3 buckets are KMS-encrypted, versioned, block every public access, refuse requests without TLS.",
        check_private_buckets,
    ),
    Policy(
        "prod-stateful-protected",
        "In stacks named prod*, stateful resources (StatefulSets, volumes, masters, the network) are protected.",
        check_prod_protected,
    ),
)


def stack_of(urn: str) -> str:
    """The stack a resource belongs to: urn:pulumi:<stack>::<project>::<type>::<name>."""
    parts = urn.split(":", 3)
    return parts[2] if len(parts) > 2 and parts[0] == "urn" else ""


def image_repository(image: str) -> str:
    """registry/path/name of an image reference, without its tag or digest."""
    name = image.split("@", 1)[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


def _enforces_network_policy(resource_type: str, props: Mapping[str, Any]) -> bool:
    if _kind(resource_type) != "DaemonSet":
        return False
    images = [_get(c, "image") for c in _items(_get(pod_spec(resource_type, props), "containers"))]
    return any(isinstance(i, str) and image_repository(i) in NETWORK_POLICY_IMPLEMENTATIONS for i in images)


def _is_default_deny(props: Mapping[str, Any]) -> bool:
    """Selects every pod, isolates both directions, and admits nothing."""
    spec = _get(props, "spec")
    selector = _get(spec, "podSelector")
    return (_is_map(selector) and not _get(selector, "matchLabels") and not _get(selector, "matchExpressions")
            and {"Ingress", "Egress"} <= set(_items(_get(spec, "policyTypes")))
            and not _items(_get(spec, "ingress")) and not _items(_get(spec, "egress")))


def network_policy_enforced(resources: Iterable[tuple[str, str, Mapping[str, Any]]]) -> list[tuple[str, str]]:
    """A stack-level check: a stack that builds a cluster runs an agent that enforces NetworkPolicy
    (its CNI enforces none), and every namespace the stack creates has a default deny, both ways.
    Namespaces still unknown in a preview are skipped."""
    resources = list(resources)
    found = []
    instances = sorted(urn for urn, t, _ in resources if t in (INSTANCE, LAUNCH_TEMPLATE))
    if instances and not any(_enforces_network_policy(t, props) for _, t, props in resources):
        known = ", ".join(NETWORK_POLICY_IMPLEMENTATIONS)
        found.append((instances[0], "the stack builds a cluster whose pod network enforces no NetworkPolicy, and runs "
                                    f"no agent that does (a DaemonSet of one of {known}): every NetworkPolicy would be "
                                    "decorative"))
    denied = {_get(props, "metadata", "namespace") for _, t, props in resources
              if t == tokens.NETWORK_POLICY and _is_default_deny(props)}
    for urn, t, props in resources:
        name = _get(props, "metadata", "name")
        if t == tokens.NAMESPACE and isinstance(name, str) and name not in denied:
            found.append((urn, f"namespace {name!r} has no default-deny NetworkPolicy (podSelector {{}}, policyTypes "
                               "Ingress and Egress, no rules): its pods may reach and be reached by anything"))
    return found


STACK_POLICIES: tuple[StackPolicy, ...] = (
    StackPolicy(
        "admin-exposure-by-address-space",
        "All sources that may reach an admin port, together, face at most a /16 of public addresses.",
        admin_exposure,
    ),
    StackPolicy(
        "network-policy-enforced",
        "A stack that builds a cluster runs a NetworkPolicy agent; every namespace it creates denies by default.",
        network_policy_enforced,
    ),
)


def stack_violations(resources: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """Every stack policy's violations over a plan.json's resources (policies with none left out)."""
    entries = [(str(e["urn"]), str(e["type"]), e.get("inputs") or {}) for e in resources]
    found = {}
    for policy in STACK_POLICIES:
        messages = policy.check(entries)
        if messages:
            found[policy.name] = messages
    return found


def violations(
    resource_type: str, props: Mapping[str, Any], stack: str, opts: Options = Options()
) -> dict[str, list[str]]:
    """Every policy's violations for one resource (policies with none are left out)."""
    found = {}
    for policy in POLICIES:
        messages = policy.check(resource_type, props, stack, opts)
        if messages:
            found[policy.name] = messages
    return found


def plan_violations(resources: Sequence[Mapping[str, Any]], stack: str) -> dict[str, dict[str, list[str]]]:
    """Violations of every resource of a plan.json, keyed by URN (clean resources left out)."""
    found = {}
    for entry in resources:
        opts = Options(protect=bool(_get(entry, "options", "protect")), name=str(entry.get("name") or ""))
        result = violations(entry["type"], entry.get("inputs") or {}, stack, opts)
        if result:
            found[entry["urn"]] = result
    for urn, problems in bucket_gaps(resources).items():
        found.setdefault(urn, {})["private-buckets"] = problems
    return found
