"""The operator's files are valid: compose config, Prometheus config and rules, dashboards.

CI installs docker-compose and prometheus (Debian packages, see .ci/run); none of
these checks needs a Docker engine or a running Prometheus.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: .ci/run installs it (apt-get install prometheus docker-compose)"
    return path


def run(*argv: str) -> str:
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_compose_file__validates_and_has_every_service() -> None:
    run(tool("docker-compose"), "-f", "docker-compose.yml", "config", "-q")
    config = yaml.safe_load(run(tool("docker-compose"), "-f", "docker-compose.yml", "config"))
    services = config["services"]
    assert set(services) == {"kafka", "redis", "worker-1", "worker-2", "api", "generator",
                             "prometheus", "grafana"}
    assert services["api"]["command"][0] == "api"
    long_running = set(services) - {"generator"}
    assert all("healthcheck" in services[s] for s in long_running)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert {"kafka-data", "redis-data", "prometheus-data", "grafana-data"} <= set(config["volumes"])


def test_prometheus_config_and_rules__pass_promtool_and_rule_unit_tests() -> None:
    promtool = tool("promtool")
    run(promtool, "check", "config", "prometheus/prometheus.yml")
    run(promtool, "check", "rules", "prometheus/alerts.yml")
    assert "SUCCESS" in run(promtool, "test", "rules", "prometheus/alerts_test.yml")


def test_compose_scrape_targets__are_the_compose_workers() -> None:
    prom = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {t.split(":")[0] for t in targets} == {s for s in compose["services"] if s.startswith("worker")}


def test_dashboards__are_what_the_generator_writes_and_use_the_provisioned_datasource() -> None:
    run(sys.executable, "grafana/generate.py", "--check")
    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    titles = set()
    for path in (ROOT / "grafana/dashboards").glob("*.json"):
        d = json.loads(path.read_text())
        titles.add(d["title"])
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids))
        assert all(t["datasource"]["uid"] == uid for p in d["panels"] for t in p["targets"])
    assert titles == {"streamseg / Overview", "streamseg / Segments", "streamseg / Drift"}


@pytest.mark.parametrize("metric", ["streamseg_consumer_lag_messages", "streamseg_dead_letters_total",
                                    "streamseg_processing_latency_seconds_bucket",
                                    "streamseg_drift_psi", "streamseg_drift_centroid_shift",
                                    "streamseg_membership_changes_total"])
def test_dashboards__cover_the_required_figures(metric: str) -> None:
    text = "".join(p.read_text() for p in (ROOT / "grafana/dashboards").glob("*.json"))
    assert metric in text
