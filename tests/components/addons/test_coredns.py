"""CoreDNS: the Corefile as a pure function, and the component's objects under mocks."""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from typing import Any

import kubernetes_validate
import pulumi
import pytest

from components import pins, tokens
from components.addons import coredns
from components.addons.coredns import CoreDns, CoreDnsArgs, render_corefile
from policy.validators import Options, check_containers
from tests.conftest import KUBERNETES_VERSION
from tools.harness.mocks import RecordingMonitor

COMPONENT_TYPE = tokens.CORE_DNS
KINDS = {
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "NetworkPolicy",
}
EXPECTED_PLUGINS = [
    "errors",
    "health",
    "ready",
    "kubernetes",
    "prometheus",
    "forward",
    "cache",
    "loop",
    "reload",
    "loadbalance",
]


# --------------------------------------------------------------------------
# A minimal Corefile reader (CoreDNS's own grammar: directives, `{` blocks, `}` on its own line)
# --------------------------------------------------------------------------


@dataclass
class Directive:
    tokens: list[str]
    children: list[Directive]

    @property
    def name(self) -> str:
        return self.tokens[0]

    @property
    def args(self) -> list[str]:
        return self.tokens[1:]


def parse_corefile(text: str) -> list[Directive]:
    """Server blocks with their plugins; raises ValueError when braces do not balance."""
    root = Directive(["<root>"], [])
    stack = [root]
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line == "}":
            if len(stack) == 1:
                raise ValueError(f"line {number}: '}}' closes no block")
            stack.pop()
            continue
        if "}" in line or line.count("{") > 1 or ("{" in line and not line.endswith("{")):
            raise ValueError(f"line {number}: braces must open at a line's end and close on their own line")
        opens = line.endswith("{")
        tokens = line.removesuffix("{").split()
        if not tokens:
            raise ValueError(f"line {number}: a block opened by no directive")
        directive = Directive(tokens, [])
        stack[-1].children.append(directive)
        if opens:
            stack.append(directive)
    if len(stack) != 1:
        raise ValueError(f"{len(stack) - 1} block(s) never closed: {[d.name for d in stack[1:]]}")
    return root.children


def plugins(text: str) -> dict[str, Directive]:
    (server,) = parse_corefile(text)
    assert server.tokens == [".:53"]
    names = [d.name for d in server.children]
    assert len(names) == len(set(names)), names
    return {d.name: d for d in server.children}


# --------------------------------------------------------------------------
# render_corefile
# --------------------------------------------------------------------------


@pytest.mark.parametrize("domain", ["cluster.local", "prod.example.internal"])
def test_kubernetes_zone_is_the_cluster_domain_plus_reverse_zones(domain: str) -> None:
    kubernetes = plugins(render_corefile(domain))["kubernetes"]
    assert kubernetes.args == [domain, "in-addr.arpa", "ip6.arpa"]
    settings = {d.name: d.args for d in kubernetes.children}
    assert settings == {"pods": ["insecure"], "fallthrough": ["in-addr.arpa", "ip6.arpa"], "ttl": ["30"]}


def test_corefile_has_kubeadms_plugins_in_order_and_forwards_to_the_nodes_resolver() -> None:
    found = plugins(render_corefile("cluster.local"))
    assert list(found) == EXPECTED_PLUGINS
    assert found["forward"].args == [".", "/etc/resolv.conf"]
    assert [d.tokens for d in found["forward"].children] == [["max_concurrent", "1000"]]
    assert [d.tokens for d in found["health"].children] == [["lameduck", "5s"]]
    assert found["prometheus"].args == [f":{coredns.METRICS_PORT}"]
    assert found["cache"].args == ["30"]


def test_every_plugin_block_balances_its_braces() -> None:
    text = render_corefile("cluster.local")
    assert text.count("{") == text.count("}") == 4  # the server block, health, kubernetes, forward
    blocks = [d for d in plugins(text).values() if d.children]
    assert [d.name for d in blocks] == ["health", "kubernetes", "forward"]
    # The reader really rejects what CoreDNS would reject.
    for broken in (text.replace("    }\n", "", 1), text + "}\n", text.replace("ttl 30", "ttl 30 }")):
        with pytest.raises(ValueError):
            parse_corefile(broken)


def test_another_domain_changes_exactly_the_kubernetes_line() -> None:
    before = render_corefile("cluster.local").splitlines()
    after = render_corefile("k8s.example.internal").splitlines()
    changed = [line for line in difflib.ndiff(before, after) if line[:2] in ("- ", "+ ")]
    assert changed == [
        "-     kubernetes cluster.local in-addr.arpa ip6.arpa {",
        "+     kubernetes k8s.example.internal in-addr.arpa ip6.arpa {",
    ]


@pytest.mark.parametrize("domain", ["", "Cluster.Local", "cluster.local.", "a b", "x{", "-bad.local", "a" * 64])
def test_a_domain_that_would_break_the_corefile_is_refused(domain: str) -> None:
    with pytest.raises(ValueError):
        render_corefile(domain)


def test_image_is_pinned() -> None:
    assert pins.COREDNS_IMAGE == "registry.k8s.io/coredns/coredns:v1.11.3"


@pytest.mark.parametrize(
    "fields",
    [
        {"service_ip": "10.254.0", "replicas": 2},
        {"service_ip": "10.254.0.10", "replicas": 0},
        {"service_ip": "10.254.0.10", "replicas": True},
        {"service_ip": "10.254.0.10", "replicas": 2, "cluster_domain": "cluster.local."},
    ],
)
def test_args_that_cannot_work_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CoreDnsArgs(**fields)


# --------------------------------------------------------------------------
# The component under mocks
# --------------------------------------------------------------------------


@dataclass
class Rendered:
    args: CoreDnsArgs
    objects: dict[str, dict[str, Any]]  # by kind: each kind exactly once
    types: dict[str, str]  # kind -> the registration's type token
    component_outputs: dict[str, Any]

    @property
    def deployment(self) -> dict[str, Any]:
        return self.objects["Deployment"]

    @property
    def pod(self) -> dict[str, Any]:
        return dict(self.deployment["spec"]["template"])

    @property
    def container(self) -> dict[str, Any]:
        (container,) = self.pod["spec"]["containers"]
        return dict(container)


def render(monitor: RecordingMonitor, args: CoreDnsArgs) -> Rendered:
    """Build the component alone, wait for every registration, and read back what was registered."""

    @pulumi.runtime.test
    def build() -> pulumi.Output[Any]:
        component = CoreDns("dns", args)
        children = (
            component.service_account,
            component.cluster_role,
            component.cluster_role_binding,
            component.config_map,
            component.deployment,
            component.service,
            component.pdb,
            component.network_policy,
        )
        return pulumi.Output.all(*(child.id for child in children))

    build()
    objects: dict[str, dict[str, Any]] = {}
    types: dict[str, str] = {}
    for registration in monitor.registrations:
        if registration.custom and registration.type.startswith("kubernetes:"):
            kind = registration.inputs["kind"]
            assert kind not in objects, f"two {kind}s"
            objects[kind], types[kind] = registration.inputs, registration.type
    (component,) = [r for r in monitor.registrations if r.type == COMPONENT_TYPE]
    return Rendered(args, objects, types, component.outputs)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


ARGS = [
    CoreDnsArgs(service_ip="10.254.0.10", replicas=1),
    CoreDnsArgs(service_ip="172.20.0.10", replicas=3, cluster_domain="k8s.example.internal"),
]


@pytest.fixture(params=ARGS, ids=lambda a: f"replicas{a.replicas}")
def rendered(request: pytest.FixtureRequest, unit_mocks: RecordingMonitor) -> Rendered:
    return render(unit_mocks, request.param)


def test_every_object_validates_strictly_in_kube_system(rendered: Rendered) -> None:
    assert set(rendered.objects) == KINDS
    for kind, obj in rendered.objects.items():
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        metadata = obj["metadata"]
        if kind.startswith("Cluster"):
            assert "namespace" not in metadata, kind
        else:
            assert metadata["namespace"] == "kube-system", kind
        assert metadata["labels"]["k8s-app"] == "kube-dns", kind
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "atomic-mysql", kind
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "pulumi", kind
    names = {kind: obj["metadata"]["name"] for kind, obj in rendered.objects.items()}
    assert names == {
        "ServiceAccount": "coredns",
        "ClusterRole": "system:coredns",
        "ClusterRoleBinding": "system:coredns",
        "ConfigMap": "coredns",
        "Deployment": "coredns",
        "Service": "kube-dns",
        "PodDisruptionBudget": "coredns",
        "NetworkPolicy": "coredns",
    }


def test_service_has_the_fixed_dns_ip_and_selects_the_pods(rendered: Rendered) -> None:
    service = rendered.objects["Service"]
    assert service["spec"]["clusterIP"] == rendered.args.service_ip
    template_labels = rendered.pod["metadata"]["labels"]
    assert selects(service["spec"]["selector"], template_labels)
    assert selects(rendered.deployment["spec"]["selector"]["matchLabels"], template_labels)
    assert service["metadata"]["annotations"] == {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}
    container_ports = {p["name"]: (p["containerPort"], p["protocol"]) for p in rendered.container["ports"]}
    service_ports = {p["name"]: (p["port"], p["protocol"]) for p in service["spec"]["ports"]}
    assert service_ports == {"dns": (53, "UDP"), "dns-tcp": (53, "TCP"), "metrics": (9153, "TCP")}
    for port in service["spec"]["ports"]:
        # Each port reaches the container port of the same name, number and protocol.
        assert container_ports[port["targetPort"]] == (port["port"], port["protocol"]), port


def disruptions_allowed(pdb_spec: dict[str, Any], replicas: int, healthy: int) -> int:
    """What the disruption controller computes for integer budgets over a scaled workload."""
    if "maxUnavailable" in pdb_spec:
        desired_healthy = replicas - int(pdb_spec["maxUnavailable"])
    else:
        desired_healthy = int(pdb_spec["minAvailable"])
    return max(0, healthy - desired_healthy)


def test_pdb_selects_the_pods_and_never_blocks_a_drain(rendered: Rendered) -> None:
    pdb = rendered.objects["PodDisruptionBudget"]["spec"]
    assert selects(pdb["selector"]["matchLabels"], rendered.pod["metadata"]["labels"])
    replicas = rendered.deployment["spec"]["replicas"]
    assert replicas == rendered.args.replicas
    # A drain may always evict one pod, and never a second while the first is not back.
    assert disruptions_allowed(pdb, replicas, healthy=replicas) == 1
    if replicas > 1:
        assert disruptions_allowed(pdb, replicas, healthy=replicas - 1) == 0
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert rendered.deployment["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}


def test_a_min_available_budget_would_block_the_single_replica_drain() -> None:
    # The helper above is not vacuous: the budget the component avoids does block.
    assert disruptions_allowed({"minAvailable": 1}, 1, healthy=1) == 0


def test_network_policy_admits_every_served_port_from_anywhere(rendered: Rendered) -> None:
    spec = rendered.objects["NetworkPolicy"]["spec"]
    assert selects(spec["podSelector"]["matchLabels"], rendered.pod["metadata"]["labels"])
    assert spec["policyTypes"] == ["Ingress"]  # egress to the API server and upstream resolvers stays open
    (rule,) = spec["ingress"]
    assert "from" not in rule  # every pod and node is a client; the kubelet probes from the node
    admitted = {(p["port"], p["protocol"]) for p in rule["ports"]}
    served = {(p["containerPort"], p["protocol"]) for p in rendered.container["ports"]}
    assert admitted == served


def test_containers_pass_the_policy_pack(rendered: Rendered) -> None:
    for kind, obj in rendered.objects.items():
        assert check_containers(rendered.types[kind], obj, "unit", Options()) == [], kind
    # The check looks at this Deployment: without a CPU limit it fails.
    stripped = copy.deepcopy(rendered.deployment)
    del stripped["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]
    assert check_containers(rendered.types["Deployment"], stripped, "unit", Options()) == [
        "containers 'coredns': no limits for cpu"
    ]


def test_the_mounted_config_map_key_is_the_file_coredns_is_told_to_read(rendered: Rendered) -> None:
    args = rendered.container["args"]
    conf = args[args.index("-conf") + 1]
    (mount,) = rendered.container["volumeMounts"]
    (volume,) = rendered.pod["spec"]["volumes"]
    assert volume["name"] == mount["name"] and mount["readOnly"] is True
    config_map = rendered.objects["ConfigMap"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    (item,) = volume["configMap"]["items"]
    assert f"{mount['mountPath']}/{item['path']}" == conf
    assert config_map["data"][item["key"]] == render_corefile(rendered.args.cluster_domain)


def test_the_binding_grants_the_role_to_the_deployments_service_account(rendered: Rendered) -> None:
    binding = rendered.objects["ClusterRoleBinding"]
    account = rendered.objects["ServiceAccount"]["metadata"]
    pod = rendered.pod["spec"]
    assert pod["serviceAccountName"] == account["name"]
    assert pod["automountServiceAccountToken"] is True
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": rendered.deployment["metadata"]["namespace"]}
    ]
    role = rendered.objects["ClusterRole"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    granted = {
        (group, res, verb)
        for r in role["rules"]
        for group in r["apiGroups"]
        for res in r["resources"]
        for verb in r["verbs"]
    }
    expected = {
        ("", res, verb) for res in ("endpoints", "services", "pods", "namespaces") for verb in ("list", "watch")
    }
    expected |= {("discovery.k8s.io", "endpointslices", verb) for verb in ("list", "watch")}
    assert granted == expected  # read-only, nothing beyond what the kubernetes plugin watches


def test_pods_are_hardened_and_resolve_through_the_node(rendered: Rendered) -> None:
    pod, container = rendered.pod["spec"], rendered.container
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": coredns.COREDNS_UID,
        "runAsGroup": coredns.COREDNS_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert coredns.COREDNS_UID >= 10000
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
    }
    assert pod["dnsPolicy"] == "Default"
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert container["image"] == pins.COREDNS_IMAGE
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "70Mi"},
        "limits": {"cpu": "1", "memory": "170Mi"},
    }
    probes = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert probes[container["livenessProbe"]["httpGet"]["port"]] == 8080
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert probes[container["readinessProbe"]["httpGet"]["port"]] == 8181
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selected = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selected and all(rendered.pod["metadata"]["labels"][k] == v for k, v in selected.items())
    assert "nodeSelector" not in pod or "node-role.kubernetes.io/control-plane" not in pod["nodeSelector"]


def test_component_registers_the_service_ip_and_deployment_name(rendered: Rendered) -> None:
    assert rendered.component_outputs == {"serviceIp": rendered.args.service_ip, "deploymentName": "coredns"}


@pulumi.runtime.test
def test_public_outputs_come_from_the_created_objects(unit_mocks: RecordingMonitor) -> pulumi.Output[None]:
    args = CoreDnsArgs(service_ip="10.96.0.10", replicas=2)
    component = CoreDns("dns", args)

    def check(values: list[Any]) -> None:
        service_ip, deployment_name, cluster_ip, name = values
        assert service_ip == cluster_ip == "10.96.0.10"
        assert deployment_name == name == "coredns"

    return pulumi.Output.all(
        component.service_ip,
        component.deployment_name,
        component.service.spec.cluster_ip,
        component.deployment.metadata.name,
    ).apply(check)
