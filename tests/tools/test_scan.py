"""`make scan`: checkov (its own venv) over every stack's rendered objects, with a short reasoned skip list.

checkov is installed on first use; if it cannot be, these tests fail (a scan that did not run
must never read as a clean one).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import STACKS
from tools import scan

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

PRIVILEGED_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "bad", "namespace": "atomic-mysql"},
    "spec": {"containers": [{"name": "bad", "image": "mysql:8.4.6", "securityContext": {"privileged": True}}]},
}


@pytest.fixture(scope="module")
def checkov() -> Path:
    return scan.ensure_venv(scan.CHECKOV_VENV, scan.CHECKOV_REQUIREMENTS, "checkov")


@pytest.fixture(scope="module")
def build(previewed_stacks: Path) -> Path:
    return previewed_stacks


def test_scan_passes_on_every_stack(build: Path, checkov: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = scan.main(["--build", str(build), "--no-preview"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    for stack in STACKS:
        line = next(line for line in printed.splitlines() if line.startswith(f"{stack}: "))
        passed = int(line.split()[1])
        # Not vacuous: checkov really ran its checks over this stack's objects.
        assert passed > 100, line
        assert " 0 failed" in line, line


def test_scan_fails_on_a_finding_the_skip_list_does_not_cover(tmp_path: Path, checkov: Path) -> None:
    (tmp_path / "bad" / "k8s").mkdir(parents=True)
    (tmp_path / "bad" / "k8s" / "pod.yaml").write_text(yaml.safe_dump(PRIVILEGED_POD))
    report = scan.scan(["bad"], tmp_path, checkov, scan.load_skips())
    assert not report.ok
    assert "CKV_K8S_16" in {f.check for f in report.unskipped}  # a privileged container
    assert any(line.startswith("FAILED bad: CKV_K8S_16 Pod.atomic-mysql.bad") for line in report.lines())


def test_a_skip_that_matches_nothing_fails_the_scan() -> None:
    skip = scan.Skip("CKV_K8S_1", "a reason that is long enough to be read")
    finding = scan.Finding("dev", "CKV_K8S_2", "x", "Pod.ns.a", "a.yaml")
    report = scan.apply_skips([scan.StackResult("dev", 100, [finding])], [skip])
    assert report.stale == [skip] and report.unskipped == [finding] and not report.ok
    assert "STALE SKIP CKV_K8S_1 ['*']: it matched no finding; remove it" in report.lines()


def test_skips_are_scoped_by_resource_and_stack() -> None:
    skip = scan.Skip("CKV_K8S_23", "a reason that is long enough to be read", ("Deployment.*.frontend",), ("dev",))
    assert skip.matches(scan.Finding("dev", "CKV_K8S_23", "", "Deployment.atomic-mysql.frontend", ""))
    assert not skip.matches(scan.Finding("dev", "CKV_K8S_23", "", "StatefulSet.atomic-mysql.mysql", ""))
    assert not skip.matches(scan.Finding("prod", "CKV_K8S_23", "", "Deployment.atomic-mysql.frontend", ""))
    assert not skip.matches(scan.Finding("dev", "CKV_K8S_22", "", "Deployment.atomic-mysql.frontend", ""))


def test_the_skip_list_is_short_and_reasoned() -> None:
    skips = scan.load_skips()
    # Our own manifests keep a short list; the cluster add-ons in kube-system (a privileged storage
    # driver above all) carry theirs, each named by resource.
    addons = [s for s in skips if all(".kube-system." in r for r in s.resources)]
    assert 0 < len(skips) - len(addons) <= 6
    assert len(addons) <= 10
    assert len({(s.check, s.resources, s.stacks) for s in skips}) == len(skips)
    # Whole-check skips are for what no manifest of ours can satisfy; the rest name their resources.
    assert {s.check for s in skips if s.resources == ("*",)} <= {"CKV_K8S_43", "CKV_K8S_15"}


@pytest.mark.parametrize(
    "entry",
    [
        {"check": "CKV_K8S_43"},
        {"check": "CKV_K8S_43", "reason": "too short"},
        {"check": "CKV_AWS_1", "reason": "a reason that is long enough to be read"},
        {"check": "CKV_K8S_43", "reason": "a reason that is long enough to be read", "resource": ["x"]},
    ],
)
def test_a_malformed_skip_list_stops_the_scan(tmp_path: Path, entry: dict[str, object]) -> None:
    path = tmp_path / "skips.yaml"
    path.write_text(yaml.safe_dump({"skips": [entry]}))
    with pytest.raises(scan.ScanError):
        scan.load_skips(path)


def test_a_tool_that_cannot_be_installed_is_an_error(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("this is not a requirement!\n")  # pip rejects it before any download
    with pytest.raises(scan.ScanError, match="cannot install"):
        scan.ensure_venv(tmp_path / "venv", requirements, "checkov")
