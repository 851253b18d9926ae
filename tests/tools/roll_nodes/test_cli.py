"""make roll-nodes without a cluster: which nodes it finds stale in a stack's state, the plan it prints,
what it runs through kubectl, and the invocations it refuses.

The state is what the engine would record: a plain `pulumi up` after a change keeps each instance's
ignored launch inputs (the values it was launched with) and takes every other input, the NodeSpec tag
among them, from the program (pulumi/pulumi#2657).
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components import tokens
from tools.harness.offline import Plan, run_program
from tools.roll_nodes import cli
from tools.roll_nodes.remote import Kubectl, is_current, nodes_from_state, parse_node


def state_after_plain_up(before: Plan, after: Plan) -> dict[str, Any]:
    old = {r.urn: r for r in before.resources}
    resources = []
    for r in after.resources:
        inputs = dict(r.inputs)
        if r.urn in old:
            inputs.update({k: old[r.urn].inputs.get(k) for k in r.options["ignoreChanges"]})
        resources.append({"urn": r.urn, "type": r.type, "inputs": inputs})
    return {"version": 3, "deployment": {"resources": resources}}


@pytest.fixture(scope="module")
def prod() -> Plan:
    return run_program("prod")


def test_nothing_is_stale_right_after_an_up_without_changes(prod: Plan) -> None:
    nodes = nodes_from_state(state_after_plain_up(prod, prod))
    assert len(nodes) == 9 and [n.role for n in nodes[:3]] == ["master"] * 3
    assert all(n.current for n in nodes)
    assert [n.address for n in nodes if n.name == "atomic-master-2"] == [
        prod.instance_named("atomic-master-2").inputs["privateIp"]]


def test_the_nodes_a_change_reaches_are_stale_after_a_plain_up(prod: Plan) -> None:
    bigger = run_program("prod", {"masterInstanceType": "m6i.xlarge"})
    masters_only = nodes_from_state(state_after_plain_up(prod, bigger))
    assert sorted(n.name for n in masters_only if not n.current) == ["atomic-master-1", "atomic-master-2",
                                                                      "atomic-master-3"]
    every = nodes_from_state(state_after_plain_up(prod, run_program("prod", {"amiId": "ami-0123456789abcdef0"})))
    assert not any(n.current for n in every)


def test_a_node_whose_recorded_user_data_differs_from_its_tag_is_stale(prod: Plan) -> None:
    """Negative control of the comparison itself: one byte of recorded user-data."""
    instance = prod.instance_named("atomic-minion-4")
    inputs = dict(instance.inputs)
    assert is_current(inputs)
    inputs["userDataBase64"] = inputs["userDataBase64"][:-4] + "AAAA"
    assert not is_current(inputs)
    assert is_current({k: v for k, v in inputs.items() if k != "tags"}), "no tag (an older stack): not stale"


def _saved(tmp_path: Path, state: dict[str, Any]) -> Path:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    return path


def test_the_dry_run_prints_the_plan_and_changes_nothing(prod: Plan, tmp_path: Path) -> None:
    state = _saved(tmp_path, state_after_plain_up(prod, run_program("prod", {"kubernetesVersion": "1.33"})))
    out = io.StringIO()
    assert cli.run(cli.build_parser().parse_args(["--stack", "prod", "--from-state-json", str(state)]), out) == 0
    text = out.getvalue()
    assert text.startswith("roll-nodes prod: 9 of 9 nodes, one at a time\n  1. minion atomic-minion-1 ")
    assert "  7. master atomic-master-1 " in text and "stop its etcd and control plane, remove the member" in text
    assert "dry run, nothing changed: add --yes (make roll-nodes STACK=prod ARGS=--yes)" in text
    out = io.StringIO()
    cli.run(cli.build_parser().parse_args(["--stack", "prod", "--from-state-json", str(state), "--role",
                                           "master"]), out)
    assert "3 of 9 nodes" in out.getvalue() and "minion" not in out.getvalue().split("left as they are")[0]


def test_a_stack_with_nothing_to_roll_says_so(prod: Plan, tmp_path: Path) -> None:
    out = io.StringIO()
    state = _saved(tmp_path, state_after_plain_up(prod, prod))
    cli.run(cli.build_parser().parse_args(["--stack", "prod", "--from-state-json", str(state)]), out)
    assert "0 of 9 nodes" in out.getvalue() and "every node runs what the program says" in out.getvalue()


@pytest.mark.parametrize(("argv", "message"), [
    (["--stack", "prod", "--node", "atomic-master-9"], "--node atomic-master-9: stack prod has no such node"),
    (["--stack", "prod", "--node", "atomic-master-1", "--all"], "--node and --all"),
    (["--stack", "prod", "--role", "etcd"], "argument --role: invalid choice: 'etcd'"),
])
def test_bad_invocations_are_one_line_and_exit_2(prod: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 argv: list[str], message: str) -> None:
    state = _saved(tmp_path, state_after_plain_up(prod, prod))
    assert cli.main([*argv, "--from-state-json", str(state)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_state_without_nodes_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _saved(tmp_path, {"deployment": {"resources": [{"type": tokens.STATEFUL_SET, "inputs": {}}]}})
    assert cli.main(["--stack", "x", "--from-state-json", str(state)]) == 1
    assert "holds no cluster node" in capsys.readouterr().err


def test_kubectl_drains_with_the_budgets_respected_and_reads_ready_and_boot_id() -> None:
    calls: list[list[str]] = []
    node = {"spec": {"unschedulable": True}, "status": {"nodeInfo": {"bootID": "b-2"},
                                                        "conditions": [{"type": "Ready", "status": "True"}]}}

    def runner(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        if argv[2:4] == ["get", "node"]:
            return subprocess.CompletedProcess(argv, 0, json.dumps(node), "")
        return subprocess.CompletedProcess(argv, 0, "", "")

    kube = Kubectl.from_text("apiVersion: v1\nkind: Config\n", runner=runner)
    try:
        assert kube.kubeconfig.stat().st_mode & 0o777 == 0o600
        kube.drain("atomic-minion-1", 600)
        state = kube.state("atomic-minion-1")
    finally:
        kube.close()
    assert not kube.kubeconfig.exists()
    assert calls[0][2:] == ["drain", "atomic-minion-1", "--ignore-daemonsets", "--delete-emptydir-data",
                            "--timeout=600s"]
    assert "--disable-eviction" not in calls[0] and "--force" not in calls[0]
    assert state == parse_node(node) and state.ready and state.boot_id == "b-2" and state.unschedulable
