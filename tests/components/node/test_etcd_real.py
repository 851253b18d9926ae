"""The rendered /etc/etcd/etcd.conf of a 3-master stack starts a real etcd cluster.

The files are rendered exactly as for EC2; only the member addresses (to
127.0.0.1 with free ports) and the data/PKI directories (to a temp dir) are
substituted. Certificates come from a throwaway CA made with the openssl CLI,
so the rendered TLS settings (client and peer mutual TLS) are exercised too.
Needs /usr/bin/etcd and /usr/bin/etcdctl (Debian etcd-server/etcd-client 3.4):
the test fails, not skips, without them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.facts import ETCD_CLIENT_PORT, ETCD_PEER_PORT
from components.node.etcd import ETCD_DATA, render_etcd_conf
from components.node.layout import compute_layout
from components.node.pki import ETCD_PKI
from tests.components.node.shapes import cluster_settings
from tools.testing.node_root import env_values
from tools.testing.processes import free_ports, own_session_dying_with_parent

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
OPENSSL = "/usr/bin/openssl"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _make_ca(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=directory)
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=test etcd CA", "-days", "1", "-out", "ca.crt",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=directory)


def _issue(ca: Path, out: Path, stem: str, common_name: str) -> None:
    """A leaf for 127.0.0.1 usable as server and client (as etcd peers need)."""
    out.mkdir(parents=True, exist_ok=True)
    ext = out / f"{stem}.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{stem}.key", cwd=out)
    _openssl("req", "-new", "-key", f"{stem}.key", "-subj", f"/CN={common_name}", "-out", f"{stem}.csr", cwd=out)
    _openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", str(ca / "ca.crt"), "-CAkey", str(ca / "ca.key"),
             "-CAcreateserial", "-days", "1", "-out", f"{stem}.crt", "-extfile", str(ext), cwd=out)


@dataclass
class Member:
    name: str
    client_url: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class EtcdCluster:
    members: list[Member]
    client_pki: Path
    ca: Path

    def ctl(self, *args: str, endpoints: list[str] | None = None,
            with_cert: bool = True) -> subprocess.CompletedProcess[str]:
        urls = endpoints or [m.client_url for m in self.members]
        tls = ["--cacert", str(self.ca / "ca.crt")]
        if with_cert:
            tls += ["--cert", str(self.client_pki / "client.crt"), "--key", str(self.client_pki / "client.key")]
        return subprocess.run(
            [ETCDCTL, "--endpoints", ",".join(urls), *tls, "--dial-timeout=3s", "--command-timeout=5s", *args],
            capture_output=True, text=True, timeout=30, env={"PATH": os.environ.get("PATH", ""), "ETCDCTL_API": "3"})


def _substitute(text: str, ports: dict[str, tuple[int, int]], addresses: dict[str, str], root: Path,
                member: str) -> str:
    for name, (client, peer) in ports.items():
        text = text.replace(f"{addresses[name]}:{ETCD_CLIENT_PORT}", f"127.0.0.1:{client}")
        text = text.replace(f"{addresses[name]}:{ETCD_PEER_PORT}", f"127.0.0.1:{peer}")
    text = text.replace(ETCD_DATA + "/", f"{root}/data/")
    return text.replace(ETCD_PKI + "/", f"{root}/pki/{member}/")


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    for binary in (ETCD, ETCDCTL, OPENSSL):
        assert Path(binary).exists(), f"{binary} is missing: install Debian's etcd-server, etcd-client and openssl"
    layout = compute_layout(cluster_settings(master_count=3), "test")
    addresses = {m.name: m.private_ip for m in layout.masters}
    free = free_ports(2 * len(layout.masters))
    ports = {m.name: (free[2 * i], free[2 * i + 1]) for i, m in enumerate(layout.masters)}
    ca = tmp_path / "ca"
    _make_ca(ca)
    for m in layout.masters:
        _issue(ca, tmp_path / "pki" / m.name, "server", m.name)
        _issue(ca, tmp_path / "pki" / m.name, "peer", m.name)
        (tmp_path / "pki" / m.name / "ca.crt").write_bytes((ca / "ca.crt").read_bytes())
    _issue(ca, tmp_path / "client", "client", "test-client")

    members: list[Member] = []
    try:
        for m in layout.masters:
            rendered = render_etcd_conf(layout, m)
            conf = _substitute(rendered, ports, addresses, tmp_path, m.name)
            assert not any(ip in conf for ip in addresses.values()), "an EC2 address survived the substitution"
            (tmp_path / f"{m.name}.conf").write_text(conf)
            env = {"PATH": os.environ.get("PATH", ""), **env_values(conf)}
            log = tmp_path / f"{m.name}.log"
            with log.open("wb") as out:
                # Own process group (killed as one) and SIGTERM if pytest dies without cleaning up.
                process = subprocess.Popen([ETCD], env=env, stdout=out, stderr=subprocess.STDOUT,
                                           preexec_fn=own_session_dying_with_parent)
            members.append(Member(m.name, f"https://127.0.0.1:{ports[m.name][0]}", process, log))
        yield EtcdCluster(members, tmp_path / "client", ca)
    finally:
        _kill_all(members)


def _kill_all(members: list[Member]) -> None:
    """Kill every member even when one of them resists; only then report the ones still alive."""
    stuck = []
    for member in members:
        if member.process.poll() is None:  # not reaped, so its pid (= its group id) is still ours
            with contextlib.suppress(ProcessLookupError):
                os.killpg(member.process.pid, signal.SIGKILL)
        try:
            member.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stuck.append(f"{member.name} (pid {member.process.pid})")
    assert not stuck, f"etcd members survived SIGKILL: {', '.join(stuck)}"


def _wait_healthy(cluster: EtcdCluster, endpoints: list[str], deadline_s: float = 40) -> str:
    deadline = time.monotonic() + deadline_s
    result = None
    while time.monotonic() < deadline:
        result = cluster.ctl("endpoint", "health", endpoints=endpoints)
        if result.returncode == 0:
            return result.stdout + result.stderr
        for member in cluster.members:
            if member.client_url in endpoints:
                assert member.process.poll() is None, f"{member.name} exited:\n{member.log.read_text()[-3000:]}"
        time.sleep(0.5)
    logs = "\n".join(m.log.read_text()[-1500:] for m in cluster.members)
    raise AssertionError(f"cluster not healthy in {deadline_s}s: {result and result.stderr}\n{logs}")


def test_rendered_three_member_config_forms_a_healthy_cluster_that_survives_one_loss(etcd_cluster: EtcdCluster) -> None:
    all_urls = [m.client_url for m in etcd_cluster.members]
    health = _wait_healthy(etcd_cluster, all_urls)
    assert health.count("is healthy") == 3

    members = etcd_cluster.ctl("member", "list", "-w", "simple")
    assert members.returncode == 0, members.stderr
    assert sorted(line.split(", ")[2] for line in members.stdout.strip().splitlines()) == \
        sorted(m.name for m in etcd_cluster.members)
    assert all(", started, " in line for line in members.stdout.strip().splitlines())

    put = etcd_cluster.ctl("put", "/atomic/before", "3-members")
    assert put.returncode == 0 and "OK" in put.stdout, put.stderr

    lost = etcd_cluster.members[0]
    os.killpg(lost.process.pid, signal.SIGKILL)
    lost.process.wait(timeout=10)
    survivors = [m.client_url for m in etcd_cluster.members[1:]]
    _wait_healthy(etcd_cluster, survivors)

    put = etcd_cluster.ctl("put", "/atomic/after", "2-of-3", endpoints=survivors)
    assert put.returncode == 0 and "OK" in put.stdout, put.stderr
    got = etcd_cluster.ctl("get", "/atomic/", "--prefix", "--print-value-only", endpoints=survivors)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["2-of-3", "3-members"]


def test_rendered_config_enforces_client_certificates_and_is_fully_understood(etcd_cluster: EtcdCluster) -> None:
    _wait_healthy(etcd_cluster, [m.client_url for m in etcd_cluster.members])
    anonymous = etcd_cluster.ctl("put", "/atomic/anonymous", "x", with_cert=False)
    assert anonymous.returncode != 0, "etcd accepted a client without a certificate"
    for member in etcd_cluster.members:
        log = member.log.read_text()
        # etcd 3.4 warns about ETCD_* variables it does not know: a typo in the renderer would show here.
        assert "unrecognized environment variable" not in log, log
        # The rendered settings themselves ask for mutual TLS on both listeners.
        assert re.search(r"ClientTLS: .*client-cert-auth = true", log), log[-2000:]
        assert re.search(r"peerTLS: .*client-cert-auth = true", log), log[-2000:]
    assert any("client didn't provide a certificate" in m.log.read_text() for m in etcd_cluster.members)
