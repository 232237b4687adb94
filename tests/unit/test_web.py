"""TLS, basic auth and request limits of the HTTP server, with real clients on loopback."""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import bcrypt
import pytest

from vz_traffic_exporter.exposition import http, webconfig
from vz_traffic_exporter.exposition.webconfig import WebConfigError, WebConfigWatcher

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("curl") is None, reason="needs openssl and curl"
)
BODY = b"vz_traffic_source_up 1\n"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA with a server certificate for 127.0.0.1 and a client certificate; another CA and its client."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                "-days", "2", "-subj", f"/CN={ca}", cwd=d)  # fmt: skip
    for name, ca, ext in (
        ("server", "ca", "subjectAltName=IP:127.0.0.1"),
        ("client", "ca", "extendedKeyUsage=clientAuth"),
        ("stranger", "other-ca", "extendedKeyUsage=clientAuth"),
    ):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        (d / f"{name}.ext").write_text(ext + "\n")
        signing = ("-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial")
        openssl("x509", "-req", "-in", f"{name}.csr", *signing, "-out", f"{name}.crt", "-days", "2",
                "-extfile", f"{name}.ext", cwd=d)  # fmt: skip
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(
        self, web: Optional[WebConfigWatcher], metrics: Callable[[], bytes], max_requests: int
    ) -> None:
        self.port = free_port()
        app = http.make_app(metrics, "/metrics", web, max_requests)
        tls = (lambda: web.current().context) if web is not None and web.config.tls else None
        self.servers = http.serve([f"127.0.0.1:{self.port}"], app, tls)

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(
        web: Optional[WebConfigWatcher] = None,
        metrics: Callable[[], bytes] = lambda: BODY,
        max_requests: int = 40,
    ) -> Server:
        started.append(Server(web, metrics, max_requests))
        return started[-1]

    yield start
    for server in started:
        server.close()


def curl(url: str, *args: str) -> tuple[int, str, str]:
    """(exit code, HTTP status or "", body) of one request with curl."""
    proc = subprocess.run(
        ["curl", "-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", *args, url],
        capture_output=True,
        text=True,
        check=False,
    )
    body, _, status = proc.stdout.rpartition("\n")
    return proc.returncode, status if proc.returncode == 0 else "", body


def web_file(tmp_path: Path, text: str) -> WebConfigWatcher:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return WebConfigWatcher(str(path))


def tls_yaml(pki: Path, extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n{extra}"


def test_https_with_a_private_ca_and_plain_http_refused(pki: Path, tmp_path: Path, serve: Any) -> None:
    server = serve(web_file(tmp_path, tls_yaml(pki)))
    code, status, body = curl(f"https://127.0.0.1:{server.port}/metrics", "--cacert", str(pki / "ca.crt"))
    assert (code, status, body) == (0, "200", BODY.decode())
    code, status, _ = curl(f"http://127.0.0.1:{server.port}/metrics")
    assert code != 0 and status == ""  # no HTTP answer on a TLS port
    code, _, _ = curl(f"https://127.0.0.1:{server.port}/metrics")  # the CA is not trusted by default
    assert code == 60


def test_a_client_certificate_is_required_when_configured(pki: Path, tmp_path: Path, serve: Any) -> None:
    extra = f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki}/ca.crt\n"
    server = serve(web_file(tmp_path, tls_yaml(pki, extra)))
    url = f"https://127.0.0.1:{server.port}/metrics"
    code, status, _ = curl(url, "--cacert", str(pki / "ca.crt"))
    assert code != 0 and status == ""
    client = ("--cert", str(pki / "client.crt"), "--key", str(pki / "client.key"))
    assert curl(url, "--cacert", str(pki / "ca.crt"), *client)[:2] == (0, "200")
    # A certificate of a CA the server does not trust is refused too.
    stranger = ("--cert", str(pki / "stranger.crt"), "--key", str(pki / "stranger.key"))
    code, status, _ = curl(url, "--cacert", str(pki / "ca.crt"), *stranger)
    assert code != 0 and status == ""


def test_basic_auth_with_bcrypt_hashes(tmp_path: Path, serve: Any) -> None:
    hashed = bcrypt.hashpw(b"right horse", bcrypt.gensalt(rounds=4)).decode()
    go_style = "$2y$" + bcrypt.hashpw(b"battery", bcrypt.gensalt(rounds=4)).decode()[4:]  # as htpasswd writes
    web = web_file(tmp_path, f"basic_auth_users:\n  prometheus: '{hashed}'\n  other: '{go_style}'\n")
    server = serve(web)
    url = f"http://127.0.0.1:{server.port}/metrics"
    assert curl(url, "-u", "prometheus:right horse")[1] == "200"
    assert curl(url, "-u", "other:battery")[1] == "200"
    assert curl(url, "-u", "prometheus:wrong")[1] == "401"
    assert curl(url, "-u", "nobody:right horse")[1] == "401"
    proc = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null", url], capture_output=True, text=True)
    assert proc.stdout.startswith("HTTP/1.0 401") and "WWW-Authenticate: Basic" in proc.stdout
    # A new password is taken without a restart.
    renewed = bcrypt.hashpw(b"new horse", bcrypt.gensalt(rounds=4)).decode()
    time.sleep(0.01)
    Path(web.path).write_text(f"basic_auth_users:\n  prometheus: '{renewed}'\n")
    assert curl(url, "-u", "prometheus:new horse")[1] == "200"
    assert curl(url, "-u", "prometheus:right horse")[1] == "401"


def test_an_idle_client_and_a_stalled_handshake_never_block_a_scrape(
    pki: Path, tmp_path: Path, serve: Any
) -> None:
    server = serve(web_file(tmp_path, tls_yaml(pki)))
    idle = socket.create_connection(("127.0.0.1", server.port))  # connects, says nothing
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello, no more
    try:
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        for _ in range(3):
            start = time.monotonic()
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
                conn.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                answer = b""
                while chunk := conn.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(BODY)
            assert time.monotonic() - start < 1.0
    finally:
        idle.close()
        stalled.close()


def test_more_concurrent_scrapes_than_allowed_get_503(serve: Any) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow() -> bytes:
        entered.set()
        release.wait(10)
        return BODY

    server = serve(metrics=slow, max_requests=1)
    url = f"http://127.0.0.1:{server.port}/metrics"
    first: list[tuple[int, str, str]] = []
    worker = threading.Thread(target=lambda: first.append(curl(url)))
    worker.start()
    try:
        assert entered.wait(5)
        assert curl(url)[1] == "503"
        assert curl(f"http://127.0.0.1:{server.port}/")[1] == "200"  # the landing page is not a scrape
    finally:
        release.set()
        worker.join(10)
    assert first[0][1] == "200"
    assert curl(url)[1] == "200"


def test_a_renewed_certificate_is_served_without_a_restart(pki: Path, tmp_path: Path, serve: Any) -> None:
    for name in ("server.crt", "server.key", "client.crt", "client.key"):
        shutil.copy(pki / name, tmp_path / name)
    web = web_file(tmp_path, "tls_server_config: {cert_file: server.crt, key_file: server.key}\n")  # relative
    server = serve(web)
    url = f"https://127.0.0.1:{server.port}/metrics"

    def served_cn() -> str:
        proc = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}"],
            input="",
            capture_output=True,
            text=True,
            timeout=10,
        )
        return proc.stdout.split("subject=", 1)[1].splitlines()[0]

    assert curl(url, "--cacert", str(pki / "ca.crt"))[1] == "200"
    assert "CN = server" in served_cn()
    time.sleep(0.01)
    shutil.copy(tmp_path / "client.crt", tmp_path / "server.crt")  # another certificate of the CA
    shutil.copy(tmp_path / "client.key", tmp_path / "server.key")
    assert "CN = client" in served_cn()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_server_config: {cert_file: a}\n", "cert_file and key_file are both required"),
        ("basic_auth_users: {alice: secret}\n", "basic_auth_users.alice: not a bcrypt hash"),
        ("tls: {}\n", "tls: unknown key"),
        ("rate_limit: {interval: 1s}\n", "rate_limit: is not supported by this exporter"),
        (
            "tls_server_config: {cert_file: a, key_file: b, cipher_suites: []}\n",
            "cipher_suites: is not supported",
        ),
        ("tls_server_config: {cert_file: a, key_file: b, min_version: TLS99}\n", "'TLS99' is not one of"),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAnyClientCert,"
            " client_ca_file: c}\n",
            "RequireAnyClientCert (a certificate without verifying it) is not supported",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAndVerifyClientCert}\n",
            "needs client_ca_file",
        ),
        ("http_server_config: {headers: {X-Powered-By: me}}\n", "headers.X-Powered-By: not one of"),
        (
            "tls_server_config: {cert_file: missing.crt, key_file: missing.key}\n",
            "cannot load the certificate",
        ),
        ("basic_auth_users: [\n", "invalid YAML"),
    ],
)
def test_bad_web_configurations_name_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(WebConfigError) as err:
        webconfig.load(str(path))
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)


def test_security_headers_are_sent(tmp_path: Path, serve: Any) -> None:
    server = serve(web_file(tmp_path, "http_server_config:\n  headers: {X-Frame-Options: deny}\n"))
    proc = subprocess.run(
        ["curl", "-sS", "-D", "-", "-o", "/dev/null", f"http://127.0.0.1:{server.port}/metrics"],
        capture_output=True,
        text=True,
    )
    assert "X-Frame-Options: deny" in proc.stdout


def test_check_config_checks_the_web_configuration_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import FIXTURES
    from vz_traffic_exporter import cli

    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {alice: secret}\n")
    argv = ["--config", str(FIXTURES / "lab.yaml"), f"--web.config.file={web}", "check-config"]
    assert cli.main(argv) == 2
    assert f"{web}: basic_auth_users.alice: not a bcrypt hash" in capsys.readouterr().err
    web.write_text(
        f"basic_auth_users: {{alice: '{bcrypt.hashpw(b'x', bcrypt.gensalt(rounds=4)).decode()}'}}\n"
    )
    assert cli.main(argv) == 0
    assert f"{web}: web configuration is valid" in capsys.readouterr().out


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_head_answers_the_headers_only_and_other_methods_get_405(serve: Any) -> None:
    server = serve()
    head = raw_request(server.port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and head.endswith(b"\r\n\r\n")
    assert f"Content-Length: {len(BODY)}".encode() in head
    for method in (b"POST", b"DELETE", b"TRACE", b"FOO", b"PUT"):
        answer = raw_request(server.port, method + b" /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 405") and b"Allow: GET, HEAD" in answer, answer
        assert BODY not in answer
    assert raw_request(server.port, b"GET /metrics HTTP/1.0\r\n\r\n").endswith(BODY)


def test_a_password_beyond_72_bytes_gets_401(tmp_path: Path, serve: Any) -> None:
    password = "p" * 72
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    server = serve(web_file(tmp_path, f"basic_auth_users:\n  prometheus: '{hashed}'\n"))
    url = f"http://127.0.0.1:{server.port}/metrics"
    assert curl(url, "-u", f"prometheus:{password}")[1] == "200"
    assert curl(url, "-u", f"prometheus:{password}x")[1] == "401"  # bcrypt alone would take its first 72
    assert curl(url, "-u", "prometheus:" + "é" * 100)[1] == "401"


def test_a_trickling_client_is_cut_at_the_request_deadline_and_nothing_goes_to_stderr(
    serve: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(http, "CONNECTION_TIMEOUT", 1.0)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # none left behind by another test's main()
    server = serve()
    trickler = socket.create_connection(("127.0.0.1", server.port))
    idle = socket.create_connection(("127.0.0.1", server.port))
    start = time.monotonic()
    closed_after = None
    try:
        for byte in b"GET /metrics HTTP/1.0\r\nHost: x\r\n":  # one byte every 0.2 s: every read is quick
            try:
                trickler.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - start
                break
            time.sleep(0.2)
            trickler.setblocking(False)
            try:
                if trickler.recv(1) == b"":
                    closed_after = time.monotonic() - start
                    break
            except BlockingIOError:
                pass
            trickler.setblocking(True)
        assert closed_after is not None and closed_after < 2.0  # the whole request had 1 s
        idle.settimeout(3)
        assert idle.recv(1) == b""  # the idle one is closed too
    finally:
        trickler.close()
        idle.close()
    assert raw_request(server.port, b"GET /metrics HTTP/1.0\r\n\r\n").endswith(BODY)
    assert "Traceback" not in capfd.readouterr().err


def test_unknown_users_take_as_long_as_known_ones_whatever_the_cost() -> None:
    auth = webconfig.Authenticator()
    users = {"prometheus": bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=12)).decode()}

    def took(user: str) -> float:
        start = time.perf_counter()
        assert not auth.check(users, user, "wrong")
        return time.perf_counter() - start

    took("nobody")  # makes the dummy hash of that cost once
    known = sorted(took("prometheus") for _ in range(3))[1]
    unknown = sorted(took("nobody") for _ in range(3))[1]
    assert 0.5 < unknown / known < 2.0, (known, unknown)


def test_a_flood_of_wrong_passwords_leaves_authorised_scrapes_fast(tmp_path: Path, serve: Any) -> None:
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=8)).decode()
    server = serve(web_file(tmp_path, f"basic_auth_users:\n  prometheus: '{hashed}'\n"))
    url = f"http://127.0.0.1:{server.port}/metrics"
    assert curl(url, "-u", "prometheus:right")[1] == "200"  # remembered from now on
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            curl(url, "-u", "prometheus:wrong")

    attackers = [threading.Thread(target=flood) for _ in range(8)]
    for thread in attackers:
        thread.start()
    try:
        time.sleep(0.3)
        times = []
        for _ in range(10):
            start = time.monotonic()
            assert curl(url, "-u", "prometheus:right")[1] == "200"
            times.append(time.monotonic() - start)
    finally:
        stop.set()
        for thread in attackers:
            thread.join(10)
    assert sorted(times)[-2] < 0.5, times


def test_the_listen_backlog_fits_bursts(serve: Any) -> None:
    server = serve()
    assert all(s.request_queue_size >= 128 for s in server.servers)
    answers: list[bytes] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(raw_request(server.port, b"GET /metrics HTTP/1.0\r\n\r\n"))
        )
        for _ in range(100)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(answers) == 100 and all(a.endswith(BODY) for a in answers)
