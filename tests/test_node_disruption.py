"""The node rows of the disruption matrix: what a plain `pulumi up` does to the EC2 nodes for each
common node change, on dev, staging and prod, computed from the plans before and after.

For every instance present in both runs, an input the provider applies by replacing the instance
(a ForceNew argument: ami, subnet, address, ...) is a replacement, one it applies by stopping and
starting it (userDataBase64, instanceType: pulumi-aws's ec2.Instance, `userDataReplaceOnChange`
false) is a stop; an input named in the instance's ignoreChanges is neither, because the engine
keeps the recorded value (pulumi/pulumi#2657). Shown for each change: no node is stopped or
replaced by the plain `up`, and every node whose launch inputs changed says so in its NodeSpec tag
(what `make roll-nodes` acts on, one node at a time). `ATOMIC_ROLL_NODE` releases exactly one node.

`venv/bin/python -m tests.test_node_disruption` prints the matrix as the program registers it now
and as it did before nodes were held back (ignoreChanges on the AMI only, when looked up).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import pytest

from components import tokens
from components.facts import NODE_LAUNCH_INPUTS, ROLL_NODE_ENV, TAG_NODE_SPEC
from tools.harness.mocks import Registration
from tools.harness.offline import Plan, run_program

Mode = Literal["now", "before"]
REPLACES = ("ami", "subnetId", "privateIp", "availabilityZone", "keyName", "associatePublicIpAddress")
STOPS = ("userDataBase64", "instanceType")

NODE_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("kubernetesVersion 1.32 -> 1.33", {"kubernetesVersion": "1.33"}),
    ("masterInstanceType", {"masterInstanceType": "m6i.xlarge"}),
    ("minionInstanceType", {"minionInstanceType": "m6i.2xlarge"}),
    ("amiId set explicitly", {"amiId": "ami-0123456789abcdef0"}),
    ("enableCadvisor", {"enableCadvisor": True}),
    ("etcdBackupIntervalMinutes 60 -> 30", {"etcdBackupIntervalMinutes": 30}),
]
STACKS = ("dev", "staging", "prod")


def _name(r: Registration) -> str:
    return str((r.inputs.get("tags") or {}).get("Name") or r.name)


def _role(r: Registration) -> str:
    return str((r.inputs.get("tags") or {}).get("Role"))


def _ignored(r: Registration, mode: Mode) -> list[str]:
    if mode == "now":
        return list(r.options["ignoreChanges"])
    # Before nodes were held back: only a looked-up AMI was ignored.
    return [] if "ami-0123456789abcdef0" in (r.inputs.get("ami"),) else ["ami"]


def disruption(before: Plan, after: Plan, mode: Mode = "now") -> dict[str, dict[str, list[str]]]:
    """node -> {"replaced": inputs, "stopped": inputs, "held": inputs} for every node in both runs."""
    now = {r.urn: r for r in after.instances()}
    found: dict[str, dict[str, list[str]]] = {}
    for old in before.instances():
        new = now.get(old.urn)
        if new is None:
            continue
        ignored = _ignored(new, mode)
        changed = [k for k in (*REPLACES, *STOPS) if old.inputs.get(k) != new.inputs.get(k)]
        found[_name(old)] = {
            "replaced": [k for k in changed if k in REPLACES and k not in ignored],
            "stopped": [k for k in changed if k in STOPS and k not in ignored],
            "held": [k for k in changed if k in ignored],
        }
    return found


def row(stack: str, what: str, result: Mapping[str, Mapping[str, list[str]]], roles: Mapping[str, str]) -> str:
    def count(role: str, kind: str) -> str:
        nodes = [n for n, r in roles.items() if r == role]
        hit = [n for n in nodes if result[n][kind]]
        return f"{len(hit)}/{len(nodes)}"
    return (f"| {stack} | {what} | {count('master', 'stopped')} | {count('master', 'replaced')} | "
            f"{count('minion', 'stopped')} | {count('minion', 'replaced')} | "
            f"{count('master', 'held')} + {count('minion', 'held')} |")


HEADER = ("| stack | change | masters stopped | masters replaced | minions stopped | minions replaced | "
          "held for roll-nodes (masters + minions) |\n|---|---|---|---|---|---|---|")


@pytest.fixture(scope="module")
def baselines() -> Iterator[dict[str, Plan]]:
    yield {stack: run_program(stack) for stack in STACKS}


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize(("what", "overrides"), NODE_CHANGES, ids=[w for w, _ in NODE_CHANGES])
def test_a_node_change_stops_or_replaces_no_node_and_marks_every_changed_one(
        baselines: dict[str, Plan], stack: str, what: str, overrides: dict[str, Any]) -> None:
    before = baselines[stack]
    after = run_program(stack, overrides)
    result = disruption(before, after)
    assert result, "the stack has nodes"
    # Not vacuous: the change reaches some node's launch inputs, and without the hold-back it would
    # have stopped or replaced them.
    held = sorted(n for n, r in result.items() if r["held"])
    assert held, f"{what} changes no node's launch inputs on {stack}"
    unheld = disruption(before, after, mode="before")
    assert any(r["stopped"] or r["replaced"] for r in unheld.values())
    disrupted = {n: r for n, r in result.items() if r["stopped"] or r["replaced"]}
    assert disrupted == {}, f"a plain `pulumi up` would stop or replace: {disrupted}"
    tags_before = {_name(r): (r.inputs.get("tags") or {}).get(TAG_NODE_SPEC) for r in before.instances()}
    tags_after = {_name(r): (r.inputs.get("tags") or {}).get(TAG_NODE_SPEC) for r in after.instances()}
    retagged = sorted(n for n in tags_before if tags_before[n] != tags_after.get(n))
    assert retagged == held, "NodeSpec must change exactly on the nodes whose launch inputs changed"


def test_the_roll_releases_exactly_one_node(baselines: dict[str, Plan], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROLL_NODE_ENV, "atomic-master-2")
    after = run_program("prod", {"kubernetesVersion": "1.33"})
    result = disruption(baselines["prod"], after)
    assert {n: r["stopped"] for n, r in result.items() if r["stopped"]} == {"atomic-master-2": ["userDataBase64"]}
    assert not any(r["replaced"] for r in result.values())
    released = after.instance_named("atomic-master-2")
    assert released.options["ignoreChanges"] == []
    assert released.options["deleteBeforeReplace"] is True  # the replacement needs the node's fixed address
    assert all(r.options["ignoreChanges"] == list(NODE_LAUNCH_INPUTS)
               for r in after.instances() if r is not released)


def test_a_roll_of_a_node_the_stack_does_not_have_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROLL_NODE_ENV, "atomic-master-3")
    with pytest.raises(Exception, match=r"ATOMIC_ROLL_NODE=atomic-master-3: no such node in stack dev"):
        run_program("dev")
    monkeypatch.setenv(ROLL_NODE_ENV, "Master 1; rm")
    with pytest.raises(Exception, match=r"environment ATOMIC_ROLL_NODE=.*must be a node name"):
        run_program("dev")


def test_the_matrix_catches_a_stop_when_nothing_is_held(baselines: dict[str, Plan]) -> None:
    """Negative control: the same comparison, with the options the program had before, reports the
    stops and replacements the hold-back prevents."""
    after = run_program("prod", {"kubernetesVersion": "1.33", "amiId": "ami-0123456789abcdef0"})
    result = disruption(baselines["prod"], after, mode="before")
    masters = [n for n in result if n.startswith("atomic-master")]
    assert masters and all(result[n]["stopped"] == ["userDataBase64"] for n in masters)
    assert all(result[n]["replaced"] == ["ami"] for n in result)


def test_a_new_renewal_round_reissues_every_cluster_leaf_certificate_and_touches_no_node(
        baselines: dict[str, Plan], monkeypatch: pytest.MonkeyPatch) -> None:
    """The first `pulumi up` of a new round: new requests, hence new leaf certificates (SSM parameters
    updated in place); the keys, the CAs and every node stay."""
    from components.addons import metrics_server
    from components.aws import pki
    from components.workload.mysql import set as mysql_set
    before = baselines["prod"]
    current = next(r for r in before.of_type(tokens.CERT_REQUEST)).inputs["subject"]["serialNumber"]
    later = f"renewal-{int(current.split('-')[1]) + 1}"
    for module in (pki, metrics_server, mysql_set):
        monkeypatch.setattr(module, "renewal_serial", lambda day=None: later)
    after = run_program("prod")
    old = {r.urn: r.inputs for r in before.resources}
    changed = {r.type for r in after.resources if old.get(r.urn) != r.inputs}
    assert changed == {tokens.CERT_REQUEST}, changed  # and with them, by the provider, the certificates
    requests = [r for r in after.of_type(tokens.CERT_REQUEST)]
    # every one, the MySQL set's included (its new Secret rolls the set by checksum/tls, in order)
    assert all(r.inputs["subject"].get("serialNumber") == later for r in requests), [r.name for r in requests]
    assert disruption(before, after) == {n: {"replaced": [], "stopped": [], "held": []} for n in disruption(
        before, before)}


def main() -> None:
    plans = {stack: run_program(stack) for stack in STACKS}
    modes: tuple[tuple[Mode, str], ...] = (("before", "before (ignoreChanges: a looked-up ami only)"), ("now", "now"))
    for mode, title in modes:
        print(f"\n{title}\n\n{HEADER}")
        for stack in STACKS:
            roles = {_name(r): _role(r) for r in plans[stack].instances()}
            for what, overrides in NODE_CHANGES:
                print(row(stack, what, disruption(plans[stack], run_program(stack, overrides), mode), roles))


if __name__ == "__main__":
    main()
