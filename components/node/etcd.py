"""/etc/etcd/etcd.conf of each master (etcd v3, the ETCD_* variables Fedora's etcd.service reads)."""

from __future__ import annotations

from components.facts import ETCD_CLIENT_PORT, ETCD_PEER_PORT, TLS_CIPHER_SUITES
from components.node.formats import env_file
from components.node.layout import ClusterLayout, NodeSpec
from components.node.pki import ETCD_PKI

ETCD_DATA = "/var/lib/etcd"


def etcd_client_url(node: NodeSpec) -> str:
    return f"https://{node.private_ip}:{ETCD_CLIENT_PORT}"


def etcd_peer_url(node: NodeSpec) -> str:
    return f"https://{node.private_ip}:{ETCD_PEER_PORT}"


def render_etcd_conf(layout: ClusterLayout, member: NodeSpec) -> str:
    """/etc/etcd/etcd.conf (etcd v3, ETCD_* variables read by Fedora's etcd.service)."""
    cluster = ",".join(f"{m.name}={etcd_peer_url(m)}" for m in layout.masters)
    return env_file(f"etcd member {member.name} of {len(layout.masters)}", [
        ("[Member]", "ETCD_NAME", member.name),
        ("", "ETCD_DATA_DIR", f"{ETCD_DATA}/{member.name}.etcd"),
        ("", "ETCD_LISTEN_PEER_URLS", etcd_peer_url(member)),
        ("", "ETCD_LISTEN_CLIENT_URLS", etcd_client_url(member)),
        ("[Clustering]", "ETCD_INITIAL_ADVERTISE_PEER_URLS", etcd_peer_url(member)),
        ("", "ETCD_ADVERTISE_CLIENT_URLS", etcd_client_url(member)),
        ("fixed addresses: static bootstrap", "ETCD_INITIAL_CLUSTER", cluster),
        ("", "ETCD_INITIAL_CLUSTER_STATE", "new"),
        ("", "ETCD_INITIAL_CLUSTER_TOKEN", layout.etcd_token),
        ("[Security] mutual TLS, etcd's own CA", "ETCD_CERT_FILE", f"{ETCD_PKI}/server.crt"),
        ("", "ETCD_KEY_FILE", f"{ETCD_PKI}/server.key"),
        ("", "ETCD_CLIENT_CERT_AUTH", "true"),
        ("", "ETCD_TRUSTED_CA_FILE", f"{ETCD_PKI}/ca.crt"),
        ("", "ETCD_PEER_CERT_FILE", f"{ETCD_PKI}/peer.crt"),
        ("", "ETCD_PEER_KEY_FILE", f"{ETCD_PKI}/peer.key"),
        ("", "ETCD_PEER_CLIENT_CERT_AUTH", "true"),
        ("", "ETCD_PEER_TRUSTED_CA_FILE", f"{ETCD_PKI}/ca.crt"),
        # etcd 3.4 has no minimum-version setting; limiting the suites to TLS 1.2 AEAD ones is the policy.
        ("the cluster's TLS policy (facts.TLS_CIPHER_SUITES), for clients and peers", "ETCD_CIPHER_SUITES",
         ",".join(TLS_CIPHER_SUITES)),
    ])
