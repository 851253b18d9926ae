"""`make verify STACK=<stack>`: the outputs come from the Pulumi CLI itself, kept in memory.

A fake `pulumi` on PATH prints the outputs as the real CLI does (secret outputs as "[secret]"
without --show-secrets) and logs how it was called, outside the directories watched for writes.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.conftest import PROJECT_DIR
from tests.tools.mysql_verify.test_verify import SET_CA_PEM, FakeConnection, mysql_set
from tools.mysql_verify import checks
from tools.mysql_verify.cli import main

ADMIN_KEY = "-----BEGIN EC PRIVATE KEY-----CLUSTER-ADMIN"
FAKE_PULUMI = '''#!{python}
"""A stand-in for the Pulumi CLI's `stack output`, as it behaves (pulumi/pulumi#14576)."""
import json, os, sys
argv = sys.argv[1:]
with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
    log.write(json.dumps(argv) + "\\n")
outputs = json.load(open(os.environ["FAKE_PULUMI_OUTPUTS"]))
stack = argv[argv.index("--stack") + 1] if "--stack" in argv else None
if stack != outputs["stack"]:
    print(f"error: no stack named '{{stack}}' found", file=sys.stderr)
    sys.exit(255)
if argv[:3] == ["stack", "output", "--json"] and "--show-secrets" not in argv:
    print(json.dumps({{k: "[secret]" if k in outputs["secret"] else v for k, v in outputs["values"].items()}}))
elif argv[:2] == ["stack", "output"] and "--show-secrets" in argv:
    print(json.dumps(outputs["values"][argv[2]]))
else:
    print("error: unexpected call", file=sys.stderr)
    sys.exit(1)
'''


@dataclass
class FakeCli:
    bin: Path
    log: Path
    outputs: Path

    def set(self, stack: str, values: dict[str, Any], secret: tuple[str, ...] = ()) -> None:
        self.outputs.write_text(json.dumps({"stack": stack, "values": values, "secret": list(secret)}))

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.bin}:{os.environ['PATH']}", "FAKE_PULUMI_LOG": str(self.log),
                "FAKE_PULUMI_OUTPUTS": str(self.outputs)}


@pytest.fixture()
def fake_cli(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    home = tmp_path_factory.mktemp("fake-pulumi")
    (home / "bin").mkdir()
    script = home / "bin" / "pulumi"
    script.write_text(FAKE_PULUMI.format(python=sys.executable))
    script.chmod(0o755)
    cli = FakeCli(home / "bin", home / "calls.log", home / "outputs.json")
    for key, value in cli.env().items():
        monkeypatch.setenv(key, value)
    return cli


PROD_OUTPUTS = {"mysqlPrimaryHost": "mysql-primary.atomic-mysql.svc", "mysqlPort": 3306,
                "mysqlReadHost": "mysql-read.atomic-mysql.svc", "mysqlReplicas": 3, "mysqlCaCert": SET_CA_PEM,
                "kubeconfig": f"apiVersion: v1\nusers:\n- user:\n    client-key-data: {ADMIN_KEY}\n"}


@pytest.fixture()
def servers_by_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The set's Services and pods by the names the stack outputs give (the scripted MySQL 8.4 fake)."""
    by_port = mysql_set("8.4.6")
    hosts = {"mysql-primary.atomic-mysql.svc": by_port[13306], "mysql-1.mysql.atomic-mysql.svc": by_port[13307],
             "mysql-2.mysql.atomic-mysql.svc": by_port[13308], "mysql-read.atomic-mysql.svc": by_port[13307]}

    def connect(**settings: Any) -> FakeConnection:
        if settings["host"] not in hosts or settings["port"] != 3306:
            raise pymysql.err.OperationalError(2003, f"Can't connect to server on '{settings['host']}'")
        return FakeConnection(hosts[settings["host"]])

    monkeypatch.setattr(checks.pymysql, "connect", connect)


@pytest.fixture()
def no_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail any attempt of this process to open a file for writing (the fake CLI is another process)."""
    attempts: list[str] = []
    real_open, real_os_open = builtins.open, os.open
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def guarded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+") and str(file) != os.devnull:
            attempts.append(str(file))
            raise PermissionError(f"verify must not write {file}")
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & write_flags and str(path) != os.devnull:
            attempts.append(str(path))
            raise PermissionError(f"verify must not write {path}")
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    yield attempts


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, environ={"MYSQL_PWD": "pw"}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_verify_stack_reads_the_outputs_from_the_cli_and_verifies_the_set(
    fake_cli: FakeCli, servers_by_host: None, no_writes: list[str]
) -> None:
    fake_cli.set("prod", PROD_OUTPUTS, secret=("kubeconfig", "mysqlPrimaryHost", "mysqlCaCert"))
    code, out, err = run_main(["--stack", "prod", "--json", "--samples", "3", "--sample-interval", "0"])
    assert (code, err) == (0, ""), err
    report = json.loads(out)
    assert report["status"] == "healthy"
    # The CA came from the CLI too (asked for alone had it been secret), and every session is TLS.
    assert report["tls"] == {"verified": True, "ca_source": "stack output mysqlCaCert (--stack prod)",
                             "ca_subjects": ["test MySQL set CA"]}
    assert {server["tls_version"] for server in report["servers"]} == {"TLSv1.3"}
    assert [s["address"] for s in report["servers"]] == [
        "mysql-primary.atomic-mysql.svc:3306", "mysql-1.mysql.atomic-mysql.svc:3306",
        "mysql-2.mysql.atomic-mysql.svc:3306"]
    # All outputs once, secrets masked; then only the secret output verify reads, alone.
    assert [call[:5] for call in fake_cli.calls()] == [
        ["stack", "output", "--json", "--non-interactive", "--stack"],
        ["stack", "output", "mysqlPrimaryHost", "--json", "--show-secrets"],
        ["stack", "output", "mysqlCaCert", "--json", "--show-secrets"],
    ]
    assert not any("kubeconfig" in call for call in fake_cli.calls())
    assert ADMIN_KEY not in out and no_writes == []


def snapshot(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def test_make_verify_stack_writes_no_file(fake_cli: FakeCli, tmp_path: Path) -> None:
    """The real entry point, in a fresh working directory, home and TMPDIR: nothing appears in any of
    them, nor in the repository, and the endpoints it tried are the CLI's outputs."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    fake_cli.set("dev", {**PROD_OUTPUTS, "mysqlPrimaryHost": "127.0.0.1", "mysqlPort": closed,
                         "mysqlReplicaHosts": ["127.0.0.1"]}, secret=("kubeconfig",))
    work, home, tmp = (tmp_path / d for d in ("work", "home", "tmp"))
    for d in (work, home, tmp):
        d.mkdir()
    env = {**os.environ, **fake_cli.env(), "HOME": str(home), "TMPDIR": str(tmp), "PYTHONPATH": str(PROJECT_DIR),
           "PYTHONDONTWRITEBYTECODE": "1", "MYSQL_PWD": "pw"}
    repo_before = subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT_DIR, capture_output=True, text=True,
                                 timeout=60, check=True).stdout
    done = subprocess.run([sys.executable, "-m", "tools.mysql_verify", "--stack", "dev", "--connect-timeout", "2"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == f"mysql-verify: error: primary 127.0.0.1:{closed}: connection refused (nothing listens " \
                          "there: server down or port-forward not running?)\n"
    assert snapshot(work, home, tmp) == {}
    assert subprocess.run(["git", "status", "--porcelain"], cwd=PROJECT_DIR, capture_output=True, text=True,
                          timeout=60, check=True).stdout == repo_before
    assert len(fake_cli.calls()) == 1 and "--show-secrets" not in fake_cli.calls()[0]


@pytest.mark.parametrize(("setup", "argv", "message"), [
    ("missing", ["--stack", "prod"], "--stack prod: the Pulumi CLI is not on PATH (install it, or pass "
                                     "--from-stack-json FILE"),
    ("other-stack", ["--stack", "prod"], "--stack prod: `pulumi stack output --json --non-interactive --stack prod` "
                                         "exited 255: error: no stack named 'prod' found"),
    ("prod", ["--stack", "prod", "--from-stack-json", "-"], "--stack and --from-stack-json both give"),
    ("no-outputs", ["--stack", "prod"], "--stack prod: missing output(s) mysqlPrimaryHost, mysqlPort (have: none)"),
])
def test_cli_failures_are_one_line_naming_the_command(fake_cli: FakeCli, monkeypatch: pytest.MonkeyPatch,
                                                      setup: str, argv: list[str], message: str) -> None:
    if setup == "missing":
        monkeypatch.setenv("PATH", "/nonexistent")
    fake_cli.set("dev" if setup == "other-stack" else "prod", {} if setup == "no-outputs" else PROD_OUTPUTS)
    code, out, err = run_main(argv)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and message in err, err


def test_make_passes_stack_only_when_given() -> None:
    def dry(*args: str) -> str:
        # --no-print-directory: under `make test` this make is a sub-make, which would print
        # "Leaving directory" last
        done = subprocess.run(["make", "--no-print-directory", "-n", "verify", *args], cwd=PROJECT_DIR,
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip().splitlines()[-1]

    assert dry("STACK=prod", "ARGS=--json").endswith("-m tools.mysql_verify --stack prod --json")
    assert "--stack" not in dry("ARGS=--primary h:1")


def test_no_doc_tells_users_to_save_the_outputs_and_saved_outputs_are_ignored() -> None:
    for doc in (PROJECT_DIR / "README.md", PROJECT_DIR / "docs" / "verify.md"):
        assert "--show-secrets >" not in doc.read_text(), doc
    ignored = subprocess.run(["git", "check-ignore", "outputs.json", "prod-outputs.json", "stacks/outputs.dev.json"],
                             cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60)
    assert ignored.stdout.split() == ["outputs.json", "prod-outputs.json", "stacks/outputs.dev.json"]
