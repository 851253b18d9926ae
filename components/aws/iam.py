"""Every IAM document of the cluster: who may assume the node roles, and what each role may do.

Least privilege, each statement scoped by path or by the tags of components/facts.py: a node
reads and decrypts only its own SSM path; a minion manages only volumes tagged for its own
cluster and attaches them only to instances of that cluster; a master writes etcd snapshots only
below its own stack's prefix, with its own stack's key, into a bucket only its stack's roles write.
"""

from __future__ import annotations

import json
import re
from typing import Any

from components.facts import CLUSTER_ID_TAG, ebs_volume_tags

_PARTITION = re.compile(r"^aws(-[a-z]+)*$")


def assume_role_policy() -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def node_policy(partition: str, region: str, account: str, node_path: str, key_arn: str) -> str:
    """Read this node's SSM path and decrypt only parameters below it (KMS encryption context)."""
    base = f"arn:{partition}:ssm:{region}:{account}:parameter{node_path}"
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadOwnPath", "Effect": "Allow", "Action": ["ssm:GetParametersByPath"], "Resource": [base]},
        {"Sid": "ReadOwnParameters", "Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParameters"],
         "Resource": [f"{base}/*"]},
        {"Sid": "DecryptOwnParameters", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [key_arn],
         "Condition": {"StringLike": {"kms:EncryptionContext:PARAMETER_ARN": f"{base}/*"}}},
    ]})


DESCRIBE_ACTIONS = [
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeInstances",
    "ec2:DescribeSnapshots",
    "ec2:DescribeTags",
    "ec2:DescribeVolumes",
    "ec2:DescribeVolumesModifications",
    "ec2:DescribeVolumeStatus",
]


def ebs_csi_policy(partition: str, cluster_id: str) -> str:
    """The IAM policy the minions' instance role needs for the EBS CSI controller.

    Why the node role: a self-managed cluster has no IRSA (no OIDC issuer AWS trusts) and no
    EKS Pod Identity agent, and the controller runs with hostNetwork so that the AWS SDK gets
    the minion's instance-profile credentials from IMDS (IMDSv2 hop limit 1 keeps them from
    every pod-network pod). Anything else with hostNetwork on a minion could use them too,
    which is why nothing here reaches beyond this cluster's own volumes.

    AWS's managed AmazonEBSCSIDriverPolicy scopes CreateVolume/DeleteVolume by the tag
    ebs.csi.aws.com/cluster=true (any CSI driver's volume in the account) and leaves
    Attach/Detach/Modify/CreateSnapshot/DeleteTags unconditioned. Here every mutating action
    is conditioned: volumes must carry ebs.csi.aws.com/cluster=true AND
    kubernetes.io/cluster/<cluster_id>=owned (what --k8s-tag-cluster-id makes the driver set),
    tags may only be written while creating such a volume, and Attach/Detach only target
    instances tagged ClusterId=<cluster_id> (components/aws/cluster.py tags every node so).
    cluster_id is unique to the stack (facts.cluster_id): a dev minion cannot touch prod's volumes
    in a shared account.
    Dropped from the managed policy: snapshot actions (no snapshotter runs) and DeleteTags
    (only VolumeAttributesClass modification uses it, which is not enabled).
    Describe* stay on "*": EC2 supports no resource-level permissions for them (read-only).
    Volumes are encrypted with the account's default EBS key (aws/ebs), which needs no KMS
    permission; an account whose EBS default is a customer key must add kms:CreateGrant etc.
    """
    if not _PARTITION.match(partition):
        raise ValueError(f"partition {partition!r} is not an AWS partition name")
    volume = f"arn:{partition}:ec2:*:*:volume/*"
    instance = f"arn:{partition}:ec2:*:*:instance/*"
    owned = ebs_volume_tags(cluster_id)
    requested = {f"aws:RequestTag/{key}": value for key, value in owned.items()}
    carried = {f"ec2:ResourceTag/{key}": value for key, value in owned.items()}
    statements: list[dict[str, Any]] = [
        {"Sid": "DescribeOnly", "Effect": "Allow", "Action": DESCRIBE_ACTIONS, "Resource": "*"},
        {
            "Sid": "CreateClusterVolumes",
            "Effect": "Allow",
            "Action": ["ec2:CreateVolume"],
            "Resource": volume,
            "Condition": {"StringEquals": requested},
        },
        {
            "Sid": "TagOnlyWhileCreating",
            "Effect": "Allow",
            "Action": ["ec2:CreateTags"],
            "Resource": volume,
            "Condition": {"StringEquals": {"ec2:CreateAction": "CreateVolume", **requested}},
        },
        {
            "Sid": "ManageClusterVolumes",
            "Effect": "Allow",
            "Action": ["ec2:AttachVolume", "ec2:DetachVolume", "ec2:ModifyVolume", "ec2:DeleteVolume"],
            "Resource": volume,
            "Condition": {"StringEquals": carried},
        },
        {
            "Sid": "AttachToClusterNodes",
            "Effect": "Allow",
            "Action": ["ec2:AttachVolume", "ec2:DetachVolume"],
            "Resource": instance,
            "Condition": {"StringEquals": {f"ec2:ResourceTag/{CLUSTER_ID_TAG}": cluster_id}},
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, indent=2)


def backup_bucket_policy(partition: str, bucket: str, key_arn: str, cluster_id: str) -> str:
    """The backup bucket's own policy: TLS only, every object written SSE-KMS with the stack's key, and
    written only by this stack's node roles.

    Denies, for every principal of any account: any request without TLS (aws:SecureTransport), any
    PutObject that does not ask for aws:kms or names another key, and any PutObject by a principal not
    tagged ClusterId=<cluster_id> (facts.CLUSTER_ID_TAG: every node role of this stack carries it, no
    other stack's does; a role's tags are its sessions' aws:PrincipalTag, IAM User Guide, "AWS global
    condition context keys"). With the bucket's default encryption on the same key the first two are
    belt and braces; the third holds even if some other stack's role were granted s3:PutObject on "*":
    no snapshot of this stack can be overwritten from elsewhere (and versioning keeps the old one).
    """
    if not _PARTITION.match(partition):
        raise ValueError(f"partition {partition!r} is not an AWS partition name")
    bucket_arn = f"arn:{partition}:s3:::{bucket}"
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "KmsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"{bucket_arn}/*",
         "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}},
        {"Sid": "TheStacksKeyOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"{bucket_arn}/*",
         "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn}}},
        {"Sid": "TheStacksNodesOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"{bucket_arn}/*",
         "Condition": {"StringNotEquals": {f"aws:PrincipalTag/{CLUSTER_ID_TAG}": cluster_id}}},
    ]}, indent=2)


def etcd_backup_policy(partition: str, region: str, bucket: str, prefix: str, key_arn: str, cluster_id: str) -> str:
    """What a master may do with backups: write snapshots below the stack's own prefix, and no more.

    No Get, List or Delete: a master (or whoever holds its credentials) cannot read, list or remove a
    snapshot, and the bucket's versioning keeps one that is overwritten. kms:GenerateDataKey only,
    only through S3, only for objects below the prefix (SSE-KMS without an S3 Bucket Key puts the
    object's ARN in the encryption context) and only with a key tagged with this stack's ClusterId
    (KMS evaluates aws:ResourceTag on key operations: AWS KMS Developer Guide, "Use tags to control
    access to KMS keys"), as the EBS CSI policy keys on the volumes' tags. The prefix names the stack
    (backup_prefix), so even in one shared bucket no stack's master would reach another's snapshots.
    The uploads are single PutObjects, which need no kms:Decrypt (a multipart upload would: S3
    decrypts the parts to assemble them, AWS knowledge center "s3-multipart-kms-decrypt").
    """
    if not _PARTITION.match(partition):
        raise ValueError(f"partition {partition!r} is not an AWS partition name")
    objects = f"arn:{partition}:s3:::{bucket}/{prefix.strip('/')}/*"
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "PutSnapshots", "Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [objects]},
        {"Sid": "EncryptSnapshots", "Effect": "Allow", "Action": ["kms:GenerateDataKey"], "Resource": [key_arn],
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com",
                                        f"aws:ResourceTag/{CLUSTER_ID_TAG}": cluster_id},
                       "StringLike": {"kms:EncryptionContext:aws:s3:arn": objects}}},
    ]}, indent=2)
