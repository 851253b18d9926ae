"""The policy pack: every policy has a passing and a violating case, and every stack's plan passes them all.

Cases are taken from the offline preview's plan.json (the engine's camelCase input shape the
pack receives) and changed in one place to violate. The pack itself is then served by
pulumi-policy (in its own venv, .tools/policy: it pins protobuf 5) and asked over gRPC, as the
engine would during `pulumi preview --policy-pack policy`.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import py_compile
import select
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from components import tokens
from components.node.cloud_init import compress_user_data, decompress_user_data
from policy import validators
from policy.validators import Options
from tests.conftest import PROJECT_DIR, STACKS
from tools import preview
from tools.harness.mocks import SECRET_SIG, SPECIAL_SIG_KEY
from tools.scan import ensure_venv
from tools.testing.processes import die_with_parent

AWS_STACKS = [s for s in STACKS if s != "local"]
POLICY_DIR = PROJECT_DIR / "policy"
POLICY_VENV = PROJECT_DIR / ".tools" / "policy"
MANDATORY = analyzer_pb2.EnforcementLevel.Value("MANDATORY")
Entry = dict[str, Any]


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("plans")
    for stack in STACKS:
        preview.preview(stack, out_root=out, quiet=True)
    return {stack: json.loads((out / stack / "plan.json").read_text()) for stack in STACKS}


def entries(plan: dict[str, Any], type_token: str, where: Callable[[Entry], bool] = lambda e: True) -> list[Entry]:
    found = [e for e in plan["resources"] if e["type"] == type_token and where(e)]
    assert found, f"the {plan['stack']} plan has no {type_token} to test with"
    return found


def one(plan: dict[str, Any], type_token: str, where: Callable[[Entry], bool] = lambda e: True) -> Entry:
    return copy.deepcopy(entries(plan, type_token, where)[0])


def check(policy: str, entry: Entry, stack: str = "dev", protect: bool | None = None) -> list[str]:
    checker = next(p.check for p in validators.POLICIES if p.name == policy)
    opts = Options(protect=entry["options"]["protect"] if protect is None else protect, name=entry["name"])
    return checker(entry["type"], entry["inputs"], stack, opts)


def role(value: str) -> Callable[[Entry], bool]:
    return lambda e: (e["inputs"].get("tags") or {}).get("Role") == value


def kind(value: str) -> Callable[[Entry], bool]:
    return lambda e: e["inputs"].get("kind") == value


def admin(e: Entry) -> bool:
    """The API's rule from the admin CIDR (SSH is open to no CIDR: it comes through the connect endpoint)."""
    return e["inputs"].get("fromPort") == 6443 and bool(e["inputs"].get("cidrIpv4"))


# --------------------------------------------------------------------------
# Every stack passes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_passes_every_mandatory_policy(plans: dict[str, dict[str, Any]], stack: str) -> None:
    plan = plans[stack]
    assert validators.plan_violations(plan["resources"], stack) == {}
    # Not vacuous: the plan holds what the policies look at.
    types = {e["type"] for e in plan["resources"]}
    assert {tokens.STATEFUL_SET, tokens.DEPLOYMENT, tokens.CONFIG_MAP} <= types
    if stack in AWS_STACKS:
        assert {validators.INSTANCE, validators.SECURITY_GROUP, validators.INGRESS_RULE} <= types


def test_prod_protects_every_stateful_resource(plans: dict[str, dict[str, Any]]) -> None:
    stateful = [e for e in plans["prod"]["resources"] if validators.is_stateful(e["type"], e["inputs"], e["name"])]
    kinds = {e["type"] for e in stateful}
    assert {tokens.STATEFUL_SET, tokens.VPC, validators.INSTANCE} <= kinds
    assert all(e["options"]["protect"] for e in stateful)


# --------------------------------------------------------------------------
# One passing and one violating case per policy
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "violates"),
    [
        ({}, False),
        ({"cidrIpv4": "0.0.0.0/0"}, True),
        ({"cidrIpv4": None, "cidrIpv6": "::/0"}, True),
        ({"cidrIpv4": "0.0.0.0/0", "fromPort": 2000, "toPort": 2400}, True),  # a range covering etcd
        ({"cidrIpv4": "0.0.0.0/0", "ipProtocol": "-1", "fromPort": None, "toPort": None}, True),
        ({"cidrIpv4": "0.0.0.0/0", "fromPort": 443, "toPort": 443}, False),  # HTTPS is not an admin port
        ({"cidrIpv4": "0.0.0.0/0", "ipProtocol": "udp"}, False),  # none of the admin services is UDP
    ],
)
def test_no_world_admin_ingress(plans: dict[str, dict[str, Any]], change: dict[str, Any], violates: bool) -> None:
    rule = one(plans["dev"], validators.INGRESS_RULE, admin)
    rule["inputs"].update({k: v for k, v in change.items() if v is not None})
    for key in [k for k, v in change.items() if v is None]:
        rule["inputs"].pop(key, None)
    assert bool(check("no-world-admin-ingress", rule)) is violates


def test_no_world_admin_ingress_in_inline_and_classic_rules() -> None:
    inline = {"description": "x", "ingress": [{"protocol": "tcp", "fromPort": 3306, "toPort": 3306,
                                                "cidrBlocks": ["10.0.0.0/8", "0.0.0.0/0"], "description": "db"}]}
    classic = {"type": "ingress", "protocol": "tcp", "fromPort": 10250, "toPort": 10250, "cidrBlocks": ["0.0.0.0/0"]}
    checker = validators.check_no_world_admin_ingress
    assert checker(validators.SECURITY_GROUP, inline, "dev", Options())
    assert checker(validators.SECURITY_GROUP_RULE, classic, "dev", Options())
    assert not checker(validators.SECURITY_GROUP_RULE, {**classic, "type": "egress"}, "dev", Options())


@pytest.mark.parametrize(
    ("change", "violates"),
    [({}, False), ({"httpTokens": "optional"}, True), (None, True)],
)
def test_imdsv2_required(plans: dict[str, dict[str, Any]], change: dict[str, Any] | None, violates: bool) -> None:
    instance = one(plans["dev"], validators.INSTANCE)
    if change is None:
        del instance["inputs"]["metadataOptions"]
    else:
        instance["inputs"]["metadataOptions"].update(change)
    assert bool(check("imdsv2-required", instance)) is violates


@pytest.mark.parametrize(
    ("change", "violates"),
    [
        ({}, False),
        ({"rootBlockDevice": {"volumeSize": 30}}, True),
        ({"rootBlockDevice": {"volumeSize": 30, "encrypted": False}}, True),
        ({"ebsBlockDevices": [{"deviceName": "/dev/sdf", "encrypted": False}]}, True),
        ({"ebsBlockDevices": [{"deviceName": "/dev/sdf", "encrypted": True}]}, False),
    ],
)
def test_encrypted_volumes(plans: dict[str, dict[str, Any]], change: dict[str, Any], violates: bool) -> None:
    instance = one(plans["dev"], validators.INSTANCE)
    instance["inputs"].update(change)
    assert bool(check("encrypted-volumes", instance)) is violates


@pytest.mark.parametrize(("description", "violates"), [(None, False), ("", True), ("   ", True)])
def test_every_rule_described(plans: dict[str, dict[str, Any]], description: str | None, violates: bool) -> None:
    for type_token in (validators.INGRESS_RULE, validators.EGRESS_RULE):
        rule = one(plans["dev"], type_token)
        if description is not None:
            rule["inputs"]["description"] = description
        assert bool(check("security-group-rules-described", rule)) is violates


@pytest.mark.parametrize(("description", "violates"), [(None, False), ("Managed by Pulumi", True), ("", True)])
def test_every_group_described(plans: dict[str, dict[str, Any]], description: str | None, violates: bool) -> None:
    group = one(plans["dev"], validators.SECURITY_GROUP)
    if description is not None:
        group["inputs"]["description"] = description
    assert bool(check("security-group-rules-described", group)) is violates


def _containers(entry: Entry) -> list[dict[str, Any]]:
    spec = validators.pod_spec(entry["type"], entry["inputs"])
    assert spec is not None
    containers: list[dict[str, Any]] = spec["containers"]
    return containers


@pytest.mark.parametrize(
    ("mutate", "violates"),
    [
        (lambda c: None, False),
        (lambda c: c["resources"].pop("limits"), True),
        (lambda c: c["resources"]["requests"].pop("memory"), True),
        (lambda c: c.pop("readinessProbe"), True),
        (lambda c: c.pop("livenessProbe"), True),
        (lambda c: c.update(image="mysql:latest"), True),
        (lambda c: c.update(image="registry.example.com:5000/mysql"), True),  # a port is not a tag
        (lambda c: c.update(image="mysql@sha256:" + "0" * 64), False),
    ],
)
@pytest.mark.parametrize("workload", ["StatefulSet", "Deployment"])
def test_containers_hardened(
    plans: dict[str, dict[str, Any]], workload: str, mutate: Callable[[dict[str, Any]], Any], violates: bool
) -> None:
    entry = one(plans["dev"], f"kubernetes:apps/v1:{workload}")
    mutate(_containers(entry)[0])
    assert bool(check("containers-hardened", entry)) is violates


def test_init_containers_need_resources_and_pinned_images_but_no_probes(plans: dict[str, dict[str, Any]]) -> None:
    entry = one(plans["dev"], tokens.STATEFUL_SET)
    spec = validators.pod_spec(entry["type"], entry["inputs"])
    assert spec is not None and spec.get("initContainers"), "the MySQL set clones data in init containers"
    assert not check("containers-hardened", entry)
    spec["initContainers"][0]["image"] = "busybox"
    assert check("containers-hardened", entry) == [
        f"initContainers {spec['initContainers'][0]['name']!r}: image 'busybox' has no tag (it means latest)"
    ]


def test_jobs_need_no_probes() -> None:
    resources: dict[str, Any] = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    container = {"name": "backup", "image": "mysql:8.4.6", "resources": resources}
    job = {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [container]}}}}}}
    assert validators.check_containers(tokens.CRON_JOB, job, "dev", Options()) == []
    del resources["limits"]
    assert validators.check_containers(tokens.CRON_JOB, job, "dev", Options())


SECRET_VIOLATIONS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("literal env", lambda c: c.setdefault("env", []).append({"name": "MYSQL_ROOT_PASSWORD", "value": "hunter2"})),
    ("secret in env", lambda c: c.setdefault("env", []).append({"name": "ANYTHING", "value": "[secret]"})),
    ("client -p", lambda c: c.update(command=["sh", "-c", "mysql -uroot -phunter2 -e 'SELECT 1'"])),
    ("--password=", lambda c: c.update(args=["--password=hunter2"])),
]


@pytest.mark.parametrize(("what", "mutate"), SECRET_VIOLATIONS, ids=[w for w, _ in SECRET_VIOLATIONS])
def test_mysql_secrets_never_in_pod_specs(
    plans: dict[str, dict[str, Any]], what: str, mutate: Callable[[dict[str, Any]], Any]
) -> None:
    entry = one(plans["dev"], tokens.STATEFUL_SET)
    assert check("secrets-not-in-plain-inputs", entry) == []
    mutate(_containers(entry)[0])
    found = check("secrets-not-in-plain-inputs", entry)
    assert found
    assert not any("hunter2" in message for message in found), "a report must never repeat the secret"


def test_mysql_secrets_by_reference_pass(plans: dict[str, dict[str, Any]]) -> None:
    entry = one(plans["dev"], tokens.STATEFUL_SET)
    container = _containers(entry)[0]
    container.setdefault("env", []).append(
        {"name": "MYSQL_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "mysql-credentials", "key": "root"}}}
    )
    container["command"] = ["sh", "-c", 'mysql -uroot -p"$MYSQL_ROOT_PASSWORD" -e "SELECT 1"']
    container["env"].append({"name": "MYSQL_ROOT_PASSWORD_FILE", "value": "/run/secrets/root"})
    assert check("secrets-not-in-plain-inputs", entry) == []


@pytest.mark.parametrize(
    ("data", "violates"),
    [
        ({}, False),
        ({"client.cnf": "[client]\nuser=root\npassword=hunter2\n"}, True),
        ({"client.cnf": "[client]\nuser=root\npassword=\"$MYSQL_PWD\"\n"}, False),
        ({"root-password": "whatever"}, True),
        ({"init.sql": "[secret]"}, True),
    ],
)
def test_mysql_secrets_never_in_config_maps(
    plans: dict[str, dict[str, Any]], data: dict[str, str], violates: bool
) -> None:
    entry = one(plans["dev"], tokens.CONFIG_MAP)
    entry["inputs"]["data"].update(data)
    found = check("secrets-not-in-plain-inputs", entry)
    assert bool(found) is violates
    assert not any("hunter2" in message for message in found)


def test_node_secrets_only_in_secure_strings(plans: dict[str, dict[str, Any]]) -> None:
    parameter = one(plans["dev"], validators.SSM_PARAMETER, lambda e: e["inputs"]["name"].endswith(".key"))
    assert check("secrets-not-in-plain-inputs", parameter) == []
    parameter["inputs"]["type"] = "String"
    assert check("secrets-not-in-plain-inputs", parameter)
    instance = one(plans["dev"], validators.INSTANCE)
    assert check("secrets-not-in-plain-inputs", instance) == []
    text = decompress_user_data(instance["inputs"]["userDataBase64"])
    leaked = text + "\nwrite_files:\n- content: |\n    -----BEGIN RSA PRIVATE KEY-----\n"
    instance["inputs"]["userDataBase64"] = base64.b64encode(compress_user_data(leaked)).decode()
    assert check("secrets-not-in-plain-inputs", instance)


@pytest.mark.parametrize(
    ("stack", "protect", "violates"),
    [("prod", True, False), ("prod", False, True), ("prod-eu", False, True), ("dev", False, False)],
)
@pytest.mark.parametrize(
    ("type_token", "where"),
    [
        (tokens.STATEFUL_SET, lambda e: True),
        (tokens.NAMESPACE, lambda e: True),  # its deletion deletes the claims in it
        (validators.INSTANCE, role("master")),
        (tokens.VPC, lambda e: True),
        (tokens.RANDOM_PASSWORD, lambda e: True),
    ],
)
def test_stateful_resources_protected_in_prod(
    plans: dict[str, dict[str, Any]],
    type_token: str,
    where: Callable[[Entry], bool],
    stack: str,
    protect: bool,
    violates: bool,
) -> None:
    entry = one(plans["prod"], type_token, where)
    assert bool(check("prod-stateful-protected", entry, stack=stack, protect=protect)) is violates


def test_minions_need_no_protection(plans: dict[str, dict[str, Any]]) -> None:
    minion = one(plans["prod"], validators.INSTANCE, role("minion"))
    assert minion["options"]["protect"] is False
    assert check("prod-stateful-protected", minion, stack="prod") == []


def test_stack_comes_from_the_urn() -> None:
    assert validators.stack_of("urn:pulumi:prod-eu::atomic-mysql::aws:ec2/vpc:Vpc::atomic-vpc") == "prod-eu"


# --------------------------------------------------------------------------
# The pack, served by pulumi-policy and asked over gRPC as the engine does
# --------------------------------------------------------------------------


def test_pack_entry_point_compiles() -> None:
    py_compile.compile(str(POLICY_DIR / "__main__.py"), doraise=True)


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    python = ensure_venv(POLICY_VENV, POLICY_DIR / "requirements.txt", "python")
    # Started from another directory, as the CLI does: the pack must find validators.py on its own.
    # SIGTERM from the kernel if pytest dies without reaching the finalizer.
    process = subprocess.Popen([str(python), str(POLICY_DIR / "__main__.py")], stdout=subprocess.PIPE, cwd="/",
                               preexec_fn=die_with_parent)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(_stop, process)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the policy pack printed no port within 60 s"
        port = int(process.stdout.readline())
        channel = cleanup.enter_context(grpc.insecure_channel(f"127.0.0.1:{port}"))
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    try:
        process.wait(timeout=10)
    finally:
        if process.stdout is not None:
            process.stdout.close()


def _engine_value(value: Any) -> Any:
    """The offline "[secret]" marker as the engine sends a secret: a signed object around the value."""
    if value == "[secret]":
        return {SPECIAL_SIG_KEY: SECRET_SIG, "value": "[secret]"}
    if isinstance(value, dict):
        return {k: _engine_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_engine_value(v) for v in value]
    return value


def analyze(stub: analyzer_pb2_grpc.AnalyzerStub, entry: Entry) -> list[tuple[str, str]]:
    properties = struct_pb2.Struct()
    json_format.ParseDict(_engine_value(entry["inputs"]), properties)
    request = analyzer_pb2.AnalyzeRequest(
        type=entry["type"],
        properties=properties,
        urn=entry["urn"],
        name=entry["name"],
        options=analyzer_pb2.AnalyzerResourceOptions(protect=entry["options"]["protect"]),
    )
    response = stub.Analyze(request, timeout=30)
    return [(d.policyName, d.message) for d in response.diagnostics]


@pytest.mark.real
def test_pack_serves_every_policy_as_mandatory(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "atomic-mysql"
    served = [(p.name, p.enforcementLevel) for p in info.policies]
    names = [p.name for p in validators.POLICIES] + [p.name for p in validators.STACK_POLICIES] + ["bucket-companions"]
    assert served == [(name, MANDATORY) for name in names]


def analyze_stack(stub: analyzer_pb2_grpc.AnalyzerStub, entries: list[Entry]) -> list[tuple[str, str]]:
    resources = []
    for entry in entries:
        properties = struct_pb2.Struct()
        json_format.ParseDict(_engine_value(entry["inputs"]), properties)
        resources.append(analyzer_pb2.AnalyzerResource(type=entry["type"], properties=properties, urn=entry["urn"],
                                                       name=entry["name"]))
    response = stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources), timeout=60)
    return [(d.policyName, d.message) for d in response.diagnostics]


def _split_world(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan with its admin rules' sources replaced by 0.0.0.0/1 and 128.0.0.0/1 (no /0 anywhere)."""
    changed = copy.deepcopy(plan)
    admin = [e for e in changed["resources"] if e["type"] == validators.INGRESS_RULE
             and e["name"].startswith("cluster-control-plane-admin-api-")]
    admin[0]["inputs"]["cidrIpv4"] = "0.0.0.0/1"
    twin = copy.deepcopy(admin[0])
    twin["urn"] += "-twin"
    twin["inputs"]["cidrIpv4"] = "128.0.0.0/1"
    changed["resources"].append(twin)
    return changed


def test_the_union_of_admin_sources_is_measured_by_address_space(plans: dict[str, dict[str, Any]]) -> None:
    for stack in ("dev", "staging", "prod"):
        assert validators.stack_violations(plans[stack]["resources"]) == {}, stack
    [(urn, message)] = validators.stack_violations(_split_world(plans["dev"])["resources"])[
        "admin-exposure-by-address-space"]
    assert "cluster-control-plane-admin" in urn  # reported on a rule that contributes
    assert "together are the whole internet (0.0.0.0/0)" in message and "0.0.0.0/1, 128.0.0.0/1" in message
    # per rule, neither half is a /0: the resource policy alone would let them through
    assert not any("no-world-admin-ingress" in validators.violations(e["type"], e["inputs"], "dev")
                   for e in _split_world(plans["dev"])["resources"])


@pytest.mark.real
def test_the_pack_refuses_the_split_world_as_a_stack_policy(analyzer: analyzer_pb2_grpc.AnalyzerStub,
                                                             plans: dict[str, dict[str, Any]]) -> None:
    assert analyze_stack(analyzer, plans["dev"]["resources"]) == []
    found = analyze_stack(analyzer, _split_world(plans["dev"])["resources"])
    assert [policy for policy, _ in found] == ["admin-exposure-by-address-space"]


@pytest.mark.real
def test_pack_passes_the_prod_plan_and_reports_a_violation(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, plans: dict[str, dict[str, Any]]
) -> None:
    # The engine asks about every resource it registers, components and providers included.
    assert [d for e in plans["prod"]["resources"] for d in analyze(analyzer, e)] == []
    master = one(plans["prod"], validators.INSTANCE, role("master"))
    master["options"]["protect"] = False
    master["inputs"]["metadataOptions"]["httpTokens"] = "optional"
    found = {policy for policy, _ in analyze(analyzer, master)}
    assert found == {"prod-stateful-protected", "imdsv2-required"}


# ---------------------------------------------------------------- S3 buckets (the MySQL set's backups, prod)


BUCKET_PIECES = (tokens.S3_BUCKET, tokens.S3_BUCKET_ENCRYPTION, tokens.S3_BUCKET_VERSIONING,
                 tokens.S3_BUCKET_PUBLIC_ACCESS_BLOCK, tokens.S3_BUCKET_POLICY)


def test_the_backup_bucket_passes_as_built(plans: dict[str, dict[str, Any]]) -> None:
    for token in BUCKET_PIECES:
        assert check("private-buckets", one(plans["prod"], token), stack="prod") == [], token
    assert validators.bucket_gaps(plans["prod"]["resources"]) == {}
    policy = json.loads(one(plans["prod"], tokens.S3_BUCKET_POLICY)["inputs"]["policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize(("token", "change", "message"), [
    (tokens.S3_BUCKET_VERSIONING, {"versioningConfiguration": {"status": "Suspended"}}, "must be Enabled"),
    (tokens.S3_BUCKET_ENCRYPTION, {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
     "not aws:kms"),
    (tokens.S3_BUCKET_ENCRYPTION, {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}]},
     "names no KMS key"),
    (tokens.S3_BUCKET_ENCRYPTION, {"rules": []}, "no default encryption rule"),
    (tokens.S3_BUCKET_PUBLIC_ACCESS_BLOCK, {"restrictPublicBuckets": False}, "leaves restrictPublicBuckets off"),
    (tokens.S3_BUCKET_POLICY, {"policy": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}]})},
     "does not deny requests without TLS"),
    (tokens.S3_BUCKET, {"acl": "public-read"}, "makes objects public"),
])
def test_a_weakened_bucket_is_refused(plans: dict[str, dict[str, Any]], token: str, change: dict[str, Any],
                                      message: str) -> None:
    entry = one(plans["prod"], token)
    entry["inputs"].update(change)
    problems = check("private-buckets", entry, stack="prod")
    assert problems and message in problems[0], problems


@pytest.mark.parametrize("missing", BUCKET_PIECES[1:])
def test_a_bucket_without_one_of_its_companions_is_reported(plans: dict[str, dict[str, Any]], missing: str) -> None:
    resources = [e for e in plans["prod"]["resources"] if e["type"] != missing]
    gaps = validators.bucket_gaps(resources)
    assert len(gaps) == 2  # the etcd snapshots' bucket and the MySQL set's
    for urn, problems in gaps.items():
        assert tokens.S3_BUCKET in urn and problems == [f"bucket has no {validators.BUCKET_COMPANIONS[missing]}"]
        assert validators.plan_violations(resources, "prod")[urn]["private-buckets"] == problems


def test_the_backup_bucket_and_its_key_are_protected_in_prod(plans: dict[str, dict[str, Any]]) -> None:
    for entry in entries(plans["prod"], tokens.S3_BUCKET):
        assert check("prod-stateful-protected", entry, stack="prod") == [], entry["urn"]
        assert check("prod-stateful-protected", entry, stack="prod", protect=False)
    [key] = entries(plans["prod"], tokens.KMS_KEY, lambda e: "mysql-backups" in e["urn"])
    assert key["options"]["protect"] is True


def analyze_stack_with_parents(stub: analyzer_pb2_grpc.AnalyzerStub,
                               resources: list[Entry]) -> list[tuple[str, str, str]]:
    """The engine's stack validation call: every resource with its parent's URN."""
    items = []
    for entry in resources:
        properties = struct_pb2.Struct()
        json_format.ParseDict(_engine_value(entry["inputs"]), properties)
        items.append(analyzer_pb2.AnalyzerResource(
            type=entry["type"], properties=properties, urn=entry["urn"], name=entry["name"],
            options=analyzer_pb2.AnalyzerResourceOptions(protect=entry["options"]["protect"]),
            parent=entry.get("parent") or ""))
    response = stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=items), timeout=60)
    return [(d.policyName, d.urn, d.message) for d in response.diagnostics]


@pytest.mark.real
def test_pack_checks_every_bucket_has_its_companions(analyzer: analyzer_pb2_grpc.AnalyzerStub,
                                                     plans: dict[str, dict[str, Any]]) -> None:
    resources = plans["prod"]["resources"]
    assert analyze_stack_with_parents(analyzer, resources) == []
    without = [e for e in resources if e["type"] != tokens.S3_BUCKET_VERSIONING]
    found = analyze_stack_with_parents(analyzer, without)
    assert len(found) == 2  # the etcd snapshots' bucket and the MySQL set's
    for policy, urn, message in found:
        assert policy == "bucket-companions" and tokens.S3_BUCKET in urn
        assert "bucket has no versioning Enabled (BucketVersioning)" in message


def _without(plan: dict[str, Any], drop: Callable[[Entry], bool]) -> list[Entry]:
    return [e for e in plan["resources"] if not drop(e)]


def _is_agent(entry: Entry) -> bool:
    name = entry["inputs"].get("metadata", {}).get("name")
    return entry["type"] == validators.tokens.DAEMON_SET and name == "kube-network-policies"


def _is_default_deny(entry: Entry) -> bool:
    return entry["type"] == validators.tokens.NETWORK_POLICY and entry["inputs"]["metadata"]["name"] == "default-deny"


def test_every_stack_enforces_network_policy_and_denies_by_default(plans: dict[str, dict[str, Any]]) -> None:
    for stack in STACKS:
        assert "network-policy-enforced" not in validators.stack_violations(plans[stack]["resources"]), stack


def test_a_cluster_without_a_network_policy_agent_is_refused(plans: dict[str, dict[str, Any]]) -> None:
    [(urn, message)] = validators.stack_violations(_without(plans["dev"], _is_agent))["network-policy-enforced"]
    assert "aws:ec2/instance:Instance" in urn
    assert "enforces no NetworkPolicy" in message and "registry.k8s.io/networking/kube-network-policies" in message
    # An existing cluster's CNI is its own business (the program cannot see it); the default deny is not.
    assert "network-policy-enforced" not in validators.stack_violations(_without(plans["local"], _is_agent))


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_a_namespace_without_a_default_deny_is_refused(plans: dict[str, dict[str, Any]], stack: str) -> None:
    [(urn, message)] = validators.stack_violations(_without(plans[stack], _is_default_deny))["network-policy-enforced"]
    assert "kubernetes:core/v1:Namespace" in urn and "namespace 'atomic-mysql' has no default-deny" in message


@pytest.mark.parametrize("weaken", [
    {"ingress": [{}]},  # one empty rule admits everything
    {"policyTypes": ["Ingress"]},  # egress left open
    {"podSelector": {"matchLabels": {"app": "mysql"}}},  # only some pods
])
def test_a_default_deny_that_admits_something_is_not_one(plans: dict[str, dict[str, Any]],
                                                           weaken: dict[str, Any]) -> None:
    resources = copy.deepcopy(plans["dev"]["resources"])
    [deny] = [e for e in resources if _is_default_deny(e)]
    deny["inputs"]["spec"].update(weaken)
    assert "network-policy-enforced" in validators.stack_violations(resources)


def test_image_repository_drops_tag_and_digest() -> None:
    assert validators.image_repository("registry.k8s.io/networking/kube-network-policies:v1.1.1@sha256:ab") == \
        "registry.k8s.io/networking/kube-network-policies"
    assert validators.image_repository("localhost:5000/calico/node") == "localhost:5000/calico/node"


@pytest.mark.real
def test_the_pack_refuses_a_cluster_without_enforcement(analyzer: analyzer_pb2_grpc.AnalyzerStub,
                                                        plans: dict[str, dict[str, Any]]) -> None:
    found = analyze_stack(analyzer, _without(plans["dev"], _is_agent))
    assert [policy for policy, _ in found] == ["network-policy-enforced"]
