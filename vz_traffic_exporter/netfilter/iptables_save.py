"""Parser for ``iptables-save -c`` / ``ip6tables-save -c`` output.

Pure: text in, records out.  Works for the legacy and the nf_tables variant,
whose outputs share the format::

    *filter
    :FORWARD ACCEPT [0:0]
    :VZTRAFFIC-OUT-0 - [0:0]
    [8:832] -A FORWARD -s 192.0.2.11/32
    COMMIT
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..sources import counter_value


class ParseError(ValueError):
    def __init__(self, line_no: int, line: str, why: str) -> None:
        self.line_no = line_no
        super().__init__(f"line {line_no}: {why}: {line!r}")


@dataclass(frozen=True)
class SavedRule:
    chain: str
    spec: str  # the rule after "-A CHAIN", as iptables-save prints it
    packets: int = 0
    bytes: int = 0


@dataclass
class SavedTable:
    name: str
    policies: dict[str, str] = field(default_factory=dict)  # chain -> policy ("-" for user chains)
    rules: list[SavedRule] = field(default_factory=list)

    def chain_rules(self, chain: str) -> list[SavedRule]:
        return [r for r in self.rules if r.chain == chain]


_CHAIN = re.compile(r"^:(\S+)\s+(\S+)(?:\s+\[\d+:\d+\])?\s*$")
_RULE = re.compile(r"^(?:\[(\d+):(\d+)\]\s+)?-A\s+(\S+)(?:\s+(.*?))?\s*$")


class SaveParser:
    """Parses ``iptables-save`` output, dump after dump.

    A rule line seen in the last dump (same counters) is not parsed again:
    its rule is the same object as then, which later steps can tell.
    """

    def __init__(self) -> None:
        self._rules: dict[str, SavedRule] = {}

    def parse(self, text: str) -> dict[str, SavedTable]:
        tables: dict[str, SavedTable] = {}
        current: SavedTable | None = None
        old = self._rules
        seen: dict[str, SavedRule] = {}
        for line_no, raw in enumerate(text.splitlines(), start=1):
            rule = old.get(raw)
            if rule is not None and current is not None:
                current.rules.append(rule)
                seen[raw] = rule
                continue
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("*"):
                current = tables.setdefault(line[1:], SavedTable(line[1:]))
                continue
            if line == "COMMIT":
                current = None
                continue
            if current is None:
                raise ParseError(line_no, raw, "outside a table")
            if line.startswith(":"):
                m = _CHAIN.match(line)
                if not m:
                    raise ParseError(line_no, raw, "malformed chain line")
                current.policies[m.group(1)] = m.group(2)
                continue
            m = _RULE.match(line)
            if not m:
                raise ParseError(line_no, raw, "malformed rule line")
            packets, nbytes, chain, spec = m.groups()
            try:
                counters = [counter_value(v or "0", "counters") for v in (packets, nbytes)]
            except ValueError as err:
                raise ParseError(line_no, raw, str(err)) from None
            rule = SavedRule(chain, spec or "", *counters)
            current.rules.append(rule)
            seen[raw] = rule
        self._rules = seen
        return tables


def parse_iptables_save(text: str) -> dict[str, SavedTable]:
    return SaveParser().parse(text)
