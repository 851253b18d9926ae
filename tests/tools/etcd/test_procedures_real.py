"""Replacing a failed master, for real: against three etcd 3.4 members booted from prod's rendered
master user-data (client and peer mutual TLS), with a writer running the whole time.

The procedure is tools/etcd's own (procedures.replace_member), each of its steps the node's own
atomic-etcd run by bash; the instance replacement is the test machinery's (the member's disk goes, a
new one boots from the same user-data and cloud-init starts its etcd with state `new`). Shown: no
write fails while the procedure runs (the cluster keeps its quorum), every acknowledged write is on
every member afterwards, the new member is a started, caught-up member with a new id, and the
procedure refuses when it would cost etcd its majority.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tools.etcd import procedures
from tools.etcd.procedures import EtcdToolError
from tools.harness.offline import Plan, run_program
from tools.testing import etcd

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)


@pytest.fixture(scope="module")
def prod_plan() -> Plan:
    return run_program("prod")


def _members(nodes: etcd.EtcdNodes, via: etcd.Member) -> list[procedures.Member]:
    return procedures.parse_members(nodes.atomic_etcd(via, "members").stdout)


def test_replacing_a_failed_master_keeps_quorum_and_loses_no_acknowledged_write(tmp_path: Path,
                                                                                prod_plan: Plan) -> None:
    with etcd.boot("prod", tmp_path, plan=prod_plan) as nodes:
        transport = etcd.LocalTransport(nodes)
        failed = nodes.members[1]
        survivors = [m for m in nodes.members if m is not failed]
        old_id = next(m.id for m in _members(nodes, survivors[0]) if m.name == failed.name)
        writer = etcd.Writer(nodes, endpoints=survivors).start()
        writer.wait_for(50)
        nodes.kill(failed)  # the master fails: its etcd gone without a word to its peers
        time.sleep(2)
        writer.wait_for(len(writer.acknowledged) + 20)  # the other two still take writes
        failures_before = len(writer.failures)
        started = time.monotonic()
        steps: list[str] = []
        replacer = etcd.LocalReplacer(nodes)
        procedures.replace_member(transport, replacer, transport.masters(), failed.name, log=steps.append,
                                  timeout=180)
        took = time.monotonic() - started
        acknowledged_during = len(writer.acknowledged)
        writer.wait_for(acknowledged_during + 50)  # and go on taking them afterwards
        writer.stop()

        assert replacer.replaced == [failed.name]
        failed_during = writer.failures[failures_before:]
        assert not failed_during, f"{len(failed_during)} writes failed during the {took:.0f} s procedure: " \
                                  f"{failed_during[:3]}"
        members = _members(nodes, survivors[0])
        assert sorted(m.name for m in members) == sorted(m.name for m in nodes.members)
        assert all(m.status == "started" for m in members)
        new_id = next(m.id for m in members if m.name == failed.name)
        assert new_id != old_id, "the new member is a new member, not the old one back"
        # every acknowledged write, on every member (each read from its own data, serializable)
        for member in nodes.members:
            held = nodes.get_all(writer.prefix, member=member)
            missing = set(writer.acknowledged) - set(held)
            assert not missing, f"{member.name} lacks {len(missing)} acknowledged writes, e.g. {sorted(missing)[:3]}"
        # the instance that booted with state `new` was refused by the cluster before it joined
        assert "has already been removed" in failed.log() or "removed from the cluster" in failed.log(), \
            failed.log()[-3000:]
        assert [s.split(" ")[0] for s in steps][:2] == [survivors[0].name, "removed"]


def test_replacing_a_master_is_refused_while_another_is_down(tmp_path: Path, prod_plan: Plan) -> None:
    """With two of three gone there is no majority left to keep: nothing is removed or replaced."""
    with etcd.boot("prod", tmp_path, plan=prod_plan) as nodes:
        transport = etcd.LocalTransport(nodes)
        nodes.kill(nodes.members[1])
        nodes.kill(nodes.members[2])
        replacer = etcd.LocalReplacer(nodes)
        with pytest.raises(EtcdToolError, match=r"refusing to replace atomic-master-2: .*atomic-master-3 not healthy"):
            procedures.replace_member(transport, replacer, transport.masters(), "atomic-master-2", timeout=30)
        assert replacer.replaced == []
        nodes.start(nodes.members[1], nodes.members[2])
        nodes.wait_healthy()
        assert len(_members(nodes, nodes.members[0])) == 3, "the membership is as it was"


def test_the_node_steps_refuse_what_would_break_the_cluster(tmp_path: Path, prod_plan: Plan) -> None:
    with etcd.boot("prod", tmp_path, plan=prod_plan) as nodes:
        first, second = nodes.members[0], nodes.members[1]
        remove_self = nodes.atomic_etcd(first, "remove", first.peer_url, check=False)
        assert remove_self.returncode != 0 and "through itself" in remove_self.stderr
        twice = nodes.atomic_etcd(first, "add", second.name, second.peer_url, check=False)
        assert twice.returncode != 0 and "in the cluster already" in twice.stderr
        snapshot = first.path("/var/lib/etcd/x.db")
        nodes.atomic_etcd(first, "snapshot", str(snapshot))
        live = nodes.atomic_etcd(first, "restore", str(snapshot), "stamp", check=False)
        assert live.returncode != 0 and "etcd is running here" in live.stderr
        assert len(_members(nodes, first)) == 3


def test_a_snapshot_taken_now_comes_from_the_leader_and_opens(tmp_path: Path, prod_plan: Plan) -> None:
    """`python -m tools.etcd snapshot`: on the member that leads, copied back, readable by etcdctl."""
    with etcd.boot("prod", tmp_path, plan=prod_plan) as nodes:
        transport = etcd.LocalTransport(nodes)
        nodes.ctl("put", "/atomic/before-snapshot", "yes")
        out = tmp_path / "now.db"
        steps: list[str] = []
        status = procedures.take_snapshot(transport, transport.masters(), out, log=steps.append)
        leader_id = procedures.parse_status(nodes.atomic_etcd(nodes.members[0], "status").stdout)["leader"]
        (leader,) = [m for m in nodes.members
                     if procedures.parse_status(nodes.atomic_etcd(m, "status").stdout)["member_id"] == leader_id]
        assert steps == [f"snapshot of {leader.name} at revision {status['revision']} "
                         f"({status['totalKey']} keys) in {out}"]
        assert out.stat().st_size > 0 and status["totalKey"] >= 1
        check = subprocess.run(["/usr/bin/etcdctl", "snapshot", "status", str(out), "-w", "json"], capture_output=True,
                               text=True, timeout=60, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
        assert check.returncode == 0 and json.loads(check.stdout)["revision"] == status["revision"]
