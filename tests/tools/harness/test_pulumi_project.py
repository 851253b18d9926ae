"""The offline harness hands the program the config the Pulumi CLI would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_DIR
from tools.harness.pulumi_project import SECRET_PLACEHOLDER, StackConfigError, load_project, resolve_stack_config

PROJECT_YAML = """
name: demo
runtime: python
stackConfigDir: stacks
config:
  aws:region: us-west-2
  count:
    type: integer
    default: 3
  flag:
    type: boolean
    default: false
  cidrs:
    type: array
    items:
      type: string
    default: []
  label:
    type: string
    default: hello
  required:
    type: string
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text(PROJECT_YAML)
    (tmp_path / "stacks").mkdir()
    return tmp_path


def write_stack(project: Path, config: dict[str, object]) -> None:
    (project / "stacks" / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": config}))


def test_defaults_apply_under_stack_values(project: Path) -> None:
    write_stack(project, {"demo:count": 5, "required": "x", "demo:cidrs": ["10.0.0.0/8"]})
    config = resolve_stack_config("dev", project_dir=project)
    assert config.values == {
        "aws:region": "us-west-2",
        "demo:count": "5",
        "demo:flag": "false",
        "demo:cidrs": json.dumps(["10.0.0.0/8"]),
        "demo:label": "hello",
        "demo:required": "x",
    }
    assert config.secret_keys == []


def test_stack_value_wins_over_inherited_namespaced_value(project: Path) -> None:
    write_stack(project, {"aws:region": "eu-west-1", "demo:required": "x"})
    assert resolve_stack_config("dev", project_dir=project).values["aws:region"] == "eu-west-1"


def test_overrides_act_like_config_set(project: Path) -> None:
    write_stack(project, {"demo:required": "x"})
    config = resolve_stack_config("dev", overrides={"count": "7", "flag": True}, project_dir=project)
    assert config.values["demo:count"] == "7"
    assert config.values["demo:flag"] == "true"


def test_secure_values_become_secrets_that_are_never_revealed(project: Path) -> None:
    write_stack(project, {"demo:required": "x", "demo:password": {"secure": "v1:abcdef=="}})
    config = resolve_stack_config("dev", project_dir=project)
    assert config.values["demo:password"] == SECRET_PLACEHOLDER
    assert config.secret_keys == ["demo:password"]


def test_missing_value_without_default_is_the_cli_error(project: Path) -> None:
    write_stack(project, {})
    with pytest.raises(StackConfigError, match="Stack 'dev' is missing configuration value 'required'"):
        resolve_stack_config("dev", project_dir=project)


@pytest.mark.parametrize(
    ("key", "value", "type_name"),
    [
        ("count", "three", "integer"),
        ("flag", "yes", "boolean"),
        ("cidrs", "10.0.0.0/8", "array<string>"),
        ("cidrs", '["10.0.0.0/8"]', "array<string>"),
        ("label", {"nested": "map"}, "string"),
    ],
)
def test_type_mismatch_is_the_cli_error(project: Path, key: str, value: object, type_name: str) -> None:
    write_stack(project, {"demo:required": "x", f"demo:{key}": value})
    with pytest.raises(StackConfigError, match=f"configuration key '{key}' must be of type '{type_name}'"):
        resolve_stack_config("dev", project_dir=project)


def test_stack_scalars_are_read_as_their_text_like_the_cli(project: Path) -> None:
    """YAML 1.1 would make `yes` a boolean and `1.30` the float 1.3; the CLI keeps the text."""
    (project / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  demo:required: x\n  demo:label: 1.30\n")
    assert resolve_stack_config("dev", project_dir=project).values["demo:label"] == "1.30"
    (project / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  demo:required: x\n  demo:flag: yes\n")
    with pytest.raises(StackConfigError, match="configuration key 'flag' must be of type 'boolean'"):
        resolve_stack_config("dev", project_dir=project)


def test_missing_values_are_listed_sorted_like_the_cli(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: demo\nruntime: python\nconfig:\n  zeta:\n    type: string\n  alpha:\n    type: string\n"
        "  mid:\n    type: string\n"
    )
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    with pytest.raises(StackConfigError, match=r"missing configuration values 'alpha', 'mid' and 'zeta'$"):
        resolve_stack_config("dev", project_dir=tmp_path)


def test_unknown_stack_names_the_known_ones(project: Path) -> None:
    write_stack(project, {"demo:required": "x"})
    with pytest.raises(StackConfigError, match=r"no stack 'prod'.*stacks: dev"):
        resolve_stack_config("prod", project_dir=project)


def test_every_project_setting_is_declared_with_type_description_and_default() -> None:
    project = load_project()
    assert project.name == "atomic-mysql"
    for key, schema in project.schema.items():
        assert schema.type in ("string", "integer", "boolean", "array"), key
        assert schema.description, key
        assert schema.has_default, key
    assert project.inherited["pulumi:disable-default-providers"] == ["kubernetes"]


def test_every_key_the_settings_module_reads_is_declared() -> None:
    """Defaults have one home: a key read by settings/load.py but not declared would fail at run time."""
    import re

    source = (PROJECT_DIR / "components" / "settings" / "load.py").read_text()
    read = set(re.findall(r'reader\.\w+\(\s*"(\w+)"', source)) | set(
        re.findall(r'_(?!resources\b)\w+\(reader, "(\w+)"', source)
    )
    read |= {
        f"{prefix}{part}"
        for prefix in re.findall(r'_resources\(reader, "(\w+)"', source)
        for part in ("CpuRequest", "MemoryRequest", "CpuLimit", "MemoryLimit")
    }
    secrets = set(re.findall(r'reader\.secret\("(\w+)"\)', source))
    declared = {key.split(":", 1)[1] for key in load_project().schema}
    assert read - secrets - declared == set()
    assert secrets & declared == set(), "optional secrets must stay undeclared (a declared secret is mandatory)"
