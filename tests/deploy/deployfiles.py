"""The deployment files as data, for the deploy tests: paths, the PromQL they hold, the metric contract.

Grafana is not here, so what Grafana would do to a query before sending it to Prometheus is done
here: template variables become the "All" value and ``$__rate_interval`` a concrete window.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_GPU = DEPLOY / "compose.yaml"
COMPOSE_ROBOT = DEPLOY / "compose.robot.yaml"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS_YML = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST_YML = Path(__file__).resolve().parent / "alerts_test.yml"
DASHBOARD_JSON = DEPLOY / "grafana" / "dashboards" / "vla-deploy.json"
DATASOURCES_YML = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS_YML = DEPLOY / "grafana" / "provisioning" / "dashboards" / "vla-deploy.yml"
DOCKERFILES = (ROOT / "Dockerfile.gpu", ROOT / "Dockerfile.agent")

# The metric contract of the server and agent issues: name -> Prometheus type (labels aside).
SERVER_METRICS = {
    "vla_server_requests_total": "counter",
    "vla_server_queue_seconds": "histogram",
    "vla_server_inference_seconds": "histogram",
    "vla_server_request_seconds": "histogram",
    "vla_server_batch_size": "histogram",
    "vla_server_sessions": "gauge",
    "vla_server_model_info": "gauge",
}
AGENT_METRICS = {
    "vla_agent_roundtrip_seconds": "histogram",
    "vla_agent_control_period_seconds": "histogram",
    "vla_agent_control_overrun_total": "counter",
    "vla_agent_deadline_miss_total": "counter",
    "vla_agent_hold_total": "counter",
    "vla_agent_holding": "gauge",
    "vla_agent_safety_interventions_total": "counter",
    "vla_agent_estop_total": "counter",
    "vla_agent_reconnects_total": "counter",
    "vla_agent_stale_actions_dropped_total": "counter",
    "vla_agent_inference_delay_steps": "gauge",
}
CONTRACT_METRICS = {**SERVER_METRICS, **AGENT_METRICS}

_METRIC_NAME = re.compile(r"\bvla_[a-z0-9_]+")
_HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")
_VOLUME = re.compile(r"^(?P<source>\$\{[^}]*\}|[^:]+):(?P<target>[^:]+)(?::(?P<mode>\w+))?$")
_DEFAULT = re.compile(r"^\$\{\w+:-(?P<default>[^}]+)\}$")


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_JSON.read_text())


@dataclass(frozen=True)
class Query:
    """One PromQL expression of the deployment, and where it comes from (for failure messages)."""

    where: str
    expr: str


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' collapsed children included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dashboard: dict[str, Any] | None = None) -> list[Query]:
    """Every panel target's expression, as written in the JSON (variables not substituted)."""
    dashboard = load_dashboard() if dashboard is None else dashboard
    return [
        Query(f"panel {panel['title']!r} target {target['refId']}", target["expr"])
        for panel in iter_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def template_variables(dashboard: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    dashboard = load_dashboard() if dashboard is None else dashboard
    return list(dashboard.get("templating", {}).get("list", []))


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$")


def variable_query_as_promql(query: str) -> tuple[str, str]:
    """Grafana's ``label_values(selector, label)`` as the PromQL that yields the same label values.

    Returns ``(promql, label)``: the values are that label of the result's series.
    """
    match = _LABEL_VALUES.match(query.strip())
    if match is None:
        raise ValueError(f"template variable query {query!r} is not label_values(selector, label)")
    return f"group by ({match['label']}) ({match['selector']})", match["label"]


def substitute(expr: str, variables: list[dict[str, Any]], rate_window: str) -> str:
    """What Grafana sends for ``expr`` with every variable on "All" and ``$__rate_interval`` = ``rate_window``."""
    out = expr
    for name in ("__rate_interval", "__interval", "__range"):
        out = out.replace(f"${{{name}}}", rate_window).replace(f"${name}", rate_window)
    for var in variables:
        value = var.get("allValue") or ".*"
        out = out.replace(f"${{{var['name']}}}", value).replace(f"${var['name']}", value)
    if "$" in out:
        raise ValueError(f"unsubstituted variable left in {out!r}")
    return out


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS_YML)["groups"] for rule in group["rules"]]


def alert_queries() -> list[Query]:
    return [
        Query(f"rule {rule.get('alert') or rule.get('record')!r}", rule["expr"].strip())
        for rule in alert_rules()
    ]


def metric_names(expr: str) -> set[str]:
    """The vla_* metric families an expression reads (histogram series mapped to their family)."""
    names = set()
    for name in _METRIC_NAME.findall(expr):
        family = _HISTOGRAM_SUFFIX.sub("", name)
        names.add(family if CONTRACT_METRICS.get(family) == "histogram" else name)
    return names


def which(program: str) -> str | None:
    """The program in PATH or next to this interpreter (the venv's bin holds hadolint, check-jsonschema)."""
    found = shutil.which(program)
    if found:
        return found
    candidate = Path(sys.executable).parent / program
    return str(candidate) if candidate.exists() else None


def parse_volume(entry: str) -> tuple[str, str, str]:
    """A short-syntax volume as ``(source, target, mode)``; a ``${VAR:-default}`` source gives its default."""
    match = _VOLUME.match(entry)
    assert match is not None, f"cannot read volume {entry!r}"
    source = match["source"]
    default = _DEFAULT.match(source)
    if source.startswith("$"):
        assert default is not None, f"volume {entry!r}: a variable source needs a default"
        source = default["default"]
    return source, match["target"], match["mode"] or "rw"
