"""Certificate renewal, for real: prod's three masters as etcd 3.4 members booted from their rendered
user-data (client and peer mutual TLS), a writer through every endpoint and a watch opened before
the renewal, then each member's server and peer certificates renewed by the node's own
`atomic-fetch-pki --renew` (Debian's python3, against a stand-in SSM that now holds the new
certificates, the member's systemctl the test machinery's), one member after the other as their
timers would.

Shown: atomic-fetch-pki writes exactly the four renewed files and restarts nothing (etcd's PID is the
same); every new TLS connection to a member is served the new certificate; the watch opened before
sees the writes made after; no write failed and every acknowledged write is on every member. A new
etcd CA file (a byte more) restarts that member, and only it, and the cluster keeps its quorum.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from components.node.cloud_init import FETCH_SCRIPT
from components.node.formats import shipped
from components.node.pki import node_pki
from components.node.pod_network import render_cluster_env
from tools.harness.offline import Plan, run_program
from tools.testing import etcd

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

# A stand-in for boto3: the SSM paginator over a JSON file of parameters.
FAKE_BOTO3 = '''
import json, os
class _Paginator:
    def paginate(self, Path, Recursive, WithDecryption):
        params = json.load(open(os.environ["FAKE_SSM"]))
        return [{"Parameters": [p for p in params if p["Name"].startswith(Path + "/")]}]
class _Client:
    def get_paginator(self, name):
        return _Paginator()
def client(service, region_name):
    return _Client()
'''


def served_certificate(member: etcd.Member, nodes: etcd.EtcdNodes) -> str:
    """sha256 of the certificate a new TLS connection to the member's client port is served."""
    context = ssl.create_default_context(cafile=str(nodes.client.ca))
    context.load_cert_chain(str(nodes.client.cert), str(nodes.client.key))
    context.check_hostname = False
    with socket.create_connection((member.address, 2379), timeout=10) as raw, context.wrap_socket(raw) as conn:
        der = conn.getpeercert(binary_form=True)
    assert der
    return hashlib.sha256(der).hexdigest()


def renew(nodes: etcd.EtcdNodes, member: etcd.Member, tmp_path: Path, renewed: dict[str, str]) -> str:
    """atomic-fetch-pki --renew on `member`, SSM holding its key material with `renewed` replaced."""
    work = tmp_path / f"renew-{member.name}"
    (work / "stub").mkdir(parents=True, exist_ok=True)
    (work / "stub/boto3.py").write_text(FAKE_BOTO3)
    (work / "atomic-fetch-pki").write_text(shipped(FETCH_SCRIPT))
    (work / "cluster.env").write_text(render_cluster_env(nodes.layout, member.node))
    member.key_material.update(renewed)
    path = nodes.layout.ssm_path(member.node)
    (work / "ssm.json").write_text(json.dumps([{"Name": f"{path}{f}", "Value": v}
                                               for f, v in member.key_material.items()]))
    done = subprocess.run(
        ["/usr/bin/python3", str(work / "atomic-fetch-pki"), "--renew"], capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(work / "stub"), "FAKE_SSM": str(work / "ssm.json"),
             "ATOMIC_ENV": str(work / "cluster.env"), "ATOMIC_ROOT": str(member.root),
             "ATOMIC_SYSTEMCTL": str(member.systemctl)})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def prod_plan() -> Plan:
    return run_program("prod")


def test_renewed_etcd_certificates_are_served_without_a_restart_and_the_cluster_keeps_serving(
        tmp_path: Path, prod_plan: Plan) -> None:
    assert Path("/usr/bin/python3").exists()
    with etcd.boot("prod", tmp_path, plan=prod_plan) as nodes:
        assert nodes.pki is not None
        writer = etcd.Writer(nodes).start()
        writer.wait_for(30)
        watch = subprocess.Popen([str(etcd.ETCDCTL), f"--endpoints={nodes.members[0].client_url}",
                                  *nodes.client.flags(), "watch", "/atomic/after-renewal", "--prefix"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={"PATH": "/usr/bin:/bin", "ETCDCTL_API": "3"})
        try:
            time.sleep(1)
            pids = {m.name: m.pid() for m in nodes.members}
            served_before = {m.name: served_certificate(m, nodes) for m in nodes.members}
            for member in nodes.members:
                specs = [c for c in node_pki(nodes.layout, member.node).certs if c.identity in ("etcd-server",
                                                                                             "etcd-peer")]
                renewed = {}
                for spec in specs:
                    issued = nodes.pki.issue(spec, member.relocation.address)
                    renewed[spec.cert_path], renewed[spec.key_path] = issued.cert_pem, issued.key_pem
                assert served_certificate(member, nodes) == served_before[member.name], "stable until renewed"
                out = renew(nodes, member, tmp_path, renewed)
                assert "wrote 4 of" in out and "restarted" not in out, out
                assert served_certificate(member, nodes) != served_before[member.name]
                writer.wait_for(len(writer.acknowledged) + 20)
            assert {m.name: m.pid() for m in nodes.members} == pids, "no etcd was restarted"
            put = nodes.ctl("put", "/atomic/after-renewal/1", "seen")
            assert put.returncode == 0, put.stderr
            time.sleep(2)
            watch.terminate()
            seen, errors = watch.communicate(timeout=10)
            assert "/atomic/after-renewal/1" in seen and "seen" in seen, (seen, errors)
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.wait(timeout=10)
        writer.stop()
        assert not writer.failures, f"{len(writer.failures)} writes failed, e.g. {writer.failures[:3]}"
        for member in nodes.members:
            held = nodes.get_all(writer.prefix, member=member)
            assert not set(writer.acknowledged) - set(held), member.name


def test_a_new_etcd_ca_file_restarts_that_member_alone_and_quorum_holds(tmp_path: Path, prod_plan: Plan) -> None:
    with etcd.boot("prod", tmp_path, plan=prod_plan) as nodes:
        pids = {m.name: m.pid() for m in nodes.members}
        target = nodes.members[1]
        ca = "/etc/etcd/pki/ca.crt"
        out = renew(nodes, target, tmp_path, {ca: target.key_material[ca] + "\n"})
        assert "wrote 1 of" in out and "restarted etcd" in out, out
        assert target.pid() != pids[target.name], "the member with the new CA file was restarted"
        assert {m.name: m.pid() for m in nodes.members if m is not target} == \
               {n: p for n, p in pids.items() if n != target.name}
        nodes.wait_healthy()
        assert nodes.ctl("put", "/atomic/after-ca", "ok").returncode == 0
