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
from array import array
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from ..model import counter_value


class ParseError(ValueError):
    def __init__(self, line_no: int, line: str, why: str) -> None:
        self.line_no = line_no
        super().__init__(f"line {line_no}: {why}: {line!r}")


class SavedRule(NamedTuple):  # a tuple: tens of thousands per dump
    chain: str
    spec: str  # the rule after "-A CHAIN", as iptables-save prints it
    packets: int = 0
    bytes: int = 0


@dataclass
class SavedTable:
    name: str
    policies: dict[str, str] = field(default_factory=dict)  # chain -> policy ("-" for user chains)
    rules: list[SavedRule] = field(default_factory=list)
    # The same object in two tables: the same chains and rules in the same order (counters aside).
    shape: object = field(default_factory=object, compare=False, repr=False)

    def chain_rules(self, chain: str) -> list[SavedRule]:
        return [r for r in self.rules if r.chain == chain]


_CHAIN = re.compile(r"^:(\S+)\s+(\S+)(?:\s+\[\d+:\d+\])?\s*$")
_COUNTERS = re.compile(r"\[([0-9]{1,20}):([0-9]{1,20})\] ")
_RULE = re.compile(r"^(?:\[(\d+):(\d+)\]\s+)?-A\s+(\S+)(?:\s+(.*?))?\s*$")


class _Dump(NamedTuple):
    lines: list[str]
    tables: dict[str, SavedTable]
    table_of: list[Optional[str]]  # per line: the table of its rule, None for any other line
    rule_at: array  # type: ignore[type-arg]  # per line: the index of its rule in that table


class SaveParser:
    """Parses ``iptables-save`` output, dump after dump.

    A dump with the lines of the last one where only counters differ is read
    as the counters that changed: its tables share the last ones' ``shape``,
    and each rule whose line is the same is the same object as then, which
    later steps can tell.  Any other dump is parsed line by line.
    """

    def __init__(self) -> None:
        self._rules: dict[str, SavedRule] = {}
        self._last: Optional[_Dump] = None

    def parse(self, text: str) -> dict[str, SavedTable]:
        lines = text.splitlines()
        last = self._last
        if last is not None and len(lines) == len(last.lines):
            tables = self._counters_only(lines, last)
            if tables is not None:
                return tables
        return self._parse(lines)

    def _counters_only(self, lines: list[str], last: _Dump) -> Optional[dict[str, SavedTable]]:
        """The last dump's tables with the counters of lines, if nothing else differs; else None."""
        rules: dict[str, list[SavedRule]] = {}
        counters = _COUNTERS.match
        for i in [i for i, (a, b) in enumerate(zip(lines, last.lines)) if a != b]:
            line, was = lines[i], last.lines[i]
            name = last.table_of[i]
            if name is None:
                if line[:1] == was[:1] == "#" or (line[:1] == was[:1] == ":" and _head(line) == _head(was)):
                    continue  # a comment, or a chain's own counters
                return None
            m = counters(line)  # and the line it was is a rule line "[p:b] -A ...", that parsed
            if m is None or was[:1] != "[" or line[m.end() :] != was[was.find("] ") + 2 :]:
                return None  # the line by line parse says what is wrong
            packets, nbytes = int(m.group(1)), int(m.group(2))
            if (packets | nbytes) >> 64:
                return None
            table = rules.get(name)
            if table is None:
                table = rules[name] = list(last.tables[name].rules)
            rule = table[last.rule_at[i]]
            table[last.rule_at[i]] = SavedRule(rule.chain, rule.spec, packets, nbytes)
        if not rules:
            return last.tables
        tables = dict(last.tables)
        for name, table in rules.items():
            old = last.tables[name]
            tables[name] = SavedTable(name, old.policies, table, old.shape)
        self._last = last._replace(lines=lines, tables=tables)
        return tables

    def _parse(self, lines: list[str]) -> dict[str, SavedTable]:
        tables: dict[str, SavedTable] = {}
        current: SavedTable | None = None
        old = self._rules
        seen: dict[str, SavedRule] = {}
        table_of: list[Optional[str]] = [None] * len(lines)
        rule_at = array("l", bytes(array("l").itemsize * len(lines)))
        for line_no, raw in enumerate(lines, start=1):
            rule = old.get(raw)
            if rule is None or current is None:
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
                rule = _rule(line_no, raw, line)
            table_of[line_no - 1], rule_at[line_no - 1] = current.name, len(current.rules)
            current.rules.append(rule)
            seen[raw] = rule
        self._rules = seen
        self._last = _Dump(lines, tables, table_of, rule_at)
        return tables


def _head(chain_line: str) -> str:
    """A chain line without its counters."""
    return chain_line.rsplit(" [", 1)[0] if chain_line.endswith("]") else chain_line


def _rule(line_no: int, raw: str, line: str) -> SavedRule:
    m = _RULE.match(line)
    if not m:
        raise ParseError(line_no, raw, "malformed rule line")
    packets, nbytes, chain, spec = m.groups()
    try:
        counters = [counter_value(v or "0", "counters") for v in (packets, nbytes)]
    except ValueError as err:
        raise ParseError(line_no, raw, str(err)) from None
    return SavedRule(chain, spec or "", *counters)


def parse_iptables_save(text: str) -> dict[str, SavedTable]:
    return SaveParser().parse(text)
