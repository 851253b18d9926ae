"""The etcd backup bucket, its key and the masters' right to write to it, in every aws stack's graph.

Under mocks (the whole program); the policies are also run through a small IAM evaluator
(tests/components/aws/iam_eval.py): what they allow, and what they refuse.
"""

from __future__ import annotations

import itertools
import json

import pytest

from components import tokens
from components.aws.backup import EtcdBackupBucket, EtcdBackupBucketArgs
from components.aws.iam import backup_bucket_policy, etcd_backup_policy
from components.facts import CLUSTER_ID_TAG
from components.node.etcd_backup import BACKUP_ENV, BACKUP_TIMER, BACKUP_UNIT
from tests.components.aws.iam_eval import decision
from tests.conftest import STACKS
from tools.harness.mocks import Registration
from tools.harness.offline import Plan, run_program
from tools.testing.node_root import env_values, user_data_files

AWS_STACKS = [s for s in STACKS if s != "local"]
KEY = "arn:aws:kms:us-west-2:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
OTHER_KEY = "arn:aws:kms:us-west-2:123456789012:key/ffffffff-4f50-6172-8394-a5b6c7d8e9f0"


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {stack: run_program(stack) for stack in AWS_STACKS}


def one(plan: Plan, token: str) -> Registration:
    """The etcd bucket's resource of this type (the MySQL set's bucket is aws/backup_bucket.py's)."""
    (found,) = [r for r in plan.of_type(token) if "etcd-backups" in r.name]
    return found


def bucket_name(plan: Plan) -> str:
    return str(one(plan, tokens.S3_BUCKET).state["bucket"])


def backup_key(plan: Plan) -> Registration:
    (key,) = [k for k in plan.of_type(tokens.KMS_KEY) if "etcd-backups" in k.name]
    return key


def prefix_of(stack: str) -> str:
    return f"atomic-mysql/{stack}/atomic/etcd"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_bucket_is_versioned_kms_encrypted_private_and_expires_snapshots(plans: dict[str, Plan],
                                                                             stack: str) -> None:
    plan = plans[stack]
    bucket, key = one(plan, tokens.S3_BUCKET), backup_key(plan)
    assert key.inputs["enableKeyRotation"] is True
    assert one(plan, tokens.S3_BUCKET_VERSIONING).inputs["versioningConfiguration"] == {"status": "Enabled"}
    (rule,) = one(plan, tokens.S3_BUCKET_ENCRYPTION).inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms",
                                                          "kmsMasterKeyId": key.state["arn"]}
    assert rule["bucketKeyEnabled"] is False, "the object's ARN must be the encryption context IAM keys on"
    block = one(plan, tokens.S3_BUCKET_PUBLIC_ACCESS_BLOCK).inputs
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    assert one(plan, tokens.S3_BUCKET_OWNERSHIP).inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    rules = {r["id"]: r for r in one(plan, tokens.S3_BUCKET_LIFECYCLE).inputs["rules"]}
    assert plan.settings is not None and plan.settings.cluster is not None
    retention = plan.settings.cluster.etcd_backup.retention_days
    expire = rules["expire-snapshots"]
    assert expire["filter"] == {"prefix": f"{prefix_of(stack)}/"} and expire["status"] == "Enabled"
    assert expire["expiration"] == {"days": retention}
    assert expire["noncurrentVersionExpiration"] == {"noncurrentDays": 7}
    assert rules["remove-expired-delete-markers"]["expiration"] == {"expiredObjectDeleteMarker": True}
    # every configuration part is on this bucket
    parts = [r for r in plan.resources if r.type.startswith("aws:s3/") and r.type != tokens.S3_BUCKET
             and "etcd-backups" in r.name]
    assert len(parts) == 6 and {p.inputs["bucket"] for p in parts} == {bucket.id}


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_bucket_changes_one_part_at_a_time(plans: dict[str, Plan], stack: str) -> None:
    """S3 answers concurrent configuration changes of one bucket with OperationAborted: each part waits
    for the one before it."""
    plan = plans[stack]
    order = [tokens.S3_BUCKET_OWNERSHIP, tokens.S3_BUCKET_PUBLIC_ACCESS_BLOCK, tokens.S3_BUCKET_VERSIONING,
             tokens.S3_BUCKET_ENCRYPTION, tokens.S3_BUCKET_LIFECYCLE, tokens.S3_BUCKET_POLICY]
    parts = [one(plan, t) for t in order]
    for before, after in itertools.pairwise(parts):
        assert before.urn in after.options["dependsOn"], (before.name, after.name)


def test_prod_protects_its_backups_and_dev_lets_them_go_with_the_stack(plans: dict[str, Plan]) -> None:
    prod, dev = plans["prod"], plans["dev"]
    assert one(prod, tokens.S3_BUCKET).options["protect"] and backup_key(prod).options["protect"]
    assert one(prod, tokens.S3_BUCKET).inputs["forceDestroy"] is False
    assert not one(dev, tokens.S3_BUCKET).options["protect"] and one(dev, tokens.S3_BUCKET).inputs["forceDestroy"]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_bucket_policy_refuses_plain_http_and_uploads_not_encrypted_with_the_stacks_key(
        plans: dict[str, Plan], stack: str) -> None:
    plan = plans[stack]
    name, key = bucket_name(plan), backup_key(plan).state["arn"]
    document = json.loads(one(plan, tokens.S3_BUCKET_POLICY).inputs["policy"])
    assert document == json.loads(backup_bucket_policy("aws", name, key, f"atomic-{stack}"))
    assert backup_key(plan).inputs["tags"][CLUSTER_ID_TAG] == f"atomic-{stack}"
    objects = f"arn:aws:s3:::{name}/{prefix_of(stack)}/x.db"
    good = {"aws:SecureTransport": "true", "s3:x-amz-server-side-encryption": "aws:kms",
            "s3:x-amz-server-side-encryption-aws-kms-key-id": key,
            f"aws:PrincipalTag/{CLUSTER_ID_TAG}": f"atomic-{stack}"}
    assert decision(document, "s3:PutObject", objects, good) == "implicit deny"  # the bucket denies nothing here
    for missing, value in (("aws:SecureTransport", "false"), ("s3:x-amz-server-side-encryption", "AES256"),
                           ("s3:x-amz-server-side-encryption-aws-kms-key-id", OTHER_KEY),
                           (f"aws:PrincipalTag/{CLUSTER_ID_TAG}", "atomic-other")):
        assert decision(document, "s3:PutObject", objects, {**good, missing: value}) == "deny", missing
    unencrypted = {k: v for k, v in good.items() if not k.startswith("s3:")}
    assert decision(document, "s3:PutObject", objects, unencrypted) == "deny"
    untagged = {k: v for k, v in good.items() if not k.startswith("aws:PrincipalTag/")}
    assert decision(document, "s3:PutObject", objects, untagged) == "deny", "a principal of no stack writes nothing"
    assert decision(document, "s3:GetObject", objects, {"aws:SecureTransport": "false"}) == "deny"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_a_master_may_write_snapshots_below_its_stacks_prefix_and_nothing_else(plans: dict[str, Plan],
                                                                               stack: str) -> None:
    plan = plans[stack]
    name, key = bucket_name(plan), backup_key(plan).state["arn"]
    policies = {p.name: json.loads(p.inputs["policy"]) for p in plan.of_type(tokens.IAM_ROLE_POLICY)
                if p.name.endswith("-etcd-backup")}
    master_names = [i.inputs["tags"]["Name"] for i in plan.instances() if i.inputs["tags"]["Role"] == "master"]
    assert sorted(policies) == sorted(f"cluster-{m}-etcd-backup" for m in master_names), "masters, and only they"
    region = {"dev": "us-east-1", "staging": "us-east-2", "prod": "us-west-2"}[stack]
    mine = f"arn:aws:s3:::{name}/{prefix_of(stack)}/20260101T000000Z-atomic-master-1.db"
    for document in policies.values():
        assert decision(document, "s3:PutObject", mine) == "allow"
        for other in (f"arn:aws:s3:::{name}/atomic-mysql/other/atomic/etcd/x.db", f"arn:aws:s3:::other/{mine[13:]}"):
            assert decision(document, "s3:PutObject", other) == "implicit deny", other
        for action in ("s3:GetObject", "s3:DeleteObject", "s3:ListBucket", "s3:DeleteObjectVersion"):
            assert decision(document, action, mine) == "implicit deny", action
        kms = {"kms:ViaService": f"s3.{region}.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": mine,
               f"aws:ResourceTag/{CLUSTER_ID_TAG}": f"atomic-{stack}"}
        assert decision(document, "kms:GenerateDataKey", key, kms) == "allow"
        assert decision(document, "kms:GenerateDataKey", key,
                        {**kms, f"aws:ResourceTag/{CLUSTER_ID_TAG}": "atomic-other"}) == "implicit deny"
        assert decision(document, "kms:GenerateDataKey", key, {**kms, "kms:ViaService": "ec2.x"}) == "implicit deny"
        assert decision(document, "kms:GenerateDataKey", key, {
            **kms, "kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{name}/elsewhere/x"}) == "implicit deny"
        assert decision(document, "kms:Decrypt", key, kms) == "implicit deny", "masters never read a backup"


def test_the_policy_functions_refuse_a_wrong_partition() -> None:
    with pytest.raises(ValueError, match="partition"):
        backup_bucket_policy("azure", "b", KEY, "atomic-dev")
    with pytest.raises(ValueError, match="partition"):
        etcd_backup_policy("aws:", "us-east-1", "b", "p", KEY, "atomic-dev")


def _files(plan: Plan, instance: Registration) -> dict[str, str]:
    return {path: content for path, (content, _) in user_data_files(plan.user_data(instance)).items()}


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_master_carries_the_timer_and_where_to_put_snapshots_and_no_minion_does(plans: dict[str, Plan],
                                                                                       stack: str) -> None:
    plan = plans[stack]
    for instance in plan.instances():
        files = _files(plan, instance)
        if instance.inputs["tags"]["Role"] != "master":
            assert BACKUP_ENV not in files and BACKUP_TIMER not in files, instance.name
            continue
        env = env_values(files[BACKUP_ENV])
        assert env == {"ATOMIC_BACKUP_BUCKET": bucket_name(plan), "ATOMIC_BACKUP_PREFIX": prefix_of(stack),
                       "ATOMIC_BACKUP_KMS_KEY": backup_key(plan).state["arn"]}
        assert "OnCalendar=*-*-* 00/1:00:00" in files[BACKUP_TIMER]  # every stack's 60 minutes
        assert f"{BACKUP_UNIT}.timer" in plan.user_data(instance)


def test_no_backups_means_no_bucket_no_policy_and_no_timer() -> None:
    plan = run_program("dev", {"etcdBackupIntervalMinutes": 0})
    assert not plan.of_type(tokens.S3_BUCKET) and not plan.of_type(tokens.ETCD_BACKUP_BUCKET)
    assert not [p for p in plan.of_type(tokens.IAM_ROLE_POLICY) if p.name.endswith("-etcd-backup")]
    for instance in plan.instances():
        assert BACKUP_UNIT not in plan.user_data(instance)
    assert "etcdBackupBucket" not in plan.outputs


@pytest.mark.parametrize(("prefix", "days", "cluster_id"), [
    ("/abs", 30, "c-dev"), ("trailing/", 30, "c-dev"), ("", 30, "c-dev"), ("ok", 0, "c-dev"),
    ("ok", 30, ""), ("ok", 30, "c-prod"),  # no id, or not the one the tags carry
])
def test_the_component_refuses_arguments_it_cannot_use(prefix: str, days: int, cluster_id: str) -> None:
    with pytest.raises(ValueError):
        EtcdBackupBucket("b", EtcdBackupBucketArgs(prefix=prefix, retention_days=days, protect=False,
                                                   tags={CLUSTER_ID_TAG: "c-dev"}, cluster_id=cluster_id))
