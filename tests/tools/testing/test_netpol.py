"""The NetworkPolicy evaluator against the API's rules, case by case (the Kubernetes docs' own examples
where there is one): each case would pass a permissive or a naive evaluator only by luck."""

from __future__ import annotations

from typing import Any

import pytest

from tools.testing.netpol import Cluster, Endpoint, cluster_of, external, matches

DB = Endpoint("db", "prod", {"role": "db"}, {"mysql": (3306, "TCP")})
FRONTEND = Endpoint("frontend", "prod", {"role": "frontend"})
OTHER_NS = Endpoint("frontend", "staging", {"role": "frontend"})
NODE_AGENT = Endpoint("agent", "prod", {"role": "db"}, host_network=True)


def policy(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def cluster(*policies: dict[str, Any], pods: tuple[Endpoint, ...] = (DB, FRONTEND, OTHER_NS)) -> Cluster:
    namespaces = {n: {"kubernetes.io/metadata.name": n} for n in ("prod", "staging")}
    namespaces["staging"]["env"] = "staging"
    return Cluster(namespaces, list(pods), list(policies))


DENY_ALL = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
FRONTENDS = {"podSelector": {"matchLabels": {"role": "frontend"}}}
STAGING = {"namespaceSelector": {"matchLabels": {"env": "staging"}}}


def ingress(*rules: dict[str, Any], select: dict[str, Any] | None = None) -> dict[str, Any]:
    """A policy of namespace prod isolating `select` (every pod) for ingress, with `rules`."""
    return policy("in", "prod", {"podSelector": select or {}, "policyTypes": ["Ingress"], "ingress": list(rules)})


def test_with_no_policy_everything_is_allowed() -> None:
    c = cluster()
    assert c.allows(FRONTEND, DB, 3306) and c.allows(OTHER_NS, DB, 3306) and c.allows(DB, external("1.1.1.1"), 443)


def test_default_deny_isolates_every_pod_both_ways() -> None:
    c = cluster(policy("deny", "prod", DENY_ALL))
    assert not c.allows(FRONTEND, DB, 3306)
    assert not c.allows(DB, external("1.1.1.1"), 443)
    assert not c.allows(OTHER_NS, DB, 3306)
    assert c.allows(OTHER_NS, external("1.1.1.1"), 443)  # staging has no policy


def test_a_connection_needs_the_sources_egress_and_the_destinations_ingress() -> None:
    ingress_only = ingress({"from": [FRONTENDS]}, select={"matchLabels": {"role": "db"}})
    assert not cluster(policy("deny", "prod", DENY_ALL), ingress_only).allows(FRONTEND, DB, 3306)
    egress = policy("fe-out", "prod", {"podSelector": {"matchLabels": {"role": "frontend"}}, "policyTypes": ["Egress"],
                                       "egress": [{"to": [{"podSelector": {"matchLabels": {"role": "db"}}}]}]})
    assert cluster(policy("deny", "prod", DENY_ALL), ingress_only, egress).allows(FRONTEND, DB, 3306)


def test_a_pod_selector_alone_means_the_policys_own_namespace() -> None:
    c = cluster(ingress({"from": [FRONTENDS]}))
    assert c.allows(FRONTEND, DB, 3306) and not c.allows(OTHER_NS, DB, 3306)


def test_namespace_and_pod_selector_in_one_peer_is_and_in_two_peers_is_or() -> None:
    """The docs' "Behavior of to and from selectors" example."""
    dbs = {"podSelector": {"matchLabels": {"role": "db"}}}
    anded = cluster(ingress({"from": [{**STAGING, **dbs}]}))
    assert not anded.allows(OTHER_NS, DB, 3306)  # staging, but not role=db
    ored = cluster(ingress({"from": [STAGING, dbs]}))
    assert ored.allows(OTHER_NS, DB, 3306)


def test_ports_by_number_range_name_and_protocol() -> None:
    def only(ports: list[dict[str, Any]]) -> Cluster:
        return cluster(ingress({"ports": ports}, select={"matchLabels": {"role": "db"}}))

    assert only([{"port": 3306}]).allows(FRONTEND, DB, 3306) and not only([{"port": 3306}]).allows(FRONTEND, DB, 3307)
    assert not only([{"port": 3306}]).allows(FRONTEND, DB, 3306, "UDP")  # protocol defaults to TCP
    assert only([{"port": 3300, "endPort": 3310}]).allows(FRONTEND, DB, 3307)
    by_name = only([{"port": "mysql"}])
    assert by_name.allows(FRONTEND, DB, 3306) and not by_name.allows(FRONTEND, DB, 80)
    assert only([{"protocol": "UDP"}]).allows(FRONTEND, DB, 53, "UDP")


def test_empty_rules_and_empty_peer_lists() -> None:
    assert cluster(ingress({})).allows(OTHER_NS, DB, 1)  # one empty rule: everything
    assert cluster(ingress({"from": []})).allows(OTHER_NS, DB, 1)
    assert not cluster(ingress()).allows(OTHER_NS, DB, 1)  # no rule at all: nothing


def test_ip_blocks_admit_outside_addresses_but_not_pods() -> None:
    c = cluster(policy("out", "prod", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]}))
    assert c.allows(DB, external("10.2.3.4"), 443) and not c.allows(DB, external("10.1.3.4"), 443)
    assert not c.allows(DB, external("8.8.8.8"), 443) and not c.allows(DB, FRONTEND, 80)


def test_policy_types_default_as_the_api_server_defaults_them() -> None:
    # No policyTypes and egress rules: both directions isolated; no egress rules: ingress only.
    dns_only = [{"ports": [{"port": 53, "protocol": "UDP"}]}]
    with_egress = cluster(policy("p", "prod", {"podSelector": {}, "egress": dns_only}))
    assert not with_egress.allows(FRONTEND, DB, 3306)
    assert with_egress.allows(FRONTEND, external("1.1.1.1"), 53, "UDP") is True
    ingress_only = cluster(policy("p", "prod", {"podSelector": {}}))
    assert ingress_only.allows(DB, external("1.1.1.1"), 443) and not ingress_only.allows(FRONTEND, DB, 3306)


def test_host_network_pods_are_not_governed() -> None:
    c = cluster(policy("deny", "prod", DENY_ALL), pods=(DB, FRONTEND, NODE_AGENT))
    assert c.allows(NODE_AGENT, external("1.1.1.1"), 443)


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ({}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False),
])
def test_label_selectors(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert matches(selector, labels) is expected


def test_a_stateful_sets_pods_get_their_ordinal_label_and_namespaces_their_name_label() -> None:
    sts = {"kind": "StatefulSet", "metadata": {"name": "mysql", "namespace": "db"},
           "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "mysql"}}, "spec": {"containers": []}}}}
    c = cluster_of([sts, {"kind": "Namespace", "metadata": {"name": "db", "labels": {"team": "x"}}}])
    assert [p.labels["statefulset.kubernetes.io/pod-name"] for p in c.pods] == ["mysql-0", "mysql-1"]
    assert c.namespaces["db"] == {"kubernetes.io/metadata.name": "db", "team": "x"}


def test_a_cron_jobs_pod_is_its_job_templates_pod() -> None:
    template = {"metadata": {"labels": {"job": "backup"}}, "spec": {"containers": []}}
    cron = {"kind": "CronJob", "metadata": {"name": "backup", "namespace": "db"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template}}}}
    [pod] = cluster_of([cron]).pods
    assert (pod.name, pod.namespace, dict(pod.labels)) == ("backup", "db", {"job": "backup"})
