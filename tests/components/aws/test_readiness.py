"""The cluster readiness gate (aws/readiness.py, aws/gate.py) against servers on loopback.

A stand-in API server speaks HTTPS with the cluster's client-certificate authentication (Python
ssl, certificates issued for real by tools/testing/pki.py, the server's naming `kubernetes` as the
real apiserver's do): first it refuses connections, then /readyz answers 503, then 200, while its
node list fills and turns Ready. The gate is driven through the dynamic provider's own create with
a kubeconfig rendered as the stack renders it. Then the same against the real kube-apiserver.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from components.aws import readiness
from components.aws.gate import ReadinessProvider
from components.node.kubernetes import render_admin_kubeconfig
from components.node.pki import CertSpec, admin_cert
from tools.testing import control_plane as cp
from tools.testing.pki import IssuingPki
from tools.testing.processes import free_port

MINIONS = ("atomic-minion-1", "atomic-minion-2")
NODES = [{"name": "atomic-master-1", "role": "master", "instanceId": "i-0aaaaaaaaaaaaaaa1"},
         {"name": MINIONS[0], "role": "minion", "instanceId": "i-0bbbbbbbbbbbbbbb2"},
         {"name": MINIONS[1], "role": "minion", "instanceId": "i-0ccccccccccccccc3"}]
APISERVER = CertSpec("test", "apiserver", "kubernetes", "kube-apiserver", None, ("kubernetes",), ("127.0.0.1",),
                     True, False, "", "")


def _node(name: str, ready: bool) -> dict[str, Any]:
    condition = {"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady" if ready
                 else "KubeletNotReady", "message": "" if ready else "container runtime network not ready"}
    return {"metadata": {"name": name}, "status": {"conditions": [condition]}}


@dataclass
class Script:
    """What the stand-in answers at its n-th /readyz (after it starts listening)."""

    ready_after: int  # /readyz answers 503 this many times, then 200
    nodes: list[list[dict[str, Any]]]  # the node list at each /api/v1/nodes, the last one repeated
    readyz_calls: int = 0
    node_calls: int = 0
    clients: list[str] = field(default_factory=list)


def _handler(script: Script) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            peer = self.connection.getpeercert()
            script.clients.append(dict(x[0] for x in peer["subject"])["commonName"])
            if self.path.startswith("/readyz"):
                script.readyz_calls += 1
                if script.readyz_calls <= script.ready_after:
                    self._send(503, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n")
                else:
                    self._send(200, "readyz check passed\n")
            elif self.path == "/api/v1/nodes":
                items = script.nodes[min(script.node_calls, len(script.nodes) - 1)]
                script.node_calls += 1
                self._send(200, json.dumps({"kind": "NodeList", "items": items}))
            else:
                self._send(404, "not found")

    return Handler


@contextlib.contextmanager
def stand_in(pki: IssuingPki, tmp_path: Path, script: Script, port: int, listen_after: float) -> Iterator[None]:
    """The stand-in API on 127.0.0.1:port, listening only after `listen_after` seconds (refused until then)."""
    issued = pki.issue(APISERVER)
    (tmp_path / "server.crt").write_text(issued.cert_pem)
    (tmp_path / "server.key").write_text(issued.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED  # the cluster's client-certificate authentication
    context.load_verify_locations(cadata=pki.ca_pem("kubernetes"))
    started: list[http.server.ThreadingHTTPServer] = []

    def serve() -> None:
        time.sleep(listen_after)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _handler(script))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        started.append(server)
        server.serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        deadline = time.monotonic() + listen_after + 5
        while not started and time.monotonic() < deadline:
            time.sleep(0.05)
        for server in started:
            server.shutdown()
            server.server_close()
        thread.join(timeout=10)


def _kubeconfig(pki: IssuingPki, port: int) -> str:
    """The stack's admin kubeconfig (tls-server-name kubernetes), pointed at the stand-in's port."""
    admin = pki.issue(admin_cert())
    text = render_admin_kubeconfig("atomic", "127.0.0.1", pki.ca_pem("kubernetes"), admin.cert_pem, admin.key_pem)
    return text.replace("https://127.0.0.1:6443", f"https://127.0.0.1:{port}")


def _props(kubeconfig: str, timeout: float) -> dict[str, Any]:
    return {"kubeconfig": kubeconfig, "cluster": "atomic (test)", "nodes": NODES, "timeoutSeconds": timeout}


def _created(props: dict[str, Any]) -> dict[str, Any]:
    """The dynamic provider's create, as the engine calls it; its outputs."""
    outs = ReadinessProvider().create(props).outs
    assert outs is not None
    return dict(outs)


@pytest.fixture
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate's own loop, polling every 0.1 s instead of 10 s (the test stays within seconds)."""
    original = readiness.wait_for_cluster

    def quick(*args: Any, **kwargs: Any) -> readiness.Observation:
        return original(*args, **{**kwargs, "interval": 0.1})

    monkeypatch.setattr(readiness, "wait_for_cluster", quick)


def test_the_gate_waits_through_refused_503_and_unready_nodes_then_passes(fast_polls: None, tmp_path: Path) -> None:
    pki, port = IssuingPki(), free_port()
    script = Script(ready_after=3, nodes=[[], [_node(MINIONS[0], False)], [_node(MINIONS[0], True)],
                                          [_node(MINIONS[0], True), _node(MINIONS[1], True)]])
    kubeconfig = _kubeconfig(pki, port)
    started = time.monotonic()
    with stand_in(pki, tmp_path, script, port, listen_after=0.6):
        outs = _created(_props(kubeconfig, timeout=30))
    assert time.monotonic() - started < 20
    assert outs["kubeconfig"] == kubeconfig  # what the Kubernetes provider then gets
    assert script.readyz_calls >= 4 and script.node_calls == 4  # waited through every stage
    assert set(script.clients) == {"admin"}  # it authenticated with the stack's admin certificate


def test_the_gate_fails_within_its_bound_with_one_line_saying_where_to_look(fast_polls: None, tmp_path: Path) -> None:
    pki, port = IssuingPki(), free_port()
    script = Script(ready_after=10**6, nodes=[[]])
    started = time.monotonic()
    with stand_in(pki, tmp_path, script, port, listen_after=0), \
            pytest.raises(readiness.ClusterNotReadyError) as failed:
        ReadinessProvider().create(_props(_kubeconfig(pki, port), timeout=2))
    assert time.monotonic() - started < 6
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("cluster atomic (test) not ready after ")
    assert f"the API at https://127.0.0.1:{port} /readyz answered 503: [-]etcd failed" in message
    assert "atomic-master-1 (i-0aaaaaaaaaaaaaaa1): journalctl -u etcd -u kube-apiserver" in message
    assert "/var/log/cloud-init-output.log" in message


def test_a_minion_that_never_registers_is_named_with_its_logs(fast_polls: None, tmp_path: Path) -> None:
    pki, port = IssuingPki(), free_port()
    script = Script(ready_after=0, nodes=[[_node(MINIONS[0], True), _node(MINIONS[1], False)]])
    with stand_in(pki, tmp_path, script, port, listen_after=0), \
            pytest.raises(readiness.ClusterNotReadyError) as failed:
        ReadinessProvider().create(_props(_kubeconfig(pki, port), timeout=1.5))
    message = str(failed.value)
    assert "atomic-minion-2 NotReady: KubeletNotReady container runtime network not ready" in message
    assert "atomic-minion-2 (i-0ccccccccccccccc3): journalctl -u kubelet -u crio -u haproxy" in message
    assert "atomic-minion-1" not in message.split("Look at")[0]


def test_a_server_with_a_certificate_of_another_ca_is_not_taken_for_the_cluster(fast_polls: None,
                                                                              tmp_path: Path) -> None:
    pki, impostor, port = IssuingPki(), IssuingPki(), free_port()
    with stand_in(impostor, tmp_path, Script(0, [[]]), port, listen_after=0), \
            pytest.raises(readiness.ClusterNotReadyError, match="its certificate is not the cluster's"):
        ReadinessProvider().create(_props(_kubeconfig(pki, port), timeout=1))


@pytest.mark.real
def test_the_gate_passes_on_the_real_api_server_once_the_minions_are_ready(fast_polls: None,
                                                                          dev_control_plane: cp.ControlPlane) -> None:
    plane = dev_control_plane
    admin = plane.pki.issue(admin_cert())
    kubeconfig = render_admin_kubeconfig("atomic", plane.masters[0].loopback, plane.pki.ca_pem("kubernetes"),
                                         admin.cert_pem, admin.key_pem)
    api = plane.api
    for name in MINIONS:
        created = api.request("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
        assert created.status_code in (201, 409), created.text
    # Not Ready yet: no condition at all, or the node lifecycle controller's "Kubelet never posted node status".
    with pytest.raises(readiness.ClusterNotReadyError, match="atomic-minion-1 NotReady: "):
        ReadinessProvider().create(_props(kubeconfig, timeout=1))
    for name in MINIONS:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                             "message": "stand-in", "lastHeartbeatTime": now,
                                             "lastTransitionTime": now}]}}
        patched = api.request("PATCH", f"/api/v1/nodes/{name}/status", status, "application/merge-patch+json")
        assert patched.status_code == 200, patched.text
    assert _created(_props(kubeconfig, timeout=30))["kubeconfig"] == kubeconfig
