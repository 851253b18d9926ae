"""The offline harness hands the program the config the Pulumi CLI would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_DIR
from tools.harness.pulumi_project import StackConfigError, load_project, resolve_stack_config

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


def test_secure_values_cannot_be_read_offline_and_must_be_given(project: Path) -> None:
    """The program checks secrets on their values, as `pulumi preview` hands them decrypted: a
    placeholder would be checked instead, so an undecryptable value stops the run, naming the line."""
    write_stack(project, {"demo:required": "x", "demo:password": {"secure": "v1:abcdef=="}})
    with pytest.raises(StackConfigError, match=r"^stacks/Pulumi.dev.yaml:\d+: config demo:password=\[secret\]: is"
                       r" encrypted and the offline preview cannot decrypt it .*--secret password=\.\.\.$"):
        resolve_stack_config("dev", project_dir=project)
    config = resolve_stack_config("dev", secret_overrides={"password": "given-for-this-run"}, project_dir=project)
    assert config.values["demo:password"] == "given-for-this-run"
    assert config.secret_keys == ["demo:password"]


def test_missing_value_without_default_is_the_cli_error(project: Path) -> None:
    write_stack(project, {})
    with pytest.raises(StackConfigError, match="Stack 'dev' is missing configuration value 'required'"):
        resolve_stack_config("dev", project_dir=project)


@pytest.mark.parametrize(
    ("key", "value", "line"),
    [
        ("count", "three", 'config demo:count=three: must be of type integer (Pulumi.yaml): a whole number, e.g. 3'),
        ("flag", "yes", "config demo:flag=yes: must be of type boolean (Pulumi.yaml): true or false"),
        ("cidrs", "10.0.0.0/8", "config demo:cidrs=10.0.0.0/8: must be of type array<string> (Pulumi.yaml): a list"),
        ("cidrs", '["10.0.0.0/8"]', 'config demo:cidrs="[\\"10.0.0.0/8\\"]": must be of type array<string>'),
        ("label", {"nested": "map"}, 'config demo:label={"nested":"map"}: must be of type string (Pulumi.yaml)'),
    ],
)
def test_type_mismatch_names_key_value_and_form(project: Path, key: str, value: object, line: str) -> None:
    """The CLI refuses these too; here the one line also shows the value and the file's line."""
    write_stack(project, {"demo:required": "x", f"demo:{key}": value})
    with pytest.raises(StackConfigError) as refused:
        resolve_stack_config("dev", project_dir=project)
    assert str(refused.value).startswith("stacks/Pulumi.dev.yaml:")
    assert line in str(refused.value)


def test_stack_scalars_are_read_as_their_text_like_the_cli(project: Path) -> None:
    """YAML 1.1 would make `yes` a boolean and `1.30` the float 1.3; the CLI keeps the text."""
    (project / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  demo:required: x\n  demo:label: 1.30\n")
    assert resolve_stack_config("dev", project_dir=project).values["demo:label"] == "1.30"
    (project / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  demo:required: x\n  demo:flag: yes\n")
    with pytest.raises(StackConfigError, match=r"Pulumi.dev.yaml:3: config demo:flag=yes: must be of type boolean"):
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
    with pytest.raises(StackConfigError, match=r"no stack prod: stacks/Pulumi.prod.yaml does not exist \(stacks: dev"):
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
    from components.settings.load import SECRET_SETTINGS, declared_settings
    from tools.settings_table import SECRETS

    secrets = set(SECRET_SETTINGS)
    declared = {key.split(":", 1)[1] for key in load_project().schema}
    assert read - secrets - declared == set()
    assert secrets & declared == set(), "optional secrets must stay undeclared (a declared secret is mandatory)"
    assert set(SECRETS) == secrets, "the README lists every secret the program reads"
    assert declared_settings() == declared | secrets, "the program refuses every other key"
