"""The set's volumes across changes: claim templates kept as created, each claim grown by a patch,
the objects whose deletion deletes claims protected and retained with protectStateful, and the
record of what the volumes hold read back and enforced before anything is registered.

What the API server does with the patches: test_claim_growth_real.py (a real kube-apiserver).
"""

from __future__ import annotations

from typing import Any

import pytest

from components import tokens
from components.facts import MYSQL_RECORD_OUTPUT
from components.settings.load import SettingsError
from components.workload.mysql.set import PATCH_FORCE_ANNOTATION
from tools.harness.offline import Plan, run_program


def _patches(plan: Plan) -> list[Any]:
    return plan.of_type(tokens.PERSISTENT_VOLUME_CLAIM_PATCH)


def _record(plan: Plan) -> dict[str, Any]:
    return {MYSQL_RECORD_OUTPUT: plan.outputs[MYSQL_RECORD_OUTPUT].value}


@pytest.mark.parametrize(("stack", "replicas", "size"), [("dev", 3, "5Gi"), ("prod", 5, "100Gi")])
def test_every_claim_is_patched_to_the_size_after_the_set(stack: str, replicas: int, size: str) -> None:
    plan = run_program(stack)
    [stateful_set] = plan.of_type(tokens.STATEFUL_SET)
    patches = sorted(_patches(plan), key=lambda p: str(p.inputs["metadata"]["name"]))
    assert [p.inputs["metadata"]["name"] for p in patches] == [f"data-mysql-{n}" for n in range(replicas)]
    for patch in patches:
        assert patch.inputs["metadata"]["namespace"] == "atomic-mysql"
        assert patch.inputs["metadata"]["annotations"] == {PATCH_FORCE_ANNOTATION: "true"}
        assert patch.inputs["spec"] == {"resources": {"requests": {"storage": size}}}
        assert stateful_set.urn in patch.options["dependsOn"]
        assert patch.options["retainOnDelete"] is True
        assert patch.options["protect"] is False  # fewer replicas drop a patch: that must not be refused
        assert patch.parent == stateful_set.parent
    # The claim the controller makes from the template is the one patched: same template name.
    assert stateful_set.inputs["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_the_claim_templates_are_kept_as_created() -> None:
    [stateful_set] = run_program("dev").of_type(tokens.STATEFUL_SET)
    assert stateful_set.options["ignoreChanges"] == ["spec.volumeClaimTemplates"]
    strategy = stateful_set.inputs["spec"]["updateStrategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}


def test_a_stack_rendering_yaml_patches_nothing() -> None:
    """renderYamlTo turns Server-Side Apply off (kube/provider.py), which Patch resources need."""
    assert _patches(run_program("local")) == []
    assert len(_patches(run_program("local", {"renderYamlTo": ""}))) == 2


@pytest.mark.parametrize(("stack", "protected"), [("prod", True), ("dev", False), ("staging", False)])
def test_with_protect_stateful_what_deletes_claims_is_protected_and_retained(stack: str, protected: bool) -> None:
    plan = run_program(stack)
    [namespace] = plan.of_type(tokens.NAMESPACE)
    [stateful_set] = plan.of_type(tokens.STATEFUL_SET)
    for resource in (namespace, stateful_set):
        assert resource.options["protect"] is protected, resource.name
        assert resource.options["retainOnDelete"] is protected, resource.name


def test_the_record_is_exported_and_read_back() -> None:
    before = run_program("staging")
    assert before.outputs[MYSQL_RECORD_OUTPUT].value == {
        "namespace": "atomic-mysql", "name": "mysql", "engine": "mysql", "version": "8.4",
        "storageSize": "20Gi", "storageClass": "gp3-mysql"}
    assert not before.outputs[MYSQL_RECORD_OUTPUT].secret
    after = run_program("staging", {"mysqlStorageSize": "30Gi"}, previous_outputs=_record(before))
    assert after.settings.mysql_deployed.storage_size == "20Gi"
    assert after.outputs[MYSQL_RECORD_OUTPUT].value["storageSize"] == "30Gi"


@pytest.mark.parametrize(("overrides", "line"), [
    ({"mysqlStorageSize": "19Gi"}, "config atomic-mysql:mysqlStorageSize=19Gi: the set's claims hold 20Gi (stack output"
                                   " mysqlDeployed) and a volume never shrinks: allowed 20Gi or more"),
    ({"mysqlVersion": "8.0"}, "config atomic-mysql:mysqlVersion=8.0: the set's data dirs were last opened by mysql 8.4"
                              " (stack output mysqlDeployed) and a server never opens a newer data dir: allowed values"
                              " 8.4"),
    ({"mysqlEngine": "mariadb", "mysqlVersion": "11.4"}, "config atomic-mysql:mysqlEngine=mariadb: the set's data"
                                                         " dirs were made by mysql"),
    ({"namespace": "shop"}, "config atomic-mysql:namespace=shop: the set's claims are in namespace atomic-mysql"),
    ({"mysqlName": "db"}, "config atomic-mysql:mysqlName=db: the set's claims are data-mysql-N"),
])
def test_what_the_volumes_cannot_take_is_refused_before_anything_is_registered(overrides: dict[str, Any],
                                                                              line: str) -> None:
    before = run_program("staging")
    with pytest.raises(SettingsError) as refused:
        run_program("staging", overrides, previous_outputs=_record(before))
    assert str(refused.value).startswith(line) and "\n" not in str(refused.value)
    # ...and with no record (a new stack) the same settings are accepted.
    run_program("staging", overrides)


def test_an_empty_class_and_the_default_class_name_are_the_same_claims() -> None:
    """clusterMode=existing: the record keeps the class the claims were made with."""
    before = run_program("local", {"renderYamlTo": ""})
    assert before.outputs[MYSQL_RECORD_OUTPUT].value["storageClass"] == ""
    named = run_program("local", {"renderYamlTo": "", "mysqlStorageClass": "standard"},
                        previous_outputs=_record(before))
    assert named.outputs[MYSQL_RECORD_OUTPUT].value["storageClass"] == ""
    made_named = run_program("local", {"renderYamlTo": "", "mysqlStorageClass": "standard"})
    with pytest.raises(SettingsError, match=r"mysqlStorageClass=fast: the set's claims were made in class standard"):
        run_program("local", {"renderYamlTo": "", "mysqlStorageClass": "fast"}, previous_outputs=_record(made_named))
    # Back to empty from a named class: the same claims, accepted.
    run_program("local", {"renderYamlTo": ""}, previous_outputs=_record(made_named))


def test_a_record_of_another_shape_is_refused() -> None:
    with pytest.raises(SettingsError, match="stack output mysqlDeployed is not what this program exports"):
        run_program("staging", previous_outputs={MYSQL_RECORD_OUTPUT: {"engine": "mysql"}})
