"""atomic-mysql policy pack: `pulumi preview --policy-pack policy`.

Every policy is mandatory. The checks live in validators.py (plain functions, unit-tested
against the offline preview); this file only hands them to the engine. Importing it
starts the analyzer's gRPC server and blocks, so tests never import it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

# The pack runs from this repository (--policy-pack policy): validators.py next to this file, and
# the type tokens and ports it checks from components/ (tokens.py and facts.py import nothing).
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

# Found through the paths above, wherever the CLI starts the pack from.
import validators


def _validator(policy: validators.Policy) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        # The stack comes from the URN: the engine always sends it, whatever the runtime settings.
        stack = validators.stack_of(args.urn)
        opts = validators.Options(protect=bool(args.opts.protect), name=args.name)
        for message in policy.check(args.resource_type, args.props, stack, opts):
            report_violation(message, args.urn)

    return validate


def _stack_validator(policy: validators.StackPolicy) -> Callable[[StackValidationArgs, ReportViolation], None]:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [(r.urn, r.resource_type, r.props) for r in args.resources]
        for urn, message in policy.check(resources):
            report_violation(message, urn)

    return validate


# Apart from STACK_POLICIES: it needs each resource's parent (a bucket and its companions share one).
def _bucket_companions(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    entries = [{"urn": r.urn, "type": r.resource_type, "parent": r.parent.urn if r.parent else None}
               for r in args.resources]
    for urn, problems in validators.bucket_gaps(entries).items():
        for message in problems:
            report_violation(message, urn)


PolicyPack(
    name="atomic-mysql",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        ResourceValidationPolicy(
            name=policy.name,
            description=policy.description,
            enforcement_level=EnforcementLevel.MANDATORY,
            validate=_validator(policy),
        )
        for policy in validators.POLICIES
    ]
    + [
        StackValidationPolicy(
            name=policy.name,
            description=policy.description,
            enforcement_level=EnforcementLevel.MANDATORY,
            validate=_stack_validator(policy),
        )
        for policy in validators.STACK_POLICIES
    ]
    + [
        StackValidationPolicy(
            name="bucket-companions",
            description="Every S3 bucket has KMS default encryption, versioning, a public access block and a"
                        " TLS-only policy beside it.",
            enforcement_level=EnforcementLevel.MANDATORY,
            validate=_bucket_companions,
        ),
    ],
)
