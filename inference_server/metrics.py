"""Prometheus families of the server, created on a registry handed in (no module globals).

Two servers in one process (tests) each get their own registry. Latency buckets span 0.1 ms to 1 s:
a loopback round trip is a few hundred microseconds, a slow model a few hundred milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

__all__ = ["LATENCY_BUCKETS", "STATUSES", "ServerMetrics"]

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
STATUSES = ("ok", "late", "invalid", "error")


@dataclass(frozen=True)
class ServerMetrics:
    """The families, by role. Build with :meth:`create`."""

    requests: Counter
    queue_seconds: Histogram
    inference_seconds: Histogram
    request_seconds: Histogram
    batch_size: Histogram
    sessions: Gauge
    model_info: Info

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ServerMetrics:
        requests = Counter(
            "vla_server_requests", "Predict requests answered, by status.", ["status"], registry=registry
        )
        for status in STATUSES:  # every status shows up at 0, so rates and alerts work from the start
            requests.labels(status=status)
        return cls(
            requests=requests,
            queue_seconds=Histogram(
                "vla_server_queue_seconds",
                "Time a request waited for the model worker.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            inference_seconds=Histogram(
                "vla_server_inference_seconds",
                "Model time per batch.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            request_seconds=Histogram(
                "vla_server_request_seconds",
                "Arrival of a request to its response, any status.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            batch_size=Histogram(
                "vla_server_batch_size", "Requests per model call.", buckets=BATCH_BUCKETS, registry=registry
            ),
            sessions=Gauge("vla_server_sessions", "Open Predict streams.", registry=registry),
            model_info=Info("vla_server_model", "The policy being served.", registry=registry),
        )
