"""The one Kubernetes provider every workload resource uses (never the ambient default)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.settings.schema import ExistingClusterSettings


def provider_for_cluster(name: str, kubeconfig: pulumi.Input[str], opts: ResourceOptions | None = None) -> k8s.Provider:
    """A provider for the cluster this stack built, from its (secret) kubeconfig output."""
    return k8s.Provider(name, kubeconfig=kubeconfig, enable_server_side_apply=True, opts=opts)


def provider_for_existing(name: str, existing: ExistingClusterSettings) -> k8s.Provider:
    """A provider for a cluster that already exists, or one that only renders manifests.

    With renderYamlTo set the provider writes YAML instead of calling an API server, so
    `pulumi up` needs no cluster at all (the `local` stack).
    """
    return k8s.Provider(
        name,
        kubeconfig=existing.kubeconfig,
        context=existing.context,
        render_yaml_to_directory=existing.render_yaml_to,
        enable_server_side_apply=existing.render_yaml_to is None,
    )
