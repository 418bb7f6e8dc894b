"""``inference-server bench``: model latency for a bundle's backend and precision, without gRPC.

Loads the model as the server does (same backend, same worker-thread rule does not matter here:
one thread does everything), warms it up, then times ``predict`` on a fixed batch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference_server.backends import create_backend, dummy_batch
from inference_server.backends.base import cpu_threads as resolve_cpu_threads
from inference_server.bundle import load_bundle
from inference_server.errors import ConfigError

__all__ = ["bench_model", "summarize"]


def summarize(samples_s: list[float]) -> dict[str, float]:
    """Mean and percentiles in milliseconds."""
    ms = np.asarray(samples_s) * 1e3
    return {
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
    }


def bench_model(
    policy: Path,
    *,
    backend: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    cpu_threads: int = 0,
    batch: int = 1,
    iters: int = 100,
    warmup_iters: int = 10,
    json_path: Path | None = None,
) -> dict[str, Any]:
    """Load ``policy`` as the server would, run ``warmup_iters`` then time ``iters`` calls of
    ``predict`` on a batch of ``batch``; print and return mean/percentiles in ms (:func:`summarize`).
    ``cpu_threads`` as the server's (0: every CPU but one).
    Raises :class:`~inference_server.errors.ConfigError` naming ``--json`` before any model is
    loaded when ``json_path`` is a folder or its folder does not exist (it used to fail after the
    run with a bare ``FileNotFoundError``), and ``BundleError`` for a bundle that cannot be served."""
    if json_path is not None:
        target = Path(json_path)
        if target.is_dir():
            raise ConfigError(f"--json {target} is a folder, expected a file path", field="json")
        if not target.parent.is_dir():
            raise ConfigError(f"--json {target}: no folder {target.parent} to write it in", field="json")
    bundle = load_bundle(policy, backend=backend, device=device, precision=precision, cpu_threads=cpu_threads)
    model = create_backend(bundle)
    inputs = dummy_batch(bundle, batch)
    try:
        for _ in range(warmup_iters):
            model.predict(inputs)
        samples = []
        for _ in range(iters):
            t0 = time.perf_counter()
            model.predict(inputs)
            samples.append(time.perf_counter() - t0)
    finally:
        model.close()
    result = {
        "policy": str(policy),
        "backend": bundle.backend,
        "device": bundle.device,
        "precision": bundle.precision,
        "cpu_threads": resolve_cpu_threads(bundle),
        "batch": batch,
        "iters": iters,
        **summarize(samples),
    }
    print(
        f"{bundle.name} {bundle.backend} {bundle.device} {bundle.precision} batch {batch} "
        f"({result['cpu_threads']} CPU threads): "
        f"mean {result['mean_ms']:.3f} ms  p50 {result['p50_ms']:.3f}  p95 {result['p95_ms']:.3f}  "
        f"p99 {result['p99_ms']:.3f} ms  ({iters} iterations after {warmup_iters} warm-up)"
    )
    if json_path is not None:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return result
