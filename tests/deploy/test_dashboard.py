"""The Grafana dashboard and its provisioning, without Grafana: structure, the panels the issue
asks for, metric names from the contract, and every query's PromQL parsed by promtool.

Whether each query returns data is test_live_monitoring.py's job (a real Prometheus)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.deployfiles import (
    CONTRACT_METRICS,
    DASHBOARD_JSON,
    DATASOURCES_YML,
    dashboard_queries,
    iter_panels,
    load_dashboard,
    load_yaml,
    metric_names,
    substitute,
    template_variables,
    variable_query_as_promql,
    which,
)

DASHBOARD = load_dashboard()
PANELS = [p for p in iter_panels(DASHBOARD) if p["type"] != "row"]

# What the issue asks the dashboard to show: panel title -> what its queries must contain.
REQUIRED_PANELS = {
    "Round trip (agent)": ["histogram_quantile(0.5,", "histogram_quantile(0.95,", "histogram_quantile(0.99,"],
    "Server queue time": ["vla_server_queue_seconds_bucket"],
    "Server inference time": ["vla_server_inference_seconds_bucket"],
    "Server total time": ["vla_server_request_seconds_bucket"],
    "Batch size": ["vla_server_batch_size"],
    "Sessions": ["vla_server_sessions"],
    "Control period": ["vla_agent_control_period_seconds_bucket"],
    "Control overruns": ["vla_agent_control_overrun_total"],
    "Holds by reason": ["by (reason)", "vla_agent_hold_total"],
    "Safety interventions by kind": ["by (kind)", "vla_agent_safety_interventions_total"],
    "Deadline misses": ["vla_agent_deadline_miss_total"],
    "Reconnects": ["vla_agent_reconnects_total"],
}


def test_required_panels_exist_with_their_queries() -> None:
    by_title = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in PANELS}
    for title, needles in REQUIRED_PANELS.items():
        assert title in by_title, f"no panel {title!r}"
        for needle in needles:
            assert needle in by_title[title], f"panel {title!r} lacks {needle!r}"


def test_every_contract_metric_is_on_the_dashboard() -> None:
    shown = set().union(*(metric_names(q.expr) for q in dashboard_queries(DASHBOARD)))
    assert CONTRACT_METRICS.keys() - shown == set()


def test_queries_read_only_contract_metrics() -> None:
    for query in dashboard_queries(DASHBOARD):
        unknown = metric_names(query.expr) - CONTRACT_METRICS.keys()
        assert unknown == set(), f"{query.where} reads metrics outside the contract: {unknown}"


def test_panels_use_the_provisioned_datasource() -> None:
    (datasource,) = load_yaml(DATASOURCES_YML)["datasources"]
    for panel in PANELS:
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
    for var in template_variables(DASHBOARD):
        assert var["datasource"]["uid"] == datasource["uid"], var["name"]


def test_ids_and_ref_ids_are_unique() -> None:
    ids = [p["id"] for p in iter_panels(DASHBOARD)]
    assert len(ids) == len(set(ids))
    for panel in PANELS:
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_fit_the_grid_without_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in iter_panels(DASHBOARD):
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        taken |= cells


def test_rate_windows_follow_the_scrape_interval() -> None:
    """A hard-coded [1m] is blind to a short hold and wrong for another scrape interval."""
    for query in dashboard_queries(DASHBOARD):
        for window in re.findall(r"\[([^\]]+)\]", query.expr):
            assert window == "$__rate_interval", f"{query.where} uses window [{window}]"


def test_every_query_substitutes_to_plain_promql() -> None:
    variables = template_variables(DASHBOARD)
    assert {v["name"] for v in variables} == {"server", "robot"}
    for query in dashboard_queries(DASHBOARD):
        assert "$" not in substitute(query.expr, variables, "20s")


def test_substitute_rejects_an_unknown_variable() -> None:
    with pytest.raises(ValueError, match=r"\$nope"):
        substitute('up{instance=~"$nope"}', template_variables(DASHBOARD), "20s")


def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    """promtool parses each query (panels and variables) as a recording rule: syntax without a server."""
    promtool = which("promtool")
    if promtool is None:
        pytest.skip("needs promtool (Debian package prometheus; `make sysdeps` installs it)")
    variables = template_variables(DASHBOARD)
    exprs = [substitute(q.expr, variables, "20s") for q in dashboard_queries(DASHBOARD)]
    exprs += [variable_query_as_promql(v["query"]["query"])[0] for v in variables]
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_dashboard_is_read_only_and_identified() -> None:
    assert DASHBOARD["uid"] == "vla-deploy"
    assert DASHBOARD["editable"] is False  # the repository is the source of truth
    assert DASHBOARD_JSON.read_text().endswith("\n")
