"""Rolling every master, for real: three etcd 3.4 members booted from prod's rendered master user-data
(client and peer mutual TLS), a writer putting key after key through all three endpoints (as every
apiserver's --etcd-servers lists them) the whole time, and a watcher asking the cluster for a
linearizable read every quarter second.

The roll is tools/roll_nodes' own (procedure.roll, each etcd step the node's atomic-etcd run by bash);
the instance replacement is the test machinery's (the member's disk goes, a new one boots from the
same user-data and its etcd starts with state `new`, as cloud-init would start it). Shown: every
master replaced one after the other, the leader last, each with a new member id; the cluster never
lost quorum (no linearizable read failed, no write failed); every acknowledged write is on every
member afterwards.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tools.etcd import procedures
from tools.harness.offline import Plan, run_program
from tools.roll_nodes import procedure
from tools.roll_nodes.procedure import Node
from tools.testing import etcd

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)


@dataclass
class QuorumWatch:
    """A linearizable read (it needs a quorum: a leader that can confirm it leads) every 0.25 s."""

    nodes: etcd.EtcdNodes
    reads: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> QuorumWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            done = self.nodes.ctl("get", "/atomic/quorum-probe", "--consistency=l")
            self.reads += 1
            if done.returncode != 0:
                self.failures.append(done.stderr.strip()[-200:])
            time.sleep(0.25)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def prod_plan() -> Plan:
    return run_program("prod")


def test_rolling_every_master_keeps_quorum_and_every_acknowledged_write(tmp_path: Path, prod_plan: Plan) -> None:
    with etcd.boot("prod", tmp_path, plan=prod_plan) as nodes:
        transport = etcd.LocalTransport(nodes)
        masters = [Node(m.name, "master", m.address, current=False) for m in nodes.members]
        listed = procedures.parse_members(nodes.atomic_etcd(nodes.members[0], "members").stdout)
        old_ids = {m.name: m.id for m in listed}
        leader = procedure.leader_of(transport, masters)
        assert leader in old_ids
        chosen = procedure.order(masters, None, leader)
        assert chosen[-1].name == leader

        writer = etcd.Writer(nodes).start()  # every endpoint, as the apiservers' clients
        watch = QuorumWatch(nodes).start()
        writer.wait_for(50)
        replacer = etcd.LocalReplacer(nodes)
        log: list[str] = []
        started = time.monotonic()
        procedure.roll(None, transport, replacer, masters, chosen, log=log.append, timeout=180)  # type: ignore[arg-type]
        took = time.monotonic() - started
        during = len(writer.acknowledged)
        writer.wait_for(during + 50)
        writer.stop()
        watch.stop()

        assert replacer.replaced == [n.name for n in chosen]
        print(f"rolled 3 masters in {took:.0f} s: {during} writes acknowledged, {len(writer.failures)} failed; "
              f"{watch.reads} linearizable reads, {len(watch.failures)} failed")
        assert watch.reads > took * 2, "the watcher ran the whole time"
        assert not watch.failures, f"quorum lost: {len(watch.failures)} reads failed, e.g. {watch.failures[:3]}"
        assert not writer.failures, f"{len(writer.failures)} writes failed, e.g. {writer.failures[:3]}"
        members = procedures.parse_members(nodes.atomic_etcd(nodes.members[0], "members").stdout)
        assert sorted(m.name for m in members) == sorted(old_ids) and all(m.status == "started" for m in members)
        assert all(m.id != old_ids[m.name] for m in members), "every member is a new one"
        for member in nodes.members:
            held = nodes.get_all(writer.prefix, member=member)
            missing = set(writer.acknowledged) - set(held)
            assert not missing, f"{member.name} lacks {len(missing)} acknowledged writes, e.g. {sorted(missing)[:3]}"
        assert [line for line in log if line.startswith("[")] == [
            f"[{k}/3] master {n.name}" for k, n in enumerate(chosen, 1)]


def test_a_roll_refuses_to_start_from_an_unhealthy_cluster(tmp_path: Path, prod_plan: Plan) -> None:
    with etcd.boot("prod", tmp_path, plan=prod_plan) as nodes:
        transport = etcd.LocalTransport(nodes)
        masters = [Node(m.name, "master", m.address) for m in nodes.members]
        nodes.kill(nodes.members[2])
        replacer = etcd.LocalReplacer(nodes)
        with pytest.raises(procedure.RollError, match=f"refusing to roll {masters[0].name}: etcd members not "
                                                      f"healthy: {masters[2].name}"):
            procedure.roll_master(transport, replacer, masters, masters[0])
        assert replacer.replaced == []
        assert nodes.members[0].pid() is not None, "the node it refused to roll still runs its etcd"
        # The watch is not blind: two of three gone, the reads fail (what a roll of two at once would do).
        watch = QuorumWatch(nodes).start()
        nodes.kill(nodes.members[1])
        deadline = time.monotonic() + 30
        while not watch.failures and time.monotonic() < deadline:
            time.sleep(0.25)
        watch.stop()
        assert watch.failures, "the quorum watch saw no failure with one member of three left"
