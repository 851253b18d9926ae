"""The control plane's security controls, exercised against the real daemons booted from the masters'
own user-data (tools/testing/control_plane.py): Secrets encrypted in etcd, the audit log, the TLS
policy of every secure port, and a broken encryption config refused by the apiserver itself."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from components.facts import API_PORT, ETCD_CLIENT_PORT
from components.node.control_plane import AUDIT_LOG
from components.node.pki import ENCRYPTION_CONFIG, admin_cert
from tools.testing import control_plane as cp

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

PLAINTEXT = "the-password-no-disk-may-hold"


def _create_secret(plane: cp.ControlPlane) -> str:
    name = f"at-rest-{uuid.uuid4().hex[:8]}"
    made = plane.api.request("POST", "/api/v1/namespaces/default/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"password": PLAINTEXT}})
    assert made.status_code == 201, made.text
    return name


def test_a_secret_is_stored_in_etcd_encrypted_and_read_back_in_the_clear(dev_control_plane: cp.ControlPlane) -> None:
    """What etcd holds is the secretbox envelope with the stack's key (key1), never the value; the
    apiserver decrypts it for an authorised reader."""
    plane = dev_control_plane
    name = _create_secret(plane)
    stored = cp.etcdctl(plane.masters[0], "get", f"/registry/secrets/default/{name}", "--print-value-only")
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.startswith("k8s:enc:secretbox:v1:key1:")
    assert PLAINTEXT not in stored.stdout and "password" not in stored.stdout
    read = plane.api.get(f"/api/v1/namespaces/default/secrets/{name}")
    assert read.status_code == 200
    assert json.loads(read.text)["data"]["password"] == "dGhlLXBhc3N3b3JkLW5vLWRpc2stbWF5LWhvbGQ="
    for daemon in plane.daemons():  # and the key itself is in no daemon's log
        assert plane.pki.encryption_key not in daemon.log.read_text(), daemon.name


def _audit_events(plane: cp.ControlPlane) -> list[dict[str, Any]]:
    log = plane.masters[0].relocation.path(AUDIT_LOG)
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_audit_log_records_who_touched_a_secret_but_not_what_it_holds(dev_control_plane: cp.ControlPlane) -> None:
    plane = dev_control_plane
    name = _create_secret(plane)
    assert plane.api.get(f"/api/v1/namespaces/default/secrets/{name}").status_code == 200

    def events() -> list[dict[str, Any]] | None:
        # The log backend writes batches; wait (bounded) until both events are on disk.
        mine = [e for e in _audit_events(plane) if e.get("objectRef", {}).get("name") == name]
        return mine if {e["verb"] for e in mine} >= {"create", "get"} else None

    mine = cp.wait_for(plane, "the Secret's audit events", events, timeout=30)
    assert isinstance(mine, list)
    for event in mine:
        assert event["level"] == "Metadata" and event["stage"] == "ResponseComplete"
        assert event["user"]["username"] == admin_cert().common_name
        assert "requestObject" not in event and "responseObject" not in event
    log = plane.masters[0].relocation.path(AUDIT_LOG).read_text()
    assert PLAINTEXT not in log and "dGhlLXBhc3N3b3Jk" not in log


def test_the_audit_log_keeps_the_request_of_a_change_and_skips_health_checks(
        dev_control_plane: cp.ControlPlane) -> None:
    plane = dev_control_plane
    name = f"audited-{uuid.uuid4().hex[:8]}"
    made = plane.api.request("POST", "/api/v1/namespaces/default/serviceaccounts",
                             {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
    assert made.status_code == 201, made.text

    def event() -> dict[str, Any] | None:
        return next((e for e in _audit_events(plane) if e.get("objectRef", {}).get("name") == name
                     and e["verb"] == "create"), None)

    created = cp.wait_for(plane, "the ServiceAccount's audit event", event, timeout=30)
    assert isinstance(created, dict)
    assert created["level"] == "Request" and created["requestObject"]["metadata"]["name"] == name
    assert not [e for e in _audit_events(plane) if str(e.get("requestURI", "")).startswith(("/readyz", "/healthz"))]


def _handshake(address: str, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """One TLS handshake by OpenSSL's client, no certificate sent: whether the server accepts the
    protocol and cipher is decided before it asks for one."""
    return subprocess.run(["openssl", "s_client", "-connect", f"{address}:{port}", "-servername", "kubernetes",
                           *args], input="", capture_output=True, text=True, timeout=30)


def _ports(plane: cp.ControlPlane) -> dict[str, int]:
    return {"kube-apiserver": API_PORT, "etcd": ETCD_CLIENT_PORT,
            "kube-controller-manager": cp.CONTROLLER_MANAGER_PORT, "kube-scheduler": cp.SCHEDULER_PORT}


# Both key types: the apiserver and etcd serve the plan's ECDSA certificates, the controller-manager
# and scheduler the self-signed RSA ones they make for themselves (as kubeadm's do).
ALLOWED = ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
# What each case offers: OpenSSL's client would not offer TLS 1.1 at its default security level.
REFUSED = {
    "TLS 1.1": ("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"),
    "TLS 1.2 with a CBC cipher": ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA"),
    "TLS 1.2 with a CBC-SHA256 cipher": ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256"),
}


@pytest.mark.parametrize("offer", REFUSED.values(), ids=REFUSED.keys())
def test_every_secure_port_refuses_old_protocols_and_weak_ciphers(dev_control_plane: cp.ControlPlane,
                                                                  offer: tuple[str, ...]) -> None:
    """Each would be accepted by Go's defaults (the CBC suites are in crypto/tls's default list); the
    rendered flags and etcd.conf turn them away. A handshake with an allowed suite proves the port
    answers at all."""
    plane = dev_control_plane
    master = plane.masters[0]
    for daemon, port in _ports(plane).items():
        if port in (cp.CONTROLLER_MANAGER_PORT, cp.SCHEDULER_PORT):  # they start after the apiserver is ready
            def healthy(p: int = port) -> bool:
                return cp.component_healthy(plane, master, p)

            cp.wait_for(plane, f"{daemon} /healthz", healthy)
        accepted = _handshake(master.loopback, port, *ALLOWED)
        assert re.search(r"Cipher is ECDHE-(ECDSA|RSA)-AES128-GCM-SHA256", accepted.stdout), (daemon, accepted.stdout)
        refused = _handshake(master.loopback, port, *offer)
        assert refused.returncode != 0 and "Cipher is (NONE)" in refused.stdout, (daemon, refused.stdout)


def test_a_broken_encryption_config_stops_the_apiserver_with_its_own_message(tmp_path: Path) -> None:
    """A key of the wrong length (secretbox needs 32 bytes) is refused by the apiserver before it
    serves: the control plane never gets ready and the apiserver's log says why."""
    def short_key(master: cp.Master) -> None:
        config = master.relocation.path(ENCRYPTION_CONFIG)
        text = config.read_text()
        secret = next(line.split("secret: ")[1] for line in text.splitlines() if "secret: " in line)
        config.write_text(text.replace(secret, "c2hvcnQ="))  # base64("short")

    with pytest.raises(cp.ControlPlaneError) as refused, cp.boot("dev", tmp_path, mutate=short_key, ready_timeout=20):
        pass
    log = refused.value.logs["kube-apiserver on atomic-master-1"]
    assert ("resources[0].providers[0].secretbox.keys[0].secret: Invalid value: \\\"REDACTED\\\": secret is not of "
            "the expected length, got 5, expected one of [32]") in log, log[-2000:]
    assert "c2hvcnQ" not in log  # nor is the key
