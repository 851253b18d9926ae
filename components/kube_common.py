"""What every Kubernetes component here shares: ownership labels and how replicas spread.

Ownership labels stay out of selectors on purpose: selectors are immutable, ownership is not.
"""

from __future__ import annotations

import pulumi_kubernetes as k8s

from components.settings import PROJECT

OWNER_LABELS = {"app.kubernetes.io/part-of": PROJECT, "app.kubernetes.io/managed-by": "pulumi"}
HOSTNAME = "kubernetes.io/hostname"


def owned(labels: dict[str, str]) -> dict[str, str]:
    """`labels` plus the ownership labels."""
    return {**labels, **OWNER_LABELS}


def spread_by_host(selector: dict[str, str]) -> k8s.core.v1.AffinityArgs:
    """Prefer one replica per minion, never require it: a cluster with fewer minions than
    replicas (or one minion down) still gets every replica scheduled."""
    core, meta = k8s.core.v1, k8s.meta.v1
    term = core.PodAffinityTermArgs(label_selector=meta.LabelSelectorArgs(match_labels=selector), topology_key=HOSTNAME)
    return core.AffinityArgs(
        pod_anti_affinity=core.PodAntiAffinityArgs(
            preferred_during_scheduling_ignored_during_execution=[
                core.WeightedPodAffinityTermArgs(weight=100, pod_affinity_term=term)
            ]
        )
    )
