"""MySqlReplicatedSet under Pulumi mocks: the registered graph and the rendered objects.

The component runs inside a small program (written to a temporary file) that reads
the stack's settings exactly as __main__.py does and passes an explicit Kubernetes
provider, then tools.harness.offline.run_program records every registration.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pulumi
import pytest

from components import tokens
from components.facts import CLUSTER_DOMAIN, LEAF_EARLY_RENEWAL_HOURS, renewal_serial
from components.pins import MYSQLD_EXPORTER_IMAGE
from components.workload.mysql import budget
from components.workload.mysql import config as mysql_config
from components.workload.mysql.set import MYSQL_UID, selector_labels
from tests.conftest import KUBERNETES_VERSION
from tools.harness.mocks import SECRET_TEXT, AtomicMocks, RecordingMonitor
from tools.harness.offline import Plan, run_program

STACK = "dev"
NAMESPACE = "atomic-mysql"
COMPONENT = tokens.MYSQL_SET

PROGRAM = '''
import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.workload.mysql.set import MySqlReplicatedSet, MySqlReplicatedSetArgs
from components.settings.load import load_settings

settings = load_settings()
provider = k8s.Provider("kubernetes")
mysql = MySqlReplicatedSet(
    "mysql",
    MySqlReplicatedSetArgs(settings=settings.mysql, secrets=settings.mysql_secrets, namespace=settings.namespace),
    opts=ResourceOptions(providers=[provider]),
)
pulumi.export("primaryHost", mysql.primary_host)
pulumi.export("readHost", mysql.read_host)
pulumi.export("headlessService", mysql.headless_service_name)
pulumi.export("secretName", mysql.secret_name)
pulumi.export("replicas", mysql.replicas)
'''


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("program") / "__main__.py"
    path.write_text(PROGRAM)
    return path


@pytest.fixture
def run(program: Path) -> Any:
    def runner(overrides: dict[str, Any] | None = None, secrets: dict[str, str] | None = None) -> Plan:
        return run_program(STACK, overrides, secrets, program=program)

    return runner


def objects(plan: Plan) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in plan.kubernetes_objects()}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_template(plan: Plan) -> dict[str, Any]:
    return objects(plan)[("StatefulSet", "mysql")]["spec"]["template"]


def containers(plan: Plan) -> dict[str, dict[str, Any]]:
    spec = pod_template(plan)["spec"]
    return {c["name"]: c for c in spec["initContainers"] + spec["containers"]}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# ---------------------------------------------------------------- parts and wiring


def test_every_part_is_registered_under_the_component_with_the_explicit_provider(run: Any) -> None:
    plan = run()
    [component] = plan.of_type(COMPONENT)
    assert component.name == "mysql"
    assert set(objects(plan)) == {
        ("ConfigMap", "mysql-config"),
        ("Secret", "mysql-credentials"),
        ("Service", "mysql"),
        ("Service", "mysql-read"),
        ("Service", "mysql-primary"),
        ("StatefulSet", "mysql"),
        ("PodDisruptionBudget", "mysql"),
        ("NetworkPolicy", "mysql"),
        ("NetworkPolicy", "mysql-clients"),
        ("Secret", "mysql-tls"),
        # Patches of the claims the StatefulSet controller makes (test_set_storage.py).
        *(("PersistentVolumeClaim", f"data-mysql-{ordinal}") for ordinal in range(3)),
    }
    [provider] = plan.of_type(tokens.KUBERNETES_PROVIDER)
    for child in plan.children_of(component):
        assert child.name.startswith("mysql-"), child.name
        if child.type.startswith("kubernetes:"):
            assert child.provider.rsplit("::", 1)[0] == provider.urn, f"{child.name} uses {child.provider}"
    for obj in plan.kubernetes_objects():
        assert obj["metadata"]["namespace"] == NAMESPACE


def test_selectors_match_the_pods_and_each_service_selects_the_right_ones(run: Any) -> None:
    plan = run()
    kube = objects(plan)
    sts = kube[("StatefulSet", "mysql")]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"] == selector_labels("mysql")
    assert selects(sts["spec"]["selector"]["matchLabels"], pod_labels)
    assert sts["spec"]["serviceName"] == "mysql"
    # Labels the StatefulSet controller adds to each pod.
    primary_pod = {**pod_labels, "statefulset.kubernetes.io/pod-name": "mysql-0"}
    replica_pod = {**pod_labels, "statefulset.kubernetes.io/pod-name": "mysql-1"}

    headless = kube[("Service", "mysql")]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["ports"]} == {3306, 3307, 9104}  # 9104: the exporter, for the ServiceMonitor
    for name in ("mysql", "mysql-read"):
        selector = kube[("Service", name)]["spec"]["selector"]
        assert selects(selector, primary_pod) and selects(selector, replica_pod)
    primary = kube[("Service", "mysql-primary")]["spec"]
    assert selects(primary["selector"], primary_pod) and not selects(primary["selector"], replica_pod)
    for name in ("mysql-read", "mysql-primary"):
        assert [(p["port"], p["targetPort"]) for p in kube[("Service", name)]["spec"]["ports"]] == [(3306, "mysql")]
    ports = {p["name"]: p["containerPort"] for c in containers(plan).values() for p in c.get("ports", [])}
    assert ports == {"mysql": 3306, "clone": 3307, "metrics": 9104}  # the Services' named target ports exist

    pdb = kube[("PodDisruptionBudget", "mysql")]["spec"]
    assert selects(pdb["selector"]["matchLabels"], pod_labels) and pdb["maxUnavailable"] == 1


def test_network_policy_admits_clients_on_3306_and_only_members_on_3307(run: Any) -> None:
    plan = run()
    policy = objects(plan)[("NetworkPolicy", "mysql")]["spec"]
    pod_labels = pod_template(plan)["metadata"]["labels"]
    assert selects(policy["podSelector"]["matchLabels"], pod_labels)
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    by_port = {rule["ports"][0]["port"]: [peer.get("podSelector", {}).get("matchLabels") for peer in rule["from"]]
               for rule in policy["ingress"]}
    assert by_port[3306] == [{"mysql-client": "true"}, selector_labels("mysql")]
    assert by_port[3307] == [selector_labels("mysql")]
    # The exporter's port, from Prometheus's pods wherever it runs (any namespace); nothing else is open to it.
    [metrics] = [rule for rule in policy["ingress"] if rule["ports"][0]["port"] == 9104]
    prometheus = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    assert metrics["from"] == [prometheus] and len(metrics["ports"]) == 1
    assert all(len(rule["ports"]) == 1 and rule["ports"][0]["protocol"] == "TCP" for rule in policy["ingress"])
    # Out of a MySQL pod: only to the other members, on the same two ports.
    [egress] = policy["egress"]
    assert [peer["podSelector"]["matchLabels"] for peer in egress["to"]] == [selector_labels("mysql")]
    assert sorted((p["protocol"], p["port"]) for p in egress["ports"]) == [("TCP", 3306), ("TCP", 3307)]


def test_the_clients_may_open_mysql_connections_to_the_set_and_nothing_else(run: Any) -> None:
    plan = run()
    policy = objects(plan)[("NetworkPolicy", "mysql-clients")]["spec"]
    assert policy["podSelector"]["matchLabels"] == {"mysql-client": "true"} and policy["policyTypes"] == ["Egress"]
    assert policy["egress"] == [{"to": [{"podSelector": {"matchLabels": selector_labels("mysql")}}],
                                 "ports": [{"protocol": "TCP", "port": 3306}]}]


def test_the_pods_start_only_once_their_network_policy_exists(run: Any) -> None:
    """Under the namespace's default deny, a pod started before its policy could not clone or replicate."""
    plan = run()
    [sts] = plan.of_type("kubernetes:apps/v1:StatefulSet")
    policy = plan.named("mysql-netpol")
    assert policy.urn in sts.options["dependsOn"]


def test_config_map_secret_and_scripts_are_wired_into_the_pods(run: Any) -> None:
    plan = run()
    kube = objects(plan)
    data = kube[("ConfigMap", "mysql-config")]["data"]
    assert data == mysql_config.config_map_data("mysql", "8.4", plan.settings.mysql.apply_threads)
    for name in mysql_config.SCRIPT_NAMES:  # the pods run the files of this repository, verbatim
        assert data[name] == (mysql_config.SCRIPTS_DIR / name).read_text()
    volumes = {v["name"]: v for v in pod_template(plan)["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "mysql-config"
    assert volumes["credentials"]["secret"]["secretName"] == "mysql-credentials"
    assert set(kube[("Secret", "mysql-credentials")]["stringData"]) == {
        "root-password", "replication-password", "backup-password", "verify-password", "exporter-password",
        "exporter.cnf"}
    scripts = {f"{mysql_config.CONFIG_MOUNT}/{name}" for name in data}
    for name, container in containers(plan).items():
        if name == "metrics":  # mysqld_exporter: its image's own program, no script
            continue
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts[mysql_config.CONFIG_MOUNT] == "config"
        commands = [container.get("command", [])] + [
            container[probe]["exec"]["command"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")
            if probe in container]
        for command in commands:
            assert all(arg in scripts for arg in command if arg.startswith("/")), (name, command)
        assert env_of(container)["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env_of(container)["MYSQL_SET_NAME"] == "mysql"
        # the qualified name: the one the certificate's wildcard matches for OpenSSL (test_tls_rehearsal)
        assert env_of(container)["PEER_HOST_PATTERN"] == mysql_config.peer_host_pattern(
            "mysql", NAMESPACE, CLUSTER_DOMAIN), name
    assert env_of(containers(plan)["mysql"])["MYSQL_ROOT_PASSWORD_FILE"] == "/etc/mysql-secrets/root-password"
    template = pod_template(plan)
    assert template["metadata"]["annotations"]["checksum/config"]


def test_config_changes_roll_the_pods_but_replica_count_does_not(run: Any) -> None:
    base = pod_template(run())["metadata"]["annotations"]["checksum/config"]
    assert pod_template(run({"mysqlReplicas": 5}))["metadata"]["annotations"]["checksum/config"] == base
    assert pod_template(run({"mysqlVersion": "8.0"}))["metadata"]["annotations"]["checksum/config"] != base


# ---------------------------------------------------------------- secrets


def test_configured_passwords_are_secret_everywhere(run: Any) -> None:
    passwords = {
        "mysqlRootPassword": "correct-horse-battery-root",
        "mysqlReplicationPassword": "correct-horse-battery-repl",
        "mysqlBackupPassword": "correct-horse-battery-backup",
        "mysqlVerifyPassword": "correct-horse-battery-verify",
        "mysqlExporterPassword": "correct-horse-battery-export",
    }
    plan = run(secrets=passwords)
    assert not plan.of_type(tokens.RANDOM_PASSWORD)
    dumped = json.dumps([(r.inputs, r.outputs) for r in plan.resources]) + json.dumps(plan.kubernetes_objects())
    for value in passwords.values():
        assert value not in dumped
    [secret] = [r for r in plan.resources if r.type == tokens.SECRET and r.name.endswith("-secret")
                and not r.name.endswith("-tls-secret")]
    assert secret.inputs["stringData"] in (SECRET_TEXT, {k: SECRET_TEXT for k in secret.inputs["stringData"]})
    assert {"data", "stringData"} <= set(secret.options["additionalSecretOutputs"])
    # What the provider gets, each under the key the scripts read.
    assert secret.state["stringData"] == {
        "root-password": passwords["mysqlRootPassword"],
        "replication-password": passwords["mysqlReplicationPassword"],
        "backup-password": passwords["mysqlBackupPassword"],
        "verify-password": passwords["mysqlVerifyPassword"],
        "exporter-password": passwords["mysqlExporterPassword"],
        "exporter.cnf": mysql_config.exporter_cnf(passwords["mysqlExporterPassword"]),
    }


def test_missing_passwords_are_generated_never_empty(run: Any) -> None:
    plan = run(secrets={"mysqlRootPassword": "given-root-password"})
    generated = plan.of_type(tokens.RANDOM_PASSWORD)
    assert sorted(r.name for r in generated) == [
        "mysql-backup-password", "mysql-exporter-password", "mysql-replication-password", "mysql-verify-password"]
    for r in generated:
        assert r.inputs["length"] == 32 and r.inputs["special"] is False
    [secret] = [r for r in plan.resources if r.type == tokens.SECRET and r.name.endswith("-secret")
                and not r.name.endswith("-tls-secret")]
    assert secret.inputs["stringData"] in (SECRET_TEXT, {k: SECRET_TEXT for k in secret.inputs["stringData"]})
    keys = ("root-password", "replication-password", "backup-password", "verify-password", "exporter-password")
    assert all(secret.state["stringData"][key] for key in keys)
    assert len({secret.state["stringData"][key] for key in keys}) == 5  # one password per account


def test_a_configured_verify_password_replaces_only_its_generated_one(run: Any) -> None:
    plan = run(secrets={"mysqlVerifyPassword": "correct-horse-battery-verify"})
    generated = plan.of_type(tokens.RANDOM_PASSWORD)
    assert "mysql-verify-password" not in {r.name for r in generated} and len(generated) == 4
    [secret] = [r for r in plan.resources if r.type == tokens.SECRET and r.name.endswith("-secret")
                and not r.name.endswith("-tls-secret")]
    assert secret.state["stringData"]["verify-password"] == "correct-horse-battery-verify"
    dumped = json.dumps([(r.inputs, r.outputs) for r in plan.resources]) + json.dumps(plan.kubernetes_objects())
    assert "correct-horse-battery-verify" not in dumped


@pytest.mark.parametrize("key", ["mysqlRootPassword", "mysqlVerifyPassword"])
def test_an_empty_configured_password_is_refused(run: Any, key: str) -> None:
    with pytest.raises(pulumi.RunError, match=rf"atomic-mysql:{key}=\[secret\]: must not be empty"):
        run(secrets={key: ""})


def test_a_multi_line_verify_password_stops_before_anything_is_registered(program: Path) -> None:
    """Checked when settings are read (no longer inside an apply, after the set's resources)."""
    monitor = RecordingMonitor(AtomicMocks())
    with pytest.raises(pulumi.RunError, match=r"mysqlVerifyPassword=\[secret\]: contains a line break") as refused:
        run_program(STACK, secret_overrides={"mysqlVerifyPassword": "first-Line-1234\nsecond-line"}, program=program,
                    monitor=monitor)
    assert "first-Line" not in str(refused.value)  # the message names the key, never the value
    assert [r.type for r in monitor.registrations if r.type != tokens.STACK] == []


# ---------------------------------------------------------------- settings and immutable fields


IMMUTABLE = ("selector", "serviceName", "volumeClaimTemplates", "podManagementPolicy")


def test_replicas_image_and_resources_leave_the_immutable_fields_alone(run: Any) -> None:
    base = objects(run())[("StatefulSet", "mysql")]["spec"]
    changed = objects(run({
        "mysqlReplicas": 5,
        "mysqlImage": "mysql:8.4.7",
        "mysqlBackupImage": "percona/percona-xtrabackup:8.4.0-5.1",
        "mysqlCpuRequest": "1",
        "mysqlMemoryLimit": "4Gi",
    }))[("StatefulSet", "mysql")]["spec"]
    for field in IMMUTABLE:
        assert changed[field] == base[field], field
    assert changed["replicas"] == 5 and base["replicas"] == 3
    images = {c["name"]: c["image"] for c in changed["template"]["spec"]["initContainers"]
              + changed["template"]["spec"]["containers"]}
    assert images == {"init-mysql": "mysql:8.4.7", "mysql": "mysql:8.4.7",
                      "clone-mysql": "percona/percona-xtrabackup:8.4.0-5.1",
                      "sidecar": "percona/percona-xtrabackup:8.4.0-5.1", "metrics": MYSQLD_EXPORTER_IMAGE}


def test_storage_retention_affinity_and_budget_follow_the_settings(run: Any) -> None:
    base = objects(run())[("StatefulSet", "mysql")]["spec"]
    assert base["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete", "whenScaled": "Retain"}  # dev
    [claim] = base["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"] == {"storage": "5Gi"} and "storageClassName" not in claim["spec"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in base["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert base["podManagementPolicy"] == "OrderedReady"

    # Hard anti-affinity needs a minion per pod (5 pods): settings refuse it on dev's 2 minions.
    plan = run({"mysqlStorageClass": "gp3-mysql", "mysqlStorageSize": "50Gi", "mysqlAntiAffinity": "hard",
                "minionCount": 5, "mysqlPvcWhenDeleted": "Retain", "mysqlReplicas": 5, "mysqlPdbMaxUnavailable": 2})
    spec = objects(plan)[("StatefulSet", "mysql")]["spec"]
    assert spec["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "gp3-mysql"
    assert spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {"storage": "50Gi"}
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    [term] = spec["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == selector_labels("mysql")
    assert objects(plan)[("PodDisruptionBudget", "mysql")]["spec"]["maxUnavailable"] == 2


def test_mariadb_engine_uses_its_images_and_entrypoint_variables(run: Any) -> None:
    plan = run({"mysqlEngine": "mariadb", "mysqlVersion": "10.11"})
    mysqld = containers(plan)["mysql"]
    env = env_of(mysqld)
    assert env["MYSQL_ENGINE"] == "mariadb" and env["MYSQL_VERSION"] == "10.11"
    assert env["MARIADB_ROOT_PASSWORD_FILE"] == "/etc/mysql-secrets/root-password"
    assert env["MARIADB_ROOT_HOST"] == "localhost" and "MYSQL_ROOT_PASSWORD_FILE" not in env
    assert {c["image"] for c in containers(plan).values()} == {"mariadb:10.11.14", MYSQLD_EXPORTER_IMAGE}
    assert objects(plan)[("ConfigMap", "mysql-config")]["data"]["replica.cnf"] == mysql_config.replica_cnf(
        "mariadb", "10.11", plan.settings.mysql.apply_threads)


def test_statefulset_is_protected_with_protect_stateful(run: Any) -> None:
    def sts_options(plan: Plan) -> dict[str, Any]:
        [sts] = plan.of_type(tokens.STATEFUL_SET)
        return sts.options

    assert sts_options(run())["protect"] is False
    protected = sts_options(run({"protectStateful": True}))
    assert protected["protect"] is True and protected["deleteBeforeReplace"] is True


# ---------------------------------------------------------------- hardening and validation


def test_every_container_is_hardened_and_sized(run: Any) -> None:
    plan = run()
    spec = pod_template(plan)["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsUser"] == spec["securityContext"]["fsGroup"] == MYSQL_UID
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert all("hostPath" not in v for v in spec["volumes"])
    for name, container in containers(plan).items():
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == MYSQL_UID, name
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert set(container["resources"]) == {"requests", "limits"}, name
        assert set(container["resources"]["limits"]) == {"cpu", "memory"}, name
        assert container["imagePullPolicy"] == "IfNotPresent", name
    mysqld, sidecar = containers(plan)["mysql"], containers(plan)["sidecar"]
    assert mysqld["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"},
                                   "limits": {"cpu": "1", "memory": "1Gi"}}  # the dev stack's settings
    for container in (mysqld, sidecar):
        assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(container)
    assert mysqld["livenessProbe"]["exec"]["command"] == mysql_config.liveness_command()
    assert mysqld["readinessProbe"]["exec"]["command"] == mysql_config.readiness_command()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"mysqlEngine": "mariadb", "mysqlVersion": "11.4", "mysqlAntiAffinity": "hard", "minionCount": 3,
         "mysqlStorageClass": "gp3-mysql"},
        {"mysqlVersion": "8.0", "mysqlReplicas": 1, "mysqlPvcWhenScaled": "Delete"},
    ],
)
def test_rendered_objects_validate_strictly(run: Any, overrides: dict[str, Any]) -> None:
    plan = run(overrides)
    rendered = plan.kubernetes_objects()
    # ...and a patch of each pod's claim, which must be valid as an object too (Server-Side Apply).
    assert len(rendered) == 10 + plan.settings.mysql.replicas
    for obj in rendered:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_outputs_name_the_hosts_secret_and_replicas(run: Any) -> None:
    plan = run({"mysqlReplicas": 4})
    assert {name: output.value for name, output in plan.outputs.items()} == {
        "primaryHost": f"mysql-primary.{NAMESPACE}.svc",
        "readHost": f"mysql-read.{NAMESPACE}.svc",
        "headlessService": "mysql",
        "secretName": "mysql-credentials",
        "replicas": 4,
    }
    [component] = plan.of_type(COMPONENT)
    assert component.outputs["primaryHost"] == f"mysql-primary.{NAMESPACE}.svc"
    assert component.outputs["replicas"] == 4
    # Where `make verify` finds its account: names only, never the password.
    assert component.outputs["verifyUser"] == mysql_config.VERIFY_USER == "verify"
    assert component.outputs["verifyPasswordKey"] == "verify-password"
    secret = objects(plan)[("Secret", "mysql-credentials")]
    assert component.outputs["verifyPasswordKey"] in secret["stringData"]


# ---------------------------------------------------------------- the clone path and the applier


def test_clone_containers_are_sized_by_their_own_settings_and_thread_by_their_cpu(run: Any) -> None:
    """Defaults (Pulumi.yaml): clone-mysql 250m/256Mi..2/1Gi, sidecar 100m/128Mi..2/512Mi, and one
    thread per CPU of each container's limit."""
    by_name = containers(run())
    clone, sidecar = by_name["clone-mysql"], by_name["sidecar"]
    assert clone["resources"] == {"requests": {"cpu": "250m", "memory": "256Mi"},
                                  "limits": {"cpu": "2", "memory": "1Gi"}}
    assert sidecar["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                    "limits": {"cpu": "2", "memory": "512Mi"}}
    assert env_of(clone)["CLONE_PARALLEL"] == "2" and env_of(sidecar)["BACKUP_PARALLEL"] == "2"
    assert "BACKUP_PARALLEL" not in env_of(clone) and "CLONE_PARALLEL" not in env_of(sidecar)

    sized = containers(run({"mysqlCloneCpuLimit": "1500m", "mysqlSidecarCpuLimit": "3",
                            "mysqlCloneMemoryLimit": "2Gi"}))
    assert env_of(sized["clone-mysql"])["CLONE_PARALLEL"] == "2"  # 1.5 CPUs, rounded up
    assert env_of(sized["sidecar"])["BACKUP_PARALLEL"] == "3"
    assert sized["clone-mysql"]["resources"]["limits"] == {"cpu": "1500m", "memory": "2Gi"}
    assert sized["mysql"]["resources"] == by_name["mysql"]["resources"]  # mysqld's own settings are untouched

    fixed = containers(run({"mysqlCloneThreads": 5, "mysqlSidecarCpuLimit": "500m"}))
    assert env_of(fixed["clone-mysql"])["CLONE_PARALLEL"] == env_of(fixed["sidecar"])["BACKUP_PARALLEL"] == "5"
    one = containers(run({"mysqlCloneCpuLimit": "250m", "mysqlSidecarCpuLimit": "100m"}))
    assert env_of(one["clone-mysql"])["CLONE_PARALLEL"] == env_of(one["sidecar"])["BACKUP_PARALLEL"] == "1"


@pytest.mark.parametrize(("overrides", "expected", "absent"), [
    ({}, ["replica_parallel_workers=16", "replica_preserve_commit_order=ON"], []),
    ({"mysqlReplicaApplyThreads": 1}, ["replica_parallel_workers=1", "replica_preserve_commit_order=ON"], []),
    ({"mysqlEngine": "mariadb", "mysqlVersion": "11.4"},
     ["slave_parallel_threads=16", "slave_parallel_mode=optimistic"], []),
    ({"mysqlEngine": "mariadb", "mysqlVersion": "10.11", "mysqlReplicaApplyThreads": 8},
     ["slave_parallel_threads=8", "slave_parallel_mode=optimistic"], []),
    ({"mysqlEngine": "mariadb", "mysqlVersion": "10.11", "mysqlReplicaApplyThreads": 1},
     ["slave_parallel_threads=0"], ["slave_parallel_mode"]),
])
def test_replicas_apply_with_the_configured_threads_in_commit_order(
    run: Any, overrides: dict[str, Any], expected: list[str], absent: list[str]
) -> None:
    data = objects(run(overrides))[("ConfigMap", "mysql-config")]["data"]
    replica = data["replica.cnf"].splitlines()
    for option in expected:
        assert option in replica, option
    for name in absent:
        assert not [line for line in replica if line.startswith(name)], name
    primary = data["primary.cnf"]
    assert "parallel" not in primary and "preserve_commit_order" not in primary  # only replicas apply


# ------------------------------------------------------------------ TLS


def test_every_member_mounts_the_sets_tls_secret_where_the_config_names_it(run: Any) -> None:
    plan = run()
    kube = objects(plan)
    secret = kube[("Secret", "mysql-tls")]
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["stringData"]) == {mysql_config.TLS_CA, mysql_config.TLS_CERT, mysql_config.TLS_KEY}
    assert secret["stringData"][mysql_config.TLS_KEY] == SECRET_TEXT  # the key stays a Pulumi secret
    spec = pod_template(plan)["spec"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "tls"]
    assert volume["secret"] == {"secretName": "mysql-tls", "defaultMode": 0o440}
    for name in ("mysql", "sidecar", "clone-mysql"):
        mounts = {m["mountPath"]: m for m in containers(plan)[name]["volumeMounts"]}
        assert mounts[mysql_config.TLS_MOUNT] == {"name": "tls", "mountPath": mysql_config.TLS_MOUNT,
                                                  "readOnly": True}, name
        assert env_of(containers(plan)[name])["MYSQL_TLS_DIR"] == mysql_config.TLS_MOUNT
    # mysqld reads the same files: the config's paths are the mount's.
    for cnf in ("primary.cnf", "replica.cnf"):
        assert f"ssl_key={mysql_config.TLS_MOUNT}/tls.key" in kube[("ConfigMap", "mysql-config")]["data"][cnf]


def test_the_certificate_names_every_member_and_service_in_the_namespace(run: Any) -> None:
    plan = run()
    [request] = plan.of_type(tokens.CERT_REQUEST)
    names = set(request.inputs["dnsNames"])
    assert {"*.mysql", f"*.mysql.{NAMESPACE}.svc.cluster.local", "mysql-primary", f"mysql-read.{NAMESPACE}.svc",
            "localhost"} <= names
    assert request.inputs["ipAddresses"] == ["127.0.0.1"]
    [cert] = plan.of_type(tokens.LOCALLY_SIGNED_CERT)
    assert {"server_auth", "client_auth"} <= set(cert.inputs["allowedUses"])
    [ca] = plan.of_type(tokens.SELF_SIGNED_CERT)
    assert ca.inputs["isCaCertificate"] is True and cert.inputs["caCertPem"] == ca.state["certPem"]
    # renewed by the cluster's rounds (pulumi-tls's early renewal alone never fires on `up`)
    assert request.inputs["subject"]["serialNumber"] == renewal_serial()
    assert cert.inputs["earlyRenewalHours"] == LEAF_EARLY_RENEWAL_HOURS


def test_a_new_certificate_rolls_the_set_and_the_checksum_carries_no_secret(run: Any) -> None:
    annotations = pod_template(run())["metadata"]["annotations"]
    assert set(annotations) == {"checksum/config", "checksum/tls", "checksum/credentials"}
    assert annotations["checksum/tls"] != SECRET_TEXT and len(annotations["checksum/tls"]) == 64


# ---------------------------------------------------------------- rotation and shutdown

PASSWORDS = {
    "mysqlRootPassword": "correct-horse-battery-root",
    "mysqlReplicationPassword": "correct-horse-battery-repl",
    "mysqlBackupPassword": "correct-horse-battery-backup",
    "mysqlVerifyPassword": "correct-horse-battery-verify",
}


def credentials_annotation(plan: Plan) -> str:
    value: str = pod_template(plan)["metadata"]["annotations"]["checksum/credentials"]
    return value


def test_a_rotated_password_rolls_the_set_and_the_checksum_shows_nothing_of_it(run: Any) -> None:
    base = credentials_annotation(run(secrets=PASSWORDS))
    assert base != SECRET_TEXT and len(base) == 64 and int(base, 16) >= 0  # plain, so the preview shows the roll
    assert credentials_annotation(run(secrets=PASSWORDS)) == base  # nothing else moves it
    assert credentials_annotation(run({"mysqlReplicas": 5}, secrets=PASSWORDS)) == base
    for key in PASSWORDS:
        rotated = credentials_annotation(run(secrets={**PASSWORDS, key: PASSWORDS[key] + "-2"}))
        assert rotated != base, key
    # Keyed: not a hash anyone could recompute from a guessed password.
    plain = json.dumps(dict(zip(("root-password", "replication-password", "backup-password", "verify-password"),
                                PASSWORDS.values(), strict=True)), sort_keys=True)
    assert base != hashlib.sha256(plain.encode()).hexdigest()
    plan = run(secrets=PASSWORDS)
    [key] = plan.of_type(tokens.RANDOM_BYTES)
    assert key.inputs["length"] == 32
    dumped = json.dumps(plan.kubernetes_objects())
    for value in PASSWORDS.values():
        assert value not in dumped


def test_the_mysqld_container_stops_writes_before_its_bounded_shutdown(run: Any) -> None:
    plan = run()
    spec = pod_template(plan)["spec"]
    mysqld = containers(plan)["mysql"]
    assert mysqld["lifecycle"] == {"preStop": {"exec": {"command": ["bash", "/etc/mysql-config/prestop.sh"]}}}
    assert "prestop.sh" in objects(plan)[("ConfigMap", "mysql-config")]["data"]
    assert env_of(mysqld)["PRESTOP_LOCK_SECONDS"] == str(budget.PRESTOP_LOCK_SECONDS)
    assert env_of(mysqld)["PRESTOP_TIMEOUT_SECONDS"] == str(budget.PRESTOP_BUDGET_SECONDS)
    grace = spec["terminationGracePeriodSeconds"]
    assert grace == budget.termination_grace_seconds() == (
        budget.PRESTOP_BUDGET_SECONDS + budget.MYSQLD_SHUTDOWN_SECONDS + budget.TERMINATION_SLACK_SECONDS)
    assert budget.PRESTOP_BUDGET_SECONDS > budget.PRESTOP_LOCK_SECONDS


@pytest.mark.parametrize(("size", "total", "per_file"), [
    ("1Gi", 2**28, 2**25), ("5Gi", 5 * 2**28, 5 * 2**25), ("100Gi", 25 * 2**30, 2**30)])
def test_the_sidecar_bounds_the_binlogs_by_the_volume(run: Any, size: str, total: int, per_file: int) -> None:
    env = env_of(containers(run({"mysqlStorageSize": size}))["sidecar"])
    assert (int(env["BINLOG_MAX_BYTES"]), int(env["BINLOG_FILE_BYTES"])) == (total, per_file)
    assert int(env["BINLOG_FILE_BYTES"]) % 4096 == 0
    assert env["DISK_ALARM_PERCENT"] == str(mysql_config.DISK_ALARM_PERCENT)
