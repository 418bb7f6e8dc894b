"""The monitoring stack against the real thing: Debian's Prometheus, with the repository's scrape
config and alert rules, scraping a running inference server and a running robot agent (both
through their CLIs, as deployed), then every PromQL expression of the dashboard and the alert
rules evaluated through the HTTP API.

Each query must be valid; each dashboard panel must return data. Grafana is not here, so its
template variables are set to "All" and ``$__rate_interval`` to a window a few 1 s scrapes wide.
The GPU image's HEALTHCHECK command is what says the server is up.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.deploy.deployfiles import (
    CONTRACT_METRICS,
    PROMETHEUS_YML,
    alert_queries,
    dashboard_queries,
    load_yaml,
    substitute,
    template_variables,
    variable_query_as_promql,
    which,
)
from tests.deploy.test_dockerfiles import GPU, healthcheck_command
from tests.utils import write_python_bundle

PROMETHEUS = which("prometheus")
pytestmark = [
    pytest.mark.skipif(
        PROMETHEUS is None, reason="needs prometheus (Debian package; `make sysdeps` installs it)"
    ),
    pytest.mark.timeout(180),
]

SCRAPE_INTERVAL = "1s"
RATE_WINDOW = "5s"  # what $__rate_interval would be: a few scrapes, so a rate has several samples
#: s, until every target is scraped: the agent binds its metrics port after start-up, which on a
#: fresh clone (numba's kernel cache empty, `make kernels` not run) compiles for tens of seconds.
STARTUP_TIMEOUT_S = 90.0
DATA_TIMEOUT_S = 30.0

# A numpy-only policy (no torch import: the test stays light on two cores). It drifts the hand
# along +x, 4 mm per step, so the agent's shield has a workspace edge to enforce.
DRIFT_POLICY = """\
import numpy as np


class DriftPolicy:
    def __init__(self, bundle_dir, manifest):
        self.chunk_length = int(manifest["chunk_length"])
        self.action_dim = int(manifest["action_dim"])

    def predict(self, batch):
        out = np.zeros((batch["state"].shape[0], self.chunk_length, self.action_dim), np.float32)
        out[:, :, 0] = 0.004
        return out
"""

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T:
    """Call ``probe`` until it returns something other than None/False; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.name} (exit {self.popen.poll()}) ---\n" + "\n".join(text)

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(f"{self.name} exited early\n{self.tail()}")

    def stop(self, sig: int, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return int(self.popen.returncode)


@contextlib.contextmanager
def start(name: str, argv: list[str], tmp_path: Path) -> Iterator[Process]:
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    process = Process(name, popen, log)
    try:
        yield process
    finally:
        process.stop(signal.SIGTERM)


class PrometheusAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422 carry the PromQL error as JSON
            return json.loads(exc.read())

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr)


def has_finite_data(answer: dict[str, Any]) -> bool:
    if answer.get("status") != "success":
        return False
    data = answer["data"]
    if data["resultType"] == "vector":
        return any(math.isfinite(float(sample["value"][1])) for sample in data["result"])
    if data["resultType"] == "scalar":
        return math.isfinite(float(data["result"][1]))
    return False


def prometheus_config(tmp_path: Path, targets: dict[str, str]) -> Path:
    """The repository's prometheus.yml with each job's targets on loopback and 1 s intervals."""
    config = load_yaml(PROMETHEUS_YML)
    config["global"].update(
        scrape_interval=SCRAPE_INTERVAL, scrape_timeout=SCRAPE_INTERVAL, evaluation_interval=SCRAPE_INTERVAL
    )
    config["rule_files"] = [str((PROMETHEUS_YML.parent / f).resolve()) for f in config["rule_files"]]
    for job in config["scrape_configs"]:
        assert job["job_name"] in targets, f"test does not know where job {job['job_name']} runs"
        for static in job["static_configs"]:
            static["targets"] = [targets[job["job_name"]]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def healthy(grpc_port: int) -> bool:
    """The GPU image's HEALTHCHECK, run here against the loopback server."""
    command = healthcheck_command(GPU)
    env = {**os.environ, "VLA_HEALTH_ADDR": f"127.0.0.1:{grpc_port}"}
    result = subprocess.run([sys.executable, *command[1:]], capture_output=True, env=env, timeout=20)
    return result.returncode == 0


@dataclass
class Stack:
    prometheus: PrometheusAPI
    processes: list[Process]

    def check_alive(self) -> None:
        for process in self.processes:
            process.check_alive()

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.processes)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if importlib.util.find_spec("robot_agent.__main__") is None:
        pytest.skip("the robot-agent CLI (robot_agent/__main__.py) is not there yet")
    tmp_path = tmp_path_factory.mktemp("monitoring")
    bundle = write_python_bundle(
        tmp_path / "bundle", "policy:DriftPolicy", source=DRIFT_POLICY, name="drift", dt_s=0.1
    )
    grpc_port, server_metrics, agent_metrics, prom_port = (free_port() for _ in range(4))
    server_argv = [
        sys.executable, "-m", "inference_server", "--policy", str(bundle), "--host", "127.0.0.1",
        "--port", str(grpc_port), "--metrics-port", str(server_metrics), "--warmup-iters", "1",
    ]  # fmt: skip
    agent_argv = [
        sys.executable, "-m", "robot_agent", "--server", f"127.0.0.1:{grpc_port}", "--robot", "sim",
        "--camera", "sim", "--instruction", "push the cube", "--metrics-port", str(agent_metrics),
        "--duration", "100",
    ]  # fmt: skip
    config = prometheus_config(
        tmp_path,
        {
            "vla-server": f"127.0.0.1:{server_metrics}",
            "vla-agent": f"127.0.0.1:{agent_metrics}",
            "prometheus": f"127.0.0.1:{prom_port}",
        },
    )
    prometheus_argv = [
        str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn",
    ]  # fmt: skip
    with (
        start("inference-server", server_argv, tmp_path) as server,
        start("prometheus", prometheus_argv, tmp_path) as prometheus,
    ):
        api = PrometheusAPI(prom_port)
        poll(
            "inference server healthy", lambda: server.check_alive() or healthy(grpc_port), STARTUP_TIMEOUT_S
        )
        poll("prometheus ready", lambda: prometheus.check_alive() or api.ready(), STARTUP_TIMEOUT_S)
        with start("robot-agent", agent_argv, tmp_path) as agent:
            stack = Stack(api, [server, prometheus, agent])
            yield stack
            # The agent's controlled stop: SIGINT, exit 0 (the deployment's stop_signal).
            assert agent.stop(signal.SIGINT) == 0, agent.tail()
        assert server.stop(signal.SIGTERM) == 0, server.tail()


def test_every_target_is_scraped(stack: Stack) -> None:
    def all_up() -> list[dict[str, Any]] | None:
        stack.check_alive()
        active = stack.prometheus.get("/api/v1/targets")["data"]["activeTargets"]
        return active if active and all(t["health"] == "up" for t in active) else None

    try:
        targets = poll("all targets up", all_up, STARTUP_TIMEOUT_S)
    except TimeoutError:
        raise AssertionError(
            json.dumps(stack.prometheus.get("/api/v1/targets"), indent=1) + stack.logs()
        ) from None
    assert {t["labels"]["job"] for t in targets} == {"vla-server", "vla-agent", "prometheus"}


def test_every_contract_metric_is_exported(stack: Stack) -> None:
    """Every family of the server and agent contract reaches Prometheus under its contract name."""

    def missing() -> set[str]:
        names = {
            s["metric"]["__name__"]
            for s in stack.prometheus.query('count by (__name__) ({__name__=~"vla_.*"})')["data"]["result"]
        }
        want = {f"{name}_count" if kind == "histogram" else name for name, kind in CONTRACT_METRICS.items()}
        return want - names

    with contextlib.suppress(TimeoutError):
        poll("every contract metric scraped", lambda: not missing(), DATA_TIMEOUT_S)
    assert missing() == set(), stack.logs()


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    variables = template_variables()
    queries = {q.where: substitute(q.expr, variables, RATE_WINDOW) for q in dashboard_queries()}
    pending = dict(queries)
    deadline = time.monotonic() + DATA_TIMEOUT_S
    while pending and time.monotonic() < deadline:
        stack.check_alive()
        for where, expr in list(pending.items()):
            answer = stack.prometheus.query(expr)
            assert answer["status"] == "success", f"{where}: {expr}\n{answer}"
            if has_finite_data(answer):
                del pending[where]
        time.sleep(0.5)
    empty = {where: queries[where] for where in pending}
    assert empty == {}, (
        "dashboard queries without data:\n" + json.dumps(empty, indent=1) + "\n" + stack.logs()
    )


def test_template_variables_list_the_running_instances(stack: Stack) -> None:
    for var in template_variables():
        expr, label = variable_query_as_promql(var["query"]["query"])
        answer = poll(
            f"variable {var['name']}",
            lambda expr=expr: has_finite_data(a := stack.prometheus.query(expr)) and a,
            DATA_TIMEOUT_S,
        )
        values = {sample["metric"][label] for sample in answer["data"]["result"]}
        assert len(values) == 1 and next(iter(values)).startswith("127.0.0.1:"), (var["name"], values)


def test_every_alert_expression_is_valid(stack: Stack) -> None:
    for query in alert_queries():
        answer = stack.prometheus.query(query.expr)
        assert answer["status"] == "success", f"{query.where}: {answer}"


def test_alert_rules_load_and_evaluate(stack: Stack) -> None:
    names = {q.where.split("'")[1] for q in alert_queries()}

    def evaluated() -> dict[str, str] | None:
        groups = stack.prometheus.get("/api/v1/rules")["data"]["groups"]
        health = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
        return health if set(health) == names and all(h == "ok" for h in health.values()) else None

    try:
        poll("alert rules loaded and evaluated", evaluated, DATA_TIMEOUT_S)
    except TimeoutError:
        raise AssertionError(json.dumps(stack.prometheus.get("/api/v1/rules"), indent=1)) from None


def test_alerts_fire_when_the_server_goes_away(stack: Stack) -> None:
    """Last (it stops the server): the agent holds with reason stream_down, and the rules see it
    from real data: VlaAgentHold fires for that reason, VlaTargetDown and VlaAgentHoldingLong are
    pending (they wait 30 s, longer than this test)."""
    server = stack.processes[0]
    assert server.name == "inference-server"
    assert server.stop(signal.SIGTERM) == 0, server.tail()

    def alerts() -> dict[tuple[str, str], str] | None:
        found = {
            (a["labels"]["alertname"], a["labels"].get("reason") or a["labels"].get("job", "")): a["state"]
            for a in stack.prometheus.get("/api/v1/alerts")["data"]["alerts"]
        }
        wanted = {
            ("VlaAgentHold", "stream_down"): "firing",
            ("VlaTargetDown", "vla-server"): "pending",
            ("VlaAgentHoldingLong", ""): "pending",
        }
        return found if all(found.get(key) == state for key, state in wanted.items()) else None

    try:
        poll("hold and target-down alerts", alerts, DATA_TIMEOUT_S)
    except TimeoutError:
        raise AssertionError(
            json.dumps(stack.prometheus.get("/api/v1/alerts"), indent=1) + stack.logs()
        ) from None
