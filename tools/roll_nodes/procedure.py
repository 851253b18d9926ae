"""Rolling replacement of a stack's nodes, one at a time, the cluster serving throughout.

A minion: every other node Ready, cordon, drain (PodDisruptionBudgets respected), replace its
instance, wait until the Node is Ready on a new boot, uncordon. A master: every etcd member healthy,
stop its etcd and control plane (clients move to the others: two of three keep quorum), then
tools/etcd's replace_member (remove the member, replace the instance, add the member back, join it,
wait until it is started, healthy and caught up), then wait until its etcd and control plane are
active. Masters go followers first, the etcd leader last (one leader election, not three).

What is decided here is the order, what must hold before each step (and the refusal when it does
not) and the bounded waits. How kubectl, SSH and the instance replacement reach AWS is remote.py's;
the tests run this against real etcd members and a stand-in for kubectl and EC2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from tools.etcd import procedures
from tools.etcd.procedures import EtcdToolError, Master, Replacer, Transport

Role = Literal["master", "minion"]
Log = Callable[[str], None]
DRAIN_TIMEOUT = 900.0
READY_TIMEOUT = 900.0


class RollError(RuntimeError):
    """The roll stopped; str() says where, why, and what state it left the node in."""


@dataclass(frozen=True)
class Node:
    name: str
    role: Role
    address: str  # its private address (fixed per slot: the replacement gets it too)
    current: bool = True  # it runs what the program says (its NodeSpec tag matches its launch inputs)

    @property
    def master(self) -> Master:
        return Master(self.name, self.address)


@dataclass(frozen=True)
class NodeState:
    """What the API says of a Node."""

    ready: bool
    boot_id: str  # status.nodeInfo.bootID: a new instance boots with a new one
    unschedulable: bool


class Kube(Protocol):
    """The Kubernetes API, as kubectl gives it."""

    def state(self, node: str) -> NodeState | None: ...

    def cordon(self, node: str) -> None: ...

    def uncordon(self, node: str) -> None: ...

    def drain(self, node: str, timeout: float) -> None: ...


def order(nodes: Sequence[Node], role: Role | None, leader: str | None, everything: bool = False) -> list[Node]:
    """The nodes to roll, in order: minions first (the workload moves once, onto the nodes that stay),
    then masters, the etcd leader last. Only nodes that do not run what the program says, unless
    `everything`."""
    chosen = [n for n in nodes if (role is None or n.role == role) and (everything or not n.current)]
    minions = [n for n in chosen if n.role == "minion"]
    masters = sorted((n for n in chosen if n.role == "master"), key=lambda n: n.name == leader)
    return [*minions, *masters]


def _wait(what: str, check: Callable[[], str | None], timeout: float) -> None:
    procedures.wait_for(what, check, timeout, interval=2.0, error=RollError)


def roll_minion(kube: Kube, replacer: Replacer, node: Node, others: Sequence[Node], log: Log = print,
                drain_timeout: float = DRAIN_TIMEOUT, ready_timeout: float = READY_TIMEOUT) -> None:
    not_ready = [n.name for n in others if n.role == "minion" and not (kube.state(n.name) or _GONE).ready]
    if not_ready:
        raise RollError(f"refusing to roll {node.name}: {', '.join(not_ready)} not Ready, and draining "
                        f"{node.name} would leave its pods fewer places to go")
    before = kube.state(node.name)
    kube.cordon(node.name)
    log(f"cordoned {node.name}")
    try:
        kube.drain(node.name, drain_timeout)
    except RollError as error:
        kube.uncordon(node.name)
        raise RollError(f"draining {node.name} stopped ({error}); uncordoned it, nothing was replaced") from None
    log(f"drained {node.name}")
    replacer.replace(node.master)
    log(f"replaced the instance of {node.name}")

    def ready() -> str | None:
        state = kube.state(node.name)
        if state is None:
            return f"{node.name} is not registered"
        if before is not None and state.boot_id == before.boot_id:
            return f"{node.name} still reports the old boot {before.boot_id}"
        return None if state.ready else f"{node.name} is not Ready"

    _wait(f"{node.name} Ready on its new instance", ready, ready_timeout)
    kube.uncordon(node.name)  # the Node object outlived the instance, and with it the cordon
    log(f"{node.name} is Ready on its new instance and schedulable again")


def roll_master(transport: Transport, replacer: Replacer, masters: Sequence[Node], node: Node, log: Log = print,
                timeout: float = procedures.HEALTH_TIMEOUT) -> None:
    refs = [m.master for m in masters]
    via = next(m for m in refs if m.name != node.name) if len(refs) > 1 else None
    if via is None:
        raise RollError(f"{node.name} is the only master: replacing it stops etcd and the API; "
                        "snapshot, replace, restore instead (docs/cluster.md)")
    health = procedures.parse_health(transport.run(via, ["health"], check=False).stdout)
    sick = [m.name for m in refs if not health.get(m.client_url)]
    if sick:
        raise RollError(f"refusing to roll {node.name}: etcd members not healthy: {', '.join(sick)} "
                        "(a rolling replacement starts only from a healthy cluster)")
    # Stopped first, so that its clients (every apiserver lists every member) move to the others
    # before the member is removed: two of three keep quorum, then two of two.
    transport.run(node.master, ["stop"])
    log(f"stopped etcd and the control plane on {node.name}")
    try:
        procedures.replace_member(transport, replacer, refs, node.name, log=log, timeout=timeout)
    except EtcdToolError as error:
        raise RollError(str(error)) from None

    def active() -> str | None:
        done = transport.run(node.master, ["active"], check=False)
        return None if done.returncode == 0 else f"etcd or the control plane not active on {node.name}"

    _wait(f"{node.name}'s control plane active", active, timeout)
    log(f"{node.name}: etcd and the control plane active")


_GONE = NodeState(ready=False, boot_id="", unschedulable=False)


def leader_of(transport: Transport, masters: Sequence[Node]) -> str | None:
    """The name of the master whose member leads etcd, if one answers."""
    refs = [m.master for m in masters]
    try:
        via = procedures._answering(transport, refs)
    except EtcdToolError:
        return None
    leader = procedures.parse_status(transport.run(via, ["status"]).stdout)["leader"]
    for ref in refs:
        done = transport.run(ref, ["status"], check=False)
        if done.returncode == 0 and procedures.parse_status(done.stdout)["member_id"] == leader:
            return ref.name
    return None


def roll(kube: Kube, transport: Transport, replacer: Replacer, nodes: Sequence[Node], targets: Sequence[Node],
         log: Log = print, timeout: float = READY_TIMEOUT) -> None:
    """Roll `targets` (in the order given, see `order`), one node at a time."""
    masters = [n for n in nodes if n.role == "master"]
    for k, node in enumerate(targets, 1):
        log(f"[{k}/{len(targets)}] {node.role} {node.name}")
        if node.role == "minion":
            roll_minion(kube, replacer, node, [n for n in nodes if n != node], log, ready_timeout=timeout)
        else:
            roll_master(transport, replacer, masters, node, log, timeout=timeout)
    log(f"rolled {len(targets)} node(s)")
