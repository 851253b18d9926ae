"""The data-loss matrix: what a common `pulumi config set` would do to the data, stack by stack.

    python -m tools.data_loss [--stack dev --stack prod ...] [--markdown]

For each change it runs the program before and after under the offline harness (as `make preview`
does), the "after" run given the stack outputs the "before" run left (what the engine's
readStackOutputs answers a real `up`), and reads from the two plans what the engine would do:

- replaced or deleted: every stateful resource one of whose replace-on-change fields differs
  (IMMUTABLE: the Kubernetes immutable fields pulumi-kubernetes replaces on, AWS ForceNew
  arguments) unless the field is in the resource's ignoreChanges, and every one the change removes
  (minions scaled away excepted);
- what that costs: a replaced Namespace deletes every claim in it; a replaced StatefulSet deletes its
  claims with mysqlPvcWhenDeleted=Delete (else they are kept and adopted again, the template's new
  size or class never applied); a protected resource stops the engine instead (`protect`);
- the data dirs: a rolling update onto an older version or another engine, and whether the pod's own
  guard (scripts/datadir-guard.sh in the ConfigMap) refuses it;
- the claims: a new size reaches the existing claims only through a patch of each (set.py); a
  smaller one is refused by the API server (tests/components/workload/mysql/test_claim_growth_real.py);
- or the change is refused before anything is registered, with its one line (settings/load.py).

It describes the plan, it does not run an update: the engine's behaviour it relies on (replace on
these fields, protect stopping a replacement, ignoreChanges keeping the old inputs) is cited where
the program sets it (workload/mysql/set.py, workload/workload.py). tests/test_data_loss_matrix.py
asserts that no row loses data; the table's before/after for the issue comes from running this on
two revisions (docs/mysql.md, "What a change does to the data").
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components import tokens
from components.facts import quantity_value
from components.settings.load import SettingsError
from tools.harness.offline import Plan, run_program

Path_ = tuple[str, ...]
WHOLE: Path_ = ()  # every input: any change replaces (the random and tls providers replace on any change)

# Fields whose change replaces the resource (Kubernetes immutable fields that pulumi-kubernetes
# replaces on; AWS ForceNew arguments), for the resources that hold data or identity.
IMMUTABLE: dict[str, tuple[Path_, ...]] = {
    tokens.NAMESPACE: (("metadata", "name"),),
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


def _path_get(value: Any, path: Path_) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def ignored(path: Path_, ignore_changes: Sequence[str]) -> bool:
    dotted = ".".join(path)
    return any(dotted == p or dotted.startswith(p + ".") or p == "*" for p in ignore_changes)


def is_master(inputs: Mapping[str, Any]) -> bool:
    return (inputs.get("tags") or {}).get("Role") == "master"


def _fields(type_token: str, inputs: Mapping[str, Any]) -> tuple[Path_, ...]:
    fields = IMMUTABLE.get(type_token, ())
    if type_token == tokens.INSTANCE and (is_master(inputs) or inputs.get("userDataReplaceOnChange")):
        fields += MASTER_ONLY
    return fields


def stateful_count(plan: Plan) -> int:
    return sum(1 for r in plan.resources if _fields(r.type, r.inputs))


def _scaled_away(before: Plan, now: Mapping[str, Any]) -> list[str]:
    """Names of minions the change removes: they, and what was issued for them, may go."""
    return [
        (r.inputs.get("tags") or {}).get("Name") or r.name
        for r in before.instances()
        if r.urn not in now and not is_master(r.inputs)
    ]


@dataclass(frozen=True)
class Replacement:
    name: str
    type: str
    cause: str  # "deleted" or the field that changed
    protected: bool

    def __str__(self) -> str:
        return f"{self.name}: {self.cause}"


def replacements(before: Plan, after: Plan) -> list[Replacement]:
    """Every stateful resource the change would replace or delete, with the field that causes it."""
    found = []
    now = {r.urn: r for r in after.resources}
    removed = _scaled_away(before, now)
    for old in before.resources:
        fields = _fields(old.type, old.inputs)
        if not fields:
            continue
        protected = bool(old.options.get("protect"))
        new = now.get(old.urn)
        if new is None:
            if not any(name in old.name for name in removed):
                found.append(Replacement(old.name, old.type, "deleted", protected))
            continue
        for path in fields:
            if ignored(path, new.options.get("ignoreChanges") or []):
                continue
            if _path_get(old.inputs, path) != _path_get(new.inputs, path):
                found.append(Replacement(old.name, old.type, f"{'.'.join(path) or 'inputs'} changed", protected))
    return found


# --------------------------------------------------------------------------
# What a replacement or an update costs the data
# --------------------------------------------------------------------------


def _stateful_set(plan: Plan) -> Any:
    sets = plan.of_type(tokens.STATEFUL_SET)
    return sets[0] if sets else None


def _claim_template(stateful_set: Any) -> Mapping[str, Any]:
    templates = _path_get(stateful_set.inputs, ("spec", "volumeClaimTemplates")) or [{}]
    return templates[0].get("spec") or {}


def _server(stateful_set: Any) -> tuple[str, str]:
    """(MYSQL_ENGINE, MYSQL_VERSION) of the mysqld container."""
    for container in _path_get(stateful_set.inputs, ("spec", "template", "spec", "containers")) or []:
        if container.get("name") == "mysql":
            env = {e.get("name"): e.get("value") for e in container.get("env") or []}
            return str(env.get("MYSQL_ENGINE")), str(env.get("MYSQL_VERSION"))
    return "", ""


def _guarded(plan: Plan) -> bool:
    """The pods refuse a data dir they cannot open (the guard ships in the set's ConfigMap)."""
    return any("datadir-guard.sh" in (r.inputs.get("data") or {}) for r in plan.of_type(tokens.CONFIG_MAP))


def _version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return ()


def _quantity_gib(size: str) -> float:
    return quantity_value(size) / 2**30


@dataclass
class Outcome:
    """One change on one stack: refused (with its line), or what the engine would do."""

    stack: str
    change: str
    refused: str | None = None
    replaced: list[Replacement] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)  # data that would be gone, or a data dir put at risk
    stopped: list[str] = field(default_factory=list)  # what protect (or a server-side refusal) stops
    silent: list[str] = field(default_factory=list)  # what the change asks for and never gets, unsaid
    notes: list[str] = field(default_factory=list)  # what happens that loses nothing

    @property
    def loses_data(self) -> bool:
        return bool(self.losses)

    def verdict(self) -> str:
        if self.refused is not None:
            return "refused before anything changes"
        if self.losses:
            return "DATA LOST or at risk"
        if self.stopped:
            return "stopped, nothing lost"
        if self.silent:
            return "not applied, in silence"
        return "in place, nothing lost"

    def detail(self) -> str:
        if self.refused is not None:
            return self.refused
        parts = [*self.losses, *self.stopped, *self.silent, *self.notes]
        return "; ".join(parts) or "no stateful resource replaced or deleted"


def judge(stack: str, change: str, before: Plan, after: Plan) -> Outcome:
    """What the plan after the change means for the data the plan before it left in place."""
    outcome = Outcome(stack, change, replaced=replacements(before, after))
    old_set, new_set = _stateful_set(before), _stateful_set(after)
    delete_claims = old_set is not None and _path_get(
        old_set.inputs, ("spec", "persistentVolumeClaimRetentionPolicy", "whenDeleted")) == "Delete"
    by_resource: dict[str, Replacement] = {}
    for r in outcome.replaced:  # one line per resource, every field that replaces it named
        seen = by_resource.get(r.name)
        by_resource[r.name] = r if seen is None else Replacement(r.name, r.type, f"{seen.cause}, {r.cause}",
                                                                 r.protected)
    for r in by_resource.values():
        if r.type == tokens.NAMESPACE:
            cost = ": protect stops the engine" if r.protected else ", every claim in it deleted"
            (outcome.stopped if r.protected else outcome.losses).append(f"namespace replaced ({r.cause}){cost}")
        elif r.type == tokens.STATEFUL_SET:
            if r.protected:
                outcome.stopped.append(f"StatefulSet replaced ({r.cause}): protect stops the engine")
            elif delete_claims:
                outcome.losses.append(f"StatefulSet replaced ({r.cause}), its claims deleted (whenDeleted=Delete):"
                                      " -0 starts as an empty primary")
            elif r.cause == "spec.volumeClaimTemplates changed":  # the claims' names stay: adopted again
                outcome.silent.append("StatefulSet replaced (every pod restarts), claims kept and adopted again:"
                                      " the new template never reaches them")
            else:
                outcome.losses.append(f"StatefulSet replaced ({r.cause}): the new set starts empty")
        elif r.type in (tokens.RANDOM_PASSWORD,):
            outcome.notes.append(f"{r.name} {r.cause}: the Secret changes, the data stays")
        elif r.type in (tokens.PRIVATE_KEY, tokens.SELF_SIGNED_CERT):
            outcome.notes.append(f"{r.name} {'deleted' if r.cause == 'deleted' else 'issued again'}: no data on it")
        else:
            (outcome.stopped if r.protected else outcome.losses).append(
                f"{r.name} {'replaced' if r.cause != 'deleted' else 'deleted'} ({r.cause})"
                + (": protect stops the engine" if r.protected else ""))
    if old_set is not None and new_set is not None:
        _data_dirs(outcome, before, after, old_set, new_set)
        _claims(outcome, after, old_set, new_set)
    return outcome


def _data_dirs(outcome: Outcome, before: Plan, after: Plan, old_set: Any, new_set: Any) -> None:
    (old_engine, old_version), (engine, version) = _server(old_set), _server(new_set)
    if (old_engine, old_version) == (engine, version):
        return
    if any(r.type == tokens.STATEFUL_SET for r in outcome.replaced):
        return
    switch = engine != old_engine
    older = not switch and _version_key(version) < _version_key(old_version)
    if not (switch or older):
        outcome.notes.append(f"{old_engine} {old_version} -> {version}: rolling update, highest replica first")
        return
    what = f"{old_engine} {old_version} -> {engine} {version}"
    if _guarded(after):
        outcome.stopped.append(f"{what}: the highest replica's pod refuses its data dir (datadir-guard FATAL, no"
                               " write); the rollout halts there")
    else:
        outcome.losses.append(f"{what}: rolls onto data dirs it cannot open; the highest replica crash-loops"
                              " on a data dir its server may already have written to")


def _claims(outcome: Outcome, after: Plan, old_set: Any, new_set: Any) -> None:
    if any(r.type == tokens.STATEFUL_SET for r in outcome.replaced):
        return
    old_size = str(_path_get(_claim_template(old_set), ("resources", "requests", "storage")))
    new_size = str(_path_get(_claim_template(new_set), ("resources", "requests", "storage")))
    if old_size == new_size:
        return
    replicas = int(_path_get(new_set.inputs, ("spec", "replicas")) or 1)
    set_name = str(_path_get(new_set.inputs, ("metadata", "name")))
    patched = {
        str(_path_get(r.inputs, ("metadata", "name"))): str(_path_get(r.inputs, ("spec", "resources", "requests",
                                                                                   "storage")))
        for r in after.kubernetes_patches() if r.type == tokens.PERSISTENT_VOLUME_CLAIM_PATCH
    }
    claims = [f"data-{set_name}-{ordinal}" for ordinal in range(replicas)]
    grown = all(patched.get(claim) == new_size for claim in claims)
    if _quantity_gib(new_size) < _quantity_gib(old_size):
        outcome.stopped.append(f"claims {old_size} -> {new_size}: the API server refuses a smaller claim")
    elif grown:
        outcome.notes.append(f"each claim patched {old_size} -> {new_size}, the set kept")
    else:
        outcome.silent.append(f"claims stay {old_size}: the new size {new_size} never reaches them")


# --------------------------------------------------------------------------
# The changes
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    what: str
    overrides: Mapping[str, Any]
    # The stack as deployed before the change, where it is not the stack's own config.
    base: Mapping[str, Any] = field(default_factory=dict)
    secret_overrides: Mapping[str, str] = field(default_factory=dict)
    stacks: tuple[str, ...] = ("dev", "staging", "prod")
    # The "after" run is given the outputs the "before" run left (False: as if it left none).
    record: bool = True


DATA_CHANGES: tuple[Change, ...] = (
    Change("mysqlStorageSize up (x4)", {"mysqlStorageSize": "__x4__"}),
    Change("mysqlStorageSize down (1/2)", {"mysqlStorageSize": "__half__"}),
    Change("mysqlStorageClass '' -> gp3-mysql (the same class)", {"mysqlStorageClass": "gp3-mysql"}),
    Change("mysqlStorageClass '' -> gp3 (another class)", {"mysqlStorageClass": "gp3"}),
    Change("mysqlVersion 8.0 -> 8.4 (upgrade)", {"mysqlVersion": "8.4"}, base={"mysqlVersion": "8.0"}),
    Change("mysqlVersion 8.4 -> 8.0 (downgrade)", {"mysqlVersion": "8.0"}),
    Change("mysqlEngine mysql -> mariadb", {"mysqlEngine": "mariadb", "mysqlVersion": "11.4"}),
    Change("mysqlReplicas +2", {"mysqlReplicas": "__plus2__"}, stacks=("dev", "staging")),
    # prod's hard anti-affinity needs a minion per pod (settings refuse fewer).
    Change("mysqlReplicas +2 (and the minions for them)", {"mysqlReplicas": "7", "minionCount": "7"},
           stacks=("prod",)),
    Change("mysqlReplicas -1", {"mysqlReplicas": "__minus1__"}),
    Change("mysqlRootPassword set", {}, secret_overrides={"mysqlRootPassword": "a-new-root-password-1"}),
    Change("namespace renamed", {"namespace": "shop"}),
    Change("mysqlName renamed", {"mysqlName": "db"}),
    Change("protectStateful toggled", {"protectStateful": "__toggle__"}),
    Change("mysqlPvcWhenDeleted toggled", {"mysqlPvcWhenDeleted": "__toggle_retention__"}),
    # A stack last deployed before the record existed: what stops a bad change then.
    Change("mysqlVersion 8.4 -> 8.0, no record", {"mysqlVersion": "8.0"}, record=False),
    Change("mysqlStorageSize down (1/2), no record", {"mysqlStorageSize": "__half__"}, record=False),
)


def _stack_value(plan: Plan, key: str) -> Any:
    settings = plan.settings
    mysql = settings.mysql
    return {
        "mysqlStorageSize": mysql.storage_size,
        "mysqlReplicas": mysql.replicas,
        "protectStateful": settings.protect,
        "mysqlPvcWhenDeleted": mysql.pvc_when_deleted,
    }[key]


def _resolve(overrides: Mapping[str, Any], base: Plan) -> dict[str, Any]:
    """Relative changes (x4, +2, toggled) made concrete for the stack they apply to."""
    resolved: dict[str, Any] = {}
    for key, value in overrides.items():
        if value in ("__x4__", "__half__"):
            gib = quantity_value(_stack_value(base, key)) / 2**30
            resolved[key] = f"{int(gib * 4 if value == '__x4__' else gib / 2)}Gi"
        elif value in ("__plus2__", "__minus1__"):
            resolved[key] = str(_stack_value(base, key) + (2 if value == "__plus2__" else -1))
        elif value == "__toggle__":
            resolved[key] = "false" if _stack_value(base, key) else "true"
        elif value == "__toggle_retention__":
            resolved[key] = "Retain" if _stack_value(base, key) == "Delete" else "Delete"
        else:
            resolved[key] = value
    return resolved


def _run(stack: str, overrides: Mapping[str, Any], secret_overrides: Mapping[str, str],
         previous: Mapping[str, Any] | None) -> Plan:
    options: dict[str, Any] = {}
    # Older revisions (for the "before" table) have no previous outputs in their harness.
    if previous is not None and "previous_outputs" in inspect.signature(run_program).parameters:
        options["previous_outputs"] = previous
    return run_program(stack, overrides, secret_overrides or None, **options)


def _outputs(plan: Plan) -> dict[str, Any]:
    return {name: output.value for name, output in plan.outputs.items()}


def evaluate(stack: str, change: Change, baselines: dict[tuple[str, tuple[tuple[str, Any], ...]], Plan]) -> Outcome:
    key = (stack, tuple(sorted(change.base.items())))
    if key not in baselines:
        baselines[key] = _run(stack, change.base, {}, None)
    before = baselines[key]
    overrides = {**change.base, **_resolve(change.overrides, before)}
    shown = ", ".join(f"{k}={v}" for k, v in _resolve(change.overrides, before).items()) or \
        ", ".join(f"{k} set" for k in change.secret_overrides)
    name = f"{change.what} [{shown}]"
    try:
        after = _run(stack, overrides, change.secret_overrides, _outputs(before) if change.record else None)
    except SettingsError as error:  # the one line the CLI would print
        return Outcome(stack, name, refused=str(error).splitlines()[0])
    return judge(stack, name, before, after)


def matrix(stacks: Sequence[str] = ("dev", "staging", "prod"),
           changes: Sequence[Change] = DATA_CHANGES) -> Iterator[Outcome]:
    baselines: dict[tuple[str, tuple[tuple[str, Any], ...]], Plan] = {}
    for change in changes:
        for stack in stacks:
            if stack in change.stacks:
                yield evaluate(stack, change, baselines)


def table(outcomes: Sequence[Outcome]) -> str:
    lines = ["| stack | change | outcome | what the plan says |", "|---|---|---|---|"]
    for o in outcomes:
        detail = o.detail().replace("|", "\\|")
        lines.append(f"| {o.stack} | {o.change} | {o.verdict()} | {detail} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", action="append", help="a stack (repeatable; default dev, staging, prod)")
    args = parser.parse_args(argv)
    outcomes = list(matrix(tuple(args.stack or ("dev", "staging", "prod"))))
    print(table(outcomes))
    lost = [o for o in outcomes if o.loses_data]
    print(f"\n{len(outcomes)} changes, {len(lost)} losing data")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
