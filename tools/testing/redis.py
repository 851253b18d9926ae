"""Real redis-server processes on loopback, for the Guestbook's probes.

    leader = RedisServer.start(tmp_path / "leader", free_port())
    follower = RedisServer.start(tmp_path / "follower", free_port(), replica_of=leader.port)
    follower.stop(); leader.stop()

Each server binds 127.0.0.1 only, keeps nothing on disk (--save "", --appendonly no, as the
Guestbook's pods run), logs to its own directory, dies with the test (PR_SET_PDEATHSIG) and is
stopped by PID with bounded waits. A missing redis-server raises RedisNotInstalledError: tests fail,
never skip.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tools.testing.processes import Daemon, wait_until

DEBIAN_PACKAGES = "redis-server redis-tools"


class RedisNotInstalledError(RuntimeError):
    """redis-server or redis-cli is not installed."""


def require_redis() -> None:
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    if missing:
        raise RedisNotInstalledError(f"{', '.join(missing)} not found: install the Debian packages {DEBIAN_PACKAGES} "
                                     "(as root: make system-deps); tests that need a real server fail without them")


@dataclass
class RedisServer:
    port: int
    daemon: Daemon

    @classmethod
    def start(cls, base: Path, port: int, replica_of: int | None = None, timeout: float = 20) -> RedisServer:
        require_redis()
        base.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(base), "--save", "",
                "--appendonly", "no", "--daemonize", "no"]
        if replica_of is not None:
            # What the follower Deployment passes (guestbook.py), with the leader on loopback.
            argv += ["--replicaof", "127.0.0.1", str(replica_of), "--replica-read-only", "yes"]
        server = cls(port, Daemon.start(f"redis-{port}", argv, base / "redis.log"))
        wait_until(f"redis on {port} answers", lambda: server.cli("ping").stdout.strip() == "PONG", timeout,
                   alive=[server.daemon])
        return server

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True,
                              timeout=10, check=False)

    def stop(self) -> None:
        self.daemon.stop()
