"""`pulumi config set` replayed on a stack file, as the CLI stores each form.

The CLI's rules (https://www.pulumi.com/docs/iac/cli/commands/pulumi_config_set/):
- a top-level value is always stored as a string, unless `--type bool|int|float|string`;
- `--path` sets a value inside a list or map (`'names[0]'`, `parent.nested`, `'["a.b"]'`),
  and there `true`/`false` become booleans and integers become numbers;
- `--secret` stores the value encrypted (`secure:`). Offline there is no key to encrypt with, so
  the replay stores a placeholder ciphertext and never the plaintext: the harness then sees an
  encrypted value it cannot decrypt, and refuses it unless the value is given for the run.

Used by the tests to prove that the commands the README documents per setting type set the value
the program reads (tools/settings_table.py); the stack file is then read by pulumi_project.py like
any other.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

OFFLINE_CIPHERTEXT = "v1:offline-replay-not-encrypted"


class ConfigSetError(ValueError):
    """The command is not a `pulumi config set` the CLI would accept."""


@dataclass(frozen=True)
class ConfigSet:
    key: str
    value: str
    path: bool = False
    secret: bool = False
    type: str | None = None
    stack: str | None = None


def parse(command: str | Sequence[str]) -> ConfigSet:
    """`pulumi config set [--path] [--secret|--plaintext] [--type T] [-s STACK] KEY VALUE`."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:3] != ["pulumi", "config", "set"]:
        raise ConfigSetError(f"not a `pulumi config set` command: {' '.join(argv)}")
    flags: dict[str, Any] = {"path": False, "secret": False, "type": None, "stack": None}
    positional: list[str] = []
    rest = iter(argv[3:])
    for arg in rest:
        if arg == "--path":
            flags["path"] = True
        elif arg == "--secret":
            flags["secret"] = True
        elif arg == "--plaintext":
            flags["secret"] = False
        elif arg in ("--type", "-s", "--stack"):
            flags["type" if arg == "--type" else "stack"] = next(rest, None)
        elif arg.startswith("--type="):
            flags["type"] = arg.split("=", 1)[1]
        elif arg == "--":
            positional += list(rest)
        elif arg.startswith("-"):
            raise ConfigSetError(f"unknown flag {arg}")
        else:
            positional.append(arg)
    if len(positional) != 2:
        raise ConfigSetError(f"expected KEY VALUE, got {positional} (the CLI would prompt for a missing value)")
    if flags["type"] not in (None, "string", "bool", "int", "float"):
        raise ConfigSetError(f"--type {flags['type']}: allowed are string, bool, int, float")
    return ConfigSet(positional[0], positional[1], **flags)


_SEGMENT = re.compile(r'\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]|\.?([^.\[\]]+)')


def path_segments(path: str) -> list[str | int]:
    """'adminCidrs[0]' -> ['adminCidrs', 0]; 'a.b["c.d"]' -> ['a', 'b', 'c.d']."""
    segments: list[str | int] = []
    position = 0
    while position < len(path):
        match = _SEGMENT.match(path, position)
        if not match or match.end() == position:
            raise ConfigSetError(f"invalid --path {path!r} at character {position}")
        index, quoted, name = match.groups()
        segments.append(int(index) if index is not None else quoted if quoted is not None else name)
        position = match.end()
    if not segments or not isinstance(segments[0], str):
        raise ConfigSetError(f"invalid --path {path!r}: it must start with the key")
    return segments


def _typed(value: str, type_name: str | None) -> Any:
    if type_name == "bool":
        if value not in ("true", "false"):
            raise ConfigSetError(f"--type bool: {value!r} is not true or false")
        return value == "true"
    if type_name == "int":
        return int(value)
    if type_name == "float":
        return float(value)
    return value


def _path_value(value: str) -> Any:
    if value in ("true", "false"):
        return value == "true"
    return int(value) if re.fullmatch(r"-?[0-9]+", value) else value


def _set_in(container: Any, segments: list[str | int], value: Any, where: str) -> Any:
    head, rest = segments[0], segments[1:]
    if isinstance(head, int):
        items = list(container) if isinstance(container, list) else [] if container is None else None
        if items is None:
            raise ConfigSetError(f"{where}: not a list")
        if head > len(items):
            raise ConfigSetError(f"{where}[{head}]: index out of range (the list has {len(items)} items)")
        current = items[head] if head < len(items) else None
        new = _set_in(current, rest, value, f"{where}[{head}]") if rest else value
        if head == len(items):
            items.append(new)
        else:
            items[head] = new
        return items
    mapping = dict(container) if isinstance(container, dict) else {} if container is None else None
    if mapping is None:
        raise ConfigSetError(f"{where}.{head}: not a map")
    mapping[head] = _set_in(mapping.get(head), rest, value, f"{where}.{head}") if rest else value
    return mapping


def apply(command: str | Sequence[str], config: dict[str, Any], project: str) -> dict[str, Any]:
    """The stack's `config:` block after the command, as the CLI would write it."""
    cmd = parse(command)
    segments: list[str | int] = path_segments(cmd.key) if cmd.path else [cmd.key]
    key = str(segments[0])
    qualified = key if ":" in key else f"{project}:{key}"
    result = dict(config)
    if cmd.secret:
        if len(segments) > 1:
            raise ConfigSetError("this replay does not store a secret inside a structured value")
        result[qualified] = {"secure": OFFLINE_CIPHERTEXT}
    elif len(segments) == 1:
        result[qualified] = _typed(cmd.value, cmd.type)
    else:
        value = _typed(cmd.value, cmd.type) if cmd.type else _path_value(cmd.value)
        result[qualified] = _set_in(result.get(qualified), segments[1:], value, qualified)
    return result


def apply_to_file(command: str | Sequence[str], stack_file: Path, project: str) -> None:
    data = yaml.safe_load(stack_file.read_text()) if stack_file.exists() else None
    data = data or {}
    data["config"] = apply(command, dict(data.get("config") or {}), project)
    stack_file.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
