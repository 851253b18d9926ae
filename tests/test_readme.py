"""The README's promises: the two commands first, CI runs the test command, every setting listed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tools.settings_table import table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make preview", "make test"]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-1] == "make test"


def test_settings_table_is_current() -> None:
    """Regenerate with: python -m tools.settings_table (Pulumi.yaml is the source)."""
    assert table() in README


def test_make_test_installs_the_system_packages_the_tests_run() -> None:
    """`make test` promises the Debian packages; a phony prerequisite without a rule would do nothing."""
    done = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert "dpkg -s" in done.stdout and "apt-get install" in done.stdout
    packages = re.search(r"^APT_PACKAGES := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert packages is not None
    # every real consumer the tests start is in the list
    needed = {"mariadb-server", "mariadb-backup", "etcd-server", "cloud-init", "haproxy", "radosgw", "ceph-mon",
              "ceph-osd", "python3-boto3", "awscli", "rclone", "redis-server"}
    assert needed <= set(packages.group(1).split())
