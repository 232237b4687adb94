"""HTTP: a landing page at ``/`` and the metrics at the telemetry path."""

from __future__ import annotations

import gzip
import html
import logging
import socket
import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import Any, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST

from .. import __version__

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def make_app(metrics: Callable[[], bytes], telemetry_path: str) -> WSGIApp:
    """metrics: the text exposition of a fresh read, called once per scrape."""
    path_html = html.escape(telemetry_path)
    landing = (
        "<!DOCTYPE html><html><head><title>vz-traffic-exporter</title></head><body>"
        f"<h1>vz-traffic-exporter {html.escape(__version__)}</h1>"
        "<p>Per-container network traffic of this node.</p>"
        f'<p><a href="{path_html}">Metrics</a></p></body></html>\n'
    ).encode()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == telemetry_path:
            body = metrics()
            headers = [("Content-Type", CONTENT_TYPE_LATEST)]
            if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
                body = gzip.compress(body, compresslevel=1)
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
            return [body]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [landing]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not Found\n"]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _DualStackServer(_V6Server):
    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


def parse_listen_address(text: str) -> tuple[str, int]:
    """``:10057``, ``0.0.0.0:10057``, ``[::1]:10057``, ``localhost:10057``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def serve(addresses: list[str], app: WSGIApp) -> list[WSGIServer]:
    """Start one server thread per listen address; raises OSError if one cannot bind."""
    servers = []
    for text in addresses:
        host, port = parse_listen_address(text)
        if host == "":
            try:
                server: WSGIServer = make_server(
                    "::", port, app, server_class=_DualStackServer, handler_class=_QuietHandler
                )
            except OSError:
                server = make_server("0.0.0.0", port, app, server_class=_Server, handler_class=_QuietHandler)
        else:
            server_class = _V6Server if ":" in host else _Server
            server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, name=f"http {text}", daemon=True).start()
        log.info("listening on %s", text)
        servers.append(server)
    return servers
