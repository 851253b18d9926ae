"""When a stack's certificates expire, and which of them `pulumi up` renews: what `make preview` prints.

Every certificate the program issues with pulumi-tls, from the plan: the leaf certificates whose
request carries the renewal round in its subject (facts.renewal_serial) are re-issued by the first
`pulumi up` of every round; the others (and the CAs) only when their inputs change. The dates are
worked out from today and the certificates' validity, not read from a deployed stack (the preview
runs under mocks): for a deployed stack, "issued at the start of this round" is the worst case of a
stack that ran `pulumi up` in this round; one that did not holds older certificates.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from components import tokens
from components.facts import LEAF_RENEWAL_DAYS, renewal_round, renewal_round_start
from tools.harness.offline import Plan

ROUND = re.compile(r"^renewal-(\d+)$")


@dataclass(frozen=True)
class Certificate:
    name: str
    ca: bool
    validity_hours: int
    renewed_by_round: bool


def certificates(plan: Plan) -> list[Certificate]:
    requests = {r.name: r for r in plan.of_type(tokens.CERT_REQUEST)}
    found = []
    for r in (*plan.of_type(tokens.SELF_SIGNED_CERT), *plan.of_type(tokens.LOCALLY_SIGNED_CERT)):
        request = requests.get(f"{r.name}-csr")
        serial = ((request.inputs.get("subject") or {}).get("serialNumber") if request else None) or ""
        found.append(Certificate(r.name, bool(r.inputs.get("isCaCertificate")),
                                 int(r.inputs.get("validityPeriodHours", 0)), bool(ROUND.match(serial))))
    return found


def report_lines(plan: Plan, today: datetime.date | None = None) -> list[str]:
    found = certificates(plan)
    if not found:
        return []
    today = today or datetime.datetime.now(datetime.UTC).date()
    number = renewal_round(today)
    start = renewal_round_start(number)
    end = renewal_round_start(number + 1) - datetime.timedelta(days=1)
    leaves = [c for c in found if not c.ca]
    renewed = [c for c in leaves if c.renewed_by_round]
    lines = [f"Certificates: {len(leaves)} leaf, {len(found) - len(leaves)} CAs"]
    if renewed:
        shortest = min(renewed, key=lambda c: c.validity_hours)
        earliest = start + datetime.timedelta(hours=shortest.validity_hours)
        lines += [
            f"  {len(renewed)} leaf certificates are re-issued by the first `pulumi up` of each "
            f"{LEAF_RENEWAL_DAYS}-day round (now round {number}, {start} to {end}); the nodes fetch them "
            "within the hour",
            f"  earliest expiry: {earliest} ({shortest.name}, if issued at the start of this round; "
            f"issued today: {today + datetime.timedelta(hours=shortest.validity_hours)})",
        ]
    others = [c for c in leaves if not c.renewed_by_round]
    if others:
        shortest = min(others, key=lambda c: c.validity_hours)
        lines.append(f"  not renewed by the rounds ({len(others)}: {', '.join(sorted(c.name for c in others))}): "
                     f"they expire {shortest.validity_hours // 24} days after they were issued")
    cas = [c for c in found if c.ca]
    if cas:
        shortest = min(cas, key=lambda c: c.validity_hours)
        lines.append(f"  CAs: valid {shortest.validity_hours // 24} days from issue, never renewed by `pulumi up` "
                     "(a new CA is a new trust root: docs/cluster.md, \"Certificates\")")
    return lines
