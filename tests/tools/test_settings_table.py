"""Every `pulumi config set` form the README documents, replayed through the harness, sets the value."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import PROJECT_DIR
from tools import settings_table
from tools.harness import config_set
from tools.harness.pulumi_project import StackConfigError, resolve_stack_config

README = (PROJECT_DIR / "README.md").read_text()


def documented() -> dict[str, str]:
    """type -> command, as the README's first settings table shows it."""
    rows = re.findall(r"^\| ([a-z ()]+) \| `(pulumi config set [^`]+)` \|", README, re.M)
    return dict(rows)


def empty_stack(tmp_path: Path) -> Path:
    """The real Pulumi.yaml, and a stack file that sets nothing yet."""
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    stack = tmp_path / "stacks" / "Pulumi.replay.yaml"
    stack.write_text("config: {}\n")
    return stack


def test_the_readme_documents_a_form_for_every_type_the_settings_table_lists() -> None:
    types = set(re.findall(r"^\| `[\w:-]+` \| ([a-z]+) \|", README, re.M))
    assert types == {"string", "integer", "boolean", "array", "secret", "provider"}
    assert set(documented()) == types | {"provider (list)"}
    assert [(t, c) for t, c, _ in settings_table.type_commands()] == list(documented().items())


EXPECTED = {
    "string": ("atomic-mysql:clusterName", "atomic-staging"),
    "integer": ("atomic-mysql:minionCount", "4"),
    "boolean": ("atomic-mysql:enableCockpit", "true"),
    "array": ("atomic-mysql:adminCidrs", json.dumps(["203.0.113.0/24"])),
    "provider": ("aws:region", "us-west-2"),
    "provider (list)": ("pulumi:disable-default-providers", json.dumps(["kubernetes"])),
}


@pytest.mark.parametrize("type_name", sorted(EXPECTED))
def test_the_documented_command_sets_the_value(type_name: str, tmp_path: Path) -> None:
    stack = empty_stack(tmp_path)
    key, value = EXPECTED[type_name]
    before = resolve_stack_config("replay", project_dir=tmp_path).values[key]
    config_set.apply_to_file(documented()[type_name], stack, "atomic-mysql")
    after = resolve_stack_config("replay", project_dir=tmp_path).values[key]
    assert after == value
    if type_name != "provider (list)":  # setting the list to Pulumi.yaml's own value changes nothing
        assert before != after


def test_the_documented_secret_command_sets_a_secret_and_writes_no_plain_text(tmp_path: Path) -> None:
    stack = empty_stack(tmp_path)
    config_set.apply_to_file(documented()["secret"], stack, "atomic-mysql")
    # Stored as secure: ciphertext, which the offline harness cannot decrypt (and will not guess at,
    # since the program checks the value): it is refused until given for the run.
    with pytest.raises(StackConfigError, match=r"config atomic-mysql:mysqlRootPassword=\[secret\]: is encrypted"):
        resolve_stack_config("replay", project_dir=tmp_path)
    resolved = resolve_stack_config("replay", secret_overrides={"mysqlRootPassword": "given"}, project_dir=tmp_path)
    assert "atomic-mysql:mysqlRootPassword" in resolved.secret_keys
    assert "openssl" not in stack.read_text()


def test_the_array_form_adds_a_second_item_and_the_plain_form_is_refused_as_the_cli_refuses_it(
    tmp_path: Path,
) -> None:
    stack = empty_stack(tmp_path)
    config_set.apply_to_file(documented()["array"], stack, "atomic-mysql")
    config_set.apply_to_file("pulumi config set --path 'adminCidrs[1]' 198.51.100.0/24", stack, "atomic-mysql")
    values = resolve_stack_config("replay", project_dir=tmp_path).values
    assert json.loads(values["atomic-mysql:adminCidrs"]) == ["203.0.113.0/24", "198.51.100.0/24"]
    config_set.apply_to_file("pulumi config set adminCidrs '[\"203.0.113.0/24\"]'", stack, "atomic-mysql")
    with pytest.raises(StackConfigError, match=r"config atomic-mysql:adminCidrs=.*: must be of type array<string>"):
        resolve_stack_config("replay", project_dir=tmp_path)


def test_a_boolean_set_as_yes_is_refused(tmp_path: Path) -> None:
    stack = empty_stack(tmp_path)
    config_set.apply_to_file("pulumi config set enableCockpit yes", stack, "atomic-mysql")
    with pytest.raises(StackConfigError, match="config atomic-mysql:enableCockpit=yes: must be of type boolean"):
        resolve_stack_config("replay", project_dir=tmp_path)
