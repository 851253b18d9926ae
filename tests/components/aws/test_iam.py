"""The node roles' IAM documents."""

from __future__ import annotations

import json

from components.aws.iam import node_policy


def test_node_policy_reads_and_decrypts_only_the_node_path() -> None:
    doc = json.loads(node_policy("aws", "us-east-1", "123456789012", "/atomic-mysql/test/atomic/atomic-minion-1",
                                   "arn:aws:kms:us-east-1:123456789012:key/k"))
    base = "arn:aws:ssm:us-east-1:123456789012:parameter/atomic-mysql/test/atomic/atomic-minion-1"
    resources = [r for s in doc["Statement"] for r in s["Resource"]]
    assert resources == [base, f"{base}/*", "arn:aws:kms:us-east-1:123456789012:key/k"]
    decrypt = doc["Statement"][2]
    assert decrypt["Condition"] == {"StringLike": {"kms:EncryptionContext:PARAMETER_ARN": f"{base}/*"}}
    assert all("*" not in a for s in doc["Statement"] for a in s["Action"])
