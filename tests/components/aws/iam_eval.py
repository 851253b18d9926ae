"""A small IAM evaluator for the policies this program writes: Allow and Deny, with the condition
operators they use (StringEquals, StringLike, StringNotEquals, Bool). An explicit Deny wins, then an
Allow, else the implicit deny; a negated operator on a key the request does not carry matches, as
IAM's does ("...IfExists" aside)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

OPERATORS = {"StringEquals", "StringLike", "StringNotEquals", "Bool"}


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _matches(patterns: str | list[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in _listed(patterns))


def _condition_holds(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    assert set(condition) <= OPERATORS, f"operator(s) {set(condition) - OPERATORS} not evaluated here"
    for operator, tests in condition.items():
        for key, expected in tests.items():
            values, present = _listed(expected), key in context
            actual = context.get(key, "")
            if operator in ("StringEquals", "Bool") and not (present and actual in values):
                return False
            if operator == "StringLike" and not (present and _matches(values, actual)):
                return False
            if operator == "StringNotEquals" and present and actual in values:
                return False
    return True


def decision(document: Mapping[str, Any], action: str, resource: str,
             context: Mapping[str, str] | None = None) -> str:
    """"deny" (explicit), "allow" or "implicit deny" for one request against one policy document."""
    allowed = False
    for statement in document["Statement"]:
        if not _matches(statement["Action"], action) or not _matches(statement["Resource"], resource):
            continue
        if not _condition_holds(statement.get("Condition", {}), context or {}):
            continue
        if statement["Effect"] == "Deny":
            return "deny"
        allowed = True
    return "allow" if allowed else "implicit deny"
