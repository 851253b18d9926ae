"""Blast radius per stack: no IAM statement of one stack reaches another stack's resources.

Every node role's policy of one stack (the SSM/KMS policy of every node, the EBS CSI policy of the
minions) is evaluated, with a small evaluator of the IAM features these policies use (Allow,
Action and Resource wildcards, StringEquals and StringLike conditions), against the resources of
another stack as if both were in the same account and region: its SSM parameters, the KMS
decryption of them, its volumes (tagged as its EBS CSI driver tags them) and its instances. Each
is denied; the stack's own are allowed (the evaluator is shown to say yes where it should).
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest

from components import tokens
from components.facts import CLUSTER_ID_TAG, ebs_volume_tags
from tools.harness.mocks import Registration
from tools.harness.offline import Plan, run_program

REGION, ACCOUNT = "us-east-1", "123456789012"


def _matches(patterns: str | list[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in ([patterns] if isinstance(patterns, str) else patterns))


def allowed(documents: list[dict[str, Any]], action: str, resource: str, context: dict[str, str]) -> bool:
    for document in documents:
        for statement in document["Statement"]:
            if statement["Effect"] != "Allow" or not _matches(statement["Action"], action):
                continue
            if not _matches(statement["Resource"], resource):
                continue
            conditions = statement.get("Condition", {})
            assert set(conditions) <= {"StringEquals", "StringLike"}, conditions
            equal = all(context.get(k) == v for k, v in conditions.get("StringEquals", {}).items())
            like = all(k in context and fnmatch.fnmatchcase(context[k], v)
                       for k, v in conditions.get("StringLike", {}).items())
            if equal and like:
                return True
    return False


def _in_region(arn: str) -> str:
    """An ARN of another stack moved into this test's one region and account (the shared-account case)."""
    parts = arn.split(":")
    return ":".join([*parts[:3], REGION, ACCOUNT, *parts[5:]])


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {stack: run_program(stack) for stack in ("dev", "staging", "prod")}


def role_documents(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """node name -> every policy document of its role."""
    found: dict[str, list[dict[str, Any]]] = {}
    for policy in plan.of_type(tokens.IAM_ROLE_POLICY):
        node = policy.name.removeprefix("cluster-").rsplit("-", 1)[0].removesuffix("-ebs")
        document = json.loads(policy.inputs["policy"].replace(":us-west-2:", f":{REGION}:")
                              .replace(":us-east-2:", f":{REGION}:"))
        found.setdefault(node, []).append(document)
    return found


def targets(plan: Plan) -> list[tuple[str, str, dict[str, str]]]:
    """(action, resource ARN, request context) of what a stack's node roles exist to reach."""
    cluster_id = plan.settings.cluster.cluster_id
    # The stack's PKI key; under the mocks every stack's key has the same ARN once moved into one
    # region, so only the encryption-context condition can keep one stack from another's parameters.
    key_arn = _in_region(pki_key(plan).state["arn"])
    out: list[tuple[str, str, dict[str, str]]] = []
    for parameter in plan.of_type(tokens.SSM_PARAMETER):
        arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{parameter.inputs['name']}"
        out.append(("ssm:GetParameter", arn, {}))
        out.append(("kms:Decrypt", key_arn, {"kms:EncryptionContext:PARAMETER_ARN": arn}))
    volume = {f"ec2:ResourceTag/{k}": v for k, v in ebs_volume_tags(cluster_id).items()}
    for action in ("ec2:AttachVolume", "ec2:DetachVolume", "ec2:DeleteVolume", "ec2:ModifyVolume"):
        out.append((action, f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/vol-0123", volume))
    for instance in plan.instances():
        tags = {f"ec2:ResourceTag/{k}": v for k, v in instance.inputs["tags"].items()}
        out.append(("ec2:AttachVolume", f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123", tags))
    return out


def pki_key(plan: Plan) -> Registration:
    (key,) = [k for k in plan.of_type(tokens.KMS_KEY) if "etcd-backups" not in k.name]
    return key


def test_every_resource_of_a_cluster_carries_its_stack_unique_id(plans: dict[str, Plan]) -> None:
    ids = {stack: plan.settings.cluster.cluster_id for stack, plan in plans.items()}
    assert ids == {"dev": "atomic-dev", "staging": "atomic-staging", "prod": "atomic-prod"}
    for stack, plan in plans.items():
        for instance in plan.instances():
            assert instance.inputs["tags"][CLUSTER_ID_TAG] == ids[stack]


@pytest.mark.parametrize(("mine", "theirs"), [("dev", "prod"), ("staging", "prod"), ("prod", "dev")])
def test_no_role_of_one_stack_reaches_another_stacks_resources(mine: str, theirs: str,
                                                               plans: dict[str, Plan]) -> None:
    roles = role_documents(plans[mine])
    assert roles and all(roles.values())
    reached = [(node, action, resource) for node, documents in roles.items()
               for action, resource, context in targets(plans[theirs])
               if allowed(documents, action, _in_region(resource), context)]
    assert reached == []


def test_the_evaluator_allows_a_role_its_own_stack(plans: dict[str, Plan]) -> None:
    plan = plans["dev"]
    roles = role_documents(plan)
    minion = next(node for node in roles if "minion" in node)
    own = [t for t in targets(plan) if t[0].startswith("ec2:")]
    assert all(allowed(roles[minion], action, resource, context) for action, resource, context in own)
    parameter = next(p for p in plan.of_type(tokens.SSM_PARAMETER) if f"/{minion}/" in p.inputs["name"])
    arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{parameter.inputs['name']}"
    assert allowed(roles[minion], "ssm:GetParameter", arn, {})
    assert allowed(roles[minion], "kms:Decrypt", pki_key(plan).state["arn"],
                   {"kms:EncryptionContext:PARAMETER_ARN": arn})


def test_keyed_on_the_cluster_name_alone_a_dev_minion_would_reach_prod(plans: dict[str, Plan]) -> None:
    """The check above can fail: with every stack's volumes tagged for `atomic` (the cluster name,
    the same in every stack), a dev minion's EBS policy would delete prod's volumes."""
    from components.aws.iam import ebs_csi_policy

    shared = [json.loads(ebs_csi_policy("aws", "atomic"))]
    prod_volume = {f"ec2:ResourceTag/{k}": v for k, v in ebs_volume_tags("atomic").items()}
    assert allowed(shared, "ec2:DeleteVolume", f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/vol-0123", prod_volume)
