"""The replay of `pulumi config set`: each form stored as the CLI documents it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tools.harness import config_set
from tools.harness.config_set import ConfigSetError, apply, parse, path_segments


def test_top_level_values_are_strings_unless_typed() -> None:
    assert apply("pulumi config set minionCount 4", {}, "p") == {"p:minionCount": "4"}
    assert apply("pulumi config set enableCockpit true", {}, "p") == {"p:enableCockpit": "true"}
    assert apply("pulumi config set --type int minionCount 4", {}, "p") == {"p:minionCount": 4}
    assert apply("pulumi config set --type bool flag true", {}, "p") == {"p:flag": True}
    assert apply("pulumi config set adminCidrs '[\"10.0.0.0/8\"]'", {}, "p") == {"p:adminCidrs": '["10.0.0.0/8"]'}


def test_path_sets_list_items_typed_like_the_cli() -> None:
    config = apply("pulumi config set --path 'cidrs[0]' 10.0.0.0/8", {}, "p")
    assert config == {"p:cidrs": ["10.0.0.0/8"]}
    config = apply("pulumi config set --path 'cidrs[1]' 192.0.2.0/24", config, "p")
    assert config == {"p:cidrs": ["10.0.0.0/8", "192.0.2.0/24"]}
    config = apply("pulumi config set --path 'cidrs[0]' 198.51.100.0/24", config, "p")
    assert config["p:cidrs"] == ["198.51.100.0/24", "192.0.2.0/24"]
    assert apply("pulumi config set --path data.active true", {}, "p") == {"p:data": {"active": True}}
    assert apply("pulumi config set --path 'data.nums[0]' 1", {}, "p") == {"p:data": {"nums": [1]}}
    assert apply("pulumi config set --path 'pulumi:disable-default-providers[0]' aws", {}, "p") == {
        "pulumi:disable-default-providers": ["aws"]}


def test_secrets_are_stored_secure_and_never_in_plain_text() -> None:
    config = apply('pulumi config set --secret mysqlRootPassword "hunter2"', {}, "p")
    assert config == {"p:mysqlRootPassword": {"secure": config_set.OFFLINE_CIPHERTEXT}}
    assert "hunter2" not in str(config)


@pytest.mark.parametrize(("path", "segments"), [
    ("adminCidrs[0]", ["adminCidrs", 0]),
    ('a.b["c.d"][2]', ["a", "b", "c.d", 2]),
    ("ns:key[10]", ["ns:key", 10]),
])
def test_paths_split_into_keys_and_indexes(path: str, segments: list[object]) -> None:
    assert path_segments(path) == segments


@pytest.mark.parametrize(("command", "message"), [
    ("pulumi config get x", "not a `pulumi config set`"),
    ("pulumi config set onlykey", "expected KEY VALUE"),
    ("pulumi config set --type list k v", "allowed are string"),
    ("pulumi config set --path 'cidrs[2]' x", "index out of range"),
    ("pulumi config set --path '[0]' x", "must start with the key"),
    ("pulumi config set --bogus k v", "unknown flag"),
])
def test_commands_the_cli_would_refuse_are_refused(command: str, message: str) -> None:
    with pytest.raises(ConfigSetError, match=message):
        apply(command, {}, "p")


def test_apply_to_file_keeps_the_other_keys(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text("secretsprovider: awskms://alias/x?region=us-east-1\nconfig:\n  p:a: b\n")
    config_set.apply_to_file("pulumi config set -s dev --path 'list[0]' x", stack, "p")
    assert yaml.safe_load(stack.read_text()) == {"secretsprovider": "awskms://alias/x?region=us-east-1",
                                                 "config": {"p:a": "b", "p:list": ["x"]}}
    assert parse("pulumi config set -s dev k v").stack == "dev"
