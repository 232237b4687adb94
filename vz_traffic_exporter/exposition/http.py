"""HTTP: a landing page at ``/`` and the metrics at the telemetry path.

With a web configuration, over TLS and behind basic auth.  Every connection
is served by its own thread, and its TLS handshake happens there too, with a
timeout: a client that connects and says nothing, or stops half-way through a
handshake, holds only its own thread and never the accept loop.  At most
``max_requests`` scrapes run at once; more are answered 503.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import html
import io
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from socketserver import ThreadingMixIn
from typing import Any, Callable, Optional, Union
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST

from .. import __version__
from . import Part
from .webconfig import Authenticator, WebConfig, WebConfigWatcher

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

CONNECTION_TIMEOUT = 10.0  # s: a TLS handshake, then a whole request, each within this
DEFAULT_MAX_REQUESTS = 40
METHODS = ("GET", "HEAD")


Body = Union[bytes, Sequence[Part]]  # the exposition, whole or in parts (see Part)


def make_app(
    metrics: Callable[[], Body],
    telemetry_path: str,
    web: Optional[WebConfigWatcher] = None,
    max_requests: int = DEFAULT_MAX_REQUESTS,
) -> WSGIApp:
    """metrics: the text exposition of a fresh read, called once per scrape.

    web: TLS and basic auth; max_requests: scrapes at once (0: no limit).
    """
    inner = _routes(metrics, telemetry_path)
    slots = threading.BoundedSemaphore(max_requests) if max_requests > 0 else None
    auth: Optional[Authenticator] = None

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            body = guarded(environ, start_response)
        except Exception as err:  # one line in the log, a 500 to the client: never a raw traceback
            log.error(
                "%s %s failed: %s: %s",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                type(err).__name__,
                err,
            )
            start_response(
                "500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")], sys.exc_info()
            )
            body = [b"Internal Server Error\n"]
        if environ.get("REQUEST_METHOD") == "HEAD":
            return []  # the headers of a GET, Content-Length included, and no body
        return body

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        nonlocal auth
        config = web.current() if web is not None else WebConfig()

        def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, *config.headers], exc_info)

        if environ.get("REQUEST_METHOD") not in METHODS:
            respond(
                "405 Method Not Allowed",
                [("Content-Type", "text/plain; charset=utf-8"), ("Allow", "GET, HEAD")],
            )
            return [b"Method Not Allowed\n"]
        if config.users:
            if auth is None:
                auth = Authenticator()
            if not _authorised(auth, config, environ.get("HTTP_AUTHORIZATION", "")):
                respond(
                    "401 Unauthorized",
                    [("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", "Basic")],
                )
                return [b"Unauthorized\n"]
        if slots is None or (environ.get("PATH_INFO") or "/") != telemetry_path:
            return inner(environ, respond)
        if not slots.acquire(blocking=False):
            respond("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"Too many concurrent requests (at most {max_requests})\n".encode()]
        try:
            return inner(environ, respond)
        finally:
            slots.release()

    return app


def _authorised(auth: Authenticator, config: WebConfig, header: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return bool(sep) and auth.check(config.users, user, password)


class _Gzip:
    """gzip of a body's parts, one gzip member each: a part with the name and token it had last time is not
    compressed again.  Clients read the members as one stream (RFC 1952 section 2.2)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, bytes]] = {}  # part name -> (its token, its gzip member)
        self._lock = threading.Lock()

    def __call__(self, parts: Sequence[Part]) -> list[bytes]:
        with self._lock:
            made = {}
            out = []
            for part in parts:
                cached = self._last.get(part.name)
                if cached is not None and part.token is not None and cached[0] == part.token:
                    member = cached[1]
                else:
                    member = gzip.compress(part.data, compresslevel=1, mtime=0)
                if part.token is not None:
                    made[part.name] = (part.token, member)
                out.append(member)
            self._last = made
            return out


def _routes(metrics: Callable[[], Body], telemetry_path: str) -> WSGIApp:
    path_html = html.escape(telemetry_path)
    landing = (
        "<!DOCTYPE html><html><head><title>vz-traffic-exporter</title></head><body>"
        f"<h1>vz-traffic-exporter {html.escape(__version__)}</h1>"
        "<p>Per-container network traffic of this node.</p>"
        f'<p><a href="{path_html}">Metrics</a></p></body></html>\n'
    ).encode()
    compress = _Gzip()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == telemetry_path:
            body = metrics()
            pieces = [Part("body", None, body)] if isinstance(body, bytes) else [p for p in body if p.data]
            headers = [("Content-Type", CONTENT_TYPE_LATEST)]
            if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
                parts = compress(pieces)
                headers.append(("Content-Encoding", "gzip"))
            else:
                parts = [piece.data for piece in pieces]
            start_response("200 OK", [*headers, ("Content-Length", str(sum(map(len, parts))))])
            return parts
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [landing]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not Found\n"]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the listen backlog: bursts of scrapers wait in the kernel, not refused

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed (a reset, a timeout): one debug line, never a traceback on stderr."""
        err = sys.exc_info()[1]
        log.debug("%s: connection failed: %s: %s", client_address[0], type(err).__name__, err)

    tls: Optional[Callable[[], Optional[ssl.SSLContext]]] = None  # the context of the moment, or None

    def finish_request(self, request: Any, client_address: Any) -> None:
        # In the connection's own thread: the handshake cannot hold up the accept loop.
        context = self.tls() if self.tls is not None else None
        if context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(CONNECTION_TIMEOUT)
        try:
            conn = context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError) as err:
            log.debug("%s: TLS failed: %s", client_address[0], err)
            return
        try:
            conn.do_handshake()
            super().finish_request(conn, client_address)
        except (ssl.SSLError, OSError) as err:  # a plain-HTTP client, a bad certificate, a timeout
            log.debug("%s: TLS failed: %s", client_address[0], err)
        finally:
            conn.close()


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _DualStackServer(_V6Server):
    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class _Deadline(io.RawIOBase):
    """A socket's reading side that gives up when the deadline passes, however slowly bytes trickle."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no whole request within {CONNECTION_TIMEOUT:g}s")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class _QuietHandler(WSGIRequestHandler):
    """One request per connection, which must arrive whole within CONNECTION_TIMEOUT of the connection."""

    timeout = CONNECTION_TIMEOUT

    def setup(self) -> None:
        super().setup()
        deadline = time.monotonic() + CONNECTION_TIMEOUT
        self.rfile = io.BufferedReader(_Deadline(self.connection, deadline))

    def handle(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(414)
                return
            if not self.parse_request():  # an error has been sent
                return
        except OSError as err:  # TimeoutError included: a client that never finished its request
            log.debug("%s: request not read: %s", self.client_address[0], err)
            self.close_connection = True
            return
        self.connection.settimeout(CONNECTION_TIMEOUT)  # for writing the answer
        streams: tuple[Any, Any] = (self.rfile, self.wfile)  # the binary files ServerHandler takes
        handler = ServerHandler(*streams, self.get_stderr(), self.get_environ(), multithread=False)
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


def parse_listen_address(text: str) -> tuple[str, int]:
    """``:10057``, ``0.0.0.0:10057``, ``[::1]:10057``, ``localhost:10057``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{text!r} is not host:port (:10057, 127.0.0.1:10057, [::1]:10057)")
    if not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: port {port} is out of range (1..65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def bind(
    addresses: list[str], app: WSGIApp, tls: Optional[Callable[[], Optional[ssl.SSLContext]]] = None
) -> list[WSGIServer]:
    """One server bound to each listen address, not listening yet (see :func:`start`).

    A port another process listens on fails here, before anything else is
    done; connections are refused, not queued, until :func:`start`.  Raises
    OSError naming the address; the ones bound before it are closed.
    tls: the TLS context to serve with, asked at every connection (None: plain HTTP).
    """
    servers: list[WSGIServer] = []
    try:
        for text in addresses:
            host, port = parse_listen_address(text)
            try:
                servers.append(_bind(host, port))
            except OSError as err:
                raise OSError(err.errno, f"cannot listen on {text}: {err.strerror}") from None
            servers[-1].set_app(app)
            servers[-1].tls = tls  # type: ignore[attr-defined]
    except BaseException:
        for server in servers:
            server.server_close()
        raise
    return servers


def _bind(host: str, port: int) -> WSGIServer:
    def bound(server_class: type[_Server], address: str) -> WSGIServer:
        server = server_class((address, port), _QuietHandler, bind_and_activate=False)
        try:
            server.server_bind()
        except BaseException:
            server.server_close()
            raise
        return server

    if host == "":
        try:
            return bound(_DualStackServer, "::")
        except OSError:
            return bound(_Server, "0.0.0.0")
    return bound(_V6Server if ":" in host else _Server, host)


def start(servers: list[WSGIServer], addresses: list[str]) -> None:
    """Listen on each bound server and serve it in a thread of its own."""
    for server, text in zip(servers, addresses):
        server.server_activate()
        threading.Thread(target=server.serve_forever, name=f"http {text}", daemon=True).start()
        tls = getattr(server, "tls", None)
        log.info("listening on %s (%s)", text, "plain HTTP" if tls is None else "TLS")


def serve(
    addresses: list[str], app: WSGIApp, tls: Optional[Callable[[], Optional[ssl.SSLContext]]] = None
) -> list[WSGIServer]:
    """Bind every listen address, then serve them (raises OSError naming an address that cannot be bound)."""
    servers = bind(addresses, app, tls)
    start(servers, addresses)
    return servers
