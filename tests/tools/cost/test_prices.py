"""The price table: every price dated and sourced, the regions the stacks use all priced alike."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import STACKS
from tools.cost import prices
from tools.harness.pulumi_project import resolve_stack_config

HEADER = "region,service,item,unit,usd,as_of,source,note\n"
ROW = "us-east-1,ec2,t3.medium,hour,0.0416,2026-12-01,https://aws.amazon.com/ec2/pricing/on-demand/,x\n"


def test_the_table_prices_at_least_the_three_regions_with_the_same_items() -> None:
    table = prices.load()
    assert {"us-east-1", "us-east-2", "us-west-2"} <= set(table.regions())
    items = {region: {(s, i) for r, s, i in table.prices if r == region} for region in table.regions()}
    assert len({frozenset(v) for v in items.values()}) == 1, "every region prices the same items"
    for price in table.prices.values():
        assert price.source.startswith("https://aws.amazon.com/"), price
        assert price.as_of and price.usd > 0, price
    assert table.get("us-east-1", "ec2", "t3.medium") is not None
    assert table.get("us-east-1", "ec2", "t3.medium").usd == Decimal("0.0416")  # type: ignore[union-attr]


@pytest.mark.parametrize("stack", [s for s in STACKS if s != "local"])
def test_every_aws_stack_region_has_prices(stack: str) -> None:
    region = resolve_stack_config(stack).values["aws:region"]
    assert region in prices.load().regions()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (ROW.replace("0.0416", "-1"), "negative"),
        (ROW.replace("0.0416", "cheap"), "not a number"),
        (ROW.replace("https://aws.amazon.com/ec2/pricing/on-demand/", "aws.amazon.com"), "source must be"),
        (ROW.replace("2026-12-01", "Dec"), "as_of"),
        (ROW + ROW, "listed twice"),
    ],
)
def test_a_malformed_row_is_refused_naming_it(row: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(prices.PriceTableError, match=message):
        prices.parse("# comment\n" + HEADER + row, tmp_path / "p.csv")


def test_a_wrong_header_is_refused() -> None:
    with pytest.raises(prices.PriceTableError, match="header must be"):
        prices.parse("region,item,usd\nus-east-1,x,1\n")
