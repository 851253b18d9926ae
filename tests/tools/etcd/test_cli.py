"""python -m tools.etcd without a cluster: what it would run (ssh, aws, pulumi), what it reads from a
stack, and the invocations it refuses. The procedures themselves run against real etcd in
test_procedures_real.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components import tokens
from components.node.formats import shipped
from tools.etcd import cli, procedures
from tools.etcd.procedures import EtcdToolError, Master
from tools.etcd.remote import NODE_PROGRAM, Backups, PulumiReplacer, SshTransport, instance_urn, stack_from_outputs
from tools.harness.offline import run_program

OUTPUTS = {"masterNames": ["atomic-master-1", "atomic-master-2", "atomic-master-3"],
           "masterPrivateIps": ["10.40.16.10", "10.40.20.10", "10.40.24.10"],
           "instanceConnectEndpointId": "eice-0123456789abcdef0", "etcdBackupBucket": "b-1234567",
           "etcdBackupPrefix": "atomic-mysql/prod/atomic/etcd"}


class Recorder:
    """A subprocess.run stand-in: keeps each command and what it was given, answers `reply`."""

    def __init__(self, reply: Any = None) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []
        self.reply = reply or (lambda argv, kwargs: subprocess.CompletedProcess(argv, 0, "", ""))

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        self.calls.append((argv, kwargs))
        result: subprocess.CompletedProcess[Any] = self.reply(argv, kwargs)
        return result


def test_the_instance_urn_is_the_one_the_program_registers() -> None:
    plan = run_program("prod")
    urns = {r.urn for r in plan.instances()}
    for name in OUTPUTS["masterNames"]:
        assert instance_urn("prod", name) in urns
    assert instance_urn("prod", "atomic-master-1").count(tokens.ATOMIC_CLUSTER) == 1


def test_the_stack_outputs_the_tool_needs_are_exported() -> None:
    outputs = {k: v.value for k, v in run_program("prod").outputs.items()}
    stack = stack_from_outputs("prod", outputs)
    assert [m.name for m in stack.masters] == OUTPUTS["masterNames"]
    assert [m.address for m in stack.masters] == OUTPUTS["masterPrivateIps"]
    assert stack.connect_endpoint and stack.connect_endpoint.startswith("eice-")
    assert stack.backup_bucket and stack.backup_prefix == "atomic-mysql/prod/atomic/etcd"


def test_ssh_goes_through_the_connect_endpoint_and_ships_the_node_program_on_stdin() -> None:
    recorder = Recorder()
    transport = SshTransport(stack_from_outputs("prod", OUTPUTS), "us-west-2", identity=Path("/k"), runner=recorder)
    transport.run(Master("atomic-master-2", "10.40.20.10"), ["remove", "https://10.40.16.10:2380"])
    (argv, kwargs), = recorder.calls
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    assert proxy == ("ProxyCommand=aws ec2-instance-connect open-tunnel --region us-west-2 "
                     "--instance-connect-endpoint-id eice-0123456789abcdef0 --private-ip-address %h --remote-port %p")
    assert "fedora@10.40.20.10" in argv and argv[argv.index("-i"):argv.index("-i") + 2] == ["-i", "/k"]
    assert argv[-6:] == ["sudo", "bash", "-s", "--", "remove", "https://10.40.16.10:2380"]
    assert kwargs["input"] == shipped(NODE_PROGRAM), "the tool's own copy of atomic-etcd runs, always"
    assert "StrictHostKeyChecking=accept-new" in argv and any(a.startswith("UserKnownHostsFile=") for a in argv)


def test_a_failed_remote_step_is_an_error_naming_the_master() -> None:
    recorder = Recorder(lambda argv, kwargs: subprocess.CompletedProcess(argv, 1, "", "atomic-etcd: no member"))
    transport = SshTransport(stack_from_outputs("prod", OUTPUTS), "us-west-2", runner=recorder)
    with pytest.raises(EtcdToolError, match="atomic-etcd remove x on atomic-master-1 exited 1: atomic-etcd: no"):
        transport.run(Master("atomic-master-1", "10.40.16.10"), ["remove", "x"])
    assert transport.run(Master("atomic-master-1", "10.40.16.10"), ["health"], check=False).returncode == 1


def test_replacing_an_instance_unprotects_then_replaces_only_it_and_what_depends_on_it() -> None:
    stack = stack_from_outputs("prod", OUTPUTS)
    replacer = PulumiReplacer(stack, SshTransport(stack, "us-west-2"))
    unprotect, up = replacer.commands(stack.masters[1])
    urn = instance_urn("prod", "atomic-master-2")
    assert unprotect[:4] == ["pulumi", "state", "unprotect", urn]
    assert up[:2] == ["pulumi", "up"] and up[up.index("--replace") + 1] == urn and up[up.index("--target") + 1] == urn
    assert "--target-dependents" in up and up[-2:] == ["--stack", "prod"]


def test_a_fetched_snapshot_whose_sha256_does_not_match_is_refused_and_removed(tmp_path: Path) -> None:
    def reply(argv: list[str], kwargs: Any) -> subprocess.CompletedProcess[str]:
        if "get-object" in argv:
            Path(argv[-1]).write_bytes(b"not the snapshot")
            return subprocess.CompletedProcess(argv, 0, json.dumps({"Metadata": {"sha256": "0" * 64}}), "")
        return subprocess.CompletedProcess(argv, 0, json.dumps({"Contents": [{"Key": "p/20260101T000000Z-m.db"}]}), "")

    backups = Backups("b", "p", "us-west-2", runner=Recorder(reply))
    out = tmp_path / "s.db"
    with pytest.raises(EtcdToolError, match=r"sha256 .* is not the 0{64} it was uploaded with"):
        backups.fetch(out)
    assert not out.exists()


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["restore", "--stack", "prod", "--snapshot", "s.db", "--region", "us-west-2"], 2, "add --yes"),
    (["replace-member", "--stack", "prod", "--member", "atomic-master-9", "--yes", "--region", "us-west-2"], 1,
     "atomic-master-9 is not a master of stack prod"),
    (["status", "--stack", "prod"], 2, "--region is needed with --from-stack-json"),
    (["frobnicate", "--stack", "prod"], 2, "invalid choice"),
])
def test_bad_invocations_are_one_line_and_their_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            argv: list[str], code: int, message: str) -> None:
    saved = tmp_path / "outputs.json"
    saved.write_text(json.dumps(OUTPUTS))
    assert cli.main([*argv, "--from-stack-json", str(saved)]) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_stack_outputs_of_an_older_stack_are_a_clear_error() -> None:
    with pytest.raises(EtcdToolError, match="its outputs need masterNames and masterPrivateIps"):
        stack_from_outputs("old", {"masterPrivateIps": ["10.0.1.10"]})


def test_the_parsers_read_etcdctl_and_refuse_what_they_do_not_understand() -> None:
    members = procedures.parse_members(
        "8e9e05c52164694d, started, atomic-master-1, https://10.0.1.10:2380, https://10.0.1.10:2379, false\n"
        "91bc3c398fb3c146, unstarted, , https://10.0.1.11:2380, , false\n")
    assert [(m.status, m.name, m.peer_urls) for m in members] == [
        ("started", "atomic-master-1", ("https://10.0.1.10:2380",)), ("unstarted", "", ("https://10.0.1.11:2380",))]
    with pytest.raises(EtcdToolError, match="unexpected member list line"):
        procedures.parse_members("Error: context deadline exceeded\n")
    health = procedures.parse_health("https://10.0.1.10:2379 is healthy: successfully committed proposal: took = 2ms\n"
                                     "https://10.0.1.11:2379 is unhealthy: failed to commit proposal\n")
    assert health == {"https://10.0.1.10:2379": True, "https://10.0.1.11:2379": False}
    status = procedures.parse_status(json.dumps([{"Endpoint": "x", "Status": {
        "header": {"cluster_id": 1, "member_id": 18391567119676996245, "revision": 7}, "leader": 2,
        "raftIndex": 9}}]))
    assert status == {"raft_index": 9, "leader": 2, "member_id": 18391567119676996245, "revision": 7, "cluster_id": 1}
