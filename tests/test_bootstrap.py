"""Pure renderers of the node bootstrap: no Pulumi runtime involved."""

from __future__ import annotations

import base64
import ipaddress
import json
import py_compile
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import bootstrap as b
from components.bootstrap import ClusterLayout, LayoutError, compute_layout
from components.settings import AddonSettings, ClusterSettings
from tests.support.imds import INSTANCE, fake_imds


def cluster_settings(**overrides: Any) -> ClusterSettings:
    """ClusterSettings as settings.py would hand them over for a default stack."""
    values: dict[str, Any] = dict(
        name="atomic", region="us-east-1", vpc_cidr="10.0.0.0/16", subnet_cidr="10.0.1.0/24",
        existing_vpc_id=None, existing_subnet_id=None, availability_zone=None, master_count=1, minion_count=2,
        master_instance_type="t3.medium", minion_instance_type="t3.large", root_volume_gb=30, ami_id=None,
        fedora_release=42, key_name=None, admin_cidrs=("198.51.100.0/24",), allow_world_admin=False,
        enable_cockpit=False, enable_cadvisor=False, enable_nodeports=False, kubernetes_version="1.32",
        service_cidr="10.254.0.0/16", pod_cidr="10.244.0.0/16", protect=False,
        addons=AddonSettings(coredns_replicas=2, storage_class="gp3", volume_reclaim_policy="Retain",
                             metrics_server=True, ebs_controller_replicas=2),
        tags={"Project": "atomic-mysql", "Stack": "test", "Owner": "t", "ManagedBy": "pulumi"},
    )
    values.update(overrides)
    return ClusterSettings(**values)


def layout_of(**overrides: Any) -> ClusterLayout:
    return compute_layout(cluster_settings(**overrides), "test")


def env_values(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            assert value.startswith('"') and value.endswith('"'), line
            values[key] = value[1:-1]
    return values


# --------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------


def test_layout_names_addresses_and_pod_subnets_are_fixed_from_dot_10() -> None:
    layout = layout_of(master_count=3, minion_count=2)
    assert [(n.name, n.private_ip, n.pod_subnet) for n in layout.nodes] == [
        ("atomic-master-1", "10.0.1.10", "10.244.0.0/24"),
        ("atomic-master-2", "10.0.1.11", "10.244.1.0/24"),
        ("atomic-master-3", "10.0.1.12", "10.244.2.0/24"),
        ("atomic-minion-1", "10.0.1.13", "10.244.3.0/24"),
        ("atomic-minion-2", "10.0.1.14", "10.244.4.0/24"),
    ]
    assert layout.api_service_ip == "10.254.0.1"
    assert layout.dns_service_ip == "10.254.0.10"
    assert layout.ssm_path(layout.minions[0]) == "/atomic-mysql/test/atomic/atomic-minion-1"


def test_minions_keep_their_addresses_and_user_data_when_masters_or_minion_count_change() -> None:
    one = layout_of(master_count=1, minion_count=2)
    three = layout_of(master_count=3, minion_count=2)
    more = layout_of(master_count=1, minion_count=5)
    assert [m.private_ip for m in one.minions] == [m.private_ip for m in three.minions]
    # Scaling minions touches no existing node: their user-data is byte-identical.
    for node, grown in zip(one.nodes, more.nodes, strict=False):
        assert b.render_user_data(one, node) == b.render_user_data(more, grown)


@pytest.mark.parametrize("shape", [dict(subnet_cidr="10.0.1.0/24"), dict(subnet_cidr="10.40.0.0/22", master_count=3)])
def test_reserved_blocks_cover_every_node_slot_and_nothing_else(shape: dict[str, Any]) -> None:
    layout = layout_of(**shape)
    reserved = {ip for block in b.node_address_blocks(layout) for ip in ipaddress.IPv4Network(block)}
    base = ipaddress.IPv4Network(layout.subnet_cidr).network_address + 10
    master_slots = {base + i for i in range(b.MASTER_SLOTS)}  # three, even with one master (room to grow)
    slots = master_slots | {ipaddress.IPv4Address(n.private_ip) for n in b.slot_nodes(layout)}
    assert reserved == slots
    assert len(slots) == b.MASTER_SLOTS + layout.minion_slots


def test_vtep_mac_is_derived_from_the_private_address() -> None:
    node = layout_of().minions[0]
    assert node.vtep_mac == "02:00:0a:00:01:0d"
    assert node.vtep_ip == "10.244.3.0"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"pod_cidr": "10.244.0.0/25"}, "smaller than one /24"),
    ({"pod_cidr": "10.244.0.0/22", "minion_count": 2}, "leave room for 1 minions"),
    ({"subnet_cidr": "10.0.1.0/27", "minion_count": 19}, "leave room for 18 minions"),
])
def test_layouts_that_do_not_fit_are_clear_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        layout_of(**overrides)


# --------------------------------------------------------------------------
# etcd
# --------------------------------------------------------------------------


def test_etcd_conf_is_a_static_tls_cluster_of_all_masters() -> None:
    layout = layout_of(master_count=3)
    env = env_values(b.render_etcd_conf(layout, layout.masters[1]))
    assert env["ETCD_NAME"] == "atomic-master-2"
    assert env["ETCD_INITIAL_CLUSTER"] == ",".join(
        f"atomic-master-{i}=https://10.0.1.1{i - 1}:2380" for i in (1, 2, 3))
    assert env["ETCD_LISTEN_CLIENT_URLS"] == env["ETCD_ADVERTISE_CLIENT_URLS"] == "https://10.0.1.11:2379"
    assert env["ETCD_LISTEN_PEER_URLS"] == env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == "https://10.0.1.11:2380"
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "new"
    assert env["ETCD_INITIAL_CLUSTER_TOKEN"] == "atomic-test-etcd"
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    for key in ("ETCD_CERT_FILE", "ETCD_KEY_FILE", "ETCD_TRUSTED_CA_FILE", "ETCD_PEER_CERT_FILE",
                "ETCD_PEER_KEY_FILE", "ETCD_PEER_TRUSTED_CA_FILE"):
        assert env[key].startswith("/etc/etcd/pki/")
    assert "http://" not in b.render_etcd_conf(layout, layout.masters[1])


def test_single_master_etcd_has_one_member() -> None:
    layout = layout_of(master_count=1)
    assert env_values(b.render_etcd_conf(layout, layout.masters[0]))["ETCD_INITIAL_CLUSTER"] == \
        "atomic-master-1=https://10.0.1.10:2380"


# --------------------------------------------------------------------------
# /etc/kubernetes/*
# --------------------------------------------------------------------------

# Flags removed from Kubernetes since the seed's 0.7 (or spelled with
# underscores then): none may reach a binary of 1.31-1.33.
REMOVED = re.compile(r"--(etcd_servers|portal_net|address=|port=|machines|kubelet_port|hostname_override|"
                     r"allow_privileged|logtostderr|insecure-|api-servers|admission-control=|cadvisor-port)")

# Flags of the pinned versions (kube-apiserver/-controller-manager/-scheduler/
# kube-proxy/kubelet 1.31-1.33 reference pages) that the renderers may use.
KNOWN_FLAGS = {
    "kube-apiserver": {
        "v", "bind-address", "advertise-address", "secure-port", "etcd-servers", "etcd-cafile", "etcd-certfile",
        "etcd-keyfile", "kubelet-client-certificate", "kubelet-client-key", "kubelet-certificate-authority",
        "service-cluster-ip-range", "enable-admission-plugins", "allow-privileged", "tls-cert-file",
        "tls-private-key-file", "client-ca-file", "authorization-mode", "anonymous-auth", "service-account-issuer",
        "service-account-key-file", "service-account-signing-key-file", "kubelet-preferred-address-types",
        "enable-aggregator-routing", "tls-min-version", "profiling", "requestheader-client-ca-file",
        "requestheader-allowed-names", "requestheader-username-headers", "requestheader-group-headers",
        "requestheader-extra-headers-prefix", "proxy-client-cert-file", "proxy-client-key-file",
    },
    "kube-controller-manager": {
        "v", "master", "kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig", "bind-address",
        "leader-elect", "use-service-account-credentials", "service-account-private-key-file", "root-ca-file",
        "service-cluster-ip-range", "cluster-cidr", "profiling",
    },
    "kube-scheduler": {"v", "master", "kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig",
                       "bind-address", "leader-elect"},
    "kubelet": {"v", "hostname-override", "config", "kubeconfig", "node-ip", "provider-id", "node-labels"},
    "kube-proxy": {"v", "master", "kubeconfig", "hostname-override", "cluster-cidr", "proxy-mode",
                   "metrics-bind-address"},
}


def booted_identity(tmp_path: Path, layout: ClusterLayout, node: b.NodeSpec) -> str:
    """The kubelet identity file as `atomic-node identity` writes it at boot (from a loopback IMDS)."""
    target = tmp_path / f"{node.name}.identity"
    with fake_imds() as url:
        _run_identity_script(tmp_path, target, url, check=True)
    return target.read_text()


def _run_identity_script(tmp_path: Path, target: Path, imds_url: str,
                         check: bool = False) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "atomic-kubelet-identity"
    script.write_text(b.IDENTITY_SCRIPT_TEXT)
    return subprocess.run(["/bin/bash", str(script), str(target)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "ATOMIC_IMDS": imds_url}, timeout=120, check=check)


def command_lines(layout: ClusterLayout, node: b.NodeSpec, tmp_path: Path) -> dict[str, list[str]]:
    """What systemd would run: each drop-in's ExecStart with the rendered environment files expanded,
    and with the files the node writes at boot as the node script writes them."""
    files = b.node_files(layout, node)
    if node.role == "minion":
        files[b.KUBELET_IDENTITY] = (booted_identity(tmp_path, layout, node), "0644")
    commands = {}
    for path, (content, _) in files.items():
        match = re.fullmatch(r"/etc/systemd/system/(kube[-a-z]*)\.service\.d/10-atomic\.conf", path)
        if not match:
            continue
        env: dict[str, str] = {}
        for env_file in re.findall(r"^EnvironmentFile=(\S+)$", content, re.MULTILINE):
            assert env_file in files, f"{match.group(1)} reads {env_file}, which is not rendered"
            env.update(env_values(files[env_file][0]))
        exec_start = re.findall(r"^ExecStart=(.+)$", content, re.MULTILINE)
        assert len(exec_start) == 1, "the drop-in must reset ExecStart, then set it once"
        argv = []
        for word in exec_start[0].split():
            if word.startswith("$"):
                assert word[1:] in env, f"{match.group(1)}: ${word[1:]} is not set in its environment files"
                argv += env[word[1:]].split()
            else:
                argv.append(word)
        commands[match.group(1)] = argv
    return commands


@pytest.mark.parametrize("masters", [1, 3])
def test_every_service_gets_only_flags_of_the_pinned_versions(masters: int, tmp_path: Path) -> None:
    layout = layout_of(master_count=masters)
    seen = set()
    for node in layout.nodes:
        for unit, argv in command_lines(layout, node, tmp_path).items():
            seen.add(unit)
            assert argv[0] == f"/usr/bin/{unit}"
            for flag in argv[1:]:
                assert not REMOVED.match(flag), f"{unit} on {node.name}: {flag} was removed from Kubernetes"
                name = re.fullmatch(r"--([a-z0-9-]+)(=.*)?", flag)
                assert name, f"{unit}: {flag!r} is not a --flag"
                assert name.group(1) in KNOWN_FLAGS[unit], f"{unit}: unexpected flag {flag}"
    assert seen == set(KNOWN_FLAGS)


def test_apiserver_translates_the_seed_settings() -> None:
    layout = layout_of(master_count=3)
    env = env_values(b.render_apiserver(layout, layout.masters[0]))
    assert env["KUBE_SERVICE_ADDRESSES"] == "--service-cluster-ip-range=10.254.0.0/16"
    assert env["KUBE_API_PORT"] == "--secure-port=6443"
    assert "--etcd-servers=https://10.0.1.10:2379,https://10.0.1.11:2379,https://10.0.1.12:2379" in \
        env["KUBE_ETCD_SERVERS"]
    assert "--advertise-address=10.0.1.10" in env["KUBE_API_ADDRESS"]
    args = env["KUBE_API_ARGS"]
    assert "--authorization-mode=Node,RBAC" in args and "--anonymous-auth=false" in args
    assert env["KUBE_ADMISSION_CONTROL"] == "--enable-admission-plugins=NodeRestriction"


def test_masters_use_their_own_apiserver_and_minions_their_local_proxy_to_all_masters() -> None:
    layout = layout_of(master_count=3)
    for node in (layout.masters[2], layout.minions[0]):
        assert env_values(b.render_kube_config(layout, node))["KUBE_MASTER"] == "--master=https://127.0.0.1:6443"
    proxy = b.render_api_proxy(layout)
    assert "bind 127.0.0.1:6443" in proxy
    servers = re.findall(r"^    server (\S+) (\S+) check$", proxy, re.MULTILINE)
    assert servers == [(m.name, f"{m.private_ip}:6443") for m in layout.masters]
    assert b.node_files(layout, layout.minions[0])[b.API_PROXY_CONFIG][0] == proxy
    assert b.API_PROXY_CONFIG not in b.node_files(layout, layout.masters[0])
    # Every apiserver certificate is valid for the address the minions dial.
    for master in layout.masters:
        assert "127.0.0.1" in b.apiserver_names(layout, master)[1]
    kubelet = env_values(b.render_kubelet(layout, layout.minions[1]))
    assert kubelet["KUBELET_HOSTNAME"] == "--hostname-override=atomic-minion-2"


def test_kubelet_configuration_is_authenticated_and_uses_cri_o() -> None:
    layout = layout_of()
    config = yaml.safe_load(b.render_kubelet_config(layout, layout.minions[0]))
    assert config["kind"] == "KubeletConfiguration"
    assert config["address"] == "10.0.1.13" and config["port"] == 10250 and config["readOnlyPort"] == 0
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authorization"]["mode"] == "Webhook"
    assert config["containerRuntimeEndpoint"] == "unix:///var/run/crio/crio.sock"
    assert config["clusterDNS"] == ["10.254.0.10"]


def test_node_kubeconfigs_reference_fetched_files_only() -> None:
    layout = layout_of()
    config = yaml.safe_load(b.render_node_kubeconfig(layout, layout.minions[0], "system:node:x", "kubelet"))
    assert config["clusters"][0]["cluster"] == {"server": "https://127.0.0.1:6443",
                                               "certificate-authority": "/etc/kubernetes/pki/ca.crt"}
    assert config["users"][0]["user"] == {"client-certificate": "/etc/kubernetes/pki/kubelet.crt",
                                         "client-key": "/etc/kubernetes/pki/kubelet.key"}


def test_admin_kubeconfig_embeds_material_and_checks_the_kubernetes_name() -> None:
    text = b.render_admin_kubeconfig("atomic", "203.0.113.7", "CA", "CERT", "KEY")
    config = yaml.safe_load(text)
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://203.0.113.7:6443"
    assert cluster["tls-server-name"] == "kubernetes"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA"
    assert base64.b64decode(config["users"][0]["user"]["client-key-data"]) == b"KEY"
    assert config["current-context"] == "admin@atomic"


# --------------------------------------------------------------------------
# PKI plan
# --------------------------------------------------------------------------


def test_pki_plan_per_role() -> None:
    layout = layout_of(master_count=3)
    master = b.node_pki(layout, layout.masters[0])
    names = {c.identity: c for c in master.certs}
    assert set(names) == {"apiserver", "apiserver-kubelet-client", "controller-manager", "scheduler",
                          "apiserver-etcd-client", "etcd-server", "etcd-peer", "front-proxy-client"}
    proxy = names["front-proxy-client"]
    assert proxy.authority == "front-proxy" and proxy.client and not proxy.server
    assert master.ca_paths["/etc/kubernetes/pki/front-proxy-ca.crt"] == "front-proxy"
    api = names["apiserver"]
    assert {"kubernetes", "kubernetes.default.svc.cluster.local", "atomic-master-1"} <= set(api.dns_names)
    assert {"10.0.1.10", "10.254.0.1", "127.0.0.1"} <= set(api.ip_addresses)
    assert names["etcd-peer"].authority == names["apiserver-etcd-client"].authority == "etcd"
    assert names["apiserver"].authority == "kubernetes"
    assert master.service_account_key
    minion = b.node_pki(layout, layout.minions[0])
    kubelet = next(c for c in minion.certs if c.identity == "kubelet")
    assert kubelet.common_name == "system:node:atomic-minion-1" and kubelet.organization == "system:nodes"
    assert kubelet.server and kubelet.client and kubelet.ip_addresses == ("10.0.1.13",)
    assert not minion.service_account_key
    assert set(minion.ca_paths.values()) == {"kubernetes"}, "minions must not trust or hold the etcd CA"
    # Every file the configs reference lives in a directory the fetch script accepts.
    for plan in (master, minion):
        for path in [*plan.ca_paths, *(c.cert_path for c in plan.certs), *(c.key_path for c in plan.certs)]:
            assert path.startswith(("/etc/kubernetes/pki/", "/etc/etcd/pki/"))


def test_every_pki_path_a_config_mentions_is_delivered() -> None:
    layout = layout_of(master_count=3)
    for node in layout.nodes:
        plan = b.node_pki(layout, node)
        delivered = {*plan.ca_paths, *(c.cert_path for c in plan.certs), *(c.key_path for c in plan.certs)}
        if plan.service_account_key:
            delivered |= {b.SA_KEY, b.SA_PUB}
        text = "".join(content for content, _ in b.node_files(layout, node).values()
                       if "FETCH" not in content and not content.startswith("#!"))
        mentioned = set(re.findall(r"/etc/(?:kubernetes|etcd)/pki/[a-z0-9.-]+", text))
        assert mentioned <= delivered, f"{node.name} references undelivered {mentioned - delivered}"


# --------------------------------------------------------------------------
# pod network
# --------------------------------------------------------------------------


def test_cni_conflist_chains_bridge_portmap_and_bandwidth_on_the_node_subnet() -> None:
    layout = layout_of()
    conflist = json.loads(b.render_cni_conflist(layout, layout.minions[1]))
    assert conflist["cniVersion"] == "1.0.0"
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap", "bandwidth"]
    assert conflist["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.4.0/24"}]]
    assert conflist["plugins"][1]["capabilities"] == {"portMappings": True}
    assert conflist["plugins"][2]["capabilities"] == {"bandwidth": True}


def _run_node_script(tmp_path: Path, layout: ClusterLayout, node: b.NodeSpec, *args: str,
                     dry_run: bool = False,
                     check: bool = True) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "cluster.env"
    env_file.write_text(b.render_cluster_env(layout, node))
    script = tmp_path / "atomic-node"
    script.write_text(b.NODE_SCRIPT_TEXT)
    env = {"PATH": "/usr/bin:/bin", "ATOMIC_ENV": str(env_file)}
    if dry_run:
        env["ATOMIC_RUN"] = "echo"
    return subprocess.run(["/bin/bash", str(script), *args], capture_output=True, text=True, env=env, timeout=60,
                          check=check)


def test_node_script_writes_exactly_the_rendered_hosts_block(tmp_path: Path) -> None:
    layout = layout_of(master_count=3, minion_count=2, subnet_cidr="10.0.1.0/26")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.1.99 stale-node # atomic-cluster\n")
    _run_node_script(tmp_path, layout, layout.minions[0], "hosts", str(hosts))
    _run_node_script(tmp_path, layout, layout.minions[0], "hosts", str(hosts))  # idempotent
    assert hosts.read_text() == "127.0.0.1 localhost\n" + b.render_hosts(layout)
    # Every minion slot of the subnet is there, so later minions resolve on old nodes.
    assert hosts.read_text().count("-minion-") == layout.minion_slots == 64 - 1 - 10 - 3
    assert "10.0.1.10 atomic-master-1 # atomic-cluster" in hosts.read_text()


def test_node_script_programs_a_route_fdb_and_neighbour_per_other_node(tmp_path: Path) -> None:
    layout = layout_of(master_count=3, minion_count=2, subnet_cidr="10.0.1.0/27")
    node = layout.minions[0]
    out = _run_node_script(tmp_path, layout, node, "overlay", dry_run=True).stdout.splitlines()
    assert f"ip link set atomic.1 address {node.vtep_mac} mtu 1450 up" in out
    assert "ip addr replace 10.244.3.0/32 dev atomic.1" in out
    expected = b.overlay_routes(layout, node)
    assert len(expected) == 3 + layout.minion_slots - 1
    for subnet, mac, underlay in expected:
        gateway = subnet.split("/")[0]
        assert f"bridge fdb replace {mac} dev atomic.1 dst {underlay}" in out
        assert f"ip neigh replace {gateway} lladdr {mac} dev atomic.1 nud permanent" in out
        assert f"ip route replace {subnet} via {gateway} dev atomic.1 onlink" in out
    assert sum(line.startswith("ip route replace") for line in out) == len(expected)
    assert not any(node.pod_subnet in line for line in out if line.startswith("ip route"))


def test_identity_script_writes_the_kubelet_identity_from_imdsv2(tmp_path: Path) -> None:
    layout = layout_of()
    values = env_values(booted_identity(tmp_path, layout, layout.minions[0]))
    assert values == {"KUBELET_IDENTITY": (
        "--provider-id=aws:///us-east-1b/i-0123456789abcdef0 --node-labels=topology.kubernetes.io/region=us-east-1,"
        "topology.kubernetes.io/zone=us-east-1b,node.kubernetes.io/instance-type=t3.large")}


def test_the_provider_id_is_what_the_ebs_csi_driver_parses(tmp_path: Path) -> None:
    """The driver (pkg/cloud/metadata_k8s.go) finds the instance id with `i-[a-z0-9]+$` and the
    zone with its region pattern followed by one letter."""
    layout = layout_of()
    flags = env_values(booted_identity(tmp_path, layout, layout.minions[0]))["KUBELET_IDENTITY"].split()
    provider_id = flags[0].removeprefix("--provider-id=")
    assert re.search(r"i-[a-z0-9]+$", provider_id).group(0) == "i-0123456789abcdef0"  # type: ignore[union-attr]
    zone = re.search(r"([a-z]{2}(-gov)?)-(central|(north|south)?(east|west)?)-[0-9][a-z]", provider_id)
    assert zone and zone.group(0) == "us-east-1b"


@pytest.mark.parametrize("broken", [{"instance-id": "i-0123; rm -rf /"}, {"placement/availability-zone": ""}])
def test_identity_script_refuses_metadata_it_does_not_expect(tmp_path: Path, broken: dict[str, str]) -> None:
    target = tmp_path / "identity"
    with fake_imds({**INSTANCE, **broken}) as url:
        done = _run_identity_script(tmp_path, target, url)
    assert done.returncode != 0 and not target.exists()
    assert "atomic-kubelet-identity: unexpected instance metadata" in done.stderr


def test_identity_script_fails_without_metadata_rather_than_start_a_kubelet_without_it(tmp_path: Path) -> None:
    target = tmp_path / "identity"
    with fake_imds({}) as url:  # every read is a 404
        done = _run_identity_script(tmp_path, target, url)
    assert done.returncode != 0 and not target.exists()


def test_minions_write_their_identity_before_the_kubelet_starts_and_masters_do_not() -> None:
    layout = layout_of()
    minion = b.cloud_config(layout, layout.minions[0])["runcmd"]
    assert isinstance(minion, list)
    identity = minion.index([b.IDENTITY_SCRIPT, b.KUBELET_IDENTITY])
    start = next(i for i, cmd in enumerate(minion) if "kubelet" in cmd and "enable" in cmd)
    assert identity < start
    master = b.cloud_config(layout, layout.masters[0])["runcmd"]
    assert isinstance(master, list) and [b.IDENTITY_SCRIPT, b.KUBELET_IDENTITY] not in master
    assert b.IDENTITY_SCRIPT not in b.node_files(layout, layout.masters[0])
    # Without the file the kubelet unit does not start (no "-" before the path): a node without a
    # provider id would register and then never get a volume attached.
    assert f"EnvironmentFile={b.KUBELET_IDENTITY}\n" in b.render_dropin("kubelet")


def test_node_script_refuses_an_address_outside_the_layout(tmp_path: Path) -> None:
    layout = layout_of()
    stranger = replace(layout.minions[0], private_ip="10.0.1.5")  # below the first node slot
    with pytest.raises(subprocess.CalledProcessError) as failure:
        _run_node_script(tmp_path, layout, stranger, "overlay", dry_run=True)
    assert "is not a cluster node" in failure.value.stderr


def test_shipped_scripts_parse(tmp_path: Path) -> None:
    script = tmp_path / "atomic-node"
    script.write_text(b.NODE_SCRIPT_TEXT)
    subprocess.run(["/bin/bash", "-n", str(script)], check=True, timeout=30)
    identity = tmp_path / "atomic-kubelet-identity"
    identity.write_text(b.IDENTITY_SCRIPT_TEXT)
    subprocess.run(["/bin/bash", "-n", str(identity)], check=True, timeout=30)
    fetch = tmp_path / "fetch.py"
    fetch.write_text(b.FETCH_SCRIPT_TEXT)
    py_compile.compile(str(fetch), doraise=True)


# --------------------------------------------------------------------------
# services, packages, user-data
# --------------------------------------------------------------------------


def test_services_and_packages_per_role_follow_the_seed() -> None:
    layout = layout_of(kubernetes_version="1.33", enable_cockpit=True)
    master, minion = layout.masters[0], layout.minions[0]
    assert b.services(layout, master)[1:5] == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    assert b.services(layout, minion)[1:5] == ["haproxy", "crio", "kubelet", "kube-proxy"]
    assert "cockpit.socket" in b.services(layout, minion)
    assert {"etcd", "kubernetes1.33-systemd", "kubernetes1.33-client"} <= set(b.packages(layout, master))
    assert {"kubernetes1.33", "cri-o1.33", "containernetworking-plugins"} <= set(b.packages(layout, minion))
    assert "kubernetes1.33" not in b.packages(layout, master), "masters run no kubelet, as in the seed"
    assert "haproxy" in b.packages(layout, minion) and "haproxy" not in b.packages(layout, master)
    runcmd = b.cloud_config(layout, minion)["runcmd"]
    assert isinstance(runcmd, list)
    setsebool = runcmd.index(["setsebool", "-P", "haproxy_connect_any", "1"])
    assert setsebool < next(i for i, cmd in enumerate(runcmd) if cmd[:2] == ["systemctl", "enable"])


# --------------------------------------------------------------------------
# optional node services: cAdvisor (4194) and Cockpit (9090), as in the seed
# --------------------------------------------------------------------------


def _cadvisor_argv() -> list[str]:
    """The unit's ExecStart as systemd reads it: continuation lines joined, then split on blanks."""
    unit = b.render_cadvisor_unit().replace("\\\n", " ")
    (exec_start,) = re.findall(r"^ExecStart=(.+)$", unit, re.MULTILINE)
    return exec_start.split()


def test_cadvisor_is_rendered_for_every_node_only_when_enabled() -> None:
    off, on = layout_of(master_count=3), layout_of(master_count=3, enable_cadvisor=True)
    for node in off.nodes:
        text = b.render_user_data(off, node)
        assert "cadvisor" not in text.lower() and "podman" not in text, node.name
    for node in on.nodes:
        config = yaml.safe_load(b.render_user_data(on, node))
        units = {f["path"]: f for f in config["write_files"]}
        assert units[b.CADVISOR_UNIT_PATH]["content"] == b.render_cadvisor_unit(), node.name
        assert "podman" in config["packages"]
        # started now and at every boot, without holding up the rest of the bootstrap
        assert config["runcmd"][-1] == ["systemctl", "enable", "--now", "--no-block", "cadvisor.service"]
        assert "WantedBy=multi-user.target" in units[b.CADVISOR_UNIT_PATH]["content"]


def test_enabling_cadvisor_adds_only_its_unit_package_and_start() -> None:
    """The disabled rendering is the enabled one minus the three cAdvisor parts: nothing else moves."""
    off, on = layout_of(), layout_of(enable_cadvisor=True)
    for node_off, node_on in zip(off.nodes, on.nodes, strict=True):
        disabled = yaml.safe_load(b.render_user_data(off, node_off))
        enabled = yaml.safe_load(b.render_user_data(on, node_on))
        enabled["packages"].remove("podman")
        enabled["write_files"] = [f for f in enabled["write_files"] if f["path"] != b.CADVISOR_UNIT_PATH]
        enabled["runcmd"].pop()
        assert enabled == disabled, node_on.name


def test_cadvisor_runs_the_pinned_upstream_image_on_4194() -> None:
    argv = _cadvisor_argv()
    assert argv[:2] == ["/usr/bin/podman", "run"]
    images = [a for a in argv if a.startswith("gcr.io/")]
    assert images == [b.CADVISOR_IMAGE]
    pinned = re.fullmatch(r"gcr\.io/cadvisor/cadvisor:(v\d+\.\d+\.\d+)@sha256:[0-9a-f]{64}", b.CADVISOR_IMAGE)
    assert pinned and pinned.group(1) == b.CADVISOR_VERSION, "pinned by release tag and digest, never latest"
    image_at = argv.index(b.CADVISOR_IMAGE)
    # podman options before the image, cAdvisor's own flags after it
    assert argv[image_at + 1:] == ["--port=4194"]
    assert "--publish=4194:4194" in argv[:image_at]
    assert b.CADVISOR_PORT == 4194, "the seed's port, and the one the security groups open"
    assert f"cAdvisor {b.CADVISOR_VERSION} on port 4194" in b.render_cadvisor_unit()


def test_cadvisor_mounts_only_what_it_reads_and_read_only() -> None:
    argv = _cadvisor_argv()
    volumes = [a.removeprefix("--volume=") for a in argv if a.startswith(("--volume", "-v", "--mount"))]
    assert volumes == ["/:/rootfs:ro", "/sys:/sys:ro", "/dev/disk:/dev/disk:ro"]
    assert all(v.endswith(":ro") for v in volumes)
    # No container-runtime socket: CRI-O's socket is the whole CRI API (root on the node).
    assert not any(v.startswith(("/var/run", "/run", "/var/lib/containers")) for v in volumes)


def test_cadvisor_runs_with_the_least_privilege_it_allows() -> None:
    argv = _cadvisor_argv()
    options = argv[2:argv.index(b.CADVISOR_IMAGE)]
    assert "--user=65534:65534" in options, "cAdvisor runs as nobody, not as root"
    assert "--cap-drop=all" in options and not any(o.startswith("--cap-add") for o in options)
    assert "--security-opt=no-new-privileges" in options
    assert "--read-only" in options
    for forbidden in ("--privileged", "--network=host", "--net=host", "--pid=host", "--device", "--userns=host",
                      "--ipc=host", "--security-opt=seccomp=unconfined"):
        assert not any(o.startswith(forbidden) for o in options), forbidden


# podman-run(1) options the unit may use (podman 5 on Fedora 41/42); a typo is an error at boot.
PODMAN_RUN_OPTIONS = {
    "cidfile", "cgroups", "rm", "sdnotify", "replace", "detach", "name", "user", "cap-drop", "security-opt",
    "read-only", "memory", "cpus", "publish", "volume",
}


def test_cadvisor_podman_options_are_podman_run_options() -> None:
    argv = _cadvisor_argv()
    for option in argv[2:argv.index(b.CADVISOR_IMAGE)]:
        name = re.fullmatch(r"--([a-z-]+)(=.*)?", option)
        assert name and name.group(1) in PODMAN_RUN_OPTIONS, option


SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"


def _systemd_verify(tmp_path: Path, unit_name: str, text: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` against a throw-away root holding the host's systemd units (for the
    targets the unit names) and stand-ins for the binaries Fedora provides (podman, rm)."""
    assert shutil.which(SYSTEMD_ANALYZE), "systemd-analyze is missing: install Debian's systemd"
    root = tmp_path / "root"
    units = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir())
    shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True)
    for binary in ("podman", "rm"):
        (root / "usr/bin" / binary).write_text("#!/bin/sh\n")
        (root / "usr/bin" / binary).chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system" / unit_name).write_text(text)
    return subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", "--generators=no", f"--root={root}",
                           f"/etc/systemd/system/{unit_name}"], capture_output=True, text=True, timeout=60)


def test_cadvisor_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = _systemd_verify(tmp_path, "cadvisor.service", b.render_cadvisor_unit())
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: an unknown key and an ExecStart on a missing binary are reported."""
    broken = b.render_cadvisor_unit().replace("Restart=on-failure", "Restart=sometimes\nBogusKey=1")
    broken = broken.replace("ExecStop=/usr/bin/podman", "ExecStop=/usr/bin/no-such-podman")
    result = _systemd_verify(tmp_path, "broken.service", broken)
    assert "BogusKey" in result.stderr and "sometimes" in result.stderr
    assert "no-such-podman" in result.stderr and result.returncode != 0


def test_cockpit_package_and_socket_only_when_enabled() -> None:
    """cockpit.socket listens on 9090 (the port the security groups open), on masters and minions."""
    on, off = layout_of(enable_cockpit=True), layout_of()
    for node in on.nodes:
        assert "cockpit" in b.packages(on, node) and b.services(on, node)[-1] == "cockpit.socket"
    for node in off.nodes:
        assert "cockpit" not in b.render_user_data(off, node)


def test_user_data_holds_no_private_key_and_names_the_node() -> None:
    layout = layout_of(master_count=3)
    for node in layout.nodes:
        text = b.render_user_data(layout, node)
        assert text.startswith("#cloud-config\n")
        assert "PRIVATE KEY" not in text and "BEGIN" not in text
        config = yaml.safe_load(text)
        assert config["hostname"] == node.name
        commands = config["runcmd"]
        enable = next(i for i, cmd in enumerate(commands) if cmd[:2] == ["systemctl", "enable"])
        assert commands.index([b.FETCH_SCRIPT]) < enable, "keys are fetched before any service starts"


def test_ami_lookup_selects_only_released_fedora_cloud_base_images() -> None:
    regex, filters = b.fedora_ami_filters(42)
    name_filter = next(f for f in filters if f["name"] == "name")
    assert name_filter["values"] == ["Fedora-Cloud-Base-AmazonEC2.x86_64-42-*"]
    assert re.match(regex, "Fedora-Cloud-Base-AmazonEC2.x86_64-42-1.1")
    for other in ("Fedora-Cloud-Base-AmazonEC2.x86_64-Rawhide-20250301.n.0",
                  "Fedora-Cloud-Base-AmazonEC2.x86_64-42-20250301.n.0",
                  "Fedora-Cloud-Base-AmazonEC2.x86_64-42_Beta-1.2",
                  "Fedora-Cloud-Base-AmazonEC2.x86_64-41-1.4", "Fedora-Cloud-Base-AmazonEC2.aarch64-42-1.1"):
        assert not re.match(regex, other), other


def test_node_policy_reads_and_decrypts_only_the_node_path() -> None:
    doc = json.loads(b.node_policy("aws", "us-east-1", "123456789012", "/atomic-mysql/test/atomic/atomic-minion-1",
                                   "arn:aws:kms:us-east-1:123456789012:key/k"))
    base = "arn:aws:ssm:us-east-1:123456789012:parameter/atomic-mysql/test/atomic/atomic-minion-1"
    resources = [r for s in doc["Statement"] for r in s["Resource"]]
    assert resources == [base, f"{base}/*", "arn:aws:kms:us-east-1:123456789012:key/k"]
    decrypt = doc["Statement"][2]
    assert decrypt["Condition"] == {"StringLike": {"kms:EncryptionContext:PARAMETER_ARN": f"{base}/*"}}
    assert all("*" not in a for s in doc["Statement"] for a in s["Action"])


def test_private_addresses_are_inside_the_subnet_and_avoid_aws_reserved_ones() -> None:
    layout = layout_of(subnet_cidr="10.0.1.0/27", minion_count=18)
    subnet = ipaddress.IPv4Network(layout.subnet_cidr)
    reserved = {subnet.network_address + i for i in range(4)} | {subnet.broadcast_address}
    for node in b.slot_nodes(layout):
        address = ipaddress.IPv4Address(node.private_ip)
        assert address in subnet and address not in reserved
