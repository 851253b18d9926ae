"""PrivateBucket and MysqlBackupStore: where the MySQL set's backups and binlogs go on AWS.

`PrivateBucket` is the reusable piece: a private, versioned, KMS-encrypted (its own customer
managed key, rotated yearly), TLS-only, lifecycle-managed bucket with ACLs disabled. Any stack
data that must outlive its producer (backups, snapshots) can live in one.

`MysqlBackupStore` puts the MySQL set's prefix in such a bucket and makes the one credential the
pods use: an IAM user whose access key may list, read, write and delete below `<prefix>/` and
nothing else, and use the bucket's key for that. Why a key in a Kubernetes Secret and not
service-account federation (docs/backup.md, "Credentials"): this cluster has no OIDC issuer AWS
can reach (IRSA needs a public discovery document and JWKS, and the API server's
--service-account-issuer pointed at it) and no EKS Pod Identity agent; node-role credentials are
out because IMDSv2's hop limit of 1 keeps pods away from the instance metadata on purpose. The
key's blast radius is the set's own prefix; it is a Pulumi secret end to end, and replacing the
AccessKey resource (`pulumi up --replace <urn>`) rotates it.

Scoped to the stack like its other AWS resources (aws/iam.py, docs/security.md "Blast radius per
stack"): the bucket, its key and the user carry the stack's ClusterId tag and the user lives below the
IAM path `/atomic-mysql/<cluster id>/`; the user's use of the key is conditioned on that tag and on
S3 being the caller (kms:ViaService), and the bucket's policy refuses writes and deletes by any
principal not tagged with the stack's ClusterId, so even another stack's credentials granted
s3:* on everything could not overwrite or remove a backup here (a restore elsewhere only reads).

Protected with protectStateful: `pulumi destroy` and replacements stop at the bucket and its key.
Without it the bucket is force-destroyed with the stack (throw-away stacks go away whole).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from components import tokens
from components.facts import CLUSTER_ID_TAG, TAG_NAME

# Versions replaced or deleted stay this long (a backup overwritten by mistake can be recovered).
NONCURRENT_DAYS = 7
# A multipart upload abandoned by a killed backup is removed after a day.
ABORT_MULTIPART_DAYS = 1


# What only the stack's own principals may do to the objects (the bucket policy's principal-tag deny).
WRITE_ACTIONS = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:AbortMultipartUpload")


def tls_only_policy(bucket_arn: str, cluster_id: str | None = None) -> str:
    """Every request without TLS is refused, whoever makes it; with `cluster_id`, every write or delete
    of an object by a principal not tagged ClusterId=<cluster_id> too (a user's or a role's tags are
    its aws:PrincipalTag, IAM User Guide "AWS global condition context keys").

    No deny of uploads without the SSE-KMS header (the etcd bucket's KmsOnly, aws/iam.py): the pods
    upload in multipart, and UploadPart is authorised as s3:PutObject without that header, so such a
    deny would refuse every part; the bucket's default encryption with its own key covers them."""
    statements: list[dict[str, object]] = [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]
    if cluster_id is not None:
        statements.append({
            "Sid": "TheStacksPrincipalsOnlyWrite", "Effect": "Deny", "Principal": "*", "Action": list(WRITE_ACTIONS),
            "Resource": f"{bucket_arn}/*",
            "Condition": {"StringNotEquals": {f"aws:PrincipalTag/{CLUSTER_ID_TAG}": cluster_id}},
        })
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def prefix_access_policy(bucket_arn: str, prefix: str, key_arn: str,
                         restore_source: tuple[str, str, str] | None = None, *, region: str, cluster_id: str) -> str:
    """What the set's pods may do: objects below `<prefix>/` only (multipart uploads included),
    listing only that prefix, and the bucket key for those objects only (SSE-KMS encryption
    context is the object's ARN when no S3 Bucket Key is used).

    `restore_source` (bucket ARN, prefix, region) adds read-only access to the backups a restore
    reads (another set's prefix, possibly another stack's bucket) and decryption of those objects
    through S3 only, whatever key that bucket uses.

    The own key's use is also conditioned on S3 being the caller and on the key's ClusterId tag
    (KMS evaluates aws:ResourceTag on key operations: AWS KMS Developer Guide, "Use tags to control
    access to KMS keys"), as the masters' etcd backup policy is."""
    objects = f"{bucket_arn}/{prefix}/*"
    restore: list[dict[str, object]] = []
    if restore_source is not None:
        source_bucket, source_prefix, region = restore_source
        source_objects = f"{source_bucket}/{source_prefix}/*"
        restore = [
            {"Sid": "ListRestoreSource", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [source_bucket],
             "Condition": {"StringLike": {"s3:prefix": [f"{source_prefix}/", f"{source_prefix}/*"]}}},
            {"Sid": "ReadRestoreSource", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [source_objects]},
            {"Sid": "DecryptRestoreSourceThroughS3", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": ["*"],
             "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                           "StringLike": {"kms:EncryptionContext:aws:s3:arn": [source_objects]}}},
        ]
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "ListOwnPrefix", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket_arn],
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/", f"{prefix}/*"]}}},
        {"Sid": "ReadWriteOwnObjects", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts"],
         "Resource": [objects]},
        {"Sid": "UseBucketKeyForOwnObjects", "Effect": "Allow",
         "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": [key_arn],
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com",
                                        f"aws:ResourceTag/{CLUSTER_ID_TAG}": cluster_id},
                       "StringLike": {"kms:EncryptionContext:aws:s3:arn": [objects]}}},
        *restore,
    ]})


@dataclass
class PrivateBucketArgs:
    description: str
    # Current objects below `expire_prefix` expire after this many days (None: never).
    expire_days: int | None
    expire_prefix: str
    protect: bool
    tags: Mapping[str, str]
    # The stack's ClusterId: only principals tagged with it may write or delete objects (tls_only_policy).
    cluster_id: str | None = None


def _check(args: PrivateBucketArgs) -> None:
    if args.expire_days is not None and not 1 <= args.expire_days <= 3650:
        raise ValueError(f"expire_days {args.expire_days} must be 1 to 3650")
    if args.expire_prefix.startswith("/") or (args.expire_prefix and not args.expire_prefix.endswith("/")):
        raise ValueError(f"expire_prefix {args.expire_prefix!r} must be empty or end with '/' (and not start with one)")


class PrivateBucket(pulumi.ComponentResource):
    """A private, versioned, KMS-encrypted, TLS-only bucket with a lifecycle (see the module doc)."""

    def __init__(self, name: str, args: PrivateBucketArgs, opts: ResourceOptions | None = None) -> None:
        _check(args)
        super().__init__(tokens.PRIVATE_BUCKET, name, None, opts)
        stateful = ResourceOptions(parent=self, protect=args.protect)
        self.key = aws.kms.Key(f"{name}-kms", description=args.description, enable_key_rotation=True,
                               deletion_window_in_days=30, tags=self._tags(args, f"{name}-kms"), opts=stateful)
        self.bucket = aws.s3.Bucket(f"{name}-bucket", force_destroy=not args.protect,
                                    tags=self._tags(args, f"{name}-bucket"), opts=stateful)
        # One configuration change at a time: S3 answers concurrent ones on a bucket with
        # OperationAborted 409 "A conflicting conditional operation is currently in progress"
        # (a policy beside its public access block: hashicorp/terraform-provider-aws#7628; a policy
        # beside ownership controls: sevenwestmedia-labs/pulumi-components#46): each waits for the last.
        last: list[pulumi.Resource] = []

        def after() -> ResourceOptions:
            return ResourceOptions(parent=self, depends_on=list(last))

        last = [aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=self.bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=after())]
        last = [aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=self.bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=after())]
        last = [aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=self.bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms", kms_master_key_id=self.key.arn),
                # No S3 Bucket Key: the encryption context stays the object's ARN, which the
                # prefix policy's kms:EncryptionContext condition relies on.
                bucket_key_enabled=False)],
            opts=after())]
        last = [aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=self.bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=after())]
        last = [aws.s3.BucketPolicy(f"{name}-tls-only", bucket=self.bucket.id,
                                    policy=self.bucket.arn.apply(lambda arn: tls_only_policy(arn, args.cluster_id)),
                                    opts=after())]
        rules = [aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="abort-incomplete-uploads", status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            abort_incomplete_multipart_upload=aws.s3.
            BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=ABORT_MULTIPART_DAYS),
            noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                noncurrent_days=NONCURRENT_DAYS),
        )]
        if args.expire_days is not None:
            rules.append(aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="retention", status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=args.expire_prefix),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=args.expire_days)))
        last = [aws.s3.BucketLifecycleConfiguration(f"{name}-lifecycle", bucket=self.bucket.id, rules=rules,
                                                    opts=after())]
        self.bucket_name: pulumi.Output[str] = self.bucket.bucket
        self.bucket_arn: pulumi.Output[str] = self.bucket.arn
        self.key_arn: pulumi.Output[str] = self.key.arn
        self.ready = last[0]
        self.register_outputs({"bucket": self.bucket_name, "bucketArn": self.bucket_arn, "kmsKeyArn": self.key_arn})

    @staticmethod
    def _tags(args: PrivateBucketArgs, name: str) -> dict[str, str]:
        return {**args.tags, TAG_NAME: name}


@dataclass
class MysqlBackupStoreArgs:
    set_name: str
    prefix: str            # the set's prefix in the bucket, no leading or trailing '/'
    retention_days: int
    protect: bool
    tags: Mapping[str, str]
    cluster_id: str        # facts.cluster_id: the tag the bucket policy and the key permission key on
    # A restore's source: (bucket name or None for this store's own bucket, prefix), and the region.
    restore_source: tuple[str | None, str] | None = None
    region: str = "us-east-1"


class MysqlBackupStore(pulumi.ComponentResource):
    """The MySQL set's bucket and the access key its pods use (see the module doc)."""

    def __init__(self, name: str, args: MysqlBackupStoreArgs, opts: ResourceOptions | None = None) -> None:
        if not args.prefix or args.prefix.startswith("/") or args.prefix.endswith("/"):
            raise ValueError(f"prefix {args.prefix!r} must be a key prefix without a leading or trailing '/'")
        if not args.cluster_id or not re.fullmatch(r"[A-Za-z0-9+=,.@_-]+", args.cluster_id):
            raise ValueError(f"cluster_id {args.cluster_id!r} must be the stack's ClusterId (letters, digits, "
                             "+=,.@_-: it names the user's IAM path)")
        super().__init__(tokens.MYSQL_BACKUP_STORE, name, None, opts)
        child = ResourceOptions(parent=self)
        tags = {**args.tags, CLUSTER_ID_TAG: args.cluster_id}
        # Backups and binlogs expire together after the retention: a binlog is always younger than
        # every backup it can roll forward (it is closed after them), so none that a kept backup
        # needs goes first. A day is added so that a backup taken late on its last day survives
        # the agent's own pruning, which keeps the newest good backup whatever its age.
        self.storage = PrivateBucket(f"{name}-storage", PrivateBucketArgs(
            description=f"MySQL backups and binlogs of {args.set_name} below {args.prefix}/",
            expire_days=args.retention_days + 1, expire_prefix=f"{args.prefix}/", protect=args.protect,
            tags=tags, cluster_id=args.cluster_id), opts=child)
        self.user = aws.iam.User(f"{name}-user", path=f"/atomic-mysql/{args.cluster_id}/",
                                 tags={**tags, TAG_NAME: f"{name}-user"}, opts=child)
        def document(values: list[str]) -> str:
            bucket_arn, key_arn = values
            source = None
            if args.restore_source is not None:
                name, source_prefix = args.restore_source
                source = (f"arn:aws:s3:::{name}" if name else bucket_arn, source_prefix, args.region)
            return prefix_access_policy(bucket_arn, args.prefix, key_arn, source, region=args.region,
                                        cluster_id=args.cluster_id)

        policy = pulumi.Output.all(self.storage.bucket_arn, self.storage.key_arn).apply(document)
        aws.iam.UserPolicy(f"{name}-policy", user=self.user.name, policy=policy, opts=child)
        self.access_key = aws.iam.AccessKey(f"{name}-key", user=self.user.name,
                                            opts=ResourceOptions(parent=self,
                                                                 additional_secret_outputs=["secret"]))
        self.bucket_name: pulumi.Output[str] = self.storage.bucket_name
        self.access_key_id: pulumi.Output[str] = pulumi.Output.secret(self.access_key.id)
        self.secret_access_key: pulumi.Output[str] = pulumi.Output.secret(self.access_key.secret)
        self.register_outputs({"bucket": self.bucket_name, "user": self.user.name})
