"""What a report asks for: the metrics it reads, the series' keys, and the selectors that name them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple, Optional

METRICS = {"vz_traffic_ip_bytes_total": True, "vz_traffic_container_bytes_total": False}  # -> per address
SHORT = 600  # s: the window in which a scraped series has its last sample
LONG = 40 * 86400  # s: how far back a series not seen in SHORT is looked for (retention is 35 days)
BATCH = 200  # containers per query that names them
FIRST_SEEN = "vz_traffic_container_first_seen_timestamp_seconds"
SERIES_LABELS = frozenset({"ip", "class", "direction", "family"})  # what tells a container's series apart
SHOWN = 5  # series named in a warning

Key = tuple[str, tuple[tuple[str, str], ...]]  # (metric, sorted labels)


class Start(NamedTuple):
    """A series' value at a period's start (0: made after it; None: not known), and whether that value is a
    sample near the start (not one carried from far back, where a drop may hide)."""

    value: Optional[float]
    near: bool


def matchers(selector: Optional[str]) -> str:
    """The matchers inside a selector like '{job="vz"}' (ValueError when it is not one)."""
    if not selector:
        return ""
    text = selector.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"--selector: {selector!r} is not a label matcher like '{{job=\"vz-traffic\"}}'")
    return text[1:-1].strip().rstrip(",")


def _key(metric: str, labels: dict[str, str]) -> Key:
    return metric, tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


def _group(labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """A series' container on its exporter: its labels less those that tell the container's series apart."""
    return tuple((k, v) for k, v in labels if k not in SERIES_LABELS)


def _shown(key: Key) -> str:
    return f"{key[0]}{{{', '.join(f'{k}={v}' for k, v in key[1])}}}"


def quotas_expr(inner: str) -> str:
    """Each container's quota per direction near a time (the largest an instance exports)."""
    return f"max by (veid, direction) (last_over_time({_select('vz_traffic_quota_bytes', inner)}[{SHORT}s]))"


def classes_expr(inner: str) -> str:
    """The quota classes the exporters say count, near a time."""
    return f"last_over_time({_select('vz_traffic_quota_class_info', inner)}[{SHORT}s])"


def _select(metric: str, inner: str, extra: str = "") -> str:
    parts = [p for p in (inner, extra) if p]
    return f"{metric}{{{', '.join(parts)}}}"


def alternatives(values: Iterable[str]) -> str:
    """A regular expression matching exactly these values, as a PromQL string holds it."""
    return "|".join(re.escape(v).replace("\\", "\\\\") for v in values)


def _veids(veids: Iterable[str], batch: int = BATCH) -> Iterable[str]:
    names = sorted(set(veids))
    for i in range(0, len(names), batch):
        yield f'veid=~"{alternatives(names[i : i + batch])}"'


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
