"""Print the README's settings tables from Pulumi.yaml (the one home of defaults).

Two tables: how to set a value of each type with `pulumi config set` (the form the CLI accepts
for that type: lists only through `--path`, secrets with `--secret`), then every setting with its
type, default and meaning. tests/tools/test_settings_table.py replays each documented command
through the harness (tools/harness/config_set.py) and checks that it sets the value.
"""

from __future__ import annotations

import json
import shlex

from tools.harness.pulumi_project import load_project

SECRETS = {
    "mysqlRootPassword": "MySQL root password (generated when unset).",
    "mysqlReplicationPassword": "Password of the replication user (generated when unset).",
    "mysqlBackupPassword": "Password of the clone/backup user (generated when unset).",
    "mysqlVerifyPassword": "Password of the least-privilege `verify` account of `make verify` (generated when unset).",
    "mysqlExporterPassword": "Password of the mysqld exporter's least-privilege `exporter` account (generated when"
                             " unset).",
    "mysqlBackupAccessKeyId": "clusterMode=existing with mysqlBackupEnabled: the access key id the pods use for"
                              " mysqlBackupBucket (the aws cluster makes its own, scoped to the set's prefix).",
    "mysqlBackupSecretAccessKey": "clusterMode=existing with mysqlBackupEnabled: that access key's secret.",
    "kubeconfig": "kubeconfig of an existing cluster (clusterMode=existing; empty = the ambient one).",
}

# One example per type: (setting, value). Each must be declared with that type (checked below), so
# renaming a setting in Pulumi.yaml breaks the table instead of leaving a stale command.
EXAMPLES = {
    "string": ("clusterName", "atomic-staging"),
    "integer": ("minionCount", "4"),
    "boolean": ("enableCockpit", "true"),
    "array": ("adminCidrs", "203.0.113.0/24"),
    "secret": ("mysqlRootPassword", "$(openssl rand -base64 24)"),
    "provider": ("aws:region", "us-west-2"),
}
NOTES = {
    "string": "Stored as text, as every top-level value is.",
    "integer": "Stored as the text `4`; the type check accepts digits.",
    "boolean": "`true` or `false`, nothing else (`yes` is refused).",
    "array": "One item per command: `'{key}[1]'` for the second, and so on (index 0 of a list the stack does "
             "not have yet starts it). `pulumi config set {key} '[\"...\"]'` stores a string, which the CLI "
             "refuses: `must be of type 'array<string>'`.",
    "secret": "Encrypted with the stack's secrets provider; never in the stack file in plain text.",
    "provider": "A provider's key, with its namespace.",
}


def _quote(value: str) -> str:
    """Shell form of a value: $(...) in double quotes, anything else only as quoted as it needs."""
    return f'"{value}"' if value.startswith("$(") else shlex.quote(value)


def command(type_name: str, key: str, value: str) -> str:
    """The `pulumi config set` form that works for a setting of this type."""
    if type_name == "array":
        return f"pulumi config set --path {shlex.quote(key + '[0]')} {_quote(value)}"
    if type_name == "secret":
        return f"pulumi config set --secret {key} {_quote(value)}"
    return f"pulumi config set {key} {_quote(value)}"


def type_commands() -> list[tuple[str, str, str]]:
    """(type, command, note) for every type the settings table lists."""
    project = load_project()
    types = {schema.type or "" for schema in project.schema.values()} | {"secret", "provider"}
    rows: list[tuple[str, str, str]] = []
    for type_name in ("string", "integer", "boolean", "array", "secret", "provider"):
        if type_name not in types:
            continue
        key, value = EXAMPLES[type_name]
        declared = project.schema.get(f"{project.name}:{key}")
        if type_name == "secret":
            assert key in SECRETS, key
        elif type_name == "provider":
            assert key in project.inherited, key
        else:
            assert declared is not None and declared.type == type_name, (key, type_name)
        rows.append((type_name, command(type_name, key, value), NOTES[type_name].format(key=key)))
    unknown = types - set(EXAMPLES)
    assert not unknown, f"no documented `pulumi config set` form for type(s) {sorted(unknown)}"
    for key, value in project.inherited.items():
        if isinstance(value, list):
            rows.append(("provider (list)", f"pulumi config set --path {shlex.quote(key + '[0]')} "
                         f"{_quote(str(value[0]))}",
                         f"A stack's list replaces Pulumi.yaml's `{json.dumps(value)}` whole: set every item."))
    return rows


def _default(value: object) -> str:
    if isinstance(value, str):
        return f"`{value}`" if value else "(empty)"
    return f"`{json.dumps(value)}`"


def table() -> str:
    project = load_project()
    rows = ["| type | the command that works (example) | note |", "|---|---|---|"]
    rows += [f"| {type_name} | `{cmd}` | {note} |" for type_name, cmd, note in type_commands()]
    rows += ["", "| setting | type | default | meaning |", "|---|---|---|---|"]
    for key, schema in project.schema.items():
        rows.append(f"| `{key.split(':', 1)[1]}` | {schema.type} | {_default(schema.default)} | {schema.description} |")
    for key, meaning in SECRETS.items():
        rows.append(f"| `{key}` | secret | (none) | {meaning} |")
    for key, value in project.inherited.items():
        rows.append(f"| `{key}` | provider | {_default(value)} | Set in Pulumi.yaml; override per stack. |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
