"""The offline preview of every stack: plan.json, Kubernetes objects, node user-data."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components import tokens
from tests.conftest import KUBERNETES_VERSION, STACKS
from tools import preview
from tools.harness.offline import Plan, run_program

OPTION_KEYS = {"protect", "retainOnDelete", "ignoreChanges", "dependsOn", "deleteBeforeReplace"}
RFC1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RFC1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Kinds whose names become DNS labels (Services, Namespaces) or pod host names (StatefulSets).
LABEL_NAMED = {"Namespace", "Service", "StatefulSet"}
# RBAC objects are named by path segment (kube-apiserver's ValidatePathSegmentName): "system:coredns" is valid.
RBAC = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
PATH_SEGMENT = re.compile(r"^(?!\.\.?$)[^/%]+$")


def run_preview(stack: str, out: Path) -> tuple[Plan, dict[str, Any]]:
    plan = preview.preview(stack, out_root=out, quiet=True)
    return plan, json.loads((out / stack / "plan.json").read_text())


def k8s_files(out: Path, stack: str) -> list[Path]:
    return sorted((out / stack / "k8s").glob("*.yaml"))


@pytest.mark.parametrize("stack", STACKS)
def test_plan_lists_every_registered_resource_with_its_options(stack: str, tmp_path: Path) -> None:
    plan, document = run_preview(stack, tmp_path)
    listed = {entry["urn"]: entry for entry in document["resources"]}
    assert set(listed) == {r.urn for r in plan.resources}
    for entry in document["resources"]:
        assert {"urn", "type", "name", "parent", "provider", "inputs", "options"} <= set(entry)
        assert set(entry["options"]) >= OPTION_KEYS, entry["urn"]
        if entry["type"] != tokens.STACK:
            assert entry["parent"] in listed, f"{entry['urn']} has an unknown parent"


@pytest.mark.parametrize("stack", STACKS)
def test_every_kubernetes_object_validates_strictly(stack: str, tmp_path: Path) -> None:
    plan, _ = run_preview(stack, tmp_path)
    files = k8s_files(tmp_path, stack)
    assert len(files) == len(plan.kubernetes_objects()) > 0
    for path in files:
        obj = yaml.safe_load(path.read_text())
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        name = obj["metadata"]["name"]
        pattern = RFC1123_LABEL if obj["kind"] in LABEL_NAMED else PATH_SEGMENT if obj["kind"] in RBAC \
            else RFC1123_SUBDOMAIN
        assert pattern.match(name) and len(name) <= 63, f"{path.name}: {name!r} is not an RFC 1123 name"


@pytest.mark.parametrize("stack", STACKS)
def test_every_kubernetes_resource_uses_the_explicit_provider(stack: str, tmp_path: Path) -> None:
    plan, _ = run_preview(stack, tmp_path)
    providers = {r.urn for r in plan.of_type(tokens.KUBERNETES_PROVIDER)}
    assert len(providers) == 1
    kube = [r for r in plan.resources if r.custom and r.type.startswith("kubernetes:")]
    assert kube
    for r in kube:
        assert r.provider.rsplit("::", 1)[0] in providers, f"{r.name} uses {r.provider or 'the default provider'}"


@pytest.mark.parametrize("stack", [s for s in STACKS if s != "local"])
def test_every_instance_has_its_user_data_file(stack: str, tmp_path: Path) -> None:
    plan, _ = run_preview(stack, tmp_path)
    nodes = sorted(p.name for p in (tmp_path / stack / "nodes").glob("*.yaml"))
    assert len(nodes) == len(plan.instances()) > 0
    for path in (tmp_path / stack / "nodes").glob("*.yaml"):
        assert path.read_text().startswith("#cloud-config"), path.name


def test_secrets_never_reach_plan_or_manifests(tmp_path: Path) -> None:
    password = "correct-horse-battery-staple"
    plan = run_program("local", secret_overrides={"mysqlRootPassword": password})
    preview.write_outputs(plan, tmp_path / "local")
    written = b"".join(p.read_bytes() for p in (tmp_path / "local").rglob("*") if p.is_file())
    assert password.encode() not in written
    assert b"[secret]" in written, "the secret is shown as [secret], not dropped"


def test_preview_prints_tree_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert preview.main(["--stack", "local", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "atomic-mysql:workload:Workload  workload" in out
    assert "Resources per type:" in out
    assert re.search(r"^\s+3\s+kubernetes:apps/v1:Deployment$", out, re.M)
