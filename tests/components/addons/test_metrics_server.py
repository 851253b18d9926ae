"""MetricsServer: upstream's objects wired to each other, verified TLS both ways, HA only when it helps."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi import ResourceOptions

from components import tokens
from components.addons import metrics_server
from components.addons.metrics_server import API_SERVICE_NAME, SERVICE_ACCOUNT_CA, MetricsServer, MetricsServerArgs
from components.pins import METRICS_SERVER_IMAGE
from policy.validators import Options, check_containers, violations
from tests.conftest import KUBERNETES_VERSION
from tests.graph import kinds, kube
from tools.harness.mocks import SECRET_TEXT, RecordingMonitor, Registration
from tools.harness.offline import Plan

COMPONENT = tokens.METRICS_SERVER
DEPLOYMENT = tokens.DEPLOYMENT
Build = Callable[..., Plan]


@pytest.fixture
def build(unit_mocks: RecordingMonitor) -> Build:
    """Builds the component alone (once per test) and returns what it registered."""

    def run(replicas: int = 2, options: Callable[[], ResourceOptions] | None = None) -> Plan:
        @pulumi.runtime.test
        def program() -> pulumi.Output[Any]:
            # Options are made inside the run: a provider given to the component must be registered there too.
            server = MetricsServer("metrics", MetricsServerArgs(replicas=replicas), options() if options else None)
            return pulumi.Output.all(server.api_service_name, server.deployment_name)

        program()
        return Plan(stack="unit", resources=list(unit_mocks.registrations))

    return run


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod(plan: Plan) -> dict[str, Any]:
    return dict(kube(plan, "Deployment", "metrics-server")["spec"]["template"])


def container(plan: Plan) -> dict[str, Any]:
    [only] = pod(plan)["spec"]["containers"]
    return dict(only)


def one(plan: Plan, type_token: str) -> Registration:
    [found] = plan.of_type(type_token)
    return found


# --------------------------------------------------------------------------
# The objects as the API server would receive them
# --------------------------------------------------------------------------

EXPECTED = {
    ("ServiceAccount", "metrics-server"),
    ("ClusterRole", "system:aggregated-metrics-reader"),
    ("ClusterRole", "system:metrics-server"),
    ("RoleBinding", "metrics-server-auth-reader"),
    ("ClusterRoleBinding", "metrics-server:system:auth-delegator"),
    ("ClusterRoleBinding", "system:metrics-server"),
    ("Secret", "metrics-server-tls"),
    ("Service", "metrics-server"),
    ("Deployment", "metrics-server"),
    ("NetworkPolicy", "metrics-server"),
    ("APIService", "v1beta1.metrics.k8s.io"),
}


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_every_object_validates_strictly_with_upstream_names(build: Build, replicas: int) -> None:
    plan = build(replicas)
    objects = plan.kubernetes_objects()
    pdb = {("PodDisruptionBudget", "metrics-server")} if replicas > 1 else set()
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} == EXPECTED | pdb
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        namespaced = obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "APIService")
        assert obj["metadata"].get("namespace") == ("kube-system" if namespaced else None), obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "atomic-mysql"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "pulumi"


def test_service_selects_the_pods_and_targets_the_container_port_by_name(build: Build) -> None:
    plan = build()
    deployment = kube(plan, "Deployment", "metrics-server")
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], template_labels)
    assert deployment["spec"]["selector"]["matchLabels"] == {"k8s-app": "metrics-server"}  # upstream's selector
    service = kube(plan, "Service", "metrics-server")
    assert selects(service["spec"]["selector"], template_labels)
    [port] = service["spec"]["ports"]
    named = {p["name"]: p for p in container(plan)["ports"]}
    assert port["targetPort"] in named, "the Service must target the container port by its name"
    assert (port["port"], port["protocol"], named[port["targetPort"]]["containerPort"]) == (443, "TCP", 10250)


def test_network_policy_leaves_only_the_serving_port_open(build: Build) -> None:
    plan = build()
    template_labels = pod(plan)["metadata"]["labels"]
    spec = kube(plan, "NetworkPolicy", "metrics-server")["spec"]
    assert selects(spec["podSelector"]["matchLabels"], template_labels)
    assert spec["policyTypes"] == ["Ingress"]
    [rule] = spec["ingress"]
    # From anywhere: the apiservers call it through the overlay, and the port authenticates every request.
    assert "from" not in rule
    assert rule["ports"] == [{"port": "https", "protocol": "TCP"}]
    assert "https" in {p["name"] for p in container(plan)["ports"]}


def test_api_service_points_at_that_service(build: Build) -> None:
    plan = build()
    service = kube(plan, "Service", "metrics-server")
    spec = kube(plan, "APIService", API_SERVICE_NAME)["spec"]
    assert spec["service"] == {
        "name": service["metadata"]["name"],
        "namespace": service["metadata"]["namespace"],
        "port": service["spec"]["ports"][0]["port"],
    }
    assert (spec["group"], spec["version"]) == ("metrics.k8s.io", "v1beta1")
    assert (spec["groupPriorityMinimum"], spec["versionPriority"]) == (100, 100)


def test_api_service_verifies_the_serving_certificate_it_was_issued_for(build: Build) -> None:
    """caBundle is the CA that signed the mounted certificate, for the name the aggregator checks."""
    plan = build()
    spec = kube(plan, "APIService", API_SERVICE_NAME)["spec"]
    assert spec.get("insecureSkipTLSVerify") is not True
    ca = one(plan, tokens.SELF_SIGNED_CERT)
    assert base64.b64decode(spec["caBundle"]).decode() == ca.state["certPem"]
    assert ca.inputs["isCaCertificate"] is True

    serving = one(plan, tokens.LOCALLY_SIGNED_CERT)
    assert serving.inputs["caCertPem"] == ca.state["certPem"]
    assert "server_auth" in serving.inputs["allowedUses"]
    request = one(plan, tokens.CERT_REQUEST)
    assert serving.inputs["certRequestPem"] == request.state["certRequestPem"]
    # kube-aggregator dials with ServerName <service>.<namespace>.svc, even when it routes to endpoint IPs.
    assert f"{spec['service']['name']}.{spec['service']['namespace']}.svc" in request.inputs["dnsNames"]

    secret = kube(plan, "Secret", "metrics-server-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["stringData"]["tls.key"] == SECRET_TEXT, "the serving key must stay a Pulumi secret"
    # The values themselves, as the provider would apply them (recorded state keeps secrets readable).
    applied = one(plan, tokens.SECRET).state["stringData"]
    keys = {r.name: r.state["privateKeyPem"] for r in plan.of_type(tokens.PRIVATE_KEY)}
    assert applied["tls.crt"] == serving.state["certPem"]
    assert applied["tls.key"] == keys["metrics-serving-key"] != keys["metrics-ca-key"]
    assert request.inputs["privateKeyPem"] == SECRET_TEXT


def test_the_container_serves_the_mounted_certificate(build: Build) -> None:
    plan = build()
    spec, main = pod(plan)["spec"], container(plan)
    args = dict(a.removeprefix("--").split("=", 1) for a in main["args"] if "=" in a)
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for flag, key in (("tls-cert-file", "tls.crt"), ("tls-private-key-file", "tls.key")):
        directory, file = args[flag].rsplit("/", 1)
        assert file == key
        volume = volumes[mounts[directory]["name"]]
        assert volume["secret"]["secretName"] == "metrics-server-tls"
        assert mounts[directory]["readOnly"] is True
    # Root-owned files: readable through the pod's fsGroup, not by others.
    assert volumes["tls"]["secret"]["defaultMode"] == 0o440
    assert spec["securityContext"]["fsGroup"] == main["securityContext"]["runAsUser"]
    assert args["secure-port"] == str(main["ports"][0]["containerPort"])


# --------------------------------------------------------------------------
# Identity and RBAC
# --------------------------------------------------------------------------


def test_the_service_account_is_the_one_every_binding_names(build: Build) -> None:
    plan = build()
    account = kube(plan, "ServiceAccount", "metrics-server")["metadata"]
    subject = {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    assert pod(plan)["spec"]["serviceAccountName"] == account["name"]
    bindings = kinds(plan, "RoleBinding") + kinds(plan, "ClusterRoleBinding")
    assert len(bindings) == 3
    for binding in bindings:
        assert binding["subjects"] == [subject], binding["metadata"]["name"]
    refs = {b["metadata"]["name"]: (b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings}
    assert refs == {
        "metrics-server-auth-reader": ("Role", "extension-apiserver-authentication-reader"),
        "metrics-server:system:auth-delegator": ("ClusterRole", "system:auth-delegator"),
        "system:metrics-server": ("ClusterRole", "system:metrics-server"),
    }
    assert kube(plan, "RoleBinding", "metrics-server-auth-reader")["metadata"]["namespace"] == "kube-system"
    # The role bound is the one this component defines.
    assert kube(plan, "ClusterRole", refs["system:metrics-server"][1])


def test_rbac_grants_exactly_what_metrics_server_reads(build: Build) -> None:
    plan = build()

    def rules(name: str) -> set[tuple[str, str, str]]:
        return {
            (group, resource, verb)
            for rule in kube(plan, "ClusterRole", name)["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }

    read = {"get", "list", "watch"}
    assert rules("system:metrics-server") == {("", "nodes/metrics", "get")} | {
        ("", resource, verb) for resource in ("pods", "nodes") for verb in read
    }
    assert rules("system:aggregated-metrics-reader") == {
        ("metrics.k8s.io", resource, verb) for resource in ("pods", "nodes") for verb in read
    }
    reader_labels = kube(plan, "ClusterRole", "system:aggregated-metrics-reader")["metadata"]["labels"]
    for role in ("view", "edit", "admin"):
        assert reader_labels[f"rbac.authorization.k8s.io/aggregate-to-{role}"] == "true"


# --------------------------------------------------------------------------
# Kubelet TLS, hardening, the review gates
# --------------------------------------------------------------------------


def test_kubelets_are_verified_against_the_cluster_ca(build: Build) -> None:
    plan = build()
    args = container(plan)["args"]
    assert "--kubelet-insecure-tls" not in args
    assert not [a for a in args if a.startswith(("--kubelet-insecure-tls", "--deprecated-kubelet-completely"))]
    assert f"--kubelet-certificate-authority={SERVICE_ACCOUNT_CA}" in args
    # Kubelet certificates carry the node's private IP only: any other address type would fail verification.
    assert "--kubelet-preferred-address-types=InternalIP" in args
    assert "--kubelet-use-node-status-port" in args
    assert "--metric-resolution=15s" in args
    # The CA file arrives with the service-account token volume: it must stay mounted.
    assert pod(plan)["spec"].get("automountServiceAccountToken") is not False


def test_container_is_hardened_with_https_probes(build: Build) -> None:
    plan = build()
    spec, main = pod(plan)["spec"], container(plan)
    context = main["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["runAsNonRoot"] is True and context["runAsUser"] >= 10000
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert main["image"] == METRICS_SERVER_IMAGE == "registry.k8s.io/metrics-server/metrics-server:v0.7.2"
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        assert main[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}, probe
    tmp = next(m for m in main["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == tmp["name"])
    assert "--cert-dir=/tmp" in main["args"]
    assert main["resources"]["requests"] == {"cpu": "100m", "memory": "200Mi"}


@pytest.mark.parametrize("replicas", [1, 2])
def test_policy_pack_passes(build: Build, replicas: int) -> None:
    plan = build(replicas)
    deployment = next(r for r in plan.of_type(DEPLOYMENT))
    assert check_containers(DEPLOYMENT, deployment.inputs, "unit", Options()) == []
    for resource in plan.resources:
        assert violations(resource.type, resource.inputs, "prod", Options(name=resource.name)) == {}, resource.name


def test_check_containers_would_catch_a_missing_limit(build: Build) -> None:
    """The gate above is not vacuous: it does see this Deployment's container."""
    deployment = next(r for r in build().of_type(DEPLOYMENT))
    inputs = deployment.inputs
    del inputs["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    assert check_containers(DEPLOYMENT, inputs, "unit", Options()) == [
        "containers 'metrics-server': no limits for memory"
    ]


# --------------------------------------------------------------------------
# Replicas, spreading and the disruption budget
# --------------------------------------------------------------------------


def test_one_replica_has_no_budget_and_surges_instead(build: Build) -> None:
    plan = build(1)
    assert kinds(plan, "PodDisruptionBudget") == []
    spec = kube(plan, "Deployment", "metrics-server")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "affinity" not in spec["template"]["spec"]


@pytest.mark.parametrize("replicas", [2, 3])
def test_several_replicas_spread_softly_and_keep_one_through_drains(build: Build, replicas: int) -> None:
    plan = build(replicas)
    deployment = kube(plan, "Deployment", "metrics-server")
    assert deployment["spec"]["replicas"] == replicas
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti, "must stay schedulable on one minion"
    [preferred] = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"]["matchLabels"], pod_labels)
    pdb = kube(plan, "PodDisruptionBudget", "metrics-server")["spec"]
    assert pdb["minAvailable"] == 1 and "maxUnavailable" not in pdb
    assert selects(pdb["selector"]["matchLabels"], pod_labels)
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 1


@pytest.mark.parametrize("replicas", [0, -1, True, 1.5])
def test_replicas_that_would_leave_the_api_without_a_backend_are_refused(replicas: Any) -> None:
    with pytest.raises(ValueError, match="replicas"):
        MetricsServerArgs(replicas=replicas)


def test_api_service_waits_for_its_backend(build: Build) -> None:
    plan = build()
    api_service = one(plan, tokens.API_SERVICE)
    deployment = one(plan, DEPLOYMENT)
    service = one(plan, tokens.SERVICE)
    assert {deployment.urn, service.urn} <= set(api_service.options["dependsOn"])


# --------------------------------------------------------------------------
# Wiring: provider, outputs
# --------------------------------------------------------------------------


def test_children_use_the_callers_provider_and_create_none(build: Build) -> None:
    def provider() -> ResourceOptions:
        return ResourceOptions(providers=[k8s.Provider("cluster", kubeconfig="{}")])

    plan = build(options=provider)
    [given] = plan.of_type(tokens.KUBERNETES_PROVIDER)
    assert given.parent != one(plan, COMPONENT).urn, "the component must not create a provider"
    children = [r for r in plan.resources if r.type.startswith("kubernetes:")]
    assert len(children) == 12
    for child in children:
        assert child.provider.startswith(f"{given.urn}::"), child.name
        assert child.parent == one(plan, COMPONENT).urn, child.name


def test_component_registers_its_outputs(build: Build) -> None:
    component = one(build(), COMPONENT)
    assert component.outputs == {"apiServiceName": API_SERVICE_NAME, "deploymentName": "metrics-server"}


@pulumi.runtime.test
def test_public_attributes_name_the_api_service_and_deployment(unit_mocks: RecordingMonitor) -> pulumi.Output[None]:
    server = MetricsServer("metrics", MetricsServerArgs(replicas=1))

    def check(values: list[str]) -> None:
        assert values == ["v1beta1.metrics.k8s.io", "metrics-server"]

    return pulumi.Output.all(server.api_service_name, server.deployment_name).apply(check)


# --------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------


def test_serving_names_lead_with_what_the_aggregator_checks() -> None:
    assert metrics_server.serving_dns_names() == [
        "metrics-server.kube-system.svc",
        "metrics-server.kube-system.svc.cluster.local",
    ]


def test_args_never_disable_kubelet_verification() -> None:
    args = metrics_server.container_args()
    assert len(args) == len(set(args))
    assert all(a.startswith("--") for a in args)
    assert not any("insecure" in a for a in args)
