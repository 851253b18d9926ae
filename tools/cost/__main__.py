"""python -m tools.cost PLAN.json ...: the monthly estimate of each plan `make preview` wrote.

A plan that builds nothing on AWS (the local stack) gets one line saying so. --compare prints
the README's side-by-side table of the plans instead; --region overrides the region read from
the plan. Exit 2 when a plan cannot be priced.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.cost import prices as price_table
from tools.cost.estimate import CostError, compare_table, estimate, is_aws, report_lines
from tools.cost.prices import PriceTableError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plans", type=Path, nargs="+", help="plan.json files written by `make preview`")
    parser.add_argument("--compare", action="store_true", help="print one Markdown table, a column per plan")
    parser.add_argument("--region", help="price in this region instead of the plan's")
    parser.add_argument("--prices", type=Path, default=price_table.PRICES_CSV, help="the price table (CSV)")
    args = parser.parse_args(argv)
    try:
        table = price_table.load(args.prices)
        plans = [(path, json.loads(path.read_text())) for path in args.plans]
        estimates = [estimate(plan, table, args.region) for _, plan in plans if is_aws(plan) or args.compare]
    except (OSError, ValueError, CostError, PriceTableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.compare:
        print(compare_table(estimates))
        return 0
    for path, plan in plans:
        if not is_aws(plan):
            print(f"Stack {plan.get('stack') or path}: builds nothing on AWS, so no estimate.")
    for est in estimates:
        print("\n".join(report_lines(est, table)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
