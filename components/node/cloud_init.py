"""A node's cloud-init user-data: the packages of its role, every file it is given, and the
commands that bring it up (the seed's per-role SERVICES loops).

Target: Fedora Cloud Base 41/42 with Fedora's versioned packages kubernetes1.NN (kubelet),
kubernetes1.NN-systemd (control-plane units), kubernetes1.NN-client, cri-o1.NN, etcd. Private
keys never appear here: each node fetches its own from SSM Parameter Store at boot
(atomic-fetch-pki).

"""

from __future__ import annotations

import base64
import gzip

import yaml

from components.facts import USER_DATA_LIMIT
from components.node.control_plane import AUDIT_POLICY, render_apiserver, render_controller_manager, render_scheduler
from components.node.etcd import render_etcd_conf
from components.node.etcd_backup import (
    BACKUP_ENV,
    BACKUP_PROGRAM,
    BACKUP_SERVICE,
    BACKUP_TIMER,
    BACKUP_UNIT,
    BackupTarget,
    render_backup_env,
    render_backup_timer,
)
from components.node.formats import SafeDumper, shipped
from components.node.kubernetes import render_kube_config, render_node_kubeconfig
from components.node.layout import ClusterLayout, LayoutError, NodeSpec
from components.node.pod_network import (
    CLUSTER_ENV,
    CNI_CONFLIST,
    CRIO_DROPIN,
    NODE_SCRIPT,
    render_cluster_env,
    render_cni_conflist,
)
from components.node.units import (
    CADVISOR_UNIT_PATH,
    CONTROL_PLANE_UNITS,
    OVERLAY_UNIT,
    WORKER_UNITS,
    dropin_path,
    render_cadvisor_unit,
    render_dropin,
)
from components.node.worker import (
    API_PROXY_CONFIG,
    KUBELET_IDENTITY,
    render_api_proxy,
    render_kubelet,
    render_kubelet_config,
    render_proxy,
)

FETCH_SCRIPT = "/usr/local/sbin/atomic-fetch-pki"
IDENTITY_SCRIPT = "/usr/local/sbin/atomic-kubelet-identity"


def packages(layout: ClusterLayout, node: NodeSpec) -> list[str]:
    """Fedora packages for the role: versioned Kubernetes packages matching kubernetesVersion."""
    v = layout.kubernetes_version
    common = ["python3-boto3", "iptables-nft", "conntrack-tools"]
    optional = [*(["cockpit"] if layout.enable_cockpit else []), *(["podman"] if layout.enable_cadvisor else [])]
    if node.role == "master":
        return [*common, "etcd", f"kubernetes{v}-systemd", f"kubernetes{v}-client", *optional]
    return [*common, f"kubernetes{v}", f"kubernetes{v}-systemd", f"cri-o{v}", f"cri-tools{v}",
            "containernetworking-plugins", "haproxy", *optional]


def services(layout: ClusterLayout, node: NodeSpec) -> list[str]:
    """Services to enable, in start order (the seed's SERVICES loops, per role)."""
    cockpit = ["cockpit.socket"] if layout.enable_cockpit else []
    if node.role == "master":
        backups = [f"{BACKUP_UNIT}.timer"] if layout.etcd_backup_minutes else []
        return ["atomic-overlay", "etcd", *CONTROL_PLANE_UNITS, *backups, *cockpit]
    return ["atomic-overlay", "haproxy", "crio", *WORKER_UNITS, *cockpit]


def _backup_target(layout: ClusterLayout, node: NodeSpec, backup: BackupTarget | None) -> BackupTarget | None:
    if node.role != "master" or not layout.etcd_backup_minutes:
        return None
    if backup is None:
        raise ValueError(f"{node.name} takes etcd backups: its user-data needs the bucket and key (BackupTarget)")
    return backup


def node_files(layout: ClusterLayout, node: NodeSpec,
               backup: BackupTarget | None = None) -> dict[str, tuple[str, str]]:
    """path -> (content, permissions) of every file cloud-init writes on this node; `backup` is where a
    master's etcd snapshots go when the layout takes them."""
    files: dict[str, tuple[str, str]] = {
        CLUSTER_ENV: (render_cluster_env(layout, node), "0644"),
        NODE_SCRIPT: (shipped(NODE_SCRIPT), "0755"),
        FETCH_SCRIPT: (shipped(FETCH_SCRIPT), "0755"),
        OVERLAY_UNIT: (shipped(OVERLAY_UNIT), "0644"),
        "/etc/kubernetes/config": (render_kube_config(layout, node), "0644"),
    }
    if node.role == "master":
        files.update({
            "/etc/etcd/etcd.conf": (render_etcd_conf(layout, node), "0644"),
            "/etc/kubernetes/apiserver": (render_apiserver(layout, node), "0644"),
            "/etc/kubernetes/controller-manager": (render_controller_manager(layout, node), "0644"),
            "/etc/kubernetes/scheduler": (render_scheduler(layout, node), "0644"),
            AUDIT_POLICY: (shipped(AUDIT_POLICY), "0644"),
            # Kubeconfigs 0600 root here; atomic-fetch-pki hands them to the kube group (0640) once
            # the packages have created it.
            "/etc/kubernetes/controller-manager.kubeconfig":
                (render_node_kubeconfig(layout, "system:kube-controller-manager", "controller-manager"), "0600"),
            "/etc/kubernetes/scheduler.kubeconfig":
                (render_node_kubeconfig(layout, "system:kube-scheduler", "scheduler"), "0600"),
        })
        units: tuple[str, ...] = CONTROL_PLANE_UNITS
    else:
        files.update({
            "/etc/kubernetes/kubelet": (render_kubelet(layout, node), "0644"),
            "/etc/kubernetes/kubelet.yaml": (render_kubelet_config(layout, node), "0644"),
            "/etc/kubernetes/kubelet.kubeconfig":
                (render_node_kubeconfig(layout, f"system:node:{node.name}", "kubelet"), "0600"),
            "/etc/kubernetes/proxy": (render_proxy(layout, node), "0644"),
            "/etc/kubernetes/kube-proxy.kubeconfig":
                (render_node_kubeconfig(layout, "system:kube-proxy", "kube-proxy"), "0600"),
            CNI_CONFLIST: (render_cni_conflist(layout, node), "0644"),
            CRIO_DROPIN: (shipped(CRIO_DROPIN), "0644"),
            IDENTITY_SCRIPT: (shipped(IDENTITY_SCRIPT), "0755"),
            API_PROXY_CONFIG: (render_api_proxy(layout), "0644"),
        })
        units = WORKER_UNITS
    for unit in units:
        files[dropin_path(unit)] = (render_dropin(unit), "0644")
    target = _backup_target(layout, node, backup)
    if target is not None:
        files.update({
            BACKUP_PROGRAM: (shipped(BACKUP_PROGRAM), "0755"),
            BACKUP_ENV: (render_backup_env(layout, node, target), "0644"),
            BACKUP_SERVICE: (shipped(BACKUP_SERVICE), "0644"),
            BACKUP_TIMER: (render_backup_timer(layout.etcd_backup_minutes), "0644"),
        })
    if layout.enable_cadvisor:
        files[CADVISOR_UNIT_PATH] = (render_cadvisor_unit(), "0644")
    return files


def cloud_config(layout: ClusterLayout, node: NodeSpec, backup: BackupTarget | None = None) -> dict[str, object]:
    enabled = services(layout, node)
    runcmd = [
        [NODE_SCRIPT, "hosts"],
        *([[IDENTITY_SCRIPT, KUBELET_IDENTITY],
           # Fedora's SELinux policy lets HAProxy bind and connect only to web ports unless told otherwise.
           ["setsebool", "-P", "haproxy_connect_any", "1"]] if node.role == "minion" else []),
        [FETCH_SCRIPT],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", *enabled],
    ]
    if layout.enable_cadvisor:
        # Its own command, not blocking: an image pull from gcr.io must not hold up or fail the
        # node's bootstrap; the unit retries on its own (Restart=on-failure) and starts at every boot.
        runcmd.append(["systemctl", "enable", "--now", "--no-block", "cadvisor.service"])
    return {
        "hostname": node.name,
        "fqdn": node.name,
        "preserve_hostname": False,
        "package_update": True,
        "packages": packages(layout, node),
        "write_files": [{"path": path, "permissions": mode, "content": content}
                        for path, (content, mode) in node_files(layout, node, backup).items()],
        "runcmd": runcmd,
    }


class _BlockDumper(SafeDumper):  # type: ignore[valid-type,misc]
    """Multi-line strings as literal blocks: readable, and smaller than quoted strings."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _str_representer)


def render_user_data(layout: ClusterLayout, node: NodeSpec, backup: BackupTarget | None = None) -> str:
    """The node's #cloud-config, as cloud-init reads it once decompressed."""
    return "#cloud-config\n" + yaml.dump(cloud_config(layout, node, backup), Dumper=_BlockDumper, sort_keys=False,
                                         width=1000)


def compress_user_data(text: str) -> bytes:
    """gzip, which cloud-init recognises by its magic bytes and decompresses before reading the
    #cloud-config. mtime=0 keeps the bytes a function of the text alone: the same user-data never
    shows as a change (a change stops and starts the instance)."""
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def decompress_user_data(encoded: str) -> str:
    """The #cloud-config inside user_data_base64 (what the preview, the tests and the policy read)."""
    return gzip.decompress(base64.b64decode(encoded)).decode()


def render_user_data_base64(layout: ClusterLayout, node: NodeSpec, backup: BackupTarget | None = None) -> str:
    """What EC2 is given (aws.ec2.Instance user_data_base64): the #cloud-config gzip-compressed.
    Raises LayoutError above EC2's 16 KB limit, which applies to the bytes before base64."""
    compressed = compress_user_data(render_user_data(layout, node, backup))
    if len(compressed) > USER_DATA_LIMIT:
        raise LayoutError(f"user-data of {node.name} is {len(compressed)} bytes compressed; "
                          f"EC2 allows {USER_DATA_LIMIT}")
    return base64.b64encode(compressed).decode()
