"""The minions' API proxy (rendered haproxy.cfg) run by a real HAProxy on loopback.

The file is rendered exactly as for a 3-master stack; only the listen port and the
masters' addresses (to 127.0.0.1 with free ports) are substituted, and a stats socket
is added so the test can read what HAProxy thinks of each master. Stand-in
"apiservers" are TLS servers (a throwaway certificate from the openssl CLI) that
answer with their name, as HAProxy's TLS health check needs a TLS peer. Needs
/usr/sbin/haproxy (Debian haproxy 2.6; Fedora ships 3.x with the same syntax for what
is used here) and socat: the test fails, not skips, without them.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from components.facts import API_PORT
from components.node.layout import compute_layout
from components.node.worker import render_api_proxy
from tests.components.node.shapes import cluster_settings
from tools.testing.processes import free_ports, own_session_dying_with_parent

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

HAPROXY = "/usr/sbin/haproxy"
SOCAT = "/usr/bin/socat"
OPENSSL = "/usr/bin/openssl"
# fall 3 x inter 2 s in the rendered file, plus slack for a loaded CI machine
MARK_DOWN_WITHIN = 30.0


def _certificate(directory: Path) -> ssl.SSLContext:
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=kubernetes"],
                   cwd=directory, check=True, capture_output=True, timeout=30)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


class _Apiserver(socketserver.ThreadingTCPServer):
    """Says its name to whoever completes a TLS handshake (HAProxy's checks hang up right after it)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, name: str, tls: ssl.SSLContext) -> None:
        self.name = name

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    with tls.wrap_socket(self.request, server_side=True) as conn:
                        conn.sendall(name.encode())
                except (ssl.SSLError, OSError):
                    pass  # a health check that closed after the handshake

        super().__init__(("127.0.0.1", port), Handler)


def _render(proxy_port: int, master_ports: list[int], stats: Path) -> tuple[str, list[str]]:
    layout = compute_layout(cluster_settings(master_count=3, minion_count=2), "test")
    text = render_api_proxy(layout)
    assert text.count(f"bind 127.0.0.1:{API_PORT}") == 1
    text = text.replace(f"bind 127.0.0.1:{API_PORT}", f"bind 127.0.0.1:{proxy_port}")
    for master, port in zip(layout.masters, master_ports, strict=True):
        address = f"{master.private_ip}:{API_PORT}"
        assert text.count(address) == 1, address
        text = text.replace(address, f"127.0.0.1:{port}")
    # No syslog socket in a test sandbox; and the stats socket is the test's window into HAProxy.
    text = re.sub(r"^\s*log /dev/log.*\n", "", text, flags=re.MULTILINE)
    text = text.replace("global\n", f"global\n    stats socket {stats} mode 600 level admin\n", 1)
    return text, [m.name for m in layout.masters]


def _ask(port: int) -> str:
    """The name of the stand-in apiserver a connection through the proxy reached ("" if none)."""
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                client.wrap_socket(raw) as conn:
            chunks = []
            while chunk := conn.recv(64):
                chunks.append(chunk)
        return b"".join(chunks).decode()
    except (ssl.SSLError, ConnectionError):
        return ""


def _operational_state(stats: Path, server: str) -> int:
    """HAProxy's srv_op_state for one server of backend `masters`: 0 stopped (down), 2 running."""
    done = subprocess.run([SOCAT, "-", f"UNIX-CONNECT:{stats}"], input="show servers state masters\n",
                          capture_output=True, text=True, timeout=10, check=True)
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[3] == server:
            return int(fields[5])
    raise AssertionError(f"{server} not in HAProxy's state: {done.stdout}")


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[dict[str, Any]]:
    assert os.access(HAPROXY, os.X_OK), "haproxy is missing: install Debian's haproxy"
    assert os.access(SOCAT, os.X_OK), "socat is missing: install Debian's socat"
    proxy_port, *master_ports = free_ports(4)
    stats = tmp_path / "stats.sock"
    text, names = _render(proxy_port, master_ports, stats)
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    tls = _certificate(tmp_path)
    with ExitStack() as stack:
        servers = {}
        for name, port in zip(names, master_ports, strict=True):
            server = _Apiserver(port, name, tls)
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers[name] = server
        child = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, preexec_fn=own_session_dying_with_parent)
        stack.callback(lambda: child.wait(timeout=10))
        stack.callback(lambda: os.killpg(child.pid, signal.SIGTERM) if child.poll() is None else None)
        deadline = time.monotonic() + 15
        # Up once every master passed its TLS check (rise 2 x inter 2 s).
        while not (stats.exists() and all(_operational_state(stats, n) == 2 for n in names)):
            assert child.poll() is None, child.stdout.read().decode() if child.stdout else "haproxy exited"
            assert time.monotonic() < deadline, "haproxy did not see every master up within 15 s"
            time.sleep(0.2)
        yield {"port": proxy_port, "servers": servers, "stats": stats}


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


def test_tls_health_checks_find_every_master_and_connections_spread_over_them(proxy: dict[str, Any]) -> None:
    seen = Counter(_ask(proxy["port"]) for _ in range(30))
    assert set(seen) == set(proxy["servers"]), seen  # every answer came from a master, "" never


def test_a_master_that_stops_answering_loses_no_connection_and_is_marked_down(proxy: dict[str, Any]) -> None:
    port, servers, stats = proxy["port"], proxy["servers"], proxy["stats"]
    gone = "atomic-master-2"
    servers[gone].shutdown()
    servers[gone].server_close()
    others = set(servers) - {gone}
    # redispatch + retries: even before the health check marks it down, no connection fails
    answers = [_ask(port) for _ in range(30)]
    assert set(answers) <= others, Counter(answers)
    deadline = time.monotonic() + MARK_DOWN_WITHIN
    while _operational_state(stats, gone) != 0:
        assert time.monotonic() < deadline, f"{gone} was not marked down within {MARK_DOWN_WITHIN} s"
        time.sleep(0.5)
    assert all(_operational_state(stats, name) == 2 for name in others)
    assert set(Counter(_ask(port) for _ in range(20))) == others


class _NotTls(socketserver.ThreadingTCPServer):
    """A port that accepts and hangs up without TLS: an apiserver still starting, or something else."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.close()

        super().__init__(("127.0.0.1", port), Handler)


def test_a_master_whose_port_is_open_but_serves_no_tls_is_marked_down(proxy: dict[str, Any]) -> None:
    """The TLS health check is stricter than a TCP connect: an open port is not an apiserver."""
    servers, stats = proxy["servers"], proxy["stats"]
    name = "atomic-master-3"
    port = servers[name].server_address[1]
    servers[name].shutdown()
    servers[name].server_close()
    impostor = _NotTls(port)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    try:
        deadline = time.monotonic() + MARK_DOWN_WITHIN
        while _operational_state(stats, name) != 0:
            assert time.monotonic() < deadline, f"{name} still up without TLS after {MARK_DOWN_WITHIN} s"
            time.sleep(0.5)
    finally:
        impostor.shutdown()
        impostor.server_close()


def _served(port: int) -> tuple[float, str, str]:
    """(when it started, name, sha256 of the certificate) of the stand-in apiserver a connection through
    the proxy reached; name "" when it failed."""
    started = time.monotonic()
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, client.wrap_socket(raw) as conn:
            der = conn.getpeercert(binary_form=True) or b""
            chunks = []
            while chunk := conn.recv(64):
                chunks.append(chunk)
        return started, b"".join(chunks).decode(), hashlib.sha256(der).hexdigest()
    except (ssl.SSLError, OSError):
        return started, "", ""


def test_masters_renewed_one_at_a_time_keep_the_cluster_reachable_through_the_proxy(proxy: dict[str, Any],
                                                                                    tmp_path: Path) -> None:
    """A renewal restarts each master's apiserver with its new certificate (atomic-fetch-pki --renew,
    the masters' timers 20 minutes apart; here one after the other). Clients connect through the
    minion's HAProxy throughout: every connection made while a master is down or starting again
    reaches another one; the only ones lost are those the stopping server had accepted (in the kernel's
    queue) when its listener closed: HAProxy had connected, so it cannot redispatch them (its log
    says `SD`, aborted by the server in the data phase): one per restart in most runs, never more
    than two, never while every master runs. Afterwards every master serves its new certificate."""
    port, servers = proxy["port"], proxy["servers"]
    old = {_served(port)[2] for _ in range(10)}
    assert len(old) == 1 and "" not in old, old  # the fixture's stand-ins share one certificate
    answers: list[tuple[float, str, str]] = []
    stops: list[float] = []
    stop = threading.Event()

    def clients() -> None:
        while not stop.is_set():
            answers.append(_served(port))
            time.sleep(0.05)

    thread = threading.Thread(target=clients, daemon=True)
    thread.start()
    renewed: list[_Apiserver] = []
    try:
        for name in list(servers):
            listening = servers[name].server_address[1]
            stops.append(time.monotonic())
            servers[name].server_close()  # the apiserver stops (its listener first, as Go's Shutdown) ...
            servers[name].shutdown()
            directory = tmp_path / f"renewed-{name}"
            directory.mkdir()
            time.sleep(3.0)  # ... and starts again on its new certificate
            server = _Apiserver(listening, name, _certificate(directory))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers[name] = server
            renewed.append(server)
            time.sleep(5.0)  # HAProxy's rise (2 x 2 s) before the next master's turn
        stop.set()
        thread.join(timeout=30)
        after = Counter(_served(port)[1:] for _ in range(30))
    finally:
        stop.set()
        for server in renewed:
            server.shutdown()
            server.server_close()
    failed = [when for when, name, _ in answers if name == ""]
    # A connection is lost only if it was in flight (begun up to half a second before: the client's own
    # time) when a master stopped, or made while it was down (3 s), never while every master ran.
    windows = [(stopped - 0.5, stopped + 3.0) for stopped in stops]
    print(f"{len(answers)} connections through the proxy during {len(stops)} restarts, {len(failed)} failed: "
          f"{[round(f - s, 2) for f in failed for s in stops if -0.5 <= f - s < 3.0]} s from a stop")
    assert len(answers) > 60
    assert all(any(low <= f < high for low, high in windows) for f in failed), "one failed while every master ran"
    assert all(sum(1 for f in failed if low <= f < high) <= 2 for low, high in windows), "more than in flight"
    assert {name for name, _ in after} == set(servers), after
    assert not {digest for _, digest in after} & old, "every master serves its new certificate"
