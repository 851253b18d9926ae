"""The ServiceMonitor and PrometheusRule the set renders validate against the Prometheus operator's CRD
schemas (tools/crd_validate.py: @kubernetes-models/prometheus-operator's generated schemas under node),
and a broken one does not."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tools import crd_validate
from tools.harness.offline import run_program

pytestmark = pytest.mark.real  # runs node with the pinned npm packages


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    plan = run_program("dev", {"mysqlBackupEnabled": "true", "prometheusOperator": "true"})
    return {o["kind"]: o for o in plan.kubernetes_objects() if o["apiVersion"].startswith("monitoring.coreos.com/")}


def test_the_rendered_objects_validate(rendered: dict[str, dict[str, Any]]) -> None:
    assert set(rendered) == {"ServiceMonitor", "PrometheusRule"}
    lines = crd_validate.validate(rendered.values())
    assert [line.split()[:2] for line in lines] == [["ok", "ServiceMonitor"], ["ok", "PrometheusRule"]]


@pytest.mark.parametrize(("kind", "path", "value", "message"), [
    ("ServiceMonitor", ("spec", "endpoints", 0, "interval"), "thirty seconds", "interval must match pattern"),
    ("PrometheusRule", ("spec", "groups", 0, "rules", 0, "for"), "5 minutes", "for must match pattern"),
    ("PrometheusRule", ("spec", "groups", 0, "name"), "", "name must NOT be shorter than 1 character"),
])
def test_a_broken_object_is_refused(rendered: dict[str, dict[str, Any]], kind: str, path: tuple[Any, ...],
                                    value: str, message: str) -> None:
    broken = copy.deepcopy(rendered[kind])
    node: Any = broken
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    with pytest.raises(crd_validate.CrdValidateError, match=message):
        crd_validate.validate([broken])
