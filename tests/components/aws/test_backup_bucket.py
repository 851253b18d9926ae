"""The aws stack's bucket for the MySQL set's backups, and the key its pods use (aws/backup_bucket.py)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from components import tokens
from components.aws.backup_bucket import (
    MysqlBackupStore,
    MysqlBackupStoreArgs,
    PrivateBucket,
    PrivateBucketArgs,
    prefix_access_policy,
    tls_only_policy,
)
from tools.harness.offline import Plan, run_program

BACKUPS = {"mysqlBackupEnabled": "true", "mysqlBackupRetentionDays": "10"}


@pytest.fixture(scope="module")
def plan() -> Plan:
    return run_program("dev", BACKUPS)


def only(plan: Plan, token: str) -> Any:
    """The MySQL set's store's resource of this type (the etcd bucket is aws/backup.py's)."""
    [entry] = [r for r in plan.of_type(token) if r.name.startswith("mysql-backups")]
    return entry


def test_the_bucket_is_private_versioned_kms_encrypted_and_tls_only(plan: Plan) -> None:
    bucket = only(plan, tokens.S3_BUCKET)
    [key] = [k for k in plan.of_type(tokens.KMS_KEY) if k.name.startswith("mysql-backups")]
    assert key.inputs["enableKeyRotation"] is True
    encryption = only(plan, tokens.S3_BUCKET_ENCRYPTION).inputs["rules"][0]
    assert encryption["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert encryption["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"]
    assert encryption["bucketKeyEnabled"] is False  # the key policy's encryption context is the object ARN
    assert only(plan, tokens.S3_BUCKET_VERSIONING).inputs["versioningConfiguration"] == {"status": "Enabled"}
    block = only(plan, tokens.S3_BUCKET_PUBLIC_ACCESS_BLOCK).inputs
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    assert only(plan, tokens.S3_BUCKET_OWNERSHIP).inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    policy = json.loads(only(plan, tokens.S3_BUCKET_POLICY).inputs["policy"])
    deny, others = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # Writes and deletes by any principal of another stack are refused whatever it is granted.
    assert others["Effect"] == "Deny" and others["Resource"] == f"{bucket.state['arn']}/*"
    assert others["Condition"] == {"StringNotEquals": {"aws:PrincipalTag/ClusterId": "atomic-dev"}}
    assert set(others["Action"]) == {"s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion",
                                     "s3:AbortMultipartUpload"}
    # The bucket, its key and the user carry the stack's ClusterId; the user lives below its IAM path.
    user = only(plan, tokens.IAM_USER)
    for resource in (bucket, key, user):
        assert resource.inputs["tags"]["ClusterId"] == "atomic-dev", resource.name
    assert user.inputs["path"] == "/atomic-mysql/atomic-dev/"
    assert bucket.inputs["forceDestroy"] is True and bucket.options["protect"] is False  # dev: no protectStateful


def test_lifecycle_expiry_matches_the_retention_below_the_sets_prefix(plan: Plan) -> None:
    rules = {r["id"]: r for r in only(plan, tokens.S3_BUCKET_LIFECYCLE).inputs["rules"]}
    assert rules["retention"]["filter"] == {"prefix": "dev/mysql/"}
    assert rules["retention"]["expiration"] == {"days": 11}  # mysqlBackupRetentionDays + 1
    assert rules["abort-incomplete-uploads"]["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 1}


def test_configuration_changes_reach_the_bucket_one_at_a_time(plan: Plan) -> None:
    order = [tokens.S3_BUCKET_OWNERSHIP, tokens.S3_BUCKET_PUBLIC_ACCESS_BLOCK, tokens.S3_BUCKET_ENCRYPTION,
             tokens.S3_BUCKET_VERSIONING, tokens.S3_BUCKET_POLICY, tokens.S3_BUCKET_LIFECYCLE]
    for before, after in itertools.pairwise(order):
        assert only(plan, before).urn in only(plan, after).options["dependsOn"], (before, after)


def test_the_pods_key_reaches_only_the_sets_prefix() -> None:
    document = json.loads(prefix_access_policy("arn:aws:s3:::b", "prod/mysql", "arn:aws:kms:us-west-2:1:key/k",
                                               region="us-west-2", cluster_id="atomic-prod"))
    statements = {s["Sid"]: s for s in document["Statement"]}
    assert statements["ListOwnPrefix"]["Resource"] == ["arn:aws:s3:::b"]
    assert statements["ListOwnPrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["prod/mysql/", "prod/mysql/*"]}}
    assert statements["ReadWriteOwnObjects"]["Resource"] == ["arn:aws:s3:::b/prod/mysql/*"]
    assert "s3:*" not in json.dumps(document) and "s3:DeleteBucket" not in json.dumps(document)
    assert statements["UseBucketKeyForOwnObjects"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-west-2.amazonaws.com", "aws:ResourceTag/ClusterId": "atomic-prod"},
        "StringLike": {"kms:EncryptionContext:aws:s3:arn": ["arn:aws:s3:::b/prod/mysql/*"]}}
    assert set(statements) == {"ListOwnPrefix", "ReadWriteOwnObjects", "UseBucketKeyForOwnObjects"}
    assert json.loads(tls_only_policy("arn:aws:s3:::b"))["Statement"][0]["Resource"] == [
        "arn:aws:s3:::b", "arn:aws:s3:::b/*"]


def test_a_restore_source_is_granted_read_only_and_decryption_through_s3_only() -> None:
    document = json.loads(prefix_access_policy("arn:aws:s3:::new", "staging/mysql", "arn:aws:kms:us-east-2:1:key/k",
                                               ("arn:aws:s3:::prod-backups", "prod/mysql", "us-east-2"),
                                               region="us-east-2", cluster_id="atomic-staging"))
    statements = {s["Sid"]: s for s in document["Statement"]}
    assert statements["ReadRestoreSource"] == {"Sid": "ReadRestoreSource", "Effect": "Allow",
                                               "Action": ["s3:GetObject"],
                                               "Resource": ["arn:aws:s3:::prod-backups/prod/mysql/*"]}
    assert statements["ListRestoreSource"]["Condition"] == {
        "StringLike": {"s3:prefix": ["prod/mysql/", "prod/mysql/*"]}}
    decrypt = statements["DecryptRestoreSourceThroughS3"]
    assert decrypt["Action"] == ["kms:Decrypt"] and decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-2.amazonaws.com"},
        "StringLike": {"kms:EncryptionContext:aws:s3:arn": ["arn:aws:s3:::prod-backups/prod/mysql/*"]}}


def test_a_restore_in_the_stack_reads_its_source_from_the_stacks_own_bucket() -> None:
    plan = run_program("dev", {**BACKUPS, "mysqlName": "mysql2", "mysqlRestoreFrom": "20261201T031700Z",
                               "mysqlRestorePrefix": "dev/mysql"})
    [policy] = plan.of_type(tokens.IAM_USER_POLICY)
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    bucket = only(plan, tokens.S3_BUCKET).state["arn"]
    assert statements["ReadWriteOwnObjects"]["Resource"] == [f"{bucket}/dev/mysql2/*"]
    assert statements["ReadRestoreSource"]["Resource"] == [f"{bucket}/dev/mysql/*"]


def test_the_key_is_a_secret_and_its_user_has_only_the_prefix_policy(plan: Plan) -> None:
    key = only(plan, tokens.IAM_ACCESS_KEY)
    assert "secret" in key.options["additionalSecretOutputs"]
    [policy] = plan.of_type(tokens.IAM_USER_POLICY)
    document = json.loads(policy.inputs["policy"])
    assert document["Statement"][1]["Resource"][0].endswith("/dev/mysql/*")
    assert not plan.of_type(tokens.IAM_POLICY) or all(
        "mysql-backups" not in p.name for p in plan.of_type(tokens.IAM_POLICY))


def test_protect_stateful_protects_the_bucket_and_its_key() -> None:
    plan = run_program("dev", {**BACKUPS, "protectStateful": "true"})
    bucket = only(plan, tokens.S3_BUCKET)
    assert bucket.options["protect"] is True and bucket.inputs["forceDestroy"] is False
    [key] = [k for k in plan.of_type(tokens.KMS_KEY) if k.name.startswith("mysql-backups")]
    assert key.options["protect"] is True


@pytest.mark.parametrize(("args", "message"), [
    (PrivateBucketArgs("d", 0, "p/", False, {}), "expire_days 0 must be 1 to 3650"),
    (PrivateBucketArgs("d", 7, "/p/", False, {}), "must be empty or end with '/'"),
])
def test_bad_bucket_arguments_register_nothing(args: PrivateBucketArgs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PrivateBucket("x", args)


def test_a_prefix_with_a_slash_at_either_end_is_refused() -> None:
    with pytest.raises(ValueError, match="without a leading or trailing"):
        MysqlBackupStore("x", MysqlBackupStoreArgs("mysql", "/prod/mysql", 7, False, {}, "atomic-prod"))


@pytest.mark.parametrize("cluster_id", ["", "atomic/prod"])
def test_a_store_without_the_stacks_cluster_id_is_refused(cluster_id: str) -> None:
    with pytest.raises(ValueError, match="must be the stack's ClusterId"):
        MysqlBackupStore("x", MysqlBackupStoreArgs("mysql", "prod/mysql", 7, False, {}, cluster_id))
