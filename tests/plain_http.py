"""A plain HTTP/1 server on loopback: what ``--server`` pointed at a web port reaches."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def plain_http_server() -> Iterator[int]:
    """Serve HTTP/1 on ``127.0.0.1:0`` in a thread; yields the port, shuts down on exit."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=httpd.serve_forever, name="plain-http-server")
    thread.start()
    try:
        yield int(httpd.server_port)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
