"""The workload's namespace under its default deny: every connection the MySQL set and the Guestbook
make is admitted, and nothing else is, by the NetworkPolicy API's rules (tools/testing/netpol.py)
over every policy the whole program renders (add-ons included).

What this proves is the policies' meaning, not their enforcement: the agent's datapath
(addons/network_policy.py) does not run here (docs/security.md)."""

from __future__ import annotations

import itertools

import pytest

from components import tokens
from components.facts import CLONE_PORT, MYSQL_PORT
from components.workload.guestbook import FRONTEND_PORT, REDIS_PORT
from components.workload.workload import DEFAULT_DENY, DNS_EGRESS
from tests.graph import kube
from tools.harness.offline import Plan, run_program
from tools.testing.netpol import Cluster, Endpoint, cluster_of, external

NAMESPACE = "atomic-mysql"
DNS = 53


@pytest.fixture(scope="module")
def dev() -> Plan:
    return run_program("dev")


def _cluster(plan: Plan, drop: str | None = None) -> Cluster:
    objects = [o for o in plan.kubernetes_objects()
               if not (o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == drop)]
    client = Endpoint("app", NAMESPACE, {"mysql-client": "true"})
    stranger = Endpoint("app", NAMESPACE, {"app": "something-else"})
    elsewhere = Endpoint("intruder", "default", {"mysql-client": "true"})
    return cluster_of(objects, extra_pods=[client, stranger, elsewhere])


def test_the_namespace_denies_everything_in_and_out_and_allows_the_cluster_dns(dev: Plan) -> None:
    deny = kube(dev, "NetworkPolicy", DEFAULT_DENY)
    assert deny["metadata"]["namespace"] == NAMESPACE
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = kube(dev, "NetworkPolicy", DNS_EGRESS)["spec"]
    assert dns["podSelector"] == {} and dns["policyTypes"] == ["Egress"]


def test_every_connection_the_workload_makes_is_admitted(dev: Plan) -> None:
    c = _cluster(dev)
    mysql = [c.pod(f"mysql-{n}") for n in range(3)]
    coredns = c.pod("coredns", "kube-system")
    frontend, leader, follower = c.pod("frontend"), c.pod("redis-leader"), c.pod("redis-follower")
    client = next(p for p in c.pods if p.labels.get("mysql-client") == "true" and p.namespace == NAMESPACE)
    for pod in (*mysql, frontend, leader, follower, client):
        assert c.allows(pod, coredns, DNS, "UDP") and c.allows(pod, coredns, DNS, "TCP"), pod.name
    # A replica clones from and replicates from its predecessor.
    for previous, this in itertools.pairwise(mysql):
        assert c.allows(this, previous, CLONE_PORT) and c.allows(this, previous, MYSQL_PORT), this.name
    # The Guestbook: the frontend to both Redis Deployments, the followers to the leader, anyone to the frontend.
    assert c.allows(frontend, leader, REDIS_PORT) and c.allows(frontend, follower, REDIS_PORT)
    assert c.allows(follower, leader, REDIS_PORT)
    assert c.allows(external("203.0.113.7"), frontend, FRONTEND_PORT)
    # The set's clients, by label.
    assert c.allows(client, mysql[0], MYSQL_PORT) and c.allows(client, mysql[2], MYSQL_PORT)


def test_nothing_else_is(dev: Plan) -> None:
    c = _cluster(dev)
    mysql0, mysql1 = c.pod("mysql-0"), c.pod("mysql-1")
    frontend, leader = c.pod("frontend"), c.pod("redis-leader")
    client = next(p for p in c.pods if p.labels.get("mysql-client") == "true" and p.namespace == NAMESPACE)
    stranger = next(p for p in c.pods if p.labels.get("app") == "something-else")
    intruder = c.pod("intruder", "default")
    internet = external("198.51.100.9")
    refused = [
        # The clone port (a whole physical backup) only from the set's own members.
        (client, mysql0, CLONE_PORT), (frontend, mysql0, CLONE_PORT), (intruder, mysql0, CLONE_PORT),
        (internet, mysql0, CLONE_PORT),
        # MySQL only from its clients and members: not the frontend, not an unlabelled pod, not another namespace.
        (frontend, mysql0, MYSQL_PORT), (stranger, mysql0, MYSQL_PORT), (intruder, mysql0, MYSQL_PORT),
        (leader, mysql0, MYSQL_PORT), (internet, mysql0, MYSQL_PORT),
        # Nothing leaves to the internet or to other parts.
        (mysql0, internet, 443), (mysql1, leader, REDIS_PORT), (frontend, internet, 443), (leader, internet, 443),
        (client, internet, 443), (stranger, internet, 443), (mysql0, frontend, FRONTEND_PORT),
        # Redis takes only the Guestbook's traffic.
        (stranger, leader, REDIS_PORT), (mysql0, leader, REDIS_PORT), (internet, leader, REDIS_PORT),
        # The set's members speak MySQL's two ports among themselves, nothing else.
        (mysql1, mysql0, 22), (mysql1, mysql0, 8080),
        # DNS is the cluster's, not a resolver of the pod's choosing.
        (mysql0, external("8.8.8.8"), DNS),
    ]
    for source, destination, port in refused:
        assert not c.allows(source, destination, port), (source.name, destination.name, port)


def test_the_check_can_fail_without_the_dns_rule_nothing_resolves(dev: Plan) -> None:
    c = _cluster(dev, drop=DNS_EGRESS)
    assert not c.allows(c.pod("mysql-1"), c.pod("coredns", "kube-system"), DNS, "UDP")
    assert not c.allows(c.pod("frontend"), c.pod("coredns", "kube-system"), DNS, "UDP")


def test_the_parts_start_only_once_the_namespaces_policies_exist(dev: Plan) -> None:
    deny, dns = dev.named(f"workload-{DEFAULT_DENY}"), dev.named(f"workload-{DNS_EGRESS}")
    for token in (tokens.MYSQL_SET, tokens.GUESTBOOK):
        [part] = dev.of_type(token)
        assert {deny.urn, dns.urn} <= set(part.options["dependsOn"]), token
