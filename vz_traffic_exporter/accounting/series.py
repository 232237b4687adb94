"""The series table: one slot per series, its key, totals and last-seen time in integer arrays."""

from __future__ import annotations

from array import array
from typing import Optional

from ..model import SeriesKey, SeriesRow, veid_of

ALL: set[int] = set()  # marks every row of a kind as changed (compared by identity: never filled)


class SeriesTable:
    """The totals.  A series is made from zero at first sight, and only dropped (:meth:`drop`).

    ``made`` counts the series made and dropped, and ``version(kind)`` moves
    whenever a series of that kind was made, dropped or grew: the change
    tokens of what is made from the rows.
    """

    def __init__(self) -> None:
        self.slot_of: dict[SeriesKey, int] = {}
        self.keys: list[SeriesKey] = []
        self.packets = array("Q")
        self.bytes = array("Q")
        self.seen = array("q")  # wall-clock time (s) of the last read that showed the series
        # Per container, when its first series was made (from zero): everything it counted came after.
        # 0: not known (kept by a state file from before these were kept).
        self.created: dict[str, int] = {}
        self.made = 0  # bumped when a series is made or dropped
        # kind -> (made, sorted rows, their slots, slot -> its row); the slots that grew since; versions
        self._rows: dict[str, tuple[int, list[SeriesRow], list[int], array[int]]] = {}
        self.dirty: dict[str, set[int]] = {}  # kind -> the slots that grew (ALL: most of them)
        self._versions: dict[str, int] = {}
        self._created_rows: tuple[int, tuple[tuple[str, int], ...]] = (-1, ())

    def __len__(self) -> int:
        return len(self.keys)

    def slot(self, key: SeriesKey, stamp: int) -> int:
        """The slot of a series, made (from zero) if it is new."""
        slot = self.slot_of.get(key)
        if slot is None:
            slot = self.slot_of[key] = len(self.keys)
            self.keys.append(key)
            self.packets.append(0)
            self.bytes.append(0)
            self.seen.append(stamp)
            self.made += 1
            self.created.setdefault(veid_of(key), stamp)
        return slot

    def grew(self, slots: list[int]) -> None:
        """Mark the rows of these series as changed (where most grew, all rows: no set of slots to keep)."""
        keys, dirty = self.keys, self.dirty
        if 2 * len(slots) > len(keys):
            for kind in self._rows:
                dirty[kind] = ALL
            return
        for slot in slots:
            kind = keys[slot][0]
            found = dirty.get(kind)
            if found is None:
                found = dirty[kind] = set()
            if found is not ALL:
                found.add(slot)

    def saw(self, slot: int, stamp: int) -> None:
        if self.seen[slot] < stamp:
            self.seen[slot] = stamp

    def drop(self, gone: set[int]) -> dict[int, int]:
        """Remove series; returns the new slot of each slot kept."""
        keep = [slot for slot in range(len(self.keys)) if slot not in gone]
        self.keys = [self.keys[slot] for slot in keep]
        self.packets = array("Q", (self.packets[slot] for slot in keep))
        self.bytes = array("Q", (self.bytes[slot] for slot in keep))
        self.seen = array("q", (self.seen[slot] for slot in keep))
        self.slot_of = {key: slot for slot, key in enumerate(self.keys)}
        left = self.veids()
        self.created = {veid: at for veid, at in self.created.items() if veid in left}
        self._rows.clear()
        self.dirty.clear()
        self.made += len(gone)
        return {old: new for new, old in enumerate(keep)}

    def veids(self) -> set[str]:
        return {veid_of(key) for key in self.keys}

    def total(self, series: SeriesKey) -> tuple[int, int]:
        """(packets, bytes) accumulated for a series."""
        slot = self.slot_of.get(series)
        return (0, 0) if slot is None else (self.packets[slot], self.bytes[slot])

    def rows(self, kind: str) -> list[SeriesRow]:
        """(series, packets, bytes) of every series whose key starts with kind, sorted.

        Kept between calls: made again only when series came or went, else
        only the rows of the series that grew are.  The caller must not change the list.
        """
        cached = self._rows.get(kind)
        dirty = self.dirty.pop(kind, set())
        packets, nbytes, keys = self.packets, self.bytes, self.keys
        if cached is None or cached[0] != self.made:
            slots = sorted((slot for slot, key in enumerate(keys) if key[0] == kind), key=keys.__getitem__)
            rows = [(keys[slot], packets[slot], nbytes[slot]) for slot in slots]
            index = array("q", bytes(8 * len(keys)))  # series slot -> its row (an array: no dict)
            for i, slot in enumerate(slots):
                index[slot] = i
            self._rows[kind] = (self.made, rows, slots, index)
            self._versions[kind] = self._versions.get(kind, 0) + 1
            return rows
        _, rows, slots, index = cached
        if dirty is ALL:
            rows[:] = [(keys[s], packets[s], nbytes[s]) for s in slots]
        for slot in () if dirty is ALL else dirty:
            rows[index[slot]] = (keys[slot], packets[slot], nbytes[slot])
        if dirty or dirty is ALL:
            self._versions[kind] += 1
        return rows

    def version(self, kind: str) -> int:
        """The change token of :meth:`rows` (kind), as of its last call."""
        return self._versions.get(kind, 0)

    def last_owners(self, kind: str) -> dict[tuple[str, ...], SeriesKey]:
        """Per series key less its kind and owner (an ip series: ip, class, direction), the one last seen."""
        found: dict[tuple[str, ...], tuple[int, SeriesKey]] = {}
        for slot, key in enumerate(self.keys):
            if key[0] == kind:
                rest = key[2:]
                seen = self.seen[slot]
                if rest not in found or found[rest][0] < seen:
                    found[rest] = (seen, key)
        return {rest: key for rest, (_, key) in found.items()}

    def first_seen(self) -> tuple[tuple[str, int], ...]:
        """(veid, when its first series was made) where known, sorted; made again only when series came or
        went (its change token: ``made``)."""
        made, rows = self._created_rows
        if made != self.made:
            rows = tuple(sorted((veid, at) for veid, at in self.created.items() if at))
            self._created_rows = (self.made, rows)
        return rows

    def stale(self, retention: float, now: float) -> list[int]:
        return [slot for slot, seen in enumerate(self.seen) if now - seen > retention]

    def restore(self, key: SeriesKey, packets: int, nbytes: int, seen: int) -> Optional[int]:
        slot = self.slot(key, seen)
        self.packets[slot], self.bytes[slot], self.seen[slot] = packets, nbytes, seen
        return slot
