"""Tiny shared helpers for bench scripts: percentiles, one-line summaries, JSON output.

Bench scripts run as ``python bench/NAME.py``, so ``bench/`` is on ``sys.path`` and they
``from _stats import summarize, write_json``.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["environment", "format_summary", "summarize", "write_json"]


def summarize(samples: Iterable[float], *, percentiles: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
    """``count``, ``mean``, ``min``, ``max`` and ``pNN`` of ``samples`` (units as given)."""
    values = np.asarray(list(samples), dtype=np.float64)
    if values.size == 0:
        return {"count": 0}
    out: dict[str, float] = {"count": int(values.size), "mean": float(values.mean())}
    for p in percentiles:
        out[f"p{p:g}"] = float(np.percentile(values, p))
    out["min"], out["max"] = float(values.min()), float(values.max())
    return out


def format_summary(name: str, stats: Mapping[str, float], unit: str = "ms", width: int = 28) -> str:
    """``name  p50 0.412 ms  p95 ...  p99 ...  (n=300)`` for a summary from :func:`summarize`."""
    parts = [f"{k} {v:8.3f}" for k, v in stats.items() if k.startswith("p") or k == "mean"]
    return f"{name:<{width}} " + "  ".join(parts) + f" {unit}  (n={int(stats.get('count', 0))})"


def environment() -> dict[str, Any]:
    """Where the figures come from, stored next to them in JSON."""
    import os

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps({**data, "environment": environment()}, indent=2) + "\n")
