"""The kit every Kubernetes component here builds its objects from.

Metadata with the ownership labels, the restricted container security context, resources from
settings, probes, and how replicas spread. Ownership labels stay out of selectors on purpose:
selectors are immutable, ownership is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, cast

import pulumi
import pulumi_kubernetes as k8s

from components.facts import IMAGE_PULL_ALLOWANCE_SECONDS, PROJECT
from components.settings.schema import Resources

core = k8s.core.v1
meta = k8s.meta.v1

OWNER_LABELS = {"app.kubernetes.io/part-of": PROJECT, "app.kubernetes.io/managed-by": "pulumi"}
HOSTNAME = "kubernetes.io/hostname"
# The zone label every minion's kubelet registers with (node/files/.../atomic-kubelet-identity, from IMDS).
ZONE = "topology.kubernetes.io/zone"
ZoneSpread = Literal["required", "preferred"]


def owned(labels: Mapping[str, str]) -> dict[str, str]:
    """`labels` plus the ownership labels."""
    return {**labels, **OWNER_LABELS}


def metadata(name: str, *, labels: Mapping[str, str], namespace: pulumi.Input[str] | None = None,
             annotations: Mapping[str, str] | None = None) -> meta.ObjectMetaArgs:
    """An object's metadata: a fixed name (never auto-named), its labels, its namespace if namespaced."""
    return meta.ObjectMetaArgs(name=name, namespace=namespace, labels=dict(labels),
                               annotations=dict(annotations) if annotations else None)


def restricted(*, read_only_root: bool = True, add: Sequence[str] = (), **extra: object) -> core.SecurityContextArgs:
    """A container that cannot gain privileges and holds no capability but `add`: Pod Security's
    restricted profile where `add` is empty (and the pod runs as non-root with a seccomp profile)."""
    return core.SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=read_only_root,
        capabilities=core.CapabilitiesArgs(drop=["ALL"], add=list(add) or None),
        **extra,  # type: ignore[arg-type]
    )


def resources(spec: Resources) -> core.ResourceRequirementsArgs:
    """Requests and limits, both always set (the policy pack requires them)."""
    as_k8s = spec.to_k8s()
    return core.ResourceRequirementsArgs(requests=as_k8s["requests"], limits=as_k8s["limits"])


def http_probe(path: str, port: str | int, *, scheme: str | None = None, host: str | None = None,
               **timing: int | None) -> core.ProbeArgs:
    """An HTTP GET probe; `timing` are ProbeArgs' own fields (period_seconds, failure_threshold, ...)."""
    return core.ProbeArgs(http_get=core.HTTPGetActionArgs(path=path, port=port, host=host, scheme=scheme),
                          **timing)  # type: ignore[arg-type]


def exec_probe(command: Sequence[str], **timing: int | None) -> core.ProbeArgs:
    """A probe that runs `command` in the container; `timing` as for http_probe."""
    return core.ProbeArgs(exec_=core.ExecActionArgs(command=list(command)), **timing)  # type: ignore[arg-type]


def await_timeouts(create: int, update: int | None = None) -> pulumi.CustomTimeouts:
    """How long pulumi-kubernetes waits for a workload to become ready on create and on update (seconds),
    instead of its ten-minute default (docs/first-up.md). Deletes keep the provider's default."""
    return pulumi.CustomTimeouts(create=f"{create}s", update=f"{update or create}s")


# Kubernetes' own probe defaults, for fields a probe leaves unset.
_PROBE_DEFAULTS = {"initial_delay_seconds": 0, "period_seconds": 10, "failure_threshold": 3}


def _probe_seconds(probe: core.ProbeArgs | None) -> int:
    """The longest a probe may keep failing before the kubelet acts: initial delay + period x failures."""
    if probe is None:
        return 0
    value = {field: getattr(probe, field) or default for field, default in _PROBE_DEFAULTS.items()}
    return int(value["initial_delay_seconds"] + value["period_seconds"] * value["failure_threshold"])


def pod_ready_within(pod: core.PodSpecArgs) -> int:
    """How long one pod may take to become ready, from its own spec: every image pulled one after the
    other (the kubelet's serializeImagePulls default), then the slowest container's startup and
    readiness probes allowed to run out."""
    # Built here from plain lists of ContainerArgs (never Outputs), which is what the casts state.
    main = cast(list[core.ContainerArgs], pod.containers or [])
    init = cast(list[core.ContainerArgs], pod.init_containers or [])
    images = len({c.image for c in [*init, *main]})
    probes = max((_probe_seconds(cast(core.ProbeArgs | None, c.startup_probe))
                  + _probe_seconds(cast(core.ProbeArgs | None, c.readiness_probe)) for c in main), default=0)
    return images * IMAGE_PULL_ALLOWANCE_SECONDS + probes


def rollout_timeouts(pod: core.PodSpecArgs, update_batches: int) -> pulumi.CustomTimeouts:
    """The await budget of a Deployment or DaemonSet: on create every pod starts at once, on update
    `update_batches` rounds of pods replace each other (replicas / maxUnavailable)."""
    ready = pod_ready_within(pod)
    return await_timeouts(ready, ready * max(1, update_batches))


def spread_by_host(selector: Mapping[str, str]) -> core.AffinityArgs:
    """Prefer one replica per minion, never require it: a cluster with fewer minions than
    replicas (or one minion down) still gets every replica scheduled."""
    term = core.PodAffinityTermArgs(label_selector=meta.LabelSelectorArgs(match_labels=dict(selector)),
                                    topology_key=HOSTNAME)
    return core.AffinityArgs(
        pod_anti_affinity=core.PodAntiAffinityArgs(
            preferred_during_scheduling_ignored_during_execution=[
                core.WeightedPodAffinityTermArgs(weight=100, pod_affinity_term=term)
            ]
        )
    )


def spread_over_zones(selector: Mapping[str, str], how: ZoneSpread,
                      match_label_keys: Sequence[str] = ()) -> list[core.TopologySpreadConstraintArgs]:
    """At most one pod more in any zone than in any other.

    required (DoNotSchedule) where every node carries the zone label (this program's aws cluster):
    the scheduler places a pod only where the spread holds, which for a pod with a zonal volume is
    decided once, at its first placement (WaitForFirstConsumer). preferred (ScheduleAnyway) where
    nodes may lack the label (an existing cluster: kind has none), which only weighs the spread.
    nodeTaintsPolicy Honor: the nodes of a lost zone are tainted unreachable, and a zone whose nodes
    a pod cannot go to does not count, so losing a zone never makes the others unschedulable (with
    the default, Ignore, the empty lost zone would hold the skew at its maximum). `match_label_keys`
    (pod-template-hash for a Deployment) spreads each revision on its own during a rollout.
    """
    return [core.TopologySpreadConstraintArgs(
        max_skew=1,
        topology_key=ZONE,
        when_unsatisfiable="DoNotSchedule" if how == "required" else "ScheduleAnyway",
        label_selector=meta.LabelSelectorArgs(match_labels=dict(selector)),
        node_taints_policy="Honor",
        match_label_keys=list(match_label_keys) or None,
    )]
