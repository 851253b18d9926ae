"""EbsCsiDriver: the objects under mocks against their real consumers (kubernetes-validate, the
policy pack, checkov), the RBAC each sidecar needs, ports and sockets, and the IAM policy both
on its own and as the whole program attaches it to the minions."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any

import kubernetes_validate
import pulumi
import pytest

from components import facts, pins, tokens
from components.addons import ebs_csi
from components.addons.ebs_csi import EbsCsiDriver, EbsCsiDriverArgs
from components.aws.iam import ebs_csi_policy
from components.settings.schema import DataVolumeSettings
from policy.validators import Options, check_containers
from tests.conftest import KUBERNETES_VERSION
from tools.harness.mocks import RecordingMonitor
from tools.harness.offline import Plan, run_program

COMPONENT_TYPE = tokens.EBS_CSI_DRIVER
NS = "kube-system"

ARGS = [
    EbsCsiDriverArgs(
        cluster_id="atomic-dev",
        region="us-east-1",
        storage_class="gp3",
        reclaim_policy="Delete",
        tags={"Project": "atomic-mysql", "Owner": "dev team", "ManagedBy": "pulumi"},
        data_volume=DataVolumeSettings(storage_class="gp3-mysql", iops=4000, throughput_mibs=600),
    ),
    EbsCsiDriverArgs(
        cluster_id="prod.cluster_1",
        region="eu-central-1",
        storage_class="ebs-gp3",
        reclaim_policy="Retain",
        controller_replicas=3,
    ),
]


# --------------------------------------------------------------------------
# Rendering the component alone
# --------------------------------------------------------------------------


@dataclass
class Rendered:
    args: EbsCsiDriverArgs
    objects: dict[tuple[str, str], dict[str, Any]]  # (kind, name) -> object
    types: dict[tuple[str, str], str]  # (kind, name) -> the registration's type token
    outputs: dict[str, Any]
    options: dict[tuple[str, str], dict[str, Any]]  # (kind, name) -> the registration's resource options

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.objects[(kind, name)]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for (k, _), obj in self.objects.items() if k == kind]

    @property
    def controller(self) -> dict[str, Any]:
        return self.get("Deployment", "ebs-csi-controller")

    @property
    def node(self) -> dict[str, Any]:
        return self.get("DaemonSet", "ebs-csi-node")

    @property
    def controller_pod(self) -> dict[str, Any]:
        return dict(self.controller["spec"]["template"]["spec"])

    @property
    def node_pod(self) -> dict[str, Any]:
        return dict(self.node["spec"]["template"]["spec"])


def render(monitor: RecordingMonitor, args: EbsCsiDriverArgs) -> Rendered:
    @pulumi.runtime.test
    def build() -> pulumi.Output[Any]:
        driver = EbsCsiDriver("ebs", args)
        children = (driver.csi_driver, driver.controller, driver.pdb, driver.node, driver.node_network_policy)
        return pulumi.Output.all(driver.storage_class_name, driver.driver_name, *(c.id for c in children))

    build()
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    types: dict[tuple[str, str], str] = {}
    options: dict[tuple[str, str], dict[str, Any]] = {}
    for registration in monitor.registrations:
        if registration.custom and registration.type.startswith("kubernetes:"):
            key = (registration.inputs["kind"], registration.inputs["metadata"]["name"])
            assert key not in objects, f"two {key}"
            objects[key], types[key] = registration.inputs, registration.type
            options[key] = registration.options
    (component,) = [r for r in monitor.registrations if r.type == COMPONENT_TYPE]
    return Rendered(args, objects, types, component.outputs, options)


@pytest.fixture(params=ARGS, ids=lambda a: a.cluster_id)
def rendered(request: pytest.FixtureRequest, unit_mocks: RecordingMonitor) -> Rendered:
    return render(unit_mocks, request.param)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod["containers"] if c["name"] == name]
    return dict(found)


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def flag(c: dict[str, Any], name: str) -> str | None:
    """The value of --name=value in a container's args, None when absent."""
    values = [a.split("=", 1)[1] for a in c.get("args", []) if a.startswith(f"--{name}=")]
    assert len(values) <= 1, values
    return values[0] if values else None


# --------------------------------------------------------------------------
# Objects, names, selectors
# --------------------------------------------------------------------------

EXPECTED = {
    ("CSIDriver", "ebs.csi.aws.com"),
    ("ServiceAccount", "ebs-csi-controller-sa"),
    ("ServiceAccount", "ebs-csi-node-sa"),
    ("ClusterRole", "ebs-external-provisioner-role"),
    ("ClusterRole", "ebs-external-attacher-role"),
    ("ClusterRole", "ebs-external-resizer-role"),
    ("ClusterRole", "ebs-csi-node-role"),
    ("ClusterRoleBinding", "ebs-csi-provisioner-binding"),
    ("ClusterRoleBinding", "ebs-csi-attacher-binding"),
    ("ClusterRoleBinding", "ebs-csi-resizer-binding"),
    ("ClusterRoleBinding", "ebs-csi-node-getter-binding"),
    ("Role", "ebs-csi-leases-role"),
    ("RoleBinding", "ebs-csi-leases-rolebinding"),
    ("Deployment", "ebs-csi-controller"),
    ("PodDisruptionBudget", "ebs-csi-controller"),
    ("DaemonSet", "ebs-csi-node"),
    ("NetworkPolicy", "ebs-csi-node"),
}
CLUSTER_SCOPED = {"CSIDriver", "ClusterRole", "ClusterRoleBinding", "StorageClass"}


def storage_classes(args: EbsCsiDriverArgs) -> set[tuple[str, str]]:
    data = args.data_volume
    return {("StorageClass", args.storage_class)} | ({("StorageClass", data.storage_class)} if data else set())


def test_every_object_validates_strictly_under_upstreams_names(rendered: Rendered) -> None:
    assert set(rendered.objects) == EXPECTED | storage_classes(rendered.args)
    for (kind, name), obj in rendered.objects.items():
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        metadata = obj["metadata"]
        assert ("namespace" in metadata) == (kind not in CLUSTER_SCOPED), (kind, name)
        assert metadata.get("namespace", NS) == NS, (kind, name)
        assert metadata["labels"]["app.kubernetes.io/name"] == "aws-ebs-csi-driver", (kind, name)
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "atomic-mysql", (kind, name)
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "pulumi", (kind, name)
    data = rendered.args.data_volume
    assert rendered.outputs == {"storageClassName": rendered.args.storage_class, "driverName": "ebs.csi.aws.com",
                                "dataStorageClassName": data.storage_class if data else ""}


def test_strict_validation_is_not_vacuous(rendered: Rendered) -> None:
    broken = copy.deepcopy(rendered.controller)
    broken["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_selectors_select_their_own_templates_and_nothing_else(rendered: Rendered) -> None:
    controller_labels = rendered.controller["spec"]["template"]["metadata"]["labels"]
    node_labels = rendered.node["spec"]["template"]["metadata"]["labels"]
    # Upstream's selector labels, so kubectl habits (-l app=ebs-csi-controller) still work.
    assert rendered.controller["spec"]["selector"]["matchLabels"] == {
        "app": "ebs-csi-controller",
        "app.kubernetes.io/name": "aws-ebs-csi-driver",
    }
    assert rendered.node["spec"]["selector"]["matchLabels"]["app"] == "ebs-csi-node"
    for workload, own, other in (
        (rendered.controller, controller_labels, node_labels),
        (rendered.node, node_labels, controller_labels),
    ):
        assert selects(workload["spec"]["selector"]["matchLabels"], own)
        assert not selects(workload["spec"]["selector"]["matchLabels"], other)
    pdb = rendered.get("PodDisruptionBudget", "ebs-csi-controller")["spec"]
    assert selects(pdb["selector"]["matchLabels"], controller_labels)
    assert not selects(pdb["selector"]["matchLabels"], node_labels)
    assert pdb["maxUnavailable"] == 1 and pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    netpol = rendered.get("NetworkPolicy", "ebs-csi-node")["spec"]
    assert selects(netpol["podSelector"]["matchLabels"], node_labels)
    assert netpol["policyTypes"] == ["Ingress"] and not netpol.get("ingress")
    (term,) = rendered.controller_pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["podAffinityTerm"]["labelSelector"]["matchLabels"], controller_labels)
    assert (
        "requiredDuringSchedulingIgnoredDuringExecution" not in rendered.controller_pod["affinity"]["podAntiAffinity"]
    )


def test_csidriver_and_storage_class(rendered: Rendered) -> None:
    csidriver = rendered.get("CSIDriver", "ebs.csi.aws.com")["spec"]
    assert csidriver == {"attachRequired": True, "podInfoOnMount": False, "fsGroupPolicy": "File"}
    sc = rendered.get("StorageClass", rendered.args.storage_class)
    assert sc["provisioner"] == "ebs.csi.aws.com" == rendered.outputs["driverName"]
    assert sc["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert sc["parameters"] == {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"}
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc["allowVolumeExpansion"] is True
    assert sc["reclaimPolicy"] == rendered.args.reclaim_policy
    marker = "storageclass.kubernetes.io/is-default-class"
    defaults = [c for c in rendered.of_kind("StorageClass") if (c["metadata"].get("annotations") or {}).get(marker)]
    assert defaults == [sc], "exactly one default class"
    # Parameters are immutable and the names fixed: a replacement must delete the old class first.
    for key in storage_classes(rendered.args):
        assert rendered.options[key]["deleteBeforeReplace"] is True, key


def test_the_data_volumes_class_provisions_their_iops_and_throughput(rendered: Rendered) -> None:
    data = rendered.args.data_volume
    if data is None:
        assert len(rendered.of_kind("StorageClass")) == 1
        return
    sc = rendered.get("StorageClass", data.storage_class)
    default = rendered.get("StorageClass", rendered.args.storage_class)
    assert "annotations" not in sc["metadata"], "not a second default"
    provisioned = {"iops": str(data.iops), "throughput": str(data.throughput_mibs)}
    assert sc["parameters"] == {**default["parameters"], **provisioned}
    for field_name in ("provisioner", "volumeBindingMode", "allowVolumeExpansion", "reclaimPolicy"):
        assert sc[field_name] == default[field_name], field_name


# (size GiB, IOPS, MiB/s) -> what gp3_problem blames; AWS's bounds as raised in 2025-09 (facts.py).
GP3_CASES = [
    ((1, 3000, 125), None),  # the baseline is valid at any size, though 1 GiB x 500 < 3000
    ((5, 3000, 750), None),  # 0.25 MiB/s per IOPS
    ((160, 80000, 2000), None),  # the raised maxima
    ((16, 8000, 2000), None),  # 2000 MiB/s needs 8000 IOPS, which needs 16 GiB
    ((65536, 3000, 125), None),  # 64 TiB
    ((0, 3000, 125), "size"),
    ((65537, 3000, 125), "size"),
    ((100, 2999, 125), "iops"),
    ((200, 80001, 125), "iops"),
    ((15, 7501, 125), "iops"),  # 500 per GiB
    ((100, 3000, 124), "throughput"),
    ((100, 12000, 2001), "throughput"),
    ((100, 3999, 1000), "throughput"),  # 0.25 MiB/s per IOPS
]


@pytest.mark.parametrize(("volume", "blamed"), GP3_CASES, ids=[str(v) for v, _ in GP3_CASES])
def test_gp3_bounds_are_awss(volume: tuple[int, int, int], blamed: str | None) -> None:
    problem = facts.gp3_problem(*volume)
    assert (problem[0] if problem else None) == blamed, problem


# --------------------------------------------------------------------------
# ServiceAccounts and RBAC
# --------------------------------------------------------------------------

# What each container does against the API (kubernetes-csi's RBAC for the sidecars at these versions;
# the driver's node plugin: Node get/patch + informer, CSINode get, pre-stop VolumeAttachment wait).
# (apiGroup, resource, verb, namespace or None for cluster-wide)
Need = tuple[str, str, str, str | None]


def wide(group: str, resource: str, *verbs: str) -> list[Need]:
    return [(group, resource, verb, None) for verb in verbs]


READ = ("get", "list", "watch")
LEASES: list[Need] = [("coordination.k8s.io", "leases", verb, NS) for verb in ("get", "create", "update")]
NEEDS: dict[str, list[Need]] = {
    "csi-provisioner": wide("", "persistentvolumes", *READ, "create", "delete")
    + wide("", "persistentvolumeclaims", *READ, "update")
    + wide("storage.k8s.io", "storageclasses", *READ)
    + wide("storage.k8s.io", "csinodes", *READ)
    + wide("", "nodes", *READ)
    + wide("", "events", "create", "patch")
    + LEASES,
    "csi-attacher": wide("", "persistentvolumes", *READ, "patch")
    + wide("storage.k8s.io", "volumeattachments", *READ, "patch")
    + wide("storage.k8s.io", "volumeattachments/status", "patch")
    + wide("storage.k8s.io", "csinodes", *READ)
    + LEASES,
    "csi-resizer": wide("", "persistentvolumes", *READ, "patch")
    + wide("", "persistentvolumeclaims", *READ)
    + wide("", "persistentvolumeclaims/status", "patch")
    + wide("", "pods", "list")
    + wide("", "events", "create", "patch")
    + LEASES,
    "node/ebs-plugin": wide("", "nodes", "get", "patch", "list", "watch")
    + wide("storage.k8s.io", "csinodes", "get")
    + wide("storage.k8s.io", "volumeattachments", "list"),
}


def granted(objects: dict[tuple[str, str], dict[str, Any]], account: str, namespace: str) -> set[tuple[Any, ...]]:
    """Every (group, resource, verb, scope) the bindings give a ServiceAccount; scope None = cluster-wide."""
    out: set[tuple[Any, ...]] = set()
    for (kind, _), binding in objects.items():
        if kind not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        subjects = binding.get("subjects", [])
        if not any(s == {"kind": "ServiceAccount", "name": account, "namespace": namespace} for s in subjects):
            continue
        ref = binding["roleRef"]
        role = objects.get((ref["kind"], ref["name"]))
        assert role is not None, f"{kind} {binding['metadata']['name']} refers to a missing {ref}"
        scope = None if kind == "ClusterRoleBinding" else binding["metadata"]["namespace"]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    out |= {(group, resource, verb, scope) for verb in rule["verbs"]}
    return out


def missing(needs: list[Need], have: set[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Needs that no grant covers (a cluster-wide grant covers every namespace)."""
    return [n for n in needs if n not in have and (*n[:3], None) not in have]


def test_every_referenced_service_account_exists_and_is_bound_to_what_its_containers_need(rendered: Rendered) -> None:
    accounts = {name for kind, name in rendered.objects if kind == "ServiceAccount"}
    pods = {"controller": rendered.controller_pod, "node": rendered.node_pod}
    for which, pod in pods.items():
        assert pod["serviceAccountName"] in accounts, which
        assert pod["automountServiceAccountToken"] is True, which
        have = granted(rendered.objects, pod["serviceAccountName"], NS)
        for c in pod["containers"]:
            needs = NEEDS.get(c["name"]) or NEEDS.get(f"{which}/{c['name']}") or []
            assert missing(needs, have) == [], f"{which}/{c['name']}"
    # The controller's token does not carry the node plugin's Node patch, and the other way round.
    node_have = granted(rendered.objects, "ebs-csi-node-sa", NS)
    controller_have = granted(rendered.objects, "ebs-csi-controller-sa", NS)
    assert ("", "nodes", "patch", None) not in controller_have
    assert ("", "persistentvolumes", "create", None) not in node_have
    # No rule grants a wildcard or touches Secrets.
    for kind in ("ClusterRole", "Role"):
        for role in rendered.of_kind(kind):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], role["metadata"]["name"]
                assert "secrets" not in rule["resources"], role["metadata"]["name"]


def test_the_rbac_check_fails_when_a_binding_is_missing(rendered: Rendered) -> None:
    without = {k: v for k, v in rendered.objects.items() if k != ("ClusterRoleBinding", "ebs-csi-provisioner-binding")}
    have = granted(without, "ebs-csi-controller-sa", NS)
    assert ("", "persistentvolumes", "create", None) in missing(NEEDS["csi-provisioner"], have)
    # A namespaced grant in another namespace does not count.
    assert missing(LEASES, {("coordination.k8s.io", "leases", v, "default") for v in ("get", "create", "update")})


# --------------------------------------------------------------------------
# Pods: host network, ports, sockets, metadata
# --------------------------------------------------------------------------

ENDPOINT = re.compile(r"^(?P<host>[^:]*):(?P<port>\d+)$")


def listeners(pod: dict[str, Any]) -> dict[int, tuple[str, str]]:
    """Every TCP port a container of the pod listens on -> (container, address it binds)."""
    found: dict[int, tuple[str, str]] = {}
    for c in pod["containers"]:
        endpoint, health_port = flag(c, "http-endpoint"), flag(c, "health-port")
        bound = []
        if endpoint is not None:
            match = ENDPOINT.match(endpoint)
            assert match, endpoint
            bound.append((int(match["port"]), match["host"] or "0.0.0.0"))
        if health_port is not None:
            bound.append((int(health_port), "0.0.0.0"))
        for port, host in bound:
            assert port not in found, f"port {port} bound by {found.get(port)} and {c['name']}"
            found[port] = (c["name"], host)
    return found


def declared(pod: dict[str, Any]) -> dict[int, str]:
    out: dict[int, str] = {}
    for c in pod["containers"]:
        for p in c.get("ports", []):
            assert p["containerPort"] not in out, f"port {p['containerPort']} declared twice"
            out[p["containerPort"]] = c["name"]
    return out


def probe_targets(pod: dict[str, Any]) -> list[tuple[str, int, str | None]]:
    """(container, port number, host) of every HTTP/TCP probe, named ports resolved as the kubelet does
    (against the probed container's own ports)."""
    out = []
    for c in pod["containers"]:
        names = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for kind in ("livenessProbe", "readinessProbe"):
            action = c[kind].get("httpGet") or c[kind].get("tcpSocket")
            if action is None:
                continue
            port = action["port"]
            out.append((c["name"], names[port] if isinstance(port, str) else int(port), action.get("host")))
    return out


def test_controller_shares_the_minions_network_on_ports_the_node_plugin_never_uses(rendered: Rendered) -> None:
    pod, node_pod = rendered.controller_pod, rendered.node_pod
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "Default"
    assert not node_pod.get("hostNetwork")
    controller_ports, node_ports = listeners(pod), listeners(node_pod)
    assert set(controller_ports).isdisjoint(node_ports), (controller_ports, node_ports)
    assert 9808 not in controller_ports, "upstream's default healthz port is the node plugin's"
    # Every host port is declared, so the scheduler never puts two controllers on one minion.
    assert set(declared(pod)) == set(controller_ports)
    assert set(declared(node_pod)) == set(node_ports)
    for which, p, ports in (("controller", pod, controller_ports), ("node", node_pod, node_ports)):
        for name, port, host in probe_targets(p):
            assert port in ports, f"{which}/{name} probes {port}, which nothing listens on"
            bound = ports[port][1]
            # A probe reaches a 127.0.0.1 listener only when it names that host.
            assert bound == "0.0.0.0" or host == bound, f"{which}/{name}: {host} -> {bound}:{port}"
    # The leader-elected sidecars answer only on the loopback of the minion.
    assert {host for host in (h for _, h in controller_ports.values())} == {"127.0.0.1", "0.0.0.0"}
    assert controller_ports[9809] == ("liveness-probe", "0.0.0.0")


def test_the_port_checks_catch_a_clash() -> None:
    pod = {"containers": [{"name": "a", "args": ["--http-endpoint=:1"]}, {"name": "b", "args": ["--health-port=1"]}]}
    with pytest.raises(AssertionError, match="port 1 bound"):
        listeners(pod)


def test_controller_gets_credentials_and_region_without_instance_metadata(rendered: Rendered) -> None:
    pod = rendered.controller_pod
    plugin = container(pod, "ebs-plugin")
    assert plugin["args"][0] == "controller"
    assert env(plugin)["AWS_REGION"] == rendered.args.region
    assert "AWS_ACCESS_KEY_ID" not in env(plugin), "credentials come from the instance profile, never a Secret"
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert rendered.controller["spec"]["replicas"] == rendered.args.controller_replicas
    # Host ports: a surge pod would need a free minion, so replace one at a time.
    assert rendered.controller["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    # Minions only: no control-plane selector or toleration (no master is a node).
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert all("control-plane" not in t.get("key", "") and "master" not in t.get("key", "") for t in pod["tolerations"])
    provisioner = container(pod, "csi-provisioner")
    for expected in ("--feature-gates=Topology=true", "--default-fstype=ext4", "--extra-create-metadata"):
        assert expected in provisioner["args"]
    for name in ("csi-provisioner", "csi-attacher", "csi-resizer"):
        assert flag(container(pod, name), "leader-election") == "true", name


def test_node_plugin_takes_its_identity_from_the_node_object(rendered: Rendered) -> None:
    pod = rendered.node_pod
    plugin = container(pod, "ebs-plugin")
    assert plugin["args"][0] == "node"
    assert flag(plugin, "metadata-sources") == "kubernetes"
    assert env(plugin)["CSI_NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    # --metadata-sources exists from driver v1.45.0 on.
    version = tuple(int(x) for x in pins.EBS_CSI_DRIVER_IMAGE.rsplit(":v", 1)[1].split("."))
    assert version >= (1, 45, 0)
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert plugin["securityContext"]["privileged"] is True
    kubelet = next(m for m in plugin["volumeMounts"] if m["name"] == "kubelet-dir")
    assert kubelet["mountPath"] == "/var/lib/kubelet" and kubelet["mountPropagation"] == "Bidirectional"
    assert {m["mountPath"] for m in plugin["volumeMounts"]} == {"/var/lib/kubelet", "/csi", "/dev"}


def _socket(c: dict[str, Any], address: str, pod: dict[str, Any]) -> tuple[str, str]:
    """The (volume, path inside it) a container's socket address points into, through its mounts."""
    path = re.sub(r"^unix:(//)?", "", address)
    mounts = sorted(c["volumeMounts"], key=lambda m: -len(m["mountPath"]))
    for mount in mounts:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            return mount["name"], path[len(prefix) :]
    raise AssertionError(f"{c['name']}: {address} lies on no mounted volume")


def test_csi_socket_paths_agree_across_containers_and_volumes(rendered: Rendered) -> None:
    for pod, address_of in (
        (
            rendered.controller_pod,
            {
                "ebs-plugin": lambda c: env(c)["CSI_ENDPOINT"],
                "csi-provisioner": lambda c: env(c)["ADDRESS"],
                "csi-attacher": lambda c: env(c)["ADDRESS"],
                "csi-resizer": lambda c: env(c)["ADDRESS"],
                "liveness-probe": lambda c: flag(c, "csi-address"),
            },
        ),
        (
            rendered.node_pod,
            {
                "ebs-plugin": lambda c: env(c)["CSI_ENDPOINT"],
                "node-driver-registrar": lambda c: env(c)["ADDRESS"],
                "liveness-probe": lambda c: flag(c, "csi-address"),
            },
        ),
    ):
        assert {c["name"] for c in pod["containers"]} == set(address_of)
        sockets = {
            name: _socket(container(pod, name), get(container(pod, name)), pod) for name, get in address_of.items()
        }
        assert len(set(sockets.values())) == 1, sockets
        for c in pod["containers"]:
            if "$(ADDRESS)" in " ".join(c.get("args", [])):
                assert "ADDRESS" in env(c), c["name"]
    # The registrar tells the kubelet where the socket is on the host: the plugin-dir hostPath.
    node = rendered.node_pod
    volumes = {v["name"]: v for v in node["volumes"]}
    (socket_volume, socket_file) = _socket(
        container(node, "ebs-plugin"), env(container(node, "ebs-plugin"))["CSI_ENDPOINT"], node
    )
    host_dir = volumes[socket_volume]["hostPath"]["path"]
    registrar = container(node, "node-driver-registrar")
    assert env(registrar)["DRIVER_REG_SOCK_PATH"] == host_dir.rstrip("/") + "/" + socket_file
    assert host_dir.rstrip("/") == "/var/lib/kubelet/plugins/ebs.csi.aws.com"
    registration = next(m for m in registrar["volumeMounts"] if m["mountPath"] == "/registration")
    assert volumes[registration["name"]]["hostPath"]["path"].rstrip("/") == "/var/lib/kubelet/plugins_registry"
    # The registration probe writes next to the socket path, inside its emptyDir (root is read-only).
    probe = next(m for m in registrar["volumeMounts"] if m["name"] == "probe-dir")
    assert probe["mountPath"].rstrip("/") == host_dir.rstrip("/") and "emptyDir" in volumes["probe-dir"]
    controller_volumes = {v["name"]: v for v in rendered.controller_pod["volumes"]}
    assert "emptyDir" in controller_volumes["socket-dir"]


def test_containers_pass_the_policy_pack(rendered: Rendered) -> None:
    for key in (("Deployment", "ebs-csi-controller"), ("DaemonSet", "ebs-csi-node")):
        assert check_containers(rendered.types[key], rendered.objects[key], "unit", Options()) == [], key
        for c in rendered.objects[key]["spec"]["template"]["spec"]["containers"]:
            assert c["image"] in {
                pins.EBS_CSI_DRIVER_IMAGE,
                pins.CSI_PROVISIONER_IMAGE,
                pins.CSI_ATTACHER_IMAGE,
                pins.CSI_RESIZER_IMAGE,
                pins.CSI_LIVENESS_PROBE_IMAGE,
                pins.CSI_REGISTRAR_IMAGE,
            }
    stripped = copy.deepcopy(rendered.node)
    del stripped["spec"]["template"]["spec"]["containers"][1]["readinessProbe"]
    assert check_containers(rendered.types[("DaemonSet", "ebs-csi-node")], stripped, "unit", Options()) == [
        "containers 'node-driver-registrar': no readinessProbe"
    ]


# --------------------------------------------------------------------------
# Args
# --------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "cluster_id": "atomic",
    "region": "us-east-1",
    "storage_class": "gp3",
    "reclaim_policy": "Delete",
}


@pytest.mark.parametrize(
    "change",
    [
        {"cluster_id": ""},
        {"cluster_id": "a,b"},
        {"cluster_id": "x" * 64},
        {"region": "useast1"},
        {"storage_class": "GP3"},
        {"reclaim_policy": "Recycle"},
        {"controller_replicas": 0},
        {"controller_replicas": True},
        {"tags": {"Name": "x"}},
        {"tags": {"ebs.csi.aws.com/cluster": "false"}},
        {"tags": {"kubernetes.io/cluster/other": "owned"}},
        {"tags": {"Team": "a,b"}},
        {"tags": {"a=b": "c"}},
        {"data_volume": DataVolumeSettings(storage_class="gp3", iops=3000, throughput_mibs=125)},  # the default's
        {"data_volume": DataVolumeSettings(storage_class="GP3-mysql", iops=3000, throughput_mibs=125)},
        {"data_volume": DataVolumeSettings(storage_class="gp3-mysql", iops=16001, throughput_mibs=125)},  # the pin
        {"data_volume": DataVolumeSettings(storage_class="gp3-mysql", iops=2000, throughput_mibs=125)},
        {"data_volume": DataVolumeSettings(storage_class="gp3-mysql", iops=3000, throughput_mibs=751)},
        {"data_volume": DataVolumeSettings(storage_class="gp3-mysql", iops=16000, throughput_mibs=2001)},
        {"data_volume": DataVolumeSettings(storage_class="gp3-mysql", iops=True, throughput_mibs=125)},
    ],
)
def test_args_that_cannot_work_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EbsCsiDriverArgs(**{**GOOD, **change})


def parse_extra_tags(value: str) -> dict[str, str]:
    """What the driver's --extra-tags (cliflag.MapStringString) reads: k=v pairs split at ','."""
    return dict(pair.split("=", 1) for pair in value.split(","))


@pytest.mark.parametrize("args", ARGS, ids=lambda a: a.cluster_id)
def test_volumes_get_the_cluster_tags_and_every_extra_tag(args: EbsCsiDriverArgs) -> None:
    plugin_args = ebs_csi.controller_plugin_args(args)
    cluster_id = next(a.split("=", 1)[1] for a in plugin_args if a.startswith("--k8s-tag-cluster-id="))
    assert cluster_id == args.cluster_id
    tags = parse_extra_tags(next(a.split("=", 1)[1] for a in plugin_args if a.startswith("--extra-tags=")))
    assert tags == {**args.tags, "ClusterId": args.cluster_id}


# --------------------------------------------------------------------------
# IAM
# --------------------------------------------------------------------------

READ_ONLY = re.compile(r"^ec2:(Describe|Get|List)[A-Za-z]+$")


def _matches(pattern: str | list[str], value: str) -> bool:
    patterns = [pattern] if isinstance(pattern, str) else pattern
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def allowed(document: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    """IAM's answer for one resource of a request, for the operators this policy uses (Allow only)."""
    for statement in document["Statement"]:
        if statement["Effect"] != "Allow" or not _matches(statement["Action"], action):
            continue
        if not _matches(statement["Resource"], resource):
            continue
        conditions = statement.get("Condition", {})
        assert set(conditions) <= {"StringEquals"}, conditions
        if all(context.get(key) == value for key, value in conditions.get("StringEquals", {}).items()):
            return True
    return False


def request_tags(tags: dict[str, str]) -> dict[str, str]:
    return {f"aws:RequestTag/{k}": v for k, v in tags.items()}


def resource_tags(tags: dict[str, str]) -> dict[str, str]:
    return {f"ec2:ResourceTag/{k}": v for k, v in tags.items()}


def driver_volume_tags(args: EbsCsiDriverArgs, name: str = "pvc-1") -> dict[str, str]:
    """The tags the driver gives a volume it creates with these args (pkg/driver CreateVolume)."""
    cluster_id = args.cluster_id
    return {
        "CSIVolumeName": name,
        "ebs.csi.aws.com/cluster": "true",
        f"kubernetes.io/cluster/{cluster_id}": "owned",
        "KubernetesCluster": cluster_id,
        "Name": f"{cluster_id}-dynamic-{name}",
        **ebs_csi.extra_tags(args),
    }


VOLUME = "arn:aws:ec2:us-east-1:123456789012:volume/vol-0123"
INSTANCE = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123"


def test_policy_parses_has_no_wildcard_action_and_conditions_every_mutation() -> None:
    document = json.loads(ebs_csi_policy("aws", "atomic"))
    assert document["Version"] == "2012-10-17"
    mutating = set()
    for statement in document["Statement"]:
        actions = statement["Action"]
        assert isinstance(actions, list) and actions
        for action in actions:
            assert "*" not in action and action.startswith("ec2:"), action
        if all(READ_ONLY.match(a) for a in actions):
            continue  # Describe*: EC2 has no resource-level permissions for them
        mutating |= set(actions)
        assert statement.get("Condition"), statement["Sid"]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert all(r.startswith("arn:aws:ec2:") for r in resources), statement["Sid"]
    assert mutating == {
        "ec2:CreateVolume",
        "ec2:CreateTags",
        "ec2:AttachVolume",
        "ec2:DetachVolume",
        "ec2:ModifyVolume",
        "ec2:DeleteVolume",
    }
    china = json.loads(ebs_csi_policy("aws-cn", "atomic"))
    assert all(
        "arn:aws-cn:ec2:" in r for s in china["Statement"] for r in ([s["Resource"]] if s["Resource"] != "*" else [])
    )
    for bad in (("aws:", "atomic"), ("azure", "atomic"), ("aws", "a b"), ("aws", "*")):
        with pytest.raises(ValueError):
            ebs_csi_policy(*bad)


@pytest.mark.parametrize("args", ARGS, ids=lambda a: a.cluster_id)
def test_policy_allows_the_driver_its_own_cluster_and_nothing_else(args: EbsCsiDriverArgs) -> None:
    document = json.loads(ebs_csi_policy("aws", args.cluster_id))
    mine = driver_volume_tags(args)
    node = {"ec2:ResourceTag/ClusterId": args.cluster_id}
    other = EbsCsiDriverArgs(**{**GOOD, "cluster_id": "other-cluster"})
    theirs = driver_volume_tags(other)
    create_tags = {"ec2:CreateAction": "CreateVolume", **request_tags(mine)}

    assert allowed(document, "ec2:CreateVolume", VOLUME, request_tags(mine))
    assert allowed(document, "ec2:CreateTags", VOLUME, create_tags)
    for action in ("ec2:AttachVolume", "ec2:DetachVolume", "ec2:ModifyVolume", "ec2:DeleteVolume"):
        assert allowed(document, action, VOLUME, resource_tags(mine)), action
        assert not allowed(document, action, VOLUME, resource_tags(theirs)), action
        # Another CSI driver's volume in the account (the managed policy's scope) is out of reach too.
        assert not allowed(document, action, VOLUME, resource_tags({"ebs.csi.aws.com/cluster": "true"})), action
    for action in ("ec2:AttachVolume", "ec2:DetachVolume"):
        assert allowed(document, action, INSTANCE, node)
        assert not allowed(document, action, INSTANCE, {"ec2:ResourceTag/ClusterId": "other-cluster"})
    assert not allowed(document, "ec2:CreateVolume", VOLUME, request_tags(theirs))
    assert not allowed(document, "ec2:CreateTags", VOLUME, {**request_tags(mine), "ec2:CreateAction": "CreateSnapshot"})
    assert not allowed(document, "ec2:CreateTags", VOLUME, resource_tags(mine)), "no retagging after creation"
    assert not allowed(document, "ec2:DeleteSnapshot", "arn:aws:ec2:us-east-1::snapshot/snap-1", resource_tags(mine))
    assert allowed(document, "ec2:DescribeVolumes", "*", {})


@pytest.fixture(scope="module")
def dev_plan() -> Plan:
    return run_program("dev")


def test_the_program_attaches_the_policy_to_the_minions_whose_tags_it_names(dev_plan: Plan) -> None:
    """The whole program (dev stack): the controller's cluster id, the minions' role policy and the
    minions' tags must name the same cluster, or attach/create is denied on a real account."""
    (component,) = [r for r in dev_plan.resources if r.type == COMPONENT_TYPE]
    (controller,) = [
        r for r in dev_plan.resources if r.type == tokens.DEPLOYMENT and r.parent == component.urn
    ]
    plugin = container(controller.inputs["spec"]["template"]["spec"], "ebs-plugin")
    cluster_id = flag(plugin, "k8s-tag-cluster-id")
    assert cluster_id
    args = EbsCsiDriverArgs(
        cluster_id=cluster_id, region=env(plugin)["AWS_REGION"], storage_class="gp3", reclaim_policy="Delete"
    )
    policies = [r for r in dev_plan.resources if r.type == tokens.IAM_ROLE_POLICY and "ebs-csi" in r.name]
    minions = [i for i in dev_plan.instances() if i.inputs["tags"].get("Role") == "minion"]
    # One per minion, none for the masters (no kubelet there, so no controller).
    assert sorted(p.name.removesuffix("-ebs-csi") for p in policies) == sorted(m.name for m in minions)
    assert minions
    volume = resource_tags(driver_volume_tags(args))
    for policy_registration in policies:
        document = json.loads(policy_registration.inputs["policy"])
        assert document == json.loads(ebs_csi_policy("aws", cluster_id))
        assert allowed(document, "ec2:CreateVolume", VOLUME, request_tags(driver_volume_tags(args)))
        for minion in minions:
            instance_context = {f"ec2:ResourceTag/{k}": v for k, v in minion.inputs["tags"].items()}
            assert allowed(document, "ec2:AttachVolume", INSTANCE, instance_context), minion.name
            assert allowed(document, "ec2:AttachVolume", VOLUME, volume)
