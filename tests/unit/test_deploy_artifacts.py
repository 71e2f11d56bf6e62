"""deploy/: the compose file and Kubernetes manifests parse with the expected parts, the
Dockerfile copies files that exist, the cluster DDL is generated from the migrations, and the
Grafana dashboard is well-formed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from deploy.clickhouse.cluster_ddl import ClusterDDLError, generate, main, rewrite_statement
from keywarden.settings import PROJECT_ROOT
from schemas.clickhouse.migrations import discover

DEPLOY = PROJECT_ROOT / "deploy"
CREATE_TABLE_RE = re.compile(r"CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)


def manifests() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def test_compose_file_has_every_service_wired_to_kafka_and_clickhouse() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"kafka", "clickhouse", "setup", "gateway", "pipeline", "notifier"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server")
    assert services["gateway"]["deploy"]["replicas"] >= 2
    assert services["pipeline"]["deploy"]["replicas"] >= 2
    for name in ("gateway", "pipeline", "notifier", "setup"):
        env = services[name]["environment"]
        assert env["KEYWARDEN_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert "@clickhouse:8123/" in env["KEYWARDEN_CLICKHOUSE_URL"]
        assert services[name]["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert services["gateway"]["command"] == ["gateway", "serve"]
    assert services["pipeline"]["command"][:2] == ["pipeline", "run"]
    assert services["notifier"]["command"] == ["notifier", "run"]


def test_kubernetes_manifests_parse_with_the_expected_kinds() -> None:
    docs = manifests()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("Namespace", "keywarden"), ("ConfigMap", "keywarden-config"),
        ("Secret", "keywarden-secrets"), ("Job", "keywarden-setup"),
        ("Deployment", "keywarden-gateway"), ("Service", "keywarden-gateway"),
        ("HorizontalPodAutoscaler", "keywarden-gateway"),
        ("StatefulSet", "keywarden-pipeline"), ("Deployment", "keywarden-notifier"),
        ("StatefulSet", "kafka"), ("ClickHouseInstallation", "keywarden"),
    } <= kinds  # fmt: skip
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "keywarden"


def test_workloads_take_settings_from_the_config_map_and_secret() -> None:
    for doc in manifests():
        workload = doc["kind"] in ("Deployment", "StatefulSet", "Job")
        if not workload or doc["metadata"]["name"] == "kafka":
            continue
        spec = doc["spec"]["template"]["spec"]
        for container in spec["containers"]:
            refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
            assert refs == {"keywarden-config", "keywarden-secrets"}, doc["metadata"]["name"]
    hpa = next(d for d in manifests() if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "keywarden-gateway"
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]


def test_config_map_uses_only_real_settings() -> None:
    from keywarden.settings import Settings

    config = next(d for d in manifests() if d["kind"] == "ConfigMap")
    secret = next(d for d in manifests() if d["kind"] == "Secret")
    fields = {f"KEYWARDEN_{name.upper()}" for name in Settings.model_fields}
    for variable in [*config["data"], *secret["stringData"]]:
        assert variable in fields or variable.startswith("KEYWARDEN_KEK_"), variable


def test_dockerfile_copies_only_files_that_exist() -> None:
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    sources = []
    for line in dockerfile.splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            sources += parts[1:-1]
    assert "pyproject.toml" in sources and "keywarden" in sources
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), source
    assert 'ENTRYPOINT ["keywarden"]' in dockerfile


def local_tables() -> set[str]:
    names = set()
    for migration in discover():
        for statement in migration.statements:
            match = CREATE_TABLE_RE.search(statement)
            if match and re.search(r"ENGINE\s*=\s*\w*MergeTree", statement):
                names.add(match.group(1))
    return names


def test_cluster_ddl_is_generated_from_every_migration_table() -> None:
    ddl = generate("prod")
    tables = local_tables()
    assert {"request_events", "audit_log", "alert_deliveries"} <= tables
    for table in tables:
        assert re.search(
            rf"CREATE TABLE IF NOT EXISTS {table}_local ON CLUSTER prod\b[\s\S]*?"
            rf"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/{{shard}}/{{database}}/"
            rf"{table}_local', '{{replica}}'", ddl), table
        assert re.search(
            rf"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER prod AS {table}_local\n"
            rf"ENGINE = Distributed\(prod, currentDatabase\(\), {table}_local, ", ddl), table
    engines = re.findall(r"ENGINE\s*=\s*(\w+)", ddl)
    assert engines and all(e.startswith("Replicated") or e == "Distributed" for e in engines)
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/" \
           "request_events_local', '{replica}', row_version)" in ddl
    assert "request_events_local, cityHash64(wrapped_key_id))" in ddl
    assert "audit_log_local, cityHash64(entity_id))" in ddl
    # no key column: sharded by the sorting key, so rows that collapse share a shard
    assert "request_dead_letters_local, cityHash64(source_topic, source_partition, " \
           "source_offset))" in ddl


def test_cluster_views_read_the_distributed_tables() -> None:
    ddl = generate("prod")
    assert "CREATE VIEW IF NOT EXISTS v_request_events ON CLUSTER prod AS\n" \
           "SELECT * FROM request_events FINAL;" in ddl
    view_bodies = re.findall(r"CREATE VIEW[\s\S]*?;\n", ddl)
    assert view_bodies and not any("_local" in body for body in view_bodies)


def test_cluster_ddl_follows_the_migration_files(tmp_path: Path) -> None:
    (tmp_path / "0001_t.sql").write_text(
        "CREATE TABLE IF NOT EXISTS t (wrapped_key_id String, n UInt8)\n"
        "ENGINE = SummingMergeTree((n))\nORDER BY wrapped_key_id;\n"
        "CREATE TABLE IF NOT EXISTS u AS t ENGINE = MergeTree ORDER BY n;\n"
        "CREATE MATERIALIZED VIEW IF NOT EXISTS mv TO u AS SELECT * FROM t;\n"
        "ALTER TABLE t ADD COLUMN IF NOT EXISTS m UInt8;\n"
    )
    ddl = generate("c", tmp_path)
    assert "ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/t_local'," \
           " '{replica}', (n))" in ddl
    assert "CREATE TABLE IF NOT EXISTS u_local ON CLUSTER c AS t_local ENGINE = " \
           "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/u_local', " \
           "'{replica}')" in ddl
    assert "u_local, cityHash64(wrapped_key_id))" in ddl  # `AS t` inherits t's columns
    assert "CREATE MATERIALIZED VIEW IF NOT EXISTS mv ON CLUSTER c TO u_local AS " \
           "SELECT * FROM t_local;" in ddl
    assert "ALTER TABLE t_local ON CLUSTER c ADD COLUMN IF NOT EXISTS m UInt8;" in ddl
    assert "ALTER TABLE t ON CLUSTER c ADD COLUMN IF NOT EXISTS m UInt8;" in ddl


def test_unknown_statement_shapes_are_refused_not_copied() -> None:
    with pytest.raises(ClusterDDLError, match="no cluster rewrite"):
        rewrite_statement("INSERT INTO t VALUES (1)", {}, "c")


def test_cluster_ddl_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cluster", "analytics"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("-- keywarden ClickHouse schema for cluster `analytics`")
    assert "ON CLUSTER analytics" in out


def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "keywarden-dashboard.json").read_text())


def test_grafana_dashboard_uses_the_clickhouse_plugin_for_every_panel() -> None:
    board = dashboard()
    assert board["__inputs"][0]["pluginId"] == "grafana-clickhouse-datasource"
    titles = " ".join(p["title"] for p in board["panels"]).lower()
    assert "spend by team" in titles and "anomalies" in titles and "p99" in titles
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    tables = local_tables()
    for panel in board["panels"]:
        assert panel["datasource"]["type"] == "grafana-clickhouse-datasource"
        for target in panel["targets"]:
            sql = target["rawSql"]
            assert target["datasource"]["type"] == "grafana-clickhouse-datasource"
            read = set(re.findall(r"\bFROM\s+(\w+)", sql))
            assert read and read <= tables, (panel["title"], read)
            assert all(re.search(rf"\bFROM\s+{t}\s+FINAL\b", sql) for t in read), panel["title"]
