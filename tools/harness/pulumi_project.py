"""Stack configuration exactly as the Pulumi CLI hands it to the program.

The CLI merges `Pulumi.yaml`'s `config:` block under the stack file: declared
project keys take their default when the stack does not set them, namespaced
keys (`aws:region: ...`) are inherited as values, a declared key with neither a
value nor a default is an error, and typed keys must match their type. Values
reach the program as strings (arrays and objects as JSON). `secure:` values are
secrets; offline we cannot decrypt them, so they become the secret "[secret]".

Error texts follow the CLI's, so that what `make preview` says is what
`pulumi preview` would say.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SECRET_PLACEHOLDER = "[secret]"
PROJECT_DIR = Path(__file__).resolve().parents[2]


class StackConfigError(ValueError):
    """The stack's configuration would be refused by the Pulumi CLI."""


@dataclass(frozen=True)
class ConfigKeySchema:
    type: str | None
    items: dict[str, Any] | None
    default: Any
    has_default: bool
    description: str
    secret: bool


@dataclass
class StackConfig:
    project: str
    stack: str
    values: dict[str, str] = field(default_factory=dict)
    secret_keys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Project:
    name: str
    stack_config_dir: Path
    schema: dict[str, ConfigKeySchema]
    inherited: dict[str, Any]

    def stack_file(self, stack: str) -> Path:
        return self.stack_config_dir / f"Pulumi.{stack}.yaml"

    def stacks(self) -> list[str]:
        return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in self.stack_config_dir.glob("Pulumi.*.yaml"))


def load_project(project_dir: Path = PROJECT_DIR) -> Project:
    data = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())
    name = data["name"]
    schema: dict[str, ConfigKeySchema] = {}
    inherited: dict[str, Any] = {}
    for key, spec in (data.get("config") or {}).items():
        if ":" in key and not key.startswith(f"{name}:"):
            # Namespaced keys of other packages carry a value, never a type.
            inherited[key] = spec["value"] if isinstance(spec, dict) else spec
            continue
        bare = key.split(":", 1)[-1]
        if isinstance(spec, dict) and ("type" in spec or "default" in spec or "secret" in spec):
            schema[f"{name}:{bare}"] = ConfigKeySchema(
                type=spec.get("type"),
                items=spec.get("items"),
                default=spec.get("default"),
                has_default="default" in spec,
                description=spec.get("description", ""),
                secret=bool(spec.get("secret", False)),
            )
        else:
            schema[f"{name}:{bare}"] = ConfigKeySchema(None, None, spec, True, "", False)
    config_dir = project_dir / data.get("stackConfigDir", ".")
    return Project(name=name, stack_config_dir=config_dir, schema=schema, inherited=inherited)


# The fields of the CLI's ProjectStack (sdk/go/common/workspace/project.go): secretsprovider,
# encryptedkey (a cloud provider's data key, written by the CLI), encryptionsalt (the passphrase
# provider's, written by the CLI), config and environment. The CLI ignores any other key, so a
# misspelt `secretprovider` would silently leave a stack on the backend's default provider.
STACK_FILE_KEYS = ("secretsprovider", "encryptedkey", "encryptionsalt", "config", "environment")


@dataclass(frozen=True)
class StackFile:
    """The parts of a stack file besides its config: how its secrets are encrypted."""

    path: Path
    secrets_provider: str  # "" = the backend's default: passphrase on a local or object-store backend
    encrypted_key: str
    encryption_salt: str
    other_keys: tuple[str, ...]  # keys the CLI does not know

    @property
    def provider_kind(self) -> str:
        """awskms, passphrase, default, ... (the scheme of a cloud provider's URL)."""
        if "://" in self.secrets_provider:
            return self.secrets_provider.split("://", 1)[0]
        return self.secrets_provider or ("passphrase" if self.encryption_salt else "default")


def read_stack_file(stack: str, project_dir: Path = PROJECT_DIR) -> StackFile:
    project = load_project(project_dir)
    path = project.stack_file(stack)
    if not path.is_file():
        raise StackConfigError(f"no stack '{stack}': {path} does not exist (stacks: {', '.join(project.stacks())})")
    data = yaml.load(path.read_text(), Loader=yaml.BaseLoader) or {}
    return StackFile(
        path=path,
        secrets_provider=str(data.get("secretsprovider") or ""),
        encrypted_key=str(data.get("encryptedkey") or ""),
        encryption_salt=str(data.get("encryptionsalt") or ""),
        other_keys=tuple(sorted(k for k in data if k not in STACK_FILE_KEYS)),
    )


def _qualify(project: str, key: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _matches(value: Any, type_name: str | None, items: dict[str, Any] | None) -> bool:
    if type_name is None:
        return True
    if type_name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value) is not None
        )
    if type_name == "boolean":
        return isinstance(value, bool) or value in ("true", "false")
    if type_name == "string":
        # The CLI keeps a stack scalar's text: `version: 1.30` is the string "1.30".
        return not isinstance(value, (dict, list))
    if type_name == "array":
        # A string is not an array, even one holding JSON: `pulumi config set` stores a list
        # only through --path or a YAML list in the stack file.
        return isinstance(value, list) and all(
            _matches(item, (items or {}).get("type"), (items or {}).get("items")) for item in value
        )
    return False


def _describe(schema: ConfigKeySchema) -> str:
    if schema.type == "array" and schema.items:
        return f"array<{schema.items.get('type')}>"
    return schema.type or ""


def _encode(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _read_stack_file(project: Project, stack: str) -> dict[str, Any]:
    path = project.stack_file(stack)
    if not path.is_file():
        known = ", ".join(project.stacks()) or "none"
        raise StackConfigError(f"no stack '{stack}': {path} does not exist (stacks: {known})")
    # BaseLoader keeps every scalar as its source text, as the CLI does: `flag: yes` stays
    # "yes" (not a boolean for the CLI), `version: 1.30` stays "1.30".
    data = yaml.load(path.read_text(), Loader=yaml.BaseLoader) or {}
    return {_qualify(project.name, k): v for k, v in (data.get("config") or {}).items()}


def resolve_stack_config(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    secret_overrides: Mapping[str, str] | None = None,
    project_dir: Path = PROJECT_DIR,
) -> StackConfig:
    """The config map the CLI would pass for `stack`, with `overrides` as if set by `pulumi config set`."""
    project = load_project(project_dir)
    raw = _read_stack_file(project, stack)
    raw.update({_qualify(project.name, k): v for k, v in (overrides or {}).items()})
    raw.update({_qualify(project.name, k): {"secure": v} for k, v in (secret_overrides or {}).items()})

    _apply_project_config(project, raw, stack)
    return _encode_all(project, raw, stack, plaintext_secrets=_qualify_all(project.name, secret_overrides))


def _apply_project_config(project: Project, raw: dict[str, Any], stack: str) -> None:
    """Fill in defaults and inherited provider values; refuse declared keys left without a value."""
    missing = [
        key.split(":", 1)[1] for key, schema in project.schema.items() if key not in raw and not schema.has_default
    ]
    if missing:
        quoted = [f"'{m}'" for m in sorted(missing)]
        names = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
        plural = "s" if len(missing) > 1 else ""
        raise StackConfigError(f"Stack '{stack}' is missing configuration value{plural} {names}")
    for key, schema in project.schema.items():
        raw.setdefault(key, schema.default)
    for key, value in project.inherited.items():
        raw.setdefault(key, value)


def _encode_all(project: Project, raw: dict[str, Any], stack: str, plaintext_secrets: set[str]) -> StackConfig:
    result = StackConfig(project=project.name, stack=stack)
    for key, value in sorted(raw.items()):
        if isinstance(value, dict) and set(value) == {"secure"}:
            # Real ciphertext cannot be read offline; only a test's plaintext secret passes through.
            result.values[key] = value["secure"] if key in plaintext_secrets else SECRET_PLACEHOLDER
            result.secret_keys.append(key)
            continue
        declared = project.schema.get(key)
        if declared is not None and not _matches(value, declared.type, declared.items):
            bare = key.split(":", 1)[1]
            raise StackConfigError(
                f"Stack '{stack}' with configuration key '{bare}' must be of type '{_describe(declared)}'"
            )
        if declared is not None and declared.secret:
            raise StackConfigError(f"Stack '{stack}' with configuration key '{key}' must be encrypted as it's secret")
        result.values[key] = _encode(value)
    return result


def _qualify_all(project: str, keys: Mapping[str, Any] | None) -> set[str]:
    return {_qualify(project, k) for k in (keys or {})}
