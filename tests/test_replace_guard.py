"""Replace guard: common overrides must never change a field that makes Pulumi replace a stateful resource.

Part of the data-loss matrix (tools/data_loss.py holds the fields and the comparison;
tests/test_data_loss_matrix.py judges what each data change costs on dev, staging and prod).

For each override a reviewer sees every day (replicas, image tags, resources, minion count,
rollout knobs) the program is run before and after, and every stateful resource present in
both runs is compared on the fields its provider cannot update in place: a change there is a
delete-and-create, i.e. lost data (a StatefulSet's volumes and pod identity, a master's etcd).
A field listed in the resource's ignoreChanges is not compared: the engine will not act on it.
Negative controls show that the guard does catch the changes that really replace.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from components import tokens
from components.facts import ROLL_NODE_ENV
from tools import data_loss
from tools.harness.mocks import AtomicMocks, RecordingMonitor
from tools.harness.offline import Plan, run_program

MYSQL_ENGINE_IMAGES = {"mysqlImage": "mysql:8.4.7", "mysqlBackupImage": "percona/percona-xtrabackup:8.4.0-5"}
COMMON_OVERRIDES: list[tuple[str, str, dict[str, Any]]] = [
    ("dev", "mysql replicas up", {"mysqlReplicas": "5"}),
    ("dev", "mysql replicas down", {"mysqlReplicas": "2"}),
    ("dev", "mysql image tags", MYSQL_ENGINE_IMAGES),
    ("dev", "mysql resources", {"mysqlCpuRequest": "300m", "mysqlMemoryRequest": "768Mi", "mysqlCpuLimit": "2",
                                "mysqlMemoryLimit": "3Gi"}),
    ("prod", "mysql disruption budget", {"mysqlPdbMaxUnavailable": "2"}),
    ("dev", "guestbook image tags", {"frontendImage": "us-docker.pkg.dev/google-samples/containers/gke/gb-frontend:v6",
                                     "redisPrimaryImage": "redis:7.4.3", "redisReplicaImage": "redis:7.4.3"}),
    ("dev", "guestbook replicas", {"frontendReplicas": "5", "redisReplicas": "3"}),
    ("dev", "guestbook resources", {"frontendCpuLimit": "1", "frontendMemoryLimit": "512Mi",
                                    "redisCpuRequest": "200m"}),
    ("dev", "rollout knobs", {"rolloutMaxSurge": "2", "rolloutMaxUnavailable": "1", "minReadySeconds": "15",
                              "progressDeadlineSeconds": "900", "revisionHistoryLimit": "3"}),
    ("dev", "recreate rollouts and an autoscaler", {"rolloutStrategy": "Recreate", "frontendHpaEnabled": "true"}),
    ("dev", "minion count up", {"minionCount": "5"}),
    ("dev", "minion size", {"minionInstanceType": "t3.xlarge", "rootVolumeGb": "60"}),
    ("dev", "admin CIDRs", {"adminCidrs": ["198.51.100.0/24", "192.0.2.0/24"]}),
    # prod's hard anti-affinity needs a minion per MySQL pod (5): settings refuse fewer.
    ("prod", "minion count down", {"minionCount": "5"}),
    ("prod", "mysql replicas up", {"mysqlReplicas": "7", "minionCount": "7"}),
    ("prod", "rollout knobs", {"rolloutMaxSurge": "1", "minReadySeconds": "60"}),
    ("local", "mariadb image tags", {"mysqlImage": "mariadb:11.4.9", "mysqlBackupImage": "mariadb:11.4.9"}),
    ("local", "mysql replicas up", {"mysqlReplicas": "3"}),
]


def replacements(before: Plan, after: Plan) -> list[str]:
    return [str(r) for r in data_loss.replacements(before, after)]


def _inputs(plan: Plan) -> dict[str, Any]:
    return {r.urn: r.inputs for r in plan.resources}


def _stateful_count(plan: Plan) -> int:
    return data_loss.stateful_count(plan)


@pytest.fixture(scope="module")
def baselines() -> Iterator[dict[str, Plan]]:
    yield {stack: run_program(stack) for stack in sorted({s for s, _, _ in COMMON_OVERRIDES})}


@pytest.mark.parametrize(
    ("stack", "what", "overrides"), COMMON_OVERRIDES, ids=[f"{s}-{w}" for s, w, _ in COMMON_OVERRIDES]
)
def test_common_overrides_replace_no_stateful_resource(
    baselines: dict[str, Plan], stack: str, what: str, overrides: dict[str, Any]
) -> None:
    before = baselines[stack]
    after = run_program(stack, overrides)
    # Not vacuous: the stack has stateful resources, and the override changed something.
    assert _stateful_count(before) > 0
    assert _inputs(before) != _inputs(after), f"{what} changed nothing"
    assert replacements(before, after) == []


# --------------------------------------------------------------------------
# Negative controls: the guard catches what does replace
# --------------------------------------------------------------------------


def test_guard_catches_a_volume_template_change_unless_ignored(baselines: dict[str, Plan]) -> None:
    """The set keeps its claim templates as created (ignoreChanges, set.py): without that a new size
    would replace it, and the guard says so."""
    after = run_program("dev", {"mysqlStorageSize": "50Gi"})
    assert replacements(baselines["dev"], after) == []
    for r in after.of_type(tokens.STATEFUL_SET):
        r.options["ignoreChanges"] = []
    assert replacements(baselines["dev"], after) == ["workload-mysql-statefulset: spec.volumeClaimTemplates changed"]


def test_guard_catches_a_renamed_set_and_namespace(baselines: dict[str, Plan]) -> None:
    after = run_program("dev", {"mysqlName": "db", "namespace": "shop"})  # no record given: not refused
    found = replacements(baselines["dev"], after)
    assert "workload-mysql-statefulset: metadata.name changed" in found
    assert "workload-namespace: metadata.name changed" in found


def test_guard_catches_an_explicit_ami_and_master_user_data(baselines: dict[str, Plan],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Every node holds its launch inputs back (ignoreChanges) except the one roll-nodes releases:
    # on that one the guard sees both changes; the others are the node matrix's business
    # (tests/test_node_disruption.py).
    monkeypatch.setenv(ROLL_NODE_ENV, "atomic-master-1")
    after = run_program("dev", {"amiId": "ami-0123456789abcdef0", "kubernetesVersion": "1.33"})
    found = replacements(baselines["dev"], after)
    assert sorted(found) == ["cluster-atomic-master-1: ami changed", "cluster-atomic-master-1: userDataBase64 changed"]


def test_guard_catches_a_deleted_master_but_not_a_removed_minion(baselines: dict[str, Plan]) -> None:
    after = run_program("prod", {"masterCount": "1", "minionCount": "5"})
    found = replacements(baselines["prod"], after)
    assert "cluster-atomic-master-3: deleted" in found
    assert not [f for f in found if "minion" in f]


def test_ignore_changes_is_honoured() -> None:
    assert data_loss.ignored(("spec", "volumeClaimTemplates"), ["spec.volumeClaimTemplates"])
    assert data_loss.ignored(("ami",), ["ami"])
    assert not data_loss.ignored(("ami",), ["amiId"])


# --------------------------------------------------------------------------
# A new upstream image, with no setting changed at all
# --------------------------------------------------------------------------


class NewFedoraImage(AtomicMocks):
    """Fedora published a new Cloud Base image since the last run: the AMI lookup answers differently."""

    def call(self, args: Any) -> Any:
        result, failures = super().call(args)
        if args.token == tokens.GET_AMI:
            result = {**result, "id": "ami-0fedc0ffee0000001", "imageId": "ami-0fedc0ffee0000001"}
        return result, failures


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_new_upstream_image_replaces_no_node(baselines: dict[str, Plan], stack: str) -> None:
    after = run_program(stack, monitor=RecordingMonitor(NewFedoraImage()))
    changed_ami = [r.name for r in after.instances() if r.inputs.get("ami") == "ami-0fedc0ffee0000001"]
    assert changed_ami, "the lookup's answer must reach the instances for this test to mean anything"
    assert replacements(baselines[stack], after) == []
