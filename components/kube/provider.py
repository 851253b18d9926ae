"""The one Kubernetes provider every workload resource uses (never the ambient default)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.settings.schema import ExistingClusterSettings


def provider_for_cluster(name: str, kubeconfig: pulumi.Input[str], cluster: str,
                         opts: ResourceOptions | None = None) -> k8s.Provider:
    """A provider for the cluster this stack built, from its (secret) kubeconfig output.

    clusterIdentifier names the cluster, not its address: without it pulumi-kubernetes replaces the
    provider, and with it every object, whenever the kubeconfig changes or is not known during a
    preview (the readiness gate's output is not, on an update of the gate); with it, only a new
    identifier means a new cluster (pulumi-kubernetes provider DiffConfig).
    """
    identifier = f"{pulumi.get_project()}/{pulumi.get_stack()}/{cluster}"
    return k8s.Provider(name, kubeconfig=kubeconfig, cluster_identifier=identifier, enable_server_side_apply=True,
                        opts=opts)


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
