"""Print the README's settings table from Pulumi.yaml (the one home of defaults)."""

from __future__ import annotations

import json

from tools.harness.pulumi_project import load_project

SECRETS = {
    "mysqlRootPassword": "MySQL root password (generated when unset).",
    "mysqlReplicationPassword": "Password of the replication user (generated when unset).",
    "mysqlBackupPassword": "Password of the clone/backup user (generated when unset).",
    "mysqlVerifyPassword": "Password of the least-privilege `verify` account of `make verify` (generated when unset).",
    "kubeconfig": "kubeconfig of an existing cluster (clusterMode=existing; empty = the ambient one).",
}


def _default(value: object) -> str:
    if isinstance(value, str):
        return f"`{value}`" if value else "(empty)"
    return f"`{json.dumps(value)}`"


def table() -> str:
    project = load_project()
    rows = ["| setting | type | default | meaning |", "|---|---|---|---|"]
    for key, schema in project.schema.items():
        rows.append(f"| `{key.split(':', 1)[1]}` | {schema.type} | {_default(schema.default)} | {schema.description} |")
    for key, meaning in SECRETS.items():
        rows.append(f"| `{key}` | secret | (none) | {meaning} |")
    for key, value in project.inherited.items():
        rows.append(f"| `{key}` | provider | {_default(value)} | Set in Pulumi.yaml; override per stack. |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
