"""systemd on the nodes: the drop-ins that start each Kubernetes daemon with exactly the rendered
variables, the overlay unit, and cAdvisor under podman.

The drop-ins and the overlay unit are shipped files (node/files/etc/systemd/system/...): a
drop-in resets the packaged ExecStart so that exactly the variables of the environment files
rendered here reach the binary, whatever the package's unit lists. cAdvisor's unit is rendered,
because it carries the pinned image.
"""

from __future__ import annotations

from components.facts import CADVISOR_PORT
from components.node.formats import shipped
from components.pins import CADVISOR_IMAGE, CADVISOR_VERSION

SYSTEMD_DIR = "/etc/systemd/system"
OVERLAY_UNIT = f"{SYSTEMD_DIR}/atomic-overlay.service"
CONTROL_PLANE_UNITS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
WORKER_UNITS = ("kubelet", "kube-proxy")
CADVISOR_UNIT_PATH = f"{SYSTEMD_DIR}/cadvisor.service"
# The host paths cAdvisor's own instructions mount, all read-only. Not mounted, on purpose:
# /var/run (CRI-O's socket there is the whole CRI API, i.e. root on the node: CRI-O's maintainers
# call access to it worse than password-less sudo, cri-o/cri-o#2029) and /var/lib/containers,
# which only cAdvisor's CRI-O handler behind that socket reads. Containers are therefore reported
# by cgroup (kubepods.slice/...), not by pod name.
CADVISOR_MOUNTS = ("/:/rootfs:ro", "/sys:/sys:ro", "/dev/disk:/dev/disk:ro")


def dropin_path(unit: str) -> str:
    return f"{SYSTEMD_DIR}/{unit}.service.d/10-atomic.conf"


def render_dropin(unit: str) -> str:
    """The drop-in of a Kubernetes unit (kube-apiserver, ..., kubelet, kube-proxy)."""
    if unit not in CONTROL_PLANE_UNITS + WORKER_UNITS:
        raise ValueError(f"no drop-in for unit {unit!r}")
    return shipped(dropin_path(unit))


def cadvisor_run_args() -> list[str]:
    """`podman run` for cAdvisor with the least privilege it works with (see docs/cluster.md):
    nobody, no capability, no new privileges, read-only mounts, its own network namespace."""
    return [
        # podman's documented shape for a container owned by a systemd unit
        "--cidfile=%t/%n.ctr-id", "--cgroups=no-conmon", "--rm", "--sdnotify=conmon", "--replace", "--detach",
        "--name=cadvisor",
        # cAdvisor reads world-readable cgroup, proc and sys files; it degrades (no per-container
        # disk usage of root-only paths) rather than needing root or CAP_DAC_READ_SEARCH.
        "--user=65534:65534", "--cap-drop=all", "--security-opt=no-new-privileges",
        # container_t may not read the host files cAdvisor exists to read; DAC (nobody) is the boundary.
        "--security-opt=label=disable",
        "--read-only",
        # upstream's DaemonSet limits, so a runaway cAdvisor cannot starve etcd or the kubelet
        "--memory=2000m", "--cpus=0.3",
        # Bridge network, not host: like pods, the container is one hop further than IMDSv2's hop
        # limit, so it cannot fetch the node role's credentials.
        f"--publish={CADVISOR_PORT}:{CADVISOR_PORT}",
        *(f"--volume={mount}" for mount in CADVISOR_MOUNTS),
        CADVISOR_IMAGE,
        f"--port={CADVISOR_PORT}",
    ]


def render_cadvisor_unit() -> str:
    """A plain unit (not Quadlet): `systemctl enable` works on it and systemd-analyze can verify it."""
    run = " \\\n  ".join(["/usr/bin/podman run", *cadvisor_run_args()])
    return f"""[Unit]
Description=cAdvisor {CADVISOR_VERSION} on port {CADVISOR_PORT}
Documentation=https://github.com/google/cadvisor
Wants=network-online.target
After=network-online.target
RequiresMountsFor=%t/containers

[Service]
Environment=PODMAN_SYSTEMD_UNIT=%n
Type=notify
NotifyAccess=all
Restart=on-failure
RestartSec=30
TimeoutStartSec=300
ExecStartPre=/usr/bin/rm -f %t/%n.ctr-id
ExecStart={run}
ExecStop=/usr/bin/podman stop --ignore --time=10 --cidfile=%t/%n.ctr-id
ExecStopPost=/usr/bin/podman rm --force --ignore --time=10 --cidfile=%t/%n.ctr-id

[Install]
WantedBy=multi-user.target
"""
