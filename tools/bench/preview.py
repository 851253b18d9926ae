"""`make bench`: how long the offline preview takes, against the floor of importing the SDKs.

Each measurement runs in a fresh interpreter (as `make preview` does), so SDK
import time is included. Reported: the median wall time of the preview of dev
and prod and of synthetic large stacks (prod with 30 and 300 minions), the bare
import of pulumi + pulumi_kubernetes + pulumi_aws as the floor, and the two
targets as ratios on this machine:
  - prod preview within 2x the import floor;
  - time per resource flat (within 30%) from the 30-minion to the 300-minion stack.
Time per resource is (preview - used-modules floor) / resources: the fixed cost of
starting Python and importing the SDK modules would otherwise make small stacks look slow.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
IMPORT_FLOOR = "import pulumi, pulumi_kubernetes, pulumi_aws"
# The SDKs load their submodules lazily, so the bare import above costs little; these are the
# submodules the program touches (aws.ec2 alone defines hundreds of resource classes). Importing
# them is a floor no program using these resources can go under.
USED_MODULES_FLOOR = (
    "import pulumi, pulumi_kubernetes as k, pulumi_aws as a, pulumi_tls as t, pulumi_random as r; "
    "a.ec2.Instance, a.iam.Role, a.ssm.Parameter, a.kms.Key, a.vpc.SecurityGroupIngressRule, "
    "k.core.v1.Service, k.apps.v1.StatefulSet, k.policy.v1.PodDisruptionBudget, "
    "k.networking.v1.NetworkPolicy, k.autoscaling.v2.HorizontalPodAutoscaler, t.PrivateKey, r.RandomPassword"
)


@dataclass(frozen=True)
class Case:
    label: str
    stack: str
    overrides: tuple[str, ...] = ()


CASES = (
    Case("dev", "dev"),
    Case("prod", "prod"),
    # A /12 pod range: one /24 per node must fit 300 minions; both sizes use it, to compare like with like.
    Case("prod, 30 minions", "prod", ("minionCount=30", "podCidr=10.128.0.0/12")),
    Case("prod, 300 minions", "prod", ("minionCount=300", "podCidr=10.128.0.0/12")),
)


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=PROJECT_DIR, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def median_seconds(command: list[str], runs: int) -> float:
    _timed(command)  # warm the file cache once; it is not counted
    return statistics.median(_timed(command) for _ in range(runs))


def preview_command(case: Case, out: Path) -> list[str]:
    command = [sys.executable, "-m", "tools.preview", "--stack", case.stack, "--quiet", "--out", str(out)]
    for item in case.overrides:
        command += ["--set", item]
    return command


def resource_count(out: Path, stack: str) -> int:
    return len(json.loads((out / stack / "plan.json").read_text())["resources"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="measured runs per case (median reported)")
    args = parser.parse_args(argv)

    floor = median_seconds([sys.executable, "-c", IMPORT_FLOOR], args.runs)
    used_floor = median_seconds([sys.executable, "-c", USED_MODULES_FLOOR], args.runs)
    print(f"import floor ({IMPORT_FLOOR}): {floor:.2f} s (median of {args.runs})")
    print(f"import of the SDK modules the program uses: {used_floor:.2f} s\n")
    print(f"{'case':<22}{'resources':>10}{'median s':>10}{'ms/resource':>13}{'x floor':>9}")
    per_resource: dict[str, float] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for case in CASES:
            elapsed = median_seconds(preview_command(case, out), args.runs)
            count = resource_count(out, case.stack)
            seconds[case.label], per_resource[case.label] = elapsed, (elapsed - used_floor) / count
            print(
                f"{case.label:<22}{count:>10}{elapsed:>10.2f}{1000 * per_resource[case.label]:>13.2f}"
                f"{elapsed / floor:>9.2f}"
            )

    prod_ratio = seconds["prod"] / floor
    small, large = per_resource["prod, 30 minions"], per_resource["prod, 300 minions"]
    spread = (large - small) / small
    print()
    print(
        f"target 1: prod preview / import floor = {prod_ratio:.2f} (target <= 2.00): "
        f"{'met' if prod_ratio <= 2 else 'MISSED'}"
    )
    print(
        f"target 2: time per resource, 300 vs 30 minions changes by {100 * spread:+.0f}% (target within 30%): "
        f"{'met' if abs(spread) <= 0.30 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
