"""How long the MySQL set may take to roll out: its probes, and the await budget derived from them.

pulumi-kubernetes waits for a StatefulSet to become ready (every replica, OrderedReady one after
the other) and gives up after its default of ten minutes unless the resource says otherwise
(docs/first-up.md). The set's pods bound their own start-up by their startup probes, and a new
replica first clones its predecessor's data: the budget is the sum, per ordinal, of what each pod
is allowed before Kubernetes itself would declare it failed. Pure: plain settings in, seconds out.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.facts import IMAGE_PULL_ALLOWANCE_SECONDS, quantity_bytes


@dataclass(frozen=True)
class ProbeTiming:
    period_seconds: int
    timeout_seconds: int
    failure_threshold: int

    @property
    def budget_seconds(self) -> int:
        """How long the probe may keep failing before the kubelet gives up on the container."""
        return self.period_seconds * self.failure_threshold


# mysqld: first initialisation or crash recovery may take long; liveness waits for it.
MYSQLD_STARTUP = ProbeTiming(period_seconds=10, timeout_seconds=5, failure_threshold=90)
MYSQLD_LIVENESS = ProbeTiming(period_seconds=10, timeout_seconds=5, failure_threshold=3)
MYSQLD_READINESS = ProbeTiming(period_seconds=5, timeout_seconds=5, failure_threshold=2)
# The sidecar is ready once the backup port listens: after the accounts exist (ordinal 0) or
# replication started (replicas).
SIDECAR_STARTUP = ProbeTiming(period_seconds=5, timeout_seconds=3, failure_threshold=180)
SIDECAR_LIVENESS = ProbeTiming(period_seconds=10, timeout_seconds=3, failure_threshold=3)
SIDECAR_READINESS = ProbeTiming(period_seconds=5, timeout_seconds=3, failure_threshold=2)

# Stopping a pod (terminationGracePeriodSeconds covers both): mysqld's preStop (prestop.sh, run under
# timeout(1) for PRESTOP_BUDGET_SECONDS; its client calls connect within 3 s each and wait at most
# PRESTOP_LOCK_SECONDS for read_only: under a second when measured), then mysqld's own shutdown after
# SIGTERM. The shutdown is InnoDB's flush of dirty pages (the images' 128 MiB buffer pool;
# innodb_fast_shutdown=1 skips the purge) once no binlog dump thread holds it: a tenth of a second
# when measured, so 30 s is a wide margin; the rest is slack for a slow node.
PRESTOP_LOCK_SECONDS = 5
PRESTOP_BUDGET_SECONDS = 20
MYSQLD_SHUTDOWN_SECONDS = 30
TERMINATION_SLACK_SECONDS = 10


def termination_grace_seconds() -> int:
    """The pod's terminationGracePeriodSeconds: the preStop's bound, the shutdown's, and slack."""
    return PRESTOP_BUDGET_SECONDS + MYSQLD_SHUTDOWN_SECONDS + TERMINATION_SLACK_SECONDS


# What a clone is assumed to sustain at worst, for the budget only: half of gp3's baseline
# 125 MiB/s, so that a slow disk or a busy source does not fail a rollout that would have finished.
CLONE_BUDGET_BYTES_PER_SECOND = 60 * 2**20


@dataclass(frozen=True)
class RolloutBudget:
    """The await budget of the StatefulSet and how it was reached (printed by the preview)."""

    seconds: int
    per_ordinal: tuple[int, ...]
    clone_seconds: int
    startup_seconds: int

    def explain(self) -> str:
        return (f"{len(self.per_ordinal)} pods in order: each {IMAGE_PULL_ALLOWANCE_SECONDS} s image pull + "
                f"{self.startup_seconds} s startup probe budget, and {self.clone_seconds} s clone for every "
                f"replica after -0 = {self.seconds} s")


def rollout_budget(replicas: int, storage_size: str) -> RolloutBudget:
    """The longest a healthy set may take to become ready from empty volumes (a first `up`, or a
    replacement set cloning every replica again)."""
    startup = max(MYSQLD_STARTUP.budget_seconds, SIDECAR_STARTUP.budget_seconds) + MYSQLD_READINESS.budget_seconds
    clone = -(-quantity_bytes(storage_size) // CLONE_BUDGET_BYTES_PER_SECOND)
    per_ordinal = tuple(IMAGE_PULL_ALLOWANCE_SECONDS + startup + (clone if ordinal else 0)
                        for ordinal in range(replicas))
    return RolloutBudget(sum(per_ordinal), per_ordinal, clone, startup)
