"""The roll's minion steps and its order, against a stand-in for kubectl and for the instance
replacement (the master steps run against real etcd in test_roll_real.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tools.etcd.procedures import Master
from tools.roll_nodes import procedure
from tools.roll_nodes.procedure import Node, NodeState, RollError


@dataclass
class FakeCluster:
    """Nodes as the API shows them, and the EC2 side: a replaced instance boots with a new boot id and
    becomes Ready after `ready_after` looks; its Node object (and its cordon) outlives it."""

    nodes: dict[str, NodeState]
    calls: list[str] = field(default_factory=list)
    drain_fails: bool = False
    ready_after: int = 2
    _booting: dict[str, int] = field(default_factory=dict)

    def state(self, node: str) -> NodeState | None:
        if node in self._booting:
            self._booting[node] -= 1
            if self._booting[node] <= 0:
                del self._booting[node]
                current = self.nodes[node]
                self.nodes[node] = NodeState(True, current.boot_id, current.unschedulable)
        return self.nodes.get(node)

    def cordon(self, node: str) -> None:
        self.calls.append(f"cordon {node}")
        current = self.nodes[node]
        self.nodes[node] = NodeState(current.ready, current.boot_id, True)

    def uncordon(self, node: str) -> None:
        self.calls.append(f"uncordon {node}")
        current = self.nodes[node]
        self.nodes[node] = NodeState(current.ready, current.boot_id, False)

    def drain(self, node: str, timeout: float) -> None:
        self.calls.append(f"drain {node}")
        if self.drain_fails:
            raise RollError("Cannot evict pod as it would violate the pod's disruption budget")

    def replace(self, master: Master) -> None:
        self.calls.append(f"replace {master.name} {master.address}")
        current = self.nodes[master.name]
        self.nodes[master.name] = NodeState(False, current.boot_id + "-new", current.unschedulable)
        self._booting[master.name] = self.ready_after


MINIONS = [Node("atomic-minion-1", "minion", "10.0.0.13", current=False),
           Node("atomic-minion-2", "minion", "10.0.0.14"),
           Node("atomic-minion-3", "minion", "10.0.0.15", current=False)]
MASTERS = [Node("atomic-master-1", "master", "10.0.0.10", current=False),
           Node("atomic-master-2", "master", "10.0.0.11", current=False),
           Node("atomic-master-3", "master", "10.0.0.12", current=False)]


def _cluster(**kwargs: object) -> FakeCluster:
    return FakeCluster({n.name: NodeState(True, f"boot-{n.name}", False) for n in MINIONS}, **kwargs)  # type: ignore[arg-type]


def test_a_minion_is_cordoned_drained_replaced_waited_for_and_uncordoned() -> None:
    cluster = _cluster()
    log: list[str] = []
    procedure.roll_minion(cluster, cluster, MINIONS[0], MINIONS[1:], log.append, ready_timeout=30)
    assert cluster.calls == ["cordon atomic-minion-1", "drain atomic-minion-1",
                             "replace atomic-minion-1 10.0.0.13", "uncordon atomic-minion-1"]
    state = cluster.nodes["atomic-minion-1"]
    assert state.ready and state.boot_id == "boot-atomic-minion-1-new" and not state.unschedulable
    assert log[-1] == "atomic-minion-1 is Ready on its new instance and schedulable again"


def test_the_old_boot_reporting_ready_is_not_taken_for_the_new_instance() -> None:
    cluster = _cluster()
    cluster.replace = lambda master: cluster.calls.append("replace (nothing happens)")  # type: ignore[method-assign]
    with pytest.raises(RollError, match=r"atomic-minion-1 Ready on its new instance: not within 3 s "
                                        r"\(atomic-minion-1 still reports the old boot boot-atomic-minion-1\)"):
        procedure.roll_minion(cluster, cluster, MINIONS[0], MINIONS[1:], ready_timeout=3)


def test_a_minion_is_not_rolled_while_another_is_not_ready() -> None:
    cluster = _cluster()
    cluster.nodes["atomic-minion-2"] = NodeState(False, "boot", False)
    with pytest.raises(RollError, match="refusing to roll atomic-minion-1: atomic-minion-2 not Ready"):
        procedure.roll_minion(cluster, cluster, MINIONS[0], MINIONS[1:])
    assert cluster.calls == []


def test_a_drain_that_stops_uncordons_and_replaces_nothing() -> None:
    cluster = _cluster(drain_fails=True)
    with pytest.raises(RollError, match=r"draining atomic-minion-1 stopped .*disruption budget.*uncordoned it, "
                                        r"nothing was replaced"):
        procedure.roll_minion(cluster, cluster, MINIONS[0], MINIONS[1:])
    assert cluster.calls == ["cordon atomic-minion-1", "drain atomic-minion-1", "uncordon atomic-minion-1"]
    assert not cluster.nodes["atomic-minion-1"].unschedulable


def test_the_order_is_stale_minions_then_masters_with_the_leader_last() -> None:
    nodes = [*MASTERS, *MINIONS]
    names = [n.name for n in procedure.order(nodes, None, leader="atomic-master-1")]
    assert names == ["atomic-minion-1", "atomic-minion-3", "atomic-master-2", "atomic-master-3", "atomic-master-1"]
    assert [n.name for n in procedure.order(nodes, "minion", None, everything=True)] == [n.name for n in MINIONS]
    assert [n.name for n in procedure.order(nodes, "master", "atomic-master-2")][-1] == "atomic-master-2"


def test_a_single_master_is_refused() -> None:
    with pytest.raises(RollError, match="atomic-master-1 is the only master"):
        procedure.roll_master(None, None, MASTERS[:1], MASTERS[0])  # type: ignore[arg-type]
