"""The two etcd procedures, step by step: restore the whole control plane from a snapshot, and replace
one failed master with the cluster serving throughout.

Each step runs the node's own atomic-etcd (components/node/files/usr/local/sbin/atomic-etcd) on a
master through a Transport (SSH through the EC2 Instance Connect Endpoint in real life; the test
machinery's local one in the tests, against real etcd members). What is decided here: the order of
the steps, which master runs each, what must hold before going on (and the refusal when it does not),
and the bounded waits. Nothing here knows how a command reaches a node or how an instance is replaced.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from components.facts import ETCD_CLIENT_PORT, ETCD_PEER_PORT

# Where a restore puts the snapshot on each master: beside the data dirs, on the same disk.
SNAPSHOT_ON_NODE = "/var/lib/etcd/atomic-restore.db"
HEALTH_TIMEOUT = 300.0
CATCH_UP_ENTRIES = 1000  # a joined member within this many raft entries of the leader has caught up


class EtcdToolError(RuntimeError):
    """A procedure stopped; str() says where and why, and what state it left things in."""


@dataclass(frozen=True)
class Master:
    name: str
    address: str  # its private address (the etcd member's peer and client URLs are on it)

    @property
    def peer_url(self) -> str:
        return f"https://{self.address}:{ETCD_PEER_PORT}"

    @property
    def client_url(self) -> str:
        return f"https://{self.address}:{ETCD_CLIENT_PORT}"


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


class Transport(Protocol):
    """Runs atomic-etcd as root on a master, and moves files to and from one."""

    def run(self, master: Master, args: Sequence[str], check: bool = True) -> Done: ...

    def put(self, master: Master, path: str, data: bytes) -> None: ...

    def get(self, master: Master, path: str) -> bytes: ...


class Replacer(Protocol):
    """Replaces a master's instance (same name, same address, its user-data) and returns once the new one
    answers atomic-etcd over the transport."""

    def replace(self, master: Master) -> None: ...


@dataclass(frozen=True)
class Member:
    """One line of `atomic-etcd members` (etcdctl member list -w simple)."""

    id: str
    status: str  # started | unstarted
    name: str
    peer_urls: tuple[str, ...]


def parse_members(text: str) -> list[Member]:
    members = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split(", ")
        if len(fields) < 5 or not re.fullmatch(r"[0-9a-f]+", fields[0]):
            raise EtcdToolError(f"unexpected member list line: {line!r}")
        members.append(Member(fields[0], fields[1], fields[2], tuple(fields[3].split(","))))
    return members


def parse_health(text: str) -> dict[str, bool]:
    """client URL -> healthy, from `atomic-etcd health` (etcdctl endpoint health --cluster)."""
    found = {}
    for match in re.finditer(r"^(https?://\S+) is (healthy|unhealthy)", text, re.MULTILINE):
        found[match.group(1)] = match.group(2) == "healthy"
    return found


def parse_status(text: str) -> dict[str, int]:
    """raft index, leader, member, revision and cluster of the member asked (etcdctl endpoint status -w json)."""
    (entry,) = json.loads(text)
    status = entry["Status"]
    header = status["header"]
    return {"raft_index": int(status["raftIndex"]), "leader": int(status["leader"]),
            "member_id": int(header["member_id"]), "revision": int(header["revision"]),
            "cluster_id": int(header["cluster_id"])}


Log = Callable[[str], None]


def wait_for(what: str, check: Callable[[], str | None], timeout: float, interval: float = 1.0,
             error: type[Exception] = EtcdToolError) -> None:
    """Call `check` until it returns None (done); each other answer says what is still missing. At
    `timeout`, `error` with one line naming what and the last answer (tools.roll_nodes passes its own)."""
    deadline = time.monotonic() + timeout
    missing: str | None = "not checked yet"
    while time.monotonic() < deadline:
        missing = check()
        if missing is None:
            return
        time.sleep(interval)
    raise error(f"{what}: not within {timeout:.0f} s ({missing})")


def _answering(transport: Transport, masters: Sequence[Master]) -> Master:
    for master in masters:
        if transport.run(master, ["status"], check=False).returncode == 0:
            return master
    raise EtcdToolError(f"no etcd member answers on {', '.join(m.name for m in masters)}")


def _health(transport: Transport, via: Master) -> dict[str, bool]:
    return parse_health(transport.run(via, ["health"], check=False).stdout)


def replace_member(transport: Transport, replacer: Replacer, masters: Sequence[Master], name: str,
                   log: Log = print, timeout: float = HEALTH_TIMEOUT) -> None:
    """Replace the master `name`: remove its member, replace its instance, add the member back, join it.

    Refused unless every other member is healthy: with one of three gone the cluster has no spare,
    and the procedure keeps it at quorum throughout (two of two after the removal, two of three
    after the addition) only if the others stay up. The new instance's etcd, booting with state
    `new`, is refused by the cluster (its member id was removed) until `join` restarts it as
    `existing`, so it can never form a cluster of its own or rejoin with data it lost.
    """
    target = next((m for m in masters if m.name == name), None)
    if target is None:
        raise EtcdToolError(f"{name} is not a master of this stack ({', '.join(m.name for m in masters)})")
    others = [m for m in masters if m != target]
    if not others:
        raise EtcdToolError(f"{name} is the only master: there is no cluster to keep serving; restore instead")
    via = _answering(transport, others)
    health = _health(transport, via)
    sick = [m.name for m in others if not health.get(m.client_url)]
    if sick:
        raise EtcdToolError(f"refusing to replace {name}: {', '.join(sick)} not healthy too, and removing "
                            f"{name} would leave etcd without its majority")
    log(f"{via.name} answers; every member but {name} is healthy")
    listed = [m for m in parse_members(transport.run(via, ["members"]).stdout) if target.peer_url in m.peer_urls]
    if listed:
        transport.run(via, ["remove", target.peer_url])
        log(f"removed member {listed[0].id} ({listed[0].name or 'unstarted'}, {target.peer_url}) through {via.name}")
    else:
        log(f"{name} ({target.peer_url}) was no member any more: nothing to remove")
    log(f"replacing the instance of {name}")
    replacer.replace(target)
    log(f"the new {name} answers")
    transport.run(via, ["add", name, target.peer_url])
    log(f"added {name} ({target.peer_url}) through {via.name}")
    transport.run(target, ["join"])
    log(f"{name} restarted etcd as a member of the existing cluster")

    def joined() -> str | None:
        members = parse_members(transport.run(via, ["members"], check=False).stdout)
        mine = [m for m in members if target.peer_url in m.peer_urls]
        if not mine or mine[0].status != "started" or mine[0].name != name:
            return f"{name} is {mine[0].status if mine else 'not'} a member yet"
        health = _health(transport, via)
        sick = [m.name for m in masters if not health.get(m.client_url)]
        if sick:
            return f"not healthy: {', '.join(sick)}"
        leader = parse_status(transport.run(via, ["status"]).stdout)
        own = parse_status(transport.run(target, ["status"]).stdout)
        behind = max(leader["raft_index"] - own["raft_index"], 0)
        return None if behind <= CATCH_UP_ENTRIES else f"{name} is {behind} raft entries behind"

    wait_for(f"{name} joined and caught up", joined, timeout)
    log(f"{name} is a started, healthy member again, caught up with the leader")


def restore(transport: Transport, masters: Sequence[Master], snapshot: Path, log: Log = print,
            timeout: float = HEALTH_TIMEOUT, stamp: str | None = None) -> str:
    """Restore every master's etcd from `snapshot`, as a new cluster; returns the restore's stamp.

    The control plane stops on every master first (kube-apiserver would otherwise keep serving
    from its caches, and write into the old data), every member is restored from the same file with
    the same new cluster token (a member left out can never rejoin), then etcd starts everywhere
    (each waits for its peers), and the control plane only once etcd is healthy.
    """
    data = snapshot.read_bytes()
    if not data:
        raise EtcdToolError(f"{snapshot} is empty")
    stamp = stamp or datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    for master in masters:
        transport.put(master, SNAPSHOT_ON_NODE, data)
    log(f"copied {snapshot} ({len(data)} bytes) to {SNAPSHOT_ON_NODE} on {len(masters)} masters")
    for master in masters:
        transport.run(master, ["stop"])
    log("stopped kube-scheduler, kube-controller-manager, kube-apiserver and etcd on every master")
    for master in masters:
        transport.run(master, ["restore", SNAPSHOT_ON_NODE, stamp])
        log(f"restored {master.name} (its data dir before: <data dir>.before-restore-{stamp})")
    for master in masters:
        transport.run(master, ["start"])

    def healthy() -> str | None:
        health = _health(transport, masters[0])
        sick = [m.name for m in masters if not health.get(m.client_url)]
        return f"not healthy: {', '.join(sick)}" if sick else None

    wait_for("etcd healthy after the restore", healthy, timeout)
    members = parse_members(transport.run(masters[0], ["members"]).stdout)
    if sorted(m.name for m in members if m.status == "started") != sorted(m.name for m in masters):
        raise EtcdToolError(f"after the restore the members are {members}, not the {len(masters)} masters")
    log(f"etcd is healthy: {len(members)} started members")
    for master in masters:
        transport.run(master, ["start-control-plane"])
    log("started the control plane on every master")
    return stamp


def _leader(transport: Transport, masters: Sequence[Master]) -> Master:
    """The master whose member leads etcd (else the first that answers)."""
    via = _answering(transport, masters)
    leader_id = parse_status(transport.run(via, ["status"]).stdout)["leader"]
    for master in masters:
        done = transport.run(master, ["status"], check=False)
        if done.returncode == 0 and parse_status(done.stdout)["member_id"] == leader_id:
            return master
    return via


def take_snapshot(transport: Transport, masters: Sequence[Master], out: Path, log: Log = print) -> dict[str, int]:
    """A snapshot now, from the member that leads etcd (it has every committed write), copied to `out`."""
    chosen = _leader(transport, masters)
    path = "/var/lib/etcd/atomic-snapshot.db"
    status: dict[str, int] = json.loads(transport.run(chosen, ["snapshot", path]).stdout)
    out.write_bytes(transport.get(chosen, path))
    log(f"snapshot of {chosen.name} at revision {status['revision']} ({status['totalKey']} keys) in {out}")
    return status
