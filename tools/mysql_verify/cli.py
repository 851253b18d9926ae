"""Command line: endpoints, CA, password, options; exit 0 healthy, 1 degraded, 2 usage/connection error.

Endpoints come from explicit flags or from the stack's outputs (keys mysqlPrimaryHost,
mysqlReadHost, mysqlPort; optionally mysqlReplicaHosts or mysqlReplicas); explicit flags win.
The outputs are read either from the Pulumi CLI itself (--stack NAME: `pulumi stack output
--json` run here, its stdout kept in memory, nothing written to disk) or from a file or stdin
(--from-stack-json, for machines without the CLI). TLS is verified by default: the CA is
--ssl-ca FILE, else the outputs' mysqlCaCert (the set's CA, read like the other outputs and
kept in memory: the SSLContext loads it with cadata=); without either, verify refuses to run
unless --no-tls says the servers serve no TLS. The password never comes from a flag,
because argv is visible to every user in `ps`: MYSQL_PWD or --password-file (use - for stdin).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from tools.mysql_verify import backups as backup_checks
from tools.mysql_verify.checks import Endpoint, Options, TlsTrust, VerifyError, verify
from tools.mysql_verify.report import EXIT_ERROR, error_json, render_table, to_json

DEFAULT_PORT = 3306
PASSWORD_ENV = "MYSQL_PWD"
# The outputs verify reads; no other output is ever asked for (the kubeconfig never is).
STACK_KEYS = ("mysqlPrimaryHost", "mysqlReadHost", "mysqlPort", "mysqlReplicaHosts", "mysqlReplicas", "mysqlCaCert")
CA_OUTPUT = "mysqlCaCert"
# What `pulumi stack output --json` prints for a secret output without --show-secrets.
SECRET_SHOWN = "[secret]"
PULUMI_TIMEOUT = 120.0  # seconds: the CLI may log in to its backend first
PROJECT_DIR = Path(__file__).resolve().parents[2]


class UsageError(Exception):
    """A bad invocation; str() is the one line shown."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so main() owns every exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _positive(kind: type[int] | type[float]) -> Any:
    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m tools.mysql_verify",
        allow_abbrev=False,
        description="Check a deployed replicated MySQL/MariaDB set the way the Kubernetes tutorial does by hand: "
        "write through the primary, wait for every replica, check server ids, read-only mode and replication "
        "threads, and sample the read endpoint. Password: MYSQL_PWD or --password-file.",
        epilog="Exit codes: 0 healthy, 1 degraded (reasons listed per server), 2 usage or connection error.",
    )
    where = parser.add_argument_group("endpoints (explicit flags win over --from-stack-json)")
    where.add_argument("--primary", metavar="HOST:PORT", help="the primary (ordinal 0), e.g. 127.0.0.1:13306")
    where.add_argument("--replica", metavar="[ORD=]HOST:PORT", action="append", default=[],
                       help="a replica; repeat for each. Ordinal: ORD= prefix, else a '-N' host name suffix "
                            "(mysql-2.mysql), else its position (1, 2, ...)")
    where.add_argument("--read", metavar="HOST:PORT", help="the read Service endpoint to sample")
    where.add_argument("--stack", metavar="NAME",
                       help="read the outputs of this stack from the Pulumi CLI (`pulumi stack output --json`, "
                            "kept in memory, nothing written to disk); only secret outputs verify reads are shown")
    where.add_argument("--from-stack-json", metavar="FILE",
                       help="a saved `pulumi stack output --json` (- for stdin), for machines without the CLI")
    where.add_argument("--members", type=_positive(int), metavar="N",
                       help="StatefulSet size (primary + replicas), to derive replica hosts from mysqlPrimaryHost "
                            "when the stack outputs have neither mysqlReplicaHosts nor mysqlReplicas")
    auth = parser.add_argument_group("login")
    auth.add_argument("--user", default="root", help="account to log in with (default: root)")
    auth.add_argument("--password-file", metavar="FILE",
                      help=f"file whose first line is the password (- for stdin); else ${PASSWORD_ENV}; else none")
    tls = parser.add_argument_group("TLS (on by default: certificates and host names verified)")
    tls.add_argument("--ssl-ca", metavar="FILE",
                     help=f"PEM CA to verify the servers' certificates against (default: the stack output {CA_OUTPUT} "
                          "from --stack or --from-stack-json)")
    tls.add_argument("--no-tls", action="store_true",
                     help="connect in plaintext, for servers that serve no TLS (this program's sets refuse it)")
    tune = parser.add_argument_group("checks")
    tune.add_argument("--samples", type=_positive(int), default=20, help="read endpoint samples (default: 20)")
    tune.add_argument("--sample-interval", type=float, default=0.05, metavar="SECONDS",
                      help="pause between read samples (default: 0.05)")
    tune.add_argument("--min-read-servers", type=_positive(int), default=1, metavar="N",
                      help="degraded unless reads reach at least N distinct servers (default: 1; use the set's "
                           "size when sampling from inside the cluster)")
    tune.add_argument("--wait-timeout", type=_positive(float), default=30.0, metavar="SECONDS",
                      help="how long replicas may take to show the check row (default: 30)")
    tune.add_argument("--connect-timeout", type=_positive(float), default=5.0, metavar="SECONDS",
                      help="TCP connect timeout per connection (default: 5)")
    tune.add_argument("--query-timeout", type=_positive(float), default=10.0, metavar="SECONDS",
                      help="read/write timeout per query, including the server greeting (default: 10)")
    tune.add_argument("--server-id-offset", type=int, default=100, metavar="N",
                      help="expected server_id is N + ordinal (default: 100, the tutorial's)")
    tune.add_argument("--database", default="atomic_verify",
                      help="database of the check table (default: atomic_verify)")
    tune.add_argument("--keep-rows", action="store_true", help="leave the check row in place")
    tune.add_argument("--skip-write-probe", action="store_true",
                      help="do not test that replicas refuse an INSERT (the probe is always rolled back)")
    backups = parser.add_argument_group("backups (docs/backup.md)")
    backups.add_argument("--backup-metrics", metavar="HOST:PORT",
                         help="the backup agent's metrics on ordinal 0 (port 9105, e.g. kubectl port-forward "
                              "pod/mysql-0 9105): report the last good backup's age and the binlog archive's lag")
    backups.add_argument("--backup-max-age-hours", type=_positive(float), default=26.0, metavar="HOURS",
                         help="a last good backup older than this is a problem (default: 26, as"
                              " mysqlBackupMaxAgeHours)")
    backups.add_argument("--archive-max-lag", type=_positive(float), default=900.0, metavar="SECONDS",
                         help="a closed binlog waiting longer than this is a problem (default: 900)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print a machine-readable report instead of the table")
    out.add_argument("--debug", action="store_true", help="show a traceback for unexpected internal errors")
    return parser


# ---------------------------------------------------------------------------- endpoints


def parse_host_port(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """'host', 'host:port', '[v6]:port' or 'v6' to (host, port)."""
    text = text.strip()
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?", text)
    if match:
        host, port_text = match.group(1), match.group(2)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None  # a bare name, or a bare IPv6 address
    usage = f"endpoint {text!r}: expected HOST:PORT, e.g. 127.0.0.1:13306 or mysql-0.mysql:3306"
    if not host or not re.fullmatch(r"[A-Za-z0-9_.:-]+", host):
        raise UsageError(usage)
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(usage) from None
    if port_text is not None and not port_text.isdigit():
        raise UsageError(usage)
    port = default_port if port_text is None else int(port_text)
    if not 0 < port < 65536:
        raise UsageError(f"endpoint {text!r}: port must be 1-65535")
    return host, port


def ordinal_from_host(host: str) -> int | None:
    """mysql-2.mysql.ns.svc.cluster.local -> 2 (StatefulSet pod names end in -<ordinal>)."""
    match = re.fullmatch(r"[A-Za-z0-9-]*[A-Za-z][A-Za-z0-9-]*-(\d+)", host.split(".")[0])
    return int(match.group(1)) if match else None


def parse_replicas(items: Sequence[str], default_port: int = DEFAULT_PORT) -> tuple[Endpoint, ...]:
    endpoints = []
    for position, item in enumerate(items, start=1):
        ordinal_text, sep, rest = item.partition("=")
        if sep and not ordinal_text.isdigit():
            raise UsageError(f"--replica {item!r}: the part before '=' must be the ordinal, e.g. 2=127.0.0.1:13308")
        host, port = parse_host_port(rest if sep else item, default_port)
        ordinal = int(ordinal_text) if sep else (ordinal_from_host(host) or position)
        if ordinal < 1:
            raise UsageError(f"--replica {item!r}: replica ordinals start at 1 (0 is the primary)")
        endpoints.append(Endpoint(host, port, ordinal))
    ordinals = [endpoint.ordinal for endpoint in endpoints]
    duplicates = sorted({ordinal for ordinal in ordinals if ordinals.count(ordinal) > 1})
    if duplicates:
        raise UsageError(
            f"--replica: ordinal(s) {duplicates} given twice; prefix each with its ordinal (ORD=HOST:PORT)"
        )
    return tuple(endpoints)


def load_stack_outputs(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"--from-stack-json {path}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"--from-stack-json {path}: not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--from-stack-json {path}: expected a JSON object of stack outputs")
    return data


def derive_replica_hosts(primary: str, size: int) -> list[str] | None:
    """Pod DNS names of ordinals 1..size-1 from the primary's host name, or None if it has neither form:

    <set>-0[.<headless>.<ns>.svc...]  (the tutorial's mysql-0.mysql) -> <set>-N with the same domain;
    <set>-primary.<ns>.svc[...]       (components/workload/mysql/set.py's primary Service, whose headless
                                       Service is named like the set) -> <set>-N.<set>.<ns>.svc[...].
    """
    pod = re.fullmatch(r"([a-z0-9-]+)-0((?:\.[a-z0-9-]+)*)", primary)
    if pod:
        return [f"{pod.group(1)}-{ordinal}{pod.group(2)}" for ordinal in range(1, size)]
    service = re.fullmatch(r"([a-z0-9-]+)-primary\.([a-z0-9-]+)\.svc((?:\.[a-z0-9-]+)*)", primary)
    if service:
        name, namespace, suffix = service.groups()
        return [f"{name}-{ordinal}.{name}.{namespace}.svc{suffix}" for ordinal in range(1, size)]
    return None


def replica_hosts_from_stack(outputs: dict[str, Any], members: int | None) -> list[str]:
    """mysqlReplicaHosts if exported, else derived from mysqlPrimaryHost and the set's size."""
    listed = outputs.get("mysqlReplicaHosts")
    if isinstance(listed, list) and all(isinstance(host, str) for host in listed):
        return list(listed)
    size = members if members is not None else outputs.get("mysqlReplicas")
    if size is None:
        raise UsageError("stack outputs have neither mysqlReplicaHosts nor mysqlReplicas: pass --members N "
                         "(the StatefulSet size) or --replica HOST:PORT")
    try:
        size = int(size)
    except (TypeError, ValueError):
        raise UsageError(f"mysqlReplicas={size!r} in the stack outputs is not a number") from None
    primary = str(outputs.get("mysqlPrimaryHost", ""))
    hosts = derive_replica_hosts(primary, size)
    if hosts is None:
        raise UsageError(f"cannot derive replica hosts from mysqlPrimaryHost={primary!r} (expected <set>-0[.domain] "
                         "or <set>-primary.<namespace>.svc): pass --replica")
    return hosts


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def _pulumi(arguments: list[str], stack: str, runner: Runner) -> Any:
    """One `pulumi ...` whose stdout is JSON, read from the pipe: nothing touches the disk."""
    command = ["pulumi", *arguments, "--non-interactive", "--stack", stack]
    project = PROJECT_DIR if (PROJECT_DIR / "Pulumi.yaml").is_file() else None
    try:
        done = runner(command, capture_output=True, text=True, timeout=PULUMI_TIMEOUT, stdin=subprocess.DEVNULL,
                      cwd=project, env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"})
    except FileNotFoundError:
        raise UsageError(f"--stack {stack}: the Pulumi CLI is not on PATH (install it, or pass --from-stack-json "
                         "FILE with a saved `pulumi stack output --json`)") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"--stack {stack}: `{' '.join(command)}` did not finish within {PULUMI_TIMEOUT:g}s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UsageError(f"--stack {stack}: `{' '.join(command)}` exited {done.returncode}: {last}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise UsageError(f"--stack {stack}: `{' '.join(command)}` printed no JSON ({error.msg})") from None


def stack_outputs_from_cli(stack: str, runner: Runner = subprocess.run) -> dict[str, Any]:
    """The stack's outputs as the CLI prints them, secrets as "[secret]"; a secret output verify
    reads is then asked for alone, with --show-secrets. The kubeconfig never leaves the CLI."""
    outputs = _pulumi(["stack", "output", "--json"], stack, runner)
    if not isinstance(outputs, dict):
        raise UsageError(f"--stack {stack}: `pulumi stack output --json` printed no JSON object of outputs")
    for key in STACK_KEYS:
        if outputs.get(key) == SECRET_SHOWN:
            outputs[key] = _pulumi(["stack", "output", key, "--json", "--show-secrets"], stack, runner)
    return outputs


StackOutputs = tuple[dict[str, Any], str]  # the outputs, and where they came from ("--stack prod")


def read_stack(args: argparse.Namespace, runner: Runner = subprocess.run) -> StackOutputs | None:
    if args.stack and args.from_stack_json:
        raise UsageError("--stack and --from-stack-json both give the stack outputs: pass one")
    if args.stack:
        return stack_outputs_from_cli(args.stack, runner), f"--stack {args.stack}"
    if args.from_stack_json:
        return load_stack_outputs(args.from_stack_json), f"--from-stack-json {args.from_stack_json}"
    return None


def _stack_endpoints(outputs: dict[str, Any], source: str,
                     members: int | None) -> tuple[Endpoint, tuple[Endpoint, ...], Endpoint | None]:
    missing = [key for key in ("mysqlPrimaryHost", "mysqlPort") if not outputs.get(key)]
    if missing:
        raise UsageError(f"{source}: missing output(s) {', '.join(missing)} (have: "
                         f"{', '.join(sorted(outputs)) or 'none'})")
    try:
        port = int(outputs["mysqlPort"])
    except (TypeError, ValueError):
        raise UsageError(f"mysqlPort={outputs['mysqlPort']!r} in the stack outputs is not a port number") from None
    primary_host, _ = parse_host_port(str(outputs["mysqlPrimaryHost"]), port)
    replicas = parse_replicas(replica_hosts_from_stack(outputs, members), port)
    read_host = outputs.get("mysqlReadHost")
    read = Endpoint(*parse_host_port(str(read_host), port), 0) if read_host else None
    return Endpoint(primary_host, port, 0), replicas, read


def resolve_endpoints(args: argparse.Namespace,
                      stack: StackOutputs | None) -> tuple[Endpoint, tuple[Endpoint, ...], Endpoint | None]:
    primary: Endpoint | None = None
    replicas: tuple[Endpoint, ...] = ()
    read: Endpoint | None = None
    if stack is not None:
        primary, replicas, read = _stack_endpoints(*stack, args.members)
    if args.primary:
        primary = Endpoint(*parse_host_port(args.primary), 0)
    if args.replica:
        replicas = parse_replicas(args.replica)
    if args.read:
        read = Endpoint(*parse_host_port(args.read), 0)
    if primary is None:
        raise UsageError("no primary endpoint: pass --primary HOST:PORT, --stack NAME or --from-stack-json FILE")
    return primary, replicas, read


def resolve_tls(args: argparse.Namespace, stack: StackOutputs | None) -> TlsTrust | None:
    """The CA every connection is verified against: --ssl-ca, else the stack output; None only for --no-tls."""
    if args.no_tls:
        return None
    if args.ssl_ca:
        try:
            pem = Path(args.ssl_ca).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else "not a text file"
            raise UsageError(f"--ssl-ca {args.ssl_ca}: {reason}") from None
        return _trust(pem, f"--ssl-ca {args.ssl_ca}")
    if stack is not None:
        outputs, source = stack
        output = outputs.get(CA_OUTPUT)
        if not output:
            raise UsageError(f"{source}: no output {CA_OUTPUT} (the set's CA; a stack from before its servers "
                             "served TLS?): pass --ssl-ca FILE, or --no-tls for servers that serve no TLS")
        if not isinstance(output, str):
            raise UsageError(f"{source}: output {CA_OUTPUT} is a {type(output).__name__}, expected the CA's PEM text")
        return _trust(output, f"stack output {CA_OUTPUT} ({source})")
    raise UsageError(f"no CA to verify the servers' TLS certificates against: pass --ssl-ca FILE (the stack output "
                     f"{CA_OUTPUT}), or --stack NAME / --from-stack-json FILE; --no-tls only for servers that "
                     "serve no TLS")


def _trust(pem: str, source: str) -> TlsTrust:
    try:
        return TlsTrust.from_pem(pem, source)
    except ValueError as error:
        raise UsageError(str(error)) from None


def read_password(args: argparse.Namespace, environ: dict[str, str]) -> str:
    if args.password_file:
        try:
            path = args.password_file
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"--password-file {args.password_file}: {error.strerror or error}") from None
        lines = text.splitlines()
        return lines[0] if lines else ""
    return environ.get(PASSWORD_ENV, "")


def build_options(args: argparse.Namespace, environ: dict[str, str], runner: Runner = subprocess.run) -> Options:
    if args.from_stack_json == "-" and args.password_file == "-":
        raise UsageError("--from-stack-json and --password-file cannot both read stdin")
    if args.ssl_ca and args.no_tls:
        raise UsageError("--ssl-ca and --no-tls contradict each other: pass one")
    stack = read_stack(args, runner)
    primary, replicas, read = resolve_endpoints(args, stack)
    if args.sample_interval < 0:
        raise UsageError("--sample-interval must not be negative")
    tls = resolve_tls(args, stack)
    try:
        return Options(
            primary=primary,
            replicas=replicas,
            read=read,
            user=args.user,
            password=read_password(args, environ),
            tls=tls,
            database=args.database,
            samples=args.samples,
            sample_interval=args.sample_interval,
            min_read_servers=args.min_read_servers,
            wait_timeout=args.wait_timeout,
            connect_timeout=args.connect_timeout,
            query_timeout=args.query_timeout,
            server_id_offset=args.server_id_offset,
            keep_rows=args.keep_rows,
            write_probe=not args.skip_write_probe,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None


# ---------------------------------------------------------------------------- main


def _fail(message: str, as_json: bool, stdout: TextIO, stderr: TextIO) -> int:
    line = " ".join(message.split())  # always exactly one line
    print(f"mysql-verify: error: {line}", file=stderr)
    if as_json:
        print(error_json(line), file=stdout)
    return EXIT_ERROR


def main(
    argv: Sequence[str] | None = None,
    environ: dict[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Parse, verify, print; returns the exit code (0 healthy, 1 degraded, 2 error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = dict(os.environ if environ is None else environ)
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    as_json = "--json" in argv
    if any(arg == "--password" or arg.startswith("--password=") for arg in argv):
        return _fail("--password is not accepted (argv is visible in ps): set MYSQL_PWD or use --password-file",
                     as_json, stdout, stderr)
    parser = build_parser()
    if "-h" in argv or "--help" in argv:
        parser.print_help(stdout)
        return 0
    debug = "--debug" in argv
    try:
        args = parser.parse_args(argv)
        options = build_options(args, environ)
        report = verify(options)
        if args.backup_metrics:
            host, port = parse_host_port(args.backup_metrics, 9105)
            address = f"{host}:{port}"
            report.backup = backup_checks.judge(address, backup_checks.fetch(address, args.connect_timeout),
                                                max_age_hours=args.backup_max_age_hours,
                                                max_lag_seconds=args.archive_max_lag)
    except (UsageError, VerifyError, backup_checks.BackupMetricsError) as error:
        return _fail(str(error), as_json, stdout, stderr)
    except KeyboardInterrupt:
        return _fail("interrupted", as_json, stdout, stderr)
    except Exception as error:  # never a traceback for users; --debug shows it
        if debug:
            raise
        return _fail(f"unexpected {type(error).__name__}: {error} (rerun with --debug for details)",
                     as_json, stdout, stderr)
    print(to_json(report) if as_json else render_table(report), file=stdout)
    return report.exit_code
