"""EtcdBackupBucket: the stack's own S3 bucket for etcd snapshots, and the KMS key they are encrypted with.

The masters write snapshots into it (node/etcd_backup.py, node/files/.../atomic-etcd-backup); what
they may do there is aws/iam.etcd_backup_policy, what anyone may do there is the bucket's own
policy (aws/iam.backup_bucket_policy). The bucket:

- keeps every version (a snapshot overwritten or deleted stays recoverable for as long as the
  lifecycle keeps noncurrent versions), and expires snapshots after the retention it is given;
- encrypts with its own customer managed key (rotated yearly), by default and by policy: an upload
  that does not ask for SSE-KMS with this key is refused. No S3 Bucket Key, so that the encryption
  context is each object's ARN, which the masters' kms:GenerateDataKey is conditioned on;
- blocks every form of public access and disables ACLs (the bucket owner owns every object);
- refuses requests without TLS, and uploads by any principal but the stack's own roles (tagged with
  its ClusterId); the key carries that tag too, and the masters' permission on it keys on it.

With protectStateful the bucket and its key are protected (`pulumi destroy` stops); without it,
`pulumi destroy` empties the bucket (force_destroy) so that a throw-away stack goes away whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from components import tokens
from components.aws.iam import backup_bucket_policy
from components.facts import CLUSTER_ID_TAG, TAG_NAME

NONCURRENT_DAYS = 7  # how long a snapshot's replaced or deleted versions stay
MULTIPART_DAYS = 1  # an abandoned multipart upload (none are started here) is removed after a day


@dataclass
class EtcdBackupBucketArgs:
    prefix: str  # the stack's prefix in the bucket; the lifecycle applies below it
    retention_days: int
    protect: bool
    tags: Mapping[str, str]
    cluster_id: str  # facts.cluster_id: only roles tagged with it may write (aws/iam.backup_bucket_policy)


def _check_args(args: EtcdBackupBucketArgs) -> None:
    if not args.prefix or args.prefix.startswith("/") or args.prefix.endswith("/"):
        raise ValueError(f"prefix {args.prefix!r} must be a relative key prefix without a trailing slash")
    if not 1 <= args.retention_days <= 3650:
        raise ValueError(f"retention_days {args.retention_days} must be 1 to 3650")
    if not args.cluster_id or args.tags.get(CLUSTER_ID_TAG) != args.cluster_id:
        raise ValueError(f"cluster_id {args.cluster_id!r} must be set and be the tags' {CLUSTER_ID_TAG}: the masters'"
                         " key permission keys on the key's tag")


class EtcdBackupBucket(pulumi.ComponentResource):
    """A versioned, KMS-encrypted, private, TLS-only bucket with a retention lifecycle."""

    bucket: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]

    def __init__(self, name: str, args: EtcdBackupBucketArgs, opts: ResourceOptions | None = None) -> None:
        _check_args(args)
        super().__init__(tokens.ETCD_BACKUP_BUCKET, name, None, opts)
        self._name, self._args = name, args
        stateful = ResourceOptions(parent=self, protect=args.protect)
        child = ResourceOptions(parent=self)

        key = aws.kms.Key(f"{name}-kms", description=f"etcd snapshots below {args.prefix}/",
                          enable_key_rotation=True, deletion_window_in_days=30,
                          tags=self._tagged(f"{name}-kms"), opts=stateful)
        aws.kms.Alias(f"{name}-kms-alias", name=f"alias/{args.prefix.replace('/', '-')}-backups",
                      target_key_id=key.arn, opts=child)
        bucket = aws.s3.Bucket(f"{name}-bucket", force_destroy=not args.protect,
                               tags=self._tagged(f"{name}-bucket"), opts=stateful)
        # One configuration change at a time: S3 answers concurrent ones on a bucket with OperationAborted
        # (409, "a conflicting conditional operation"), e.g. versioning beside the policy
        # (hashicorp/terraform-provider-aws#33552) or the public access block beside it (pulumi/pulumi-aws#1570).
        step: list[pulumi.Resource] = []

        def after_the_last() -> ResourceOptions:
            return ResourceOptions(parent=self, depends_on=list(step))

        step = [aws.s3.BucketOwnershipControls(f"{name}-ownership", bucket=bucket.id,
                                               rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)]
        step = [aws.s3.BucketPublicAccessBlock(f"{name}-public-access", bucket=bucket.id, block_public_acls=True,
                                               block_public_policy=True, ignore_public_acls=True,
                                               restrict_public_buckets=True, opts=after_the_last())]
        step = [aws.s3.BucketVersioning(f"{name}-versioning", bucket=bucket.id,
                                        versioning_configuration={"status": "Enabled"}, opts=after_the_last())]
        step = [aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms",
                                                                "kms_master_key_id": key.arn},
                    "bucket_key_enabled": False}],
            opts=after_the_last())]
        below: aws.s3.BucketLifecycleConfigurationRuleFilterArgsDict = {"prefix": f"{args.prefix}/"}
        step = [aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket.id,
            rules=[
                {"id": "expire-snapshots", "status": "Enabled", "filter": below,
                 "expiration": {"days": args.retention_days},
                 "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_DAYS},
                 "abort_incomplete_multipart_upload": {"days_after_initiation": MULTIPART_DAYS}},
                # once their last version is gone, the delete markers expiration leaves behind go too
                {"id": "remove-expired-delete-markers", "status": "Enabled", "filter": below,
                 "expiration": {"expired_object_delete_marker": True}},
            ],
            opts=after_the_last())]
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
        aws.s3.BucketPolicy(
            f"{name}-policy", bucket=bucket.id,
            policy=pulumi.Output.all(partition, bucket.bucket, key.arn).apply(
                lambda v: backup_bucket_policy(v[0], v[1], v[2], args.cluster_id)),
            opts=after_the_last())

        self.bucket = bucket.bucket
        self.bucket_arn = bucket.arn
        self.kms_key_arn = key.arn
        self.register_outputs({"bucket": self.bucket, "bucketArn": self.bucket_arn, "kmsKeyArn": self.kms_key_arn})

    def _tagged(self, name: str) -> dict[str, str]:
        return {**self._args.tags, TAG_NAME: name}
