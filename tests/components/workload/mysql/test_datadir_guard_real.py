"""The pod's own refusal of a data dir it must not open, on a real MariaDB 10.11 data dir.

The data dir is made and started by the real mariadb-install-db and mariadbd (Debian's 10.11), then
handed to clone-mysql.sh exactly as the init container runs it (its first line runs
datadir-guard.sh). A data dir last opened by a newer version (its mysql_upgrade_info rewritten to
11.4, the version this machine cannot run) or by another engine is refused with one FATAL line, and
the whole tree (names, modes, sizes, bytes, mtimes) hashes the same afterwards. A negative control
shows the hash does see a write: the real mariadbd started on the same tree changes it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from components.workload.mysql import config as mysql_config
from tools.testing.mariadb import MariaDBServer, require_mariadb
from tools.testing.processes import free_port

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

SCRIPTS = mysql_config.SCRIPTS_DIR


def tree_hash(root: Path) -> str:
    """Every entry under root with its mode, size, mtime and bytes; any write changes it."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest.update(f"{path.relative_to(root)}\0{info.st_mode}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def real_datadir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir made by the real mariadb-install-db and opened once by the real mariadbd 10.11."""
    require_mariadb()
    base = tmp_path_factory.mktemp("guard-real")
    server = MariaDBServer(base, free_port(), server_id=1, datadir=base / "volume" / "mysql")
    server.initialize()
    server.start()
    assert server.value("SELECT VERSION()").startswith("10.11.")
    server.stop()
    return base / "volume" / "mysql"


def a_copy(datadir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "volume" / "mysql"
    shutil.copytree(datadir, target, symlinks=True)
    return target


def clone_mysql(datadir: Path, engine: str, version: str) -> subprocess.CompletedProcess[str]:
    """clone-mysql.sh as the init container of pod mysql-1 runs it (the data dir already holds a server)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "POD_NAME": "mysql-1", "MYSQL_SET_NAME": "mysql",
           "MYSQL_ENGINE": engine, "MYSQL_VERSION": version, "MYSQL_DATA_DIR": str(datadir)}
    return subprocess.run(["bash", str(SCRIPTS / "clone-mysql.sh")], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def fatal_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if "FATAL" in line]


def test_a_data_dir_last_opened_by_a_newer_version_is_refused_untouched(real_datadir: Path, tmp_path: Path) -> None:
    datadir = a_copy(real_datadir, tmp_path)
    info = datadir / "mysql_upgrade_info"
    assert info.read_text().startswith("10.11.")  # what the real server wrote
    info.write_text("11.4.9-MariaDB")  # as MariaDB 11.4 leaves it after opening (and upgrading) the dir
    before = tree_hash(datadir.parent)

    result = clone_mysql(datadir, "mariadb", "10.11")

    assert result.returncode == 1
    fatal = fatal_lines(result)
    assert len(fatal) == 1, result.stderr
    assert "datadir-guard[mysql-1]: FATAL:" in fatal[0]
    assert "last opened by mariadb 11.4" in fatal[0] and "set mysqlVersion=11.4 back" in fatal[0]
    assert tree_hash(datadir.parent) == before  # the data dir and the volume root: not one byte written
    assert not (datadir.parent / "mysql.server").exists()


def test_a_record_of_a_newer_server_beside_the_data_dir_is_refused(real_datadir: Path, tmp_path: Path) -> None:
    """MariaDB's info file lags until mariadb-upgrade runs; the guard's own record does not."""
    datadir = a_copy(real_datadir, tmp_path)
    (datadir.parent / "mysql.server").write_text("mariadb 11.4\n")
    before = tree_hash(datadir.parent)
    result = clone_mysql(datadir, "mariadb", "10.11")
    assert result.returncode == 1 and "set mysqlVersion=11.4 back" in "".join(fatal_lines(result)), result.stderr
    assert tree_hash(datadir.parent) == before


def test_a_data_dir_of_the_other_engine_is_refused_untouched(real_datadir: Path, tmp_path: Path) -> None:
    datadir = a_copy(real_datadir, tmp_path)
    before = tree_hash(datadir.parent)
    result = clone_mysql(datadir, "mysql", "8.4")  # a MySQL pod handed MariaDB's data dir
    assert result.returncode == 1
    [fatal] = fatal_lines(result)
    assert "was made by mariadb" in fatal and "set mysqlEngine=mariadb back" in fatal
    assert tree_hash(datadir.parent) == before


def test_a_mysql_data_dictionary_is_refused_by_a_mariadb_pod(tmp_path: Path) -> None:
    """No MySQL server runs here: the data dir carries what MySQL 8 always has (mysql.ibd) and no Aria log."""
    datadir = tmp_path / "volume" / "mysql"
    (datadir / "mysql").mkdir(parents=True)
    (datadir / "mysql.ibd").write_bytes(b"\0" * 4096)
    before = tree_hash(datadir.parent)
    result = clone_mysql(datadir, "mariadb", "11.4")
    assert result.returncode == 1
    [fatal] = fatal_lines(result)
    assert "was made by mysql (mysql.ibd)" in fatal
    assert tree_hash(datadir.parent) == before


def test_the_same_or_a_newer_server_is_let_through_and_recorded(real_datadir: Path, tmp_path: Path) -> None:
    datadir = a_copy(real_datadir, tmp_path)
    before = tree_hash(datadir)
    same = clone_mysql(datadir, "mariadb", "10.11")
    assert same.returncode == 0, same.stderr
    assert "already holds a server; no clone" in same.stderr
    assert (datadir.parent / "mysql.server").read_text() == "mariadb 10.11\n"
    upgrade = clone_mysql(datadir, "mariadb", "11.4")  # the supported step up
    assert upgrade.returncode == 0, upgrade.stderr
    assert (datadir.parent / "mysql.server").read_text() == "mariadb 11.4\n"
    assert tree_hash(datadir) == before  # the record is beside the data dir, never in it
    # ...and once 11.4 has been let in, 10.11 never is again.
    back = clone_mysql(datadir, "mariadb", "10.11")
    assert back.returncode == 1 and "set mysqlVersion=11.4 back" in "".join(fatal_lines(back))


def test_control_the_hash_sees_what_a_real_server_writes(real_datadir: Path, tmp_path: Path) -> None:
    """Without the guard the real mariadbd 10.11 opens the '11.4' data dir and writes to it."""
    datadir = a_copy(real_datadir, tmp_path)
    (datadir / "mysql_upgrade_info").write_text("11.4.9-MariaDB")
    before = tree_hash(datadir)
    server = MariaDBServer(tmp_path / "server", free_port(), server_id=2, datadir=datadir)
    server.start()
    server.stop()
    assert tree_hash(datadir) != before
