"""Stack configuration exactly as the Pulumi CLI hands it to the program.

The CLI merges `Pulumi.yaml`'s `config:` block under the stack file: declared
project keys take their default when the stack does not set them, namespaced
keys (`aws:region: ...`) are inherited as values, a declared key with neither a
value nor a default is an error, and typed keys must match their type. Values
reach the program as strings (arrays and objects as JSON). Every key of the stack
file is passed on, known or not: refusing unknown keys is the program's job
(settings/load.py), as it is under `pulumi up`.

`secure:` values are secrets. The CLI decrypts them before the program runs, and the
program checks their values; offline they cannot be decrypted, so a run needs each one
given in plain text (`secret_overrides`, the preview's --secret), and refuses otherwise.

What the CLI refuses is refused here too, in one line that names the setting, the value
(escaped and cut short) and what is allowed, with the stack file and line it comes from.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.settings.rules import closest, one_line, shown

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
    root: Path = PROJECT_DIR

    def shown_path(self, path: Path) -> str:
        """A file as error lines name it: relative to the project when inside it."""
        with contextlib.suppress(ValueError):
            return str(path.resolve().relative_to(self.root.resolve()))
        return str(path)

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
    return Project(name=name, stack_config_dir=config_dir, schema=schema, inherited=inherited, root=project_dir)


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


def _key_problem(key: str) -> str | None:
    """The CLI parses every key as <namespace>:<name> (pkg/config/key.go ParseKey)."""
    namespace, _, name = key.partition(":")
    if not namespace or not name or ":" in name or not key.isprintable() or key != key.strip():
        return "is not a config key: expected <namespace>:<name> or a bare name, e.g. minionCount"
    return None


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


_TYPE_FORMS = {
    "integer": "a whole number, e.g. 3",
    "boolean": "true or false",
    "string": "text, not a list or a map",
    "array": "a list, e.g. [\"198.51.100.0/24\"] (a YAML list in the stack file; --set KEY='[...]')",
    "array<string>": 'a list of strings, e.g. ["198.51.100.0/24"] (a YAML list in the stack file;'
    " --set KEY='[...]')",
}


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


_DEFAULT_TAGS = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map")


def _stack_file_nodes(text: str, where: str) -> tuple[yaml.MappingNode | None, set[int]]:
    """The stack file's top-level mapping and the lines holding YAML aliases; what the CLI's YAML
    reading refuses (bad syntax, several documents) is refused here in one line."""
    try:
        aliases = {event.start_mark.line + 1 for event in yaml.parse(text, Loader=yaml.BaseLoader)
                   if isinstance(event, yaml.AliasEvent) and event.start_mark is not None}
        root = yaml.compose(text, Loader=yaml.BaseLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        at = f":{mark.line + 1}" if mark is not None else ""
        problem = ": ".join(part for part in (error.context, error.problem) if part) or "not YAML"
        raise StackConfigError(f"{where}{at}: not valid YAML: {one_line(problem)}") from None
    except yaml.YAMLError as error:
        raise StackConfigError(f"{where}: not valid YAML: {one_line(str(error))}") from None
    if root is None or (isinstance(root, yaml.ScalarNode) and root.value == ""):
        return None, aliases
    if not isinstance(root, yaml.MappingNode):
        raise StackConfigError(f"{where}:{root.start_mark.line + 1}: a stack file is a mapping with a config: block,"
                               f" not a {_node_kind(root)}")
    return root, aliases


def _plain_yaml_problem(lines: range, value_node: yaml.Node, aliases: set[int]) -> str | None:
    """Aliases (one value shared by two keys) and explicit tags (`!!int 3`) are YAML the CLI's
    reader would take differently from this one, or not at all: the value is written out instead.
    `lines` are the entry's lines (an alias's node is its anchor's, found elsewhere in the file)."""
    if any(line in lines for line in aliases):
        return "a YAML alias (*name) is not used in stack files: write the value out"
    for node in _walk(value_node):
        if node.tag not in _DEFAULT_TAGS:
            return f"a YAML tag ({shown(node.tag.replace('tag:yaml.org,2002:', '!!'))}) is not used in stack files:" \
                   " write the plain value"
    return None


def _walk(node: yaml.Node) -> Iterator[yaml.Node]:
    yield node
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _walk(key)
            yield from _walk(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _walk(item)


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "map"
    return "list" if isinstance(node, yaml.SequenceNode) else "single value"


def _read_stack_file(project: Project, path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The stack file's config, qualified, and the line each key is set on."""
    where = project.shown_path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise StackConfigError(f"{where}: not UTF-8 text (byte {error.start} is not)") from None
    root, aliases = _stack_file_nodes(text, where)
    if root is None:
        return {}, {}
    config_node: yaml.Node | None = None
    seen_top: set[str] = set()
    for key_node, value_node in root.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.value in seen_top:
            raise StackConfigError(f"{where}:{key_node.start_mark.line + 1}: a stack file's top-level keys are plain"
                                   " names, each once (config:, encryptionsalt:, ...)")
        seen_top.add(key_node.value)
        if key_node.value not in STACK_FILE_KEYS:
            # The CLI ignores it: a misspelt secretsprovider would leave the stack on the default provider.
            guess = closest(key_node.value, STACK_FILE_KEYS)
            hint = f"did you mean {guess}?" if guess else f"a stack file holds {', '.join(STACK_FILE_KEYS)}"
            raise StackConfigError(f"{where}:{key_node.start_mark.line + 1}: {shown(key_node.value)} is not a stack"
                                   f" file key (the CLI would ignore it): {hint}")
        if key_node.value == "config":
            config_node = value_node
    if config_node is None or (isinstance(config_node, yaml.ScalarNode) and config_node.value == ""):
        return {}, {}
    if not isinstance(config_node, yaml.MappingNode):
        raise StackConfigError(f"{where}:{config_node.start_mark.line + 1}: config: must be a map of settings"
                               f" (key: value, one per line), not a {_node_kind(config_node)}")
    loader = yaml.BaseLoader("")
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    starts = [key_node.start_mark.line + 1 for key_node, _ in config_node.value] + [config_node.end_mark.line + 2]
    for index, (key_node, value_node) in enumerate(config_node.value):
        line = starts[index]
        if not isinstance(key_node, yaml.ScalarNode):
            raise StackConfigError(f"{where}:{line}: a config key is a name such as minionCount, not a"
                                   f" {_node_kind(key_node)}")
        key = _qualify(project.name, key_node.value)
        problem = _key_problem(key)
        if problem is not None:
            raise StackConfigError(f"{where}:{line}: config {shown(key_node.value)} {problem}")
        if key in values:
            raise StackConfigError(f"{where}:{line}: config {shown(key)} is set twice (first on line {lines[key]}):"
                                   " keep one")
        odd = _plain_yaml_problem(range(line, starts[index + 1]), value_node, aliases)
        if odd is not None:
            raise StackConfigError(f"{where}:{line}: config {shown(key)}: {odd}")
        values[key] = loader.construct_object(value_node, deep=True)
        lines[key] = line
    return values, lines


def _stack_path(project: Project, stack: str, config_file: Path | None) -> Path:
    path = config_file if config_file is not None else project.stack_file(stack)
    if not path.is_file():
        if config_file is not None:
            raise StackConfigError(f"--config-file {shown(str(config_file))}: no such file")
        known = ", ".join(project.stacks()) or "none"
        raise StackConfigError(f"no stack {shown(stack)}: {project.shown_path(path)} does not exist (stacks: {known})")
    return path


def resolve_stack_config(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    secret_overrides: Mapping[str, str] | None = None,
    project_dir: Path = PROJECT_DIR,
    config_file: Path | None = None,
) -> StackConfig:
    """The config map the CLI would pass for `stack`, with `overrides` as if set by `pulumi config set`
    and `secret_overrides` as if by `pulumi config set --secret`. `config_file` replaces the stack's
    file, as `pulumi preview --config-file` does."""
    project = load_project(project_dir)
    path = _stack_path(project, stack, config_file)
    raw, lines = _read_stack_file(project, path)
    origin = {key: f"{project.shown_path(path)}:{line}: " for key, line in lines.items()}
    for given, plaintext in ((overrides or {}, False), (secret_overrides or {}, True)):
        for bare, value in given.items():
            key = _qualify(project.name, bare)
            problem = _key_problem(key)
            if problem is not None:
                raise StackConfigError(f"--set {shown(bare)} {problem}")
            raw[key] = {"secure": value} if plaintext else value
            origin.pop(key, None)

    _apply_project_config(project, raw, stack)
    return _encode_all(project, raw, stack, _qualify_all(project.name, secret_overrides), origin)


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


def _encode_all(project: Project, raw: dict[str, Any], stack: str, plaintext_secrets: set[str],
                origin: dict[str, str]) -> StackConfig:
    result = StackConfig(project=project.name, stack=stack)
    for key, value in sorted(raw.items()):
        where = origin.get(key, "")
        if isinstance(value, dict) and set(value) == {"secure"}:
            if key not in plaintext_secrets:
                # Real ciphertext cannot be read offline, and the program checks every secret's
                # value (pulumi preview hands it decrypted): a placeholder would be checked instead.
                raise StackConfigError(
                    f"{where}config {shown(key)}=[secret]: is encrypted and the offline preview cannot decrypt it"
                    f" (pulumi preview does): give it for this run with --secret {shown(key.split(':', 1)[1])}=..."
                )
            result.values[key] = value["secure"]
            result.secret_keys.append(key)
            continue
        declared = project.schema.get(key)
        if declared is not None and not _matches(value, declared.type, declared.items):
            described = _describe(declared)
            raise StackConfigError(
                f"{where}config {shown(key)}={shown(value)}: must be of type {described} (Pulumi.yaml):"
                f" {_TYPE_FORMS.get(described, described)}"
            )
        if declared is not None and declared.secret:
            raise StackConfigError(f"{where}config {shown(key)}=[secret]: must be encrypted as it's secret:"
                                   f" pulumi config set --secret {key.split(':', 1)[1]}")
        result.values[key] = _encode(value)
    return result


def _qualify_all(project: str, keys: Mapping[str, Any] | None) -> set[str]:
    return {_qualify(project, k) for k in (keys or {})}
