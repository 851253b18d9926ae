"""Certificates renewed on running nodes: atomic-fetch-pki --renew against a stand-in SSM (which files
it writes, which daemons it restarts), its service and every node's timer through systemd-analyze.

What the renewal does to real daemons (etcd keeps serving on its new certificate without a restart;
the apiservers restarted one at a time behind HAProxy) is test_pki_renewal_real.py's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from components.node.cloud_init import FETCH_SCRIPT, node_files, services
from components.node.formats import shipped
from components.node.pki import CA_KEY, ENCRYPTION_CONFIG, SA_KEY, SA_PUB, node_pki
from components.node.pki_renewal import RENEW_SERVICE, RENEW_TIMER, RENEW_UNIT, renewal_minute
from components.node.pod_network import render_cluster_env
from tests.components.node.shapes import layout_of
from tests.components.node.test_programs import FAKE_BOTO3
from tests.components.node.test_units import SYSTEMD_ANALYZE, _systemd_verify

RECORDING_SYSTEMCTL = '#!/bin/bash\necho "$*" >> "$SYSTEMCTL_LOG"\n'


class Node:
    """One master's root, its SSM path's parameters, and what its systemctl was asked."""

    def __init__(self, tmp_path: Path) -> None:
        self.layout = layout_of(master_count=3)
        self.node = self.layout.masters[0]
        self.tmp = tmp_path
        self.root = tmp_path / "root"
        (self.root / "etc/kubernetes").mkdir(parents=True)
        stub = tmp_path / "stub"
        stub.mkdir()
        (stub / "boto3.py").write_text(FAKE_BOTO3)
        (tmp_path / "cluster.env").write_text(render_cluster_env(self.layout, self.node))
        (tmp_path / "atomic-fetch-pki").write_text(shipped(FETCH_SCRIPT))
        systemctl = tmp_path / "systemctl"
        systemctl.write_text(RECORDING_SYSTEMCTL)
        systemctl.chmod(0o755)
        plan = node_pki(self.layout, self.node)
        self.files = {path: f"PEM of {path}" for path in
                      [*plan.ca_paths, *plan.ca_key_paths, SA_KEY, SA_PUB, ENCRYPTION_CONFIG,
                       *(c.cert_path for c in plan.certs), *(c.key_path for c in plan.certs)]}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        path = self.layout.ssm_path(self.node)
        (self.tmp / "ssm.json").write_text(json.dumps([{"Name": f"{path}{f}", "Value": v}
                                                        for f, v in self.files.items()]))
        log = self.tmp / "systemctl.log"
        log.unlink(missing_ok=True)
        return subprocess.run(
            [sys.executable, str(self.tmp / "atomic-fetch-pki"), *args], capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(self.tmp / "stub"), "FAKE_SSM": str(self.tmp / "ssm.json"),
                 "ATOMIC_ENV": str(self.tmp / "cluster.env"), "ATOMIC_ROOT": str(self.root),
                 "ATOMIC_SYSTEMCTL": str(self.tmp / "systemctl"), "SYSTEMCTL_LOG": str(log)})

    def restarted(self) -> list[str]:
        log = self.tmp / "systemctl.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def master(tmp_path: Path) -> Node:
    node = Node(tmp_path)
    first = node.run()  # the boot's fetch (cloud-init): everything written, nothing restarted
    assert first.returncode == 0, first.stderr
    assert f"wrote {len(node.files)} of {len(node.files)} files" in first.stdout and node.restarted() == []
    return node


def test_nothing_changed_nothing_is_written_or_restarted(master: Node) -> None:
    before = {p: p.stat().st_mtime_ns for p in master.root.rglob("*.crt")}
    done = master.run("--renew")
    assert done.returncode == 0, done.stderr
    assert f"wrote 0 of {len(master.files)} files" in done.stdout and master.restarted() == []
    assert {p: p.stat().st_mtime_ns for p in master.root.rglob("*.crt")} == before


@pytest.mark.parametrize(("renewed", "restarts"), [
    (["/etc/kubernetes/pki/apiserver.crt", "/etc/kubernetes/pki/apiserver-etcd-client.key"], ["kube-apiserver"]),
    (["/etc/kubernetes/pki/scheduler.crt", "/etc/kubernetes/pki/controller-manager.key"],
     ["kube-controller-manager", "kube-scheduler"]),
    (["/etc/etcd/pki/server.crt", "/etc/etcd/pki/server.key", "/etc/etcd/pki/peer.crt"], []),
    (["/etc/etcd/pki/ca.crt"], ["etcd"]),
    ([SA_KEY], ["kube-apiserver", "kube-controller-manager"]),
    ([CA_KEY], ["kube-controller-manager"]),
    (["/etc/kubernetes/pki/ca.crt"], ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
                                      "kube-proxy"]),
    ([ENCRYPTION_CONFIG, "/etc/kubernetes/pki/front-proxy-client.crt"], ["kube-apiserver"]),
], ids=["apiserver", "controller-manager+scheduler", "etcd-own", "etcd-ca", "sa-key", "ca-key", "ca", "encryption"])
def test_a_renewal_restarts_exactly_the_daemons_that_read_a_changed_file(master: Node, renewed: list[str],
                                                                         restarts: list[str]) -> None:
    for path in renewed:
        master.files[path] += " (renewed)"
    done = master.run("--renew")
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(renewed)} of {len(master.files)} files" in done.stdout
    assert master.restarted() == [f"try-restart {unit}" for unit in restarts]
    for path in renewed:
        assert (master.root / path.lstrip("/")).read_text().endswith("(renewed)")


def test_a_bad_argument_is_refused_before_anything_is_fetched(master: Node) -> None:
    done = master.run("--renw")
    assert done.returncode != 0 and "usage: atomic-fetch-pki [--renew]" in done.stderr


def test_every_node_gets_the_timer_and_enables_it() -> None:
    layout = layout_of(master_count=3, minion_count=20)
    for node in layout.nodes:
        files = node_files(layout, node)
        assert files[RENEW_SERVICE][0] == shipped(RENEW_SERVICE) and RENEW_TIMER in files
        assert f"{RENEW_UNIT}.timer" in services(layout, node)


def test_masters_renew_twenty_minutes_apart_and_no_minion_with_them() -> None:
    layout = layout_of(master_count=3, minion_count=40)
    masters = [renewal_minute(m) for m in layout.masters]
    assert masters == [0, 20, 40]
    for minion in layout.minions:
        minute = renewal_minute(minion)
        assert 0 <= minute < 60 and all(minute - m not in (0, 1, 2) for m in masters), (minion.name, minute)
    assert len({renewal_minute(m) for m in layout.minions}) > 10, "minions spread over the hour"


def test_the_service_and_every_timer_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    layout = layout_of(master_count=3)
    for node in (*layout.masters, layout.minions[0]):
        files = node_files(layout, node)
        result = _systemd_verify(tmp_path / node.name, f"{RENEW_UNIT}.timer", files[RENEW_TIMER][0],
                                 files={RENEW_SERVICE: files[RENEW_SERVICE][0]}, binaries=(FETCH_SCRIPT,))
        assert result.returncode == 0 and not result.stderr.strip(), (node.name, result.stderr)
        calendar = re.search(r"^OnCalendar=(.+)$", files[RENEW_TIMER][0], re.MULTILINE)
        assert calendar
        parsed = subprocess.run([SYSTEMD_ANALYZE, "calendar", "--iterations=3", calendar.group(1)],
                                capture_output=True, text=True, timeout=30)
        assert parsed.returncode == 0, parsed.stderr
        minutes = re.findall(r"\d\d:(\d\d):00", parsed.stdout)
        assert minutes and {int(m) for m in minutes} == {renewal_minute(node)}, parsed.stdout


def test_systemd_verify_reports_a_broken_timer(tmp_path: Path) -> None:
    """The check above can fail: a calendar systemd cannot parse, and a timer whose service is missing."""
    layout = layout_of()
    timer = node_files(layout, layout.masters[0])[RENEW_TIMER][0].replace("OnCalendar=*:00", "OnCalendar=*:61")
    result = _systemd_verify(tmp_path, f"{RENEW_UNIT}.timer", timer, binaries=())
    assert result.returncode != 0 and "61" in result.stderr
