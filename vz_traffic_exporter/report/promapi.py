"""A client of the Prometheus HTTP query API (Prometheus, Thanos Query, Mimir, VictoriaMetrics).

Instant queries (``/api/v1/query``) and range queries (``/api/v1/query_range``),
sent as forms by POST: the value of an expression at a time or on a grid of
times, or, for a range selector, the raw samples it holds.  Every failure is
a :class:`ServerError` with one line that says what went wrong and where.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional

MAX_STEPS = 10_000  # steps of one range query (Prometheus refuses more than 11,000 points a series)
RANGE_UP_TO = 3600  # s: steps further apart are asked one by one


class ServerError(Exception):
    """The server could not be asked, or answered something that is not a query result: exit 1."""


@dataclass
class Client:
    url: str
    timeout: float = 120.0
    headers: dict[str, str] = field(default_factory=dict)
    context: Optional[ssl.SSLContext] = None
    queries: int = 0  # how many were sent

    @classmethod
    def build(
        cls,
        url: str,
        *,
        user: Optional[str] = None,
        password_file: Optional[str] = None,
        bearer_token_file: Optional[str] = None,
        ca_file: Optional[str] = None,
        cert_file: Optional[str] = None,
        key_file: Optional[str] = None,
        headers: Sequence[str] = (),
        timeout: float = 120.0,
    ) -> Client:
        """A client for the server at url (ValueError, naming the flag, for what cannot be used)."""
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"--prometheus.url: {url!r} is not an http:// or https:// URL")
        sent: dict[str, str] = {}
        for header in headers:
            name, sep, value = header.partition(":")
            if not sep or not name.strip() or "\n" in header:
                raise ValueError(f"--prometheus.header: {header!r} is not 'Name: value'")
            sent[name.strip()] = value.strip()
        if user is not None:
            password = _secret(password_file, "--prometheus.password-file") if password_file else ""
            sent["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if bearer_token_file:
            sent["Authorization"] = "Bearer " + _secret(bearer_token_file, "--prometheus.bearer-token-file")
        context = None
        if parsed.scheme == "https":
            try:
                context = ssl.create_default_context(cafile=ca_file)
                if cert_file:
                    context.load_cert_chain(cert_file, key_file)
            except (OSError, ssl.SSLError) as err:
                raise ValueError(f"--prometheus.ca-file / cert-file: {err}") from None
        return cls(url.rstrip("/"), timeout, sent, context)

    def _post(self, path: str, form: dict[str, str], method: str = "POST") -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=urllib.parse.urlencode(form).encode() if method == "POST" else None,
            headers={"Content-Type": "application/x-www-form-urlencoded", **self.headers},
            method=method,
        )
        self.queries += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as answer:
                body = answer.read()
        except urllib.error.HTTPError as err:
            detail = _error_of(err.read())
            raise ServerError(f"{self.url}: HTTP {err.code} {err.reason}{detail}") from None
        except (socket.timeout, TimeoutError):
            raise ServerError(f"{self.url}: no answer within {self.timeout:g}s") from None
        except urllib.error.URLError as err:
            raise ServerError(f"{self.url}: cannot connect: {err.reason}") from None
        except OSError as err:
            raise ServerError(f"{self.url}: {err}") from None
        try:
            data = json.loads(body)
        except ValueError:
            raise ServerError(
                f"{self.url}: the answer is not JSON: is this a Prometheus query API?"
            ) from None
        if not isinstance(data, dict) or data.get("status") != "success" or "data" not in data:
            raise ServerError(f"{self.url}: not a query result{_error_of(body)}")
        return data["data"]

    def retention(self) -> Optional[float]:
        """Seconds of samples the server keeps, where it says (/api/v1/status/flags); else None."""
        try:
            data = self._post("/api/v1/status/flags", {}, method="GET")
        except ServerError:
            return None  # not a Prometheus (Thanos, Mimir, VictoriaMetrics keep their own way)
        if not isinstance(data, dict) or not {"storage.tsdb.retention.time", "storage.tsdb.retention"} & set(
            data
        ):
            return None
        for flag in ("storage.tsdb.retention.time", "storage.tsdb.retention"):
            seconds = _duration(str(data.get(flag, "")))
            if seconds:
                return seconds
        # Neither set: 15 days, unless a size limit is the only one.
        size = str(data.get("storage.tsdb.retention.size", "0B"))
        return None if size not in ("", "0", "0B") else 15 * 86400.0

    def query(self, expr: str, at: datetime) -> list[tuple[dict[str, str], float]]:
        """An instant vector: (labels, value) of each series."""
        data = self._post("/api/v1/query", {"query": expr, "time": f"{at.timestamp():.3f}"})
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            raise ServerError(f"{self.url}: expected a vector for {expr}")
        try:
            return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]
        except (KeyError, TypeError, ValueError, IndexError):
            raise ServerError(f"{self.url}: a malformed vector for {expr}") from None

    def grid(self, expr: str, times: Sequence[float]) -> list[tuple[dict[str, str], dict[int, float]]]:
        """An expression at each of times (in order): (labels, {index of the time: value}) of each series."""
        return self.grid_by_step(lambda _: expr, times, times[1] - times[0] if len(times) > 1 else 1.0)

    def grid_by_step(
        self,
        make: Callable[[float], str],
        times: Sequence[float],
        first_step: float,
        range_up_to: float = RANGE_UP_TO,
    ) -> list[tuple[dict[str, str], dict[int, float]]]:
        """The expression make(step) at each of times, step being the time since the one before
        (first_step for the first): (labels, {index of the time: value}) of each series.  Times as far apart
        as the ones before them, by range_up_to seconds at most, are asked in range queries of at most
        MAX_STEPS steps; the others each in an instant query (a range query reads every sample between its
        start and end, however far apart its steps)."""
        gaps = [first_step, *(b - a for a, b in zip(times, times[1:]))]
        found: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], dict[int, float]]] = {}
        first = 0
        while first < len(times):
            last = first
            while (
                gaps[first] <= range_up_to
                and last + 1 < len(times)
                and gaps[last + 1] == gaps[first]
                and last + 1 - first < MAX_STEPS
            ):
                last += 1
            expr = make(gaps[first])
            for labels, points in self._range(expr, times[first], times[last], gaps[first]):
                mine = found.setdefault(tuple(sorted(labels.items())), (labels, {}))[1]
                for t, value in points:
                    index = first + round((t - times[first]) / gaps[first])
                    if first <= index <= last:
                        mine[index] = value
            first = last + 1
        return list(found.values())

    def _range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """A range query (an instant one where start is end): (labels, [(time, value)...]) of each series."""
        if start == end:
            at = datetime.fromtimestamp(start, timezone.utc)
            return [(labels, [(start, value)]) for labels, value in self.query(expr, at)]
        form = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"}
        return self._matrix(self._post("/api/v1/query_range", form), expr)

    def label_values(self, name: str, match: str, start: float, end: float) -> list[str]:
        """The values of a label among the series of a selector with samples in [start, end]."""
        query = urllib.parse.urlencode({"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"})
        data = self._post(f"/api/v1/label/{urllib.parse.quote(name)}/values?{query}", {}, method="GET")
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise ServerError(f"{self.url}: expected a list of values of the label {name}")
        return list(data)

    def samples(self, expr: str, at: datetime) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """The raw samples of a range selector: (labels, [(time, value)...]) of each series."""
        return self._matrix(
            self._post("/api/v1/query", {"query": expr, "time": f"{at.timestamp():.3f}"}), expr
        )

    def _matrix(self, data: Any, expr: str) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """A matrix answer as (labels, [(time, value)...]) of each series (ServerError for anything else)."""
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise ServerError(f"{self.url}: expected a matrix for {expr}")
        try:
            return [
                (dict(item["metric"]), [(float(t), float(v)) for t, v in item["values"]])
                for item in data["result"]
            ]
        except (KeyError, TypeError, ValueError):
            raise ServerError(f"{self.url}: a malformed matrix for {expr}") from None


def _secret(path: str, flag: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{flag}: cannot read {path}: {err}") from None


def _error_of(body: bytes) -> str:
    try:
        data = json.loads(body)
        return f": {data['error']}" if isinstance(data, dict) and data.get("error") else ""
    except ValueError:
        return ""


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def _duration(text: str) -> float:
    """A Prometheus duration (15d, 1y, 2h30m) in seconds; 0 for "0s" or what is not one."""
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return 0.0
    return float(sum(int(n) * _UNITS[u] for n, u in parts))
