"""The Redis followers' readiness program (scripts/redis-follower-ready.sh) against real redis-server
7 (Debian's): a leader and a follower on loopback, started the way the Deployments start them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.workload.guestbook import FOLLOWER_PROBE, SCRIPTS_DIR
from tools.testing.processes import free_port, wait_until
from tools.testing.redis import RedisServer, require_redis

pytestmark = pytest.mark.real


def probe(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(SCRIPTS_DIR / FOLLOWER_PROBE)], env={"PATH": "/usr/bin:/bin",
                          "REDIS_PORT": str(port)}, capture_output=True, text=True, timeout=20, check=False)


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    require_redis()
    started: list[RedisServer] = []
    try:
        yield started
    finally:
        for server in reversed(started):
            server.stop()


def test_a_follower_is_ready_only_while_linked_to_its_leader(tmp_path: Path, servers: list[RedisServer]) -> None:
    leader_port = free_port()
    # The follower first, its leader not up yet (a restart of both, or the leader rescheduled).
    follower = RedisServer.start(tmp_path / "follower", free_port(), replica_of=leader_port)
    servers.append(follower)
    assert follower.cli("ping").stdout.strip() == "PONG"  # what the old readiness probe asked: it said ready
    unready = probe(follower.port)
    assert unready.returncode == 1
    assert "not linked to the leader yet:" in unready.stdout and "master_link_status:down" in unready.stdout
    assert follower.cli("get", "guestbook").stdout.strip() == ""  # what the frontend would have read

    leader = RedisServer.start(tmp_path / "leader", leader_port)
    servers.append(leader)
    leader.cli("set", "guestbook", "hello")
    wait_until("the follower is ready", lambda: probe(follower.port).returncode == 0, 30)
    assert follower.cli("get", "guestbook").stdout.strip() == "hello"  # ready means synced

    leader.stop()  # the link drops: out of the follower Service until it is back
    wait_until("the follower is unready", lambda: probe(follower.port).returncode == 1, 30)


def test_the_leader_and_a_dead_server_are_never_ready_followers(tmp_path: Path, servers: list[RedisServer]) -> None:
    leader = RedisServer.start(tmp_path / "leader", free_port())
    servers.append(leader)
    result = probe(leader.port)
    assert result.returncode == 1 and "this redis is no follower (role:master)" in result.stdout
    nothing = probe(free_port())
    assert nothing.returncode == 1 and "redis does not answer" in nothing.stdout
