"""Network classes: which class a peer address belongs to.

The rule is OpenVZ's (``vztactl class_load -s`` with the kernel's backward
scan): a peer inside any network listed for class 0 is class 0; otherwise the
longest matching prefix among the other classes wins; no match is class 0.
Each packet lands in exactly one class.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Union

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

MAX_CLASS = 15
DEFAULT_CLASS_NAME = "default"


@dataclass(frozen=True)
class NetworkClass:
    id: int
    name: str
    networks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class ClassTable:
    """The classes of a node, class 0 always present."""

    classes: tuple[NetworkClass, ...]

    @classmethod
    def build(cls, classes: Iterable[NetworkClass]) -> ClassTable:
        by_id = {c.id: c for c in classes}
        if 0 not in by_id:
            by_id[0] = NetworkClass(0, DEFAULT_CLASS_NAME)
        return cls(tuple(by_id[i] for i in sorted(by_id)))

    def ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.classes)

    def ordered_networks(self, version: int) -> list[tuple[IPNetwork, int]]:
        """(network, class) pairs in first-match-wins order for one IP version.

        Class-0 networks come first, then the others by descending prefix
        length; an address that matches none of them is class 0.
        """
        zero: list[tuple[IPNetwork, int]] = []
        other: list[tuple[IPNetwork, int]] = []
        for klass in self.classes:
            for net in klass.networks:
                if net.version == version:
                    (zero if klass.id == 0 else other).append((net, klass.id))
        other.sort(key=lambda pair: -pair[0].prefixlen)
        return zero + other

    def classify(self, address: IPAddress) -> int:
        for net, klass in self.ordered_networks(address.version):
            if address in net:
                return klass
        return 0

    def disjoint_ranges(self, version: int) -> list[tuple[IPAddress, IPAddress, int]]:
        """The addresses of a non-zero class as disjoint (first, last, class) ranges, in order.

        Set-based matching has no first-match order: the OpenVZ rule (class 0
        first, then the longest prefix) is applied here, once, so that every
        address falls in at most one range, and none in a class-0 hole.
        """
        ordered = self.ordered_networks(version)
        if not ordered:
            return []
        bounds = sorted(
            {int(n.network_address) for n, _ in ordered} | {int(n.broadcast_address) + 1 for n, _ in ordered}
        )
        factory = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        ranges: list[tuple[int, int, int]] = []
        for start, end in zip(bounds, bounds[1:]):
            klass = self.classify(factory(start))  # the same class for every address up to end - 1
            if ranges and ranges[-1][2] == klass and ranges[-1][1] == start - 1:
                ranges[-1] = (ranges[-1][0], end - 1, klass)
            else:
                ranges.append((start, end - 1, klass))
        return [(factory(first), factory(last), klass) for first, last, klass in ranges if klass]


def ambiguous_networks(classes: Sequence[NetworkClass]) -> list[tuple[IPNetwork, int, int]]:
    """Networks listed with the same prefix in two different non-zero classes."""
    seen: dict[IPNetwork, int] = {}
    clashes = []
    for klass in classes:
        if klass.id == 0:
            continue
        for net in klass.networks:
            other = seen.setdefault(net, klass.id)
            if other != klass.id:
                clashes.append((net, other, klass.id))
    return clashes


_CLASS_LINE = re.compile(r"^\s*(\d+)[\t ]+([^/\s]{1,41})/(\d+)")


def parse_networks_classes(text: str) -> tuple[list[tuple[int, IPNetwork]], list[str]]:
    """(class, network) entries of an OpenVZ ``networks_classes`` file, and its problems.

    As ``vztactl class_load`` reads it: a comment only with ``#`` in column 0;
    ``<class> <address>/<prefix>`` with the prefix mandatory, anything after
    it ignored; a prefix beyond the address length clamped; host bits masked.
    Problems are ``line N: why`` (vztactl would skip or refuse those lines).
    """
    entries: list[tuple[int, IPNetwork]] = []
    problems: list[str] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _CLASS_LINE.match(line)
        if not m:
            problems.append(f"line {line_no}: expected '<class> <address>/<prefix>': {line.strip()!r}")
            continue
        klass, address, prefix = int(m.group(1)), m.group(2), int(m.group(3))
        if klass > MAX_CLASS:
            problems.append(f"line {line_no}: class {klass} is above {MAX_CLASS}")
            continue
        try:
            addr = ipaddress.ip_address(address)
        except ValueError:
            problems.append(f"line {line_no}: {address!r} is not an IP address")
            continue
        net = ipaddress.ip_network(f"{addr}/{min(prefix, addr.max_prefixlen)}", strict=False)
        entries.append((klass, net))
    return entries, problems
