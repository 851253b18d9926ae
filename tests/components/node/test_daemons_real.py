"""Every rendered daemon command line and daemon config file, read by the real v1.32 binary.

Each node's user-data (as the program gives it to EC2, for every aws stack) is unpacked; the
command line systemd would run for each Kubernetes unit is handed to its binary with --version,
which parses every flag before printing (an unknown flag or a bad value ends it with the binary's
own error). The kubelet is also started on its rendered KubeletConfiguration: it loads and validates
the file, then stops at the client CA, which a test root does not have (so it never reaches the host).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from components.node.worker import KUBELET_IDENTITY, UPSTREAM_RESOLV_CONF
from tests.conftest import STACKS
from tools.harness.offline import Plan, run_program
from tools.testing import kube_binaries
from tools.testing.node_root import Files, Relocation, booted_identity, unit_commands, user_data_files

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

AWS_STACKS = [s for s in STACKS if s != "local"]
# The kubelet got past loading and validating its config file exactly when it fails on this.
KUBELET_AFTER_CONFIG = "failed to construct kubelet dependencies: unable to load client CA file"


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return kube_binaries.find()


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {stack: run_program(stack) for stack in AWS_STACKS}


def node_files(plan: Plan, workdir: Path) -> Iterator[tuple[str, Files]]:
    """(node name, files) of every instance of a plan, with the kubelet identity a minion writes at boot."""
    for instance in plan.instances():
        name = instance.inputs["tags"]["Name"]
        files = user_data_files(plan.user_data(instance))
        if instance.inputs["tags"].get("Role") == "minion":
            files[KUBELET_IDENTITY] = (booted_identity(workdir, name), "0644")
        yield name, files


def _parse(bin_dir: Path, unit: str, argv: list[str]) -> tuple[str, subprocess.CompletedProcess[str]]:
    binary = bin_dir / Path(argv[0]).name
    return unit, subprocess.run([str(binary), *argv[1:], "--version"], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_rendered_command_line_is_parsed_by_its_binary(stack: str, plans: dict[str, Plan], bin_dir: Path,
                                                             tmp_path: Path) -> None:
    jobs = [(name, unit, argv) for name, files in node_files(plans[stack], tmp_path)
            for unit, argv in unit_commands(files).items()]
    assert {unit for _, unit, _ in jobs} == {"kube-apiserver", "kube-controller-manager", "kube-scheduler",
                                             "kubelet", "kube-proxy"}
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: (job[0], *_parse(bin_dir, job[1], job[2])), jobs))
    for name, unit, done in results:
        assert done.returncode == 0, f"{unit} on {name} refused its rendered flags: {done.stderr.strip()[-600:]}"
        assert done.stdout.startswith("Kubernetes v1.32"), done.stdout


def test_the_binary_refuses_a_rendered_line_with_a_wrong_flag(plans: dict[str, Plan], bin_dir: Path,
                                                              tmp_path: Path) -> None:
    """The check above can fail: a removed flag of the seed's era, given to today's kube-proxy."""
    _, files = next(item for item in node_files(plans["dev"], tmp_path) if "minion" in item[0])
    argv = unit_commands(files)["kube-proxy"]
    _, done = _parse(bin_dir, "kube-proxy", [*argv, "--master_port=8080"])
    assert done.returncode != 0 and "unknown flag: --master_port" in done.stderr


def _start_kubelet(bin_dir: Path, files: Files, root: Path, node_ip: str) -> subprocess.CompletedProcess[str]:
    relocation = Relocation(root, {node_ip: "127.0.0.2", "127.0.0.1": "127.0.0.2"}, bin_dir)
    files = {**files, UPSTREAM_RESOLV_CONF: ("nameserver 127.0.0.53\n", "0644")}
    relocation.write({path: entry for path, entry in files.items() if not path.startswith("/etc/kubernetes/pki/")})
    argv = [relocation.text(word) for word in unit_commands(files)["kubelet"]]
    return subprocess.run([*argv, f"--root-dir={root}/var/lib/kubelet"], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_kubelet_loads_and_validates_its_rendered_configuration(stack: str, plans: dict[str, Plan],
                                                                   bin_dir: Path, tmp_path: Path) -> None:
    name, files = next(item for item in node_files(plans[stack], tmp_path) if "minion" in item[0])
    node_ip = next(r for r in plans[stack].instances() if r.inputs["tags"]["Name"] == name).inputs["privateIp"]
    done = _start_kubelet(bin_dir, files, tmp_path / "root", node_ip)
    assert KUBELET_AFTER_CONFIG in done.stderr, done.stderr[-2000:]
    assert "strict decoding" not in done.stderr and "failed to validate kubelet" not in done.stderr


@pytest.mark.parametrize(("change", "message"), [
    ("bogusField: 1\n", 'strict decoding error: unknown field \\"bogusField\\"'),
    ("registryPullQPS: -1\n", "registryPullQPS (--registry-qps) -1 must not be a negative number"),
])
def test_the_kubelet_reports_a_broken_configuration(change: str, message: str, plans: dict[str, Plan],
                                                    bin_dir: Path, tmp_path: Path) -> None:
    """The check above can fail, with the kubelet's own message: an unknown field (which the kubelet
    only logs, then decodes leniently) and a value its validation refuses."""
    name, files = next(item for item in node_files(plans["dev"], tmp_path) if "minion" in item[0])
    content, mode = files["/etc/kubernetes/kubelet.yaml"]
    files["/etc/kubernetes/kubelet.yaml"] = (content + change, mode)
    node_ip = next(r for r in plans["dev"].instances() if r.inputs["tags"]["Name"] == name).inputs["privateIp"]
    done = _start_kubelet(bin_dir, files, tmp_path / "root", node_ip)
    assert message in done.stderr, done.stderr[-2000:]
