"""Is a new cluster ready for the Kubernetes objects? The checks of the cluster readiness gate.

The gate (aws/gate.py) runs `wait_for_cluster` during `pulumi up`, between the instances and the
first Kubernetes object: it asks the API, over the address and with the credentials of the
stack's own kubeconfig (the same ones the Kubernetes provider uses), for `/readyz`, then for the
Node objects of every expected minion and their Ready condition. It waits, bounded, through the
minutes a Fedora node needs to boot and install its packages, and when the bound runs out says
in one line what did not come up and where to look. Standard library only: it runs inside the
Pulumi engine's dynamic provider process as well as in the tests.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

REQUEST_TIMEOUT = 10.0  # seconds per HTTP request: a hung connection must not eat the whole budget
MESSAGE_LIMIT = 160  # characters of the API's own words quoted in the one-line message


class ClusterNotReadyError(RuntimeError):
    """The cluster did not become ready within the gate's bound; the message is one line."""


@dataclass(frozen=True)
class ApiTarget:
    """Where and how the stack's kubeconfig reaches the API."""

    server: str  # https://host:port
    tls_server_name: str | None
    ca_pem: str
    cert_pem: str
    key_pem: str

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.server).hostname or ""

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.server).port or 443


def target_from_kubeconfig(text: str) -> ApiTarget:
    """The current context's server and client certificate of a kubeconfig with embedded data."""
    config = yaml.safe_load(text)
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])

    def data(section: dict[str, str], key: str) -> str:
        return base64.b64decode(section[f"{key}-data"]).decode()

    return ApiTarget(cluster["server"], cluster.get("tls-server-name"), data(cluster, "certificate-authority"),
                     data(user, "client-certificate"), data(user, "client-key"))


@dataclass(frozen=True)
class Node:
    """A node the gate reports on: its name, role and instance (where to look when it fails)."""

    name: str
    role: str  # "master" or "minion"
    instance_id: str


@dataclass
class Observation:
    """What one look at the cluster found."""

    api: str  # "ready", or what the API (or the network) said instead
    nodes: dict[str, str] = field(default_factory=dict)  # minion -> "Ready", "NotReady: ...", "not registered"

    @property
    def ready(self) -> bool:
        return self.api == "ready" and all(state == "Ready" for state in self.nodes.values())


@contextlib.contextmanager
def _client_context(target: ApiTarget) -> Iterator[ssl.SSLContext]:
    """A TLS context that verifies the server with the kubeconfig's CA and presents its client
    certificate. ssl takes the key pair only from files: they live in a private directory for the
    duration of the check and are removed right after."""
    context = ssl.create_default_context(cadata=target.ca_pem)
    with tempfile.TemporaryDirectory(prefix="atomic-gate-") as directory:
        os.chmod(directory, 0o700)
        cert, key = os.path.join(directory, "client.crt"), os.path.join(directory, "client.key")
        for path, pem in ((cert, target.cert_pem), (key, target.key_pem)):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
                out.write(pem)
        context.load_cert_chain(cert, key)
    yield context


class _Connection(http.client.HTTPSConnection):
    """HTTPS to the server's address, verifying the certificate for `tls_server_name` (the kubeconfig's
    tls-server-name: the first master's Elastic IP is in no certificate, `kubernetes` is in all)."""

    def __init__(self, target: ApiTarget, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=REQUEST_TIMEOUT, context=context)
        self._server_name = target.tls_server_name or target.host
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self._server_name)


def _get(target: ApiTarget, context: ssl.SSLContext, path: str) -> tuple[int, str]:
    connection = _Connection(target, context)
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MESSAGE_LIMIT else flat[: MESSAGE_LIMIT - 3] + "..."


def _node_state(node: dict[str, Any]) -> str:
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None:
        return "NotReady: no Ready condition yet"
    if ready.get("status") == "True":
        return "Ready"
    return _short(f"NotReady: {ready.get('reason', '')} {ready.get('message', '')}".rstrip())


def observe(target: ApiTarget, minions: Sequence[str]) -> Observation:
    """One look: the API's /readyz, then (once ready) every expected minion's Ready condition."""
    try:
        with _client_context(target) as context:
            status, body = _get(target, context, "/readyz?verbose")
            if status != 200:
                failing = [line.strip() for line in body.splitlines() if line.startswith("[-]")]
                return Observation(_short(f"/readyz answered {status}: {' '.join(failing) or body}"),
                                   dict.fromkeys(minions, "unknown: the API is not ready"))
            status, body = _get(target, context, "/api/v1/nodes")
    except ssl.SSLCertVerificationError as error:
        return Observation(_short(f"its certificate is not the cluster's: {error.verify_message}"),
                           dict.fromkeys(minions, "unknown"))
    except (OSError, http.client.HTTPException, ssl.SSLError) as error:
        return Observation(_short(f"unreachable: {error}"), dict.fromkeys(minions, "unknown"))
    if status != 200:
        return Observation(_short(f"listing nodes answered {status}: {body}"), dict.fromkeys(minions, "unknown"))
    items = {item["metadata"]["name"]: item for item in json.loads(body).get("items", [])}
    return Observation("ready", {name: _node_state(items[name]) if name in items else "not registered"
                                 for name in minions})


# Where each role's failures show, for the one-line message.
_LOOK = {
    "master": "journalctl -u etcd -u kube-apiserver",
    "minion": "journalctl -u kubelet -u crio -u haproxy",
}


def not_ready_message(cluster: str, server: str, waited: float, seen: Observation, nodes: Sequence[Node]) -> str:
    """One line: what did not come up, and where to look (unit logs, cloud-init's output, the console)."""
    problems = [] if seen.api == "ready" else [f"the API at {server} {seen.api}"]
    problems += [f"{name} {state}" for name, state in sorted(seen.nodes.items()) if state != "Ready"
                 and seen.api == "ready"]
    suspects = [n for n in nodes if n.role == "master"] if seen.api != "ready" else \
        [n for n in nodes if n.name in seen.nodes and seen.nodes[n.name] != "Ready"]
    look = "; ".join(f"{n.name} ({n.instance_id}): {_LOOK[n.role]}" for n in suspects[:3])
    return (f"cluster {cluster} not ready after {waited:.0f} s: {', '.join(problems)}. Look at {look}, and "
            f"/var/log/cloud-init-output.log (aws ec2 get-console-output --latest --instance-id <id> shows it "
            f"without logging in)")


def wait_for_cluster(target: ApiTarget, cluster: str, nodes: Sequence[Node], timeout: float,
                     interval: float = 10.0, clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep,
                     report: Callable[[str], None] = lambda line: None) -> Observation:
    """Look until the API is ready and every minion is Ready, at most `timeout` seconds; raise
    ClusterNotReadyError with the one-line message when that runs out. `report` hears each change."""
    minions = [n.name for n in nodes if n.role == "minion"]
    start = clock()
    last = ""
    while True:
        seen = observe(target, minions)
        summary = f"API {seen.api}; " + ", ".join(f"{k} {v}" for k, v in sorted(seen.nodes.items()))
        if summary != last:
            report(f"after {clock() - start:.0f} s: {summary}")
            last = summary
        if seen.ready:
            return seen
        waited = clock() - start
        if waited + interval > timeout:
            raise ClusterNotReadyError(not_ready_message(cluster, target.server, waited, seen, nodes))
        sleep(interval)
