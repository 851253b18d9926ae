"""shellcheck over every shell file in the repository: the MySQL pods' scripts, the node's programs,
and whatever else starts with a shell shebang or ends in .sh."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT_DIR

SHEBANG = re.compile(rb"^#!\s*/(usr/)?bin/(env\s+)?(ba|da)?sh\b")
pytestmark = pytest.mark.real  # runs Debian's shellcheck


def shell_files() -> list[str]:
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True,
                             timeout=60).stdout.split()
    found = []
    for name in tracked:
        path = PROJECT_DIR / name
        if not path.is_file():
            continue
        with path.open("rb") as f:
            head = f.readline()
        if name.endswith(".sh") or SHEBANG.match(head):
            found.append(name)
    return sorted(found)


def test_the_shell_files_include_the_node_programs_and_the_pod_scripts() -> None:
    files = shell_files()
    assert "components/node/files/usr/local/sbin/atomic-node" in files
    assert "components/node/files/usr/local/sbin/atomic-kubelet-identity" in files
    assert "components/workload/mysql/scripts/sidecar.sh" in files
    assert "components/node/files/usr/local/sbin/atomic-fetch-pki" not in files  # Python: ruff checks it


def test_every_shell_file_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: install Debian's shellcheck (make test does, as root)"
    done = subprocess.run([shellcheck, "-x", *shell_files()], cwd=PROJECT_DIR, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck_reports_a_bad_script(tmp_path: Path) -> None:
    """The check above can fail: an unquoted expansion in a test is reported (SC2086)."""
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing"
    script = tmp_path / "probe.sh"
    script.write_text('#!/bin/bash\nx=$1\n[ $x = y ] && echo yes\n')
    done = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "SC2086" in done.stdout
