"""Blast radius per stack: no IAM statement of one stack reaches another stack's resources.

Every node role's policy of one stack (the SSM/KMS policy of every node, the EBS CSI policy of the
minions, the etcd backup policy of the masters) is evaluated, with the small IAM evaluator of
tests/components/aws/iam_eval.py, against the resources of another stack as if both were in the
same account and region: its SSM parameters, the KMS decryption of them, its volumes (tagged as
its EBS CSI driver tags them), its instances, its etcd snapshots (in a bucket of the same name: under
the mocks every stack's bucket is named alike, so only the prefix and the tags keep them apart) and
its backup key. Each is denied; the stack's own are allowed (the evaluator is shown to say yes where
it should). The other side holds too: a stack's backup bucket refuses uploads by another stack's
roles whatever their own policies say.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components import tokens
from components.facts import CLUSTER_ID_TAG, ebs_volume_tags
from tests.components.aws.iam_eval import decision
from tools.harness.mocks import Registration
from tools.harness.offline import Plan, run_program

REGION, ACCOUNT = "us-east-1", "123456789012"


def allowed(documents: list[dict[str, Any]], action: str, resource: str, context: dict[str, str]) -> bool:
    """What IAM decides for a role with these policies: an explicit deny anywhere wins, else an allow."""
    decisions = {decision(document, action, resource, context) for document in documents}
    return "allow" in decisions and "deny" not in decisions


def _in_region(arn: str) -> str:
    """An ARN of another stack moved into this test's one region and account (the shared-account case).
    S3 ARNs name neither (a bucket's name is global) and stay as they are."""
    parts = arn.split(":")
    if parts[2] == "s3":
        return arn
    return ":".join([*parts[:3], REGION, ACCOUNT, *parts[5:]])


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {stack: run_program(stack) for stack in ("dev", "staging", "prod")}


def role_documents(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """node name -> every policy document of its role."""
    found: dict[str, list[dict[str, Any]]] = {}
    for policy in plan.of_type(tokens.IAM_ROLE_POLICY):
        node = re.sub(r"-(ssm|ebs-csi|etcd-backup)$", "", policy.name.removeprefix("cluster-"))
        text = re.sub(r":us-(west|east)-2:", f":{REGION}:", policy.inputs["policy"])
        document = json.loads(re.sub(r"\bs3\.[a-z0-9-]+\.amazonaws\.com", f"s3.{REGION}.amazonaws.com", text))
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
    return out + backup_targets(plan)


def pki_key(plan: Plan) -> Registration:
    (key,) = [k for k in plan.of_type(tokens.KMS_KEY) if "backups" not in k.name]
    return key


def etcd(plan: Plan, token: str) -> list[Registration]:
    return [r for r in plan.of_type(token) if "etcd-backups" in r.name]


def backup_targets(plan: Plan) -> list[tuple[str, str, dict[str, str]]]:
    """The stack's etcd snapshots: writing, reading, listing and deleting them, and its backup key."""
    (bucket,) = etcd(plan, tokens.S3_BUCKET)
    (key,) = etcd(plan, tokens.KMS_KEY)
    bucket_arn = f"arn:aws:s3:::{bucket.state['bucket']}"
    (lifecycle,) = etcd(plan, tokens.S3_BUCKET_LIFECYCLE)
    prefix = lifecycle.inputs["rules"][0]["filter"]["prefix"]  # the stack's own, as its bucket expires it
    snapshot = f"{bucket_arn}/{prefix}20260101T000000Z-atomic-master-1.db"
    actions = ("s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion")
    out: list[tuple[str, str, dict[str, str]]] = [(action, snapshot, {}) for action in actions]
    out.append(("s3:ListBucket", bucket_arn, {}))
    through_s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": snapshot,
                  f"aws:ResourceTag/{CLUSTER_ID_TAG}": key.inputs["tags"][CLUSTER_ID_TAG]}
    out += [(action, _in_region(key.state["arn"]), through_s3) for action in ("kms:GenerateDataKey", "kms:Decrypt")]
    return out


def test_every_resource_of_a_cluster_carries_its_stack_unique_id(plans: dict[str, Plan]) -> None:
    ids = {stack: plan.settings.cluster.cluster_id for stack, plan in plans.items()}
    assert ids == {"dev": "atomic-dev", "staging": "atomic-staging", "prod": "atomic-prod"}
    for stack, plan in plans.items():
        tagged = [r for r in plan.resources if r.custom and r.type.startswith("aws:") and "tags" in r.inputs]
        kinds = {r.type for r in tagged}
        assert {tokens.INSTANCE, tokens.S3_BUCKET, tokens.KMS_KEY, tokens.SUBNET,
                tokens.INSTANCE_CONNECT_ENDPOINT} <= kinds, kinds
        if stack == "prod":
            assert {tokens.NAT_GATEWAY, tokens.EIP, tokens.VPC_ENDPOINT} <= kinds, kinds
        assert [(r.name, r.inputs["tags"].get(CLUSTER_ID_TAG)) for r in tagged
                if r.inputs["tags"].get(CLUSTER_ID_TAG) != ids[stack]] == []


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
    # a master writes its own stack's snapshots with its own stack's key, and does nothing else with them
    master = next(node for node in roles if "master" in node)
    snapshots = {(action, resource): context for action, resource, context in backup_targets(plan)}
    writes = {a for a in snapshots if a[0] in ("s3:PutObject", "kms:GenerateDataKey")}
    assert all(allowed(roles[master], a, _in_region(r), snapshots[(a, r)]) for a, r in writes)
    assert not any(allowed(roles[master], a, _in_region(r), snapshots[(a, r)]) for a, r in set(snapshots) - writes)
    assert not any(allowed(roles[minion], a, _in_region(r), c) for (a, r), c in snapshots.items())


@pytest.mark.parametrize(("mine", "theirs"), [("dev", "prod"), ("prod", "dev")])
def test_a_stacks_backup_bucket_refuses_another_stacks_roles_whatever_they_are_granted(
        mine: str, theirs: str, plans: dict[str, Plan]) -> None:
    """The bucket's own side: even a role of another stack allowed s3:PutObject on everything (a
    mistake, or a wider policy added by hand) cannot overwrite this stack's snapshots."""
    (policy,) = etcd(plans[theirs], tokens.S3_BUCKET_POLICY)
    bucket_policy = json.loads(policy.inputs["policy"])
    (key,) = etcd(plans[theirs], tokens.KMS_KEY)
    (action, snapshot, _), *_ = backup_targets(plans[theirs])
    assert action == "s3:PutObject"
    upload = {"aws:SecureTransport": "true", "s3:x-amz-server-side-encryption": "aws:kms",
              "s3:x-amz-server-side-encryption-aws-kms-key-id": key.state["arn"]}
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    mine_tag = {f"aws:PrincipalTag/{CLUSTER_ID_TAG}": plans[mine].settings.cluster.cluster_id}
    assert not allowed([everything, bucket_policy], action, snapshot, {**upload, **mine_tag})
    own_tag = {f"aws:PrincipalTag/{CLUSTER_ID_TAG}": plans[theirs].settings.cluster.cluster_id}
    assert allowed([everything, bucket_policy], action, snapshot, {**upload, **own_tag}), "the evaluator says yes"


def test_without_the_stack_in_the_prefix_a_dev_master_would_write_prod_snapshots(plans: dict[str, Plan]) -> None:
    """The check above can fail: a backup policy for the project's whole prefix, in a bucket both
    stacks share, would let a dev master overwrite prod's snapshots."""
    from components.aws.iam import etcd_backup_policy

    (action, snapshot, _), *_ = backup_targets(plans["prod"])
    bucket = snapshot.split(":::", 1)[1].split("/", 1)[0]
    shared = [json.loads(etcd_backup_policy("aws", REGION, bucket, "atomic-mysql", "arn:x", "atomic-dev"))]
    assert allowed(shared, action, snapshot, {})


def test_keyed_on_the_cluster_name_alone_a_dev_minion_would_reach_prod(plans: dict[str, Plan]) -> None:
    """The check above can fail: with every stack's volumes tagged for `atomic` (the cluster name,
    the same in every stack), a dev minion's EBS policy would delete prod's volumes."""
    from components.aws.iam import ebs_csi_policy

    shared = [json.loads(ebs_csi_policy("aws", "atomic"))]
    prod_volume = {f"ec2:ResourceTag/{k}": v for k, v in ebs_volume_tags("atomic").items()}
    assert allowed(shared, "ec2:DeleteVolume", f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/vol-0123", prod_volume)


# ---------------------------------------------------------------- the MySQL set's backups (aws/backup_bucket.py)

BACKUPS = {"mysqlBackupEnabled": "true"}


@pytest.fixture(scope="module")
def backup_plans() -> dict[str, Plan]:
    return {stack: run_program(stack, BACKUPS) for stack in ("dev", "staging", "prod")}


def mysql(plan: Plan, token: str) -> Registration:
    (found,) = [r for r in plan.of_type(token) if r.name.startswith("mysql-backups")]
    return found


def backup_user_documents(plan: Plan) -> list[dict[str, Any]]:
    """The set's backup credentials: every policy of its IAM user, moved into the one test region."""
    text = mysql(plan, tokens.IAM_USER_POLICY).inputs["policy"]
    text = re.sub(r":us-(west|east)-2:", f":{REGION}:", text)
    return [json.loads(re.sub(r"\bs3\.[a-z0-9-]+\.amazonaws\.com", f"s3.{REGION}.amazonaws.com", text))]


def mysql_backup_targets(plan: Plan, prefix: str | None = None) -> list[tuple[str, str, dict[str, str]]]:
    """A stack's MySQL backups: its objects (write, read, delete), listing its prefix, its key through S3."""
    bucket_arn = mysql(plan, tokens.S3_BUCKET).state["arn"]
    key = mysql(plan, tokens.KMS_KEY)
    prefix = prefix or f"{plan.stack}/mysql"
    backup = f"{bucket_arn}/{prefix}/backups/20261201T031700Z/backup.xbstream"
    out: list[tuple[str, str, dict[str, str]]] = [
        (action, backup, {}) for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject",
                                            "s3:AbortMultipartUpload")]
    out.append(("s3:ListBucket", bucket_arn, {"s3:prefix": f"{prefix}/backups/"}))
    through_s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": backup,
                  f"aws:ResourceTag/{CLUSTER_ID_TAG}": key.inputs["tags"][CLUSTER_ID_TAG]}
    out += [(action, _in_region(key.state["arn"]), through_s3) for action in ("kms:GenerateDataKey", "kms:Decrypt")]
    return out


def test_every_mysql_backup_resource_carries_its_stacks_id(backup_plans: dict[str, Plan]) -> None:
    for stack, plan in backup_plans.items():
        cluster_id = plan.settings.cluster.cluster_id
        for token in (tokens.S3_BUCKET, tokens.KMS_KEY, tokens.IAM_USER):
            assert mysql(plan, token).inputs["tags"][CLUSTER_ID_TAG] == cluster_id, (stack, token)
        assert mysql(plan, tokens.IAM_USER).inputs["path"] == f"/atomic-mysql/{cluster_id}/"


@pytest.mark.parametrize(("mine", "theirs"), [("dev", "prod"), ("staging", "prod"), ("prod", "dev")])
def test_a_stacks_backup_credentials_touch_nothing_of_another_stacks_backups(
        mine: str, theirs: str, backup_plans: dict[str, Plan]) -> None:
    """Under the mocks both stacks' buckets and keys have the same ARN once in one region: only the
    prefix, the key's ClusterId tag and the encryption context keep them apart."""
    documents = backup_user_documents(backup_plans[mine])
    own = mysql_backup_targets(backup_plans[mine])
    assert all(allowed(documents, action, _in_region(resource), context) for action, resource, context in own), \
        "the evaluator allows a set its own backups"
    reached = [(action, resource) for action, resource, context in mysql_backup_targets(backup_plans[theirs])
               if allowed(documents, action, _in_region(resource), context)]
    assert reached == []
    # Nor the other stack's etcd snapshots, nor its node roles' parameters, volumes and keys.
    assert [t for t in targets(backup_plans[theirs]) if allowed(documents, t[0], _in_region(t[1]), t[2])] == []


@pytest.mark.parametrize(("mine", "theirs"), [("dev", "prod"), ("prod", "dev")])
def test_a_stacks_backup_bucket_refuses_writes_by_another_stacks_credentials_whatever_they_are_granted(
        mine: str, theirs: str, backup_plans: dict[str, Plan]) -> None:
    bucket_policy = json.loads(mysql(backup_plans[theirs], tokens.S3_BUCKET_POLICY).inputs["policy"])
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    over_tls = {"aws:SecureTransport": "true"}
    mine_tag = {f"aws:PrincipalTag/{CLUSTER_ID_TAG}": backup_plans[mine].settings.cluster.cluster_id}
    own_tag = {f"aws:PrincipalTag/{CLUSTER_ID_TAG}": backup_plans[theirs].settings.cluster.cluster_id}
    objects = [(a, r) for a, r, _ in mysql_backup_targets(backup_plans[theirs]) if a.startswith("s3:") and "/" in r]
    writes = [(a, r) for a, r in objects if a != "s3:GetObject"]
    assert writes and not any(allowed([everything, bucket_policy], a, r, {**over_tls, **mine_tag}) for a, r in writes)
    assert all(allowed([everything, bucket_policy], a, r, {**over_tls, **own_tag}) for a, r in writes), \
        "the evaluator says yes to the stack's own"
    # A restore elsewhere reads, which the bucket leaves to IAM (the reader's key must grant it).
    assert allowed([everything, bucket_policy], "s3:GetObject", objects[0][1], {**over_tls, **mine_tag})


def test_with_a_shared_prefix_only_the_keys_tag_keeps_one_stack_from_anothers_backups(
        backup_plans: dict[str, Plan]) -> None:
    """The checks above can fail: two stacks given the same mysqlBackupPrefix, in buckets named alike
    (as under the mocks), and dev's credentials would read and write prod's objects as far as S3's
    own permission goes; what still stops them is the key's ClusterId condition (no data key, no
    decryption, so neither an upload nor a read of an SSE-KMS object) and prod's bucket policy."""
    shared = {**BACKUPS, "mysqlBackupPrefix": "shared/mysql"}
    dev, prod = run_program("dev", shared), run_program("prod", shared)
    documents = backup_user_documents(dev)
    reached = {action for action, resource, context in mysql_backup_targets(prod, "shared/mysql")
               if allowed(documents, action, _in_region(resource), context)}
    assert {"s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket"} <= reached
    assert not reached & {"kms:GenerateDataKey", "kms:Decrypt"}
    # The same documents without the tag condition reach prod's key too.
    untagged = json.loads(json.dumps(documents))
    for statement in untagged[0]["Statement"]:
        statement.get("Condition", {}).get("StringEquals", {}).pop(f"aws:ResourceTag/{CLUSTER_ID_TAG}", None)
    assert {action for action, resource, context in mysql_backup_targets(prod, "shared/mysql")
            if allowed(untagged, action, _in_region(resource), context)} >= {"kms:GenerateDataKey", "kms:Decrypt"}
