"""The Prometheus side, without Docker: promtool accepts the config and rules, the alert rules
behave (promtool's rule unit tests), and the scrape targets are the services compose starts."""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy.deployfiles import (
    ALERTS_TEST_YML,
    ALERTS_YML,
    COMPOSE_GPU,
    COMPOSE_ROBOT,
    CONTRACT_METRICS,
    PROMETHEUS_YML,
    alert_queries,
    alert_rules,
    load_yaml,
    metric_names,
    parse_volume,
    which,
)

PROMTOOL = which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="needs promtool (Debian package prometheus; `make sysdeps` installs it)"
)

# The issue's alerts, by what they are for.
REQUIRED_ALERTS = {
    "inference p99 over 50 ms for 1 minute": "VlaInferenceP99High",
    "any deadline miss": "VlaDeadlineMiss",
    "holds": "VlaAgentHold",
    "an e-stop": "VlaEstop",
    "a target down": "VlaTargetDown",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=30, check=False)


@needs_promtool
def test_promtool_check_config_passes() -> None:
    result = promtool("check", "config", str(PROMETHEUS_YML))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout  # the alerts are wired in, not just valid on their own


@needs_promtool
def test_promtool_check_rules_passes() -> None:
    result = promtool("check", "rules", str(ALERTS_YML))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rules_fire_when_they_should_and_not_otherwise() -> None:
    result = promtool("test", "rules", str(ALERTS_TEST_YML))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    tests = load_yaml(ALERTS_TEST_YML)["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in alert_rules() if "alert" in rule}
    assert alerts - fired == set(), f"alerts without a firing unit test in {ALERTS_TEST_YML.name}"


def test_the_issue_alerts_exist() -> None:
    alerts = {rule["alert"] for rule in alert_rules() if "alert" in rule}
    missing = {what: name for what, name in REQUIRED_ALERTS.items() if name not in alerts}
    assert missing == {}


def test_inference_p99_alert_waits_a_minute() -> None:
    (rule,) = (rule for rule in alert_rules() if rule.get("alert") == "VlaInferenceP99High")
    assert rule["for"] == "1m"
    assert "vla_server_inference_seconds_bucket" in rule["expr"]
    assert "0.99" in rule["expr"]


def test_alerts_read_only_contract_metrics() -> None:
    for query in alert_queries():
        unknown = metric_names(query.expr) - CONTRACT_METRICS.keys()
        assert unknown == set(), f"{query.where} reads metrics outside the contract: {unknown}"


def _service_command_flag(service: dict, flag: str) -> str:
    command = service["command"]
    return command[command.index(flag) + 1]


def test_scrape_targets_are_the_compose_services_and_ports() -> None:
    config = load_yaml(PROMETHEUS_YML)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    gpu = load_yaml(COMPOSE_GPU)["services"]
    robot = load_yaml(COMPOSE_ROBOT)["services"]

    (server_target,) = [t for sc in jobs["vla-server"]["static_configs"] for t in sc["targets"]]
    host, port = server_target.rsplit(":", 1)
    assert host in gpu, f"vla-server target {server_target} is not a service of {COMPOSE_GPU.name}"
    assert port == _service_command_flag(gpu[host], "--metrics-port")

    (agent_target,) = [t for sc in jobs["vla-agent"]["static_configs"] for t in sc["targets"]]
    host, port = agent_target.rsplit(":", 1)
    assert port == _service_command_flag(robot["robot-agent"], "--metrics-port")
    extra_hosts = [entry.split(":", 1)[0] for entry in gpu["prometheus"]["extra_hosts"]]
    assert host in extra_hosts, f"{host} (vla-agent target) does not resolve inside the prometheus container"


def test_rule_files_are_inside_the_mounted_config_folder() -> None:
    config = load_yaml(PROMETHEUS_YML)
    mounts = load_yaml(COMPOSE_GPU)["services"]["prometheus"]["volumes"]
    (source,) = [
        (COMPOSE_GPU.parent / s).resolve() for s, t, _ in map(parse_volume, mounts) if t == "/etc/prometheus"
    ]
    assert source == PROMETHEUS_YML.parent
    for rule_file in config["rule_files"]:
        assert (source / rule_file).is_file(), f"rule file {rule_file} is not in the mounted {source}"
