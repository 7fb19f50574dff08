"""The HTTP endpoint that serves a registry: threads, TLS and basic auth.

    server = make_endpoint_server("127.0.0.1", 0, make_wsgi_app(registry),
                                  certfile=None, keyfile=None, basic_auth=None)
"""

from __future__ import annotations

import base64
import hmac
import socket
import ssl
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import ThreadingWSGIServer

__all__ = ["make_endpoint_server"]


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def _basic_auth_app(app: Any, username: str, password: str) -> Any:
    """Wrap a WSGI app so it answers 401 without the right credentials."""
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        given = environ.get("HTTP_AUTHORIZATION", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            start_response(
                "401 Unauthorized",
                [("WWW-Authenticate", 'Basic realm="mlx_otel"'), ("Content-Type", "text/plain")],
            )
            return [b"401 Unauthorized: this endpoint needs basic auth credentials\n"]
        return app(environ, start_response)

    return guarded


def make_endpoint_server(
    host: str,
    port: int,
    app: Any,
    *,
    certfile: Path | None,
    keyfile: Path | None,
    basic_auth: tuple[str, str] | None,
) -> Any:
    """A threading WSGI server for ``app``, with optional TLS and basic auth."""

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    if basic_auth is not None:
        app = _basic_auth_app(app, *basic_auth)
    server = make_server(host, port, app, Server, handler_class=_QuietHandler)
    if certfile is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
