"""The backup scripts' pure pieces, with stubbed tools: what the real-server rehearsal
(test_backup_rehearsal.py, MariaDB only) cannot show, among them the MySQL 8 forms."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from components.workload.mysql import config as mysql_config

SCRIPTS = mysql_config.SCRIPTS_DIR

# What each engine's binlog tool prints for a closed binlog (headers only; the parser reads those).
MYSQL_DECODED = """# The proper term is pseudo_replica_mode, but we use this compatibility alias
# at 4
#261201 10:21:40 server id 100  end_log_pos 126 CRC32 0x5c8f1b6a \tStart: binlog v 4, server v 8.4.6 created
# at 126
#261201 10:21:40 server id 100  end_log_pos 197 CRC32 0x1b9de4a2 \tPrevious-GTIDs
# 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,
# 4a1b2c3d-71ca-11e1-9e33-c80aa9429562:1-2
# at 197
#261201 10:21:55 server id 100  end_log_pos 274 CRC32 0x77a1c0de \tGTID\tlast_committed=0
# at 512
#261201 10:22:07 server id 100  end_log_pos 559 CRC32 0x0e1f2a3b \tRotate to mysql-bin.000008  pos: 4
"""
MARIADB_DECODED = """# at 4
#261201 10:21:40 server id 100  end_log_pos 256 CRC32 0x5c8f1b6a \tStart: binlog v 4, server v 10.11.19-MariaDB
# at 256
#261201 10:21:40 server id 100  end_log_pos 299 CRC32 0x1b9de4a2 \tGtid list [0-100-57]
# at 299
#261201 10:21:41 server id 100  end_log_pos 341 CRC32 0x0a1b2c3d \tBinlog checkpoint mysql-bin.000007
# at 900
#261201 10:22:07 server id 100  end_log_pos 944 CRC32 0x0e1f2a3b \tRotate to mysql-bin.000008  pos: 4
"""


def binlog_meta(tmp_path: Path, engine: str, decoded: str) -> subprocess.CompletedProcess[str]:
    tool = tmp_path / "binlog-tool"
    (tmp_path / "decoded.txt").write_text(decoded)
    tool.write_text(f"#!/bin/bash\ncat {tmp_path / 'decoded.txt'}\n")
    tool.chmod(0o755)
    env = {**os.environ, "MYSQL_ENGINE": engine, "POD_NAME": "mysql-0", "BACKUP_BUCKET": "b", "BACKUP_PREFIX": "p",
           "MYSQL_BINLOG_TOOL": str(tool)}
    script = f"source {SCRIPTS / 'archive-binlogs.sh'}; binlog_meta mysql-bin.000007"
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize(("engine", "decoded", "start"), [
    ("mysql", MYSQL_DECODED, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,4a1b2c3d-71ca-11e1-9e33-c80aa9429562:1-2"),
    ("mariadb", MARIADB_DECODED, "0-100-57"),
])
def test_the_archive_index_reads_the_start_state_and_the_last_events_time(
        tmp_path: Path, engine: str, decoded: str, start: str) -> None:
    result = binlog_meta(tmp_path, engine, decoded)
    assert result.returncode == 0, result.stderr
    got_start, end = result.stdout.rstrip("\n").split("\t")
    assert (got_start, end) == (start, "2026-12-01T10:22:07Z")


def test_a_binlog_the_tool_cannot_decode_is_not_indexed(tmp_path: Path) -> None:
    result = binlog_meta(tmp_path, "mariadb", "garbage\n")
    assert result.returncode == 1 and result.stdout == ""


def test_json_field_reads_the_scripts_own_documents() -> None:
    script = (f"source {SCRIPTS / 'common.sh'}; source {SCRIPTS / 's3.sh'}; "
              """printf '%s' '{"id": "20261201T031700Z", "bytes": 1234, "gtid": ""}' | json_field bytes; """
              """printf '%s' '{"id": "20261201T031700Z", "bytes": 1234}' | json_field id; """
              """printf '%s' '{"id": "x"}' | json_field missing || echo missing""")
    env = {**os.environ, "POD_NAME": "mysql-0", "BACKUP_BUCKET": "b", "BACKUP_PREFIX": "p"}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.stdout.split() == ["1234", "20261201T031700Z", "missing"]


@pytest.mark.parametrize(("text", "epoch"), [("20261201T031700Z", 1796095020), ("2026-12-01T03:17:00Z", 1796095020)])
def test_both_forms_of_a_restore_point_are_the_same_second(text: str, epoch: int) -> None:
    script = f"source {SCRIPTS / 'common.sh'}; source {SCRIPTS / 's3.sh'}; epoch_of {text}"
    env = {**os.environ, "POD_NAME": "mysql-0", "BACKUP_BUCKET": "b", "BACKUP_PREFIX": "p"}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.stdout.strip() == str(epoch)


def test_restore_refuses_an_unknown_restore_point_form(tmp_path: Path) -> None:
    env = {**os.environ, "MYSQL_ENGINE": "mariadb", "POD_NAME": "mysql-0", "BACKUP_BUCKET": "b", "BACKUP_PREFIX": "p",
           "MYSQL_DATA_DIR": str(tmp_path / "data"), "RESTORE_FROM": "yesterday",
           "BACKUP_KEY_DIR": str(tmp_path / "no-key")}
    result = subprocess.run(["bash", str(SCRIPTS / "restore.sh"), "fetch"], env=env, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 1
    assert "RESTORE_FROM='yesterday' is neither a backup id" in result.stderr
    assert not (tmp_path / "data.restore-staging").exists()


def test_replicas_never_restore(tmp_path: Path) -> None:
    env = {**os.environ, "MYSQL_ENGINE": "mariadb", "POD_NAME": "mysql-1", "RESTORE_FROM": "20261201T031700Z",
           "MYSQL_DATA_DIR": str(tmp_path / "data")}
    for phase in ("fetch", "replay"):
        result = subprocess.run(["bash", str(SCRIPTS / "restore.sh"), phase], env=env, capture_output=True, text=True,
                                timeout=30, check=False)
        assert result.returncode == 0 and "only ordinal 0 restores" in result.stderr
