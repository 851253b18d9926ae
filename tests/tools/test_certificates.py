"""What `make preview` says of a stack's certificates (tools/certificates.py)."""

from __future__ import annotations

import datetime

import pytest

from components import tokens
from tools import certificates
from tools.harness.offline import Plan, run_program


@pytest.fixture(scope="module")
def prod() -> Plan:
    return run_program("prod")


def test_the_earliest_expiry_is_a_year_after_the_start_of_the_round(prod: Plan) -> None:
    lines = certificates.report_lines(prod, today=datetime.date(2026, 12, 1))
    assert lines[0] == "Certificates: 39 leaf, 5 CAs"
    assert "re-issued by the first `pulumi up` of each 90-day round (now round 3, 2026-09-28 to 2026-12-26)" in lines[1]
    assert lines[2].startswith("  earliest expiry: 2027-09-28 (") and "issued today: 2027-12-01" in lines[2]
    assert not any("not renewed by the rounds" in line for line in lines)  # the MySQL set's too
    assert lines[3].startswith("  CAs: valid 3650 days")


def test_a_certificate_without_the_round_is_reported_as_not_renewed(prod: Plan) -> None:
    """Negative control: the same plan with the round taken out of one request."""
    request = next(r for r in prod.of_type(tokens.CERT_REQUEST) if r.name == "cluster-pki-apiserver-csr"
                   or r.name.endswith("-apiserver-csr"))
    subject = request.inputs["subject"]
    saved = subject["serialNumber"]
    try:
        subject["serialNumber"] = ""
        found = {c.name: c.renewed_by_round for c in certificates.certificates(prod)}
        assert found[request.name.removesuffix("-csr")] is False
    finally:
        subject["serialNumber"] = saved
    assert all(c.renewed_by_round for c in certificates.certificates(prod) if not c.ca)


def test_a_stack_without_certificates_prints_nothing() -> None:
    assert certificates.report_lines(Plan("x", [])) == []
