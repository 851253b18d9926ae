"""Replace guard: common overrides must never change a field that makes Pulumi replace a stateful resource.

For each override a reviewer sees every day (replicas, image tags, resources, minion count,
rollout knobs) the program is run before and after, and every stateful resource present in
both runs is compared on the fields its provider cannot update in place: a change there is a
delete-and-create, i.e. lost data (a StatefulSet's volumes and pod identity, a master's etcd).
A field listed in the resource's ignoreChanges is not compared: the engine will not act on it.
Negative controls show that the guard does catch the changes that really replace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from components import tokens
from tools.harness.mocks import AtomicMocks, RecordingMonitor
from tools.harness.offline import Plan, run_program

Path_ = tuple[str, ...]
WHOLE: Path_ = ()  # every input: any change replaces (the random and tls providers replace on any change)

# Fields whose change replaces the resource (Kubernetes immutable fields that pulumi-kubernetes
# replaces on; AWS ForceNew arguments), for the resources that hold data or identity.
IMMUTABLE: dict[str, tuple[Path_, ...]] = {
    tokens.STATEFUL_SET: (
        ("metadata", "name"),
        ("metadata", "namespace"),
        ("spec", "selector"),
        ("spec", "serviceName"),
        ("spec", "volumeClaimTemplates"),
        ("spec", "podManagementPolicy"),
    ),
    tokens.PERSISTENT_VOLUME_CLAIM: (
        ("metadata", "name"),
        ("metadata", "namespace"),
        ("spec", "storageClassName"),
        ("spec", "accessModes"),
        ("spec", "selector"),
        ("spec", "volumeName"),
    ),
    tokens.INSTANCE: (
        ("ami",),
        ("subnetId",),
        ("privateIp",),
        ("availabilityZone",),
        ("keyName",),
        ("rootBlockDevice", "encrypted"),
        ("rootBlockDevice", "kmsKeyId"),
    ),
    tokens.VPC: (("cidrBlock",),),
    tokens.SUBNET: (("cidrBlock",), ("vpcId",), ("availabilityZone",)),
    tokens.EBS_VOLUME: (("availabilityZone",), ("encrypted",), ("snapshotId",), ("kmsKeyId",)),
    # A new password no longer opens the data directory; a new CA orphans every issued certificate.
    tokens.RANDOM_PASSWORD: (WHOLE,),
    tokens.PRIVATE_KEY: (WHOLE,),
    tokens.SELF_SIGNED_CERT: (WHOLE,),
}
# Masters hold etcd: their user-data must not change unless a node setting explicitly changed.
MASTER_ONLY: tuple[Path_, ...] = (("userDataBase64",),)

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


def _path_get(value: Any, path: Path_) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _ignored(path: Path_, ignore_changes: list[str]) -> bool:
    dotted = ".".join(path)
    return any(dotted == p or dotted.startswith(p + ".") or p == "*" for p in ignore_changes)


def _is_master(inputs: Mapping[str, Any]) -> bool:
    return (inputs.get("tags") or {}).get("Role") == "master"


def _fields(type_token: str, inputs: Mapping[str, Any]) -> tuple[Path_, ...]:
    fields = IMMUTABLE.get(type_token, ())
    if type_token == tokens.INSTANCE and (_is_master(inputs) or inputs.get("userDataReplaceOnChange")):
        fields += MASTER_ONLY
    return fields


def _scaled_away(before: Plan, now: Mapping[str, Any]) -> list[str]:
    """Names of minions the change removes: they, and what was issued for them, may go."""
    return [
        (r.inputs.get("tags") or {}).get("Name") or r.name
        for r in before.instances()
        if r.urn not in now and not _is_master(r.inputs)
    ]


def replacements(before: Plan, after: Plan) -> list[str]:
    """Every stateful resource the change would replace or delete, with the field that causes it."""
    found = []
    now = {r.urn: r for r in after.resources}
    removed = _scaled_away(before, now)
    for old in before.resources:
        fields = _fields(old.type, old.inputs)
        if not fields:
            continue
        new = now.get(old.urn)
        if new is None:
            if not any(name in old.name for name in removed):
                found.append(f"{old.name}: deleted")
            continue
        for path in fields:
            if _ignored(path, new.options["ignoreChanges"]):
                continue
            if _path_get(old.inputs, path) != _path_get(new.inputs, path):
                found.append(f"{old.name}: {'.'.join(path) or 'inputs'} changed")
    return found


def _inputs(plan: Plan) -> dict[str, Any]:
    return {r.urn: r.inputs for r in plan.resources}


def _stateful_count(plan: Plan) -> int:
    return sum(1 for r in plan.resources if _fields(r.type, r.inputs))


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


def test_guard_catches_a_volume_template_change(baselines: dict[str, Plan]) -> None:
    after = run_program("dev", {"mysqlStorageSize": "50Gi"})
    assert replacements(baselines["dev"], after) == ["workload-mysql-statefulset: spec.volumeClaimTemplates changed"]


def test_guard_catches_an_explicit_ami_and_master_user_data(baselines: dict[str, Plan]) -> None:
    after = run_program("dev", {"amiId": "ami-0123456789abcdef0", "kubernetesVersion": "1.33"})
    found = replacements(baselines["dev"], after)
    instances = [r.name for r in baselines["dev"].instances()]
    assert {f"{name}: ami changed" for name in instances} <= set(found)
    masters = [r.name for r in baselines["dev"].instances() if _is_master(r.inputs)]
    assert masters and {f"{name}: userDataBase64 changed" for name in masters} <= set(found)


def test_guard_catches_a_deleted_master_but_not_a_removed_minion(baselines: dict[str, Plan]) -> None:
    after = run_program("prod", {"masterCount": "1", "minionCount": "5"})
    found = replacements(baselines["prod"], after)
    assert "cluster-atomic-master-3: deleted" in found
    assert not [f for f in found if "minion" in f]


def test_ignore_changes_is_honoured() -> None:
    assert _ignored(("spec", "volumeClaimTemplates"), ["spec.volumeClaimTemplates"])
    assert _ignored(("ami",), ["ami"])
    assert not _ignored(("ami",), ["amiId"])


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
