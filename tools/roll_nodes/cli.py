"""python -m tools.roll_nodes (make roll-nodes): replace a stack's nodes one at a time.

    make roll-nodes STACK=prod                      the plan: which nodes, in which order (changes nothing)
    make roll-nodes STACK=prod ROLE=minion ARGS=--yes
    python -m tools.roll_nodes --stack prod --node atomic-master-2 --ssh-key ~/.ssh/atomic --yes

A plain `pulumi up` never stops or replaces a node: every node keeps the launch inputs it was started
with (ami, instanceType, userDataBase64 are ignoreChanges) and its NodeSpec tag records what the
program says now. This tool rolls the nodes whose tag and launch inputs differ (run `pulumi up`
first), or the ones named (--node), or every node (--all): minions first, then masters, the etcd
leader last. Without --yes it prints the plan. Exit status: 0 done (or the plan printed), 1 the roll
stopped (the message says where, and in what state it left the node), 2 a bad invocation.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from tools.etcd.procedures import EtcdToolError
from tools.etcd.remote import PulumiReplacer, SshTransport, pulumi_json, stack_from_outputs
from tools.roll_nodes import procedure
from tools.roll_nodes.procedure import Node, RollError
from tools.roll_nodes.remote import Kubectl, nodes_from_state

STEPS = {
    "minion": "cordon, drain, replace the instance, wait until Ready on a new boot, uncordon",
    "master": "stop its etcd and control plane, remove the member, replace the instance, add the member, "
              "join, wait until healthy and caught up, wait until the control plane is active",
}


class UsageError(Exception):
    """A bad invocation; str() is the one line shown."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m tools.roll_nodes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="the Pulumi stack")
    parser.add_argument("--role", choices=("master", "minion"), help="only this role's nodes")
    parser.add_argument("--node", action="append", default=[], help="this node (repeatable), stale or not")
    parser.add_argument("--all", action="store_true", help="every node (of --role), stale or not")
    parser.add_argument("--yes", action="store_true", help="really roll; without it the plan is printed")
    parser.add_argument("--from-state-json", type=Path, help="a saved `pulumi stack export` instead")
    parser.add_argument("--from-stack-json", type=Path,
                        help="a saved `pulumi stack output --json --show-secrets` instead")
    parser.add_argument("--region", help="the stack's AWS region (default: the stack's aws:region)")
    parser.add_argument("--ssh-user", default="fedora")
    parser.add_argument("--ssh-key", type=Path, help="the private key of the stack's keyName")
    return parser


def _json_file(path: Path, what: str) -> dict[str, Any]:
    loaded = json.loads(path.read_text())
    if not isinstance(loaded, dict):
        raise UsageError(f"{path}: not a JSON object ({what})")
    return loaded


def targets(args: argparse.Namespace, nodes: Sequence[Node], leader: str | None) -> list[Node]:
    known = {n.name: n for n in nodes}
    unknown = [name for name in args.node if name not in known]
    if unknown:
        raise UsageError(f"--node {unknown[0]}: stack {args.stack} has no such node ({', '.join(known)})")
    if args.node:
        chosen = [known[name] for name in args.node]
        return procedure.order(chosen, args.role, leader, everything=True)
    return procedure.order(nodes, args.role, leader, everything=args.all)


def plan_text(stack: str, nodes: Sequence[Node], chosen: Sequence[Node], leader: str | None) -> str:
    lines = [f"roll-nodes {stack}: {len(chosen)} of {len(nodes)} nodes, one at a time"]
    for k, node in enumerate(chosen, 1):
        lead = " (the etcd leader: last)" if node.name == leader else ""
        lines.append(f"  {k}. {node.role} {node.name} ({node.address}){lead}: {STEPS[node.role]}")
    rest = [n.name for n in nodes if n not in chosen]
    if rest:
        lines.append(f"  left as they are: {', '.join(rest)}")
    if any(n.role == "master" for n in chosen) and leader is None:
        lines.append("  masters by name; the etcd leader moves to the end when the roll starts")
    return "\n".join(lines)


def run(args: argparse.Namespace, out: Any = sys.stdout) -> int:
    if args.node and args.all:
        raise UsageError("--node and --all: name the nodes, or roll them all, not both")
    export = (_json_file(args.from_state_json, "a `pulumi stack export`") if args.from_state_json
              else pulumi_json(["stack", "export"], args.stack))
    nodes = nodes_from_state(export)
    if not args.yes:
        chosen = targets(args, nodes, None)
        print(plan_text(args.stack, nodes, chosen, None), file=out)
        if chosen:
            print(f"dry run, nothing changed: add --yes (make roll-nodes STACK={args.stack} ARGS=--yes) "
                  "to roll them", file=out)
        else:
            print("every node runs what the program says (run `pulumi up` first if you just changed a "
                  "setting; --all rolls them anyway)", file=out)
        return 0
    outputs = (_json_file(args.from_stack_json, "stack outputs") if args.from_stack_json
               else pulumi_json(["stack", "output", "--json", "--show-secrets"], args.stack))
    region = args.region or str(pulumi_json(["config", "get", "aws:region", "--json"], args.stack)["value"])
    stack = stack_from_outputs(args.stack, outputs)
    transport = SshTransport(stack, region, args.ssh_user, args.ssh_key)
    masters = [n for n in nodes if n.role == "master"]
    leader = procedure.leader_of(transport, masters)
    chosen = targets(args, nodes, leader)
    print(plan_text(args.stack, nodes, chosen, leader), file=out)
    kubeconfig = outputs.get("kubeconfig")
    if not isinstance(kubeconfig, str):
        raise UsageError(f"stack {args.stack}: no kubeconfig output")
    kube = Kubectl.from_text(kubeconfig)
    try:
        procedure.roll(kube, transport, PulumiReplacer(stack, transport), nodes, chosen,
                       log=lambda line: print(line, file=out, flush=True))
    finally:
        kube.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(build_parser().parse_args(argv))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (RollError, EtcdToolError) as error:
        print(f"roll-nodes: {error}", file=sys.stderr)
        return 1
