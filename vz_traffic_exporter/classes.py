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
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Nesting:
    """How classes whose counters overlap can be made exclusive (Virtuozzo 9's nft counters).

    Such a counter counts every packet whose peer is in any network of its
    class, whatever other class also holds the peer.  Where a class's
    networks all lie inside the networks of one other class (``parent``),
    and no network of that class lies inside one of them, its packets are
    the ones the longest-prefix rule gives it, and the parent's exclusive
    count is its own minus its children's.  ``underivable`` names the
    classes for which that does not hold, with why: their counts cannot be
    told apart.
    """

    parent: dict[int, int]
    underivable: dict[int, str]
    # Class-0 networks that overlap a class's: Virtuozzo 9 counts no class 0, so their traffic
    # is in that class's count, as the class holding them.
    zero_inside: dict[int, tuple[IPNetwork, ...]] = field(default_factory=dict)

    def children(self, klass: int) -> list[int]:
        return [child for child, parent in self.parent.items() if parent == klass]


def nesting(table: ClassTable, version: int) -> Nesting:
    """The nesting of the non-zero classes of one IP version (see :class:`Nesting`)."""
    zero = [net for k in table.classes if k.id == 0 for net in k.networks if net.version == version]
    nets = sorted(
        ((net, k.id) for k in table.classes if k.id != 0 for net in k.networks if net.version == version),
        key=lambda pair: (int(pair[0].network_address), pair[0].prefixlen),
    )
    # Every pair of overlapping networks, found with a stack of the networks that hold the current one.
    held_by: dict[int, list[set[int]]] = {}  # class -> for each of its networks, the classes holding it
    holds: dict[int, set[int]] = {}  # class -> the classes one of whose networks lies inside one of its own
    stack: list[tuple[IPNetwork, int]] = []
    for net, klass in nets:
        while stack and not net.subnet_of(stack[-1][0]):  # type: ignore[arg-type]
            stack.pop()
        holders = {k for _, k in stack if k != klass}
        held_by.setdefault(klass, []).append(holders)
        for other in holders:
            holds.setdefault(other, set()).add(klass)
        stack.append((net, klass))
    inside = {k: set().union(*sets) for k, sets in held_by.items()}
    parent: dict[int, int] = {}
    underivable: dict[int, str] = {}
    for klass in sorted(held_by):
        holders = inside[klass]
        mixed = holders & holds.get(klass, set())
        if mixed:
            underivable[klass] = f"it both holds and lies inside networks of class {min(mixed)}"
            continue
        if not holders:
            continue  # a class of its own
        # Laminar: the holders nest in one another, and the innermost holds every network of it.
        ordered = sorted(holders, key=lambda k: len(inside.get(k, ())), reverse=True)
        if any(outer not in inside.get(inner, set()) for inner, outer in zip(ordered, ordered[1:])):
            underivable[klass] = f"classes {min(holders)} and {max(holders)} both hold parts of it"
        elif not all(ordered[0] in held for held in held_by[klass]):
            underivable[klass] = f"only some of its networks lie inside class {ordered[0]}"
        else:
            parent[klass] = ordered[0]
    # What overlaps an underivable class cannot be told apart from it either: its holders and its children.
    changed = True
    while changed:
        changed = False
        for klass in sorted(underivable):
            for other in sorted(inside.get(klass, set()) | {c for c, p in parent.items() if p == klass}):
                if other not in underivable:
                    underivable[other] = f"it overlaps class {klass}, which cannot be made exclusive"
                    parent.pop(other, None)
                    changed = True
    zero_inside = {
        klass: found
        for klass in sorted(held_by)
        if (found := tuple(z for z in zero for net, k in nets if k == klass and z.overlaps(net)))
    }
    return Nesting(parent, underivable, zero_inside)


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
