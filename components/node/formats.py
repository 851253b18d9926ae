"""How node files are written: systemd environment files, YAML, and the files shipped as they are."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

# The node's programs, units and drop-ins as real files, each at its target path below this
# directory (files/usr/local/sbin/atomic-node is installed as /usr/local/sbin/atomic-node).
SHIPPED_DIR = Path(__file__).parent / "files"

# libyaml's emitter writes the same bytes several times faster; user-data is rendered for
# every node on every preview and `pulumi up`.
SafeDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@cache
def shipped(target: str) -> str:
    """The content of the file installed at `target` (an absolute path), from node/files/."""
    path = SHIPPED_DIR / target.lstrip("/")
    if not target.startswith("/") or not path.is_file():
        raise FileNotFoundError(f"no shipped file for {target} (looked for {path})")
    return path.read_text(encoding="utf-8")


def env_file(title: str, entries: list[tuple[str, str, str]]) -> str:
    """A systemd EnvironmentFile: a comment per setting says why it has this value."""
    lines = [f"# {title} (rendered by atomic-mysql)"]
    for comment, key, value in entries:
        if comment:
            lines.append(f"# {comment}")
        lines.append(f'{key}="{value}"')
    return "\n".join(lines) + "\n"


def dump_yaml(data: object) -> str:
    """A daemon's YAML config file, keys in the order given."""
    return yaml.dump(data, Dumper=SafeDumper, sort_keys=False)
