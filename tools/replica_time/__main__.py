"""python -m tools.replica_time PLAN.json ...: the new-replica time estimate of each plan `make preview` wrote.

A plan without an aws cluster (the local stack), or whose minion type limits.csv does not list, gets
one line saying so. Exit 2 when a plan or the limits table cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.replica_time.estimate import LIMITS_CSV, LimitsError, estimate, load_limits, report_lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.replica_time", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plans", type=Path, nargs="+", help="plan.json files written by `make preview`")
    parser.add_argument("--limits", type=Path, default=LIMITS_CSV, help="the instance limits table (CSV)")
    args = parser.parse_args(argv)
    try:
        limits = load_limits(args.limits)
        plans = [(path, json.loads(path.read_text())) for path in args.plans]
    except (OSError, ValueError, LimitsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path, plan in plans:
        found = estimate(plan, limits)
        if found is None:
            print(f"Stack {plan.get('stack') or path}: no new-replica estimate (no aws cluster with a listed "
                  "minion type, or no MySQL set)")
        else:
            print("\n".join(report_lines(found)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
