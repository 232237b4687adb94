"""Configuration: YAML validated once into one immutable :class:`Config`.

Every problem is collected with its key path (``containers.static[1].ips[0]``)
and reported together in one :class:`ConfigError`; nothing starts before the
whole file is valid.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Callable, Optional, TypeVar

import yaml

from . import cycles
from .classes import (
    MAX_CLASS,
    ClassTable,
    IPNetwork,
    NetworkClass,
    ambiguous_networks,
    parse_networks_classes,
)
from .files import read_text
from .names import BACKEND_CHOICES, DISCOVERY_SOURCES, KERNEL_SOURCES

DEFAULT_PATH = "/etc/vz-traffic-exporter/config.yaml"


# What this version implements; the rest of the contract's names are accepted
# by the schema and refused with a clear message.
IMPLEMENTED_DISCOVERY = DISCOVERY_SOURCES


class ConfigError(Exception):
    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        # One line each, whatever the file held (a key may hold a newline).
        self.problems = [p.replace("\r", "\\r").replace("\n", "\\n") for p in problems]
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


@dataclass(frozen=True)
class StaticContainer:
    veid: str
    name: str
    ips: tuple[str, ...]
    interfaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetfilterConfig:
    backend: str = "auto"
    manage_rules: bool = True
    host_traffic: bool = True


@dataclass(frozen=True)
class KernelConfig:
    """Each kernel source: None = auto, True = required, False = off."""

    venetstat: Optional[bool] = None
    vznetstat: Optional[bool] = None
    nft_counters: Optional[bool] = None
    interfaces: Optional[bool] = None


@dataclass(frozen=True)
class StateConfig:
    file: str = "/var/lib/vz-traffic-exporter/state.json"
    poll_interval: float = 30.0
    retention: float = 35 * 86400.0


@dataclass(frozen=True)
class Quota:
    in_: Optional[int] = None
    out: Optional[int] = None
    total: Optional[int] = None
    cycle_day: Optional[int] = None  # a container's own; None: quotas.cycle_day


@dataclass(frozen=True)
class QuotaConfig:
    classes: Optional[tuple[int, ...]] = None  # None: every class counts
    default: Quota = Quota()
    containers: Mapping[str, Quota] = field(default_factory=lambda: MappingProxyType({}))
    timezone: str = cycles.UTC  # the billing months' zone
    cycle_day: int = 1  # the day each billing month starts, where a container has none of its own

    def day_of(self, veid: str) -> int:
        """The day a container's billing month starts: its own cycle day, else quotas.cycle_day."""
        return self.containers.get(veid, Quota()).cycle_day or self.cycle_day

    def of(self, veid: str) -> dict[str, int]:
        """A container's quotas by direction (in, out, total): its own entry, key by key, over the default."""
        own = self.containers.get(veid, Quota())
        found = {}
        for direction, attr in (("in", "in_"), ("out", "out"), ("total", "total")):
            size = getattr(own, attr)
            if size is None:
                size = getattr(self.default, attr)
            if size is not None:
                found[direction] = size
        return found

    def counted_classes(self, present: Iterable[int] = ()) -> tuple[int, ...]:
        """The classes whose traffic counts toward quotas: quotas.classes, else every class there is.

        present: the classes of this node (configured, or seen counting).
        """
        return self.classes if self.classes is not None else tuple(sorted(set(present)))


@dataclass(frozen=True)
class Config:
    source: str = "<built-in defaults>"
    static: tuple[StaticContainer, ...] = ()
    discovery: Optional[tuple[str, ...]] = None  # None = auto
    refresh_interval: float = 60.0
    discovery_timeout: float = 300.0  # s: prlctl waits up to 60 s for each guest that does not answer
    classes: ClassTable = field(default_factory=lambda: ClassTable.build(()))
    networks_classes_file: Optional[str] = None
    netfilter: NetfilterConfig = NetfilterConfig()
    kernel: KernelConfig = KernelConfig()
    state: StateConfig = StateConfig()
    quotas: QuotaConfig = QuotaConfig()


# Every key of the file, by the mapping that holds it ("" is the top level, [] a list's entries);
KEYS: dict[str, tuple[str, ...]] = {
    "": ("containers", "network_classes", "networks_classes_file", "netfilter", "kernel", "state", "quotas"),
    "containers": ("static", "discovery", "refresh_interval", "discovery_timeout"),
    "containers.static[]": ("veid", "name", "ips", "interfaces"),
    "network_classes[]": ("id", "name", "networks"),
    "netfilter": ("backend", "manage_rules", "host_traffic"),
    "kernel": KERNEL_SOURCES,
    "state": ("file", "poll_interval", "retention"),
    "quotas": ("classes", "timezone", "cycle_day", "default", "containers"),
    "quotas.default": ("in", "out", "total"),
    "quotas.containers.<veid>": ("in", "out", "total", "cycle_day"),
}


# --- scalar parsers -------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS: dict[str, Fraction] = {
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
    "d": Fraction(86400),
    "w": Fraction(604800),
}
MAX_DURATION = 10 * 366 * 86400

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKMGTPE]i?B|B)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1}
for _i, _p in enumerate("KMGTPE", start=1):
    _SIZE_UNITS[f"{_p}B"] = 1000**_i
    _SIZE_UNITS[f"{_p}iB"] = 1024**_i
_SIZE_UNITS["kB"] = 1000
_SIZE_UNITS["kiB"] = 1024


MAX_SIZE = 1 << 63  # bytes: 8 EiB, beyond any quota


def _number(text: str) -> Fraction:
    return Fraction(text)  # exact, and never overflows as a float would


def parse_duration(value: Any) -> float:
    """A duration with its unit (30s, 5m, 1h, 35d): a bare number could mean seconds or days."""
    if isinstance(value, bool):
        raise ValueError(f"{_shown(value)} is not a duration (use 30s, 5m, 1h, 35d)")
    if isinstance(value, (int, float)) and (not isinstance(value, float) or math.isfinite(value)):
        shown = _shown(value)
        raise ValueError(f"{shown} has no unit: write {shown}s, {shown}m, {shown}h or {shown}d")
    m = _DURATION.match(str(value)) if len(str(value)) <= 40 else None
    if not m:
        raise ValueError(f"{_shown(value)} is not a duration (use 30s, 5m, 1h, 35d)")
    if m.group(2) is None:
        raise ValueError(
            f"{_shown(value)} has no unit: write {m.group(1)}s, {m.group(1)}m, {m.group(1)}h or {m.group(1)}d"
        )
    seconds = _number(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"{_shown(value)} must be longer than zero")
    if seconds > MAX_DURATION:
        raise ValueError(f"{_shown(value)} is longer than ten years")
    return float(seconds)


def parse_size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{_shown(value)} is not a size (use bytes, 500GB or 2TiB)")
    if isinstance(value, int):
        size = Fraction(value)
    else:
        m = _SIZE.match(str(value)) if len(str(value)) <= 40 else None
        if not m:
            raise ValueError(f"{_shown(value)} is not a size (use bytes, 500GB or 2TiB)")
        size = _number(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if size <= 0:
        raise ValueError(f"{_shown(value)} must be larger than zero")
    if size >= MAX_SIZE:
        raise ValueError(f"{_shown(value)} is larger than 8 EiB")
    return int(size)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:60]}..."


def canonical_ip(value: Any) -> str:
    """The canonical text of one IP address (IPv6 compressed, lower case)."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IP address")
    if "%" in value:
        raise ValueError(f"{_shown(value)} has a scope (%zone): container addresses are global addresses")
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"{_shown(value)} is not an IP address") from None


# --- the validator --------------------------------------------------------

T = TypeVar("T")


class _Checker:
    """Walks the YAML tree, collecting problems with their key paths."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, not {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.problem(where, f"unknown key (expected one of: {', '.join(allowed)})")
        return {k: v for k, v in value.items() if k in allowed}

    def sequence(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(path, f"must be a list, not {_kind(value)}")
            return []
        return value

    def convert(self, value: Any, path: str, parse: Callable[[Any], T]) -> Optional[T]:
        try:
            return parse(value)
        except ValueError as err:
            self.problem(path, str(err))
            return None

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(path, f"must be true or false, not {value!r}")
            return default
        return value

    def choice(self, value: Any, path: str, choices: tuple[str, ...], default: str) -> str:
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            self.problem(path, f"{_shown(value)} is not one of: {', '.join(choices)}")
            return default
        return str(value)

    def duration(
        self, value: Any, path: str, default: float, least: float = 0.0, most: float = MAX_DURATION
    ) -> float:
        """A duration in [least, most] seconds (the bounds are said in the problem)."""
        if value is None:
            return default
        seconds = self.convert(value, path, parse_duration)
        if seconds is None:
            return default
        if not least <= seconds <= most:
            self.problem(path, f"{_shown(value)} is not between {_human(least)} and {_human(most)}")
            return default
        return seconds

    def string(self, value: Any, path: str) -> Optional[str]:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.problem(path, f"must be a string, not {_kind(value)}")
            return None
        text = str(value).strip()
        if not text:
            self.problem(path, "must not be empty")
            return None
        if not _is_text(text):
            self.problem(path, f"{text!r} is not valid Unicode text (a lone surrogate or a NUL)")
            return None
        return text


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"


def _is_text(value: str) -> bool:
    return re.search("[\0\ud800-\udfff]", value) is None


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else repr(value)
    )


def _veid(c: _Checker, value: Any, path: str) -> Optional[str]:
    if isinstance(value, WrittenInt):  # 0101 is octal to YAML: 65, not the CTID 0101
        c.problem(path, f'{value.text} is read by YAML as the number {int(value)}: quote it ("{value.text}")')
        return None
    veid = c.string(value, path)
    if veid is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]*", veid):
        c.problem(path, f"{veid!r} is not a valid container id")
        return None
    return veid


_IFNAME = re.compile(r"^[^/\s]{1,15}$")


def _ifname(value: Any) -> str:
    if not isinstance(value, str) or not _IFNAME.match(value) or value in (".", ".."):
        raise ValueError(f"{value!r} is not an interface name")
    return value


def _containers(
    c: _Checker, raw: Any
) -> tuple[tuple[StaticContainer, ...], Optional[tuple[str, ...]], float, float]:
    section = c.mapping(raw, "containers", KEYS["containers"])
    static: list[StaticContainer] = []
    veids: dict[str, str] = {}
    owners: dict[str, str] = {}
    for i, entry in enumerate(c.sequence(section.get("static"), "containers.static")):
        path = f"containers.static[{i}]"
        item = c.mapping(entry, path, KEYS["containers.static[]"])
        if "veid" not in item:
            c.problem(path, "veid is required")
            continue
        veid = _veid(c, item["veid"], f"{path}.veid")
        name = "" if item.get("name") is None else c.string(item["name"], f"{path}.name") or ""
        ips: list[str] = []
        for j, raw_ip in enumerate(c.sequence(item.get("ips"), f"{path}.ips")):
            ip = c.convert(raw_ip, f"{path}.ips[{j}]", canonical_ip)
            if ip is None:
                continue
            first = owners.get(ip)
            if first is not None:
                c.problem(f"{path}.ips[{j}]", f"{ip} is already claimed by {first}")
                continue
            owners[ip] = f"{path} (veid {veid})" if veid else path
            ips.append(ip)
        interfaces = tuple(
            ifname
            for j, raw_if in enumerate(c.sequence(item.get("interfaces"), f"{path}.interfaces"))
            if (ifname := c.convert(raw_if, f"{path}.interfaces[{j}]", _ifname)) is not None
        )
        if veid is None:
            continue
        if veid in veids:
            c.problem(f"{path}.veid", f"duplicate veid {veid!r} (also {veids[veid]})")
            continue
        veids[veid] = path
        static.append(StaticContainer(veid, name, tuple(ips), interfaces))

    discovery: Optional[tuple[str, ...]] = None
    if section.get("discovery") is not None:
        names: list[str] = []
        for i, raw_name in enumerate(c.sequence(section["discovery"], "containers.discovery")):
            path = f"containers.discovery[{i}]"
            name = c.choice(raw_name, path, DISCOVERY_SOURCES, "")
            if not name:
                continue
            if name not in IMPLEMENTED_DISCOVERY:
                c.problem(path, f"discovery source {name!r} is not supported by this version")
            elif name in names:
                c.problem(path, f"{name!r} is listed twice")
            else:
                names.append(name)
        discovery = tuple(names)
    refresh = c.duration(
        section.get("refresh_interval"), "containers.refresh_interval", 60.0, least=1.0, most=86400.0
    )
    timeout = c.duration(
        section.get("discovery_timeout"), "containers.discovery_timeout", 300.0, least=1.0, most=3600.0
    )
    return tuple(static), discovery, refresh, timeout


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"{value!r} is not a network (address/prefix)")
    if "/" not in value:
        host = "32" if ":" not in value else "128"
        raise ValueError(f"{_shown(value)} has no prefix: write {value.strip()}/{host} for one address")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a network (address/prefix)") from None


def _classes_file(c: _Checker, path: str, classes: list[NetworkClass]) -> list[NetworkClass]:
    """Merge an OpenVZ networks_classes file into the configured classes."""
    try:
        entries, problems = parse_networks_classes(read_text(path, MAX_FILE, encoding="latin-1"))
    except OSError as err:
        c.problem("networks_classes_file", f"cannot read {path}: {err.strerror or err}")
        return classes
    for problem in problems:
        c.problem("networks_classes_file", f"{path}: {problem}")
    names = {k.id: k.name for k in classes}
    networks: dict[int, dict[IPNetwork, None]] = {k.id: dict.fromkeys(k.networks) for k in classes}
    for klass, net in entries:  # each class's networks in order, each once: linear in the file
        networks.setdefault(klass, {})[net] = None
    return [NetworkClass(i, names.get(i, f"class{i}"), tuple(networks[i])) for i in sorted(networks)]


def _classes(c: _Checker, raw: Any, classes_file: Optional[str] = None) -> ClassTable:
    classes: list[NetworkClass] = []
    seen: set[int] = set()
    for i, entry in enumerate(c.sequence(raw, "network_classes")):
        path = f"network_classes[{i}]"
        item = c.mapping(entry, path, KEYS["network_classes[]"])
        ident = item.get("id")
        if isinstance(ident, bool) or not isinstance(ident, int) or not 0 <= ident <= MAX_CLASS:
            c.problem(f"{path}.id", f"must be a class number 0..{MAX_CLASS}, not {ident!r}")
            continue
        if ident in seen:
            c.problem(f"{path}.id", f"class {ident} is defined twice")
            continue
        seen.add(ident)
        name = "" if item.get("name") is None else c.string(item["name"], f"{path}.name") or ""
        nets = []
        for j, raw_net in enumerate(c.sequence(item.get("networks"), f"{path}.networks")):
            net = c.convert(raw_net, f"{path}.networks[{j}]", _network)
            if net is not None and net not in nets:
                nets.append(net)
        classes.append(NetworkClass(ident, name or f"class{ident}", tuple(nets)))
    if classes_file:
        classes = _classes_file(c, classes_file, classes)
    for net, first, second in ambiguous_networks(classes):
        c.problem("network_classes", f"{net} is listed in both class {first} and class {second}")
    if not any(k.id == 0 for k in classes):
        classes.append(NetworkClass(0, "default"))
    return ClassTable.build(classes)


def _netfilter(c: _Checker, raw: Any) -> NetfilterConfig:
    section = c.mapping(raw, "netfilter", KEYS["netfilter"])
    raw_backend = section.get("backend")
    # YAML 1.1 reads an unquoted off as false: the documented word is meant.
    backend = c.choice(
        "off" if raw_backend is False else raw_backend, "netfilter.backend", BACKEND_CHOICES, "auto"
    )
    manage = c.boolean(section.get("manage_rules"), "netfilter.manage_rules", True)
    if not manage and backend in ("ipset", "nftables"):
        c.problem(
            "netfilter.manage_rules",
            f"false adopts the operator's own iptables rules; backend {backend!r} has none to adopt "
            "(use backend iptables or auto)",
        )
    return NetfilterConfig(
        backend=backend,
        manage_rules=manage,
        host_traffic=c.boolean(section.get("host_traffic"), "netfilter.host_traffic", True),
    )


def _kernel(c: _Checker, raw: Any) -> KernelConfig:
    section = c.mapping(raw, "kernel", KEYS["kernel"])
    values: dict[str, Optional[bool]] = {}
    for key in KERNEL_SOURCES:
        value = section.get(key, "auto")
        if value == "auto" or value is None:
            values[key] = None
        elif isinstance(value, bool):
            values[key] = value
        else:
            c.problem(f"kernel.{key}", f"must be auto, true or false, not {value!r}")
    return KernelConfig(**values)


def _state(c: _Checker, raw: Any) -> StateConfig:
    section = c.mapping(raw, "state", KEYS["state"])
    default = StateConfig()
    file = default.file
    if section.get("file") is not None:
        file = c.string(section["file"], "state.file") or file
    poll = c.duration(
        section.get("poll_interval"), "state.poll_interval", default.poll_interval, least=1.0, most=3600.0
    )
    retention = c.duration(section.get("retention"), "state.retention", default.retention, least=poll)
    return StateConfig(file=file, poll_interval=poll, retention=retention)


def _quota(c: _Checker, raw: Any, path: str, keys: str = "quotas.default") -> Quota:
    item = c.mapping(raw, path, KEYS[keys])
    sizes = {
        key: c.convert(item[key], f"{path}.{key}", parse_size)
        for key in ("in", "out", "total")
        if item.get(key) is not None
    }
    day = _cycle_day(c, item.get("cycle_day"), f"{path}.cycle_day")
    return Quota(in_=sizes.get("in"), out=sizes.get("out"), total=sizes.get("total"), cycle_day=day)


def _cycle_day(c: _Checker, value: Any, path: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cycles.MAX_CYCLE_DAY:
        c.problem(
            path, f"{_shown(value)} is not a day of the month 1..{cycles.MAX_CYCLE_DAY} (every month has it)"
        )
        return None
    return int(value)


def _timezone(c: _Checker, value: Any, path: str) -> str:
    if value is None:
        return cycles.UTC
    name = c.string(value, path)
    if name is None:
        return cycles.UTC
    try:
        cycles.zone(name)
    except ValueError as err:
        c.problem(path, str(err))
        return cycles.UTC
    return name


def _quotas(c: _Checker, raw: Any, classes: ClassTable) -> QuotaConfig:
    section = c.mapping(raw, "quotas", KEYS["quotas"])
    quota_classes: Optional[tuple[int, ...]] = None
    if section.get("classes") is not None:
        ids = []
        for i, ident in enumerate(c.sequence(section["classes"], "quotas.classes")):
            if isinstance(ident, bool) or not isinstance(ident, int) or not 0 <= ident <= MAX_CLASS:
                c.problem(f"quotas.classes[{i}]", f"must be a class number 0..{MAX_CLASS}")
            elif ident not in classes.ids():
                c.problem(f"quotas.classes[{i}]", f"class {ident} is not defined in network_classes")
            else:
                ids.append(ident)
        quota_classes = tuple(ids)
    default = _quota(c, section.get("default"), "quotas.default")
    containers: dict[str, Quota] = {}
    raw_containers = section.get("containers")
    if raw_containers is not None and not isinstance(raw_containers, dict):
        c.problem("quotas.containers", f"must be a mapping, not {_kind(raw_containers)}")
    elif raw_containers:
        for key, value in raw_containers.items():
            veid = _veid(c, key, f"quotas.containers.{key.text if isinstance(key, WrittenInt) else key}")
            if veid is not None:
                containers[veid] = _quota(c, value, f"quotas.containers.{veid}", "quotas.containers.<veid>")
    return QuotaConfig(
        quota_classes,
        default,
        MappingProxyType(containers),
        timezone=_timezone(c, section.get("timezone"), "quotas.timezone"),
        cycle_day=_cycle_day(c, section.get("cycle_day"), "quotas.cycle_day") or 1,
    )


def validate(data: Any, source: str) -> Config:
    """Turn parsed YAML into a Config or raise ConfigError listing every problem."""
    c = _Checker()
    top = c.mapping(data, "", KEYS[""])
    static, discovery, refresh, discovery_timeout = _containers(c, top.get("containers"))
    classes_file = None
    if top.get("networks_classes_file") is not None:
        classes_file = c.string(top["networks_classes_file"], "networks_classes_file")
    classes = _classes(c, top.get("network_classes"), classes_file)
    config = Config(
        source=source,
        static=static,
        discovery=discovery,
        refresh_interval=refresh,
        discovery_timeout=discovery_timeout,
        classes=classes,
        networks_classes_file=classes_file,
        netfilter=_netfilter(c, top.get("netfilter")),
        kernel=_kernel(c, top.get("kernel")),
        state=_state(c, top.get("state")),
        quotas=_quotas(c, top.get("quotas"), classes),
    )
    if c.problems:
        raise ConfigError(source, c.problems)
    return config


# libyaml's safe loader when PyYAML has it (4x faster on a 10,000-container file).
class WrittenInt(int):
    """An integer that YAML read from another form than its decimal digits (0101, 0x65, 1_000)."""

    text: str

    def __new__(cls, value: int, text: str) -> WrittenInt:
        number = super().__new__(cls, value)
        number.text = text
        return number


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader where PyYAML has it; integers remember how they were written."""


MAX_DIGITS = 4000  # of an integer: no setting takes as many (Python refuses to read 4,300 or more)


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    if len(node.value) > MAX_DIGITS:
        raise yaml.constructor.ConstructorError(
            None, None, f"an integer of {len(node.value)} characters: no setting takes one", node.start_mark
        )
    value = yaml.SafeLoader.construct_yaml_int(loader, node)
    text = str(node.value)
    return value if text.lstrip("+") == str(value) else WrittenInt(value, text)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_LOADER = _Loader


def load(path: Optional[str]) -> Config:
    """Load the file at path; with no path, the default file or built-in defaults."""
    if path is None:
        if not os.path.exists(DEFAULT_PATH):
            return Config()
        path = DEFAULT_PATH
    return validate(read_yaml(path), path)


MAX_FILE = 64 << 20  # bytes of a configuration file: 100,000 containers take about 10 MiB
MAX_ALIASED = 100_000  # nodes that aliases may add to a document
MAX_DEPTH = 64  # collections inside each other: the configuration has 5 levels, libyaml allows 1,000


def read_yaml(path: str, error: type[ConfigError] = ConfigError) -> Any:
    """The YAML document in a file; error (the file, and the line of a syntax error) when it has none.

    Bounded: the file's size, its nesting (libyaml's limit, or Python's), and what its aliases expand to.
    """
    try:
        text = read_text(path, MAX_FILE)
    except UnicodeDecodeError as err:
        raise error(path, [f"not UTF-8 text: byte {err.start} is {err.object[err.start]:#04x}"]) from None
    except OSError as err:
        raise error(path, [f"cannot read: {err.strerror or err}"]) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise error(path, [f"line {line}: a NUL character: not a text file"])
    try:
        return _from_events(text)
    except _Fallback:
        pass  # read again as nodes, which says what is wrong
    except _Refused as refused:
        raise error(path, [str(refused)]) from None
    except yaml.YAMLError as err:
        raise error(path, [_yaml_problem(err)]) from None
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_depth(node, path, error)
        if "*" in text:  # only aliases can make a document larger than its text
            _check_aliases(node, path, error)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise error(path, [_yaml_problem(err)]) from None
    except RecursionError:
        raise error(path, ["nested too deeply"]) from None
    finally:
        loader.dispose()


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(err, "problem", None) or str(err)
    return f"{where}invalid YAML: {problem}"


class _Fallback(Exception):
    """What the event reader leaves to the node reader: anchors and aliases, tags on collections, merge
    keys, keys that are not scalars, a second document."""


class _Refused(Exception):
    """A value the event reader refuses (the message: its key, and why)."""


def _line(event: yaml.Event) -> int:
    return event.start_mark.line + 1 if event.start_mark is not None else 0


def _key_of(open_: list[list[Any]]) -> str:
    """The key of what comes next in the open collections: state.retention, containers.static[3]."""
    path = ""
    for collection, key in open_:
        if type(collection) is list:
            path += f"[{len(collection)}]"
        elif key is not _KEY:
            path += f".{key}" if path else str(key)
    return path or "the document"


_KEY = object()  # a mapping waits for its next key
_COLLECTION_TAGS = (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _from_events(text: str) -> Any:
    """The document in text, built from the parser's events as they come.

    The same values as the node reader (the same resolver and constructors), without its graph of nodes
    and marks: at 100,000 containers that graph costs about 300 MiB while the values take a tenth of it.
    _Fallback for documents only the node reader reads.
    """
    loader = _LOADER(text)
    try:
        loader.get_event()  # the stream's start
        if loader.check_event(yaml.StreamEndEvent):
            return None
        loader.get_event()  # the document's start
        open_: list[list[Any]] = []  # each open collection, and for a mapping the key waiting for its value
        root: Any = None
        while True:
            event = loader.get_event()
            if isinstance(event, yaml.ScalarEvent):
                if event.anchor is not None:
                    raise _Fallback
                try:
                    value = _scalar(loader, event)
                except yaml.constructor.ConstructorError as err:
                    line = _line(event)
                    raise _Refused(f"{_key_of(open_)}: {err.problem} (line {line})") from None
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if event.anchor is not None or event.tag not in _COLLECTION_TAGS:
                    raise _Fallback
                if len(open_) >= MAX_DEPTH:
                    line = _line(event)
                    raise _Refused(
                        f"{_key_of(open_)}: collections nested more than {MAX_DEPTH} deep (line {line})"
                    )
                open_.append([{}, _KEY] if isinstance(event, yaml.MappingStartEvent) else [[], None])
                continue
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                value = open_.pop()[0]
            elif isinstance(event, yaml.DocumentEndEvent):
                break
            else:  # an alias
                raise _Fallback
            if not open_:
                root = value
                continue
            top = open_[-1]
            if type(top[0]) is list:
                top[0].append(value)
            elif top[1] is _KEY:
                if isinstance(value, (dict, list)):
                    raise _Fallback
                top[1] = value
            else:
                top[0][top[1]] = value
                top[1] = _KEY
        if not loader.check_event(yaml.StreamEndEvent):
            raise _Fallback
        return root
    finally:
        loader.dispose()


def _scalar(loader: Any, event: yaml.ScalarEvent) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
    if tag == "tag:yaml.org,2002:str":
        return event.value
    construct = loader.yaml_constructors.get(tag)
    if construct is None or tag == "tag:yaml.org,2002:merge":
        raise _Fallback
    start: Any = event.start_mark  # libyaml's marks, which the constructors take as theirs
    end: Any = event.end_mark
    return construct(loader, yaml.ScalarNode(tag, event.value, start, end, event.style))


def _check_depth(root: yaml.Node, path: str, error: type[ConfigError]) -> None:
    """Refuse collections nested deeper than MAX_DEPTH (aliases followed once each)."""
    stack, seen = [(root, 0)], set()
    while stack:
        node, depth = stack.pop()
        if isinstance(node, yaml.ScalarNode) or id(node) in seen:
            continue
        seen.add(id(node))
        if depth >= MAX_DEPTH:
            mark = node.start_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}"
            raise error(path, [f"{where}: collections nested more than {MAX_DEPTH} deep"])
        stack += [(child, depth + 1) for child in _children(node)]


def _check_aliases(root: yaml.Node, path: str, error: type[ConfigError]) -> None:
    """Refuse aliases that expand a document beyond MAX_ALIASED nodes, or into itself."""
    size: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in children)
            continue
        if key in size:
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise error(path, ["an alias refers to the node that holds it (a recursive document)"])
            if id(child) not in size:
                stack.append((child, False))
    added = size[id(root)] - len(size)
    if added > MAX_ALIASED:
        raise error(path, [f"aliases expand the document by {added} nodes, more than {MAX_ALIASED}"])


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
