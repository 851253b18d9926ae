"""The minions' API proxy (rendered haproxy.cfg) run by a real HAProxy on loopback.

The file is rendered exactly as for a 3-master stack; only the listen port and the
masters' addresses (to 127.0.0.1 with free ports) are substituted. Stand-in
"apiservers" are TCP servers that answer with their name. Needs /usr/sbin/haproxy
(Debian haproxy 2.6; Fedora ships 3.x with the same syntax for what is used here):
the test fails, not skips, without it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from components.bootstrap import API_PORT, compute_layout, render_api_proxy
from tests.support.mariadb import free_ports, own_session_dying_with_parent
from tests.test_bootstrap import cluster_settings

HAPROXY = "/usr/sbin/haproxy"
# Covers the window before and after the health check marks a master down (fall 3 x inter 2 s).
MARK_DOWN_WITHIN = 8.0


class _Named(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, name: str) -> None:
        self.name = name

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.sendall(name.encode())

        super().__init__(("127.0.0.1", port), Handler)


def _render(proxy_port: int, master_ports: list[int]) -> tuple[str, list[str]]:
    layout = compute_layout(cluster_settings(master_count=3, minion_count=2), "test")
    text = render_api_proxy(layout)
    assert text.count(f"bind 127.0.0.1:{API_PORT}") == 1
    text = text.replace(f"bind 127.0.0.1:{API_PORT}", f"bind 127.0.0.1:{proxy_port}")
    for master, port in zip(layout.masters, master_ports, strict=True):
        address = f"{master.private_ip}:{API_PORT}"
        assert text.count(address) == 1, address
        text = text.replace(address, f"127.0.0.1:{port}")
    # No syslog socket in a test sandbox: HAProxy would only warn, but keep its output clean.
    text = re.sub(r"^\s*log /dev/log.*\n", "", text, flags=re.MULTILINE)
    return text, [m.name for m in layout.masters]


def _ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        chunks = []
        while chunk := conn.recv(64):
            chunks.append(chunk)
    return b"".join(chunks).decode()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[int, dict[str, _Named]]]:
    assert os.access(HAPROXY, os.X_OK), "haproxy is missing: install Debian's haproxy"
    proxy_port, *master_ports = free_ports(4)
    text, names = _render(proxy_port, master_ports)
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    with ExitStack() as stack:
        servers = {}
        for name, port in zip(names, master_ports, strict=True):
            server = _Named(port, name)
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers[name] = server
        child = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, preexec_fn=own_session_dying_with_parent)
        stack.callback(lambda: child.wait(timeout=10))
        stack.callback(lambda: os.killpg(child.pid, signal.SIGTERM) if child.poll() is None else None)
        deadline = time.monotonic() + 10
        while True:
            try:
                _ask(proxy_port)
                break
            except OSError:
                assert child.poll() is None, child.stdout.read().decode() if child.stdout else "haproxy exited"
                assert time.monotonic() < deadline, "haproxy did not listen within 10 s"
                time.sleep(0.1)
        yield proxy_port, servers


def test_haproxy_accepts_the_rendered_configuration_of_every_shape(tmp_path: Path) -> None:
    assert os.access(HAPROXY, os.X_OK), "haproxy is missing: install Debian's haproxy"
    for masters in (1, 3):
        layout = compute_layout(cluster_settings(master_count=masters, minion_count=2), "test")
        config = tmp_path / f"haproxy-{masters}.cfg"
        config.write_text(render_api_proxy(layout))
        done = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Configuration file is valid" in done.stdout + done.stderr


def test_haproxy_refuses_a_broken_configuration(tmp_path: Path) -> None:
    """The check above can fail: a typo in a keyword is reported."""
    assert os.access(HAPROXY, os.X_OK), "haproxy is missing: install Debian's haproxy"
    layout = compute_layout(cluster_settings(master_count=3, minion_count=2), "test")
    config = tmp_path / "broken.cfg"
    config.write_text(render_api_proxy(layout).replace("balance leastconn", "balance fastest"))
    done = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0


def test_connections_spread_over_every_master(proxy: tuple[int, dict[str, _Named]]) -> None:
    port, servers = proxy
    seen = Counter(_ask(port) for _ in range(30))
    assert set(seen) == set(servers), seen


def test_a_master_that_stops_answering_loses_no_connection(proxy: tuple[int, dict[str, _Named]]) -> None:
    port, servers = proxy
    gone = "atomic-master-2"
    servers[gone].shutdown()
    servers[gone].server_close()
    # redispatch + retries: even before the health check marks it down, nothing fails
    answers = [_ask(port) for _ in range(30)]
    assert gone not in answers and len(answers) == 30
    deadline = time.monotonic() + MARK_DOWN_WITHIN
    while time.monotonic() < deadline:  # and once it is marked down, nothing is sent its way
        answers = [_ask(port) for _ in range(10)]
        assert gone not in answers
        time.sleep(0.5)
    assert set(Counter(_ask(port) for _ in range(20))) == set(servers) - {gone}
