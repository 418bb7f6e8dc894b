"""The agent's ``/metrics`` endpoint: Prometheus' HTTP server on the registry of ``metrics.py``,
for as long as the run lasts.

Off when no port is configured; port 0 binds any free port (the one bound is handed back, and
logged). A bind that fails is the config's fault and says which key: an address that is not this
machine's (or a name that does not resolve) is ``metrics_host``'s, anything else ``metrics_port``'s.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

from prometheus_client import CollectorRegistry, start_http_server

from robot_agent.errors import ConfigError

__all__ = ["serve_metrics"]

logger = logging.getLogger(__name__)


async def serve_metrics(
    registry: CollectorRegistry,
    host: str,
    port: int | None,
    stopping: asyncio.Event,
    on_bound: Callable[[int], None] = lambda port: None,
) -> None:
    """Serve ``registry`` on ``http://host:port/metrics`` until ``stopping`` is set, calling
    ``on_bound`` with the port bound; with ``port`` None, only wait. Raises :class:`ConfigError`
    (``field`` ``metrics_host`` or ``metrics_port``) when the address cannot be bound."""
    if port is None:
        await stopping.wait()
        return
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        # A name that does not resolve, or an address of another machine, is the host's fault:
        # '--metrics-host nonsense' used to be blamed on metrics_port.
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            field, hint = "metrics_host", "an address of this machine, 0.0.0.0 for every interface"
        else:
            field, hint = "metrics_port", "another port, 0 for any free one, or off"
        raise ConfigError(
            f"metrics endpoint {host}:{port}: cannot bind: {exc.strerror or exc} ({field}: {hint})",
            field=field,
        ) from exc
    bound = server.server_port
    on_bound(bound)
    logger.info("Metrics on http://%s:%d/metrics", host, bound)
    try:
        await stopping.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=1.0)
