"""The new-replica time estimate: from the plan's own numbers, against the limits table, every stage
shown to be the one that binds when it is the slowest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import STACKS
from tools import preview
from tools.harness.offline import run_program
from tools.replica_time import estimate as replica_time
from tools.replica_time.__main__ import main as replica_time_main

LIMITS = replica_time.load_limits()
AWS_STACKS = [s for s in STACKS if s != "local"]
MIB_PER_GBPS = 1e9 / 8 / 2**20


def plan_of(built: Path, stack: str) -> dict[str, object]:
    document: dict[str, object] = json.loads((built / stack / "plan.json").read_text())
    return document


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_aws_stack_gets_an_estimate_and_the_local_one_none(previewed_stacks: Path, stack: str) -> None:
    est = replica_time.estimate(plan_of(previewed_stacks, stack), LIMITS)
    assert est is not None and est.storage_class == "gp3-mysql"
    assert est.seconds(True) <= est.seconds(False)
    assert replica_time.estimate(plan_of(previewed_stacks, "local"), LIMITS) is None


def test_prod_is_bound_by_the_single_flow_bursting_and_by_ebs_at_baseline(previewed_stacks: Path) -> None:
    est = replica_time.estimate(plan_of(previewed_stacks, "prod"), LIMITS)
    assert est is not None
    assert (est.size_gib, est.instance_type) == (100, "m6i.xlarge")
    stages = {s.name: s for s in est.stages}
    assert stages["volume (gp3-mysql: 600 MiB/s)"].burst_mibs == 600  # prod's mysqlVolumeThroughput
    ebs = stages["EBS bandwidth of m6i.xlarge"]
    assert (ebs.burst_mibs, ebs.baseline_mibs) == (pytest.approx(10 * MIB_PER_GBPS), pytest.approx(1.25 * MIB_PER_GBPS))
    assert est.slowest(True).name == "one TCP flow (5 Gbps)"
    assert est.seconds(True) == pytest.approx(100 * 1024 / (5 * MIB_PER_GBPS))
    assert est.slowest(False) is ebs
    assert est.seconds(False) == pytest.approx(100 * 1024 / (1.25 * MIB_PER_GBPS))
    cpu = stages["CPU of clone-mysql (2)"]  # mysqlCloneCpuLimit
    assert cpu.burst_mibs == pytest.approx(2 * 1024 / replica_time.CPU_SECONDS_PER_GIB["receive"])


@pytest.mark.parametrize(("overrides", "slowest"), [
    ({}, "volume (gp3-mysql: 125 MiB/s)"),  # dev: gp3's baseline binds first
    ({"mysqlVolumeThroughput": 600}, "EBS bandwidth of t3.medium"),  # then the t3.medium's EBS burst
    ({"mysqlVolumeThroughput": 600, "minionInstanceType": "m6i.large"}, "one TCP flow (5 Gbps)"),
    ({"mysqlVolumeThroughput": 600, "mysqlCloneCpuRequest": "100m", "mysqlCloneCpuLimit": "100m"},
     "CPU of clone-mysql (0.1)"),
    ({"mysqlVolumeThroughput": 600, "mysqlSidecarCpuRequest": "50m", "mysqlSidecarCpuLimit": "50m"},
     "CPU of the sidecar (0.05)"),
])
def test_whichever_stage_is_slowest_sets_the_time(overrides: dict[str, object], slowest: str) -> None:
    est = replica_time.estimate(run_program("dev", overrides), LIMITS)
    assert est is not None
    assert est.slowest(True).name == slowest
    rate = est.slowest(True).burst_mibs
    assert est.seconds(True) == pytest.approx(est.size_gib * 1024 / rate)
    assert rate == min(s.burst_mibs for s in est.stages)


def test_an_instance_type_the_table_does_not_list_gets_no_guess() -> None:
    assert "c7g.large" not in LIMITS
    assert replica_time.estimate(run_program("dev", {"minionInstanceType": "c7g.large"}), LIMITS) is None


def test_every_row_names_its_aws_source_and_date() -> None:
    assert {"t3.medium", "t3.large", "m6i.large", "m6i.xlarge"} <= set(LIMITS)  # the stacks' types
    for row in LIMITS.values():
        assert row.source.startswith("https://docs.aws.amazon.com/") and len(row.as_of) == 10


@pytest.mark.parametrize(("row", "error"), [
    ("m6i.xlarge,4,1250,10000,1.562,12.5,2026-12-01,https://docs.aws.amazon.com/x,\n"
     "m6i.xlarge,4,1250,10000,1.562,12.5,2026-12-01,https://docs.aws.amazon.com/x,", "listed twice"),
    ("m6i.xlarge,4,20000,10000,1.562,12.5,2026-12-01,https://docs.aws.amazon.com/x,", "at most its burst"),
    ("m6i.xlarge,four,1250,10000,1.562,12.5,2026-12-01,https://docs.aws.amazon.com/x,", "must be numbers"),
    ("m6i.xlarge,4,1250,10000,1.562,12.5,2026-12-01,https://example.com/x,", "AWS documentation URL"),
    ("m6i.xlarge,4,1250,10000,1.562,12.5,someday,https://docs.aws.amazon.com/x,", "as_of a date"),
])
def test_a_malformed_limits_table_is_refused_naming_the_row(tmp_path: Path, row: str, error: str) -> None:
    path = tmp_path / "limits.csv"
    path.write_text("# comment\n" + ",".join(replica_time.COLUMNS) + "\n" + row + "\n")
    with pytest.raises(replica_time.LimitsError, match=error):
        replica_time.load_limits(path)


def test_make_preview_prints_it_beside_the_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert preview.main(["--stack", "prod", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    cost_at, replica_at = out.index("Monthly cost estimate, stack prod"), out.index("New replica, stack prod:")
    assert cost_at < replica_at
    assert "copying a full 100 GiB volume takes about 2.9 min with the instances bursting" in out
    assert preview.main(["--stack", "local", "--out", str(tmp_path)]) == 0
    assert "New replica" not in capsys.readouterr().out  # no aws cluster, no estimate


def test_the_command_line_reads_saved_plans(previewed_stacks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert replica_time_main([str(previewed_stacks / s / "plan.json") for s in ("dev", "local")]) == 0
    out = capsys.readouterr().out
    assert "New replica, stack dev:" in out and "Stack local: no new-replica estimate" in out
    assert replica_time_main([str(previewed_stacks / "missing.json")]) == 2
