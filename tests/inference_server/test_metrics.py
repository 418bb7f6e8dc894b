"""Every metric family is served on /metrics and counts what happened."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from inference_server import ServerConfig
from inference_server.metrics import ServerMetrics
from tests.utils import connect, make_request, run_server
from vla.v1 import policy_pb2 as pb


def scrape(port: int) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(family.name, {})[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


async def test_every_family_is_present_and_counting(echo_bundle: Path) -> None:
    async with run_server(ServerConfig(policy=echo_bundle, metrics_port=0, warmup_iters=0)) as server:
        assert server.metrics_port
        async with connect(server) as stub:
            spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
            queue: asyncio.Queue[pb.PredictRequest | None] = asyncio.Queue()

            async def requests():  # type: ignore[no-untyped-def]
                while (r := await queue.get()) is not None:
                    yield r

            call = stub.Predict(requests())
            for i in range(3):
                queue.put_nowait(make_request(spec, i))
                assert (await call.read()).status == pb.PredictResponse.OK
            bad = make_request(spec, 3)
            bad.state.shape[:] = [3]
            queue.put_nowait(bad)
            assert (await call.read()).status == pb.PredictResponse.INVALID
            during = await asyncio.to_thread(scrape, server.metrics_port)
            queue.put_nowait(None)
            assert await call.read() is __import__("grpc").aio.EOF
        after = await asyncio.to_thread(scrape, server.metrics_port)

    def value(samples: dict, family: str, sample: str, **labels: str) -> float:  # type: ignore[type-arg]
        return samples[family][(sample, tuple(sorted(labels.items())))]

    assert value(during, "vla_server_requests", "vla_server_requests_total", status="ok") == 3
    assert value(during, "vla_server_requests", "vla_server_requests_total", status="invalid") == 1
    assert value(during, "vla_server_requests", "vla_server_requests_total", status="late") == 0
    assert value(during, "vla_server_requests", "vla_server_requests_total", status="error") == 0
    assert value(during, "vla_server_request_seconds", "vla_server_request_seconds_count") == 4
    assert value(during, "vla_server_queue_seconds", "vla_server_queue_seconds_count") == 3
    assert value(during, "vla_server_inference_seconds", "vla_server_inference_seconds_count") == 3
    assert value(during, "vla_server_batch_size", "vla_server_batch_size_count") == 3
    assert value(during, "vla_server_batch_size", "vla_server_batch_size_sum") == 3
    assert value(during, "vla_server_sessions", "vla_server_sessions") == 1
    assert value(after, "vla_server_sessions", "vla_server_sessions") == 0
    info = {
        labels for family in during.values() for (name, labels) in family if name == "vla_server_model_info"
    }
    assert info == {
        (
            ("backend", "python"),
            ("device", "cpu"),
            ("name", "test-policy"),
            ("precision", "fp32"),
            ("version", "0.0.1"),
        )
    }


def test_latency_buckets_span_a_tenth_of_a_millisecond_to_a_second() -> None:
    metrics = ServerMetrics.create(CollectorRegistry())
    for histogram in (metrics.queue_seconds, metrics.inference_seconds, metrics.request_seconds):
        bounds = histogram._upper_bounds  # the configured buckets, +Inf last
        assert bounds[0] == 0.0001 and bounds[-2] == 1.0


def test_two_servers_have_separate_registries() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    ServerMetrics.create(a).requests.labels(status="ok").inc()
    ServerMetrics.create(b)
    assert a.get_sample_value("vla_server_requests_total", {"status": "ok"}) == 1
    assert b.get_sample_value("vla_server_requests_total", {"status": "ok"}) == 0
