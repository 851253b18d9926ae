"""Processes the tests start: free loopback ports, children that die with the test, daemons with
logs, stopped by PID with bounded waits."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that were free a moment ago.

    Every socket stays bound until all are chosen: closing each before the next bind
    (count calls of free_port()) lets the OS hand the same port out twice.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def die_with_parent() -> None:
    """A preexec_fn: the child gets SIGTERM (a clean shutdown) when the thread that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def own_session_dying_with_parent() -> None:
    """A preexec_fn: die_with_parent() in a new session, so os.killpg(child.pid, ...) also stops
    whatever the child started."""
    os.setsid()
    die_with_parent()


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Daemon:
    """A server started by a test: its own session (stopped as a group), its output in `log`."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> Daemon:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            process = subprocess.Popen(list(argv), env=dict(env) if env is not None else None, cwd=cwd, stdout=out,
                                       stderr=subprocess.STDOUT, preexec_fn=own_session_dying_with_parent)
        return cls(name, process, log)

    def alive(self) -> bool:
        return self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail(self.log)}")

    def stop(self, grace: float = 10) -> None:
        """SIGTERM to the group, then SIGKILL after `grace` seconds; raises if it survives both."""
        if self.process.poll() is None:  # not reaped, so its pid (= its group id) is still ours
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def stop_all(daemons: Sequence[Daemon]) -> None:
    """Stop every daemon, newest first, even when one resists; then report those still alive."""
    stuck = []
    for daemon in reversed(daemons):
        try:
            daemon.stop()
        except subprocess.TimeoutExpired:
            stuck.append(f"{daemon.name} (pid {daemon.process.pid})")
    if stuck:
        raise RuntimeError(f"survived SIGKILL: {', '.join(stuck)}")


def wait_until(what: str, check: object, timeout: float, interval: float = 0.2,
               alive: Sequence[Daemon] = ()) -> object:
    """Call `check` until it returns something truthy, at most `timeout` seconds; a daemon in `alive`
    that exits ends the wait at once, with its log."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        for daemon in alive:
            daemon.check_alive()
        try:
            last = check()  # type: ignore[operator]
        except Exception as error:
            last = error
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s (last: {last!r})")
        time.sleep(interval)
