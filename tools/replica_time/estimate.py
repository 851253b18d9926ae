"""How long one new MySQL replica takes to get its data, from a stack's offline plan.

A new replica (a scale-up, or a pod whose volume was lost) clones a full data dir from the
previous ordinal: one stream from that pod's sidecar, through its node's EBS bandwidth and
network, into the new pod's clone-mysql init container and through its node's EBS bandwidth
onto the new volume. The stream moves at the pace of its slowest stage, so the estimate is
mysqlStorageSize (a full volume: the most there can be to copy) over the smallest of:

  volume         the data class's provisioned throughput (gp3-mysql: mysqlVolumeThroughput); the
                 source volume reads, the new one writes, at that rate each. IOPS do not bind:
                 EBS counts I/O up to 256 KiB as one operation, and gp3 allows at most 0.25 MiB/s
                 per provisioned IOPS, so the throughput runs out first for I/O of 256 KiB
  EBS            the minion type's EBS bandwidth (limits.csv), at both ends
  network        the minion type's network bandwidth, and 5 Gbps for the one TCP flow a clone is
                 (EC2 limits a single flow to 5 Gbps between instances outside a cluster placement
                 group: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-network-bandwidth.html)
  CPU            each end's CPU limit over what it spends per GiB, measured by `make bench-clone`
                 (CPU_SECONDS_PER_GIB: MariaDB 10.11's mariadb-backup and mbstream on this project's
                 build machine; XtraBackup's MySQL path is not measured)

twice: with the instances bursting (EBS for at least 30 minutes once a day; the network for 5
to 60 minutes, as AWS documents) and at their baselines (what a longer or repeated clone gets).
Not counted, and said so: scheduling and image pulls, creating and attaching the volume, the
prepare (measured at 0.05 s for 2.6 GiB after an idle source's backup: it grows with the writes
the source took during the stream), mysqld's start and the replication catch-up of those writes.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components import tokens
from components.facts import GP3_THROUGHPUT_MIBS
from tools.cost.estimate import entries_of, gib, is_aws

if TYPE_CHECKING:
    from tools.harness.offline import Plan

LIMITS_CSV = Path(__file__).resolve().parent / "limits.csv"
COLUMNS = ("instance_type", "vcpus", "ebs_baseline_mbps", "ebs_max_mbps", "network_baseline_gbps",
           "network_burst_gbps", "as_of", "source", "note")
MIB = 2**20
# One TCP flow between instances outside a cluster placement group (the page named above).
SINGLE_FLOW_GBPS = 5.0
# CPU seconds per GiB of data dir, measured by `make bench-clone` (MariaDB 10.11, 1 MiB socat
# buffers, parallel threads; docs/mysql.md has the run): the receiving side is the clone-mysql
# container (socat, mbstream extracting, mariadb-backup --prepare), the sending side the sidecar
# (mariadb-backup --backup streaming, socat).
CPU_SECONDS_PER_GIB = {"receive": 1.05, "send": 0.60}
MYSQL_SET = "mysql"


class LimitsError(ValueError):
    """limits.csv is malformed; str() names the line."""


@dataclass(frozen=True)
class InstanceLimits:
    instance_type: str
    vcpus: int
    ebs_baseline_mbps: float
    ebs_max_mbps: float
    network_baseline_gbps: float
    network_burst_gbps: float
    as_of: str
    source: str


def load_limits(path: Path = LIMITS_CSV) -> dict[str, InstanceLimits]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise LimitsError(f"{path}: header must be {','.join(COLUMNS)}")
    table: dict[str, InstanceLimits] = {}
    for number, row in enumerate(reader, start=2):
        where = f"{path} row {number}"
        try:
            limits = InstanceLimits(row["instance_type"], int(row["vcpus"]), float(row["ebs_baseline_mbps"]),
                                    float(row["ebs_max_mbps"]), float(row["network_baseline_gbps"]),
                                    float(row["network_burst_gbps"]), row["as_of"], row["source"])
        except (TypeError, ValueError):
            raise LimitsError(f"{where}: vcpus and bandwidths must be numbers") from None
        if not (0 < limits.ebs_baseline_mbps <= limits.ebs_max_mbps
                and 0 < limits.network_baseline_gbps <= limits.network_burst_gbps and limits.vcpus > 0):
            raise LimitsError(f"{where}: a baseline must be above zero and at most its burst")
        if not limits.source.startswith("https://docs.aws.amazon.com/") or len(limits.as_of) != 10:
            raise LimitsError(f"{where}: source must be an AWS documentation URL and as_of a date YYYY-MM-DD")
        if limits.instance_type in table:
            raise LimitsError(f"{where}: {limits.instance_type} is listed twice")
        table[limits.instance_type] = limits
    return table


@dataclass(frozen=True)
class Stage:
    name: str  # what limits it, e.g. "network (one TCP flow)"
    burst_mibs: float
    baseline_mibs: float


@dataclass(frozen=True)
class Estimate:
    stack: str
    size_gib: int
    storage_class: str
    instance_type: str
    stages: tuple[Stage, ...]

    def slowest(self, burst: bool) -> Stage:
        return min(self.stages, key=lambda s: s.burst_mibs if burst else s.baseline_mibs)

    def seconds(self, burst: bool) -> float:
        stage = self.slowest(burst)
        rate = stage.burst_mibs if burst else stage.baseline_mibs
        return self.size_gib * 1024 / rate


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _cpu(quantity: object) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _mbps_to_mibs(megabits: float) -> float:
    return megabits * 1e6 / 8 / MIB


def estimate(plan: Plan | Mapping[str, Any], limits: Mapping[str, InstanceLimits]) -> Estimate | None:
    """The estimate for the plan's MySQL set on its minions; None when the plan has no such pair
    (no aws cluster, no set, or a minion type limits.csv does not list: nothing is guessed)."""
    if not is_aws(plan):
        return None
    stack, entries = entries_of(plan)
    objects = [e.get("inputs") or {} for e in entries if e["type"].startswith("kubernetes:")]
    sets = [o for o in objects if o.get("kind") == "StatefulSet" and _get(o, "metadata", "name") == MYSQL_SET]
    minion_types = {str(_get(e, "inputs", "instanceType")) for e in entries
                    if e["type"] == tokens.INSTANCE and _get(e, "inputs", "tags", "Role") == "minion"}
    if len(sets) != 1 or len(minion_types) != 1 or next(iter(minion_types)) not in limits:
        return None
    (instance_type,) = minion_types
    node = limits[instance_type]
    spec = sets[0]["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    size = gib(claim["spec"]["resources"]["requests"]["storage"])
    class_name = str(claim["spec"].get("storageClassName") or "")
    classes = {_get(o, "metadata", "name"): o for o in objects if o.get("kind") == "StorageClass"}
    if class_name not in classes:
        return None
    # The EBS CSI driver's gp3 throughput when the class names none is gp3's baseline.
    volume = float((classes[class_name].get("parameters") or {}).get("throughput") or GP3_THROUGHPUT_MIBS[0])
    pod = spec["template"]["spec"]
    containers = {c["name"]: c for c in [*pod["initContainers"], *pod["containers"]]}
    receive_cpu = _cpu(containers["clone-mysql"]["resources"]["limits"]["cpu"])
    send_cpu = _cpu(containers["sidecar"]["resources"]["limits"]["cpu"])
    flow = _mbps_to_mibs(SINGLE_FLOW_GBPS * 1000)
    receive = receive_cpu * 1024 / CPU_SECONDS_PER_GIB["receive"]
    send = send_cpu * 1024 / CPU_SECONDS_PER_GIB["send"]
    stages = (
        Stage(f"volume ({class_name}: {volume:g} MiB/s)", volume, volume),
        Stage(f"EBS bandwidth of {instance_type}", _mbps_to_mibs(node.ebs_max_mbps),
              _mbps_to_mibs(node.ebs_baseline_mbps)),
        Stage(f"network of {instance_type}", _mbps_to_mibs(node.network_burst_gbps * 1000),
              _mbps_to_mibs(node.network_baseline_gbps * 1000)),
        Stage("one TCP flow (5 Gbps)", flow, flow),
        Stage(f"CPU of clone-mysql ({receive_cpu:g})", receive, receive),
        Stage(f"CPU of the sidecar ({send_cpu:g})", send, send),
    )
    return Estimate(stack, size, class_name, instance_type, stages)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 10 else f"{round(minutes)} min"


def report_lines(est: Estimate) -> list[str]:
    burst, baseline = est.slowest(True), est.slowest(False)
    return [
        f"New replica, stack {est.stack}: copying a full {est.size_gib} GiB volume takes about "
        f"{_duration(est.seconds(True))} with the instances bursting ({burst.name}, {burst.burst_mibs:,.0f} MiB/s), "
        f"{_duration(est.seconds(False))} at their baselines ({baseline.name}, {baseline.baseline_mibs:,.0f} MiB/s)",
        "  stages, MiB/s burst/baseline: " + "; ".join(
            f"{s.name} {s.burst_mibs:,.0f}" + ("" if s.burst_mibs == s.baseline_mibs else f"/{s.baseline_mibs:,.0f}")
            for s in est.stages),
        "  not counted: scheduling, volume create and attach, prepare, mysqld start, catching up "
        "(tools/replica_time/limits.csv, docs/mysql.md)",
    ]
