"""The monthly estimate: what each stack's plan creates, priced from the table, in exact decimals."""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from components import tokens
from tests.conftest import PROJECT_DIR, STACKS
from tools import preview
from tools.cost import estimate as cost
from tools.cost import prices as price_table
from tools.harness.offline import run_program
from tools.harness.pulumi_project import resolve_stack_config

AWS_STACKS = [s for s in STACKS if s != "local"]
HOURS = Decimal(730)
TABLE = price_table.load()


def plan_of(built: Path, stack: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((built / stack / "plan.json").read_text())
    return document


def usd(region: str, service: str, item: str) -> Decimal:
    price = TABLE.get(region, service, item)
    assert price is not None, (region, service, item)
    return price.usd


def test_dev_is_three_t3_medium_their_disks_the_mysql_volumes_three_addresses_and_two_keys(
    previewed_stacks: Path,
) -> None:
    """Worked out by hand from the stack file: 1 master + 2 minions (t3.medium, 30 GiB gp3 roots),
    mysql 3 x 5Gi gp3, the API Elastic IP on master-1 (which replaces its own address) and two
    minion addresses, the PKI key and the etcd backups' key; 33 standard SSM parameters (the encryption
    config among them) are free, the backup bucket is billed by use only."""
    est = cost.estimate(plan_of(previewed_stacks, "dev"), TABLE)
    r = "us-east-1"
    expected = (
        3 * HOURS * usd(r, "ec2", "t3.medium")
        + (3 * 30 + 3 * 5) * usd(r, "ebs", "gp3-storage")
        + 3 * HOURS * usd(r, "vpc", "public-ipv4")
        + 2 * usd(r, "kms", "customer-managed-key")
    )
    assert (est.region, est.total) == (r, expected)
    assert est.unpriced == ()
    assert cost.money(est.total) == "$112.45"
    assert est.usage_only == ("S3 bucket cluster-etcd-backups-bucket: storage and requests only",)
    assert est.free == ("33 SSM parameters, standard tier: no charge",)
    assert [i.describe() for i in est.largest()] == [
        "3 x t3.medium (1 master, 2 minions)",
        "3 x public IPv4 (1 Elastic IP, 2 minions)",
        "3 x 30 GiB gp3",
    ]


def test_prod_counts_both_load_balancers_their_addresses_and_five_100gi_volumes(previewed_stacks: Path) -> None:
    est = cost.estimate(plan_of(previewed_stacks, "prod"), TABLE)
    r = "us-west-2"
    by_category = est.by_category()
    assert by_category["Load balancers"] == 2 * HOURS * usd(r, "elb", "network-lb")
    # private nodes: no instance address; an Elastic IP per NAT gateway + one address per NLB per zone
    assert by_category["Public IPv4"] == (3 + 2 * 3) * HOURS * usd(r, "vpc", "public-ipv4")
    assert by_category["NAT gateways"] == 3 * HOURS * usd(r, "vpc", "nat-gateway")
    claims = [c for c in est.charges if c.category == "EBS data volumes (PVCs)"]
    storage = [c for c in claims if c.price.item == "gp3-storage"]
    assert sorted(c.resource for c in storage) == [f"data-mysql-{n}" for n in range(5)]
    assert {c.quantity for c in storage} == {Decimal(100)}
    # prod's data class provisions 600 MiB/s (fast clones): 475 above the 125 included, per volume.
    throughput = [c for c in claims if c.price.item == "gp3-throughput"]
    assert sorted(c.resource for c in throughput) == [f"data-mysql-{n}" for n in range(5)]
    assert {c.quantity for c in throughput} == {Decimal(475)}
    assert by_category["EC2 instances"] == HOURS * (6 * usd(r, "ec2", "m6i.xlarge") + 3 * usd(r, "ec2", "m6i.large"))
    assert est.absent == ("advanced SSM parameters",) and est.unpriced == ()


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_aws_stack_is_priced_completely_in_its_own_region(previewed_stacks: Path, stack: str) -> None:
    plan = plan_of(previewed_stacks, stack)
    assert cost.region_of(plan) == resolve_stack_config(stack).values["aws:region"]
    est = cost.estimate(plan, TABLE)
    assert est.unpriced == () and est.total > 0
    assert sum((i.monthly for i in est.items()), Decimal(0)) == est.total
    assert len(est.largest()) == 3


def test_doubling_the_minions_adds_exactly_the_minions_share(previewed_stacks: Path) -> None:
    base = cost.estimate(plan_of(previewed_stacks, "dev"), TABLE)
    doubled = cost.estimate(run_program("dev", {"minionCount": 4}), TABLE)
    share = base.share(lambda c: c.role == "minion")
    r = "us-east-1"
    per_minion = HOURS * usd(r, "ec2", "t3.medium") + 30 * usd(r, "ebs", "gp3-storage") + HOURS * usd(
        r, "vpc", "public-ipv4")
    assert share == 2 * per_minion
    assert doubled.total - base.total == share
    assert doubled.share(lambda c: c.role == "minion") == 2 * share
    assert doubled.share(lambda c: c.role != "minion") == base.share(lambda c: c.role != "minion")


def test_provisioned_iops_and_throughput_above_gp3s_included_are_charged(previewed_stacks: Path) -> None:
    plan = copy.deepcopy(plan_of(previewed_stacks, "prod"))
    (storage_class,) = [e for e in plan["resources"] if e["inputs"].get("kind") == "StorageClass"
                        and e["inputs"]["metadata"]["name"] == "gp3-mysql"]
    assert storage_class["inputs"]["parameters"]["throughput"] == "600"  # the stack's
    storage_class["inputs"]["parameters"].update(iops="6000", throughput="250")
    instance = next(e for e in plan["resources"] if e["type"] == tokens.INSTANCE)
    instance["inputs"]["rootBlockDevice"].update(iops=4000, throughput=125)
    before = cost.estimate(plan_of(previewed_stacks, "prod"), TABLE)
    after = cost.estimate(plan, TABLE)
    r = "us-west-2"
    extra = 5 * (3000 * usd(r, "ebs", "gp3-iops") + (250 - 600) * usd(r, "ebs", "gp3-throughput")) + 1000 * usd(
        r, "ebs", "gp3-iops")
    assert after.total - before.total == extra
    assert any(i.line == "100 GiB gp3, 6000 IOPS, 250 MB/s (StatefulSet mysql)" for i in after.items())


def entry(type_token: str, name: str, inputs: dict[str, Any], id_: str | None = None) -> dict[str, Any]:
    return {"type": type_token, "name": name, "id": id_ or name, "urn": f"urn:{name}", "inputs": inputs,
            "options": {}}


def test_nat_gateways_unattached_elastic_ips_advanced_parameters_and_buckets() -> None:
    """Resource kinds no stack has today, priced when a change adds them."""
    plan = {"stack": "synthetic", "resources": [
        entry(tokens.SUBNET, "subnet", {"availabilityZone": "us-east-2b"}),
        entry(cost.NAT_GATEWAY, "nat", {"allocationId": "eipalloc-1"}),
        entry(tokens.EIP, "nat-eip", {"domain": "vpc"}),
        entry(tokens.SSM_PARAMETER, "big", {"tier": "Advanced"}),
        entry(tokens.SSM_PARAMETER, "small", {}),
        entry("aws:s3/bucket:Bucket", "backups", {}),
        entry(tokens.EBS_VOLUME, "extra", {"size": 50, "type": "gp2"}),
        entry(tokens.LOAD_BALANCER, "internal-alb", {"internal": True, "subnets": ["a", "b"]}),
    ]}
    est = cost.estimate(plan, TABLE)
    r = "us-east-2"
    assert est.region == r
    assert est.by_category() == {
        "NAT gateways": HOURS * usd(r, "vpc", "nat-gateway"),
        "Public IPv4": HOURS * usd(r, "vpc", "public-ipv4"),  # the NAT's Elastic IP; the ALB is internal
        "SSM parameters": usd(r, "ssm", "advanced-parameter"),
        "EBS volumes": 50 * usd(r, "ebs", "gp2-storage"),
        "Load balancers": HOURS * usd(r, "elb", "application-lb"),
    }
    assert est.usage_only == ("S3 bucket backups: storage and requests only",)
    assert est.free == ("1 SSM parameters, standard tier: no charge",)


def test_what_has_no_price_is_named_and_left_out_of_the_total(previewed_stacks: Path) -> None:
    plan = copy.deepcopy(plan_of(previewed_stacks, "dev"))
    minion = next(e for e in plan["resources"] if e["type"] == tokens.INSTANCE and "minion-1" in e["name"])
    minion["inputs"]["instanceType"] = "x2iedn.metal"
    est = cost.estimate(plan, TABLE)
    base = cost.estimate(plan_of(previewed_stacks, "dev"), TABLE)
    assert est.unpriced == ("atomic-minion-1: no ec2 price for x2iedn.metal in us-east-1",)
    assert base.total - est.total == HOURS * usd("us-east-1", "ec2", "t3.medium")
    report = "\n".join(cost.report_lines(est, TABLE))
    assert "NOT PRICED" in report and "x2iedn.metal" in report


def test_a_region_without_prices_is_one_clear_error(previewed_stacks: Path) -> None:
    with pytest.raises(cost.CostError, match=r"no prices for region eu-west-1 .*has us-east-1"):
        cost.estimate(plan_of(previewed_stacks, "dev"), TABLE, region="eu-west-1")


@pytest.mark.parametrize(("quantity", "expected"), [("5Gi", 5), ("100Gi", 100), ("100G", 94), ("1500Mi", 2),
                                                    ("1Ti", 1024), ("0.5Gi", 1), ("1", 1)])
def test_claim_sizes_round_up_to_whole_gib(quantity: str, expected: int) -> None:
    assert cost.gib(quantity) == expected


def test_a_malformed_claim_size_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        cost.gib("ten gigs")


def test_make_preview_prints_the_estimate_for_aws_stacks_only(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert preview.main(["--stack", "dev", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Monthly cost estimate, stack dev (us-east-1" in out
    assert re.search(r"^  total\s+\$112\.45$", out, re.M)
    assert re.search(r"^  largest: 1\. EC2 instances", out, re.M) and re.search(r"^\s+3\. ", out, re.M)
    assert "not AWS resources in the plan" in out, "the output says how the data volumes are counted"
    assert preview.main(["--stack", "local", "--out", str(tmp_path)]) == 0
    assert "cost estimate" not in capsys.readouterr().out


def test_cli_prices_plan_files_and_prints_the_readme_table(previewed_stacks: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from tools.cost.__main__ import main

    paths = [str(previewed_stacks / s / "plan.json") for s in ("dev", "prod")]
    assert main(paths) == 0
    assert capsys.readouterr().out.count("Monthly cost estimate") == 2
    assert main(["--compare", *paths]) == 0
    assert capsys.readouterr().out.startswith("| | `dev` (us-east-1) | `prod` (us-west-2) |")
    assert main([str(previewed_stacks / "local" / "plan.json")]) == 0
    assert capsys.readouterr().out == "Stack local: builds nothing on AWS, so no estimate.\n"
    assert main(["--compare", str(previewed_stacks / "local" / "plan.json")]) == 2
    assert main([str(previewed_stacks / "dev" / "plan.json"), "--region", "eu-west-1"]) == 2


def test_readme_shows_dev_and_prod_side_by_side(previewed_stacks: Path) -> None:
    """Regenerate with: make preview-all && python -m tools.cost --compare build/dev/plan.json build/prod/plan.json"""
    readme = (PROJECT_DIR / "README.md").read_text()
    table = cost.compare_table([cost.estimate(plan_of(previewed_stacks, s), TABLE) for s in ("dev", "prod")])
    assert table in readme
    staging = cost.estimate(plan_of(previewed_stacks, "staging"), TABLE)
    assert f"`staging` (us-east-2): {cost.money(staging.total)}." in readme
