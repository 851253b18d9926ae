"""`make preview`: the offline preview of one stack.

Runs the exact program under mocks with the config the Pulumi CLI would give it,
prints the resource tree and a count per type, and writes build/<stack>/:
plan.json (every registration with inputs and options), k8s/*.yaml (every
Kubernetes object as it would be applied) and nodes/<node>.yaml (user-data of
every EC2 instance), and the topology picture (topology.svg; topology.png with --png). A
configuration the CLI or the program refuses ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import pulumi
import yaml

from components.settings.rules import one_line, shown
from tools import first_up, topology
from tools.cost import estimate as cost
from tools.cost import prices as cost_prices
from tools.harness.mocks import Registration
from tools.harness.offline import Plan, run_program
from tools.harness.pulumi_project import PROJECT_DIR, StackConfigError
from tools.replica_time import estimate as replica_time

BUILD_DIR = PROJECT_DIR / "build"

# Apply order, as kubectl and Helm sort: what others refer to comes first.
KIND_ORDER = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "CSIDriver",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Deployment",
    "StatefulSet",
    "APIService",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
]


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Block style for multi-line strings (scripts, config files), so the YAML reads like a manifest."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def dump_yaml(data: Any) -> str:
    """A manifest as kubectl would print it: apiVersion, kind, metadata first, then keys in order."""
    head = {k: data[k] for k in ("apiVersion", "kind", "metadata") if k in data}
    rest = {k: v for k, v in data.items() if k not in head}
    ordered = {**_sorted(head), **_sorted(rest)} if head else _sorted(data)
    return yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def _tree_lines(plan: Plan) -> Iterable[str]:
    children: dict[str, list[Registration]] = {}
    for r in sorted(plan.resources, key=lambda r: (r.type, r.name)):
        children.setdefault(r.parent, []).append(r)

    def walk(urn: str, depth: int) -> Iterable[str]:
        for child in children.get(urn, []):
            marker = " [protect]" if child.options["protect"] else ""
            yield f"{'  ' * depth}{child.type}  {child.name}{marker}"
            yield from walk(child.urn, depth + 1)

    yield from walk("", 0)


def _object_filename(obj: dict[str, Any], taken: set[str]) -> str:
    kind = obj.get("kind", "Object")
    order = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    name = obj["metadata"]["name"].replace(":", "-")  # RBAC names: no ':' in artifact file names
    base = f"{order:02d}-{kind.lower()}-{name}"
    filename, n = f"{base}.yaml", 1
    while filename in taken:
        n += 1
        filename = f"{base}-{n}.yaml"
    taken.add(filename)
    return filename


def _node_name(r: Registration) -> str:
    tags = r.inputs.get("tags") or {}
    return re.sub(r"[^A-Za-z0-9_.-]", "-", str(tags.get("Name") or r.name))


def plan_document(plan: Plan) -> dict[str, Any]:
    """What plan.json holds."""
    return {
        "stack": plan.stack,
        # Sorted, since registration order varies from run to run: plan.json diffs stay readable.
        "resources": [r.to_json() for r in sorted(plan.resources, key=lambda r: r.urn)],
        "outputs": {k: v.shown() for k, v in plan.outputs.items()},
    }


def write_outputs(plan: Plan, out_dir: Path, *, with_png: bool = False) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "k8s").mkdir(parents=True)
    (out_dir / "nodes").mkdir()
    # Keys sorted too: inputs arrive as protobuf Structs, whose key order differs between runs.
    (out_dir / "plan.json").write_text(json.dumps(plan_document(plan), indent=2, sort_keys=True) + "\n")
    taken: set[str] = set()
    for obj in sorted(plan.kubernetes_objects(), key=lambda o: (o["kind"], o["metadata"]["name"])):
        (out_dir / "k8s" / _object_filename(obj, taken)).write_text(dump_yaml(obj))
    for instance in plan.instances():
        # The #cloud-config decompressed: what a reviewer reads and cloud-init runs.
        (out_dir / "nodes" / f"{_node_name(instance)}.yaml").write_text(plan.user_data(instance))
    topology.write(plan, out_dir, with_png=with_png)


def print_summary(plan: Plan, out_dir: Path) -> None:
    print(f"Stack {plan.stack}: {len(plan.resources)} resources (offline preview under mocks)\n")
    for line in _tree_lines(plan):
        print(line)
    print("\nResources per type:")
    for type_token, count in sorted(Counter(r.type for r in plan.resources).items()):
        print(f"  {count:4d}  {type_token}")
    if plan.outputs:
        print("\nOutputs:")
        for name, output in plan.outputs.items():
            print(f"  {name}: {json.dumps(output.shown())}")
    print(
        f"\nWrote {out_dir}/plan.json, k8s/ ({len(plan.kubernetes_objects())} objects),"
        f" nodes/ ({len(plan.instances())} user-data files)"
    )
    print_first_up(plan)
    print_cost(plan)
    print_replica_time(plan)


def print_replica_time(plan: Plan) -> None:
    """How long one new MySQL replica of an aws stack takes to copy its data (tools/replica_time)."""
    try:
        found = replica_time.estimate(plan, replica_time.load_limits())
    except replica_time.LimitsError as error:
        print(f"\nNew replica estimate: not available: {error}")
        return
    if found is not None:
        print()
        print("\n".join(replica_time.report_lines(found)))


def print_first_up(plan: Plan) -> None:
    """The first `pulumi up` of a stack that builds its cluster: the critical path (tools/first_up.py)."""
    if not plan.instances():
        return
    print()
    print("\n".join(first_up.estimate(plan_document(plan)).lines()))


def print_cost(plan: Plan) -> None:
    """The monthly estimate of an aws stack (tools/cost, docs/cost.md); a stack without AWS has none."""
    if not cost.is_aws(plan):
        return
    print()
    try:
        table = cost_prices.load()
        print("\n".join(cost.report_lines(cost.estimate(plan, table), table)))
    except (cost.CostError, cost_prices.PriceTableError) as error:
        print(f"Monthly cost estimate: not available: {error}")


def preview(
    stack: str,
    out_root: Path = BUILD_DIR,
    quiet: bool = False,
    overrides: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    config_file: Path | None = None,
    with_png: bool = False,
) -> Plan:
    plan = run_program(stack, overrides, secrets, config_file=config_file)
    out_dir = out_root / stack
    write_outputs(plan, out_dir, with_png=with_png)
    if not quiet:
        print_summary(plan, out_dir)
    return plan


def _batch_gc() -> None:
    """A preview is a short batch run whose object graph only grows: with the default
    thresholds the cyclic collector keeps rescanning the SDKs' long-lived objects, which
    costs about a third of the run and grows with the stack (measured with make bench)."""
    gc.set_threshold(50_000, 20, 20)


def _list_or_text(value: str) -> Any:
    if value.startswith("["):
        with contextlib.suppress(json.JSONDecodeError):
            parsed = json.loads(value)
            if isinstance(parsed, list):
                return parsed
    return value


class _OneLineParser(argparse.ArgumentParser):
    """A bad argument is bad input too: one line on stderr and exit status 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {one_line(message)} (see --help)\n")


def _pairs(parser: argparse.ArgumentParser, flag: str, items: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"{flag} {shown(item)}: expected KEY=VALUE")
        pairs[key] = value
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = _OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", "-s", default="dev", help="stack name (a file stacks/Pulumi.<stack>.yaml)")
    parser.add_argument("--quiet", "-q", action="store_true", help="write the files, print nothing")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting for this run, as `pulumi config set KEY VALUE` would; a JSON list"
        " (adminCidrs='[\"198.51.100.0/24\"]') sets a list, as `pulumi config set --path` would",
    )
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a secret for this run, as `pulumi config set --secret KEY VALUE` would (the offline"
        " preview cannot decrypt a stack file's secure: values, so each one is given here)",
    )
    parser.add_argument("--config-file", type=Path, help="read the stack's settings from this file instead of"
                        " stacks/Pulumi.<stack>.yaml, as `pulumi preview --config-file` does")
    parser.add_argument("--out", type=Path, default=BUILD_DIR, help="output root (default: build/)")
    parser.add_argument("--png", action="store_true",
                        help="also draw build/<stack>/topology.png (make preview does; the SVG is always drawn)")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {k: _list_or_text(v) for k, v in _pairs(parser, "--set", args.set).items()}
    secrets = _pairs(parser, "--secret", args.secret)
    _batch_gc()
    try:
        preview(args.stack, out_root=args.out, quiet=args.quiet, overrides=overrides, secrets=secrets,
                config_file=args.config_file, with_png=args.png)
    except (StackConfigError, pulumi.RunError) as error:
        print(f"error: {one_line(str(error))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
