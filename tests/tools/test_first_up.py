"""The first-up estimate (tools/first_up.py): the critical path of the offline plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components import tokens
from components.aws.gate import DYNAMIC_TYPE
from tests.conftest import PROJECT_DIR
from tools import first_up
from tools.harness.offline import run_program
from tools.preview import plan_document


def _entry(name: str, kind: str, waits: tuple[str, ...] = (), parent: str | None = None,
           provider: str | None = None, replicas: int | None = None) -> dict[str, Any]:
    inputs = {"spec": {"replicas": replicas}} if replicas else {}
    return {"urn": name, "name": name, "type": kind, "custom": True, "parent": parent, "inputs": inputs,
            "provider": f"{provider}::id" if provider else None, "options": {"dependsOn": list(waits)}}


def test_the_longest_chain_wins_counting_parents_and_providers() -> None:
    plan = {"stack": "t", "resources": [
        _entry("vpc", tokens.VPC),
        _entry("lb", tokens.LOAD_BALANCER, ("vpc",)),
        _entry("node", tokens.INSTANCE, ("vpc",)),
        _entry("gate", DYNAMIC_TYPE, ("node",)),
        _entry("k8s", tokens.KUBERNETES_PROVIDER, ("gate",)),
        {**_entry("workload", "atomic-mysql:workload:Workload"), "custom": False, "provider": None},
        _entry("sts", tokens.STATEFUL_SET, (), parent="workload", provider="k8s", replicas=2),
    ]}
    estimate = first_up.estimate(plan)
    assert [s.name for s in estimate.path] == ["vpc", "node", "gate", "k8s", "sts"]
    assert estimate.seconds == 5 + 40 + 480 + 0 + 2 * first_up.STATEFUL_SET_PER_POD
    assert "about 11 min 45 s" in estimate.lines()[0]


@pytest.mark.parametrize(("stack", "through"), [("dev", "cluster-api-eip"), ("prod", "cluster-api-lb-nlb")])
def test_the_first_up_of_an_aws_stack_goes_through_the_gate_to_the_mysql_set(stack: str, through: str) -> None:
    estimate = first_up.estimate(plan_document(run_program(stack)))
    names = [s.name for s in estimate.path]
    assert through in names and names.index(through) < names.index("cluster-ready")
    # The set, then at most the patch of one of its claims (set.py grows them once every pod is ready).
    last = names.index("workload-mysql-statefulset")
    assert all(name.startswith("workload-mysql-data-") for name in names[last + 1:]) and len(names) - last <= 2
    assert estimate.seconds == sum(s.seconds for s in estimate.path)


def test_minions_never_wait_for_masters_and_the_workload_only_for_what_it_needs() -> None:
    document = plan_document(run_program("prod"))
    by_name = {e["name"]: e["urn"] for e in document["resources"]}
    masters = {e["urn"] for e in document["resources"] if e["type"] == tokens.INSTANCE and "master" in e["name"]}
    minions = [e["urn"] for e in document["resources"] if e["type"] == tokens.INSTANCE and "minion" in e["name"]]
    assert masters and minions
    for minion in minions:
        assert not first_up.waits_transitively(document, minion) & masters
    mysql = first_up.waits_transitively(document, by_name["workload-mysql-statefulset"])
    assert by_name["addons-ebs-csi-controller"] in mysql and by_name["addons-coredns-deployment"] in mysql
    assert by_name["addons-metrics-server-deployment"] not in mysql


def test_every_latency_is_in_the_docs() -> None:
    docs = (PROJECT_DIR / "docs" / "first-up.md").read_text()
    for kind, seconds in first_up.LATENCY.items():
        assert f"| `{kind}` | {seconds} |" in docs, kind


def test_the_cli_reads_plans_and_says_when_there_is_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert first_up.main([str(tmp_path / "missing.json")]) == 2
    assert "run make preview first" in capsys.readouterr().err
