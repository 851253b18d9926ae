"""A replica applying in parallel ends byte-identical to its primary, on real MariaDB 10.11.

The replica runs the set's own rendered replica.cnf (local stack rendered for 10.11: 16 optimistic
applier threads, the project's default); eight writers run a workload of inserts, updates and
deletes on eight tables, plus transactions that conflict across writers (one shared hot row,
and transactions touching two writers' tables), so that optimistic apply meets conflicts it must
roll back and retry. Once as a backlog (the SQL thread stopped, then applying everything in
parallel) and once live. Then every table's CHECKSUM TABLE ... EXTENDED must be equal on both
servers, and the check is shown to catch a single changed row.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.testing.mariadb import MariaDBServer, ReplicatedSet, replicated_set
from tools.testing.mysql_pods import VERSION, RenderedSet, render_set

pytestmark = pytest.mark.real  # starts real servers (markers in pyproject.toml)

WRITERS = 8
TABLES = [f"work.t{n}" for n in range(WRITERS)]
ROUNDS = 150


@pytest.fixture(scope="module")
def rendered() -> RenderedSet:
    return render_set("local", {"mysqlVersion": VERSION})


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory, rendered: RenderedSet) -> Iterator[ReplicatedSet]:
    with replicated_set(Path(tmp_path_factory.mktemp("parallel-apply")), replicas=1,
                        primary_cnf=rendered.config_map["primary.cnf"],
                        replica_cnf=rendered.config_map["replica.cnf"]) as replicated:
        primary = replicated.primary
        primary.sql("CREATE DATABASE work")
        for table in TABLES:
            primary.sql(f"CREATE TABLE {table} (id INT PRIMARY KEY, counter INT NOT NULL, note VARCHAR(64))")
        primary.sql("CREATE TABLE work.hot (id INT PRIMARY KEY, counter INT NOT NULL)")
        primary.sql("INSERT INTO work.hot VALUES (1, 0)")
        replicated.wait_caught_up()
        yield replicated


def workload(primary: MariaDBServer, writer: int, seed: int) -> None:
    """One writer: its own table mostly, the hot row and its neighbour's table now and then."""
    rng = random.Random(seed)
    own, neighbour = TABLES[writer], TABLES[(writer + 1) % WRITERS]
    with primary.connect() as conn, conn.cursor() as cursor:
        for step in range(ROUNDS):
            row = seed * 10_000 + step
            earlier = [seed * 10_000 + rng.randrange(step + 1) for _ in range(2)]  # rows this writer made
            cursor.execute(f"INSERT INTO {own} VALUES (%s, 0, %s)", (row, f"w{writer} s{step}"))
            cursor.execute(f"UPDATE {own} SET counter = counter + 1 WHERE id = %s", (earlier[0],))
            if step % 7 == 3:
                cursor.execute(f"DELETE FROM {own} WHERE id = %s", (earlier[1],))
            if step % 2 == 0:
                cursor.execute("UPDATE work.hot SET counter = counter + 1 WHERE id = 1")
            if step % 9 == 0:  # two writers' tables in one transaction: conflicts with the neighbour
                conn.begin()
                cursor.execute(f"UPDATE {own} SET note = %s WHERE id = %s", (f"x{step}", row))
                cursor.execute(f"UPDATE {neighbour} SET counter = counter + 10 ORDER BY id LIMIT 3")
                conn.commit()


def run_writers(primary: MariaDBServer, seed: int) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            workload(primary, n, seed + n)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors


def diverged(primary: MariaDBServer, replica: MariaDBServer) -> list[str]:
    """The tables whose content differs (CHECKSUM TABLE ... EXTENDED reads every row)."""
    names = ", ".join([*TABLES, "work.hot"])
    ours, theirs = (dict(server.sql(f"CHECKSUM TABLE {names} EXTENDED")) for server in (primary, replica))
    assert set(ours) == set(theirs) and all(value is not None for value in ours.values())
    return sorted(table for table in ours if ours[table] != theirs[table])


def test_the_replica_applies_with_the_rendered_parallel_threads(group: ReplicatedSet) -> None:
    (replica,) = group.replicas
    assert replica.value("SELECT @@slave_parallel_threads") == 16
    assert replica.value("SELECT @@slave_parallel_mode") == "optimistic"
    workers = replica.value("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                            "WHERE USER = 'system user' AND STATE = 'Waiting for work from SQL thread'")
    assert workers == 16  # the pool of applier threads beside the SQL (driver) thread


def test_a_parallel_backlog_ends_byte_identical_to_the_primary(group: ReplicatedSet) -> None:
    (replica,) = group.replicas
    replica.sql("STOP SLAVE SQL_THREAD")
    run_writers(group.primary, seed=1)
    replica.sql("START SLAVE SQL_THREAD")
    group.wait_caught_up(timeout=120)
    assert diverged(group.primary, replica) == []
    assert group.primary.value("SELECT counter FROM work.hot") == WRITERS * len(range(0, ROUNDS, 2))
    assert replica.value("SELECT @@GLOBAL.gtid_slave_pos") == group.primary.value("SELECT @@GLOBAL.gtid_binlog_pos")


def test_live_parallel_apply_ends_byte_identical_to_the_primary(group: ReplicatedSet) -> None:
    (replica,) = group.replicas
    run_writers(group.primary, seed=100)
    group.wait_caught_up(timeout=120)
    assert diverged(group.primary, replica) == []


def test_the_comparison_catches_one_changed_row(group: ReplicatedSet) -> None:
    """Negative control: a row changed on the replica alone (outside the binlog) is reported."""
    (replica,) = group.replicas
    group.wait_caught_up()
    assert diverged(group.primary, replica) == []
    with replica.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SET SESSION sql_log_bin = 0")
        cursor.execute(f"UPDATE {TABLES[3]} SET counter = counter + 1 ORDER BY id LIMIT 1")
    assert diverged(group.primary, replica) == [TABLES[3]]
