"""python -m tools.etcd: etcd backups, restore and member replacement for a deployed stack.

    python -m tools.etcd status         --stack prod
    python -m tools.etcd backups        --stack prod
    python -m tools.etcd fetch          --stack prod [--key KEY] --out snapshot.db
    python -m tools.etcd snapshot       --stack prod --out snapshot.db
    python -m tools.etcd restore        --stack prod --snapshot snapshot.db --yes
    python -m tools.etcd replace-member --stack prod --member atomic-master-2 --yes

The stack's masters, endpoint and bucket come from `pulumi stack output` (or --from-stack-json FILE, a
saved `pulumi stack output --json`); SSH goes through its EC2 Instance Connect Endpoint as --ssh-user
with --ssh-key. docs/cluster.md has every procedure step by step. Exit status: 0 done, 1 the
procedure stopped (the message says where, and what state it left), 2 a bad invocation.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from tools.etcd import procedures
from tools.etcd.procedures import EtcdToolError
from tools.etcd.remote import Backups, PulumiReplacer, SshTransport, Stack, pulumi_json, stack_from_outputs


class UsageError(Exception):
    """A bad invocation; str() is the one line shown."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m tools.etcd", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--stack", required=True, help="the Pulumi stack (its outputs say where everything is)")
        sub.add_argument("--from-stack-json", type=Path, help="a saved `pulumi stack output --json` instead")
        sub.add_argument("--region", help="the stack's AWS region (default: the stack's aws:region)")
        sub.add_argument("--ssh-user", default="fedora")
        sub.add_argument("--ssh-key", type=Path, help="the private key of the stack's keyName")
        sub.add_argument("--s3-endpoint", help=argparse.SUPPRESS)  # another S3 API, for tests
        return sub

    command("status", "every member, its health, and who leads")
    command("backups", "the snapshots in the stack's bucket, oldest first")
    fetch = command("fetch", "download a snapshot from the bucket (the newest) and check its sha256")
    fetch.add_argument("--key", help="this snapshot's key instead of the newest")
    fetch.add_argument("--out", type=Path, required=True)
    snapshot = command("snapshot", "take a snapshot now, on the leader, and copy it here")
    snapshot.add_argument("--out", type=Path, required=True)
    restore = command("restore", "restore every master's etcd from a snapshot (stops the control plane)")
    restore.add_argument("--snapshot", type=Path, required=True)
    restore.add_argument("--yes", action="store_true", help="really: every write since the snapshot is lost")
    replace = command("replace-member", "replace one failed master; the cluster serves throughout")
    replace.add_argument("--member", required=True, help="the master to replace, e.g. atomic-master-2")
    replace.add_argument("--yes", action="store_true", help="really: its instance is replaced")
    return parser


def _outputs(args: argparse.Namespace) -> dict[str, Any]:
    if args.from_stack_json is not None:
        loaded = json.loads(args.from_stack_json.read_text())
        if not isinstance(loaded, dict):
            raise UsageError(f"--from-stack-json {args.from_stack_json}: not a JSON object of stack outputs")
        return loaded
    outputs = pulumi_json(["stack", "output", "--json"], args.stack)
    if not isinstance(outputs, dict):
        raise UsageError(f"--stack {args.stack}: `pulumi stack output --json` printed no JSON object")
    return outputs


def _region(args: argparse.Namespace) -> str:
    if args.region:
        return str(args.region)
    if args.from_stack_json is not None:
        raise UsageError("--region is needed with --from-stack-json")
    return str(pulumi_json(["config", "get", "aws:region", "--json"], args.stack)["value"])


def _backups(args: argparse.Namespace, stack: Stack, region: str) -> Backups:
    if not stack.backup_bucket or not stack.backup_prefix:
        raise UsageError(f"stack {stack.name} has no etcdBackupBucket output (etcdBackupIntervalMinutes=0?)")
    return Backups(stack.backup_bucket, stack.backup_prefix, region, args.s3_endpoint)


def run(args: argparse.Namespace) -> int:
    stack = stack_from_outputs(args.stack, _outputs(args))
    region = _region(args)
    if args.command in ("backups", "fetch"):
        backups = _backups(args, stack, region)
        if args.command == "backups":
            for entry in backups.list():
                print(f"{entry['LastModified']}  {entry['Size']:>12}  s3://{backups.bucket}/{entry['Key']}")
            return 0
        fetched = backups.fetch(args.out, args.key)
        print(f"{args.out}: s3://{backups.bucket}/{fetched['key']} (revision {fetched['revision']}, "
              f"{fetched['encryption']}, sha256 {fetched['sha256']} checked)")
        return 0
    transport = SshTransport(stack, region, args.ssh_user, args.ssh_key)
    if args.command == "status":
        via = stack.masters[0]
        print(transport.run(via, ["members"]).stdout, end="")
        print(transport.run(via, ["health"], check=False).stdout, end="")
        return 0
    if args.command == "snapshot":
        procedures.take_snapshot(transport, stack.masters, args.out)
        return 0
    if not args.yes:
        raise UsageError(f"{args.command} changes the cluster: read docs/cluster.md, then add --yes")
    if args.command == "restore":
        procedures.restore(transport, stack.masters, args.snapshot)
        return 0
    stack.master(args.member)
    procedures.replace_member(transport, PulumiReplacer(stack, transport), stack.masters, args.member)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(build_parser().parse_args(argv))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except EtcdToolError as error:
        print(f"etcd: {error}", file=sys.stderr)
        return 1
