"""Stack files: prod and staging on their own KMS key, dev and local on the passphrase, all read
by the harness as the CLI reads them, and the README names each provider exactly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_DIR, STACKS
from tools.harness.offline import run_program
from tools.harness.pulumi_project import STACK_FILE_KEYS, read_stack_file, resolve_stack_config

README = (PROJECT_DIR / "README.md").read_text()
KMS_STACKS = ("prod", "staging")


def kms_url(stack: str) -> str:
    region = resolve_stack_config(stack).values["aws:region"]
    return f"awskms://alias/atomic-mysql-{stack}-secrets?region={region}"


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_file_has_only_the_keys_the_cli_knows(stack: str) -> None:
    stack_file = read_stack_file(stack)
    assert stack_file.other_keys == (), f"{stack_file.path}: the CLI ignores {stack_file.other_keys}"
    resolve_stack_config(stack)  # and the config still resolves as the CLI would


@pytest.mark.parametrize("stack", KMS_STACKS)
def test_prod_and_staging_use_their_own_kms_key_in_their_region(stack: str) -> None:
    stack_file = read_stack_file(stack)
    assert stack_file.provider_kind == "awskms"
    assert stack_file.secrets_provider == kms_url(stack)
    assert stack_file.encryption_salt == "", "a passphrase salt next to a KMS provider is a leftover"


@pytest.mark.parametrize("stack", [s for s in STACKS if s not in KMS_STACKS])
def test_dev_and_local_keep_the_passphrase(stack: str) -> None:
    stack_file = read_stack_file(stack)
    assert stack_file.secrets_provider == "" and stack_file.encrypted_key == ""
    assert f"pulumi stack init {stack} --secrets-provider passphrase" in stack_file.path.read_text() + README


@pytest.mark.parametrize("stack", KMS_STACKS)
def test_the_readme_creates_and_changes_to_exactly_the_stack_files_provider(stack: str) -> None:
    url = kms_url(stack)
    assert f'pulumi stack init {stack} --secrets-provider "{url}"' in README
    assert f'pulumi stack init {stack} --secrets-provider "{url}"' in read_stack_file(stack).path.read_text()
    region = url.rsplit("=", 1)[1]
    assert re.search(rf"STACK={stack} REGION={region}", README)
    assert 'pulumi stack change-secrets-provider -s prod "' + kms_url("prod") + '"' in README


def test_the_program_runs_unchanged_with_the_kms_provider_in_the_stack_file() -> None:
    plan = run_program("prod")
    assert plan.outputs["kubeconfig"].secret


def test_a_misspelt_key_is_reported(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: demo\nruntime: python\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("secretprovider: awskms://alias/x?region=us-east-1\nconfig: {}\n")
    stack_file = read_stack_file("dev", project_dir=tmp_path)
    assert stack_file.other_keys == ("secretprovider",)
    assert stack_file.provider_kind == "default", "the CLI would fall back to the backend's default"
    assert "secretsprovider" in STACK_FILE_KEYS
