"""mysql-verify's TLS against single real MariaDB servers whose TLS is wrong in one way each:
a certificate from the set's CA that does not name the host dialled, and a server serving no
TLS at all (not one of this program's sets: it takes an explicit --no-tls). The set itself (one
CA, one certificate, require_secure_transport) is drilled in test_drills.py.
The servers need /usr/sbin/mariadbd: without it these tests fail (never skip).
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.workload.mysql import config as mysql_config
from tools.mysql_verify.cli import main
from tools.testing.mariadb import MariaDBNotInstalledError, MariaDBServer, free_port
from tools.testing.pki import ca_pem, make_ca, write_tls_dir

pytestmark = pytest.mark.real  # starts real servers or consumers (markers in pyproject.toml)

ENGINE, VERSION = "mariadb", "10.11"
ROOT_PASSWORD = "root-pw"


def start_server(base: Path, name: str, tls_dir: Path | None) -> MariaDBServer:
    """A primary with the set's own fragment; without a tls_dir, that fragment minus its TLS options."""
    cnf = mysql_config.primary_cnf(ENGINE, VERSION)
    if tls_dir is None:
        cnf = "\n".join(line for line in cnf.splitlines() if line.strip() not in mysql_config.tls_options())
    server = MariaDBServer(base / name, free_port(), 100, cnf, name=name, tls_dir=tls_dir)
    server.initialize()
    server.start()
    # Over the socket: a server whose certificate names other hosts refuses (rightly) every verified TCP client.
    with server.connect(unix_socket=str(server.socket)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT User, Host FROM mysql.user WHERE User = 'root'")
        for user, host in cursor.fetchall():
            cursor.execute("ALTER USER IF EXISTS %s@%s IDENTIFIED BY %s", (user, host, ROOT_PASSWORD))
    server.root_password = ROOT_PASSWORD
    return server


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    authority = make_ca("test MySQL set CA")
    path = tmp_path_factory.mktemp("ca") / "ca.crt"
    path.write_text(ca_pem(authority))
    return authority, path


@pytest.fixture(scope="module")
def misnamed(tmp_path_factory: pytest.TempPathFactory, ca: tuple[Any, Path]) -> Iterator[MariaDBServer]:
    """Signed by the set's CA, for the set's names except 127.0.0.1 and localhost: whatever verify dials
    here, the certificate does not name it (as mysql-1.mysql or a node's address would not)."""
    base = tmp_path_factory.mktemp("misnamed")
    planned = mysql_config.tls_certificate("mysql", "test", "cluster.local")
    certificate = dataclasses.replace(planned, ip_addresses=(),
                                      dns_names=tuple(name for name in planned.dns_names if name != "localhost"))
    try:
        server = start_server(base, "misnamed", write_tls_dir(base / "tls", ca[0], certificate))
    except MariaDBNotInstalledError as error:
        pytest.fail(str(error))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def plaintext_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    try:
        server = start_server(tmp_path_factory.mktemp("plain"), "plain", None)
    except MariaDBNotInstalledError as error:
        pytest.fail(str(error))
    try:
        yield server
    finally:
        server.stop()


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--connect-timeout", "3", "--query-timeout", "10"], environ={"MYSQL_PWD": ROOT_PASSWORD},
                stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("host", "mismatch"), [
    ("127.0.0.1", "IP address mismatch, certificate is not valid for '127.0.0.1'"),
    ("localhost", "Hostname mismatch, certificate is not valid for 'localhost'"),
])
def test_a_certificate_not_naming_the_host_dialled_is_refused(
    misnamed: MariaDBServer, ca: tuple[Any, Path], host: str, mismatch: str
) -> None:
    code, out, err = run(["--primary", f"{host}:{misnamed.port}", "--ssl-ca", str(ca[1])])

    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"mysql-verify: error: primary {host}:{misnamed.port}: the server's certificate does not name the host "
        f"dialled ('{host}': {mismatch}): dial a name it carries, <set>-N.<set>.<namespace>[.svc[.<domain>]], "
        "<set>-primary[...] or <set>-read[...], or 127.0.0.1/localhost through kubectl port-forward (never "
        "<set>-N.<set> alone: OpenSSL matches no wildcard over a two-label name)"]


def test_the_same_server_is_accepted_once_its_certificate_names_the_host(
    misnamed: MariaDBServer, ca: tuple[Any, Path]
) -> None:
    """The control: the same server and CA, with the set's planned certificate, passes verification."""
    assert misnamed.tls_dir is not None
    write_tls_dir(misnamed.tls_dir, ca[0], mysql_config.tls_certificate("mysql", "test", "cluster.local"))
    misnamed.restart()
    code, out, err = run(["--primary", f"127.0.0.1:{misnamed.port}", "--ssl-ca", str(ca[1]), "--json"])
    # Replaced back, so that the order the tests run in does not matter.
    planned = mysql_config.tls_certificate("mysql", "test", "cluster.local")
    write_tls_dir(misnamed.tls_dir, ca[0], dataclasses.replace(
        planned, ip_addresses=(), dns_names=tuple(name for name in planned.dns_names if name != "localhost")))
    misnamed.restart()

    report = json.loads(out)
    assert (code, err, report["problems"]) == (0, "", [])
    assert report["servers"][0]["tls_version"] == "TLSv1.3"


def test_a_server_without_tls_is_refused_unless_no_tls_is_given(
    plaintext_server: MariaDBServer, ca: tuple[Any, Path]
) -> None:
    endpoint = f"127.0.0.1:{plaintext_server.port}"
    code, out, err = run(["--primary", endpoint, "--ssl-ca", str(ca[1])])

    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"mysql-verify: error: primary {endpoint}: the server offers no TLS (SSL is required but the server doesn't "
        "support it): this program's sets always serve TLS, so this is not one of them, or its TLS is not "
        "configured; --no-tls only for servers that serve none"]

    code, out, err = run(["--primary", endpoint, "--no-tls", "--json"])

    report = json.loads(out)
    assert (code, err, report["problems"]) == (0, "", [])
    assert report["tls"] == {"verified": False, "ca_source": None, "ca_subjects": []}
    assert (report["servers"][0]["tls_version"], report["servers"][0]["tls_cipher"]) == (None, None)
    assert "TLS is off (--no-tls): the password and the data crossed the network in plaintext" in report["warnings"]
