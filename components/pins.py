"""Every pinned version and image the program deploys, in one place (as kubespray's download.yml).

Images are pinned by tag; where a digest is known it is pinned too (podman and CRI-O pull the
digest, the tag is for people). Defaults a user may override per stack (the Guestbook images)
are settings and live in Pulumi.yaml; what is here is what the program itself chooses.
Nothing here imports pulumi.
"""

from __future__ import annotations

# --------------------------------------------------------------------------
# Nodes: Fedora and Kubernetes
# --------------------------------------------------------------------------

# Fedora Cloud Base releases the node bootstrap is written for (never Rawhide or a pre-release).
FEDORA_RELEASES = (41, 42)
# Kubernetes minors installed from Fedora's versioned packages (kubernetes1.NN, cri-o1.NN, ...).
KUBERNETES_VERSIONS = ("1.31", "1.32", "1.33")
# The release whose official server binaries the tests download (with their published SHA-256) when
# neither KUBE_BIN_DIR nor the workplace's shared/kube is there (tools/testing/kube_binaries.py):
# the default minor, kubernetesVersion=1.32.
KUBERNETES_TEST_RELEASE = "v1.32.4"

# cAdvisor on every node, on the seed's port. Fedora's own `cadvisor` RPM is 0.45.0 (2022), missed
# the Fedora 42 mass rebuild and has not followed upstream since (docs/cluster.md), so nodes run the
# upstream image, pinned by tag and by manifest-list digest: podman pulls the digest, the tag is
# for people reading the unit.
CADVISOR_VERSION = "v0.55.1"
CADVISOR_IMAGE = (f"gcr.io/cadvisor/cadvisor:{CADVISOR_VERSION}"
                  "@sha256:3de2bd5203120b866d74a9b283b2ffb8ec382fbf9dc321814700c6ea6f44ec57")

# --------------------------------------------------------------------------
# Cluster add-ons
# --------------------------------------------------------------------------

COREDNS_IMAGE_NAME = "registry.k8s.io/coredns/coredns"
COREDNS_IMAGE_TAG = "v1.11.3"
COREDNS_IMAGE = f"{COREDNS_IMAGE_NAME}:{COREDNS_IMAGE_TAG}"

# EBS CSI driver v1.47.0 and the upstream sidecar releases it ships (as EKS rebuilds
# public.ecr.aws/csi-components/*:<same version>-eksbuild.N); --metadata-sources needs >= v1.45.0.
EBS_CSI_DRIVER_IMAGE = "public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.47.0"
# What this driver release asks EC2 for at most, whatever a StorageClass's `iops` says: it predates
# AWS raising gp3 to 80,000 IOPS (2025-09) and caps a gp3 request at its gp3MaxTotalIOPS = 16000
# (pkg/cloud/cloud.go, capIOPS), silently. Per the maintainers on kubernetes-sigs/aws-ebs-csi-driver#2678,
# #2682 (merged 2025-10-02) replaced those hard-coded limits in later releases: raise this with the
# pin, after reading that release's capIOPS.
EBS_CSI_GP3_MAX_IOPS = 16000
CSI_SIDECAR_REGISTRY = "registry.k8s.io/sig-storage"
CSI_PROVISIONER_IMAGE = f"{CSI_SIDECAR_REGISTRY}/csi-provisioner:v5.3.0"
CSI_ATTACHER_IMAGE = f"{CSI_SIDECAR_REGISTRY}/csi-attacher:v4.9.0"
CSI_RESIZER_IMAGE = f"{CSI_SIDECAR_REGISTRY}/csi-resizer:v1.14.0"
CSI_LIVENESS_PROBE_IMAGE = f"{CSI_SIDECAR_REGISTRY}/livenessprobe:v2.16.0"
CSI_REGISTRAR_IMAGE = f"{CSI_SIDECAR_REGISTRY}/csi-node-driver-registrar:v2.14.0"

# kube-network-policies, the NetworkPolicy agent (addons/network_policy.py): tag and digest of the release
# image on registry.k8s.io (a manifest list: amd64 and arm64).
NETWORK_POLICY_AGENT_IMAGE = ("registry.k8s.io/networking/kube-network-policies:v1.1.1"
                              "@sha256:fa4a8a823da474dd6efa3bb80347b5ac58376370e1c179c5d3fa462e14b0e465")

METRICS_SERVER_IMAGE_NAME = "registry.k8s.io/metrics-server/metrics-server"
METRICS_SERVER_IMAGE_TAG = "v0.7.2"
METRICS_SERVER_IMAGE = f"{METRICS_SERVER_IMAGE_NAME}:{METRICS_SERVER_IMAGE_TAG}"

# --------------------------------------------------------------------------
# The MySQL set
# --------------------------------------------------------------------------

# Engine versions the MySQL set is built and rehearsed for, with their pinned images
# (server image, backup/clone tool image). The set's config renderer and the settings both
# read their versions from here.
ENGINE_VERSIONS: dict[str, dict[str, tuple[str, str]]] = {
    "mysql": {
        "8.4": ("mysql:8.4.6", "percona/percona-xtrabackup:8.4.0-4.1"),
        "8.0": ("mysql:8.0.43", "percona/percona-xtrabackup:8.0.35-34.1"),
    },
    "mariadb": {
        "11.4": ("mariadb:11.4.8", "mariadb:11.4.8"),
        "10.11": ("mariadb:10.11.14", "mariadb:10.11.14"),
    },
}
ENGINES = tuple(ENGINE_VERSIONS)

# The set's S3 client (backups, binlog archive, restore): rclone's official image, whose static
# binary an init container copies into the pod for the backup image's scripts to run.
RCLONE_IMAGE = "rclone/rclone:1.68.2"
RCLONE_BINARY = "/usr/local/bin/rclone"
# The metrics sidecar of every member (its own least-privilege account, docs/backup.md).
MYSQLD_EXPORTER_IMAGE = "prom/mysqld-exporter:v0.16.0"
