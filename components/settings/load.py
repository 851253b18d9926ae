"""Read and check every setting of one stack: the only reader of `pulumi.Config`.

Every value is checked here, before any resource is registered, and a bad value stops the
program with one line naming the key, the value (escaped and cut short, see rules.shown) and
what is allowed. Defaults live only in `Pulumi.yaml` (the Pulumi CLI applies them, and so does
the offline harness), so project keys are read as required: a missing key means Pulumi.yaml and
this module disagree, which is a bug, not a user error. What comes out is the plain data of
settings/schema.py; the rules themselves are plain functions in settings/rules.py.

Beyond each value on its own, this module refuses what the engine would otherwise accept in
silence: a key nobody reads (a typo), a secret stored in plain text, and settings that
contradict each other. docs/settings.md lists the rules and where each limit comes from.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import ipaddress
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pulumi
import yaml
from pulumi.runtime.config import CONFIG, get_config, get_config_env, is_config_secret

from components import tokens
from components.facts import (
    EBS_DATA_STORAGE_CLASS,
    EBS_STORAGE_CLASS,
    GP3_IOPS,
    GP3_THROUGHPUT_MIBS,
    GUESTBOOK_OBJECT_NAMES,
    MAX_ZONES,
    MYSQL_OBJECT_SUFFIXES,
    MYSQL_RECORD_OUTPUT,
    NAMESPACE_OBJECT_NAMES,
    NODE_PORT_RANGE,
    PODMAN_BRIDGE,
    PROJECT,
    ROLL_NODE_ENV,
    SECURITY_GROUP_RULE_QUOTA,
    admin_exposure_problem,
    base_tags,
    cluster_id,
    gp3_problem,
    node_slot_problem,
    quantity_value,
    zone_blocks,
)
from components.pins import (
    EBS_CSI_DRIVER_IMAGE,
    EBS_CSI_GP3_MAX_IOPS,
    ENGINE_VERSIONS,
    FEDORA_RELEASES,
    KUBERNETES_VERSIONS,
)
from components.settings import rules
from components.settings.rules import RuleError, shown
from components.settings.schema import (
    AddonSettings,
    AutoscalerSettings,
    BackupSettings,
    CloneSettings,
    ClusterMode,
    ClusterSettings,
    DataVolumeSettings,
    Engine,
    EtcdBackupSettings,
    ExistingClusterSettings,
    FrontendLbSettings,
    GuestbookSettings,
    MysqlRecord,
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

_INSTANCE_TYPE = re.compile(
    r"^[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.(nano|micro|small|medium|large|metal|[0-9]*xlarge)(-[0-9]+xl)?$"
)
_AMI = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
_VPC_ID = re.compile(r"^vpc-([0-9a-f]{8}|[0-9a-f]{17})$")
_SUBNET_ID = re.compile(r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$")
_REGION = re.compile(r"^[a-z]{2,4}(-[a-z]+)+-[0-9]$")
_INT_OR_PERCENT = re.compile(r"^(0|[1-9][0-9]*)%?$")
_OWNER = re.compile(r"^[A-Za-z0-9 _.:/=+@-]{1,128}$")

# Optional secrets: deliberately not declared in Pulumi.yaml (a declared secret without a
# default is mandatory), set with `pulumi config set --secret`.
PASSWORD_SETTINGS = ("mysqlRootPassword", "mysqlReplicationPassword", "mysqlBackupPassword", "mysqlVerifyPassword",
                     "mysqlExporterPassword")
# clusterMode=existing with backups: the access key of the user's bucket (aws builds its own).
BACKUP_KEY_SETTINGS = ("mysqlBackupAccessKeyId", "mysqlBackupSecretAccessKey")
SECRET_SETTINGS = (*PASSWORD_SETTINGS, *BACKUP_KEY_SETTINGS, "kubeconfig")
PROJECT_FILE = Path(__file__).resolve().parents[2] / "Pulumi.yaml"
# Provider packages whose default provider this program uses: their own config keys are valid.
PROVIDER_PACKAGES = {"aws": "pulumi_aws", "tls": "pulumi_tls", "random": "pulumi_random"}
# A default provider's inputs are its package's config, and the engine itself reads these from
# them (pulumi/pulumi pkg/resource/deploy/providers: GetProviderVersion, GetProviderDownloadURL).
ENGINE_PROVIDER_KEYS = frozenset({"version", "pluginDownloadURL"})
# The engine's own namespace (pulumi:disable-default-providers and the like).
ENGINE_NAMESPACE = "pulumi"
# Every Kubernetes resource names its provider (Pulumi.yaml disables the default one), so no
# kubernetes:* key is ever read; these are what was probably meant.
_KUBERNETES_INSTEAD = {"kubeconfig": "kubeconfig", "context": "kubeContext", "renderYamlToDirectory": "renderYamlTo"}
KUBECONFIG_MAX_BYTES = 1 << 20


class SettingsError(pulumi.RunError):
    """A config value that cannot be used; the message is the one line users see.

    A RunError, so that the Pulumi CLI prints it without a stack trace.
    """


T = TypeVar("T")


def _line(key: str, value: object, allowed: str) -> SettingsError:
    return SettingsError(f"config {shown(key)}={shown(value)}: {allowed}")


def _secret_line(key: str, allowed: str) -> SettingsError:
    return SettingsError(f"config {shown(key)}=[secret]: {allowed}")


# --------------------------------------------------------------------------
# Every key the program was given
# --------------------------------------------------------------------------


def config_keys() -> set[str]:
    """Every config key the engine handed the program, read or not.

    pulumi.Config only answers for keys it is asked about, so a typo would pass unseen. Under
    `pulumi up` the language host puts the whole config map, every stack-file key included, in
    PULUMI_CONFIG (pulumi/pulumi sdk/python/cmd/pulumi-language-python/main.go), and
    pulumi-language-python-exec loads it into pulumi.runtime.config.CONFIG with
    `set_all_config(get_config_env(), get_config_secret_keys_env())` before running the program
    (sdk/python/cmd/pulumi-language-python-exec). The mocks and the offline harness fill the
    same map with set_all_config. Both are read, so either path is seen.
    """
    return set(CONFIG.get()) | set(get_config_env())


@functools.cache
def declared_settings() -> frozenset[str]:
    """The project's settings: every key of Pulumi.yaml's config block, and the optional secrets."""
    data = yaml.load(PROJECT_FILE.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    names = {key.split(":", 1)[-1] for key in data["config"] if ":" not in key or key.startswith(f"{PROJECT}:")}
    return frozenset(names | set(SECRET_SETTINGS))


def _camel(snake: str) -> str:
    first, *rest = snake.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


@functools.cache
def provider_settings(namespace: str) -> frozenset[str]:
    """The config keys of a provider package, from its SDK: its ProviderArgs are generated from
    the same schema as its `<namespace>:<key>` stack configuration."""
    module = importlib.import_module(PROVIDER_PACKAGES[namespace])
    parameters = inspect.signature(module.ProviderArgs.__init__).parameters
    own = {_camel(name) for name in parameters if not name.startswith("_") and name != "self"}
    return frozenset(own | ENGINE_PROVIDER_KEYS)


def _unknown_key_problem(key: str) -> str | None:
    namespace, sep, name = key.partition(":")
    if not sep or not namespace or not name:
        return "is not a config key: expected <namespace>:<name>, e.g. atomic-mysql:minionCount"
    if namespace == PROJECT:
        if name in declared_settings():
            return None
        guess = rules.closest(name, declared_settings())
        hint = f"did you mean {guess}?" if guess else "the settings are listed in Pulumi.yaml and the README"
        return f"{PROJECT} has no setting {shown(name)}: {hint}"
    if namespace == ENGINE_NAMESPACE:
        return None
    if namespace == "kubernetes":
        instead = _KUBERNETES_INSTEAD.get(name)
        where = f"{PROJECT}:{instead}" if instead else f"{PROJECT}:kubeconfig, kubeContext or renderYamlTo"
        return ("is never read: every Kubernetes resource uses the program's own provider"
                f" (pulumi:disable-default-providers); use {where}")
    if namespace in PROVIDER_PACKAGES:
        if name == "region" and namespace == "aws":  # always valid; spares importing the SDK
            return None
        known = provider_settings(namespace)
        if name in known:
            return None
        guess = rules.closest(name, known)
        hint = f"did you mean {namespace}:{guess}?" if guess else f"its keys are: {', '.join(sorted(known)) or 'none'}"
        return f"the {namespace} provider has no setting {shown(name)}: {hint}"
    namespaces = (PROJECT, *PROVIDER_PACKAGES, ENGINE_NAMESPACE)
    guess = rules.closest(namespace, namespaces)
    if guess == PROJECT:
        setting = rules.closest(name, declared_settings()) or name
        hint = f"did you mean {PROJECT}:{setting}?"
    else:
        hint = f"did you mean {guess}:{name}?" if guess else f"it reads {', '.join(f'{n}:' for n in namespaces)}"
    return f"no part of this program reads namespace {shown(namespace)}: {hint}"


def _refuse_unknown_keys(keys: Iterable[str]) -> None:
    problems = [(key, problem) for key in sorted(keys) if (problem := _unknown_key_problem(key)) is not None]
    if not problems:
        return
    key, problem = problems[0]
    more = f" ({len(problems) - 1} more unknown keys)" if len(problems) > 1 else ""
    if is_config_secret(key):
        raise _secret_line(key, problem + more)
    raise _line(key, get_config(key), problem + more)


def _refuse_plaintext_secrets(stack: str) -> None:
    """A secret set without --secret sits in the stack file (and its history) in plain text."""
    for name in SECRET_SETTINGS:
        key = f"{PROJECT}:{name}"
        if get_config(key) is None or is_config_secret(key):
            continue
        command = f"pulumi config set --secret --stack {stack} {name}"
        how = f"`{command} < path/to/kubeconfig`" if name == "kubeconfig" else f"`{command}` (it prompts for the value)"
        raise _secret_line(key, f"is stored in plain text: encrypt it with {how}, and treat the old value as leaked")


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
        return _line(self.key(name), value, allowed)

    def raw(self, name: str) -> str:
        value = self._config.get(name)
        if value is None:
            raise SettingsError(
                f"config {self.key(name)} is missing: it must be declared with a default in Pulumi.yaml"
            )
        if value != value.strip():
            # A pasted line break or space would otherwise vanish here and reappear wherever the
            # raw value is used next; the value is refused as typed instead.
            raise self.fail(name, value, "must not begin or end with a space, tab or line break: give the value alone")
        return value

    def optional(self, name: str) -> str | None:
        """A string whose empty value means 'not set'."""
        value = self.raw(name).strip()
        return value or None

    def string(self, name: str, pattern: re.Pattern[str] | None = None, allowed: str = "") -> str:
        value = self.raw(name).strip()
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(name, value, allowed)
        return value

    def choice(self, name: str, options: tuple[T, ...]) -> T:
        value = self.raw(name).strip()
        for option in options:
            if str(option) == value:
                return option
        raise self.fail(name, value, "allowed values are " + ", ".join(str(o) for o in options))

    def boolean(self, name: str) -> bool:
        value = self.raw(name).strip()
        if value not in ("true", "false"):
            raise self.fail(name, value, "allowed values are true, false")
        return value == "true"

    def integer(self, name: str, low: int, high: int, *, odd: bool = False) -> int:
        value = self.raw(name).strip()
        if not re.fullmatch(r"-?[0-9]{1,9}", value) or not low <= int(value) <= high:
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

    def password(self, name: str) -> pulumi.Output[str] | None:
        """An optional password, checked on its plain value as soon as it is read, and kept secret.

        Under `pulumi up` the engine hands the program every secret decrypted (it is in the
        config map the program reads); only the Output built here carries it on, as a secret.
        """
        raw = get_config(self.key(name))
        if raw is None:
            return None
        if not str(raw).strip():
            raise _secret_line(self.key(name), f"must not be empty; unset it (pulumi config rm {name}) to generate one")
        problem = rules.password_problem(str(raw))
        if problem is not None:
            raise _secret_line(self.key(name), problem)
        return self._config.get_secret(name)

    def secret(self, name: str) -> pulumi.Output[str] | None:
        """A secret already checked by the caller, as the Output the engine keeps secret."""
        return self._config.get_secret(name)

    def kubeconfig(self, name: str) -> pulumi.Output[str] | None:
        raw = get_config(self.key(name))
        if raw is None:
            return None
        text = str(raw)
        if not text.strip() or "\0" in text or len(text.encode()) > KUBECONFIG_MAX_BYTES:
            raise _secret_line(self.key(name), "must be the text of a kubeconfig file (not empty, no NUL, at most"
                               " 1 MiB); unset it (pulumi config rm kubeconfig) to use the ambient one")
        return self._config.get_secret(name)


def _network(reader: _Reader, name: str, value: object) -> ipaddress.IPv4Network:
    try:
        return rules.cidr(value)
    except RuleError as error:
        raise reader.fail(name, value, str(error)) from None


def _cidr(reader: _Reader, name: str) -> ipaddress.IPv4Network:
    return _network(reader, name, reader.raw(name).strip())


def _aws_block(reader: _Reader, name: str) -> ipaddress.IPv4Network:
    """A VPC or subnet block: AWS takes /16 to /28, and the cluster's is private address space."""
    net = _cidr(reader, name)
    widest, narrowest = rules.AWS_BLOCK_PREFIXES
    if not widest <= net.prefixlen <= narrowest:
        raise reader.fail(name, str(net), f"AWS allows a block from /{widest} to /{narrowest}, e.g. 10.0.0.0/16")
    if not rules.is_private(net, shared=False):
        raise reader.fail(name, str(net), "must be private (RFC 1918) address space: inside 10.0.0.0/8,"
                          " 172.16.0.0/12 or 192.168.0.0/16")
    return net


def _virtual_range(reader: _Reader, name: str) -> ipaddress.IPv4Network:
    """The Service or pod range: addresses only the cluster routes, so never public ones (they
    would shadow real hosts) nor link-local ones (169.254.169.254 is the instance metadata)."""
    net = _cidr(reader, name)
    if not rules.is_private(net, shared=True):
        raise reader.fail(name, str(net), "must be private address space: inside 10.0.0.0/8, 172.16.0.0/12,"
                          " 192.168.0.0/16 or 100.64.0.0/10 (never public, link-local or multicast)")
    return net


def _sources(reader: _Reader, name: str, cidrs: tuple[str, ...], allow_world: bool) -> None:
    """CIDRs that become one inbound rule each: prefixes written out, no repeats (two rules with
    one name are one URN, which the engine refuses), none that cannot be a source."""
    seen: dict[ipaddress.IPv4Network, str] = {}
    for text in cidrs:
        network = _network(reader, name, text)
        if network in seen:
            raise reader.fail(name, text, "is listed twice: list each CIDR once (each one becomes a rule"
                              " named after it)")
        seen[network] = text
        problem = rules.source_problem(network)
        if problem is not None:
            raise reader.fail(name, text, problem)
        if network.prefixlen == 0 and not allow_world:
            raise reader.fail(name, text, "0.0.0.0/0 opens admin ports to the internet; set"
                              " allowWorldAdminAccess=true to mean it")



def _admin_exposure(reader: _Reader, cidrs: tuple[str, ...], allow_world: bool) -> None:
    """Measured by address space, not by prefix: no set of pieces may add up to the internet."""
    exposure = admin_exposure_problem(rules.cidr(c) for c in cidrs)
    if exposure is not None and not allow_world:
        raise reader.fail("adminCidrs", list(cidrs), f"{exposure}; list the networks admins connect from, or set"
                          " allowWorldAdminAccess=true to mean it")


def _bytes(reader: _Reader, name: str, minimum: str, maximum: str) -> str:
    value = reader.raw(name).strip()
    if (not rules.BYTES.fullmatch(value) or not quantity_value(minimum) <= quantity_value(value)
            <= quantity_value(maximum)):
        raise reader.fail(name, value, f"must be a Kubernetes quantity from {minimum} to {maximum}, e.g. 10Gi or 512Mi")
    return value


def _cpu(reader: _Reader, name: str) -> str:
    value = reader.raw(name).strip()
    if not rules.CPU.fullmatch(value) or not 0 < rules.cpu_millis(value) <= rules.cpu_millis(rules.CPU_MAX):
        raise reader.fail(name, value, f"must be a CPU quantity above zero and at most {rules.CPU_MAX}, e.g. 250m or 1")
    return value


def _resources(reader: _Reader, prefix: str, min_memory: str = "32Mi") -> Resources:
    resources = Resources(
        cpu_request=_cpu(reader, f"{prefix}CpuRequest"),
        memory_request=_bytes(reader, f"{prefix}MemoryRequest", min_memory, rules.MEMORY_MAX),
        cpu_limit=_cpu(reader, f"{prefix}CpuLimit"),
        memory_limit=_bytes(reader, f"{prefix}MemoryLimit", min_memory, rules.MEMORY_MAX),
    )
    if rules.cpu_millis(resources.cpu_limit) < rules.cpu_millis(resources.cpu_request):
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


def _image(reader: _Reader, name: str) -> str:
    value = reader.raw(name).strip()
    try:
        rules.image(value)
    except RuleError as error:
        raise reader.fail(name, value, str(error)) from None
    return value


def _product_image(reader: _Reader, name: str, default: str, what: str, engine: str, version: str) -> str:
    """An override of a pinned image: the same product as the pin, at the set's version."""
    value = reader.optional(name)
    if value is None:
        return default
    try:
        reference = rules.image(value)
    except RuleError as error:
        raise reader.fail(name, value, str(error)) from None
    product = rules.image(default).name
    problem = rules.product_problem(reference, product, version)
    if problem is not None:
        raise reader.fail(name, value, f"{what} for mysqlEngine={engine} mysqlVersion={version} {problem},"
                          f" e.g. {default}")
    return value


def _dns_label(reader: _Reader, name: str, max_length: int = 63) -> str:
    value = reader.raw(name).strip()
    if len(value) > max_length or not rules.DNS_LABEL.fullmatch(value):
        raise reader.fail(
            name,
            value,
            f"must be an RFC 1123 label: lowercase letters, digits and '-', at most {max_length} characters",
        )
    return value


def _int_or_percent(reader: _Reader, name: str) -> int | str:
    value = reader.raw(name).strip()
    if (not _INT_OR_PERCENT.fullmatch(value) or len(value) > 6
            or (value.endswith("%") and int(value[:-1]) > 100)):
        raise reader.fail(name, value, "must be a whole number or a percentage from 0% to 100%, e.g. 1 or 25%")
    return value if value.endswith("%") else int(value)


def _is_zero(value: int | str) -> bool:
    return value in (0, "0%")


# --------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------


def _mysql(reader: _Reader, protect: bool, backup: BackupSettings | None = None) -> MysqlSettings:
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
    storage_class = reader.optional("mysqlStorageClass")
    if storage_class is not None and (len(storage_class) > 253 or not rules.DNS_SUBDOMAIN.fullmatch(storage_class)):
        raise reader.fail("mysqlStorageClass", storage_class, "must be a StorageClass name (an RFC 1123 subdomain:"
                          " lowercase letters, digits, '-' and '.', at most 253 characters), or empty")
    return MysqlSettings(
        name=_dns_label(reader, "mysqlName", max_length=40),
        engine=engine,
        version=version,
        replicas=replicas,
        image=_product_image(reader, "mysqlImage", default_image, "the server image", engine, version),
        backup_image=_product_image(reader, "mysqlBackupImage", default_backup, "the clone/backup image",
                                    engine, version),
        storage_size=_bytes(reader, "mysqlStorageSize", "1Gi", rules.STORAGE_MAX),
        storage_class=storage_class,
        resources=_resources(reader, "mysql", min_memory="256Mi"),
        anti_affinity=reader.choice("mysqlAntiAffinity", ("soft", "hard")),
        pvc_when_deleted=reader.choice("mysqlPvcWhenDeleted", pvc_options),
        pvc_when_scaled=reader.choice("mysqlPvcWhenScaled", pvc_options),
        pdb_max_unavailable=_pdb_max_unavailable(reader, replicas),
        rollout_timeout=reader.integer("mysqlRolloutTimeout", 0, 7 * 24 * 3600) or None,
        protect=protect,
        clone=_clone(reader),
        apply_threads=reader.integer("mysqlReplicaApplyThreads", 1, 64),
        backup=backup,
        prometheus_operator=reader.boolean("prometheusOperator"),
    )


def _clone(reader: _Reader) -> CloneSettings:
    """The clone path's containers and threads; 0 threads = one per CPU of the container's limit."""
    # --prepare runs with --use-memory=128M (CLONE_PREPARE_MEMORY) plus the tool's own overhead.
    clone = _resources(reader, "mysqlClone", min_memory="256Mi")
    sidecar = _resources(reader, "mysqlSidecar", min_memory="128Mi")
    threads = reader.integer("mysqlCloneThreads", 0, 32)
    return CloneSettings(
        clone_resources=clone,
        sidecar_resources=sidecar,
        send_threads=threads or _cores(sidecar.cpu_limit),
        receive_threads=threads or _cores(clone.cpu_limit),
    )


def _cores(cpu: str) -> int:
    """Whole CPUs of a limit, rounded up: a 1500m container gets 2 threads, 250m gets 1."""
    return max(1, math.ceil(rules.cpu_millis(cpu) / 1000))


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


def _mysql_secrets(reader: _Reader, user_bucket: bool) -> MysqlSecrets:
    root, replication, backup, verify, exporter = (reader.password(name) for name in PASSWORD_SETTINGS)
    key_id, secret_key = _backup_keys(reader, user_bucket)
    return MysqlSecrets(root_password=root, replication_password=replication, backup_password=backup,
                        verify_password=verify, exporter_password=exporter, backup_access_key_id=key_id,
                        backup_secret_access_key=secret_key)


# AWS access key ids: AKIA (long-term) or ASIA (temporary), 16 more of A-Z2-7; S3-compatible stores
# (Ceph RGW, MinIO) choose their own, so only the shape of a token is asked there.
_AWS_KEY_ID = re.compile(r"^(AKIA|ASIA)[A-Z2-7]{16}$")
_KEY_TOKEN = re.compile(r"^[\x21-\x7e]{3,128}$")


def _backup_keys(reader: _Reader, user_bucket: bool) -> tuple[pulumi.Output[str] | None, pulumi.Output[str] | None]:
    """The access key of a user's bucket: both or neither, and only where the stack builds no bucket."""
    given = {name: get_config(reader.key(name)) for name in BACKUP_KEY_SETTINGS}
    for name, raw in given.items():
        if raw is None:
            if user_bucket:
                raise _secret_line(reader.key(name), "is required with mysqlBackupEnabled=true and mysqlBackupBucket"
                                   f" set: pulumi config set --secret {name} (the key the pods use for the bucket)")
            continue
        if not user_bucket:
            raise _secret_line(reader.key(name), "is used only with mysqlBackupEnabled=true in clusterMode=existing"
                               " (the aws cluster makes its own scoped key): pulumi config rm " + name)
        if not _KEY_TOKEN.fullmatch(str(raw)):
            raise _secret_line(reader.key(name), "must be 3-128 printable ASCII characters without spaces")
    key_id = str(given["mysqlBackupAccessKeyId"] or "")
    endpoint = reader.optional("mysqlBackupEndpoint")
    if user_bucket and endpoint is None and not _AWS_KEY_ID.fullmatch(key_id):
        raise _secret_line(reader.key("mysqlBackupAccessKeyId"), "must be an AWS access key id (AKIA or ASIA and 16"
                           " more of A-Z, 2-7) for AWS S3; set mysqlBackupEndpoint for an S3-compatible store")
    if not user_bucket:
        return None, None
    return reader.secret("mysqlBackupAccessKeyId"), reader.secret("mysqlBackupSecretAccessKey")


def _backup(reader: _Reader, mode: ClusterMode, stack: str) -> BackupSettings | None:
    """Backups, archiving and restore; None when mysqlBackupEnabled=false (then none of their
    settings may say otherwise)."""
    enabled = reader.boolean("mysqlBackupEnabled")
    restore_from = reader.optional("mysqlRestoreFrom")
    if restore_from is not None:
        problem = rules.restore_problem(restore_from)
        if problem is not None:
            raise reader.fail("mysqlRestoreFrom", restore_from, problem)
    if not enabled:
        for name in ("mysqlBackupBucket", "mysqlBackupEndpoint", "mysqlRestoreFrom", "mysqlRestorePrefix",
                     "mysqlRestoreBucket"):
            value = reader.optional(name)
            if value is not None:
                raise reader.fail(name, value, "needs mysqlBackupEnabled=true (backups, archive and restore share one"
                                  " bucket and key): set mysqlBackupEnabled=true, or this empty")
        return None
    schedule = reader.raw("mysqlBackupSchedule").strip()
    problem = rules.cron_problem(schedule)
    if problem is not None:
        raise reader.fail("mysqlBackupSchedule", schedule, problem)
    bucket = reader.optional("mysqlBackupBucket")
    endpoint = reader.optional("mysqlBackupEndpoint")
    if mode == "aws":
        for name, value in (("mysqlBackupBucket", bucket), ("mysqlBackupEndpoint", endpoint)):
            if value is not None:
                raise reader.fail(name, value, "is for clusterMode=existing: the aws cluster builds its own bucket"
                                  " (versioned, KMS-encrypted, TLS-only): set it empty")
    else:
        if bucket is None:
            raise reader.fail("mysqlBackupBucket", "", "is required with mysqlBackupEnabled=true in"
                              " clusterMode=existing: the name of an existing bucket")
        problem = rules.bucket_problem(bucket)
        if problem is not None:
            raise reader.fail("mysqlBackupBucket", bucket, problem)
        if endpoint is not None and (problem := rules.endpoint_problem(endpoint)) is not None:
            raise reader.fail("mysqlBackupEndpoint", endpoint, problem)
    region = reader.optional("mysqlBackupRegion")
    if region is not None and not _REGION.fullmatch(region):
        raise reader.fail("mysqlBackupRegion", region, "must be a region name such as us-east-1, or empty for"
                          " aws:region")
    if region is None:
        region = pulumi.Config("aws").get("region") or "us-east-1"
    prefixes = {}
    for name in ("mysqlBackupPrefix", "mysqlRestorePrefix"):
        value = reader.optional(name)
        if value is not None and (len(value) > 200 or not rules.KEY_PREFIX.fullmatch(value) or ".." in value):
            raise reader.fail(name, value, "must be a key prefix of up to 8 segments of letters, digits and ._-"
                              " separated by '/', without a leading or trailing '/' (e.g. prod/mysql), or empty")
        prefixes[name] = value
    restore_prefix = prefixes["mysqlRestorePrefix"]
    restore_bucket = reader.optional("mysqlRestoreBucket")
    for name, value in (("mysqlRestorePrefix", restore_prefix), ("mysqlRestoreBucket", restore_bucket)):
        if value is not None and restore_from is None:
            raise reader.fail(name, value, "is read only by a restore: set mysqlRestoreFrom too, or this empty")
    if restore_bucket is not None and (problem := rules.bucket_problem(restore_bucket)) is not None:
        raise reader.fail("mysqlRestoreBucket", restore_bucket, problem)
    return BackupSettings(
        schedule=schedule,
        retention_days=reader.integer("mysqlBackupRetentionDays", 1, 3650),
        max_age_hours=reader.integer("mysqlBackupMaxAgeHours", 1, 8760),
        archive_seconds=reader.integer("mysqlBinlogArchiveSeconds", 10, 3600),
        prefix=prefixes["mysqlBackupPrefix"] or f"{stack}/{reader.raw('mysqlName').strip()}",
        region=region,
        bucket=bucket,
        endpoint=endpoint,
        restore_from=restore_from,
        restore_prefix=restore_prefix,
        restore_bucket=restore_bucket,
    )


@functools.cache
def aws_regions() -> tuple[str, ...]:
    """The regions the pinned AWS provider knows (its SDK's Region enum): the provider itself
    refuses any other unless aws:skipRegionValidation is true."""
    from pulumi_aws import Region

    return tuple(region.value for region in Region)


def _region(aws: pulumi.Config) -> str:
    region = aws.get("region") or ""
    skip = (aws.get("skipRegionValidation") or "").lower() == "true"
    if _REGION.fullmatch(region) and (skip or region in aws_regions()):
        return region
    guess = rules.closest(region, aws_regions()) if _REGION.fullmatch(region) or len(region) < 30 else None
    hint = f"; did you mean {guess}?" if guess else ""
    raise _line("aws:region", region, f"must be an AWS region name, one of the {len(aws_regions())} the AWS provider"
                f" knows, e.g. us-east-1 (pulumi config set aws:region ...){hint}")


def _zone(reader: _Reader, region: str) -> str | None:
    zone = reader.optional("availabilityZone")
    # A zone of the region (us-east-1a) or a Local Zone of it (us-east-1-bos-1a).
    if zone is not None and not re.fullmatch(rf"{re.escape(region)}(-[a-z]+-[0-9]+)?[a-z]", zone):
        raise reader.fail("availabilityZone", zone, f"must be a zone of aws:region {region}, e.g. {region}a, or empty")
    return zone


def _admin_cidrs(reader: _Reader, allow_world: bool) -> tuple[str, ...]:
    cidrs = reader.string_list("adminCidrs")
    if not cidrs:
        # The Kubernetes provider reaches the new cluster's API on 6443 from where `pulumi up` runs.
        raise reader.fail(
            "adminCidrs", [], 'clusterMode=aws needs at least the CIDR `pulumi up` runs from, e.g. ["203.0.113.7/32"]'
        )
    _sources(reader, "adminCidrs", cidrs, allow_world)
    _admin_exposure(reader, cidrs, allow_world)
    return cidrs


def _admin_rules_fit(reader: _Reader, cidrs: tuple[str, ...]) -> None:
    """Each admin CIDR opens its ports on both node groups (components/aws/cluster.security_rules):
    the API on the masters, SSH on both with sshFromAdminCidrs, plus Cockpit, cAdvisor and NodePorts
    when enabled. AWS stops at SECURITY_GROUP_RULE_QUOTA inbound rules per group, mid-`up`."""
    ssh, cockpit, cadvisor = (reader.boolean(n) for n in ("sshFromAdminCidrs", "enableCockpit", "enableCadvisor"))
    nodeports = reader.boolean("enableNodePorts")
    per_cidr = max(1 + ssh + cockpit + cadvisor, ssh + cockpit + cadvisor + nodeports, 1)
    fixed = _FIXED_INGRESS_RULES + reader.boolean("instanceConnectEndpoint")
    most = (SECURITY_GROUP_RULE_QUOTA - fixed) // per_cidr
    if len(cidrs) > most:
        raise reader.fail("adminCidrs", list(cidrs), f"lists {len(cidrs)} CIDRs; with {per_cidr} rules each"
                          f" (sshFromAdminCidrs, enableCockpit, enableCadvisor, enableNodePorts) at most {most} fit"
                          f" AWS's {SECURITY_GROUP_RULE_QUOTA} inbound rules per security group: merge them into"
                          " wider blocks")


# Inbound rules a node group holds whatever the admin CIDRs (cluster.security_rules and each
# load balancer's targets rule), one more with the Instance Connect Endpoint (SSH from its group);
# tests/components/settings checks the bound on the real graph.
_FIXED_INGRESS_RULES = 5


def _cluster(reader: _Reader, region: str, protect: bool, tags: dict[str, str]) -> ClusterSettings:
    cluster_name = _dns_label(reader, "clusterName", max_length=24)
    vpc = _aws_block(reader, "vpcCidr")
    subnet = _aws_block(reader, "subnetCidr")
    if not subnet.subnet_of(vpc):
        raise reader.fail("subnetCidr", str(subnet), f"must lie inside vpcCidr {vpc}")
    master_count = reader.integer("masterCount", 1, 3, odd=True)
    minion_count = reader.integer("minionCount", 1, 500)
    service = _virtual_range(reader, "serviceCidr")
    widest, narrowest = rules.SERVICE_WIDEST_PREFIX, rules.SERVICE_NARROWEST_PREFIX
    if not widest <= service.prefixlen <= narrowest:
        raise reader.fail("serviceCidr", str(service), f"must be /{widest} (kube-apiserver's largest) to /{narrowest}"
                          " (room for the API Service's .1 and cluster DNS's .10)")
    pod = _virtual_range(reader, "podCidr")
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
    if existing_vpc and not _VPC_ID.fullmatch(existing_vpc):
        raise reader.fail("existingVpcId", existing_vpc, "must be a VPC id such as vpc-0123456789abcdef0, or empty")
    if existing_subnet and not _SUBNET_ID.fullmatch(existing_subnet):
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
    if ami and not _AMI.fullmatch(ami):
        raise reader.fail(
            "amiId", ami, "must be an AMI id such as ami-0123456789abcdef0, or empty to look up Fedora Cloud"
        )
    key_name = reader.optional("keyName")
    if key_name is not None and not rules.KEY_NAME.fullmatch(key_name):
        raise reader.fail("keyName", key_name, "must be an EC2 key pair name: 1-255 ASCII letters, digits and"
                          " ._+=@- (no spaces or quotes), or empty for no key pair")
    allow_world = reader.boolean("allowWorldAdminAccess")
    admin_cidrs = _admin_cidrs(reader, allow_world)
    _admin_rules_fit(reader, admin_cidrs)
    zone = _zone(reader, region)
    if zone and zones:
        raise reader.fail("availabilityZone", zone, "set availabilityZones or availabilityZone, not both "
                          f"(availabilityZones[0]={zone} says the same)")
    api_load_balancer = reader.boolean("apiLoadBalancer")
    if private_nodes and not api_load_balancer:
        raise reader.fail("privateNodes", "true",
                          "private nodes have no public address, so kubectl and `pulumi up` reach the API only "
                          "through its load balancer: set apiLoadBalancer=true, or privateNodes=false")
    return ClusterSettings(
        name=cluster_name,
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
        key_name=key_name,
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
        ready_timeout=reader.integer("clusterReadyTimeout", 60, 4 * 3600),
        cluster_id=cluster_id(pulumi.get_stack(), cluster_name),
        tags=tags,
        zones=zones,
        private_nodes=private_nodes,
        private_subnet_cidr=str(private_subnet) if private_subnet else None,
        nat_gateways=_nat_gateways(reader) if private_nodes else "perZone",
        instance_connect_endpoint=reader.boolean("instanceConnectEndpoint"),
        ssh_from_admin_cidrs=reader.boolean("sshFromAdminCidrs"),
        etcd_backup=_etcd_backup(reader),
        rolling_node=_rolling_node(),
    )


_NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _rolling_node() -> str | None:
    """The node roll-nodes replaces in this run, from its environment (not stack config: it holds for
    one targeted `pulumi up` only). AtomicCluster checks that the stack has such a node."""
    name = os.environ.get(ROLL_NODE_ENV, "").strip()
    if not name:
        return None
    if not _NODE_NAME.fullmatch(name):
        raise SettingsError(f"environment {ROLL_NODE_ENV}={shown(name)}: must be a node name such as "
                            "atomic-master-2 (set only by `make roll-nodes`)")
    return name


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
    private = _aws_block(reader, "privateSubnetCidr")
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
    if all(block.subnet_of(vpc) for block in blocks):
        return
    if zones == 1:
        raise reader.fail(name, str(first), f"must lie inside vpcCidr {vpc}")
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
        data_volume=_data_volume(reader),
        minions=minion_count,
    )


def _data_volume(reader: _Reader) -> DataVolumeSettings:
    """gp3's own ranges here; the ratios to mysqlStorageSize in _fits_the_cluster."""
    driver = EBS_CSI_DRIVER_IMAGE.rsplit(":", 1)[1]
    iops_low, iops_high = GP3_IOPS[0], min(GP3_IOPS[1], EBS_CSI_GP3_MAX_IOPS)
    iops = reader.raw("mysqlVolumeIops").strip()
    if not re.fullmatch(r"[0-9]+", iops) or not iops_low <= int(iops) <= iops_high:
        cap = "" if iops_high == GP3_IOPS[1] else \
            f"; gp3 takes up to {GP3_IOPS[1]}, the pinned EBS CSI driver {driver} requests at most {iops_high}"
        raise reader.fail("mysqlVolumeIops", iops, f"must be a whole number from {iops_low} to {iops_high}{cap}")
    low, high = GP3_THROUGHPUT_MIBS
    throughput = reader.raw("mysqlVolumeThroughput").strip()
    if not re.fullmatch(r"[0-9]+", throughput) or not low <= int(throughput) <= high:
        raise reader.fail("mysqlVolumeThroughput", throughput,
                          f"must be a whole number of MiB/s from {low} to {high} (gp3's range)")
    return DataVolumeSettings(storage_class=EBS_DATA_STORAGE_CLASS, iops=int(iops), throughput_mibs=int(throughput))


def _frontend_lb(reader: _Reader, admin_cidrs: tuple[str, ...]) -> FrontendLbSettings | None:
    if reader.raw("frontendServiceType").strip() != "LoadBalancer" or not reader.boolean("guestbookEnabled"):
        return None
    cidrs = reader.string_list("frontendSourceCidrs")
    _sources(reader, "frontendSourceCidrs", cidrs, allow_world=True)
    if len(cidrs) > SECURITY_GROUP_RULE_QUOTA:
        raise reader.fail("frontendSourceCidrs", list(cidrs), f"lists {len(cidrs)} CIDRs; the load balancer's group"
                          f" holds at most {SECURITY_GROUP_RULE_QUOTA} inbound rules: merge them into wider blocks")
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


def _only_for_existing(reader: _Reader) -> None:
    """The aws cluster brings its own kubeconfig and applies to itself: these would be ignored."""
    for name in ("kubeContext", "renderYamlTo"):
        value = reader.optional(name)
        if value is not None:
            raise reader.fail(name, value, "is used only with clusterMode=existing (clusterMode=aws deploys onto the"
                              " cluster it builds): set it empty, or clusterMode=existing")
    if get_config(reader.key("kubeconfig")) is not None:
        raise _secret_line(reader.key("kubeconfig"), "is used only with clusterMode=existing (clusterMode=aws uses the"
                           " kubeconfig of the cluster it builds): pulumi config rm kubeconfig")


def _existing(reader: _Reader) -> ExistingClusterSettings:
    context = reader.optional("kubeContext")
    if context is not None and (len(context) > 253 or not rules.printable_line(context)):
        raise reader.fail("kubeContext", context, "must be the name of a context in the kubeconfig: one line of at"
                          " most 253 printable characters, or empty for its current context")
    render_to = reader.optional("renderYamlTo")
    if render_to is not None and (len(render_to) > 200 or not rules.RELATIVE_PATH.fullmatch(render_to)):
        raise reader.fail("renderYamlTo", render_to, "must be a relative directory inside the project (letters,"
                          " digits, ._- and /, no '..'), e.g. rendered/local, or empty to apply")
    kubeconfig = reader.kubeconfig("kubeconfig")
    if render_to is not None:
        # renderYamlToDirectory writes files and never contacts a cluster.
        if context is not None:
            raise reader.fail("kubeContext", context, f"renderYamlTo={shown(render_to)} writes files and contacts no"
                              " cluster: set kubeContext empty, or renderYamlTo empty to apply")
        if kubeconfig is not None:
            raise _secret_line(reader.key("kubeconfig"), f"renderYamlTo={shown(render_to)} writes files and contacts"
                               " no cluster: pulumi config rm kubeconfig, or set renderYamlTo empty to apply")
    return ExistingClusterSettings(kubeconfig=kubeconfig, context=context, render_yaml_to=render_to)


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
    change_cause = reader.optional("changeCause")
    if change_cause is not None and (len(change_cause) > rules.ANNOTATION_MAX
                                     or not rules.printable_line(change_cause)):
        raise reader.fail("changeCause", change_cause, f"must be one line of at most {rules.ANNOTATION_MAX} printable"
                          " characters (it is an annotation; Kubernetes caps an object's at 256 KiB in all), or empty")
    return RolloutSettings(
        strategy=strategy,
        max_surge=max_surge,
        max_unavailable=max_unavailable,
        min_ready_seconds=min_ready,
        progress_deadline_seconds=deadline,
        revision_history_limit=reader.integer("revisionHistoryLimit", 0, 100),
        change_cause=change_cause,
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
    low, high = rules.BANDWIDTH_BOUNDS
    if value is not None and (not rules.BANDWIDTH.fullmatch(value) or not low <= rules.bandwidth_bits(value) <= high):
        raise reader.fail(name, value, "must be a rate from 1k to 1000000G bits per second (the kubelet's bounds),"
                          " e.g. 10M or 1G, or empty")
    return value


def _guestbook(reader: _Reader) -> GuestbookSettings:
    service_types: tuple[ServiceType, ...] = ("ClusterIP", "NodePort", "LoadBalancer")
    replicas = reader.integer("frontendReplicas", 1, 100)
    autoscaler = _autoscaler(reader)
    if autoscaler is not None and replicas > autoscaler.max_replicas:
        raise reader.fail("frontendReplicas", replicas, f"exceeds frontendHpaMax={autoscaler.max_replicas} with"
                          " frontendHpaEnabled=true (the HPA would scale it down at once): at most frontendHpaMax")
    return GuestbookSettings(
        enabled=reader.boolean("guestbookEnabled"),
        frontend_image=_image(reader, "frontendImage"),
        frontend_replicas=replicas,
        frontend_service_type=reader.choice("frontendServiceType", service_types),
        redis_primary_image=_image(reader, "redisPrimaryImage"),
        redis_replica_image=_image(reader, "redisReplicaImage"),
        # The frontend reads through redis-follower: with no follower, every read fails.
        redis_replicas=reader.integer("redisReplicas", 1, 20),
        frontend_resources=_resources(reader, "frontend"),
        redis_resources=_resources(reader, "redis"),
        rollout=_rollout(reader),
        autoscaler=autoscaler,
        ingress_bandwidth=_bandwidth(reader, "ingressBandwidth"),
        egress_bandwidth=_bandwidth(reader, "egressBandwidth"),
    )


def _tags(reader: _Reader, stack: str) -> dict[str, str]:
    owner = reader.string("owner", _OWNER, "must be 1-128 characters of letters, digits, spaces and _.:/=+@-")
    return base_tags(stack, owner)


def load_settings() -> StackSettings:
    """Read and check every setting of the current stack; raise SettingsError on the first bad one."""
    stack = pulumi.get_stack()
    _refuse_unknown_keys(config_keys())
    _refuse_plaintext_secrets(stack)
    reader = _Reader(pulumi.Config(PROJECT))
    mode: ClusterMode = reader.choice("clusterMode", ("aws", "existing"))
    protect = reader.boolean("protectStateful")
    namespace = _dns_label(reader, "namespace")
    if namespace == "default" or namespace.startswith("kube-"):
        raise reader.fail("namespace", namespace, "the workload gets its own namespace: not 'default' or 'kube-*'")
    tags = _tags(reader, stack)
    if mode == "aws":
        _only_for_existing(reader)
    existing = _existing(reader) if mode == "existing" else None
    cluster = _cluster(reader, _region(pulumi.Config("aws")), protect, tags) if mode == "aws" else None
    mysql = _mysql(reader, protect, _backup(reader, mode, stack))
    mysql_secrets = _mysql_secrets(reader, mysql.backup is not None and mysql.backup.bucket is not None)
    guestbook = _guestbook(reader)
    _names_are_distinct(reader, mysql, guestbook)
    if cluster is not None:
        _fits_the_cluster(reader, cluster, mysql, guestbook)
    deployed = _deployed_record(stack)
    record = _against_the_record(reader, namespace, mysql, cluster, deployed)
    return StackSettings(
        project=PROJECT,
        stack=stack,
        cluster_mode=mode,
        namespace=namespace,
        protect=protect,
        cluster=cluster,
        existing=existing,
        mysql=mysql,
        mysql_secrets=mysql_secrets,
        guestbook=guestbook,
        tags=tags,
        mysql_record=record,
        mysql_deployed=deployed,
    )


def _data_volume_fits(reader: _Reader, volume: DataVolumeSettings, storage_size: str) -> None:
    """gp3's ratios, for the size the EBS CSI driver creates (the claim rounded up to whole GiB)."""
    size_gib = math.ceil(quantity_value(storage_size) / 2**30)
    problem = gp3_problem(size_gib, volume.iops, volume.throughput_mibs)
    if problem is None:
        return
    blame, allowed = problem
    name, value = {"size": ("mysqlStorageSize", storage_size), "iops": ("mysqlVolumeIops", volume.iops),
                   "throughput": ("mysqlVolumeThroughput", volume.throughput_mibs)}[blame]
    if blame == "iops":
        allowed += f" (mysqlStorageSize={storage_size})"
    raise reader.fail(name, value, allowed)
def _names_are_distinct(reader: _Reader, mysql: MysqlSettings, guestbook: GuestbookSettings) -> None:
    """The set's objects, the Guestbook's and the namespace's own share the namespace: one name, one object."""
    for suffix in MYSQL_OBJECT_SUFFIXES:
        if f"{mysql.name}{suffix}" in NAMESPACE_OBJECT_NAMES:
            raise reader.fail("mysqlName", mysql.name, f"{mysql.name}{suffix} is the name of one of the namespace's "
                              f"own NetworkPolicies: choose a name giving none of {', '.join(NAMESPACE_OBJECT_NAMES)}")
    if not guestbook.enabled:
        return
    for suffix in MYSQL_OBJECT_SUFFIXES:
        if f"{mysql.name}{suffix}" in GUESTBOOK_OBJECT_NAMES:
            raise reader.fail("mysqlName", mysql.name, f"{mysql.name}{suffix} is already a Guestbook object's name"
                              f" with guestbookEnabled=true: choose a name giving none of"
                              f" {', '.join(GUESTBOOK_OBJECT_NAMES)}")


def _fits_the_cluster(reader: _Reader, cluster: ClusterSettings, mysql: MysqlSettings,
                      guestbook: GuestbookSettings) -> None:
    """What the workload asks of the aws cluster must be something its add-ons provide."""
    offered = cluster.addons.data_volume.storage_class
    if mysql.storage_class not in (None, offered):
        raise reader.fail("mysqlStorageClass", mysql.storage_class,
                          f"clusterMode=aws gives the MySQL data volumes their own class: {offered} (or empty for it)")
    _data_volume_fits(reader, cluster.addons.data_volume, mysql.storage_size)
    if guestbook.enabled and guestbook.autoscaler is not None and not cluster.addons.metrics_server:
        raise reader.fail("enableMetricsServer", "false",
                          "frontendHpaEnabled=true needs metrics-server on the aws cluster: allowed value true")
    if mysql.anti_affinity == "hard" and mysql.replicas > cluster.minion_count:
        # Required anti-affinity puts each pod on its own node: the rest would stay Pending.
        raise reader.fail("mysqlAntiAffinity", "hard", f"with mysqlReplicas={mysql.replicas} needs as many minions,"
                          f" but minionCount={cluster.minion_count}: raise minionCount, lower mysqlReplicas, or soft")


# --------------------------------------------------------------------------
# What the set's volumes already hold
# --------------------------------------------------------------------------


def _deployed_record(stack: str) -> MysqlRecord | None:
    """The record the last run of this stack exported (None: there is none).

    Read with the engine's own StackReference function, synchronously, before anything is registered:
    it answers with the outputs of the stack's last update (pulumi/pulumi pkg/resource/deploy/builtins.go,
    readStackReference -> the backend's GetStackOutputs), so `preview` and `up` both see the state the
    cluster was left in, not what this run is about to ask for. Stack outputs rather than an annotation
    on the StatefulSet: reading an object of the cluster needs the cluster (a new stack has none yet,
    and Kubernetes resource reads are not synchronous), while the stack's own outputs exist wherever
    the program runs. A record that cannot be read is reported and the run goes on without it: the
    pods still refuse a data dir they cannot open (scripts/datadir-guard.sh) and the API server a
    claim that would shrink.
    """
    name = f"{pulumi.get_organization()}/{PROJECT}/{stack}"
    try:
        answer = pulumi.runtime.invoke(tokens.READ_STACK_OUTPUTS, {"name": name}).value or {}
    except Exception as error:  # any failure of the read means: no record to compare with
        pulumi.log.warn(f"could not read the stack's previous outputs ({error}); {MYSQL_RECORD_OUTPUT} "
                        "is not compared this run")
        return None
    value = (answer.get("outputs") or {}).get(MYSQL_RECORD_OUTPUT)
    if not isinstance(value, dict):
        return None
    fields = ("namespace", "name", "engine", "version", "storageSize", "storageClass")
    if not all(isinstance(value.get(key), str) for key in fields):
        raise SettingsError(f"stack output {MYSQL_RECORD_OUTPUT} is not what this program exports "
                            f"({', '.join(fields)}): {shown(json.dumps(value, sort_keys=True))}")
    return MysqlRecord(namespace=value["namespace"], name=value["name"], engine=value["engine"],
                       version=value["version"], storage_size=value["storageSize"],
                       storage_class=value["storageClass"])


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _against_the_record(reader: _Reader, namespace: str, mysql: MysqlSettings, cluster: ClusterSettings | None,
                        deployed: MysqlRecord | None) -> MysqlRecord:
    """Refuse what the volumes already in place cannot take; return the record this run leaves.

    The StatefulSet's volumeClaimTemplates are immutable (a change would replace the set), so the
    program keeps them as they were created (workload/mysql/set.py) and grows the claims themselves:
    the class stays the one the claims were made in, the size only grows.
    """
    # The class the claims get: the aws cluster's own class for them (empty means it there), else the
    # setting ("" = the cluster's default class).
    storage_class = cluster.addons.data_volume.storage_class if cluster is not None else (mysql.storage_class or "")
    record = MysqlRecord(namespace=namespace, name=mysql.name, engine=mysql.engine, version=mysql.version,
                         storage_size=mysql.storage_size, storage_class=storage_class)
    if deployed is None:
        return record
    where = f"stack output {MYSQL_RECORD_OUTPUT}"
    # A Namespace's or a StatefulSet's name is immutable: a new one replaces it, and deleting the old
    # namespace deletes every claim in it (so does the old set, with mysqlPvcWhenDeleted=Delete).
    if namespace != deployed.namespace:
        raise reader.fail("namespace", namespace,
                          f"the set's claims are in namespace {deployed.namespace} ({where}); a new namespace replaces"
                          f" the old one, which deletes them: allowed value {deployed.namespace}")
    if mysql.name != deployed.name:
        raise reader.fail("mysqlName", mysql.name,
                          f"the set's claims are data-{deployed.name}-N ({where}); a new name starts an empty set and"
                          f" replaces the old one: allowed value {deployed.name}")
    if mysql.engine != deployed.engine:
        raise reader.fail("mysqlEngine", mysql.engine,
                          f"the set's data dirs were made by {deployed.engine} ({where}), which {mysql.engine} cannot"
                          f" open: allowed value {deployed.engine} (another engine needs a new set and a dump)")
    if deployed.version in ENGINE_VERSIONS[mysql.engine] and _version_key(mysql.version) < _version_key(
            deployed.version):
        newer = [v for v in ENGINE_VERSIONS[mysql.engine] if _version_key(v) >= _version_key(deployed.version)]
        raise reader.fail("mysqlVersion", mysql.version,
                          f"the set's data dirs were last opened by {mysql.engine} {deployed.version} ({where}) and a"
                          f" server never opens a newer data dir: allowed values {', '.join(sorted(newer))}")
    if quantity_value(mysql.storage_size) < quantity_value(deployed.storage_size):
        raise reader.fail("mysqlStorageSize", mysql.storage_size,
                          f"the set's claims hold {deployed.storage_size} ({where}) and a volume never shrinks:"
                          f" allowed {deployed.storage_size} or more")
    if storage_class and deployed.storage_class and storage_class != deployed.storage_class:
        raise reader.fail("mysqlStorageClass", storage_class,
                          f"the set's claims were made in class {deployed.storage_class} ({where}) and a claim's"
                          f" class never changes: allowed {deployed.storage_class}, or empty")
    # An empty class and a name (the default class's, presumably: the claims keep theirs either way, and
    # the template is never changed) are the same claims: the record keeps the class they were made
    # with. A larger size is what the claims hold after this run (set.py patches them).
    return replace(record, storage_class=deployed.storage_class)
