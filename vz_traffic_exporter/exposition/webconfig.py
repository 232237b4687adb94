"""The web configuration file (``--web.config.file``): TLS and basic auth.

The file has the exporter-toolkit format that Prometheus exporters share::

    tls_server_config:
      cert_file: server.crt          # relative paths: from the file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.crt
      min_version: TLS12
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2y$10$...         # bcrypt hashes

Unknown keys are errors, and so are the toolkit's keys this exporter does not
implement, each named with the file.  :class:`WebConfigWatcher` re-reads the
file, and the certificate files it names, whenever one of them changes: a
renewed certificate or a new password needs no restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Optional

from ..config import ConfigError, read_yaml

log = logging.getLogger(__name__)

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# client_auth_type -> what the server asks of clients; the toolkit's two
# modes that take a certificate without verifying it have no ssl equivalent.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNSUPPORTED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version")
TOOLKIT_TLS_KEYS = (
    "cert",
    "key",
    "client_ca",
    "client_allowed_sans",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
)
HEADERS = (
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
)
_BCRYPT = re.compile(r"^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$")


class WebConfigError(ConfigError):
    """A web configuration file with problems (each named with the file)."""


@dataclass(frozen=True)
class TlsConfig:
    cert_file: str
    key_file: str
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    client_ca_file: Optional[str] = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3

    def context(self) -> ssl.SSLContext:
        """A server context with these files loaded (ssl.SSLError, or OSError naming a file that is bad)."""
        for key, name in (
            ("cert_file", self.cert_file),
            ("key_file", self.key_file),
            ("client_ca_file", self.client_ca_file),
        ):
            if name is not None:
                try:
                    with open(name, "rb"):
                        pass
                except OSError as err:
                    raise OSError(err.errno, f"{key} {name}: {err.strerror}") from None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = self.min_version
        ctx.maximum_version = self.max_version
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.verify_mode = self.client_auth
        if self.client_ca_file:
            ctx.load_verify_locations(cafile=self.client_ca_file)
        return ctx

    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)


@dataclass(frozen=True)
class WebConfig:
    tls: Optional[TlsConfig] = None
    users: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # user -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()
    context: Optional[ssl.SSLContext] = field(default=None, compare=False)  # tls, loaded (by load)


def parse(data: Any, path: str) -> WebConfig:
    """The web configuration in parsed YAML (WebConfigError listing every problem)."""
    problems: list[str] = []
    base = os.path.dirname(os.path.abspath(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise WebConfigError(path, ["must be a mapping"])
    for key in data:
        if key not in TOP_KEYS:
            why = (
                "is not supported by this exporter"
                if key == "rate_limit"
                else f"unknown key (expected one of: {', '.join(TOP_KEYS)})"
            )
            problems.append(f"{key}: {why}")
    tls = _tls(data.get("tls_server_config"), base, problems)
    headers = _http(data.get("http_server_config"), problems)
    users: dict[str, str] = {}
    raw_users = data.get("basic_auth_users")
    if raw_users is not None and not isinstance(raw_users, dict):
        problems.append("basic_auth_users: must be a mapping of user names to bcrypt hashes")
        raw_users = None
    for user, hashed in (raw_users or {}).items():
        if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
            problems.append(f"basic_auth_users.{user}: not a bcrypt hash (make one with htpasswd -nBC 10 '')")
        else:
            users[str(user)] = hashed
    if problems:
        raise WebConfigError(path, problems)
    return WebConfig(tls, MappingProxyType(users), headers)


def _tls(raw: Any, base: str, problems: list[str]) -> Optional[TlsConfig]:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append("tls_server_config: must be a mapping")
        return None
    for key in raw:
        if key in TOOLKIT_TLS_KEYS:
            problems.append(f"tls_server_config.{key}: is not supported by this exporter")
        elif key not in TLS_KEYS:
            problems.append(f"tls_server_config.{key}: unknown key (expected one of: {', '.join(TLS_KEYS)})")

    def file(key: str) -> Optional[str]:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value or "\0" in value:
            problems.append(f"tls_server_config.{key}: must be a file name")
            return None
        return os.path.join(base, value)

    cert, key, ca = file("cert_file"), file("key_file"), file("client_ca_file")
    if cert is None or key is None:
        problems.append("tls_server_config: cert_file and key_file are both required")
    auth_name = raw.get("client_auth_type", "NoClientCert" if ca is None else "RequireAndVerifyClientCert")
    if not isinstance(auth_name, str):
        problems.append(f"tls_server_config.client_auth_type: must be one of: {', '.join(CLIENT_AUTH)}")
        auth_name = "NoClientCert"
    if auth_name in UNSUPPORTED_CLIENT_AUTH:
        problems.append(
            f"tls_server_config.client_auth_type: {auth_name} (a certificate without verifying it) "
            "is not supported; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        )
        auth = ssl.CERT_NONE
    elif auth_name not in CLIENT_AUTH:
        problems.append(
            f"tls_server_config.client_auth_type: {auth_name!r} is not one of: {', '.join(CLIENT_AUTH)}"
        )
        auth = ssl.CERT_NONE
    else:
        auth = CLIENT_AUTH[auth_name]
    if auth != ssl.CERT_NONE and ca is None:
        problems.append(f"tls_server_config: client_auth_type {auth_name} needs client_ca_file")
    if auth == ssl.CERT_NONE and ca is not None and auth_name == "NoClientCert":
        problems.append("tls_server_config: client_ca_file is given but client_auth_type is NoClientCert")
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        value = raw.get(name, default)
        if not isinstance(value, str) or value not in TLS_VERSIONS:
            choices = ", ".join(TLS_VERSIONS)
            problems.append(f"tls_server_config.{name}: {value!r:.40} is not one of: {choices}")
            value = default
        versions[name] = TLS_VERSIONS[value]
    if versions["min_version"] > versions["max_version"]:
        problems.append("tls_server_config: min_version is above max_version")
    if cert is None or key is None:
        return None
    return TlsConfig(cert, key, auth, ca, versions["min_version"], versions["max_version"])


def _http(raw: Any, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        problems.append("http_server_config: must be a mapping")
        return ()
    for key in raw:
        if key == "http2":
            if not isinstance(raw[key], bool):
                problems.append("http_server_config.http2: must be true or false")
        elif key != "headers":
            problems.append(f"http_server_config.{key}: unknown key (expected headers, http2)")
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict):
        problems.append("http_server_config.headers: must be a mapping")
        return ()
    out = []
    for name, value in headers.items():
        if name not in HEADERS:
            problems.append(f"http_server_config.headers.{name}: not one of: {', '.join(HEADERS)}")
        elif not isinstance(value, str) or "\n" in value or "\r" in value:
            problems.append(f"http_server_config.headers.{name}: must be a one-line string")
        else:
            out.append((str(name), value))
    return tuple(out)


def load(path: str) -> WebConfig:
    """The web configuration in a file, with its TLS context loaded (WebConfigError listing every problem)."""
    config = parse(read_yaml(path, WebConfigError), path)
    if config.tls is None:
        return config
    try:
        return replace(config, context=config.tls.context())
    except (ssl.SSLError, OSError, ValueError) as err:
        why = err.strerror if isinstance(err, OSError) and not isinstance(err, ssl.SSLError) else str(err)
        raise WebConfigError(
            path, [f"tls_server_config: cannot load the certificate or key: {why}"]
        ) from None


class WebConfigWatcher:
    """The web configuration as it is now: re-read when the file or a file it names changes.

    A change that does not load is logged and the last good configuration is kept.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.config = load(path)  # WebConfigError at start: the caller refuses to start
        self._stamp = self._stamps()

    def _stamps(self) -> tuple[tuple[int, int], ...]:
        files = (self.path, *(self.config.tls.files() if self.config.tls else ()))
        out = []
        for name in files:
            try:
                st = os.stat(name)
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((-1, -1))
        return tuple(out)

    def current(self) -> WebConfig:
        with self._lock:
            stamp = self._stamps()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    config = load(self.path)
                except WebConfigError as err:
                    log.error("web configuration not reloaded, keeping the last good one: %s", err)
                else:
                    if (config.tls is None) != (self.config.tls is None):
                        log.warning("web configuration: switching TLS on or off needs a restart; not applied")
                    else:
                        self.config = config
                        self._stamp = self._stamps()
                        log.info("web configuration reloaded from %s", self.path)
            return self.config


class Authenticator:
    """Basic auth against bcrypt hashes, with the toolkit's habits, and bounded work.

    An unknown user is checked against a hash of the same cost as the
    configured ones, so the answer takes as long as for a known user; a
    checked (user, hash, password) is remembered (as a keyed digest), since
    bcrypt is slow on purpose and Prometheus sends the same credentials at
    every scrape: authorised scrapes never wait for bcrypt.  At most
    ``CONCURRENT`` bcrypt checks run at once, so a flood of wrong passwords
    costs at most that many cores; a check that cannot start within
    ``WAIT`` seconds is refused.  bcrypt reads 72 bytes of a password at
    most: a longer one is refused, never truncated.
    """

    CONCURRENT = 2
    WAIT = 5.0  # s
    MAX_PASSWORD = 72  # bytes

    def __init__(self) -> None:
        import bcrypt  # a C extension: loaded only where basic auth is configured

        self._bcrypt = bcrypt
        self._dummies: dict[int, bytes] = {}  # cost -> a hash of that cost
        self._key = os.urandom(32)
        self._good: set[bytes] = set()
        self._lock = threading.Lock()
        self._work = threading.BoundedSemaphore(self.CONCURRENT)

    def _dummy(self, users: Mapping[str, str]) -> bytes:
        cost = max((int(h[4:6]) for h in users.values()), default=10)
        with self._lock:
            dummy = self._dummies.get(cost)
        if dummy is None:
            dummy = self._bcrypt.hashpw(b"not a password", self._bcrypt.gensalt(rounds=cost))
            with self._lock:
                self._dummies[cost] = dummy
        return dummy

    def check(self, users: Mapping[str, str], user: str, password: str) -> bool:
        hashed = users.get(user)
        digest = hmac.new(self._key, f"{user}\0{hashed}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if hashed is not None and digest in self._good:
                return True
        secret = password.encode()
        if len(secret) > self.MAX_PASSWORD:
            return False
        target = hashed.encode() if hashed is not None else self._dummy(users)
        # Go's bcrypt and htpasswd write $2y$; the algorithm is the one of $2b$.
        if target.startswith(b"$2y$"):
            target = b"$2b$" + target[4:]
        if not self._work.acquire(timeout=self.WAIT):
            log.warning("basic auth: more than %d checks waiting; a request was refused", self.CONCURRENT)
            return False
        try:
            ok = bool(self._bcrypt.checkpw(secret, target)) and hashed is not None
        except ValueError:  # a hash bcrypt does not take
            ok = False
        finally:
            self._work.release()
        if ok:
            with self._lock:
                if len(self._good) > 1024:
                    self._good.clear()
                self._good.add(digest)
        return ok
