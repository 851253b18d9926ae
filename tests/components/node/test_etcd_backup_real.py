"""etcd backups for real: the masters' own timer command snapshots a live 3-member cluster while a
writer runs, puts the snapshot encrypted into a real S3 API, and a fresh 3-member cluster restored
from it holds every write acknowledged before it.

Real: etcd 3.4 (Debian), three members booted from prod's rendered master user-data with client and
peer mutual TLS (tools/testing/etcd.py); radosgw (Debian's Ceph 16) on a one-node loopback Ceph with
its `testing` KMS backend doing SSE-KMS (tools/testing/s3.py); Debian's python3-boto3 running the
node's atomic-etcd-backup as it is; Debian's AWS CLI fetching the snapshot for the restore; the
node's atomic-etcd, run by bash, restoring every member. Not real: AWS KMS and S3 themselves, IAM,
the bucket policy (radosgw does not enforce it as AWS would), systemd (a stand-in starts etcd).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.node.etcd_backup import BACKUP_ENV, BACKUP_TIMER
from tools.etcd import procedures
from tools.etcd.remote import Backups
from tools.harness.offline import Plan, run_program
from tools.testing import etcd, s3
from tools.testing.etcd import EtcdNodes, Member
from tools.testing.node_root import service_command, service_of_timer

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-boto3: as the node's /usr/bin/python3 has it


@pytest.fixture(scope="module")
def prod_plan() -> Plan:
    return run_program("prod")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, prod_plan: Plan) -> Iterator[s3.Radosgw]:
    """radosgw whose one KMS key is the stack's backup key, by the ARN the masters are given."""
    assert Path(SYSTEM_PYTHON).exists(), "python3 is missing"
    key_arn = _rendered_env(prod_plan)["ATOMIC_BACKUP_KMS_KEY"]
    with s3.radosgw(tmp_path_factory.mktemp("rgw"), region="us-west-2", kms_key_id=key_arn) as gw:
        bucket = _rendered_env(prod_plan)["ATOMIC_BACKUP_BUCKET"]
        gw.aws("s3api", "create-bucket", "--bucket", bucket)
        gw.aws("s3api", "put-bucket-versioning", "--bucket", bucket, "--versioning-configuration", "Status=Enabled")
        yield gw


def _rendered_env(plan: Plan) -> dict[str, str]:
    from tools.testing.node_root import env_values, user_data_files

    master = next(i for i in plan.instances() if i.inputs["tags"]["Role"] == "master")
    return env_values(user_data_files(plan.user_data(master))[BACKUP_ENV][0])


def run_the_timers_command(nodes: EtcdNodes, member: Member, gateway: s3.Radosgw,
                           state: Path) -> subprocess.CompletedProcess[str]:
    """What systemd runs when the master's backup timer fires: the timer's service's ExecStart with its
    EnvironmentFiles, all as the user-data wrote them (relocated); plus only where S3 is and its keys."""
    service = service_of_timer(member.files, BACKUP_TIMER)
    argv, env_files = service_command(member.files, service)
    env = etcd.read_env(member, *env_files)
    state.mkdir(parents=True, exist_ok=True)
    env.update({"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "STATE_DIRECTORY": str(state),
                "ATOMIC_BACKUP_ENDPOINT": gateway.endpoint, **gateway.env()})
    program = member.path(argv[0])
    assert program.read_text().startswith("#!/usr/bin/python3")
    return subprocess.run([SYSTEM_PYTHON, str(program), *argv[1:]], capture_output=True, text=True, timeout=300,
                          env=env)


def test_the_leaders_timer_uploads_an_encrypted_snapshot_that_restores_every_acknowledged_write(
        tmp_path: Path, prod_plan: Plan, gateway: s3.Radosgw) -> None:
    env = _rendered_env(prod_plan)
    bucket, prefix, key_arn = env["ATOMIC_BACKUP_BUCKET"], env["ATOMIC_BACKUP_PREFIX"], env["ATOMIC_BACKUP_KMS_KEY"]
    with etcd.boot("prod", tmp_path / "a", plan=prod_plan) as nodes:
        writer = etcd.Writer(nodes).start()
        writer.wait_for(100)
        before = writer.snapshot()  # acknowledged before any snapshot started: each must be in it
        runs = {m.name: run_the_timers_command(nodes, m, gateway, tmp_path / "state" / m.name)
                for m in nodes.members}
        writer.wait_for(len(before) + 100)  # the writer kept going through the snapshot
        writer.stop()
        for name, done in runs.items():
            assert done.returncode == 0, f"{name}:\n{done.stdout}{done.stderr}"
        uploaded = [name for name, done in runs.items() if "revision" in done.stdout]
        followers = [name for name, done in runs.items() if "does not lead etcd" in done.stdout]
        assert len(uploaded) == 1 and len(followers) == 2, runs
        cluster_a = _cluster_id(nodes)

    listed = gateway.aws("s3api", "list-object-versions", "--bucket", bucket, "--prefix", f"{prefix}/")
    (version,) = listed["Versions"]
    key = version["Key"]
    assert re.fullmatch(rf"{re.escape(prefix)}/\d{{8}}T\d{{6}}Z-{uploaded[0]}\.db", key), key
    head = gateway.aws("s3api", "head-object", "--bucket", bucket, "--key", key)
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key_arn
    assert head["Metadata"]["member"] == uploaded[0] and int(head["Metadata"]["revision"]) > len(before)

    # The tool fetches it as an operator would (AWS CLI), checking the sha256 the node recorded.
    snapshot = tmp_path / "snapshot.db"
    backups = Backups(bucket, prefix, "us-west-2", gateway.endpoint, env=gateway.env())
    fetched = backups.fetch(snapshot)
    assert fetched["key"] == key and fetched["encryption"] == "aws:kms"
    plain = snapshot.read_bytes()
    assert hashlib.sha256(plain).hexdigest() == head["Metadata"]["sha256"]
    # At rest it is ciphertext: RADOS holds no byte run of the snapshot's keys.
    stored = gateway.raw_object(key.rsplit("/", 1)[1])
    assert len(stored) >= len(plain) and stored != plain
    assert b"/atomic/writer/" in plain and b"/atomic/writer/" not in stored

    # A fresh 3-member cluster (new data dirs) restored from it by the tool holds every write before it.
    with etcd.boot("prod", tmp_path / "b", plan=prod_plan, start=False) as fresh:
        transport = etcd.LocalTransport(fresh)
        steps: list[str] = []
        procedures.restore(transport, transport.masters(), snapshot, log=steps.append, timeout=120)
        restored = fresh.get_all(etcd.Writer.prefix)
        missing = sorted(set(before) - set(restored))
        assert not missing, f"{len(missing)} acknowledged writes missing after the restore, e.g. {missing[:5]}"
        assert all(restored[k] == v for k, v in before.items())
        members = procedures.parse_members(fresh.atomic_etcd(fresh.members[0], "members").stdout)
        assert sorted(m.name for m in members) == sorted(m.name for m in fresh.members)
        assert all(m.status == "started" for m in members)
        assert _cluster_id(fresh) != cluster_a, "a restore is a new cluster (its own token)"
        assert any("started the control plane" in s for s in steps)
        for member in fresh.members:
            calls = (member.root / "run" / "systemctl.log").read_text().split("\n")
            assert calls.index("stop kube-apiserver") < calls.index("start kube-apiserver"), member.name


def _cluster_id(nodes: EtcdNodes) -> int:
    return procedures.parse_status(nodes.atomic_etcd(nodes.members[0], "status").stdout)["cluster_id"]


def test_a_key_the_gateway_does_not_know_is_refused(tmp_path: Path, prod_plan: Plan, gateway: s3.Radosgw) -> None:
    """The encryption check above can fail: an upload naming another key gets nothing stored."""
    with etcd.boot("prod", tmp_path, plan=prod_plan) as nodes:
        leader = _leader(nodes)
        kms = leader.path(BACKUP_ENV)
        kms.write_text(kms.read_text().replace('ATOMIC_BACKUP_KMS_KEY="', 'ATOMIC_BACKUP_KMS_KEY="not-'))
        before = gateway.aws("s3api", "list-object-versions", "--bucket", _rendered_env(prod_plan)[
            "ATOMIC_BACKUP_BUCKET"]).get("Versions", [])
        done = run_the_timers_command(nodes, leader, gateway, tmp_path / "state")
        assert done.returncode != 0 and "not-arn:aws:kms" not in done.stdout
        after = gateway.aws("s3api", "list-object-versions", "--bucket", _rendered_env(prod_plan)[
            "ATOMIC_BACKUP_BUCKET"]).get("Versions", [])
        assert len(after) == len(before)
        assert not list((tmp_path / "state").glob("*.db")), "the local snapshot is removed either way"


def _leader(nodes: EtcdNodes) -> Member:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for member in nodes.members:
            status = procedures.parse_status(nodes.atomic_etcd(member, "status").stdout)
            if status["leader"] == status["member_id"]:
                return member
        time.sleep(0.5)
    raise AssertionError("no leader")
