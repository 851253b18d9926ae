"""The labels every Kubernetes object of this project carries: what it is part of, and who manages it.

Kept out of selectors on purpose: selectors are immutable, ownership labels are not.
"""

from __future__ import annotations

from components.settings import PROJECT

OWNER_LABELS = {"app.kubernetes.io/part-of": PROJECT, "app.kubernetes.io/managed-by": "pulumi"}


def owned(labels: dict[str, str]) -> dict[str, str]:
    """`labels` plus the ownership labels."""
    return {**labels, **OWNER_LABELS}
