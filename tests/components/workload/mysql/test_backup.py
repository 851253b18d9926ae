"""What backups, restore and metrics add to the MySQL set, rendered by the whole program under mocks.

These check the wiring (what each container runs, sees and may reach) and validate every rendered
object against Kubernetes 1.32 strictly; the scripts' behaviour is rehearsed for real in
test_backup_rehearsal.py, and the Prometheus operator's objects are validated against its CRD
schemas in tests/tools/test_crd_validate.py.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from components import tokens
from components.facts import BACKUP_AGENT_PORT, BACKUP_METRICS_PORT, MYSQLD_EXPORTER_PORT
from components.pins import RCLONE_IMAGE
from tests.conftest import KUBERNETES_VERSION
from tools.harness.offline import Plan, run_program
from tools.testing.netpol import Cluster, Endpoint, cluster_of, external

BACKUPS = {"mysqlBackupEnabled": "true"}


def objects(plan: Plan) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in plan.kubernetes_objects()}


def pod(plan: Plan) -> dict[str, Any]:
    return objects(plan)[("StatefulSet", "mysql")]["spec"]["template"]["spec"]


def names(containers: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in containers]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_without_backups_the_pod_gains_only_the_exporter() -> None:
    plan = run_program("dev")
    spec = pod(plan)
    assert names(spec["initContainers"]) == ["init-mysql", "clone-mysql"]
    assert names(spec["containers"]) == ["mysql", "sidecar", "metrics"]
    assert not [k for k in objects(plan) if k[0] == "CronJob" or k[1] == "mysql-backup-s3"]
    assert not [b for b in plan.of_type(tokens.S3_BUCKET) if b.name.startswith("mysql-backups")]
    metrics = spec["containers"][2]
    assert metrics["args"][0] == "--config.my-cnf=/etc/mysqld-exporter/exporter.cnf"
    [volume] = [v for v in spec["volumes"] if v["name"] == "exporter-cnf"]
    assert volume["secret"]["items"] == [{"key": "exporter.cnf", "path": "exporter.cnf"}]


def test_backups_add_the_agent_the_cron_job_and_their_network_paths() -> None:
    plan = run_program("dev", BACKUPS)
    kube = objects(plan)
    spec = pod(plan)
    assert names(spec["initContainers"]) == ["init-mysql", "clone-mysql", "s3-tools"]
    assert names(spec["containers"]) == ["mysql", "sidecar", "metrics", "backup-agent"]
    tools = spec["initContainers"][2]
    assert tools["image"] == RCLONE_IMAGE and tools["command"] == ["/bin/cp", "/usr/local/bin/rclone",
                                                                   "/opt/s3-tools/rclone"]
    agent = spec["containers"][3]
    env = env_of(agent)
    assert env["BACKUP_PREFIX"] == "dev/mysql" and env["BACKUP_SSE"] == "aws:kms" and env["BACKUP_ENDPOINT"] == ""
    [key] = [k for k in plan.of_type(tokens.KMS_KEY) if k.name.startswith("mysql-backups")]
    assert env["BACKUP_SSE_KMS_KEY_ID"] == key.state["arn"]  # the bucket's own key, never aws/s3
    [bucket] = [b for b in plan.of_type(tokens.S3_BUCKET) if b.name.startswith("mysql-backups")]
    assert env["BACKUP_BUCKET"] == bucket.state["bucket"]  # the bucket the stack built
    assert env["BINLOG_ARCHIVE_SECONDS"] == "300" and env["BACKUP_RETENTION_DAYS"] == "7"
    # The backup tool copies with the clone sender's threads (mysqlCloneThreads, 0: the sidecar's CPUs).
    [sidecar] = [c for c in spec["containers"] if c["name"] == "sidecar"]
    assert env["BACKUP_PARALLEL"] == env_of(sidecar)["BACKUP_PARALLEL"] == "2"
    assert {m["mountPath"]: m.get("readOnly", False) for m in agent["volumeMounts"]}["/etc/mysql-backup-s3"] is True
    assert {p["containerPort"] for p in agent["ports"]} == {BACKUP_AGENT_PORT, BACKUP_METRICS_PORT}

    cron = kube[("CronJob", "mysql-backup")]["spec"]
    assert (cron["schedule"], cron["timeZone"], cron["concurrencyPolicy"]) == ("17 3 * * *", "Etc/UTC", "Forbid")
    job_pod = cron["jobTemplate"]["spec"]["template"]
    assert job_pod["metadata"]["labels"]["mysql-backup-job"] == "true"
    # The job's pod must not look like a member: no Service or the StatefulSet selects it.
    assert job_pod["metadata"]["labels"]["app.kubernetes.io/name"] == "mysql-backup"
    [job] = job_pod["spec"]["containers"]
    assert job["command"][-1].endswith("/backup-job.sh") and env_of(job)["MYSQL_REPLICAS"] == "3"
    assert job_pod["spec"]["restartPolicy"] == "Never" and job_pod["spec"]["automountServiceAccountToken"] is False

    policy = kube[("NetworkPolicy", "mysql")]["spec"]["ingress"]
    by_port = {port["port"]: rule["from"] for rule in policy for port in rule["ports"]}
    assert by_port[BACKUP_AGENT_PORT] == [{"podSelector": {"matchLabels": {"mysql-backup-job": "true"}}}]
    prometheus = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    assert by_port[BACKUP_METRICS_PORT] == by_port[MYSQLD_EXPORTER_PORT] == [prometheus]

    [secret] = [r for r in plan.of_type(tokens.SECRET) if r.name.endswith("-backup-s3")]
    assert {"data", "stringData"} <= set(secret.options["additionalSecretOutputs"])
    [key] = plan.of_type(tokens.IAM_ACCESS_KEY)
    assert secret.inputs["stringData"] == "[secret]"
    data = secret.state["stringData"]
    assert set(data) == {"access-key-id", "secret-access-key"}
    assert data["access-key-id"].startswith("AKIA") and data["secret-access-key"] == key.state["secret"]
    for obj in kube.values():
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_a_restore_adds_fetch_and_replay_to_the_pods_init_containers() -> None:
    plan = run_program("dev", {**BACKUPS, "mysqlRestoreFrom": "2026-12-01T10:21:41Z",
                               "mysqlRestorePrefix": "prod/mysql", "mysqlRestoreBucket": "prod-backups-0123"})
    spec = pod(plan)
    assert names(spec["initContainers"]) == ["init-mysql", "clone-mysql", "s3-tools", "restore-fetch",
                                             "restore-replay"]
    fetch, replay = spec["initContainers"][3:]
    mysqld = spec["containers"][0]
    assert replay["image"] == mysqld["image"] != fetch["image"]  # the server binary replays; the tool fetches
    for container in (fetch, replay):
        env = env_of(container)
        assert env["RESTORE_FROM"] == "2026-12-01T10:21:41Z" and env["RESTORE_PREFIX"] == "prod/mysql"
        assert env["RESTORE_BUCKET"] == "prod-backups-0123"
        assert env["MYSQL_DATA_DIR"] == "/var/lib/mysql-volume/mysql"
    assert fetch["command"][-1] == "fetch" and replay["command"][-1] == "replay"
    kubernetes_validate.validate(objects(plan)[("StatefulSet", "mysql")], KUBERNETES_VERSION, strict=True)


def test_the_prometheus_operator_objects_select_the_members_metrics_ports() -> None:
    plan = run_program("dev", {**BACKUPS, "prometheusOperator": "true"})
    kube = objects(plan)
    monitor = kube[("ServiceMonitor", "mysql")]
    headless = kube[("Service", "mysql")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= headless["metadata"]["labels"].items()
    ports = {p["name"] for p in headless["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics", "agent-metrics"} <= ports
    rules = kube[("PrometheusRule", "mysql")]["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {"MySQLReplicationStopped", "MySQLReplicationLagging", "MySQLBackupTooOld",
                                          "MySQLBinlogArchiveBehind", "MySQLBinlogArchiveStalled",
                                          "MySQLBinlogArchiveGap"}
    too_old = next(r for r in rules if r["alert"] == "MySQLBackupTooOld")
    assert too_old["expr"].endswith(f"> {26 * 3600}")  # mysqlBackupMaxAgeHours
    assert not run_program("dev", BACKUPS).of_type(tokens.SERVICE_MONITOR)


def test_existing_mode_uses_the_users_bucket_endpoint_and_key() -> None:
    sets = {**BACKUPS, "mysqlBackupBucket": "team-backups", "mysqlBackupEndpoint": "https://rgw.example.com:8443",
            "renderYamlTo": ""}
    keys = {"mysqlBackupAccessKeyId": "rgw-access-key", "mysqlBackupSecretAccessKey": "rgw-secret-key-0123456789"}
    plan = run_program("local", sets, keys)
    assert not [r for r in plan.resources if r.type.startswith("aws:")]
    env = env_of(pod(plan)["containers"][3])
    assert (env["BACKUP_BUCKET"], env["BACKUP_ENDPOINT"], env["BACKUP_SSE"]) == (
        "team-backups", "https://rgw.example.com:8443", "")
    assert env["BACKUP_PREFIX"] == "local/mysql"
    [secret] = [r for r in plan.of_type(tokens.SECRET) if r.name.endswith("-backup-s3")]
    assert secret.state["stringData"] == {"access-key-id": "rgw-access-key",
                                          "secret-access-key": "rgw-secret-key-0123456789"}
    dumped = json.dumps([r.inputs for r in plan.resources])
    assert "rgw-secret-key-0123456789" not in dumped and "rgw-access-key" not in dumped


# ---------------------------------------------------------------- the flows backups need, under the default deny

NAMESPACE = "atomic-mysql"
S3 = external("52.216.0.10")  # an S3 address (s3.amazonaws.com resolves into AWS's public ranges)
IMDS = external("169.254.169.254")
ENDPOINT = "https://s3.example.net:9443"


def _cluster(objs: list[dict[str, Any]]) -> Cluster:
    """The rendered objects, plus a Prometheus elsewhere, a pod of its namespace that is not it, and a client."""
    prometheus = Endpoint("prometheus-k8s-0", "monitoring", {"app.kubernetes.io/name": "prometheus"})
    scraper = Endpoint("not-prometheus", "monitoring", {"app.kubernetes.io/name": "grafana"})
    client = Endpoint("app", NAMESPACE, {"mysql-client": "true"})
    return cluster_of(objs, extra_pods=[prometheus, scraper, client],
                      namespaces=("default", "kube-system", "monitoring"))


def _without(plan: Plan, drop: str | None = None) -> list[dict[str, Any]]:
    return [o for o in plan.kubernetes_objects()
            if not (o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == drop)]


def _pods(c: Cluster) -> dict[str, Endpoint]:
    return {"job": c.pod("mysql-backup"), "mysql-0": c.pod("mysql-0"), "mysql-2": c.pod("mysql-2"),
            "frontend": c.pod("frontend"), "client": c.pod("app", NAMESPACE),
            "prometheus": c.pod("prometheus-k8s-0", "monitoring"), "grafana": c.pod("not-prometheus", "monitoring")}


def allowed_flows(pods: dict[str, Endpoint]) -> list[tuple[Endpoint, Endpoint, int]]:
    return [
        (pods["job"], pods["mysql-2"], BACKUP_AGENT_PORT), (pods["job"], pods["mysql-0"], BACKUP_AGENT_PORT),
        (pods["mysql-2"], S3, 443), (pods["mysql-0"], S3, 443),  # the agent, the archiver, a restore
        (pods["prometheus"], pods["mysql-2"], MYSQLD_EXPORTER_PORT),
        (pods["prometheus"], pods["mysql-0"], BACKUP_METRICS_PORT),
    ]


def refused_flows(pods: dict[str, Endpoint]) -> list[tuple[Endpoint, Endpoint, int]]:
    job, mysql0, mysql2 = pods["job"], pods["mysql-0"], pods["mysql-2"]
    return [
        # The agents take requests only from the backup job's pods: not a client, not the frontend.
        (pods["client"], mysql2, BACKUP_AGENT_PORT), (pods["frontend"], mysql2, BACKUP_AGENT_PORT),
        (pods["prometheus"], mysql2, BACKUP_AGENT_PORT), (external("198.51.100.9"), mysql2, BACKUP_AGENT_PORT),
        # The job reaches the agents and nothing else: not MySQL, not the clone port, not the bucket.
        (job, mysql2, 3306), (job, mysql2, 3307), (job, S3, 443), (job, pods["frontend"], 80),
        # The bucket's port is the only way out: no other port, no instance metadata, no frontend.
        (mysql0, S3, 80), (mysql0, S3, 22), (mysql0, IMDS, 443), (mysql0, IMDS, 80),
        # Metrics only to Prometheus's pods: not another pod of its namespace, not a client.
        (pods["grafana"], mysql2, MYSQLD_EXPORTER_PORT), (pods["client"], mysql2, MYSQLD_EXPORTER_PORT),
        (pods["client"], mysql0, BACKUP_METRICS_PORT), (pods["frontend"], mysql0, MYSQLD_EXPORTER_PORT),
        (external("198.51.100.9"), mysql0, MYSQLD_EXPORTER_PORT),
        # The clients reach MySQL, never the bucket through the set.
        (pods["client"], S3, 443),
    ]


def test_with_backups_the_job_reaches_the_agents_and_the_pods_reach_the_bucket() -> None:
    c = _cluster(_without(run_program("dev", BACKUPS)))
    pods = _pods(c)
    for source, destination, port in allowed_flows(pods):
        assert c.allows(source, destination, port), (source.name, destination.name, port)
    for source, destination, port in refused_flows(pods):
        assert not c.allows(source, destination, port), (source.name, destination.name, port)


def test_without_backups_nothing_leaves_for_a_bucket_and_metrics_stay_prometheus_only() -> None:
    plan = run_program("dev")
    assert not [o for o in plan.kubernetes_objects() if o["kind"] == "NetworkPolicy"
                and o["metadata"]["name"] in ("mysql-backup", "mysql-backup-s3")]
    c = _cluster(_without(plan))
    mysql0 = c.pod("mysql-0")
    assert not c.allows(mysql0, S3, 443)
    assert not c.allows(c.pod("prometheus-k8s-0", "monitoring"), mysql0, BACKUP_METRICS_PORT)
    assert c.allows(c.pod("prometheus-k8s-0", "monitoring"), mysql0, MYSQLD_EXPORTER_PORT)
    assert not c.allows(c.pod("not-prometheus", "monitoring"), mysql0, MYSQLD_EXPORTER_PORT)


def test_a_custom_endpoint_opens_its_own_port_instead_of_443() -> None:
    plan = run_program("local", {**BACKUPS, "mysqlBackupBucket": "backups", "mysqlBackupEndpoint": ENDPOINT},
                       secret_overrides={"mysqlBackupAccessKeyId": "minio-key",
                                         "mysqlBackupSecretAccessKey": "x" * 20})
    c = _cluster(_without(plan))
    mysql0, endpoint = c.pod("mysql-0"), external("203.0.113.20")
    assert c.allows(mysql0, endpoint, 9443) and not c.allows(mysql0, endpoint, 443)


@pytest.mark.parametrize(("drop", "broken"), [
    ("mysql-backup", "job -> agent"),    # without the job's egress rule no backup is ever asked for
    ("mysql-backup-s3", "pod -> S3"),    # without the S3 egress rule no upload, archive or restore
])
def test_the_checks_fail_without_each_backup_rule(drop: str, broken: str) -> None:
    c = _cluster(_without(run_program("dev", BACKUPS), drop=drop))
    pods = _pods(c)
    failing = [(s.name, d.name, p) for s, d, p in allowed_flows(pods) if not c.allows(s, d, p)]
    assert failing, broken


@pytest.mark.parametrize("wrong", ["open-egress", "any-namespace-metrics", "job-to-everything"])
def test_the_refusals_fail_on_a_wrong_rule(wrong: str) -> None:
    """A deliberately wrong rule in place of each right one: the refused matrix catches it."""
    plan = run_program("dev", BACKUPS)
    objs = plan.kubernetes_objects()
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    if wrong == "open-egress":  # the S3 rule without its port and its link-local exception
        by_name[("NetworkPolicy", "mysql-backup-s3")]["spec"]["egress"] = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]
    elif wrong == "any-namespace-metrics":  # the old rule: any pod of any namespace
        for rule in by_name[("NetworkPolicy", "mysql")]["spec"]["ingress"]:
            if rule["ports"][0]["port"] == MYSQLD_EXPORTER_PORT:
                rule["from"] = [{"namespaceSelector": {}}]
    else:  # the job's egress to anything (the members' own ingress still refuses it their other ports)
        by_name[("NetworkPolicy", "mysql-backup")]["spec"]["egress"] = [{}]
    c = _cluster(objs)
    pods = _pods(c)
    leaked = [(s.name, d.name, p) for s, d, p in refused_flows(pods) if c.allows(s, d, p)]
    assert leaked, wrong
